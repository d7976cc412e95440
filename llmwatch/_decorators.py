"""``@llmwatch.observe``: workflow and task spans around the user's own functions.

One wrapper per function kind (sync, async, generator, async generator), all driven by the same
:class:`Hooks`: ``start`` once per call, ``enter``/``leave`` around every step the function runs,
``finish`` once. For generators a "step" is one ``next``/``send``/``throw``: the span's context is
attached at the start of a step and detached at its end, in the same frame, never across a
``yield`` (the consumer may resume the generator in another task or thread, and a context token
must be detached where it was attached). The span itself lives from the first step to exhaustion,
``close()`` or an error.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmwatch import _attribution, _runtime
from llmwatch import _semconv as sc
from llmwatch._health import HEALTH, record_internal_error
from llmwatch._text import clean, error_description, exception_event_overrides

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_IN_WORKFLOW: ContextVar[bool] = ContextVar("llmwatch_in_workflow", default=False)


class Hooks(Protocol):
    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...
    def enter(self, state: Any) -> Any: ...
    def leave(self, state: Any, token: Any) -> None: ...
    def finish(self, state: Any, error: BaseException | None, result: Any) -> None: ...


class ContextHooks:
    """Hooks that only set and reset a context variable (``llmwatch.attributes`` as a decorator)."""

    def __init__(self, push: Callable[[], Token[Any]], pop: Callable[[Token[Any]], None]) -> None:
        self._push = push
        self._pop = pop

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        return None

    def enter(self, state: Any) -> Any:
        return self._push()

    def leave(self, state: Any, token: Any) -> None:
        self._pop(token)

    def finish(self, state: Any, error: BaseException | None, result: Any) -> None:
        return None


def wrap_function(fn: Callable[..., Any], hooks: Hooks) -> Callable[..., Any]:
    """Wrap ``fn`` of any kind so ``hooks`` bracket the call and each of its steps."""
    if inspect.isasyncgenfunction(fn):
        return _wrap_async_generator(fn, hooks)
    if inspect.isgeneratorfunction(fn):
        return _wrap_generator(fn, hooks)
    if inspect.iscoroutinefunction(fn):
        return _wrap_coroutine(fn, hooks)
    return _wrap_sync(fn, hooks)


def _wrap_sync(fn: Callable[..., Any], hooks: Hooks) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = hooks.start(args, kwargs)
        token = hooks.enter(state)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            hooks.leave(state, token)
            hooks.finish(state, exc, None)
            raise
        hooks.leave(state, token)
        hooks.finish(state, None, result)
        return result

    return wrapper


def _wrap_coroutine(fn: Callable[..., Any], hooks: Hooks) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = hooks.start(args, kwargs)
        token = hooks.enter(state)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            hooks.leave(state, token)
            hooks.finish(state, exc, None)
            raise
        hooks.leave(state, token)
        hooks.finish(state, None, result)
        return result

    return wrapper


def _wrap_generator(fn: Callable[..., Any], hooks: Hooks) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = hooks.start(args, kwargs)
        token = hooks.enter(state)
        try:
            gen = fn(*args, **kwargs)
        finally:
            hooks.leave(state, token)
        send: Callable[[Any], Any] = gen.send
        value: Any = None
        while True:
            token = hooks.enter(state)
            try:
                item = send(value)
            except StopIteration as stop:
                hooks.leave(state, token)
                hooks.finish(state, None, stop.value)
                return stop.value
            except BaseException as exc:
                hooks.leave(state, token)
                hooks.finish(state, exc, None)
                raise
            hooks.leave(state, token)
            try:
                value = yield item
                send = gen.send
            except GeneratorExit:
                gen.close()  # closed early by the consumer: not an error
                hooks.finish(state, None, None)
                raise
            except BaseException as exc:
                send, value = gen.throw, exc

    return wrapper


def _wrap_async_generator(fn: Callable[..., Any], hooks: Hooks) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = hooks.start(args, kwargs)
        token = hooks.enter(state)
        try:
            agen = fn(*args, **kwargs)
        finally:
            hooks.leave(state, token)
        send: Callable[[Any], Any] = agen.asend
        value: Any = None
        while True:
            token = hooks.enter(state)
            try:
                item = await send(value)
            except StopAsyncIteration:
                hooks.leave(state, token)
                hooks.finish(state, None, None)
                return
            except BaseException as exc:
                hooks.leave(state, token)
                hooks.finish(state, exc, None)
                raise
            hooks.leave(state, token)
            try:
                value = yield item
                send = agen.asend
            except GeneratorExit:
                await agen.aclose()
                hooks.finish(state, None, None)
                raise
            except BaseException as exc:
                send, value = agen.athrow, exc

    return wrapper


class _ObserveState:
    __slots__ = ("ended", "span")

    def __init__(self, span: Span | None) -> None:
        self.span = span
        self.ended = False


class ObserveHooks:
    """Workflow/task span lifecycle for ``@observe``. Every method is llmwatch code: guarded."""

    def __init__(self, name: str, feature: str | None, capture_args: bool) -> None:
        self.name = name
        self.feature = feature
        self.capture_args = capture_args

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _ObserveState:
        try:
            runtime = _runtime.CURRENT
            attribution = _attribution.current()
            if self.feature is not None:
                attribution = attribution.merged(feature=self.feature)
            attrs: dict[str, Any] = dict(attribution.span_attributes)
            attrs[sc.LLMWATCH_SPAN_KIND] = sc.SPAN_KIND_TASK if _IN_WORKFLOW.get() else sc.SPAN_KIND_WORKFLOW
            if self.capture_args and runtime.content is not None:
                policy = runtime.content
                attrs[sc.LLMWATCH_INPUT] = policy.json(policy.any_value({"args": list(args), "kwargs": kwargs}))
            span = runtime.tracer.start_span(self.name, kind=SpanKind.INTERNAL, attributes=attrs)
            HEALTH.spans_started.add()
            return _ObserveState(span)
        except Exception as exc:
            record_internal_error("observe start", exc)
            return _ObserveState(None)

    def enter(self, state: _ObserveState) -> Any:
        # (is_otel_context, token) pairs, undone in reverse order by leave().
        tokens: list[tuple[bool, Any]] = []
        try:
            if state.span is not None:
                tokens.append((True, otel_context.attach(trace.set_span_in_context(state.span))))
            tokens.append((False, _IN_WORKFLOW.set(True)))
            if self.feature is not None:
                tokens.append((False, _attribution.set_current(_attribution.current().merged(feature=self.feature))))
        except Exception as exc:
            record_internal_error("observe enter", exc)
        return tokens

    def leave(self, state: _ObserveState, tokens: Any) -> None:
        try:
            for is_otel_context, token in reversed(tokens):
                if is_otel_context:
                    otel_context.detach(token)
                else:
                    token.var.reset(token)
        except Exception as exc:
            record_internal_error("observe leave", exc)

    def finish(self, state: _ObserveState, error: BaseException | None, result: Any) -> None:
        if state.ended or state.span is None:
            return
        state.ended = True
        span = state.span
        try:
            if error is not None:
                span.set_attribute(sc.ERROR_TYPE, type(error).__name__)
                span.set_status(Status(StatusCode.ERROR, error_description(error)))
                span.record_exception(error, attributes=exception_event_overrides(error))
            elif self.capture_args and result is not None:
                policy = _runtime.CURRENT.content
                if policy is not None:
                    span.set_attribute(sc.LLMWATCH_OUTPUT, policy.json(policy.any_value(result)))
        except Exception as exc:
            record_internal_error("observe finish", exc)
        finally:  # whatever failed above, the span still ends (and is exported)
            try:
                span.end()
                HEALTH.spans_ended.add()
            except Exception as exc:
                record_internal_error("observe span end", exc)


@overload
def observe(fn: F) -> F: ...
@overload
def observe(
    fn: None = None, *, name: str | None = None, feature: str | None = None, capture_args: bool = False
) -> Callable[[F], F]: ...


def observe(fn: Any = None, *, name: str | None = None, feature: str | None = None, capture_args: bool = False) -> Any:
    """Trace a function as a workflow span (a ``task`` span when nested in another observed function).

    Works on sync, async, generator and async generator functions; the LLM calls made inside become
    its child spans. ``name`` defaults to the function's ``__qualname__``; ``feature`` attributes every
    call inside to that feature; ``capture_args=True`` records arguments and return value, only when
    content capture is on and through the same redaction.
    """

    def decorate(func: F) -> F:
        hooks = ObserveHooks(clean(name or func.__qualname__), feature, capture_args)
        return cast(F, wrap_function(func, hooks))

    if fn is not None:
        return decorate(fn)
    return decorate
