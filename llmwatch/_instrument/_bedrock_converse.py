"""Bedrock's Converse shapes: the ``converse`` / ``converse_stream`` handler, and the readers of
Converse-shaped content, usage and stream events that Amazon Nova's InvokeModel bodies share.

botocore hands everything over as plain dicts (the request as the caller wrote it, the parsed reply,
one dict per stream event), so these readers are dict lookups; nothing here parses JSON.

Wire facts (botocore's ``bedrock-runtime`` model, API 2023-09-30):

- ``usage.inputTokens`` excludes ``cacheReadInputTokens`` and ``cacheWriteInputTokens`` (genai-prices'
  own Bedrock usage extractor sums the three into its input count): llmwatch's input count is that sum.
  ``cacheDetails`` (``[{"ttl": "5m" | "1h", "inputTokens": n}]``) splits the writes, 1-hour ones priced
  higher. Nova's InvokeModel bodies name the cache counts ``cacheReadInputTokenCount`` /
  ``cacheWriteInputTokenCount``.
- ``stopReason`` (``end_turn``, ``tool_use``, ``max_tokens``, ``stop_sequence``, ``guardrail_intervened``,
  ``content_filtered``, ``model_context_window_exceeded``, ...) is recorded as given
  (``gen_ai.response.finish_reasons``); output messages carry the semconv value.
- No completion id: the AWS request id (``ResponseMetadata.RequestId``, the ``x-amzn-requestid`` header)
  is recorded as ``gen_ai.response.id``; ``llmwatch.score(request_id, ...)`` finds the call by it.
- Stream events are dicts of one key: ``messageStart``, ``contentBlockStart`` (a tool use's
  ``toolUseId`` and ``name``), ``contentBlockDelta`` (``delta``: ``text``, ``toolUse.input`` (JSON text,
  in pieces) or ``reasoningContent.text``), ``contentBlockStop``, ``messageStop`` (``stopReason``) and
  ``metadata`` (usage, metrics), the last: the span ends there.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import LLMCall
from llmwatch._core._messages import (
    Blob,
    Message,
    Part,
    Reasoning,
    RequestContent,
    Text,
    ToolCall,
    ToolCallResponse,
    Unknown,
    Uri,
    size_of,
)
from llmwatch._instrument._fields import put_numbers, put_stop_sequences

PROVIDER = sc.PROVIDER_AWS_BEDROCK
_CONFIG_NUMBERS = (
    ("maxTokens", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("topP", sc.GEN_AI_REQUEST_TOP_P),
)
_EXTRA_NUMBERS = (("top_k", sc.GEN_AI_REQUEST_TOP_K),)  # additionalModelRequestFields (Claude, Llama)
_MEDIA = {"image": "image", "video": "video", "audio": "audio", "document": "file"}


# --- the request ---------------------------------------------------------------------------------
def request_attributes(client: Any, params: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """What every Bedrock span starts with: the model id as given, the endpoint, the stream flags."""
    attrs: dict[str, Any] = {sc.LLMWATCH_STREAM: stream}
    if stream:  # the spec: set iff streaming
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    model = params.get("modelId")
    if isinstance(model, str):
        attrs[sc.GEN_AI_REQUEST_MODEL] = model  # an inference-profile id or an ARN: as given
    meta = getattr(client, "meta", None)
    url = getattr(meta, "endpoint_url", None)
    if isinstance(url, str):
        attrs.update(_server(url))
    return attrs


def _server(url: str) -> dict[str, Any]:
    found = _SERVERS.get(url)
    if found is None:  # once per endpoint URL: parsing one costs microseconds
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = {sc.SERVER_ADDRESS: parts.hostname, sc.SERVER_PORT: port} if parts.hostname else {}
        if len(_SERVERS) > 256:
            _SERVERS.clear()
        _SERVERS[url] = found
    return found


_SERVERS: dict[str, dict[str, Any]] = {}


class Converse:
    """``converse`` and ``converse_stream``: the request is the caller's own keyword arguments."""

    provider = PROVIDER
    operation = sc.OP_CHAT

    def __init__(self, *, stream: bool) -> None:
        self.stream = stream

    def prepare(
        self, instance: Any, params: Mapping[str, Any], settings: Settings
    ) -> tuple[Converse, dict[str, Any], dict[str, Any], bool, bool]:
        attrs = request_attributes(instance, params, self.stream)
        config = params.get("inferenceConfig")
        if type(config) is dict:
            put_numbers(attrs, config, _CONFIG_NUMBERS)
            put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, config.get("stopSequences"))
        extra = params.get("additionalModelRequestFields")
        if type(extra) is dict:
            put_numbers(attrs, extra, _EXTRA_NUMBERS)
        output = params.get("outputConfig")
        structured = type(output) is dict and type(output.get("textFormat")) is dict
        attrs[sc.GEN_AI_OUTPUT_TYPE] = sc.OUTPUT_JSON if structured else sc.OUTPUT_TEXT
        return self, attrs, dict(params), self.stream, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return prompt_parts(request)

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_tokens

        return count_tokens(call.model, "".join(self.prompt_parts(call.request)))

    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        return request_content(request)

    def on_response(self, call: LLMCall, response: Any) -> None:
        if type(response) is not dict:
            return
        call.response_id = request_id(response)
        read_reply(call, response)

    def on_chunk(self, call: LLMCall, event: Any) -> bool:
        if read_event(call, event):  # the metadata event, the stream's last: usage is in
            call.end_stream(True)
        return False


def request_id(response: Mapping[str, Any]) -> Any:
    metadata = response.get("ResponseMetadata")
    return metadata.get("RequestId") if type(metadata) is dict else None


# --- the reply -----------------------------------------------------------------------------------
def read_reply(call: LLMCall, reply: Mapping[str, Any]) -> None:
    """A Converse reply (or a Nova body): output message, stop reason, usage, service tier."""
    output = reply.get("output")
    if type(output) is dict:
        read_message(call, output.get("message"))
    reason = reply.get("stopReason")
    if reason is not None:
        call.choice(0).finish_reason = reason
    record_usage(call, reply.get("usage"))
    record_tier(call, reply.get("serviceTier"))


def read_message(call: LLMCall, message: Any) -> None:
    if type(message) is not dict:
        return
    choice = call.choice(0)
    for position, block in enumerate(message.get("content") or ()):
        if type(block) is not dict:
            continue
        if "text" in block:
            choice.text.append(str(block["text"] or ""))
        elif "toolUse" in block:
            tool = block["toolUse"] or {}
            choice.tool_calls[position] = {
                "id": tool.get("toolUseId"),
                "name": tool.get("name"),
                "arguments": tool.get("input"),
            }
        elif "reasoningContent" in block:
            choice.reasoning.append(_reasoning_text(block["reasoningContent"]))


def read_event(call: LLMCall, event: Any) -> bool:
    """One Converse-shaped stream event; True for the ``metadata`` event that closes the stream."""
    delta = event.get("contentBlockDelta")
    if delta is not None:
        _record_delta(call, delta)
        return False
    start = event.get("contentBlockStart")
    if start is not None:
        tool = (start.get("start") or {}).get("toolUse")
        if type(tool) is dict:
            entry = {"id": tool.get("toolUseId"), "name": tool.get("name"), "arguments": ""}
            call.choice(0).tool_calls[start.get("contentBlockIndex") or 0] = entry
        return False
    stop = event.get("messageStop")
    if stop is not None:
        reason = stop.get("stopReason")
        if reason is not None:
            call.choice(0).finish_reason = reason
        return False
    metadata = event.get("metadata")
    if metadata is not None:
        record_usage(call, metadata.get("usage"))
        record_tier(call, metadata.get("serviceTier"))
        return True
    return False


def _record_delta(call: LLMCall, event: Mapping[str, Any]) -> None:
    delta = event.get("delta") or {}
    choice = call.choice(0)
    text = delta.get("text")
    if text is not None:
        call.mark_first_output()
        choice.text.append(text)
        return
    tool = delta.get("toolUse")
    if tool is not None:
        call.mark_first_output()
        index = event.get("contentBlockIndex") or 0
        entry = choice.tool_calls.get(index)
        if entry is None:
            entry = choice.tool_calls[index] = {"id": None, "name": None, "arguments": ""}
        entry["arguments"] = str(entry["arguments"] or "") + str(tool.get("input") or "")
        return
    reasoning = delta.get("reasoningContent")
    if reasoning is not None:
        call.mark_first_output()
        choice.reasoning.append(str(reasoning.get("text") or ""))


def _count(usage: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = usage.get(name)
        if type(value) is int:
            return value
    return 0


def record_usage(call: LLMCall, usage: Any) -> None:
    """Converse (or Nova) usage: input counts every input token, cache reads and writes included."""
    if type(usage) is not dict:
        return
    read = _count(usage, "cacheReadInputTokens", "cacheReadInputTokenCount")
    write = _count(usage, "cacheWriteInputTokens", "cacheWriteInputTokenCount")
    uncached = usage.get("inputTokens")
    if type(uncached) is int:
        call.input_tokens = uncached + read + write
    call.cache_read_tokens = read
    call.cache_write_tokens = write
    details = usage.get("cacheDetails")
    if type(details) is list:
        call.cache_write_1h_tokens = sum(
            _count(d, "inputTokens") for d in details if type(d) is dict and d.get("ttl") == "1h"
        )
    output = usage.get("outputTokens")
    if type(output) is int:
        call.output_tokens = output


def record_tier(call: LLMCall, tier: Any) -> None:
    kind = tier.get("type") if type(tier) is dict else tier
    if isinstance(kind, str):
        call.service_tier = kind


# --- content (opt-in: read only when the call's policy captures content) -------------------------
def prompt_parts(request: Mapping[str, Any]) -> list[str]:
    """Role and text of each message, system first: what the prompt fingerprint hashes (every call)."""
    parts = ["system", _blocks_text(request.get("system"))]
    messages = request.get("messages")
    for message in messages if type(messages) is list else ():
        if type(message) is dict:
            parts.append(str(message.get("role") or ""))
            parts.append(_blocks_text(message.get("content")))
    return parts


def _blocks_text(blocks: Any) -> str:
    if isinstance(blocks, str):
        return blocks
    if type(blocks) is not list:
        return ""
    return "".join(str(block["text"]) for block in blocks if type(block) is dict and "text" in block)


def request_content(request: Mapping[str, Any]) -> RequestContent:
    messages = request.get("messages")
    system = request.get("system")
    system_parts = [p for p in map(_part, system) if p is not None] if type(system) is list else []
    return RequestContent(
        messages=[_message(m) for m in messages if type(m) is dict] if type(messages) is list else [],
        system=system_parts or None,
        tools=_tools(request.get("toolConfig")),
    )


def _message(message: Mapping[str, Any]) -> Message:
    content = message.get("content")
    blocks = [{"text": content}] if isinstance(content, str) else content if type(content) is list else []
    return Message(str(message.get("role") or "user"), [p for p in map(_part, blocks) if p is not None])


def _part(block: Any) -> Part | None:
    """One content block; None for a cache checkpoint (a marker, not content)."""
    if type(block) is not dict:
        return Unknown("unknown")
    if "text" in block:
        return Text(str(block["text"] or ""))
    if "toolUse" in block:
        tool = block["toolUse"] or {}
        return ToolCall(tool.get("toolUseId"), tool.get("name"), tool.get("input"))
    if "toolResult" in block:
        result = block["toolResult"] or {}
        return ToolCallResponse(result.get("toolUseId"), _tool_result(result.get("content")))
    if "reasoningContent" in block:
        return Reasoning(_reasoning_text(block["reasoningContent"]))
    if "guardContent" in block:
        return Text(str(((block["guardContent"] or {}).get("text") or {}).get("text") or ""))
    if "cachePoint" in block:
        return None
    for key, modality in _MEDIA.items():
        if key in block:
            media = block[key] or {}
            location = (media.get("source") or {}).get("s3Location")
            if type(location) is dict:
                return Uri(modality, location.get("uri"))
            kind = media.get("format")
            mime = f"{modality}/{kind}" if isinstance(kind, str) and modality != "file" else None
            return Blob(modality, mime, size_of((media.get("source") or {}).get("bytes")))
    return Unknown(str(next(iter(block), "unknown")))


def _tool_result(content: Any) -> Any:
    if type(content) is not list:
        return content
    values = [
        b["text"] if "text" in b else b["json"] for b in content if type(b) is dict and ("text" in b or "json" in b)
    ]
    if len(values) == 1:
        return values[0]
    if all(isinstance(v, str) for v in values):
        return "".join(values)
    return values


def _reasoning_text(block: Any) -> str:
    text = (block.get("reasoningText") or {}).get("text") if type(block) is dict else None
    return str(text or "")


def _tools(config: Any) -> list[Any] | None:
    tools = config.get("tools") if type(config) is dict else None
    if type(tools) is not list:
        return None
    found = []
    for tool in tools:
        spec = tool.get("toolSpec") if type(tool) is dict else None
        if type(spec) is dict:
            schema = spec.get("inputSchema")
            found.append(
                {
                    "type": "function",
                    "name": spec.get("name"),
                    "description": spec.get("description"),
                    "parameters": schema.get("json") if type(schema) is dict else None,
                }
            )
    return found or None


CONVERSE = Converse(stream=False)
CONVERSE_STREAM = Converse(stream=True)
