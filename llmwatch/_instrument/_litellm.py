"""LiteLLM (``pip install litellm``): ``completion``, ``acompletion``, ``embedding``, ``aembedding``,
streams included, for every provider LiteLLM routes to.

LiteLLM is the SDK here, so unlike the other bridges this one opens LLM spans: through the one
lifecycle every SDK adapter uses (``_base.begin_call``, ``_core/_lifecycle.run_sync``/``run_async``),
so budgets and kill switches refuse before any I/O (``BudgetExceeded`` from ``litellm.completion``),
streams are followed by the same proxies, and the reading of requests and replies is the OpenAI
handlers' (``_litellm_calls.py``: LiteLLM answers in the OpenAI shape for every provider).

Why the functions and not the SDKs underneath: LiteLLM drives the openai SDK through the client's
low-level ``post("/chat/completions")`` (so the SDK-level hook never fires), and most providers
(Anthropic included) over its own httpx code, never their SDK; recent releases may serve a call
natively (the ``rust_bridge`` dispatch in front of ``litellm.main``). Only the public functions see
every call. They are module attributes wrapped in place, wherever LiteLLM defines or re-exports
them (``litellm``, ``litellm.main``, the dispatch modules); ``litellm.Router`` and the frameworks
(LangChain's ``ChatLiteLLM``, pydantic-ai) look them up as ``litellm.completion`` at call time, so
they are traced too. Code that copied a function before llmwatch was configured (``from litellm
import completion`` at import) keeps the original: configure llmwatch first.

Never two spans: while a traced LiteLLM call is being sent, ``_base.TRACED_ABOVE`` is set in the OTel
context; ``begin_call`` reads it with the other suppression keys, so neither LiteLLM's own inner calls
(``acompletion`` runs ``completion`` in a thread, with a copied context) nor the openai SDK methods
some routes do call (``embeddings.create`` with ``encoding_format``, Azure's
``chat.completions.create``) open a second span. The key is set around the send only: an
``on_exceed`` fallback that calls an SDK itself is still traced.

Not traced: calls with ``mock_response``/``mock_tool_calls`` (no model is called), positional
arguments beyond the first two, and ``completion(acompletion=True)`` at the sync entry (it hands the
call to ``acompletion``, which traces it).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from opentelemetry import context as otel_context

from llmwatch._core import _lifecycle, _runtime
from llmwatch._core._call import LLMCall
from llmwatch._instrument import _litellm_calls as calls
from llmwatch._instrument import _stream_usage
from llmwatch._instrument._base import TRACED_ABOVE, begin_call, start_shadow

FRAMEWORK_MODULE = "litellm"

# (module, attribute, handler, async?): where LiteLLM defines or re-exports its entry points. The same
# function object found in several places gets one wrapper.
_TARGETS: tuple[tuple[str, str, Any, bool], ...] = tuple(
    (module, attribute, handler, is_async)
    for module, names in (
        ("litellm", ("completion", "acompletion", "embedding", "aembedding")),
        ("litellm.main", ("completion", "acompletion", "embedding", "aembedding")),
        ("litellm.chat_completions", ("completion", "acompletion")),
        ("litellm.chat_completions.dispatch", ("completion", "acompletion")),
        ("litellm.embeddings.dispatch", ("embedding", "aembedding")),
    )
    for attribute in names
    for handler, is_async in ((calls.CHAT if "completion" in attribute else calls.EMBEDDINGS, attribute[0] == "a"),)
)
# The positional parameters llmwatch reads (``completion(model, messages)``); the async flag the sync
# entry hands off with.
_POSITIONAL = {id(calls.CHAT): ("model", "messages"), id(calls.EMBEDDINGS): ("model", "input")}
_ASYNC_FLAG = {id(calls.CHAT): "acompletion", id(calls.EMBEDDINGS): "aembedding"}
_NOT_MODEL_CALLS = ("mock_response", "mock_tool_calls")
_MARK = "__llmwatch_litellm__"

_patched: list[tuple[ModuleType, str, Any, Any]] = []  # (module, attribute, original, wrapper)


def install(module: ModuleType) -> None:
    """Wrap LiteLLM's entry points (idempotent)."""
    if _patched:
        return
    made: dict[int, Callable[..., Any]] = {}
    for name, attribute, handler, is_async in _TARGETS:
        target = sys.modules.get(name)
        original = getattr(target, attribute, None) if target is not None else None
        if target is None or not callable(original) or getattr(original, _MARK, False):
            continue
        wrapper = made.get(id(original))
        if wrapper is None:
            make = _async_wrapper if is_async else _sync_wrapper
            wrapper = made[id(original)] = make(original, handler, module)
        setattr(target, attribute, wrapper)
        _patched.append((target, attribute, original, wrapper))


def uninstall() -> None:
    """Put LiteLLM's own functions back (where nobody replaced ours since)."""
    for target, attribute, original, wrapper in reversed(_patched):
        if getattr(target, attribute, None) is wrapper:
            setattr(target, attribute, original)
    _patched.clear()
    calls.forget()


def _request(handler: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The call's arguments by name, or None when it is not ours to trace."""
    if kwargs.get(_ASYNC_FLAG[id(handler)]) is True or any(key in kwargs for key in _NOT_MODEL_CALLS):
        return None
    if not args:
        return kwargs
    names = _POSITIONAL[id(handler)]
    if len(args) > len(names):
        return None
    return {**dict(zip(names, args, strict=False)), **kwargs}


def _retry(request: dict[str, Any]) -> _lifecycle.Retry:
    # Only for a stream llmwatch asked usage of: a server refusing that field gets the call as written.
    def retry(call: LLMCall, exc: BaseException) -> bool:
        return _stream_usage.refused(call, calls.route_of(request, _runtime.CURRENT.settings), exc)

    return retry


def _sync_wrapper(original: Callable[..., Any], handler: Any, litellm: ModuleType) -> Callable[..., Any]:
    def send(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(otel_context.set_value(TRACED_ABOVE, True))
        try:
            return original(*args, **kwargs)
        finally:
            otel_context.detach(token)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = _request(handler, args, kwargs)
        if request is None:
            return original(*args, **kwargs)
        call, send_kwargs = begin_call(handler.prepare, None, request, client=litellm)
        if call is None:
            return original(*args, **kwargs)
        if call.rollout is not None and call.rollout.shadow_request is not None:
            shadow = call.rollout.shadow_request
            start_shadow(call, lambda: wrapper(**shadow), is_async=False)
        if not call.hide_usage_chunk:
            return _lifecycle.run_sync(call, send, (), send_kwargs)
        as_written = dict(call.request)  # the call as its rollout arm wrote it (the caller's, without one)
        return _lifecycle.run_sync(call, send, (), send_kwargs, retry=_retry(request), as_written=as_written)

    setattr(wrapper, _MARK, True)
    return wrapper


def _async_wrapper(original: Callable[..., Any], handler: Any, litellm: ModuleType) -> Callable[..., Any]:
    async def send(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(otel_context.set_value(TRACED_ABOVE, True))
        try:
            return await original(*args, **kwargs)
        finally:
            otel_context.detach(token)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = _request(handler, args, kwargs)
        if request is None:
            return await original(*args, **kwargs)
        call, send_kwargs = begin_call(handler.prepare, None, request, client=litellm)
        if call is None:
            return await original(*args, **kwargs)
        if call.rollout is not None and call.rollout.shadow_request is not None:
            shadow = call.rollout.shadow_request
            start_shadow(call, lambda: wrapper(**shadow), is_async=True)
        if not call.hide_usage_chunk:
            return await _lifecycle.run_async(call, send, (), send_kwargs)
        as_written = dict(call.request)
        return await _lifecycle.run_async(call, send, (), send_kwargs, retry=_retry(request), as_written=as_written)

    setattr(wrapper, _MARK, True)
    return wrapper
