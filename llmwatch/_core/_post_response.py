"""Billed responses the SDK then rejects: their usage, model and cost still reach the span.

``chat.completions.parse``, ``responses.parse`` and Anthropic's ``messages.parse`` /
``beta.messages.parse`` post, receive a complete (and billed) response, then run the SDK's own parser
over it. That parser raises when the reply was cut at the token limit (``LengthFinishReasonError``),
filtered (``ContentFilterFinishReasonError``) or is not the JSON asked for (pydantic's
``ValidationError``, which carries no response at all). The caller gets that exception; the span must
still say what the call cost, and the budget must be charged.

How the response is seen, without changing what the caller gets: the SDK's parser functions (each
provider module's ``PARSERS``) are wrapped at module level, once, like every other hook, so that while
one of *our* parse calls runs they note the raw response they were handed before parsing it. The note
goes into a list that the wrapper for that call set in a ``ContextVar`` (so concurrent calls in threads
and asyncio tasks each see their own); the SDK call and its exception are untouched. Other calls pay
nothing: only the parse methods (and ``with_raw_response``'s ``parse()``) set the list. Where the hook
cannot apply (an SDK that moved its parser), the exceptions that carry the response are read instead:
``.completion`` of the finish-reason errors, ``.body`` of ``APIResponseValidationError`` (strict
response validation, any method).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from llmwatch._health import record_internal_error

if TYPE_CHECKING:
    from llmwatch._core._call import LLMCall

_COMPLETION_ERRORS = frozenset({"LengthFinishReasonError", "ContentFilterFinishReasonError"})
_VALIDATION_ERROR = "APIResponseValidationError"

_SEEN: ContextVar[list[Any] | None] = ContextVar("llmwatch_post_parsed", default=None)


class Watch:
    """The responses the SDK's parsers were handed while one call ran (set up by its wrapper)."""

    __slots__ = ("_token", "responses")

    def __init__(self) -> None:
        self.responses: list[Any] = []
        self._token: Token[list[Any] | None] | None = _SEEN.set(self.responses)

    def close(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _SEEN.reset(token)
            except (ValueError, RuntimeError) as exc:  # a different context: cannot happen in our wrappers
                record_internal_error("post-response watch", exc)
                _SEEN.set(None)


def watch() -> Watch | None:
    try:
        return Watch()
    except Exception as exc:
        record_internal_error("post-response watch", exc)
        return None


def close(watch: Watch | None) -> None:
    if watch is not None:
        watch.close()


def fail(call: LLMCall, exc: BaseException, watch: Watch | None = None) -> None:
    """End a call whose SDK call (or ``parse()``) raised, keeping the usage of a response that arrived."""
    record_failure_response(call, exc, watch)
    call.fail(exc)


def record_failure_response(call: LLMCall, exc: BaseException, watch: Watch | None) -> None:
    """Before a failed call ends: record the response that did arrive, if one did."""
    if call.ended or call.stream:
        return
    try:
        close(watch)
        response = response_of(exc, watch)
        if response is not None:
            call.handler.on_response(call, response)
    except Exception as internal:
        record_internal_error(f"{call.provider} response parsing", internal)


def response_of(exc: BaseException, watch: Watch | None) -> Any:
    """The response that arrived before ``exc`` was raised, or None when none did."""
    if watch is not None and watch.responses:
        return watch.responses[-1]
    if type(exc).__name__ in _COMPLETION_ERRORS:
        return getattr(exc, "completion", None)
    if any(cls.__name__ == _VALIDATION_ERROR for cls in type(exc).__mro__):
        body = getattr(exc, "body", None)
        return body if isinstance(body, Mapping) else None
    return None


def hook_parsers(parsers: tuple[tuple[str, str, str], ...]) -> list[tuple[Any, str, Any]]:
    """Wrap each SDK parser that exists here; returns (module, name, original) to restore."""
    import wrapt

    patched: list[tuple[Any, str, Any]] = []
    for module_name, name, keyword in parsers:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        original = module.__dict__.get(name)
        if not callable(original):
            continue
        patched.append((module, name, original))
        wrapt.wrap_function_wrapper(module, name, _noting(keyword))
    return patched


def _noting(keyword: str) -> Any:
    def hook(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        seen = _SEEN.get()
        if seen is not None:
            response = kwargs.get(keyword)
            if response is not None:
                seen.append(response)
        return wrapped(*args, **kwargs)

    return hook
