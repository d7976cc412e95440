"""Anthropic: ``messages.create`` (streaming and not) and the ``messages.stream(...)`` helper, sync and async.

``messages.count_tokens`` is deliberately not traced (it costs nothing and generates nothing).

One call, one span: the ``anthropic`` SDK (2.x) emits its own GenAI span per call through the global
TracerProvider. For every client llmwatch traces, the SDK's own tracer is turned off (its
``_tracer`` property answers ``None``), so the only span is llmwatch's, which carries cost and
attribution. Clients llmwatch does not trace keep the SDK's spans, except where the only provider
they would reach is the one llmwatch created (see :func:`after_uninstall`).

Wire facts (DESIGN.md): ``input_tokens`` excludes cache reads and writes, so
``gen_ai.usage.input_tokens`` is their sum; the nested ``cache_creation`` object splits 5-minute and
1-hour writes (priced differently); stream usage is cumulative (``message_start`` then the last
``message_delta``): the latest value wins, never a sum; streams interleave ``ping`` events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core import _lifecycle, _runtime
from llmwatch._core._call import LLMCall
from llmwatch._core._messages import (
    Blob,
    Message,
    Part,
    Reasoning,
    RequestContent,
    ServerToolCall,
    Text,
    ToolCall,
    ToolCallResponse,
    Unknown,
    Uri,
    size_of,
)
from llmwatch._core._post_response import hook_parsers
from llmwatch._health import record_internal_error
from llmwatch._instrument._base import (
    REGISTRY,
    Prepare,
    async_wrapper,
    begin_call,
    sync_wrapper,
)
from llmwatch._instrument._endpoints import endpoint_attributes
from llmwatch._instrument._fields import field, given, put_numbers, put_stop_sequences

PROVIDER = "anthropic"
# Numeric request parameters: (keyword, attribute).
_NUMBER_PARAMS = (
    ("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K),
)


class Messages:
    """``messages.create``, ``.parse`` (``parses``: the SDK parses the reply after it arrived) and the
    stream helper."""

    provider = PROVIDER
    operation = sc.OP_CHAT

    def __init__(self, *, parses: bool = False) -> None:
        self.parses = parses

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[Messages, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        endpoint_attributes(getattr(instance, "_client", None), attrs, settings, PROVIDER)
        put_numbers(attrs, kwargs, _NUMBER_PARAMS)
        put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, kwargs.get("stop_sequences"))
        structured = given(kwargs.get("output_format")) or given(field(kwargs.get("output_config"), "format"))
        attrs[sc.GEN_AI_OUTPUT_TYPE] = sc.OUTPUT_JSON if structured else sc.OUTPUT_TEXT
        stream = kwargs.get("stream") is True
        if stream:  # the spec: set iff streaming (llmwatch.stream says both ways)
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        attrs[sc.LLMWATCH_STREAM] = stream
        return self, attrs, dict(kwargs), stream, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        parts = ["system", _blocks_text(request.get("system"))]
        for message in _messages(request):
            parts.append(str(field(message, "role") or ""))
            parts.append(_blocks_text(field(message, "content")))
        return parts

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_tokens

        return count_tokens(call.model, "".join(self.prompt_parts(call.request)))

    # --- response --------------------------------------------------------------------------------
    def on_response(self, call: LLMCall, message: Any) -> None:
        if message is None:
            return
        call.response_id = field(message, "id")
        call.response_model = field(message, "model")
        choice = call.choice(0)
        for position, block in enumerate(field(message, "content") or ()):
            kind = field(block, "type")
            if kind == "text":
                choice.text.append(field(block, "text") or "")
            elif kind in ("thinking", "redacted_thinking"):
                choice.reasoning.append(field(block, "thinking") or "")
            elif kind in ("tool_use", "server_tool_use"):
                choice.tool_calls[position] = {
                    "id": field(block, "id"),
                    "name": field(block, "name"),
                    "arguments": field(block, "input"),
                    "server": kind == "server_tool_use",
                }
        choice.finish_reason = field(message, "stop_reason")
        record_usage(call, field(message, "usage"))

    def on_chunk(self, call: LLMCall, event: Any) -> bool:
        kind = field(event, "type")
        if kind == "content_block_delta":
            _record_delta(call, event)
        elif kind == "message_start":
            message = field(event, "message")
            call.response_id = field(message, "id")
            call.response_model = field(message, "model")
            record_usage(call, field(message, "usage"))
        elif kind == "content_block_start":
            block = field(event, "content_block")
            block_type = field(block, "type")
            if block_type in ("tool_use", "server_tool_use"):
                call.choice(0).tool_calls[field(event, "index", 0) or 0] = {
                    "id": field(block, "id"),
                    "name": field(block, "name"),
                    "arguments": "",
                    "server": block_type == "server_tool_use",
                }
        elif kind == "message_delta":
            reason = field(field(event, "delta"), "stop_reason")
            if reason:
                call.choice(0).finish_reason = reason
            record_usage(call, field(event, "usage"))
        return False

    # --- content (opt-in: read only when the call's policy captures content) ---------------------
    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        system = request.get("system")
        tools = request.get("tools")
        return RequestContent(
            messages=[_input_message(m) for m in _messages(request)],
            system=[Text(_blocks_text(system))] if given(system) and system else None,
            tools=[_tool_definition(t) for t in tools] if isinstance(tools, (list, tuple)) and tools else None,
        )


def record_usage(call: LLMCall, usage: Any) -> None:
    """Anthropic usage, cumulative: each field given replaces the previous value."""
    if usage is None:
        return
    known = call.input_tokens is not None
    uncached = (call.input_tokens or 0) - call.cache_read_tokens - call.cache_write_tokens
    value = field(usage, "input_tokens")
    if value is not None:
        uncached = value
    value = field(usage, "cache_read_input_tokens")
    if value is not None:
        call.cache_read_tokens = value
    value = field(usage, "cache_creation_input_tokens")
    if value is not None:
        call.cache_write_tokens = value
    split = field(usage, "cache_creation")
    if split is not None:
        call.cache_write_1h_tokens = field(split, "ephemeral_1h_input_tokens") or 0
    if known or field(usage, "input_tokens") is not None:
        call.input_tokens = uncached + call.cache_read_tokens + call.cache_write_tokens
    value = field(usage, "output_tokens")
    if value is not None:
        call.output_tokens = value
    tier = field(usage, "service_tier")  # "standard" | "priority" | "batch": prices the call
    if isinstance(tier, str) and tier:
        call.service_tier = tier


def _record_delta(call: LLMCall, event: Any) -> None:
    delta = field(event, "delta")
    kind = field(delta, "type")
    choice = call.choice(0)
    if kind == "text_delta":
        call.mark_first_output()
        choice.text.append(field(delta, "text") or "")
    elif kind == "input_json_delta":
        call.mark_first_output()
        tool = choice.tool_calls.get(field(event, "index", 0) or 0)
        if tool is not None:
            tool["arguments"] = str(tool["arguments"] or "") + (field(delta, "partial_json") or "")
    elif kind == "thinking_delta":
        call.mark_first_output()
        choice.reasoning.append(field(delta, "thinking") or "")


def _messages(request: Mapping[str, Any]) -> list[Any]:
    messages = request.get("messages")
    return list(messages) if isinstance(messages, (list, tuple)) else []


def _blocks_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(str(field(block, "text") or "") for block in content)
    return ""


def _tool_definition(tool: Any) -> dict[str, Any]:
    return {
        "type": "function",
        "name": field(tool, "name"),
        "description": field(tool, "description"),
        "parameters": field(tool, "input_schema"),
    }


def _input_message(message: Any) -> Message:
    content = field(message, "content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or ())
    return Message(str(field(message, "role") or "user"), [_input_part(b) for b in blocks])


def _input_part(block: Any) -> Part:
    kind = field(block, "type")
    if kind == "text":
        return Text(str(field(block, "text") or ""))
    if kind == "tool_use":
        return ToolCall(field(block, "id"), field(block, "name"), field(block, "input"))
    if kind == "server_tool_use":
        return ServerToolCall(field(block, "id"), field(block, "name"), field(block, "input"))
    if kind == "tool_result":
        return ToolCallResponse(
            field(block, "tool_use_id"), _blocks_text(field(block, "content")) or field(block, "content")
        )
    if kind in ("image", "document"):
        modality = "image" if kind == "image" else "file"
        source = field(block, "source")
        if field(source, "type") == "url":
            return Uri(modality, field(source, "url"))
        mime = field(source, "media_type")
        return Blob(modality, mime if isinstance(mime, str) else None, size_of(field(source, "data")))
    if kind == "thinking":
        return Reasoning(str(field(block, "thinking") or ""))
    return Unknown(str(kind or "unknown"))


MESSAGES = Messages()
MESSAGES_PARSE = Messages(parses=True)


def _stream_prepare(instance: Any, kwargs: Mapping[str, Any], settings: Settings) -> Any:
    handler, attrs, send, _, _ = MESSAGES.prepare(instance, kwargs, settings)
    attrs[sc.GEN_AI_REQUEST_STREAM] = True
    attrs[sc.LLMWATCH_STREAM] = True
    return handler, attrs, send, True, False


def _stream_helper_wrapper(is_async: bool) -> Callable[..., Any]:
    """``messages.stream(...)`` posts directly (not through ``create``): hook its manager's request.

    The manager calls its request on ``__enter__``; we replace that request with one that opens
    the span then and hands the SDK's ``MessageStream`` our stream proxy, so the span covers exactly
    the request and ends when the stream does.
    """

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        manager = wrapped(*args, **kwargs)
        try:
            _hook_manager(manager, instance, kwargs, is_async)
        except Exception as exc:
            record_internal_error("anthropic stream helper", exc)
        return manager

    return wrapper


def _hook_manager(manager: Any, instance: Any, kwargs: dict[str, Any], is_async: bool) -> None:
    attribute = f"_{type(manager).__name__}__api_request"
    original = getattr(manager, attribute, None)
    if original is None:
        return
    if is_async:

        async def request_async() -> Any:
            call, _ = begin_call(_stream_prepare, instance, kwargs)
            if call is None:
                return await original
            # the helper's stream is replaced by the fallback, if any; the SDK's request coroutine,
            # never awaited then, is closed: nothing was sent
            return await _lifecycle.run_stream_request_async(call, original, discard=original.close)

        setattr(manager, attribute, request_async())
    else:

        def request() -> Any:
            call, _ = begin_call(_stream_prepare, instance, kwargs)
            if call is None:
                return original()
            return _lifecycle.run_stream_request(call, original, discard=_nothing)

        setattr(manager, attribute, request)


def _nothing() -> None:
    return None


_MESSAGES_MODULES = (
    "anthropic.resources.messages",
    "anthropic.resources.beta.messages",
    # AnthropicBedrock and AnthropicVertex give ``beta.messages`` classes of their own whose methods
    # are the first-party functions copied at import: hooked too (never twice: see _instrument).
    "anthropic.lib.bedrock._beta_messages",
    "anthropic.lib.vertex._beta_messages",
)
# Every generating method of messages and beta.messages: the SDK's own spans are off for the clients
# we trace, so a method left out here would lose its span altogether. ``parse`` (structured outputs)
# posts on its own; ``stream`` (handler None) is the helper whose request runs at ``__enter__``.
# ``count_tokens`` generates nothing and gets no span.
TARGETS = tuple(
    (module, cls, method, handler, cls.startswith("Async"))
    for module in _MESSAGES_MODULES
    for cls in ("Messages", "AsyncMessages")
    for method, handler in (("create", MESSAGES), ("parse", MESSAGES_PARSE), ("stream", None))
)
# The SDK's post-parsers of parse() (module, function, keyword holding the raw response): hooked so a
# reply they reject keeps its usage (see _post_response.py).
PARSERS = (
    ("anthropic.resources.messages.messages", "parse_response", "response"),
    ("anthropic.resources.beta.messages.messages", "parse_beta_response", "response"),
)
CLIENT_CLASSES = (("anthropic", "Anthropic"), ("anthropic", "AsyncAnthropic"))
SDK_MODULE = "anthropic"
KNOWN_MAJOR_VERSIONS = (0, 1, 2)


def make_wrapper(handler: Any, is_async: bool) -> Any:
    if handler is None:
        return _stream_helper_wrapper(is_async)
    prepare: Prepare = handler.prepare
    wrap = async_wrapper if is_async else sync_wrapper
    return wrap(prepare, watch_parsing=handler.parses)


def extra_patches() -> list[tuple[Any, str, Any]]:
    """Silence the SDK's own spans where llmwatch's stand in for them (one call, one span); let the
    ``parse`` methods see the response the SDK's parser rejects (``_post_response.py``)."""
    patched = hook_parsers(PARSERS)
    return [*patched, *_patch_sdk_tracer(withhold_only=False)]


def after_uninstall() -> None:
    """Once every hook is restored: while the global provider is the one llmwatch created, keep
    withholding the SDK's spans from clients with no provider of their own. Without llmwatch there
    would be no provider for them at all, so ``uninstrument()`` must not start pouring them into
    llmwatch's exporter. With a provider the user installed, the SDK's own property is back as it was."""
    if _runtime.created_by_llmwatch(trace.get_tracer_provider()):
        _patch_sdk_tracer(withhold_only=True)
    else:
        restore_sdk_tracer()


def restore_sdk_tracer() -> None:
    """The SDK's own ``BaseClient._tracer`` back, the very property (after ``shutdown()``, in tests)."""
    if _SDK_TRACER is None:
        return
    from anthropic._base_client import BaseClient

    BaseClient._tracer = _SDK_TRACER  # type: ignore[method-assign,assignment]


_SDK_TRACER: property | None = None  # the SDK's own BaseClient._tracer, as found before any patch


def _patch_sdk_tracer(*, withhold_only: bool) -> list[tuple[Any, str, Any]]:
    """Wrap the SDK's ``BaseClient._tracer``; returns what to restore. The tracer is withheld from a
    client llmwatch traces (its span is the call's one span; not when ``withhold_only``), and from a
    client whose spans could only reach the provider llmwatch created."""
    global _SDK_TRACER
    try:
        from anthropic._base_client import BaseClient
    except ImportError:
        return []
    current = BaseClient.__dict__.get("_tracer")
    if _SDK_TRACER is None:
        if not isinstance(current, property) or current.fget is None:
            return []
        _SDK_TRACER = current
    getter = _SDK_TRACER.fget
    assert getter is not None

    def _tracer(self: Any) -> Any:
        if (not withhold_only and REGISTRY.is_traced(self)) or _only_llmwatch_would_receive(self):
            return None
        return getter(self)

    BaseClient._tracer = property(_tracer)  # type: ignore[method-assign,assignment]
    return [(BaseClient, "_tracer", _SDK_TRACER)]


def _only_llmwatch_would_receive(client: Any) -> bool:
    options = getattr(client, "_open_telemetry", None)
    if isinstance(options, Mapping) and options.get("tracer_provider") is not None:
        return False  # the user gave this client its own provider
    return _runtime.created_by_llmwatch(trace.get_tracer_provider())
