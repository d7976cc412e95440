"""What every provider module shares: client marking, opening a call, and the sync/async wrappers.

Reading SDK objects into data is ``_fields.py``'s; rendering content is ``_core/_messages.py``'s.

Hooking: each SDK method is wrapped once, at class level, with ``wrapt``. A wrapper traces a call
only when global instrumentation is on or the call's client was marked by
``llmwatch.instrument(client)``; so one code path serves both forms and a call never gets two spans.

The wrappers are shells: :func:`begin_call` opens the record (guarded: a failure means the call goes
untraced), then the call's whole life (verdict, refusal, send, hand-off) is ``_core/_lifecycle.py``'s,
the same for every SDK. One refusal is not passed on: a 400 for the ``stream_options`` llmwatch itself
added, which llmwatch caused; the call is then sent once more exactly as the caller wrote it, and that
outcome is theirs (``_stream_usage.py``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Link

from llmwatch import _attribution
from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core import _lifecycle, _runtime
from llmwatch._core._call import Handler, LLMCall, start_call
from llmwatch._health import record_internal_error
from llmwatch._instrument import _shadow, _stream_usage
from llmwatch._policy._budget import RULES
from llmwatch._policy._rollout_guard import CHALLENGER, CHAMPION
from llmwatch._policy._rollouts import ROLLOUTS, Mark

# OTel's "do not instrument" switches: the SDK's own key (set by exporters while they export), the
# plain-string key opentelemetry-instrumentation also sets, and the language-model one some use.
# llmwatch's own: set while an adapter above the SDKs (LiteLLM) sends a call it already traces, so the
# SDK it drives underneath (openai's ``embeddings.create``, Azure's ``chat.completions.create``) adds
# no second span; read with the others, in the one context read below.
TRACED_ABOVE = otel_context.create_key("llmwatch-traced-above")
_SUPPRESS_KEYS = (
    otel_context._SUPPRESS_INSTRUMENTATION_KEY,
    "suppress_instrumentation",
    "suppress_language_model_instrumentation",
    TRACED_ABOVE,
)


class Registry:
    """Which clients are traced: all of them (global instrumentation) or the marked ones."""

    def __init__(self) -> None:
        self.global_enabled = False
        self._marked: weakref.WeakSet[Any] = weakref.WeakSet()
        self._provider_names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self.has_provider_names = False  # read per call: no weak-dict lookup unless a name was given

    def mark(self, client: Any, provider: str | None = None) -> None:
        self._marked.add(client)
        if provider is not None:
            self._provider_names[client] = provider
            self.has_provider_names = True

    def provider_name(self, client: Any) -> str | None:
        """The provider ``instrument(client, provider=...)`` named for this client, if any."""
        try:
            return self._provider_names.get(client)
        except TypeError:  # unhashable
            return None

    def is_traced(self, client: Any) -> bool:
        if self.global_enabled:
            return True
        return self.is_marked(client)

    def is_marked(self, client: Any) -> bool:
        """Given to ``instrument()`` (or copied from a client that was)."""
        try:
            return client in self._marked
        except TypeError:  # an unhashable client cannot have been marked
            return False

    def any_marked(self) -> bool:
        return len(self._marked) > 0

    def clear(self) -> None:
        """Forget every marked client (tests)."""
        self._marked = weakref.WeakSet()
        self._provider_names = weakref.WeakKeyDictionary()
        self.has_provider_names = False


REGISTRY = Registry()

# Prepares one call from (SDK resource, request kwargs, the settings in force): returns (handler,
# request attributes, kwargs to send, stream?, hide usage?). Adapters read settings only from here.
Prepare = Callable[[Any, Mapping[str, Any], Settings], tuple[Handler, dict[str, Any], dict[str, Any], bool, bool]]


def _suppressed() -> bool:
    current = otel_context.get_current()  # one context read, then plain dict lookups
    return bool(current) and any(current.get(key) for key in _SUPPRESS_KEYS)


def traced(instance: Any) -> bool:
    """Whether a call on this SDK resource is ours to record (its client is traced, nothing suppresses
    instrumentation here): for hooks that record something other than one call (the Batch API)."""
    return REGISTRY.is_traced(getattr(instance, "_client", None)) and not _suppressed()


def begin_call(
    prepare: Prepare,
    instance: Any,
    kwargs: dict[str, Any],
    client_attribute: str = "_client",
    *,
    client: Any = None,
) -> tuple[LLMCall | None, dict[str, Any]]:
    """Open a call record and apply the rules' verdict, or (None, kwargs) when it is not ours to trace.

    ``client``: the client the call is made on, whose mark decides; by default the hooked instance's
    ``client_attribute`` (openai's and anthropic's resources: ``_client``; google-genai's ``Models``:
    ``_api_client``). A hook on the client itself (botocore) passes it."""
    if client is None:
        client = getattr(instance, client_attribute, None)
    if not REGISTRY.is_traced(client) or _suppressed():
        return None, kwargs
    try:
        rt = _runtime.CURRENT
        request, rollout = kwargs, None
        if ROLLOUTS.active:
            request, rollout = _rollout_request(prepare, kwargs)
        handler, attrs, send_kwargs, stream, hide_usage = prepare(instance, request, rt.settings)
        links = None
        if rollout is not None:
            attrs[sc.LLMWATCH_ROLLOUT_NAME], attrs[sc.LLMWATCH_ROLLOUT_ARM] = rollout.rollout.name, rollout.arm
            if rollout.shadow:
                attrs[sc.LLMWATCH_ROLLOUT_SHADOW] = True
                shadowing = _shadow.SHADOWING.get()
                links = [Link(shadowing[1])] if shadowing is not None else None
        call = start_call(rt, handler, request, attrs, stream=stream, links=links)
    except Exception as exc:
        record_internal_error("call start", exc)
        return None, kwargs
    call.rollout = rollout
    call.hide_usage_chunk = hide_usage
    if RULES.active:
        _lifecycle.check(call)
    return call, send_kwargs


def _rollout_request(prepare: Prepare, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Mark | None]:
    """The request as the call's rollout arm sends it (its overrides merged in), and its mark.

    Only generation calls take part (chat, messages, responses, generate_content, converse): an
    embeddings call in the same feature is not a candidate for a chat model's override. A shadow call
    (sent by ``_shadow``) is already the challenger's request: it is only marked."""
    handler = getattr(prepare, "__self__", None)
    if getattr(handler, "operation", None) not in ROLLOUT_OPERATIONS and not getattr(handler, "takes_rollouts", False):
        return kwargs, None
    shadowing = _shadow.SHADOWING.get()
    if shadowing is not None:
        return kwargs, Mark(shadowing[0], CHALLENGER, shadow=True)
    attribution = _attribution.current()
    rollout = ROLLOUTS.for_feature(attribution.feature)
    if rollout is None:
        return kwargs, None
    arm = rollout.arm_for(attribution.user)
    if rollout.mode == "shadow":  # the caller always gets the champion; the share is shadowed
        request = {**kwargs, **rollout.champion} if rollout.champion else kwargs
        shadow = _shadow.shadow_request(kwargs, rollout.challenger) if arm == CHALLENGER else None
        return request, Mark(rollout, CHAMPION, shadow)
    overrides = rollout.overrides(arm)
    return ({**kwargs, **overrides} if overrides else kwargs), Mark(rollout, arm)


# Generation calls; a handler of another operation that generates text says so (``takes_rollouts``:
# Gemini's generate_content, whose operation name images and audio share).
ROLLOUT_OPERATIONS = frozenset({sc.OP_CHAT, sc.OP_TEXT_COMPLETION})


def start_shadow(call: LLMCall, send: Callable[[], Any], *, is_async: bool) -> None:
    """Send the rollout's shadow call in the background (guarded: the caller's call is unaffected)."""
    assert call.rollout is not None
    try:
        champion = call.span.get_span_context()
        if is_async:
            _shadow.start_async(send, call.rollout.rollout, champion)
        else:
            _shadow.start_sync(send, call.rollout.rollout, champion)
    except Exception as exc:
        record_internal_error("shadow call", exc)


def _stream_usage_retry(instance: Any) -> _lifecycle.Retry:
    def retry(call: LLMCall, exc: BaseException) -> bool:
        return _stream_usage.refused(call, instance, exc)

    return retry


def sync_wrapper(
    prepare: Prepare, *, watch_parsing: bool = False, client_attribute: str = "_client"
) -> Callable[..., Any]:
    """A wrapt wrapper for a synchronous SDK method (``watch_parsing``: see ``_lifecycle.run_sync``;
    ``client_attribute``: see :func:`begin_call`)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call, send_kwargs = begin_call(prepare, instance, kwargs, client_attribute)
        if call is None:
            return wrapped(*args, **kwargs)
        if call.rollout is not None and call.rollout.shadow_request is not None:
            shadow = call.rollout.shadow_request
            start_shadow(call, lambda: wrapper(wrapped, instance, args, shadow), is_async=False)
        if not call.hide_usage_chunk:
            return _lifecycle.run_sync(call, wrapped, args, send_kwargs, watch_parsing=watch_parsing)
        retry = _stream_usage_retry(instance)  # llmwatch added stream_options: a refusal of it is ours
        return _lifecycle.run_sync(
            call, wrapped, args, send_kwargs, watch_parsing=watch_parsing, retry=retry, as_written=dict(call.request)
        )

    return wrapper


def async_wrapper(
    prepare: Prepare, *, watch_parsing: bool = False, client_attribute: str = "_client"
) -> Callable[..., Any]:
    """A wrapt wrapper for an ``async def`` SDK method (see :func:`sync_wrapper`)."""

    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call, send_kwargs = begin_call(prepare, instance, kwargs, client_attribute)
        if call is None:
            return await wrapped(*args, **kwargs)
        if call.rollout is not None and call.rollout.shadow_request is not None:
            shadow = call.rollout.shadow_request
            start_shadow(call, lambda: wrapper(wrapped, instance, args, shadow), is_async=True)
        if not call.hide_usage_chunk:
            return await _lifecycle.run_async(call, wrapped, args, send_kwargs, watch_parsing=watch_parsing)
        retry = _stream_usage_retry(instance)
        return await _lifecycle.run_async(
            call, wrapped, args, send_kwargs, watch_parsing=watch_parsing, retry=retry, as_written=dict(call.request)
        )

    return wrapper
