"""Fixed, realistic provider traffic for the benchmarks: responses, SSE streams, mock transports.

Everything runs in-process over the SDKs' own ``httpx2`` ``MockTransport`` (recent ``openai`` and
``anthropic`` SDKs build on the ``httpx2`` fork, so transports come from the module they import).
A handler can add a simulated server latency (``time.sleep`` for sync clients, ``asyncio.sleep``
for async ones) and streams can hold back their first chunk to test time-to-first-token.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-latest"
OPENAI_MESSAGES = [
    {"role": "system", "content": "You are a terse assistant for an online bookshop."},
    {"role": "user", "content": "Which of these three titles ships fastest to Lyon? Answer in one sentence."},
]
ANTHROPIC_SYSTEM = "You are a terse assistant for an online bookshop."
ANTHROPIC_MESSAGES = [OPENAI_MESSAGES[1]]
ANSWER = "The paperback edition of 'Dune' ships fastest: it is in stock at the Lyon warehouse."

OPENAI_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-AbC123bench",
    "object": "chat.completion",
    "created": 1764547200,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_0ba0d124f1",
    "service_tier": "default",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER, "refusal": None, "annotations": []},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 41,
        "completion_tokens": 21,
        "total_tokens": 62,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
}

ANTHROPIC_RESPONSE: dict[str, Any] = {
    "id": "msg_01XbenchAbC123",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": ANSWER}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 38,
        "output_tokens": 24,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    },
}

JSON_HEADERS = {"content-type": "application/json", "x-request-id": "req_bench"}
SSE_HEADERS = {"content-type": "text/event-stream", "x-request-id": "req_bench"}


# --- streams --------------------------------------------------------------------------------------
def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def openai_stream_events(chunks: int, include_usage: bool) -> list[bytes]:
    """A chat completion stream as OpenAI sends it: ``chunks`` content chunks, the last with a finish
    reason, then (when the request asked for it) the usage chunk with ``choices: []``, then ``[DONE]``."""
    base = {"id": "chatcmpl-AbC123bench", "object": "chat.completion.chunk", "created": 1764547200}
    base |= {"model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1"}
    events = []
    for i in range(chunks):
        delta: dict[str, Any] = {"content": f"tok{i} "}
        if i == 0:
            delta = {"role": "assistant", "content": "tok0 ", "refusal": None}
        finish = "stop" if i == chunks - 1 else None
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        events.append(_sse(base | {"choices": [choice], "usage": None}))
    if include_usage:
        usage = {"prompt_tokens": 41, "completion_tokens": chunks, "total_tokens": 41 + chunks}
        events.append(_sse(base | {"choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_stream_events(chunks: int) -> list[bytes]:
    """A Messages stream as Anthropic sends it: message_start, a ping, one text block of ``chunks``
    deltas, message_delta with the final (cumulative) usage, message_stop."""
    message = dict(ANTHROPIC_RESPONSE, content=[], stop_reason=None)
    message["usage"] = dict(ANTHROPIC_RESPONSE["usage"], output_tokens=1)
    events = [
        _sse({"type": "message_start", "message": message}, "message_start"),
        _sse({"type": "ping"}, "ping"),
        _sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
    ]
    for i in range(chunks):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}}
        events.append(_sse(delta, "content_block_delta"))
    events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    final = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
    final["usage"] = {"output_tokens": chunks}
    events.append(_sse(final, "message_delta"))
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


def _stream_classes() -> tuple[type, type]:
    import httpx2

    class DelayedStream(httpx2.SyncByteStream):
        """Yields pre-encoded SSE events, sleeping ``first_delay_s`` before the first one."""

        def __init__(self, events: Sequence[bytes], first_delay_s: float) -> None:
            self.events, self.first_delay_s = events, first_delay_s

        def __iter__(self) -> Iterator[bytes]:
            if self.first_delay_s:
                time.sleep(self.first_delay_s)
            yield from self.events

    class AsyncDelayedStream(httpx2.AsyncByteStream):
        def __init__(self, events: Sequence[bytes], first_delay_s: float) -> None:
            self.events, self.first_delay_s = events, first_delay_s

        async def __aiter__(self) -> AsyncIterator[bytes]:
            if self.first_delay_s:
                await asyncio.sleep(self.first_delay_s)
            for event in self.events:
                yield event

    return DelayedStream, AsyncDelayedStream


# --- transports -----------------------------------------------------------------------------------
class Server:
    """What the mock server answers: a fixed JSON body, or an SSE stream for ``stream: true`` requests."""

    def __init__(
        self, provider: str, *, chunks: int = 200, latency_s: float = 0.0, first_chunk_delay_s: float = 0.0
    ) -> None:
        self.provider = provider
        self.latency_s = latency_s
        self.first_chunk_delay_s = first_chunk_delay_s
        response = OPENAI_RESPONSE if provider == "openai" else ANTHROPIC_RESPONSE
        self.body = json.dumps(response).encode()
        if provider == "openai":
            self.streams = {usage: openai_stream_events(chunks, usage) for usage in (False, True)}
        else:
            events = anthropic_stream_events(chunks)
            self.streams = {False: events, True: events}
        self.stream_cls, self.async_stream_cls = _stream_classes()

    def _response(self, request: Any, stream_cls: type) -> Any:
        import httpx2

        payload = json.loads(request.content) if request.content else {}
        if not payload.get("stream"):
            return httpx2.Response(200, content=self.body, headers=JSON_HEADERS)
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        events = self.streams[include_usage]
        if self.first_chunk_delay_s:
            return httpx2.Response(200, stream=stream_cls(events, self.first_chunk_delay_s), headers=SSE_HEADERS)
        return httpx2.Response(200, content=b"".join(events), headers=SSE_HEADERS)

    def handle(self, request: Any) -> Any:
        if self.latency_s:
            time.sleep(self.latency_s)
        return self._response(request, self.stream_cls)

    async def handle_async(self, request: Any) -> Any:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return self._response(request, self.async_stream_cls)


def make_client(provider: str, *, is_async: bool = False, **server_options: Any) -> Any:
    """A real ``openai``/``anthropic`` client whose HTTP goes to an in-process :class:`Server`."""
    import httpx2

    server = Server(provider, **server_options)
    if is_async:
        http_client: Any = httpx2.AsyncClient(transport=httpx2.MockTransport(server.handle_async))
    else:
        http_client = httpx2.Client(transport=httpx2.MockTransport(server.handle))
    options: dict[str, Any] = {"api_key": "sk-bench", "max_retries": 0, "http_client": http_client}
    cls: Any
    if provider == "openai":
        import openai

        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        return cls(base_url="http://bench.invalid/v1", **options)
    import anthropic

    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return cls(base_url="http://bench.invalid", **options)


def call_kwargs(provider: str, *, stream: bool = False) -> dict[str, Any]:
    """The request every benchmark sends (same shape for every variant)."""
    if provider == "openai":
        kwargs: dict[str, Any] = {"model": OPENAI_MODEL, "messages": OPENAI_MESSAGES, "temperature": 0.2}
    else:
        kwargs = {"model": ANTHROPIC_MODEL, "system": ANTHROPIC_SYSTEM, "messages": ANTHROPIC_MESSAGES}
        kwargs["max_tokens"] = 256
    if stream:
        kwargs["stream"] = True
    return kwargs


def caller(client: Any, provider: str, *, stream: bool = False) -> Callable[[], Any]:
    """A zero-argument function making one call (sync or async, whatever the client is)."""
    create = client.chat.completions.create if provider == "openai" else client.messages.create
    kwargs = call_kwargs(provider, stream=stream)
    return lambda: create(**kwargs)
