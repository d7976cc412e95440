"""A loopback server that speaks the OpenAI and Anthropic wire formats (JSON and SSE streams).

``llmwatch demo`` and llmwatch's tests drive the *real* SDKs against it, so what is measured is what
users run, with no network and no keys. Replies and token counts are deterministic functions of the
request. A scenario is chosen per request by the header ``x-fake-scenario: name[,name]`` (the SDKs'
``extra_headers``) or by ``[[scenario:name]]`` in the last user message; ``[[chunks:N]]`` sets how many
content chunks a stream has. Scenarios: ``error-400``, ``error-429``, ``error-500``, ``error-529``,
``error-429-once`` (429 for the first request with a given ``x-fake-retry-key``), ``cut-stream``
(the connection drops mid-stream), ``no-usage``, ``usage-on-last-chunk``, ``tool-call``, ``cached``,
``reasoning``, ``length``, ``stream-error-event`` (Anthropic ``event: error`` mid-stream).

Token formulas: input = words in all message texts + 3 per message; output = words of the reply.
OpenAI ``prompt_tokens`` includes cached tokens (``cached``: half of input, rounded down) and
``completion_tokens`` includes reasoning tokens (``reasoning``: 10). Anthropic ``input_tokens``
excludes cache reads (``cached``: 100) and cache writes (``cached``: 50, of which 20 for 1 hour).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_IDS = itertools.count(1)
_MARKER = re.compile(r"\[\[(scenario|chunks):([\w,-]+)\]\]")
_ERRORS = {"error-400": 400, "error-429": 429, "error-500": 500, "error-529": 529}
_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error"}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    scenarios: set[str] = field(default_factory=set)
    chunks: int = 5


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or p.get("content") or "") for p in content if isinstance(p, dict))
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(body.get("messages"), list):
        return [m for m in body["messages"] if isinstance(m, dict)]
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return [m if isinstance(m, dict) else {"role": "user", "content": str(m)} for m in value]
    return []


def _words(text: str) -> int:
    return len(text.split())


def _input_tokens(body: dict[str, Any]) -> int:
    messages = _messages(body)
    system = _text_of(body.get("system")) + " " + _text_of(body.get("instructions"))
    return sum(_words(_text_of(m.get("content"))) + 3 for m in messages) + _words(system)


def _reply(body: dict[str, Any], index: int = 0) -> str:
    messages = _messages(body)
    last = _MARKER.sub("", _text_of(messages[-1].get("content")) if messages else "").split()[:6]
    prefix = f"Choice {index}: " if index else ""
    return prefix + "Echo: " + " ".join(last) + " - this is a deterministic reply from the loopback server."


def _chunks(text: str, count: int) -> list[str]:
    words = text.split(" ")
    size = max(1, -(-len(words) // max(count, 1)))
    pieces = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [p if i == 0 else " " + p for i, p in enumerate(pieces)]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # concurrency tests open many connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients closing streams early is the point of several tests: not worth a traceback.
        return None


class FakeLLMServer:
    """``with FakeLLMServer() as server:`` -> ``server.openai_base_url``, ``server.anthropic_base_url``."""

    def __init__(self, *, latency_s: float = 0.0, ttft_s: float = 0.0, chunk_delay_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.ttft_s = ttft_s
        self.chunk_delay_s = chunk_delay_s
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._retry_keys: set[str] = set()
        self._httpd: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def start(self) -> FakeLLMServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="llmwatch-fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, body))

    def _first_attempt(self, key: str) -> bool:
        with self._lock:
            if key in self._retry_keys:
                return False
            self._retry_keys.add(key)
            return True


class _Handler(BaseHTTPRequestHandler):
    owner: FakeLLMServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: this is a test fixture
        return None

    def do_POST(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up
            self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.owner._record("POST", self.path, headers, None)
            return self._json(400, _openai_error(400, "invalid JSON body"))
        self.owner._record("POST", self.path, headers, body)
        request = _parse_request(self.path, headers, body)
        anthropic = self.path.startswith("/v1/messages")
        status = self._error_status(request)
        if status:
            error = _anthropic_error(status) if anthropic else _openai_error(status, f"simulated {status}")
            return self._json(status, error, {"retry-after-ms": "1", "x-should-retry": "true"})
        if self.owner.latency_s and not body.get("stream"):
            time.sleep(self.owner.latency_s)
        route = {
            "/v1/chat/completions": self._chat,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
            "/v1/messages": self._messages,
            "/v1/messages/count_tokens": self._count_tokens,
        }.get(self.path.split("?", 1)[0])
        if route is None:
            return self._json(404, _openai_error(404, f"no route {self.path}"))
        route(request)

    def _error_status(self, request: _Request) -> int:
        for name, status in _ERRORS.items():
            if name in request.scenarios:
                return status
        if "error-429-once" in request.scenarios:
            key = request.headers.get("x-fake-retry-key") or json.dumps(request.body, sort_keys=True)
            if self.owner._first_attempt(key):
                return 429
        return 0

    # --- plumbing ----------------------------------------------------------------------------------
    def _json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_{next(_IDS)}")
        self.send_header("request-id", f"req_{next(_IDS)}")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[tuple[str | None, Any]], cut: bool = False) -> None:
        # Chunked transfer encoding, so a cut stream is a protocol error the SDK raises, not a clean EOF.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if self.owner.ttft_s:
            time.sleep(self.owner.ttft_s)
        if cut:
            events = events[: max(2, len(events) // 2)]
        for position, (event, data) in enumerate(events):
            if position and self.owner.chunk_delay_s:
                time.sleep(self.owner.chunk_delay_s)
            text = data if isinstance(data, str) else json.dumps(data)
            self._chunk(((f"event: {event}\n" if event else "") + f"data: {text}\n\n").encode())
        if cut:  # announce more bytes than we send, then drop the connection
            self.wfile.write(b"400\r\ndata: {")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # --- OpenAI chat -------------------------------------------------------------------------------
    def _chat(self, request: _Request) -> None:
        body, scenarios = request.body, request.scenarios
        n = int(body.get("n") or 1)
        model = _snapshot(str(body.get("model")))
        usage = _openai_usage(body, scenarios, n)
        finish = "length" if "length" in scenarios else ("tool_calls" if "tool-call" in scenarios else "stop")
        completion_id = f"chatcmpl-{next(_IDS)}"
        if not body.get("stream"):
            choices = [_chat_choice(body, i, finish, "tool-call" in scenarios) for i in range(n)]
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": choices,
                "system_fingerprint": "fp_fake",
                "service_tier": "default",
            }
            if "no-usage" not in scenarios:
                payload["usage"] = usage
            return self._json(200, payload)
        self._sse(_chat_stream(request, completion_id, model, usage, finish, n), cut="cut-stream" in scenarios)

    # --- OpenAI responses --------------------------------------------------------------------------
    def _responses(self, request: _Request) -> None:
        body, scenarios = request.body, request.scenarios
        response = _response_object(body, scenarios)
        if not body.get("stream"):
            return self._json(200, response)
        events: list[tuple[str | None, Any]] = []
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        events.append(("response.created", {"type": "response.created", "response": pending}))
        events.append(("response.in_progress", {"type": "response.in_progress", "response": pending}))
        item = response["output"][0]
        events.append(
            (
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "output_index": 0,
                    "item": {**item, "status": "in_progress", "content": []},
                },
            )
        )
        text = _reply(body)
        part = {"type": "output_text", "text": "", "annotations": []}
        events.append(
            (
                "response.content_part.added",
                {
                    "type": "response.content_part.added",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "part": part,
                },
            )
        )
        for piece in _chunks(text, request.chunks):
            events.append(
                (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": 0,
                        "content_index": 0,
                        "delta": piece,
                        "logprobs": [],
                    },
                )
            )
        events.append(
            (
                "response.output_text.done",
                {
                    "type": "response.output_text.done",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                },
            )
        )
        events.append(
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item})
        )
        events.append(("response.completed", {"type": "response.completed", "response": response}))
        for number, (_, data) in enumerate(events):
            data["sequence_number"] = number
        self._sse(events, cut="cut-stream" in scenarios)

    # --- OpenAI embeddings -------------------------------------------------------------------------
    def _embeddings(self, request: _Request) -> None:
        body = request.body
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []]
        dimensions = int(body.get("dimensions") or 8)
        data = []
        for index, text in enumerate(texts):
            vector = [((len(text) + index + d) % 7) / 7.0 for d in range(dimensions)]
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(_words(t) for t in texts)
        self._json(
            200,
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # --- Anthropic ---------------------------------------------------------------------------------
    def _messages(self, request: _Request) -> None:
        body, scenarios = request.body, request.scenarios
        message = _anthropic_message(body, scenarios)
        if not body.get("stream"):
            return self._json(200, message)
        self._sse(_anthropic_stream(request, message), cut="cut-stream" in scenarios)

    def _count_tokens(self, request: _Request) -> None:
        self._json(200, {"input_tokens": _input_tokens(request.body)})


def _parse_request(path: str, headers: dict[str, str], body: dict[str, Any]) -> _Request:
    request = _Request(path, headers, body)
    for name in headers.get("x-fake-scenario", "").split(","):
        if name.strip():
            request.scenarios.add(name.strip())
    messages = _messages(body)
    last = _text_of(messages[-1].get("content")) if messages else ""
    for kind, value in _MARKER.findall(last):
        if kind == "scenario":
            request.scenarios.update(v for v in value.split(",") if v)
        else:
            request.chunks = max(1, int(value))
    return request


def _snapshot(model: str) -> str:
    return "gpt-4o-mini-2024-07-18" if model == "gpt-4o-mini" else f"{model}-2025-01-01"


def _openai_usage(body: dict[str, Any], scenarios: set[str], n: int) -> dict[str, Any]:
    prompt = _input_tokens(body)
    completion = sum(_words(_reply(body, i)) for i in range(n))
    cached = prompt // 2 if "cached" in scenarios else 0
    reasoning = 10 if "reasoning" in scenarios else 0
    completion += reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call(index: int) -> dict[str, Any]:
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
    }


def _chat_choice(body: dict[str, Any], index: int, finish: str, tool: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if tool else _reply(body, index), "refusal": None}
    if tool:
        message["tool_calls"] = [_tool_call(0)]
    return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}


def _chat_stream(
    request: _Request, completion_id: str, model: str, usage: dict[str, Any], finish: str, n: int
) -> list[tuple[str | None, Any]]:
    body, scenarios = request.body, request.scenarios
    include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and "no-usage" not in scenarios
    on_last = "usage-on-last-chunk" in scenarios

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if include_usage:
            base["usage"] = None
        base.update(extra)
        return base

    events: list[tuple[str | None, Any]] = []
    pieces = {i: _chunks(_reply(body, i), request.chunks) for i in range(n)}
    for i in range(n):
        events.append(
            (
                None,
                chunk(
                    [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                            "logprobs": None,
                        }
                    ]
                ),
            )
        )
    if "tool-call" in scenarios:
        call = _tool_call(0)
        for i in range(n):
            events.append(
                (
                    None,
                    chunk(
                        [
                            {
                                "index": i,
                                "delta": {
                                    "tool_calls": [
                                        {
                                            "index": 0,
                                            "id": call["id"],
                                            "type": "function",
                                            "function": {"name": call["function"]["name"], "arguments": ""},
                                        }
                                    ]
                                },
                                "finish_reason": None,
                            }
                        ]
                    ),
                )
            )
            events.append(
                (
                    None,
                    chunk(
                        [
                            {
                                "index": i,
                                "delta": {
                                    "tool_calls": [
                                        {"index": 0, "function": {"arguments": call["function"]["arguments"]}}
                                    ]
                                },
                                "finish_reason": None,
                            }
                        ]
                    ),
                )
            )
    else:
        for step in range(max(len(p) for p in pieces.values())):
            for i in range(n):  # interleave the choices, as OpenAI does with n > 1
                if step < len(pieces[i]):
                    events.append(
                        (
                            None,
                            chunk(
                                [
                                    {
                                        "index": i,
                                        "delta": {"content": pieces[i][step]},
                                        "finish_reason": None,
                                        "logprobs": None,
                                    }
                                ]
                            ),
                        )
                    )
    for i in range(n):
        last = chunk([{"index": i, "delta": {}, "finish_reason": finish, "logprobs": None}])
        if on_last and i == n - 1:
            last["usage"] = usage
        events.append((None, last))
    if include_usage and not on_last:
        events.append((None, chunk([], usage=usage)))
    events.append((None, "[DONE]"))
    return events


def _response_object(body: dict[str, Any], scenarios: set[str]) -> dict[str, Any]:
    prompt = _input_tokens(body)
    text = _reply(body)
    reasoning = 10 if "reasoning" in scenarios else 0
    output = _words(text) + reasoning
    item: dict[str, Any] = {
        "id": f"msg_{next(_IDS)}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }
    if "tool-call" in scenarios:
        item = {
            "id": f"fc_{next(_IDS)}",
            "type": "function_call",
            "call_id": "call_0",
            "name": "get_weather",
            "arguments": json.dumps({"city": "Paris"}),
            "status": "completed",
        }
    incomplete = "length" in scenarios
    return {
        "id": f"resp_{next(_IDS)}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else "completed",
        "model": _snapshot(str(body.get("model"))),
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None,
        "instructions": body.get("instructions"),
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "usage": {
            "input_tokens": prompt,
            "output_tokens": output,
            "total_tokens": prompt + output,
            "input_tokens_details": {"cached_tokens": prompt // 2 if "cached" in scenarios else 0},
            "output_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


def _anthropic_message(body: dict[str, Any], scenarios: set[str]) -> dict[str, Any]:
    text = _reply(body)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    stop = "max_tokens" if "length" in scenarios else "end_turn"
    if "tool-call" in scenarios:
        content.append({"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Paris"}})
        stop = "tool_use"
    cached = "cached" in scenarios
    usage: dict[str, Any] = {
        "input_tokens": _input_tokens(body),
        "output_tokens": _words(text),
        "cache_read_input_tokens": 100 if cached else 0,
        "cache_creation_input_tokens": 50 if cached else 0,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 30 if cached else 0,
            "ephemeral_1h_input_tokens": 20 if cached else 0,
        },
        "service_tier": "standard",
    }
    return {
        "id": f"msg_{next(_IDS)}",
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model")),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def _anthropic_stream(request: _Request, message: dict[str, Any]) -> list[tuple[str | None, Any]]:
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            events.append(("ping", {"type": "ping"}))
            for piece in _chunks(block["text"], request.chunks):
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}},
                    )
                )
        else:
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                    },
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        if "stream-error-event" in request.scenarios:
            events.append(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
            return events
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": usage,
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _openai_error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _OPENAI_ERROR_TYPES.get(status, "error"),
            "param": None,
            "code": str(status),
        }
    }


def _anthropic_error(status: int) -> dict[str, Any]:
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": f"simulated {kind}"}, "request_id": f"req_{next(_IDS)}"}
