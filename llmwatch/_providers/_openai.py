"""OpenAI: ``chat.completions.create``, ``responses.create`` and ``embeddings.create``, sync and async.

Covers streaming, ``with_raw_response``/``with_streaming_response`` and the
``chat.completions.stream(...)`` helper (it calls ``create(stream=True)`` on ``__enter__``, so its span
opens there). Wire facts this module relies on (DESIGN.md, "Provider wire facts"):

- ``prompt_tokens`` already includes ``cached_tokens`` and ``completion_tokens`` includes
  ``reasoning_tokens``: recorded as is, never added twice.
- Chat streams report usage only when asked (``stream_options.include_usage``): we ask when the
  user did not and hide that one extra chunk (``choices == []``); a chunk with choices is never hidden.
- With ``n > 1`` chunks of different choices interleave; finish reasons are kept per choice.
- The Responses API reports usage only in ``response.completed`` (or ``.incomplete``/``.failed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter_ns
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._call import Choice, LLMCall
from llmwatch._content import ContentPolicy
from llmwatch._providers._base import (
    async_wrapper,
    field,
    fields_of,
    given,
    parse_arguments,
    put_number,
    put_numbers,
    put_stop_sequences,
    semconv_finish_reason,
    server_attributes,
    sync_wrapper,
    text_of,
    text_part,
)

PROVIDER = "openai"
_CHAT_NUMBER_PARAMS = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("seed", sc.GEN_AI_REQUEST_SEED),
)


class ChatCompletions:
    """``chat.completions.create``."""

    provider = PROVIDER
    operation = sc.OP_CHAT

    # --- request ---------------------------------------------------------------------------------
    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any]
    ) -> tuple[ChatCompletions, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        server_attributes(getattr(instance, "_client", None), attrs)
        max_tokens = kwargs.get("max_completion_tokens")
        put_number(attrs, sc.GEN_AI_REQUEST_MAX_TOKENS, max_tokens if given(max_tokens) else kwargs.get("max_tokens"))
        put_numbers(attrs, kwargs, _CHAT_NUMBER_PARAMS)
        stop = kwargs.get("stop")
        if stop is not None:
            put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, stop)
        n = kwargs.get("n")
        if isinstance(n, int) and n != 1:
            attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
        attrs[sc.GEN_AI_OUTPUT_TYPE] = _output_type(kwargs.get("response_format"))
        stream = kwargs.get("stream") is True
        attrs[sc.GEN_AI_REQUEST_STREAM] = stream
        attrs[sc.LLMWATCH_STREAM] = stream
        send_kwargs, hide_usage = _with_stream_usage(kwargs) if stream else (dict(kwargs), False)
        return self, attrs, send_kwargs, stream, hide_usage

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        parts: list[str] = []
        for message in _messages(request):
            parts.append(str(field(message, "role") or ""))
            parts.append(text_of(field(message, "content")))
        return parts

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._tokens import count_message_tokens

        messages = [m for m in _messages(call.request) if isinstance(m, Mapping)]
        return count_message_tokens(call.model, messages)

    # --- response --------------------------------------------------------------------------------
    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        fields = fields_of(response)
        call.response_id = fields.get("id")
        call.response_model = fields.get("model")
        for raw in fields.get("choices") or ():
            choice_fields = fields_of(raw)
            choice = call.choice(choice_fields.get("index") or 0)
            message = fields_of(choice_fields.get("message"))
            content = message.get("content")
            if content:
                choice.text.append(content)
            refusal = message.get("refusal")
            if refusal:
                choice.text.append(refusal)
            for position, tool in enumerate(message.get("tool_calls") or ()):
                function = field(tool, "function")
                choice.tool_calls[position] = {
                    "id": field(tool, "id"),
                    "name": field(function, "name"),
                    "arguments": field(function, "arguments") or "",
                }
            choice.finish_reason = choice_fields.get("finish_reason")
        record_chat_usage(call, fields.get("usage"))

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        fields = fields_of(chunk)  # per chunk: one view, then dict lookups (see _base.fields_of)
        if call.response_id is None:
            call.response_id = fields.get("id")
        if call.response_model is None:  # a stream's chunks all name the same model
            call.response_model = fields.get("model") or None
        choices = fields.get("choices")
        usage = fields.get("usage")
        if usage is None and call.hide_usage_chunk:
            _forget_requested_usage_field(chunk)
        if not choices:
            if usage is not None:
                record_chat_usage(call, usage)
                return call.hide_usage_chunk  # hide only the chunk we asked for
            return False
        for raw in choices:
            _record_chat_delta(call, raw)
        if usage is not None:  # some compatible servers put usage on the last content chunk
            record_chat_usage(call, usage)
        return False

    # --- content (opt-in) ------------------------------------------------------------------------
    def content_attributes(self, call: LLMCall, attrs: dict[str, Any], policy: ContentPolicy) -> None:
        messages = [_input_message(m, policy.text) for m in _messages(call.request)]
        attrs[sc.GEN_AI_INPUT_MESSAGES] = policy.json(messages)
        system = [
            text_part(policy.text(text_of(field(m, "content"))))
            for m in _messages(call.request)
            if field(m, "role") in ("system", "developer")
        ]
        if system:
            attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = policy.json(system)
        put_tool_definitions(call, attrs, policy)
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = policy.json(output_messages(call, policy.text))


def _with_stream_usage(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Ask for the usage chunk when the user did not (and remember to hide it from them)."""
    send = dict(kwargs)
    options = kwargs.get("stream_options")
    if isinstance(options, Mapping):
        if "include_usage" in options:
            return send, False
        send["stream_options"] = {**options, "include_usage": True}
    else:
        send["stream_options"] = {"include_usage": True}
    return send, True


def _forget_requested_usage_field(chunk: Any) -> None:
    """Undo the one trace our ``include_usage`` leaves on the chunks the user sees.

    Asked for usage, the API sends ``"usage": null`` on every content chunk, so pydantic marks the
    field as set and ``chunk.to_dict()``/``to_json()`` (which drop unset fields) would show a key the
    user's own request never produced.
    """
    fields_set = getattr(chunk, "__pydantic_fields_set__", None)
    if fields_set is not None:
        fields_set.discard("usage")


def _record_chat_delta(call: LLMCall, raw: Any) -> None:
    # The per-chunk path of every chat stream: plain lookups and inlined helpers (it was ~12 µs a chunk
    # through field()'s exception path and small methods; see benchmarks/streaming.py).
    fields = fields_of(raw)
    index = fields.get("index") or 0
    choice = call.choices.get(index) or call.choice(index)
    delta_object = fields.get("delta")
    delta = fields_of(delta_object)
    content = delta.get("content")
    if content:
        if call.first_chunk_ns is None:
            call.first_chunk_ns = perf_counter_ns()
        choice.text.append(content)
    else:  # a delta carries text, or one of these (reasoning, refusal, tool calls), not both
        _record_rare_delta(call, choice, delta, delta_object)
    reason = fields.get("finish_reason")
    if reason:
        choice.finish_reason = reason


def _record_rare_delta(call: LLMCall, choice: Choice, delta: Mapping[str, Any], delta_object: Any) -> None:
    # Compatible servers' reasoning arrives as undeclared (extra) fields: field() reads those too.
    reasoning = field(delta_object, "reasoning_content") or field(delta_object, "reasoning")
    if reasoning and isinstance(reasoning, str):
        call.mark_first_output()
        choice.reasoning.append(reasoning)
    refusal = delta.get("refusal")
    if refusal:
        call.mark_first_output()
        choice.text.append(refusal)
    tools = delta.get("tool_calls")
    if tools:
        call.mark_first_output()
        for tool in tools:
            _merge_tool_delta(choice, tool)


def _merge_tool_delta(choice: Choice, tool: Any) -> None:
    index = field(tool, "index", 0) or 0
    entry = choice.tool_calls.get(index)
    if entry is None:
        entry = choice.tool_calls[index] = {"id": None, "name": None, "arguments": ""}
    if field(tool, "id"):
        entry["id"] = field(tool, "id")
    function = field(tool, "function")
    if field(function, "name"):
        entry["name"] = field(function, "name")
    arguments = field(function, "arguments")
    if arguments:
        entry["arguments"] += arguments


def record_chat_usage(call: LLMCall, usage: Any) -> None:
    """Chat Completions usage; ``prompt_tokens`` includes cached, ``completion_tokens`` reasoning."""
    if usage is None:
        return
    fields = fields_of(usage)
    call.input_tokens = fields.get("prompt_tokens") or 0
    call.output_tokens = fields.get("completion_tokens") or 0
    call.cache_read_tokens = fields_of(fields.get("prompt_tokens_details")).get("cached_tokens") or 0
    call.reasoning_tokens = fields_of(fields.get("completion_tokens_details")).get("reasoning_tokens") or 0


def _messages(request: Mapping[str, Any]) -> list[Any]:
    messages = request.get("messages")
    return list(messages) if isinstance(messages, (list, tuple)) else []


def _output_type(response_format: Any) -> str:
    kind = field(response_format, "type") if given(response_format) else None
    if kind in ("json_object", "json_schema"):
        return sc.OUTPUT_JSON
    if isinstance(response_format, type):  # a pydantic model passed to .parse()/.stream()
        return sc.OUTPUT_JSON
    return sc.OUTPUT_TEXT


def _input_message(message: Any, text: Any) -> dict[str, Any]:
    role = field(message, "role") or "user"
    parts: list[dict[str, Any]] = []
    content = field(message, "content")
    if role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": field(message, "tool_call_id"), "response": text(text_of(content))}
        )
    elif isinstance(content, str):
        parts.append(text_part(text(content)))
    elif isinstance(content, (list, tuple)):
        parts.extend(_content_part(part, text) for part in content)
    for tool in field(message, "tool_calls") or ():
        function = field(tool, "function")
        parts.append(
            {
                "type": "tool_call",
                "id": field(tool, "id"),
                "name": field(function, "name"),
                "arguments": _redacted_arguments(field(function, "arguments"), text),
            }
        )
    result: dict[str, Any] = {"role": role, "parts": parts}
    if field(message, "name"):
        result["name"] = field(message, "name")
    return result


def _content_part(part: Any, text: Any) -> dict[str, Any]:
    kind = field(part, "type")
    if kind == "text":
        return text_part(text(str(field(part, "text") or "")))
    if kind == "image_url":
        url = str(field(field(part, "image_url"), "url") or "")
        if url.startswith("data:"):
            return {"type": "blob", "modality": "image", "mime_type": url[5:].split(";", 1)[0], "content": "[omitted]"}
        return {"type": "uri", "modality": "image", "uri": text(url)}
    if kind == "input_audio":
        return {"type": "blob", "modality": "audio", "content": "[omitted]"}
    if kind == "file":
        return {"type": "file", "modality": "file", "file_id": field(field(part, "file"), "file_id")}
    return {"type": str(kind or "unknown")}


def _redacted_arguments(arguments: Any, text: Any) -> Any:
    parsed = parse_arguments(arguments)
    if isinstance(parsed, str):
        return text(parsed)
    from llmwatch._runtime import CURRENT

    policy = CURRENT.content
    return policy.any_value(parsed) if policy is not None else parsed


def output_messages(call: LLMCall, text: Any) -> list[dict[str, Any]]:
    """One semconv output message per choice, partial for an unfinished stream."""
    messages = []
    failed = call.error is not None or call.stream_completed is False
    for index in sorted(call.choices):
        choice = call.choices[index]
        parts: list[dict[str, Any]] = []
        if choice.reasoning:
            parts.append({"type": "reasoning", "content": text("".join(choice.reasoning))})
        if choice.text:
            parts.append(text_part(text("".join(choice.text))))
        for position in sorted(choice.tool_calls):
            tool = choice.tool_calls[position]
            parts.append(
                {
                    "type": "tool_call",
                    "id": tool.get("id"),
                    "name": tool.get("name"),
                    "arguments": _redacted_arguments(tool.get("arguments"), text),
                }
            )
        messages.append(
            {
                "role": choice.role,
                "parts": parts,
                "finish_reason": semconv_finish_reason(choice.finish_reason, failed),
            }
        )
    return messages


def put_tool_definitions(call: LLMCall, attrs: dict[str, Any], policy: ContentPolicy) -> None:
    tools = call.request.get("tools")
    if not isinstance(tools, (list, tuple)) or not tools:
        return
    attrs[sc.GEN_AI_TOOL_DEFINITIONS] = policy.json(policy.any_value([_tool_definition(t) for t in tools]))


def _tool_definition(tool: Any) -> Any:
    function = field(tool, "function")
    if function is not None:
        return {
            "type": "function",
            "name": field(function, "name"),
            "description": field(function, "description"),
            "parameters": field(function, "parameters"),
        }
    if isinstance(tool, Mapping):
        return dict(tool)
    return str(tool)


class Responses:
    """``responses.create`` (operation ``chat``, as DESIGN.md fixes)."""

    provider = PROVIDER
    operation = sc.OP_CHAT

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any]
    ) -> tuple[Responses, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        server_attributes(getattr(instance, "_client", None), attrs)
        put_number(attrs, sc.GEN_AI_REQUEST_MAX_TOKENS, kwargs.get("max_output_tokens"))
        put_number(attrs, sc.GEN_AI_REQUEST_TEMPERATURE, kwargs.get("temperature"))
        put_number(attrs, sc.GEN_AI_REQUEST_TOP_P, kwargs.get("top_p"))
        text_format = field(kwargs.get("text"), "format") if given(kwargs.get("text")) else None
        attrs[sc.GEN_AI_OUTPUT_TYPE] = _output_type(text_format)
        stream = kwargs.get("stream") is True
        attrs[sc.GEN_AI_REQUEST_STREAM] = stream
        attrs[sc.LLMWATCH_STREAM] = stream
        return self, attrs, dict(kwargs), stream, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        parts: list[str] = []
        instructions = request.get("instructions")
        if isinstance(instructions, str):
            parts += ["instructions", instructions]
        for item in _response_input(request):
            parts.append(str(field(item, "role") or field(item, "type") or ""))
            parts.append(_item_text(item))
        return parts

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._tokens import count_tokens

        return count_tokens(call.model, "".join(self.prompt_parts(call.request)))

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        call.response_id = field(response, "id")
        call.response_model = field(response, "model")
        choice = call.choice(0)
        choice.text.clear()
        choice.reasoning.clear()
        choice.tool_calls.clear()
        for item in field(response, "output") or ():
            _record_output_item(choice, item)
        status = field(response, "status")
        reason = field(field(response, "incomplete_details"), "reason")
        choice.finish_reason = reason or status
        usage = field(response, "usage")
        if usage is not None:
            call.input_tokens = field(usage, "input_tokens") or 0
            call.output_tokens = field(usage, "output_tokens") or 0
            call.cache_read_tokens = field(field(usage, "input_tokens_details"), "cached_tokens") or 0
            call.reasoning_tokens = field(field(usage, "output_tokens_details"), "reasoning_tokens") or 0

    def on_chunk(self, call: LLMCall, event: Any) -> bool:
        kind = field(event, "type") or ""
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.on_response(call, field(event, "response"))
        elif kind == "response.output_text.delta":
            call.mark_first_output()
            call.choice(0).text.append(field(event, "delta") or "")
        elif kind.startswith("response.reasoning") and kind.endswith(".delta"):
            call.mark_first_output()
            call.choice(0).reasoning.append(str(field(event, "delta") or ""))
        elif kind == "response.function_call_arguments.delta":
            call.mark_first_output()
        elif kind == "response.created":
            response = field(event, "response")
            call.response_id = field(response, "id")
            call.response_model = field(response, "model")
        return False

    def content_attributes(self, call: LLMCall, attrs: dict[str, Any], policy: ContentPolicy) -> None:
        instructions = call.request.get("instructions")
        if isinstance(instructions, str):
            attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = policy.json([text_part(policy.text(instructions))])
        messages = [
            {"role": str(field(item, "role") or "user"), "parts": [text_part(policy.text(_item_text(item)))]}
            for item in _response_input(call.request)
        ]
        attrs[sc.GEN_AI_INPUT_MESSAGES] = policy.json(messages)
        put_tool_definitions(call, attrs, policy)
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = policy.json(output_messages(call, policy.text))


def _response_input(request: Mapping[str, Any]) -> list[Any]:
    value = request.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value) if isinstance(value, (list, tuple)) else []


def _item_text(item: Any) -> str:
    content = field(item, "content")
    if isinstance(content, (list, tuple)):
        return "".join(str(field(part, "text") or "") for part in content)
    if content is not None:
        return str(content)
    return str(field(item, "output") or field(item, "arguments") or "")


def _record_output_item(choice: Choice, item: Any) -> None:
    kind = field(item, "type")
    if kind == "message":
        for part in field(item, "content") or ():
            text = field(part, "text") or field(part, "refusal")
            if text:
                choice.text.append(text)
    elif kind == "function_call":
        choice.tool_calls[len(choice.tool_calls)] = {
            "id": field(item, "call_id"),
            "name": field(item, "name"),
            "arguments": field(item, "arguments") or "",
        }
    elif kind == "reasoning":
        for part in field(item, "summary") or ():
            text = field(part, "text")
            if text:
                choice.reasoning.append(text)


class Embeddings:
    """``embeddings.create``: input tokens only."""

    provider = PROVIDER
    operation = sc.OP_EMBEDDINGS

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any]
    ) -> tuple[Embeddings, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        server_attributes(getattr(instance, "_client", None), attrs)
        encoding = kwargs.get("encoding_format")
        if isinstance(encoding, str):
            attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [encoding]
        return self, attrs, dict(kwargs), False, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        value = request.get("input")
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)):
            return [item if isinstance(item, str) else str(item) for item in value]
        return []

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._tokens import count_tokens

        total, source = 0, sc.USAGE_SOURCE_TIKTOKEN
        for text in self.prompt_parts(call.request):
            count, source = count_tokens(call.model, text)
            total += count
        return total, source

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        call.response_model = field(response, "model")
        usage = field(response, "usage")
        if usage is not None:
            call.input_tokens = field(usage, "prompt_tokens") or 0

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        return False

    def content_attributes(self, call: LLMCall, attrs: dict[str, Any], policy: ContentPolicy) -> None:
        return None


CHAT = ChatCompletions()
RESPONSES = Responses()
EMBEDDINGS = Embeddings()

# (module, class, method, handler): what is wrapped. Async classes use the async wrapper.
TARGETS = (
    ("openai.resources.chat.completions", "Completions", "create", CHAT, False),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", CHAT, True),
    # .parse() (structured outputs) posts on its own instead of calling create(): hooked too.
    ("openai.resources.chat.completions", "Completions", "parse", CHAT, False),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", CHAT, True),
    ("openai.resources.responses", "Responses", "create", RESPONSES, False),
    ("openai.resources.responses", "AsyncResponses", "create", RESPONSES, True),
    ("openai.resources.responses", "Responses", "parse", RESPONSES, False),
    ("openai.resources.responses", "AsyncResponses", "parse", RESPONSES, True),
    ("openai.resources.embeddings", "Embeddings", "create", EMBEDDINGS, False),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", EMBEDDINGS, True),
)
CLIENT_CLASSES = (("openai", "OpenAI"), ("openai", "AsyncOpenAI"))
SDK_MODULE = "openai"
KNOWN_MAJOR_VERSIONS = (1, 2, 3)


def make_wrapper(handler: Any, is_async: bool) -> Any:
    return async_wrapper(handler.prepare) if is_async else sync_wrapper(handler.prepare)


# The SDK's stream helpers (``chat.completions.stream()``, ``responses.stream()``) wrap the stream
# that create() returned (our proxy) but their close() closes the HTTP response underneath it, so
# a helper left early would keep its span open until the proxy is garbage-collected.
_HELPER_STREAMS = (
    ("openai.lib.streaming.chat._completions", "ChatCompletionStream", False),
    ("openai.lib.streaming.chat._completions", "AsyncChatCompletionStream", True),
    ("openai.lib.streaming.responses._responses", "ResponseStream", False),
    ("openai.lib.streaming.responses._responses", "AsyncResponseStream", True),
)


# Patched as each is imported (by the SDK's own resources): importing them costs 0.1-0.2 s.
EXTRA_PATCH_MODULES = tuple(dict.fromkeys(module for module, _, _ in _HELPER_STREAMS))


def extra_patches(only_module: str | None = None) -> list[tuple[type, str, Any]]:
    """End our stream's span when a stream helper is closed (or its ``with`` block is left)."""
    import importlib

    import wrapt

    patched: list[tuple[type, str, Any]] = []
    for module_name, class_name, is_async in _HELPER_STREAMS:
        if only_module is not None and module_name != only_module:
            continue
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        if "close" not in cls.__dict__:
            continue
        patched.append((cls, "close", cls.__dict__["close"]))
        wrapt.wrap_function_wrapper(cls, "close", _async_helper_close if is_async else _helper_close)
    return patched


def _helper_close(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        _end_helper_stream(instance)


async def _async_helper_close(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _end_helper_stream(instance)


def _end_helper_stream(helper: Any) -> None:
    from llmwatch._streaming import end_unfinished_stream  # (wrapt is loaded by now: see _base._streams)

    end_unfinished_stream(getattr(helper, "_raw_stream", None))
