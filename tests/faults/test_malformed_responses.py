"""Odd and broken provider responses: the caller sees exactly what the SDK alone gives, llmwatch copes.

The loopback server covers the cases it has scenarios for (no usage, cut streams, an error event
mid-stream); the rest come from a ``MockTransport`` of the httpx flavour the SDK builds on (``httpx2``,
or ``httpx`` for older SDKs) serving
hand-made bodies: unknown fields, nulls where objects belong, a byte that is not UTF-8 in a stream,
a stream that stops mid-event, garbage lines. For each, a plain and an instrumented client make the
same call: same result or same exception, one span ended, no internal error in llmwatch.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import anthropic
import openai
import pytest

import llmwatch
import llmwatch.testing
from faults._support import (
    ANTHROPIC_MODEL,
    CALL_KINDS,
    CallKind,
    Clients,
    Outcome,
    perform,
    sdk_http_module,
)

MESSAGES = [{"role": "user", "content": "hello"}]


def _chat(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
    body.update(overrides)
    return body


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": choices,
        **extra,
    }


def _sse(*events: Any, done: bool = True) -> bytes:
    out = b""
    for event in events:
        out += event if isinstance(event, bytes) else b"data: " + json.dumps(event).encode() + b"\n\n"
    return out + (b"data: [DONE]\n\n" if done else b"")


def _anthropic_message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 2},
    }
    body.update(overrides)
    return body


def _anthropic_events(*events: dict[str, Any], cut: bool = False) -> bytes:
    out = b"".join(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events)
    return out[: len(out) // 2] if cut else out


ANTHROPIC_STREAM = [
    {"type": "message_start", "message": {**_anthropic_message(content=[], stop_reason=None), "usage": {}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "surprise_event", "whatever": [1, 2, 3]},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": None}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": None}, "usage": None},
    {"type": "message_stop"},
]


@dataclasses.dataclass(frozen=True)
class Malformed:
    name: str
    provider: str  # "openai" | "anthropic"
    stream: bool
    body: bytes
    status: int = 200

    def __str__(self) -> str:
        return self.name


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


MALFORMED = [
    Malformed("openai missing usage", "openai", False, _json(_chat(usage=None))),
    Malformed(
        "openai unknown extra fields",
        "openai",
        False,
        _json(
            _chat(
                surprise={"nested": [1, {"x": None}]},
                usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11, "odd_tokens": {"a": 1}},
                choices=[
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hi", "mood": "cheerful"},
                        "finish_reason": "a_reason_nobody_knows",
                        "extra": True,
                    }
                ],
            )
        ),
    ),
    Malformed(
        "openai null content and finish reason",
        "openai",
        False,
        _json(_chat(choices=[{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": None}])),
    ),
    Malformed("openai null choices", "openai", False, _json(_chat(choices=None))),
    Malformed(
        "openai usage fields null",
        "openai",
        False,
        _json(_chat(usage={"prompt_tokens": None, "completion_tokens": None, "prompt_tokens_details": None})),
    ),
    Malformed("openai body is not json", "openai", False, b"<html>bad gateway</html>"),
    Malformed("openai empty json object", "openai", False, b"{}"),
    Malformed(
        "openai stream with a non-UTF-8 byte",
        "openai",
        True,
        _sse(
            _chunk({"role": "assistant", "content": ""}),
            b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
            b'"choices":[{"index":0,"delta":{"content":"caf\xe9"},"finish_reason":null}]}\n\n',
            _chunk({}, "stop"),
        ),
    ),
    Malformed(
        "openai stream cut mid-event",
        "openai",
        True,
        _sse(_chunk({"content": "Hi"}), done=False) + b'data: {"id":"c1","choices":[{"ind',
    ),
    Malformed("openai stream without done", "openai", True, _sse(_chunk({"content": "Hi"}), done=False)),
    Malformed(
        "openai stream with null and odd chunks",
        "openai",
        True,
        _sse(
            _chunk({"content": None, "tool_calls": None}),
            {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": None},
            _chunk(None),  # choices [] and no usage
            _chunk({"content": ""}, usage={"prompt_tokens": None, "completion_tokens": None}),
            _chunk({"content": "Hi", "weird": 1}, "stop", surprise=[1]),
        ),
    ),
    Malformed("openai stream of garbage lines", "openai", True, b"data: not json\n\n: a comment\n\nretry: 5\n\n"),
    Malformed("anthropic missing usage", "anthropic", False, _json(_anthropic_message(usage=None))),
    Malformed(
        "anthropic null content and unknown block",
        "anthropic",
        False,
        _json(_anthropic_message(content=[{"type": "text", "text": None}, {"type": "hologram", "data": 1}])),
    ),
    Malformed("anthropic content null", "anthropic", False, _json(_anthropic_message(content=None, stop_reason=None))),
    Malformed(
        "anthropic usage fields null",
        "anthropic",
        False,
        _json(_anthropic_message(usage={"input_tokens": None, "output_tokens": None, "cache_creation": None})),
    ),
    Malformed("anthropic stream with odd events", "anthropic", True, _anthropic_events(*ANTHROPIC_STREAM)),
    Malformed("anthropic stream cut mid-event", "anthropic", True, _anthropic_events(*ANTHROPIC_STREAM, cut=True)),
]


def _mock_client(case: Malformed, is_async: bool) -> Any:
    content_type = "text/event-stream" if case.stream else "application/json"

    http = sdk_http_module(openai if case.provider == "openai" else anthropic)

    def handler(request: Any) -> Any:
        return http.Response(case.status, content=case.body, headers={"content-type": content_type})

    transport = http.MockTransport(handler)
    http_client: Any = http.AsyncClient(transport=transport) if is_async else http.Client(transport=transport)
    if case.provider == "openai":
        cls: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
        return cls(api_key="sk-test", base_url="http://mock.invalid/v1", http_client=http_client, max_retries=0)
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return cls(api_key="sk-ant-test", base_url="http://mock.invalid", http_client=http_client, max_retries=0)


async def _call(case: Malformed, client: Any, is_async: bool) -> Outcome:
    kind = next(
        k
        for k in CALL_KINDS
        if k.provider == case.provider
        and k.is_async == is_async
        and k.stream == case.stream
        and not k.helper
        and ("chat" in k.name or case.provider == "anthropic")
    )
    clients = Clients("", "", llmwatch.instrument)
    clients.made[(case.provider, is_async, True)] = client  # perform() asks for a plain client: this one
    return await perform(kind, clients, plain=True)


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", MALFORMED, ids=str)
async def test_malformed_response_reaches_the_caller_as_the_sdk_alone_gives_it(case: Malformed, is_async: bool) -> None:
    expected = await _call(case, _mock_client(case, is_async), is_async)
    with llmwatch.testing.capture() as captured:
        traced = llmwatch.instrument(_mock_client(case, is_async))
        got = await _call(case, traced, is_async)
    assert got.comparable() == expected.comparable()
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0, stats["last_internal_error"]
    assert stats["spans_started"] == stats["spans_ended"] == 1
    (span,) = captured.llm_spans()
    if expected.error is not None:
        assert span.attributes["error.type"] == type(expected.error).__name__


SERVER_SCENARIOS = ["no-usage", "cut-stream", "stream-error-event", "usage-on-last-chunk"]
STREAMING_KINDS = [kind for kind in CALL_KINDS if kind.stream or kind.name.startswith("openai-chat")]


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize("scenario", SERVER_SCENARIOS)
@pytest.mark.parametrize("kind", STREAMING_KINDS, ids=str)
async def test_server_scenario_reaches_the_caller_unchanged(kind: CallKind, scenario: str, clients: Clients) -> None:
    headers = {"x-fake-scenario": scenario}
    expected = await perform(kind, clients, plain=True, headers=headers)
    with llmwatch.testing.capture() as captured:
        got = await perform(kind, clients, plain=False, headers=headers)
    assert got.comparable() == expected.comparable()
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0, stats["last_internal_error"]
    assert stats["spans_started"] == stats["spans_ended"] == len(captured.llm_spans()) == 1
