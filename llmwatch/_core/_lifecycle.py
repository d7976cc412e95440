"""The life of one LLM call, written once: verdict -> refusal or send -> finish, fail or stream hand-off.

Every way into llmwatch (the SDK wrappers, the Anthropic stream helper, ``llm_call``) opens a call
record and then goes through these functions, so a budget, a kill switch, a failure or a stream
behaves the same whichever SDK or method made the call:

1. :func:`check` asks the policy for a verdict before anything is sent and applies it to the record;
2. a refused call is settled by :func:`settle` / :func:`settle_async` and :func:`accept`: raise
   ``BudgetExceeded``/``FeatureDisabled`` (or the user's ``on_exceed`` exception), answer with the
   fallback, or go ahead marked;
3. :func:`run_sync` / :func:`run_async` send it with the span's context attached around the SDK call
   only, then hand the result off (:func:`hand_off`): finish now, or a stream proxy that finishes later
   (:func:`follow_inside` when the stream or body sits inside the result, as in botocore's responses).

Guarding: llmwatch's own steps are guarded; the SDK call is not inside any ``try`` that could swallow
its error, its exception reaches the caller unchanged, and its result is returned as is (or inside a
transparent proxy). Settling runs unguarded on purpose: its exceptions are the caller's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace

from llmwatch._core import _post_response
from llmwatch._core._call import LLMCall
from llmwatch._health import record_internal_error
from llmwatch._policy._budget import REASON_BUDGET, RULES

PROCEED: Final = object()  # the refused call goes ahead after all (``on_exceed`` returned None)
_RAW_RESPONSE_TYPES = frozenset({"LegacyAPIResponse", "APIResponse", "AsyncAPIResponse"})

# ``retry(call, exc) -> bool``: after the SDK call raised, whether to send the request once more as the
# caller wrote it (the OpenAI wrapper's answer to a server refusing the ``stream_options`` we added).
Retry = Callable[[LLMCall, BaseException], bool]
# ``follow(call, result)``: for a result that holds its stream or its body inside it (botocore's
# response dict: ``response["stream"]``, ``response["body"]``), put what ends the call there (a stream
# proxy, a reader watching the body) or end it now; the caller gets ``result`` itself.
Follow = Callable[[LLMCall, Any], None]


# --- 1. the verdict ------------------------------------------------------------------------------------
def check(call: LLMCall) -> None:
    """Kill switches, budgets and circuit breakers; a failure in the check itself lets the call go ahead
    (counted)."""
    try:
        verdict = RULES.check(call.attribution, call.provider, call.request_model, call.request)
    except Exception as exc:
        record_internal_error("budget check", exc)
        return
    if verdict is not None:
        call.refusal = verdict.refusal
        call.budget_keys = verdict.budget_keys
        call.budget_exceeded = verdict.warned
        call.admission = verdict.admission


# --- 2. a refused call --------------------------------------------------------------------------------
def settle(call: LLMCall) -> Any:
    """Apply the refusal's policy: raise, or return what the user's ``on_exceed`` callable gave.

    The result may be awaitable (an async callable); the caller awaits it, then hands it to
    :func:`accept`."""
    refusal = call.refusal
    assert refusal is not None
    if not callable(refusal.on_exceed):
        call.refuse(refusal.error)
        raise refusal.error
    try:
        return refusal.on_exceed(refusal.error)  # type: ignore[arg-type]
    except BaseException as exc:
        call.refuse(exc)
        raise


async def settle_async(call: LLMCall) -> Any:
    """:func:`settle` for async callers: an async ``on_exceed`` callable is awaited."""
    result = settle(call)
    if inspect.isawaitable(result):
        try:
            result = await result
        except BaseException as exc:
            call.refuse(exc)
            raise
    return result


def accept(call: LLMCall, fallback: Any) -> Any:
    """``None`` from ``on_exceed`` (or a breaker's ``fallback``): the call goes ahead (a budget's span
    marked). Anything else is the answer."""
    if fallback is None:
        refusal, call.refusal = call.refusal, None
        call.budget_exceeded = refusal is not None and refusal.reason == REASON_BUDGET
        return PROCEED
    call.refuse(None)
    return fallback


# --- 3. sending --------------------------------------------------------------------------------------
def run_sync(
    call: LLMCall,
    send: Callable[..., Any],
    args: tuple[Any, ...],
    send_kwargs: dict[str, Any],
    *,
    watch_parsing: bool = False,
    retry: Retry | None = None,
    as_written: dict[str, Any] | None = None,
    follow: Follow | None = None,
) -> Any:
    """The whole call for a synchronous SDK method: refusal, send, hand-off.

    ``watch_parsing``: the method runs the SDK's own parser over the response (``.parse()``), which may
    reject a response that already arrived: note it, so the failed span keeps its usage.
    ``retry``/``as_written``: on an error ``retry`` accepts, send ``as_written`` once more.
    ``follow``: the hand-off of a result whose stream or body sits inside it (see ``Follow``)."""
    if call.refusal is not None:
        fallback = accept(call, settle(call))
        if fallback is not PROCEED:
            return fallback
    token = attach(call)
    watch = _post_response.watch() if watch_parsing else None
    try:
        result = send(*args, **send_kwargs)
    except BaseException as exc:
        detach(token)
        _post_response.close(watch)
        if retry is None or as_written is None or not retry(call, exc):
            _post_response.fail(call, exc, watch)
            raise
        result = _RETRY
    else:
        detach(token)
        _post_response.close(watch)
    if result is _RETRY:  # outside the except block: the caller's exception is not chained to ours
        assert as_written is not None
        result = _send_once(call, send, args, as_written)
    if follow is not None:
        follow_inside(call, result, follow)
        return result
    proxy = hand_off(call, result, is_async=False)
    return result if proxy is None else proxy


async def run_async(
    call: LLMCall,
    send: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    send_kwargs: dict[str, Any],
    *,
    watch_parsing: bool = False,
    retry: Retry | None = None,
    as_written: dict[str, Any] | None = None,
) -> Any:
    """:func:`run_sync` for an ``async def`` SDK method."""
    if call.refusal is not None:
        fallback = accept(call, await settle_async(call))
        if fallback is not PROCEED:
            return fallback
    token = attach(call)
    watch = _post_response.watch() if watch_parsing else None
    try:
        result = await send(*args, **send_kwargs)
    except BaseException as exc:
        detach(token)
        _post_response.close(watch)
        if retry is None or as_written is None or not retry(call, exc):
            _post_response.fail(call, exc, watch)
            raise
        result = _RETRY
    else:
        detach(token)
        _post_response.close(watch)
    if result is _RETRY:
        assert as_written is not None
        result = await _send_once_async(call, send, args, as_written)
    proxy = hand_off(call, result, is_async=True)
    return result if proxy is None else proxy


_RETRY = object()


def _send_once(call: LLMCall, send: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # The one retry: the request exactly as the caller wrote it. Its failure is the caller's.
    token = attach(call)
    try:
        result = send(*args, **kwargs)
    except BaseException as exc:
        detach(token)
        call.fail(exc)
        raise
    detach(token)
    return result


async def _send_once_async(
    call: LLMCall, send: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    token = attach(call)
    try:
        result = await send(*args, **kwargs)
    except BaseException as exc:
        detach(token)
        call.fail(exc)
        raise
    detach(token)
    return result


def run_stream_request(call: LLMCall, request: Callable[[], Any], *, discard: Callable[[], None]) -> Any:
    """A stream helper's deferred request (Anthropic ``messages.stream``): refusal, send, stream proxy.

    ``discard`` drops the never-sent request when a refusal answers instead."""
    if call.refusal is not None:
        fallback = accept(call, settle(call))
        if fallback is not PROCEED:
            discard()
            return fallback
    try:
        raw = request()
    except BaseException as exc:
        call.fail(exc)
        raise
    return stream_proxy(call, raw, is_async=False)


async def run_stream_request_async(call: LLMCall, request: Awaitable[Any], *, discard: Callable[[], None]) -> Any:
    """:func:`run_stream_request` for an async helper, whose request is a coroutine."""
    if call.refusal is not None:
        try:
            fallback = accept(call, await settle_async(call))
        except BaseException:
            discard()  # the SDK's request coroutine, never awaited: nothing was sent
            raise
        if fallback is not PROCEED:
            discard()
            return fallback
    try:
        raw = await request
    except BaseException as exc:
        call.fail(exc)
        raise
    return stream_proxy(call, raw, is_async=True)


# --- 4. the hand-off ---------------------------------------------------------------------------------
def hand_off(call: LLMCall, result: Any, is_async: bool) -> Any:
    """End a non-streamed call, or return the proxy that will end it (None: return result as is)."""
    if call.stream and type(result).__name__ not in _RAW_RESPONSE_TYPES:
        return stream_proxy(call, result, is_async)
    try:
        if type(result).__name__ in _RAW_RESPONSE_TYPES:
            return _streams().RawResponseProxy(result, call, is_async)
        call.finish(result)
    except Exception as exc:
        record_internal_error("call end", exc)
        call.abandon()  # no proxy: end the span now
    return None


def follow_inside(call: LLMCall, result: Any, follow: Follow) -> None:
    """Hand off a result that holds its stream or body inside it; a failure ends the call now."""
    try:
        follow(call, result)
    except Exception as exc:
        record_internal_error("call end", exc)
        call.abandon()


def stream_proxy(call: LLMCall, raw: Any, is_async: bool) -> Any:
    """The proxy that follows ``raw`` and ends the call; the raw stream itself if making it fails."""
    try:
        streams = _streams()
        return streams.AsyncStreamProxy(raw, call) if is_async else streams.StreamProxy(raw, call)
    except Exception as exc:
        record_internal_error("stream proxy", exc)
        call.end_stream(False)
        return raw


_streaming_module: ModuleType | None = None


def _streams() -> ModuleType:
    # Imported on first use (by then instrumentation has loaded it): it pulls in wrapt, ~25 ms that a
    # bare `import llmwatch` should not pay. Kept once found: this runs on every call.
    global _streaming_module
    if _streaming_module is None:
        from llmwatch._core import _streaming

        _streaming_module = _streaming
    return _streaming_module


def attach(call: LLMCall) -> object | None:
    # Attached and detached in the same frame, around the SDK call only, so HTTP-level spans nest
    # under the LLM span. Never held across stream chunks (see _streaming.py).
    try:
        return otel_context.attach(trace.set_span_in_context(call.span))
    except Exception as exc:
        record_internal_error("context attach", exc)
        return None


def detach(token: object | None) -> None:
    if token is not None:
        try:
            otel_context.detach(token)  # type: ignore[arg-type]
        except Exception as exc:
            record_internal_error("context detach", exc)
