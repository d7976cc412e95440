"""A loopback server that speaks the OpenAI and Anthropic wire formats, JSON and SSE streams.

Why it exists: llmwatch wraps the *real* ``openai`` and ``anthropic`` SDKs, and most bugs in such
wrappers live in wire details (usage that arrives in odd places, interleaved choices, cut streams,
error bodies). Mocking the SDKs would hide exactly those. So ``llmwatch demo`` and the test-suite
point the real SDKs at this server instead: what is measured is what users run, with no network
and no API keys. Standard library only, so the demo needs nothing beyond the SDKs.

Routes: ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` (OpenAI, base URL
``base_url + "/v1"``) and ``POST /v1/messages``, ``/v1/messages/count_tokens`` (Anthropic, base URL
``base_url``).

Scenarios are chosen per request by the header ``x-fake-scenario: name[,name]`` (the SDKs'
``extra_headers``) or by ``[[scenario:name]]`` in the last user message; ``[[chunks:N]]`` there sets
how many content chunks a stream has (default 5). An unknown scenario name is a 400, so a typo
cannot pass a test silently; a scenario that does not apply to a route is ignored.

- ``error-400``, ``error-429``, ``error-500``, ``error-529``: the provider's own error body and headers.
- ``error-429-once``: 429 for the first request with a given ``x-fake-retry-key`` (or, without the
  header, the same body); the SDK's automatic retry then succeeds.
- ``cut-stream``: the connection drops after about half the content chunks.
- ``no-usage`` (OpenAI): no usage anywhere, whatever ``stream_options`` asks.
- ``reject-stream-options`` (OpenAI chat): a request carrying ``stream_options`` is refused with the 400
  that OpenAI-compatible servers which do not know the field send (``param: "stream_options"``).
- ``usage-on-last-chunk`` (OpenAI chat streams): usage rides on the last content chunk with its text
  and finish reason, unrequested, and no separate usage chunk follows (some compatible servers).
- ``tool-call``: a ``get_weather`` call (or the first declared tool) with ``{"city": "Paris"}``.
- ``cached``, ``reasoning``, ``length``: cached input, reasoning output, a truncated finish.
- ``stream-error-event`` (Anthropic): an ``event: error`` (overloaded) in the middle of the stream.

Token formulas (deterministic, so tests can state expected numbers):

- input = for each message, its whitespace words + 3; plus the words of ``system``/``instructions``.
- output = words of the reply text, plus the words of ``name arguments`` for a tool call.
- OpenAI ``cached``: ``cached_tokens = input // 2``, *included* in ``prompt_tokens``/``input_tokens``.
- OpenAI ``reasoning``: 10 reasoning tokens, *included* in ``completion_tokens``/``output_tokens``.
- Anthropic ``input_tokens`` is the formula and *excludes* the cache: ``cached`` adds
  ``cache_read_input_tokens = 100`` and ``cache_creation_input_tokens = 50`` (30 for 5 minutes, 20 for 1 hour).
- Embeddings: words of each input (token arrays: their length); no per-message overhead.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["FakeLLMServer", "RecordedRequest", "SCENARIOS"]

SCENARIOS = frozenset(
    {
        "error-400",
        "error-429",
        "error-500",
        "error-529",
        "error-429-once",
        "cut-stream",
        "no-usage",
        "reject-stream-options",
        "usage-on-last-chunk",
        "tool-call",
        "cached",
        "reasoning",
        "length",
        "stream-error-event",
    }
)

_DEFAULT_CHUNKS = 5
_REASONING_TOKENS = 10
_ANTHROPIC_CACHE_READ = 100
_ANTHROPIC_CACHE_WRITE_5M = 30
_ANTHROPIC_CACHE_WRITE_1H = 20
_SCENARIO_MARKER = re.compile(r"\[\[scenario:([\w,-]+)\]\]")
_CHUNKS_MARKER = re.compile(r"\[\[chunks:(\d+)\]\]")
_FILLER = ["this", "is", "a", "deterministic", "reply", "from", "the", "loopback", "server."]
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
_SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4": "gpt-4-0613",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
}

_Provider = Literal["openai", "anthropic"]
_JSON = dict[str, Any]


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


# --- what a request asks for -----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (``body`` is the parsed JSON, or None when it was not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class _Request:
    path: str
    headers: Mapping[str, str]
    body: _JSON
    scenarios: frozenset[str]
    chunks: int

    def has(self, scenario: str) -> bool:
        return scenario in self.scenarios

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "unknown-model")


def _text_of(value: Any) -> str:
    """All the text in a message or content value: a string, a list of parts, nested tool results."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        return " ".join(_text_of(value[key]) for key in ("text", "content", "output", "arguments") if key in value)
    return ""


def _messages(body: _JSON) -> list[Any]:
    """Chat and Anthropic ``messages``, or the Responses API ``input`` (a string or a list of items)."""
    if isinstance(body.get("messages"), list):
        return list(body["messages"])
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def _last_user_text(body: _JSON) -> str:
    messages = _messages(body)
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return _text_of((users or messages or [""])[-1])


def _words(text: str) -> int:
    return len(text.split())


def _input_tokens(body: _JSON) -> int:
    instructions = _text_of(body.get("system")) + " " + _text_of(body.get("instructions"))
    return sum(_words(_text_of(m)) + 3 for m in _messages(body)) + _words(instructions)


def _read_request(path: str, headers: Mapping[str, str], body: _JSON) -> _Request:
    names = headers.get("x-fake-scenario", "").split(",")
    last = _last_user_text(body)
    for marker in _SCENARIO_MARKER.findall(last):
        names.extend(marker.split(","))
    chunks = [int(n) for n in _CHUNKS_MARKER.findall(last)]
    scenarios = frozenset(n.strip() for n in names if n.strip())
    return _Request(path, headers, body, scenarios, max(1, chunks[-1]) if chunks else _DEFAULT_CHUNKS)


# --- what the model "says" -------------------------------------------------------------------------


@dataclass(frozen=True)
class _ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the providers send it


@dataclass(frozen=True)
class _Output:
    """One generated answer (one choice): text, a tool call, or (Anthropic) both."""

    text: str | None
    tool: _ToolCall | None = None

    @property
    def tokens(self) -> int:
        tool = _words(f"{self.tool.name} {self.tool.arguments}") if self.tool else 0
        return _words(self.text or "") + tool


def _reply_text(request: _Request, choice: int = 0) -> str:
    # Echo the start of the prompt so a reply is recognisably "for" its request, then pad with filler
    # so a stream can be split into as many word-aligned chunks as [[chunks:N]] asks for.
    asked = _SCENARIO_MARKER.sub(" ", _CHUNKS_MARKER.sub(" ", _last_user_text(request.body))).split()[:6]
    words = ([f"Choice {choice}:"] if choice else []) + ["Echo:", *asked, "-", *_FILLER]
    while len(words) < request.chunks:
        words.append(_FILLER[len(words) % len(_FILLER)].rstrip("."))
    return " ".join(words)


def _tool_call(request: _Request, call_id: str) -> _ToolCall:
    tools = request.body.get("tools") or []
    first = tools[0] if tools and isinstance(tools[0], dict) else {}
    name = (first.get("function") or {}).get("name") or first.get("name") or "get_weather"
    return _ToolCall(call_id, str(name), json.dumps({"city": "Paris"}))


def _split_words(text: str, count: int) -> list[str]:
    """``count`` word-aligned pieces whose concatenation is ``text`` (later pieces start with a space)."""
    words = text.split(" ")
    count = max(1, min(count, len(words)))
    size, extra = divmod(len(words), count)
    pieces: list[str] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append((" " if index else "") + " ".join(words[start:end]))
        start = end
    return pieces


def _split_chars(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, count)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _snapshot(model: str) -> str:
    """The dated snapshot OpenAI reports for a requested alias (``gpt-4o-mini`` -> ``...-2024-07-18``)."""
    if model in _SNAPSHOTS:
        return _SNAPSHOTS[model]
    return model if _DATED.search(model) else f"{model}-2025-01-01"


# --- replies: a JSON body, or a list of SSE events the handler writes with the configured delays -------


@dataclass(frozen=True)
class _Json:
    status: int
    body: _JSON
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Event:
    data: _JSON | str
    name: str | None = None  # the SSE ``event:`` line; OpenAI chat streams have none
    content: bool = False  # carries output (text, tool-call or reasoning delta): ttft_s applies before the first


@dataclass(frozen=True)
class _Stream:
    events: list[_Event]
    cut: bool = False


_Reply = _Json | _Stream


# --- OpenAI chat completions -----------------------------------------------------------------------


def _chat_outputs(request: _Request) -> list[_Output]:
    n = min(max(int(request.body.get("n") or 1), 1), 16)
    if request.has("tool-call"):
        return [_Output(None, _tool_call(request, f"call_{i}")) for i in range(n)]
    return [_Output(_reply_text(request, i)) for i in range(n)]


def _chat_finish(request: _Request, output: _Output) -> str:
    if output.tool:
        return "tool_calls"
    return "length" if request.has("length") else "stop"


def _openai_usage(request: _Request, outputs: list[_Output]) -> _JSON:
    prompt = _input_tokens(request.body)
    reasoning = _REASONING_TOKENS if request.has("reasoning") else 0
    completion = sum(o.tokens for o in outputs) + reasoning  # completion_tokens includes reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": prompt // 2 if request.has("cached") else 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_message(output: _Output) -> _JSON:
    message: _JSON = {"role": "assistant", "content": output.text, "refusal": None, "annotations": []}
    if output.tool:
        message["tool_calls"] = [
            {
                "id": output.tool.id,
                "type": "function",
                "function": {"name": output.tool.name, "arguments": output.tool.arguments},
            }
        ]
    return message


def _chat_completions(request: _Request) -> _Reply:
    outputs = _chat_outputs(request)
    usage = None if request.has("no-usage") else _openai_usage(request, outputs)
    head = {
        "id": _new_id("chatcmpl-"),
        "created": int(time.time()),
        "model": _snapshot(request.model),
        "system_fingerprint": "fp_llmwatch",
        "service_tier": "default",
    }
    if request.stream:
        return _Stream(_chat_chunks(request, head, outputs, usage), cut=request.has("cut-stream"))
    choices = [
        {"index": i, "message": _chat_message(o), "finish_reason": _chat_finish(request, o), "logprobs": None}
        for i, o in enumerate(outputs)
    ]
    body = {**head, "object": "chat.completion", "choices": choices}
    if usage is not None:  # servers without usage omit the key
        body["usage"] = usage
    return _Json(200, body)


def _chat_deltas(request: _Request, output: _Output) -> list[tuple[_JSON, bool]]:
    """One choice's deltas in order, each with whether it carries output (for ttft)."""
    if output.tool:
        call = output.tool
        opening = {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        deltas = [({"role": "assistant", "content": None, "refusal": None, "tool_calls": [opening]}, True)]
        for piece in _split_chars(call.arguments, request.chunks):
            deltas.append(({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, True))
        return deltas
    deltas = [({"role": "assistant", "content": "", "refusal": None}, False)]
    deltas += [({"content": piece}, True) for piece in _split_words(output.text or "", request.chunks)]
    return deltas


def _chat_chunks(request: _Request, head: _JSON, outputs: list[_Output], usage: _JSON | None) -> list[_Event]:
    usage_on_last = request.has("usage-on-last-chunk") and usage is not None
    asked = bool((request.body.get("stream_options") or {}).get("include_usage"))
    usage_chunk = asked and usage is not None and not usage_on_last
    # Per choice: (delta, finish_reason, content?). Normally the finish reason comes in a chunk of its
    # own with an empty delta; the usage-on-last-chunk servers fold it into the last content chunk.
    lanes: list[list[tuple[_JSON, str | None, bool]]] = []
    for output in outputs:
        lane: list[tuple[_JSON, str | None, bool]] = [(d, None, c) for d, c in _chat_deltas(request, output)]
        finish = _chat_finish(request, output)
        if usage_on_last:
            delta, _, content = lane[-1]
            lane[-1] = (delta, finish, content)
        else:
            lane.append(({}, finish, False))
        lanes.append(lane)

    def chunk(choices: list[_JSON]) -> _JSON:
        body = {**head, "object": "chat.completion.chunk", "choices": choices}
        if usage_chunk:
            body["usage"] = None  # OpenAI marks every chunk but the usage chunk with an explicit null
        return body

    events: list[_Event] = []
    for step in range(max(len(lane) for lane in lanes)):
        for index, lane in enumerate(lanes):  # choices interleave, as OpenAI's do with n > 1
            if step < len(lane):
                delta, finish_reason, content = lane[step]
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                events.append(_Event(chunk([choice]), content=content))
    if usage_on_last:
        last = events[-1]
        assert isinstance(last.data, dict)
        events[-1] = _Event({**last.data, "usage": usage}, content=last.content)
    if usage_chunk:
        events.append(_Event({**chunk([]), "usage": usage}))
    events.append(_Event("[DONE]"))
    return events


# --- OpenAI responses ------------------------------------------------------------------------------


def _response_item(request: _Request) -> _JSON:
    if request.has("tool-call"):
        call = _tool_call(request, "call_0")
        return {
            "id": _new_id("fc_"),
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
    text = {"type": "output_text", "text": _reply_text(request), "annotations": [], "logprobs": []}
    return {"id": _new_id("msg_"), "type": "message", "role": "assistant", "status": "completed", "content": [text]}


def _response_usage(request: _Request, item: _JSON) -> _JSON:
    prompt = _input_tokens(request.body)
    text = item["content"][0]["text"] if item["type"] == "message" else f"{item['name']} {item['arguments']}"
    reasoning = _REASONING_TOKENS if request.has("reasoning") else 0
    output = _words(text) + reasoning  # output_tokens includes reasoning
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": prompt // 2 if request.has("cached") else 0, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output,
    }


def _response_object(request: _Request) -> _JSON:
    item = _response_item(request)
    incomplete = request.has("length")
    now = int(time.time())
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": now,
        "completed_at": None if incomplete else now,
        "status": "incomplete" if incomplete else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": request.body.get("instructions"),
        "max_output_tokens": request.body.get("max_output_tokens"),
        "model": _snapshot(request.model),
        "output": [item],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": request.body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": request.body.get("tool_choice", "auto"),
        "tools": request.body.get("tools") or [],
        "top_p": request.body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None if request.has("no-usage") else _response_usage(request, item),
        "user": None,
        "metadata": request.body.get("metadata") or {},
    }


def _responses(request: _Request) -> _Reply:
    response = _response_object(request)
    if not request.stream:
        return _Json(200, response)
    return _Stream(_response_events(request, response), cut=request.has("cut-stream"))


def _response_events(request: _Request, response: _JSON) -> list[_Event]:
    # Lifecycle events carry the response without output or usage: usage arrives only at the end.
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    pending.update(completed_at=None, incomplete_details=None)
    events = [
        _Event({"type": "response.created", "response": pending}),
        _Event({"type": "response.in_progress", "response": pending}),
    ]
    for index, item in enumerate(response["output"]):
        events += (
            _message_events(request, index, item) if item["type"] == "message" else _call_events(request, index, item)
        )
    terminal = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    events.append(_Event({"type": terminal, "response": response}))
    # Every event names itself twice (the SSE event line and "type") and carries a running number.
    return [
        _Event({**event.data, "sequence_number": number}, event.data["type"], event.content)
        for number, event in enumerate(events)
        if isinstance(event.data, dict)
    ]


def _message_events(request: _Request, index: int, item: _JSON) -> list[_Event]:
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    opened = {**item, "status": "in_progress", "content": []}
    events = [
        _Event({"type": "response.output_item.added", "output_index": index, "item": opened}),
        _Event({"type": "response.content_part.added", **where, "part": {**part, "text": ""}}),
    ]
    for piece in _split_words(part["text"], request.chunks):
        delta = {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        events.append(_Event(delta, content=True))
    events += [
        _Event({"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []}),
        _Event({"type": "response.content_part.done", **where, "part": part}),
        _Event({"type": "response.output_item.done", "output_index": index, "item": item}),
    ]
    return events


def _call_events(request: _Request, index: int, item: _JSON) -> list[_Event]:
    where = {"item_id": item["id"], "output_index": index}
    opened = {**item, "status": "in_progress", "arguments": ""}  # the SDK's helper appends the deltas to ""
    events = [_Event({"type": "response.output_item.added", "output_index": index, "item": opened})]
    for piece in _split_chars(item["arguments"], request.chunks):
        delta = {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        events.append(_Event(delta, content=True))
    events += [
        _Event({"type": "response.function_call_arguments.done", **where, "arguments": item["arguments"]}),
        _Event({"type": "response.output_item.done", "output_index": index, "item": item}),
    ]
    return events


# --- OpenAI embeddings -----------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[str | list[int]]:
    """``input`` is a string, a token array, or a list of either."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [list(value)]
    if isinstance(value, list):
        return [v if isinstance(v, str) else [int(t) for t in v] for v in value]
    return []


def _vector(item: str | list[int], index: int, dimensions: int) -> list[float]:
    seed = sum(map(ord, item)) if isinstance(item, str) else sum(item)
    values = [((seed * 31 + index * 7 + d * 17) % 101) / 101.0 - 0.5 for d in range(dimensions)]
    # Round through float32 so the "float" and "base64" encodings decode to exactly the same numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *values)))


def _embeddings(request: _Request) -> _Reply:
    inputs = _embedding_inputs(request.body.get("input"))
    dimensions = max(1, int(request.body.get("dimensions") or 8))
    base64_wanted = request.body.get("encoding_format") == "base64"  # the SDK's default when unset
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(item, index, dimensions)
        encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if base64_wanted else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(_words(i) if isinstance(i, str) else len(i) for i in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}  # embeddings usage has nothing else
    return _Json(200, {"object": "list", "data": data, "model": request.model, "usage": usage})


# --- Anthropic messages ----------------------------------------------------------------------------


def _anthropic_usage(request: _Request, output_tokens: int) -> _JSON:
    cached = request.has("cached")
    write_5m = _ANTHROPIC_CACHE_WRITE_5M if cached else 0
    write_1h = _ANTHROPIC_CACHE_WRITE_1H if cached else 0
    return {
        "input_tokens": _input_tokens(request.body),  # excludes the cache reads and writes below
        "cache_read_input_tokens": _ANTHROPIC_CACHE_READ if cached else 0,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _anthropic_message(request: _Request) -> _JSON:
    # Claude usually says a sentence before it calls a tool: a text block, then the tool_use block.
    output = _Output(_reply_text(request), _tool_call(request, "toolu_0") if request.has("tool-call") else None)
    content: list[_JSON] = [{"type": "text", "text": output.text}]
    stop_reason = "max_tokens" if request.has("length") else "end_turn"
    if output.tool:
        call = output.tool
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": json.loads(call.arguments)})
        stop_reason = "tool_use"
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(request, output.tokens),
    }


def _messages_route(request: _Request) -> _Reply:
    message = _anthropic_message(request)
    if not request.stream:
        return _Json(200, message)
    return _Stream(_anthropic_events(request, message), cut=request.has("cut-stream"))


def _anthropic_events(request: _Request, message: _JSON) -> list[_Event]:
    usage = message["usage"]
    # message_start already reports input tokens and a first output count; message_delta at the end
    # carries the final, cumulative output count and repeats the input and cache counts.
    started = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [_Event({"type": "message_start", "message": started}, "message_start")]
    for index, block in enumerate(message["content"]):
        block_events = _block_events(request, index, block)
        if index == 0:  # the API interleaves pings; clients must skip them
            block_events.insert(1, _Event({"type": "ping"}, "ping"))
        events += block_events
        if request.has("stream-error-event"):
            error = {"type": "overloaded_error", "message": "Overloaded"}
            events.append(_Event({"type": "error", "error": error, "request_id": _new_id("req_")}, "error"))
            return events
    counts = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    final = {"type": "message_delta", "delta": delta, "usage": {key: usage[key] for key in counts}}
    events.append(_Event(final, "message_delta"))
    events.append(_Event({"type": "message_stop"}, "message_stop"))
    return events


def _block_events(request: _Request, index: int, block: _JSON) -> list[_Event]:
    if block["type"] == "text":
        opened: _JSON = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _split_words(block["text"], request.chunks)]
    else:
        opened = {**block, "input": {}}
        partial = _split_chars(json.dumps(block["input"]), request.chunks)
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in partial]
    start = {"type": "content_block_start", "index": index, "content_block": opened}
    events = [_Event(start, "content_block_start")]
    for delta in deltas:
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        events.append(_Event(event, "content_block_delta", content=True))
    events.append(_Event({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return events


def _count_tokens(request: _Request) -> _Reply:
    return _Json(200, {"input_tokens": _input_tokens(request.body)})


# --- errors ----------------------------------------------------------------------------------------

_ERROR_STATUS = {"error-400": 400, "error-429": 429, "error-500": 500, "error-529": 529}
_OPENAI_ERRORS = {  # status -> (type, code), as the API sends them
    400: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    529: ("server_error", None),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _error(provider: _Provider, status: int, message: str | None = None) -> _Json:
    """The provider's error body; the default message is ``simulated <status>`` (``<type>`` for Anthropic)."""
    request_id = _new_id("req_")
    body: _JSON
    if provider == "anthropic":
        kind = _ANTHROPIC_ERRORS[status]
        error = {"type": kind, "message": message or f"simulated {kind}"}
        body = {"type": "error", "error": error, "request_id": request_id}
    else:
        kind, code = _OPENAI_ERRORS[status]
        body = {"error": {"message": message or f"simulated {status}", "type": kind, "param": None, "code": code}}
    retryable = status == 429 or status >= 500
    headers = {"x-request-id": request_id, "request-id": request_id, "x-should-retry": str(retryable).lower()}
    if retryable:
        # The SDKs read retry-after-ms first; "retry-after: 0" alone would NOT be instant: they treat a
        # zero as unset and fall back to their exponential backoff (0.5 s and up).
        headers.update({"retry-after-ms": "1", "retry-after": "0"})
    return _Json(status, body, headers)


def _unknown_argument(name: str) -> _Json:
    """What OpenAI (and servers copying its errors) answer for a request field they do not accept."""
    message = f"Unrecognized request argument supplied: {name}"
    body = {"error": {"message": message, "type": "invalid_request_error", "param": name, "code": None}}
    request_id = _new_id("req_")
    return _Json(400, body, {"x-request-id": request_id, "request-id": request_id, "x-should-retry": "false"})


# --- routing ---------------------------------------------------------------------------------------

_ROUTES: dict[str, tuple[_Provider, Callable[[_Request], _Reply]]] = {
    "/v1/chat/completions": ("openai", _chat_completions),
    "/v1/responses": ("openai", _responses),
    "/v1/embeddings": ("openai", _embeddings),
    "/v1/messages": ("anthropic", _messages_route),
    "/v1/messages/count_tokens": ("anthropic", _count_tokens),
}


class FakeLLMServer:
    """``with FakeLLMServer() as server:`` then point the SDKs at ``server.openai_base_url`` and
    ``server.anthropic_base_url``.

    ``latency_s`` delays every non-streamed response; ``ttft_s`` delays a stream's first content event
    (headers and preamble events go out at once, as a real provider's do); ``chunk_delay_s`` separates
    the stream's events after that.
    """

    def __init__(self, *, latency_s: float = 0.0, ttft_s: float = 0.0, chunk_delay_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.ttft_s = ttft_s
        self.chunk_delay_s = chunk_delay_s
        self.base_url = ""
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._retry_keys: set[str] = set()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeLLMServer:
        """Listen on ``host:port`` (port 0: a free one) and serve in a background thread.

        Loopback unless told otherwise: the server has no authentication. ``base_url`` names the
        address clients should use (loopback when ``host`` is a wildcard such as ``0.0.0.0``).
        """
        if self._httpd is not None:
            return self
        server_class = _HTTPServer6 if ":" in host else _HTTPServer
        self._httpd = server_class((host, port), _Handler)
        self._httpd.fake = self
        url_host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        url_host = f"[{url_host}]" if ":" in url_host else url_host
        self.base_url = f"http://{url_host}:{self._httpd.server_address[1]}"
        # A short poll interval: stop() waits for the serving loop to notice, 0.5 s by default.
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="llmwatch-fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        # Handler threads of kept-alive connections wait for a next request that never comes: end them.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def clear(self) -> None:
        """Forget the request log and which ``error-429-once`` keys were already refused."""
        with self._lock:
            self._requests.clear()
            self._retry_keys.clear()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _first_attempt(self, key: str) -> bool:
        with self._lock:
            first = key not in self._retry_keys
            self._retry_keys.add(key)
            return first

    def _reply(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> _Reply:
        route = _ROUTES.get(path.split("?", 1)[0]) if method == "POST" else None
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw) if raw else {}
        self._record(RecordedRequest(method, path, dict(headers), body))
        if route is None:
            return _error("openai", 404, f"Invalid URL ({method} {path})")
        provider, build = route
        if not isinstance(body, dict):
            return _error(provider, 400, "The request body is not a JSON object.")
        request = _read_request(path, headers, body)
        unknown = request.scenarios - SCENARIOS
        if unknown:
            return _error(provider, 400, f"Unknown fake scenario(s) {sorted(unknown)}; known: {sorted(SCENARIOS)}")
        if request.has("reject-stream-options") and "stream_options" in body and build is _chat_completions:
            return _unknown_argument("stream_options")
        status = self._error_status(request)
        if status:
            return _error(provider, status)
        try:
            return build(request)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # e.g. "n": "two"
            return _error(provider, 400, f"The fake server cannot handle this request: {exc!r}")

    def _error_status(self, request: _Request) -> int:
        for name, status in _ERROR_STATUS.items():
            if request.has(name):
                return status
        if request.has("error-429-once"):
            key = request.headers.get("x-fake-retry-key") or json.dumps(request.body, sort_keys=True)
            if self._first_attempt(key):
                return 429
        return 0


# --- HTTP plumbing ---------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # concurrency tests and the demo open many connections at once
    fake: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-stream are the point of several tests: no traceback for those.
        # Anything else is a bug in this server and should be seen.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so the SDKs keep connections alive; JSON goes with Content-Length, streams with chunked
    # transfer encoding, which is what lets cut-stream be a protocol error rather than a clean EOF.
    protocol_version = "HTTP/1.1"
    # Without TCP_NODELAY a small write that follows another waits for the client's delayed ACK: 40 ms
    # added to every JSON response and stream chunk on Linux loopback.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return None  # a fixture; the request log is FakeLLMServer.requests

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def _serve(self, method: str) -> None:
        try:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            reply = self.server.fake._reply(method, self.path, headers, raw)
            if isinstance(reply, _Stream):
                self._write_stream(reply)
            else:
                self._write_json(reply)
        except OSError:  # BrokenPipe, ConnectionReset: the client went away, nothing to answer
            self.close_connection = True

    def _write_json(self, reply: _Json) -> None:
        if self.server.fake.latency_s:
            time.sleep(self.server.fake.latency_s)
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self._send_common_headers(reply.headers)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_common_headers(self, headers: Mapping[str, str]) -> None:
        request_id = headers.get("x-request-id") or _new_id("req_")
        for name, value in {"x-request-id": request_id, "request-id": request_id, **headers}.items():
            self.send_header(name, value)

    def _write_stream(self, reply: _Stream) -> None:
        fake = self.server.fake
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self._send_common_headers({})
        self.end_headers()
        self.wfile.flush()
        total = sum(e.content for e in reply.events)
        cut_after = max(1, total // 2) if reply.cut else -1
        sent = 0
        for position, event in enumerate(reply.events):
            if event.content and sent == 0:
                time.sleep(fake.ttft_s)
            elif position and fake.chunk_delay_s:
                time.sleep(fake.chunk_delay_s)
            self._write_chunk(_sse_bytes(event))
            sent += event.content
            if sent == cut_after:
                return self._cut()
        self.wfile.write(b"0\r\n\r\n")  # the terminating zero-length chunk
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _cut(self) -> None:
        # Announce a chunk, send part of it, and drop the connection: the client's HTTP layer sees a
        # truncated body (a protocol error), exactly what a network failure mid-stream looks like.
        self.wfile.write(b"100\r\ndata: {")
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _sse_bytes(event: _Event) -> bytes:
    data = event.data if isinstance(event.data, str) else json.dumps(event.data)
    return (f"event: {event.name}\n" if event.name else "").encode() + f"data: {data}\n\n".encode()
