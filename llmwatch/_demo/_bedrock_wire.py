"""The Amazon Bedrock runtime wire format of the loopback server: Converse, ConverseStream, InvokeModel
and InvokeModelWithResponseStream, with the AWS event-stream framing (the scenarios and token formulas:
``_server.py``).

Wire facts (botocore's ``bedrock-runtime`` model, API 2023-09-30, protocol ``rest-json``):

- ``POST /model/{modelId}/converse``, ``/converse-stream``, ``/invoke``, ``/invoke-with-response-stream``;
  the model id is one URL-encoded path segment (``:`` as ``%3A``; an ARN's ``/`` as ``%2F``).
- InvokeModel's request body is the model's own JSON, sent as is (``contentType`` and ``accept`` travel
  as the ``Content-Type`` and ``Accept`` headers); so is its reply, with usage also in the
  ``X-Amzn-Bedrock-Input-Token-Count`` / ``-Output-Token-Count`` / ``-Cache-Read-Input-Token-Count`` /
  ``-Cache-Write-Input-Token-Count`` headers. The input count excludes cache reads and writes, as
  Converse's ``inputTokens`` does.
- Streams are ``application/vnd.amazon.eventstream``: binary messages, each a prelude (total length,
  headers length: big-endian uint32), the prelude's CRC32, headers (name length byte, name, value type
  7 = string, uint16 value length, value), the payload and a CRC32 of everything before it. Events carry
  ``:message-type: event``, ``:event-type`` (``messageStart``, ``contentBlockDelta``, ... or ``chunk``)
  and ``:content-type: application/json``; an error mid-stream is ``:message-type: exception`` with
  ``:exception-type`` (``modelStreamErrorException``). InvokeModelWithResponseStream's events are
  ``chunk`` ``{"bytes": base64(model JSON)}``; the model's last chunk adds
  ``amazon-bedrock-invocationMetrics`` (``inputTokenCount``, ``outputTokenCount``, cache counts).
- Errors: a JSON body ``{"message": ...}`` and the code in the ``x-amzn-errortype`` header
  (``ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/``), which botocore
  turns into ``client.exceptions.ThrottlingException``; the request id is ``x-amzn-requestid``.

Model families by id (region prefixes such as ``us.`` or ``global.`` and ARNs allowed): ``anthropic.*``
(the Anthropic Messages body), ``meta.*`` (Llama: ``prompt``), ``amazon.titan-text-*`` (``inputText``),
``amazon.titan-embed-*`` (embeddings) and ``amazon.nova-*`` (``messages``, Converse-shaped). Converse
answers for any model id.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import struct
import urllib.parse
import uuid
import zlib
from collections.abc import Mapping

from llmwatch._demo import _anthropic_wire
from llmwatch._demo._wire import (
    ANTHROPIC_CACHE_READ,
    ANTHROPIC_CACHE_WRITE_1H,
    ANTHROPIC_CACHE_WRITE_5M,
    JSON,
    Event,
    Json,
    Output,
    Reply,
    Request,
    Route,
    Stream,
    ToolCall,
    input_tokens,
    reply_text,
    split_chars,
    split_words,
    wants_tool_call,
    words,
)

EVENT_STREAM = "application/vnd.amazon.eventstream"
_MODEL_IN_PATH = re.compile(r"/model/([^/]+)/[a-z-]+")
_REGION_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "au.", "ca.", "jp.", "global.")
CACHE_WRITE = ANTHROPIC_CACHE_WRITE_5M + ANTHROPIC_CACHE_WRITE_1H
EMBEDDING_DIMENSIONS = 8


def model_id(request: Request) -> str:
    """The model id of the request path, URL-decoded."""
    found = _MODEL_IN_PATH.fullmatch(request.path.split("?", 1)[0])
    return urllib.parse.unquote(found.group(1)) if found else "unknown-model"


def base_model(model: str) -> str:
    """``arn:...:inference-profile/us.anthropic.claude-x-v1:0`` -> ``anthropic.claude-x-v1:0``."""
    model = model.rsplit("/", 1)[-1]
    for prefix in _REGION_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def family(model: str) -> str | None:
    base = base_model(model)
    if base.startswith("anthropic."):
        return "anthropic"
    if base.startswith("meta."):
        return "llama"
    if base.startswith(("amazon.titan-text", "amazon.titan-tg1")):
        return "titan"
    if base.startswith("amazon.titan-embed"):
        return "titan-embed"
    if base.startswith("amazon.nova"):
        return "nova"
    return None


def _request_id() -> str:
    return str(uuid.uuid4())  # AWS request ids are UUIDs


def _output(request: Request, tool_id: str) -> Output:
    return Output(reply_text(request), _tool_call(request, tool_id) if wants_tool_call(request) else None)


def _tool_call(request: Request, call_id: str) -> ToolCall:
    tools = (request.body.get("toolConfig") or {}).get("tools") or []
    specs = [tool["toolSpec"] for tool in tools if isinstance(tool, dict) and "toolSpec" in tool]
    name = specs[0].get("name") if specs else "get_weather"
    return ToolCall(call_id, str(name), json.dumps({"city": "Paris"}))


def _stop_reason(request: Request, output: Output) -> str:
    if output.tool:
        return "tool_use"
    return "max_tokens" if request.has("length") else "end_turn"


def _usage(request: Request, output_tokens: int, *, cache_write: bool = True) -> JSON:
    """Converse usage: ``inputTokens`` excludes the cache reads and writes reported beside it."""
    usage: JSON = {"inputTokens": input_tokens(request.body), "outputTokens": output_tokens}
    if request.has("cached"):
        usage["cacheReadInputTokens"] = ANTHROPIC_CACHE_READ
        usage["cacheWriteInputTokens"] = CACHE_WRITE if cache_write else 0
        if cache_write:
            usage["cacheDetails"] = [
                {"ttl": "5m", "inputTokens": ANTHROPIC_CACHE_WRITE_5M},
                {"ttl": "1h", "inputTokens": ANTHROPIC_CACHE_WRITE_1H},
            ]
    usage["totalTokens"] = sum(
        usage.get(key, 0) for key in ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
    )
    return usage


def _content(output: Output) -> list[JSON]:
    content: list[JSON] = [{"text": output.text}]
    if output.tool:
        tool = output.tool
        content.append({"toolUse": {"toolUseId": tool.id, "name": tool.name, "input": json.loads(tool.arguments)}})
    return content


def _headers(**counts: int) -> dict[str, str]:
    headers = {"x-amzn-requestid": _request_id()}
    for name, value in counts.items():
        headers[f"X-Amzn-Bedrock-{name.replace('_', '-').title()}-Token-Count"] = str(value)
    return headers


# --- Converse and ConverseStream ----------------------------------------------------------------------


def converse(request: Request) -> Reply:
    output = _output(request, "tooluse_0")
    usage = _usage(request, output.tokens)
    body = {
        "output": {"message": {"role": "assistant", "content": _content(output)}},
        "stopReason": _stop_reason(request, output),
        "usage": usage,
        "metrics": {"latencyMs": 1},
    }
    return Json(200, body, {"x-amzn-requestid": _request_id()})


def converse_stream(request: Request) -> Reply:
    output = _output(request, "tooluse_0")
    events = [Event({"role": "assistant"}, "messageStart")]
    for piece in split_words(output.text or "", request.chunks):
        events.append(Event({"contentBlockIndex": 0, "delta": {"text": piece}}, "contentBlockDelta", content=True))
    events.append(Event({"contentBlockIndex": 0}, "contentBlockStop"))
    if request.has("stream-error-event"):
        events.append(_stream_error())
        return _event_stream(request, events)
    if output.tool:
        tool = output.tool
        start = {"toolUse": {"toolUseId": tool.id, "name": tool.name}}
        events.append(Event({"contentBlockIndex": 1, "start": start}, "contentBlockStart"))
        for piece in split_chars(tool.arguments, request.chunks):
            delta = {"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}}
            events.append(Event(delta, "contentBlockDelta", content=True))
        events.append(Event({"contentBlockIndex": 1}, "contentBlockStop"))
    events.append(Event({"stopReason": _stop_reason(request, output)}, "messageStop"))
    metadata = {"usage": _usage(request, output.tokens), "metrics": {"latencyMs": 1}}
    events.append(Event(metadata, "metadata"))
    return _event_stream(request, events)


def _stream_error() -> Event:
    message = {"message": "The model stream was interrupted.", "originalStatusCode": 500}
    return Event(message, "modelStreamErrorException")


def _event_stream(request: Request, events: list[Event], headers: Mapping[str, str] | None = None) -> Stream:
    head = {"x-amzn-requestid": _request_id(), **(headers or {})}
    return Stream(events, cut=request.has("cut-stream"), content_type=EVENT_STREAM, encode=encode_event, headers=head)


# --- the AWS event-stream framing -------------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return struct.pack(">B", len(name_bytes)) + name_bytes + struct.pack(">BH", 7, len(value_bytes)) + value_bytes


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, headers (string values), payload, message CRC."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def encode_event(event: Event) -> bytes:
    """An event (or, for a name ending in ``Exception``, an exception) message with a JSON payload."""
    name = event.name or "chunk"
    payload = json.dumps(event.data).encode()
    if name.endswith("Exception"):
        kind = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
        return frame(kind, payload)
    return frame({":event-type": name, ":content-type": "application/json", ":message-type": "event"}, payload)


# --- InvokeModel and InvokeModelWithResponseStream ---------------------------------------------------
# Each family's reply is built as (body, usage counts for the headers); each stream as (chunk, carries
# output?) pairs, the last one with the invocation metrics.
Chunks = list[tuple[JSON, bool]]


def _prompt_tokens(request: Request, key: str) -> int:
    return words(str(request.body.get(key) or ""))


def _prompt_text(request: Request, key: str) -> str:
    """The reply to a prompt-string body, echoing it as it would a user message."""
    body = {"messages": [{"role": "user", "content": request.body.get(key) or ""}]}
    return reply_text(dataclasses.replace(request, body=body))


def _anthropic_request(request: Request) -> Request:
    # The Anthropic body has no model (it is in the path); the reply's ``model`` is Anthropic's own name.
    name = re.sub(r"-v\d+(:\d+)?$", "", base_model(model_id(request)).removeprefix("anthropic."))
    scenarios = request.scenarios - {"stream-error-event"}  # Bedrock's own exception event instead
    return dataclasses.replace(request, body={**request.body, "model": name}, scenarios=scenarios)


def _anthropic_reply(request: Request) -> tuple[JSON, dict[str, int]]:
    message = _anthropic_wire._anthropic_message(_anthropic_request(request))
    usage = message["usage"]
    counts = {
        "input": usage["input_tokens"],  # excludes the cache, like the body's own count
        "output": usage["output_tokens"],
        "cache_read_input": usage["cache_read_input_tokens"],
        "cache_write_input": usage["cache_creation_input_tokens"],
    }
    return message, counts


def _nova_usage(request: Request, output: Output) -> JSON:
    usage = _usage(request, output.tokens, cache_write=False)  # Nova caches reads only
    read = usage.get("cacheReadInputTokens", 0)
    return {
        "inputTokens": usage["inputTokens"],
        "outputTokens": output.tokens,
        "totalTokens": usage["totalTokens"],
        "cacheReadInputTokenCount": read,
        "cacheWriteInputTokenCount": 0,
    }


def _nova_reply(request: Request) -> tuple[JSON, dict[str, int]]:
    output = _output(request, "tooluse_0")
    usage = _nova_usage(request, output)
    body = {
        "output": {"message": {"role": "assistant", "content": _content(output)}},
        "stopReason": _stop_reason(request, output),
        "usage": usage,
    }
    counts = {
        "input": usage["inputTokens"],
        "output": output.tokens,
        "cache_read_input": usage["cacheReadInputTokenCount"],
    }
    return body, counts


def _llama_reply(request: Request) -> tuple[JSON, dict[str, int]]:
    text = _prompt_text(request, "prompt")
    counts = {"input": _prompt_tokens(request, "prompt"), "output": words(text)}
    body = {
        "generation": text,
        "prompt_token_count": counts["input"],
        "generation_token_count": counts["output"],
        "stop_reason": "length" if request.has("length") else "stop",
    }
    return body, counts


def _titan_reply(request: Request) -> tuple[JSON, dict[str, int]]:
    text = _prompt_text(request, "inputText")
    counts = {"input": _prompt_tokens(request, "inputText"), "output": words(text)}
    reason = "LENGTH" if request.has("length") else "FINISH"
    result = {"tokenCount": counts["output"], "outputText": text, "completionReason": reason}
    return {"inputTextTokenCount": counts["input"], "results": [result]}, counts


def _embedding_reply(request: Request) -> tuple[JSON, dict[str, int]]:
    tokens = _prompt_tokens(request, "inputText")
    vector = [round(0.1 * (i + 1), 3) for i in range(EMBEDDING_DIMENSIONS)]
    return {"embedding": vector, "inputTextTokenCount": tokens}, {"input": tokens, "output": 0}


_REPLIES = {
    "anthropic": _anthropic_reply,
    "nova": _nova_reply,
    "llama": _llama_reply,
    "titan": _titan_reply,
    "titan-embed": _embedding_reply,
}
# The body fields that hold usage, removed by the ``no-usage`` scenario (the headers keep it).
_USAGE_FIELDS = ("usage", "prompt_token_count", "generation_token_count", "inputTextTokenCount")


def invoke(request: Request) -> Reply:
    kind = family(model_id(request))
    if kind is None:
        return bedrock_error(400, "The provided model identifier is invalid.")
    body, counts = _REPLIES[kind](request)
    if request.has("no-usage"):
        for key in _USAGE_FIELDS:
            body.pop(key, None)
        for result in body.get("results") or ():
            result.pop("tokenCount", None)
    return Json(200, body, _headers(**counts))


def invoke_stream(request: Request) -> Reply:
    kind = family(model_id(request))
    if kind is None or kind == "titan-embed":
        return bedrock_error(400, "The provided model doesn't support streaming.")
    chunks = _anthropic_chunks(request) if kind == "anthropic" else _nova_chunks(request) if kind == "nova" else None
    if chunks is None:
        chunks = _prompt_chunks(request, kind)
    events = [Event({"bytes": base64.b64encode(json.dumps(c).encode()).decode()}, "chunk", out) for c, out in chunks]
    if request.has("stream-error-event"):
        first_content = next(i for i, event in enumerate(events) if event.content)
        events = [*events[: first_content + 1], _stream_error()]
    return _event_stream(request, events, {"X-Amzn-Bedrock-Content-Type": "application/json"})


def _metrics(input_count: int, output_count: int, cache_read: int = 0, cache_write: int = 0) -> JSON:
    return {
        "inputTokenCount": input_count,
        "outputTokenCount": output_count,
        "invocationLatency": 2,
        "firstByteLatency": 1,
        "cacheReadInputTokenCount": cache_read,
        "cacheWriteInputTokenCount": cache_write,
    }


def _anthropic_chunks(request: Request) -> Chunks:
    """Anthropic's events (no pings on Bedrock); ``message_stop`` carries the invocation metrics."""
    anthropic_request = _anthropic_request(request)
    message, counts = _anthropic_reply(request)
    events = _anthropic_wire._anthropic_events(anthropic_request, message)
    chunks: Chunks = [(e.data, e.content) for e in events if isinstance(e.data, dict) and e.data["type"] != "ping"]
    metrics = _metrics(counts["input"], counts["output"], counts["cache_read_input"], counts["cache_write_input"])
    chunks[-1][0]["amazon-bedrock-invocationMetrics"] = metrics
    return chunks


def _nova_chunks(request: Request) -> Chunks:
    output = _output(request, "tooluse_0")
    usage = _nova_usage(request, output)
    chunks: Chunks = [({"messageStart": {"role": "assistant"}}, False)]
    for piece in split_words(output.text or "", request.chunks):
        chunks.append(({"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}}, True))
    chunks.append(({"contentBlockStop": {"contentBlockIndex": 0}}, False))
    chunks.append(({"messageStop": {"stopReason": _stop_reason(request, output)}}, False))
    read = usage["cacheReadInputTokenCount"]
    metadata = {"usage": {"inputTokens": usage["inputTokens"], "outputTokens": output.tokens}}
    metadata["usage"]["cacheReadInputTokenCount"] = read
    metrics = _metrics(usage["inputTokens"], output.tokens, read)
    chunks.append(({"metadata": metadata, "amazon-bedrock-invocationMetrics": metrics}, False))
    return chunks


def _prompt_chunks(request: Request, kind: str) -> Chunks:
    """Llama's ``generation`` pieces or Titan's ``outputText`` ones, with cumulative output counts."""
    llama = kind == "llama"
    key = "prompt" if llama else "inputText"
    tokens_in = _prompt_tokens(request, key)
    length = request.has("length")
    reason = ("length" if length else "stop") if llama else ("LENGTH" if length else "FINISH")
    chunks: Chunks = []
    produced = 0
    for position, piece in enumerate([*split_words(_prompt_text(request, key), request.chunks), ""]):
        produced += words(piece)
        last = not piece
        prompt = tokens_in if position == 0 else None
        chunk: JSON
        if llama:
            chunk = {"generation": piece, "prompt_token_count": prompt, "generation_token_count": produced}
            chunk["stop_reason"] = reason if last else None
        else:
            chunk = {"outputText": piece, "index": 0, "totalOutputTextTokenCount": produced}
            chunk.update(completionReason=reason if last else None, inputTextTokenCount=prompt)
        if last:
            chunk["amazon-bedrock-invocationMetrics"] = _metrics(tokens_in, produced)
        chunks.append((chunk, not last))
    return chunks


# --- errors and routes ---------------------------------------------------------------------------

_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    529: "ServiceUnavailableException",  # Bedrock's is a 503; the shared scenario asks for 529
}


def bedrock_error_body(status: int, message: str | None, request_id: str) -> JSON:
    return {"message": message or f"simulated {_ERRORS.get(status, 'InternalServerException')}"}


def bedrock_error_headers(status: int) -> dict[str, str]:
    code = _ERRORS.get(status, "InternalServerException")
    return {
        "x-amzn-errortype": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-requestid": _request_id(),
    }


def bedrock_error(status: int, message: str) -> Json:
    return Json(status, bedrock_error_body(status, message, ""), bedrock_error_headers(status))


_MODEL = r"/model/[^/]+"
ROUTES = (
    Route(f"{_MODEL}/converse", converse, bedrock_error_body, error_headers=bedrock_error_headers),
    Route(f"{_MODEL}/converse-stream", converse_stream, bedrock_error_body, error_headers=bedrock_error_headers),
    Route(f"{_MODEL}/invoke", invoke, bedrock_error_body, error_headers=bedrock_error_headers),
    Route(
        f"{_MODEL}/invoke-with-response-stream", invoke_stream, bedrock_error_body, error_headers=bedrock_error_headers
    ),
)
