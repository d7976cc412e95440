"""OpenAI Chat Completions (``chat.completions.create``/``.parse``): request attributes, reply and chunk
parsing into the call record, and the request's content as neutral data.

Wire facts (DESIGN.md, "Provider wire facts"): ``prompt_tokens`` already includes ``cached_tokens`` and
``completion_tokens`` includes ``reasoning_tokens``: recorded as is, never added twice. Streams report
usage only when asked (``stream_options.include_usage``): we ask when the user did not and hide that
one extra chunk (``choices == []``); a chunk with choices is never hidden. A server that refuses the
field gets the call again without it (``_stream_usage.py``). With ``n > 1`` chunks of different
choices interleave; finish reasons are kept per choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter_ns
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import Choice, LLMCall
from llmwatch._core._messages import (
    Blob,
    File,
    Message,
    Part,
    RequestContent,
    Text,
    ToolCall,
    ToolCallResponse,
    Unknown,
    Uri,
    data_url_blob,
    size_of,
)
from llmwatch._instrument._fields import (
    field,
    fields_of,
    given,
    put_number,
    put_numbers,
    put_stop_sequences,
    text_of,
)
from llmwatch._instrument._openai_request import (
    PROVIDER,
    endpoint_and_tier,
    output_type,
    record_service_tier,
    tool_definitions,
)
from llmwatch._instrument._stream_usage import with_stream_usage

_NUMBER_PARAMS = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("seed", sc.GEN_AI_REQUEST_SEED),
)


class ChatCompletions:
    """``chat.completions.create`` (and ``.parse``: ``parses``, the SDK parses the reply after it arrived)."""

    provider = PROVIDER
    operation = sc.OP_CHAT

    def __init__(self, *, parses: bool = False) -> None:
        self.parses = parses

    # --- request ---------------------------------------------------------------------------------
    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[ChatCompletions, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        endpoint_and_tier(instance, kwargs, attrs, settings)
        max_tokens = kwargs.get("max_completion_tokens")
        put_number(attrs, sc.GEN_AI_REQUEST_MAX_TOKENS, max_tokens if given(max_tokens) else kwargs.get("max_tokens"))
        put_numbers(attrs, kwargs, _NUMBER_PARAMS)
        stop = kwargs.get("stop")
        if stop is not None:
            put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, stop)
        n = kwargs.get("n")
        if isinstance(n, int) and n != 1:
            attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
        attrs[sc.GEN_AI_OUTPUT_TYPE] = output_type(kwargs.get("response_format"))
        attrs[sc.OPENAI_API_TYPE] = sc.OPENAI_API_CHAT_COMPLETIONS
        stream = kwargs.get("stream") is True
        if stream:  # the spec: set iff streaming (llmwatch.stream says both ways)
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        attrs[sc.LLMWATCH_STREAM] = stream
        if stream:
            send_kwargs, hide_usage = with_stream_usage(
                getattr(instance, "_client", None), kwargs, settings.request_stream_usage
            )
            return self, attrs, send_kwargs, stream, hide_usage
        return self, attrs, dict(kwargs), stream, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        parts: list[str] = []
        for message in _messages(request):
            parts.append(str(field(message, "role") or ""))
            parts.append(text_of(field(message, "content")))
        return parts

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_message_tokens

        messages = [m for m in _messages(call.request) if isinstance(m, Mapping)]
        return count_message_tokens(call.model, messages)

    # --- response --------------------------------------------------------------------------------
    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        fields = fields_of(response)
        call.response_id = fields.get("id")
        call.response_model = fields.get("model")
        record_service_tier(call, fields.get("service_tier"), fields.get("system_fingerprint"))
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
        fields = fields_of(chunk)  # per chunk: one view, then dict lookups (see _fields.fields_of)
        if call.response_id is None:
            call.response_id = fields.get("id")
        if call.response_model is None:  # a stream's chunks all name the same model (and tier)
            call.response_model = fields.get("model") or None
            record_service_tier(call, fields.get("service_tier"), fields.get("system_fingerprint"))
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

    # --- content (opt-in: read only when the call's policy captures content) ---------------------
    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        # System and developer messages are part of the chat history here: the spec records them in
        # gen_ai.input.messages only (gen_ai.system_instructions is for instructions given apart).
        return RequestContent(messages=[_input_message(m) for m in _messages(request)], tools=tool_definitions(request))


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
    cost = field(usage, "cost")  # OpenRouter reports what the call cost (an undeclared field)
    if type(cost) in (int, float) and cost >= 0:
        call.reported_cost_usd = float(cost)


def _messages(request: Mapping[str, Any]) -> list[Any]:
    messages = request.get("messages")
    return list(messages) if isinstance(messages, (list, tuple)) else []


def _input_message(message: Any) -> Message:
    role = field(message, "role") or "user"
    parts: list[Part] = []
    content = field(message, "content")
    if role == "tool":
        parts.append(ToolCallResponse(field(message, "tool_call_id"), text_of(content)))
    elif isinstance(content, str):
        parts.append(Text(content))
    elif isinstance(content, (list, tuple)):
        parts.extend(_content_part(part) for part in content)
    for tool in field(message, "tool_calls") or ():
        function = field(tool, "function")
        parts.append(ToolCall(field(tool, "id"), field(function, "name"), field(function, "arguments")))
    return Message(role, parts, name=field(message, "name"))


def _content_part(part: Any) -> Part:
    kind = field(part, "type")
    if kind == "text":
        return Text(str(field(part, "text") or ""))
    if kind == "image_url":
        url = str(field(field(part, "image_url"), "url") or "")
        if url.startswith("data:"):
            return data_url_blob("image", url)
        return Uri("image", url)
    if kind == "input_audio":
        audio = field(part, "input_audio")
        audio_format = field(audio, "format")
        mime = f"audio/{audio_format}" if isinstance(audio_format, str) else None
        return Blob("audio", mime_type=mime, byte_size=size_of(field(audio, "data")))
    if kind == "file":
        return File(field(field(part, "file"), "file_id"))
    return Unknown(str(kind or "unknown"))
