"""A loopback server that speaks the OpenAI, Anthropic and Gemini wire formats, JSON and SSE streams.

Why it exists: llmwatch wraps the *real* ``openai`` and ``anthropic`` SDKs, and most bugs in such
wrappers live in wire details (usage that arrives in odd places, interleaved choices, cut streams,
error bodies). Mocking the SDKs would hide exactly those. So ``llmwatch demo`` and the test-suite
point the real SDKs at this server instead: what is measured is what users run, with no network
and no API keys. Standard library only, so the demo needs nothing beyond the SDKs.

Routes (one module per wire format: ``_openai_wire.py``, ``_openai_legacy_wire.py``,
``_openai_batch_wire.py``, ``_anthropic_wire.py``, ``_gemini_wire.py``, ``_bedrock_wire.py``; shared
pieces in ``_wire.py``), by method and path:

- OpenAI (base URL ``base_url + "/v1"``): ``POST /v1/chat/completions``, ``/v1/responses``,
  ``/v1/embeddings``, ``/v1/completions`` (legacy), ``/v1/images/generations``, ``/v1/moderations``,
  ``/v1/audio/transcriptions`` and ``/v1/audio/translations`` (multipart uploads),
  ``/v1/audio/speech`` (answers audio bytes); the Files and Batch APIs: ``POST /v1/files``
  (multipart), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``POST /v1/batches`` (runs
  the batch at once through the routes above) and ``GET /v1/batches/{id}`` (``completed``, with its
  ``output_file_id``).
- Anthropic (base URL ``base_url``): ``POST /v1/messages``, ``/v1/messages/count_tokens``.
- Gemini: ``POST /v1[beta]/models/{model}:generateContent``, ``:streamGenerateContent`` (``alt=sse``),
  ``:batchEmbedContents`` (Gemini API) and
  ``/v1[beta1]/[projects/{p}/locations/{l}/]publishers/google/models/{model}:generateContent``,
  ``:streamGenerateContent``, ``:embedContent`` (Vertex AI); google-genai's base URL is ``base_url``
  (``http_options=types.HttpOptions(base_url=...)``).
- Bedrock runtime (boto3's ``endpoint_url=base_url``): ``POST /model/{modelId}/converse``,
  ``/converse-stream``, ``/invoke``, ``/invoke-with-response-stream`` (streams in the AWS event-stream
  framing; InvokeModel speaks the Anthropic, Llama, Titan text and embeddings and Nova bodies, by model
  id).

Bodies are JSON, or ``multipart/form-data`` (fields, with files as ``_wire.Upload``); a GET has none.

Scenarios are chosen per request by the header ``x-fake-scenario: name[,name]`` (the SDKs'
``extra_headers``), by ``[[scenario:name]]`` in the last user message, or per model with
``server.behave(model, *scenarios, delay_s=...)`` (a model that fails, is slow or cuts its streams
until ``server.behave(model)`` heals it; ``server.requests_for(model)`` counts what reached it);
``[[chunks:N]]`` in the message sets how many content chunks a stream has (default 5). An unknown
scenario name is a 400, so a typo cannot pass a test silently; a scenario that does not apply to a route is ignored.

- ``error-400``, ``error-429``, ``error-500``, ``error-529``: the provider's own error body and headers.
- ``error-429-once``: 429 for the first request with a given ``x-fake-retry-key`` (or, without the
  header, the same body); the SDK's automatic retry then succeeds.
- ``cut-stream``: the connection drops after about half the content chunks.
- ``no-usage`` (OpenAI, Gemini): no usage anywhere, whatever ``stream_options`` asks. (Bedrock InvokeModel:
  no usage in the reply body; the ``x-amzn-bedrock-*-token-count`` headers still carry it.)
- ``reject-stream-options`` (OpenAI chat): a request carrying ``stream_options`` is refused with the 400
  that OpenAI-compatible servers which do not know the field send (``param: "stream_options"``).
- ``usage-on-last-chunk`` (OpenAI chat streams): usage rides on the last content chunk with its text
  and finish reason, unrequested, and no separate usage chunk follows (some compatible servers).
- ``tool-call``: a call of the first declared tool (``get_weather`` when none), with arguments that fit
  its JSON schema (``{"city": "Paris"}`` when it has none).
- ``agent``: an agent loop's turns: a tool call (as ``tool-call``) while tools are offered and the
  conversation holds no tool result yet, then a final text answer (every provider's wire shape).
- ``cached``, ``reasoning``, ``length``: cached input, reasoning output (Gemini: a ``thought`` part
  too), a truncated finish (Gemini: ``MAX_TOKENS``).
- ``stream-error-event`` (Anthropic): an ``event: error`` (overloaded) in the middle of the stream;
  (Bedrock): a ``modelStreamErrorException`` exception message after the first content.
- ``provider-cost`` (OpenAI chat): ``usage.cost`` as OpenRouter reports it ($1/$2 per million input/output
  tokens). Any OpenAI reply names the ``service_tier`` the request asked for (else ``default``).
- Bedrock errors carry their code in ``x-amzn-errortype`` (400 ``ValidationException``, 429
  ``ThrottlingException``, 500 ``InternalServerException``, 529 ``ServiceUnavailableException``). boto3
  retries 429 and 5xx itself: give test clients ``Config(retries={"mode": "standard", "total_max_attempts": 1})``.
- ``batch-bad-lines`` (``POST /v1/batches``): the output file also has a line that is not JSON and a
  result whose request failed (``"error"`` set).

Token formulas (deterministic, so tests can state expected numbers):

- input = for each message, its whitespace words + 3; plus the words of ``system``/``instructions``.
- output = words of the reply text, plus the words of ``name arguments`` for a tool call.
- OpenAI ``cached``: ``cached_tokens = input // 2``, *included* in ``prompt_tokens``/``input_tokens``.
- OpenAI ``reasoning``: 10 reasoning tokens, *included* in ``completion_tokens``/``output_tokens``.
- Anthropic ``input_tokens`` is the formula and *excludes* the cache: ``cached`` adds
  ``cache_read_input_tokens = 100`` and ``cache_creation_input_tokens = 50`` (30 for 5 minutes, 20 for 1 hour).
- Embeddings: words of each input (token arrays: their length); no per-message overhead.
- Completions and images: the ``prompt`` counts as one user message. gpt-image models: 272 output
  (image) tokens per image; dall-e models report no usage.
- Audio uploads: ``size / 16000`` seconds and ``size // 100`` audio tokens; gpt-4o-*-transcribe report
  tokens (audio + prompt words in, transcript words out), whisper-1 transcriptions the seconds,
  translations nothing unless ``verbose_json`` (its ``duration``). Speech answers audio bytes, no usage.
- Gemini: ``promptTokenCount`` = the formula over ``contents`` (+ the words of ``systemInstruction``);
  ``cached``: ``cachedContentTokenCount = prompt // 2``, *included* in ``promptTokenCount``;
  ``reasoning``: ``thoughtsTokenCount = 10``, *not* in ``candidatesTokenCount`` (the reply's words, a
  function call's ``name city Paris``). Stream chunks carry the running totals, the last the full
  counts. The Gemini API's ``batchEmbedContents`` reports no usage; Vertex's ``embedContent`` does.
- Bedrock: Converse and the Anthropic and Nova bodies use the formula above; Llama's ``prompt`` and
  Titan's ``inputText`` count their words only. ``inputTokens`` (and the ``-input-token-count`` header)
  *excludes* the cache, as Anthropic's does: ``cached`` adds 100 cache reads and 50 writes (Converse's
  ``cacheDetails``: 30 ``5m``, 20 ``1h``; Nova: 100 reads, no writes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import random
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmwatch._demo import (
    _anthropic_wire,
    _bedrock_wire,
    _gemini_wire,
    _openai_batch_wire,
    _openai_legacy_wire,
    _openai_wire,
)
from llmwatch._demo._wire import (
    ERROR_STATUS,
    SCENARIOS,
    Json,
    Raw,
    RecordedRequest,
    Reply,
    Request,
    Route,
    Stream,
    error,
    new_id,
    parse_multipart,
    read_request,
    sse_bytes,
)

__all__ = ["FakeLLMServer", "RecordedRequest", "SCENARIOS"]


# --- routing ---------------------------------------------------------------------------------------

_ROUTES: tuple[Route, ...] = (
    *_openai_wire.ROUTES,
    *_openai_legacy_wire.ROUTES,
    *_openai_batch_wire.ROUTES,
    *_anthropic_wire.ROUTES,
    *_gemini_wire.ROUTES,
    *_bedrock_wire.ROUTES,
)
_EXACT_ROUTES = {(route.method, route.path): route for route in _ROUTES if re.escape(route.path) == route.path}
_PATTERN_ROUTES = [
    (route.method, re.compile(route.path), route)
    for route in _ROUTES
    if (route.method, route.path) not in _EXACT_ROUTES
]


def model_of(path: str, body: Any) -> str | None:
    """The model a request asks for: the body's ``model``, else Bedrock's ``/model/{id}/`` or
    Gemini's ``/models/{model}:`` path segment."""
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return str(body["model"])
    found = _PATH_MODEL.search(path.split("?", 1)[0])
    return urllib.parse.unquote(found.group(1)) if found else None


_PATH_MODEL = re.compile(r"/models?/([^/:]+)")


def _route(method: str, path: str) -> Route | None:
    path = path.split("?", 1)[0]
    exact = _EXACT_ROUTES.get((method, path))
    if exact is not None:
        return exact
    return next((route for verb, pattern, route in _PATTERN_ROUTES if verb == method and pattern.fullmatch(path)), None)


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
        self._store: dict[str, Any] = {}  # what the routes keep between requests (uploaded files, batches)
        # model -> (scenarios, delay, the share of requests they apply to, its generator)
        self._behaviours: dict[str, tuple[frozenset[str], float, float, random.Random]] = {}
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

    def behave(self, model: str, *scenarios: str, delay_s: float = 0.0, share: float = 1.0, seed: int = 0) -> None:
        """Every later request for ``model`` gets ``scenarios`` as if its ``x-fake-scenario`` named them
        (``"error-500"``, ``"error-429"``, ``"cut-stream"``...), after ``delay_s`` seconds (a slow
        model: the client's timeout fires first). ``share``: only that fraction of the requests get the
        scenarios (drawn from a ``seed``ed generator: a model failing 40 % of its calls, reproducibly).
        No scenarios and no delay: healthy again."""
        unknown = set(scenarios) - SCENARIOS
        if unknown:
            raise ValueError(f"Unknown fake scenario(s) {sorted(unknown)}; known: {sorted(SCENARIOS)}")
        with self._lock:
            if scenarios or delay_s:
                self._behaviours[model] = (frozenset(scenarios), delay_s, share, random.Random(seed))
            else:
                self._behaviours.pop(model, None)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """The requests received so far that asked for ``model`` (body, Bedrock or Gemini path)."""
        return [request for request in self.requests if model_of(request.path, request.body) == model]

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

    def _reply(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        route = _route(method, path)
        body: Any = None
        content_type = headers.get("content-type", "")
        with contextlib.suppress(ValueError):
            if content_type.startswith("multipart/form-data"):
                body = parse_multipart(raw, content_type)
            else:
                body = json.loads(raw) if raw else {}
        self._record(RecordedRequest(method, path, dict(headers), body))
        if route is None:
            return error(_openai_wire.openai_error_body, 404, f"Invalid URL ({method} {path})")
        if not isinstance(body, dict):
            return error(route.error_body, 400, "The request body is not a JSON object.", route.error_headers)
        request = read_request(path, headers, body, method, self._store)
        behaviour = self._behaviours.get(model_of(path, body) or "") if self._behaviours else None
        if behaviour is not None:
            scenarios, delay_s, share, draw = behaviour
            with self._lock:
                chosen = share >= 1.0 or draw.random() < share
            if chosen:
                request = dataclasses.replace(request, scenarios=request.scenarios | scenarios)
            time.sleep(delay_s)
        unknown = request.scenarios - SCENARIOS
        if unknown:
            message = f"Unknown fake scenario(s) {sorted(unknown)}; known: {sorted(SCENARIOS)}"
            return error(route.error_body, 400, message, route.error_headers)
        rejected = route.reject(request) if route.reject is not None else None
        if rejected is not None:
            return rejected
        status = self._error_status(request)
        if status:
            return error(route.error_body, status, error_headers=route.error_headers)
        try:
            return route.build(request)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # e.g. "n": "two"
            message = f"The fake server cannot handle this request: {exc!r}"
            return error(route.error_body, 400, message, route.error_headers)

    def _error_status(self, request: Request) -> int:
        for name, status in ERROR_STATUS.items():
            if request.has(name):
                return status
        if request.has("error-429-once"):
            key = request.headers.get("x-fake-retry-key") or json.dumps(request.body, sort_keys=True, default=str)
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
            if isinstance(reply, Stream):
                self._write_stream(reply)
            elif isinstance(reply, Raw):
                self._write_body(reply.status, reply.data, reply.content_type, reply.headers)
            else:
                self._write_json(reply)
        except OSError:  # BrokenPipe, ConnectionReset: the client went away, nothing to answer
            self.close_connection = True

    def _write_json(self, reply: Json) -> None:
        self._write_body(reply.status, json.dumps(reply.body).encode(), "application/json", reply.headers)

    def _write_body(self, status: int, data: bytes, content_type: str, headers: Mapping[str, str]) -> None:
        if self.server.fake.latency_s:
            time.sleep(self.server.fake.latency_s)
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self._send_common_headers(headers)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_common_headers(self, headers: Mapping[str, str]) -> None:
        request_id = headers.get("x-request-id") or new_id("req_")
        for name, value in {"x-request-id": request_id, "request-id": request_id, **headers}.items():
            self.send_header(name, value)

    def _write_stream(self, reply: Stream) -> None:
        fake = self.server.fake
        self.send_response(200)
        self.send_header("content-type", reply.content_type)
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self._send_common_headers(reply.headers)
        self.end_headers()
        self.wfile.flush()
        total = sum(e.content for e in reply.events)
        cut_after = max(1, total // 2) if reply.cut else -1
        sent = 0
        encode = reply.encode or sse_bytes
        for position, event in enumerate(reply.events):
            if event.content and sent == 0:
                time.sleep(fake.ttft_s)
            elif position and fake.chunk_delay_s:
                time.sleep(fake.chunk_delay_s)
            self._write_chunk(encode(event))
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
