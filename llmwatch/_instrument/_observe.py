"""``@llmwatch.observe``: workflow and task spans around the user's own functions.

The function wrappers (sync, async, generator, async generator) are ``_wrapping``'s; this module
gives them the span hooks. The span's context is attached at the start of each step and detached at
its end, in the same frame, never across a ``yield``. The span itself lives from the first step to
exhaustion, ``close()`` or an error. The content policy is the one in force when the span started,
so a ``configure()`` in between never changes how that span's content is treated.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmwatch import _attribution
from llmwatch import _semconv as sc
from llmwatch._core import _runtime
from llmwatch._health import HEALTH, record_internal_error
from llmwatch._policy._content import ContentPolicy
from llmwatch._text import clean, error_description, exception_event_overrides
from llmwatch._wrapping import wrap_function

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_IN_WORKFLOW: ContextVar[bool] = ContextVar("llmwatch_in_workflow", default=False)


class _ObserveState:
    __slots__ = ("content", "ended", "openinference", "span")

    def __init__(self, span: Span | None, content: ContentPolicy | None = None, openinference: bool = False) -> None:
        self.span = span
        self.content = content  # the policy at start: what the return value is captured under
        self.openinference = openinference  # backend_compat: the output as output.value too
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
            if runtime.openinference:  # Phoenix and other OpenInference readers: a CHAIN, its input
                attrs[sc.OI_SPAN_KIND] = sc.OI_KIND_CHAIN
                if sc.LLMWATCH_INPUT in attrs:
                    attrs[sc.OI_INPUT_VALUE] = attrs[sc.LLMWATCH_INPUT]
                    attrs[sc.OI_INPUT_MIME_TYPE] = sc.OI_MIME_JSON
            span = runtime.tracer.start_span(self.name, kind=SpanKind.INTERNAL, attributes=attrs)
            HEALTH.spans_started.add()
            return _ObserveState(span, runtime.content if self.capture_args else None, runtime.openinference)
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
                policy = state.content
                if policy is not None:
                    output = policy.json(policy.any_value(result))
                    span.set_attribute(sc.LLMWATCH_OUTPUT, output)
                    if state.openinference:
                        span.set_attributes({sc.OI_OUTPUT_VALUE: output, sc.OI_OUTPUT_MIME_TYPE: sc.OI_MIME_JSON})
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
