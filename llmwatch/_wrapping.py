"""One wrapper per kind of function (sync, async, generator, async generator), driven by hooks.

``start`` runs once per call, ``enter``/``leave`` around every step the function runs, ``finish``
once. For generators a "step" is one ``next``/``send``/``throw``: whatever ``enter`` sets (a context
variable, an OTel context) is undone by ``leave`` in the same frame, never across a ``yield`` (the
consumer may resume the generator in another task or thread, and a context token must be reset
where it was set). Used by ``@observe`` (spans) and by ``llmwatch.attributes`` as a decorator.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import Token
from typing import Any, Protocol


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
