"""The real anthropic SDK (sync and async) against the loopback server.

Three ways to call ``messages`` (``create``, ``create(stream=True)``, the ``messages.stream(...)`` helper)
times two client flavours, driven through :class:`Api`. Each call gives exactly one span, even with a
real global TracerProvider through which the SDK would emit its own spans, with Anthropic's cache
tokens added to the input and priced as genai-prices prices them.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
from genai_prices import Usage as PricesUsage
from genai_prices import calc_price
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch import _instrument
from llmwatch._demo._server import FakeLLMServer
from llmwatch.testing import Captured

MODEL = "claude-haiku-4-5"  # known to genai-prices, and not deprecated (no SDK warning)
PROMPT = "Hello there"
MODES = ["create", "stream", "helper"]
TTFT_S = 0.05
FLAVOURS = ["sync", "async"]


def ask(text: str = PROMPT) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@dataclass
class Reply:
    """What the user got, whichever way they called."""

    id: str
    text: str
    stop_reason: str
    usage: Any  # the final, cumulative usage the server reported
    events: list[Any]


class Api:
    """An instrumented Anthropic client, sync or async, behind one awaitable interface."""

    def __init__(self, server: FakeLLMServer, flavour: str) -> None:
        cls = anthropic.AsyncAnthropic if flavour == "async" else anthropic.Anthropic
        options = {"api_key": "sk-ant-test-0123456789", "base_url": server.anthropic_base_url, "max_retries": 0}
        self.client = cls(**options)
        assert llmwatch.instrument(self.client) is self.client
        self.plain = cls(**options)  # never instrumented: what the user gets without llmwatch
        self.is_async = flavour == "async"

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"model": MODEL, "max_tokens": 100, "messages": ask(), **kwargs}

    async def create(self, *, plain: bool = False, **kwargs: Any) -> Any:
        client = self.plain if plain else self.client
        return await resolve(client.messages.create(**self._kwargs(kwargs)))

    async def drain(self, stream: Any) -> list[Any]:
        return [item async for item in stream] if self.is_async else list(stream)

    async def take(self, stream: Any, count: int) -> list[Any]:
        return [(await anext(stream)) if self.is_async else next(stream) for _ in range(count)]

    async def helper(self, *, plain: bool = False, **kwargs: Any) -> tuple[str, Any]:
        """``messages.stream(...)``: the text from ``text_stream`` and ``get_final_message()``."""
        manager = (self.plain if plain else self.client).messages.stream(**self._kwargs(kwargs))
        if self.is_async:
            async with manager as stream:
                text = "".join([piece async for piece in stream.text_stream])
                return text, await stream.get_final_message()
        with manager as stream:
            return "".join(stream.text_stream), stream.get_final_message()

    async def helper_left_early(self) -> Any:
        """Leave the ``messages.stream(...)`` block after the first text; returns the (kept) stream."""
        manager = self.client.messages.stream(**self._kwargs({}))
        if self.is_async:
            async with manager as stream:
                async for _ in stream.text_stream:
                    break
        else:
            with manager as stream:
                for _ in stream.text_stream:
                    break
        return stream

    async def run(self, mode: str, *, plain: bool = False, **kwargs: Any) -> Reply:
        if mode == "create":
            message = await self.create(plain=plain, **kwargs)
            return Reply(message.id, _text(message.content), message.stop_reason, message.usage, [])
        if mode == "helper":
            text, message = await self.helper(plain=plain, **kwargs)
            return Reply(message.id, text, message.stop_reason, message.usage, [])
        events = await self.drain(await self.create(plain=plain, stream=True, **kwargs))
        (last,) = [e for e in events if e.type == "message_delta"]
        text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
        start = events[0].message
        # usage is cumulative: message_start's counts, each replaced by the last message_delta's when given
        latest = {
            k: v for k, v in last.usage.model_dump().items() if v is not None and k in type(start.usage).model_fields
        }
        usage = start.usage.model_copy(update=latest)
        return Reply(start.id, text, last.delta.stop_reason, usage, events)


def _text(blocks: list[Any]) -> str:
    return "".join(b.text for b in blocks if b.type == "text")


@pytest.fixture(params=FLAVOURS)
def api(request: pytest.FixtureRequest, server: FakeLLMServer) -> Api:
    return Api(server, request.param)


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]


@pytest.fixture()
def sdk_spans(global_spans: InMemorySpanExporter) -> InMemorySpanExporter:
    """A real global TracerProvider: where the anthropic SDK puts its own spans."""
    return global_spans


def only_span(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def total_input(usage: Any) -> int:
    return int(usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens)


def anthropic_cost(usage: Any) -> float:
    prices_usage = PricesUsage(
        input_tokens=total_input(usage),
        cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens,
        cache_write_1h_tokens=usage.cache_creation.ephemeral_1h_input_tokens,
        output_tokens=usage.output_tokens,
    )
    return float(calc_price(prices_usage, MODEL, provider_id="anthropic").total_price)


def assert_error_span(span: Any, exc: BaseException) -> None:
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == type(exc).__name__
    assert [e.name for e in span.events] == ["exception"]


# --- one call, one span ------------------------------------------------------------------------------
@pytest.mark.parametrize("env", [None, "true"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_one_span_per_call_even_with_the_sdks_own_tracing(
    server: FakeLLMServer,
    captured: Captured,
    sdk_spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    mode: str,
    flavour: str,
) -> None:
    if env is None:
        monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    else:
        monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", env)
    api = Api(server, flavour)  # the SDK reads its tracing option when a client is constructed
    reply = await api.run(mode)
    assert only_span(captured).attributes["gen_ai.response.id"] == reply.id
    assert sdk_spans.get_finished_spans() == ()
    await api.run(mode, plain=True)  # an uninstrumented client keeps the SDK's own span: the check is live
    assert [s.name for s in sdk_spans.get_finished_spans()] == ["anthropic.messages.create"]
    assert len(captured.llm_spans()) == 1


async def test_global_and_instance_instrumentation_overlap_gives_one_span(api: Api, captured: Captured) -> None:
    _instrument.instrument_all()
    await api.create()
    await api.create(plain=True)  # global instrumentation traces every client
    assert len(captured.llm_spans()) == 2


async def test_count_tokens_makes_no_span(api: Api, captured: Captured, sdk_spans: InMemorySpanExporter) -> None:
    counted = await resolve(api.client.messages.count_tokens(model=MODEL, messages=ask()))
    assert counted.input_tokens == len(PROMPT.split()) + 3  # the loopback server's formula
    assert captured.spans == []
    assert sdk_spans.get_finished_spans() == ()  # nor the SDK's own, for an instrumented client


async def test_beta_messages_keep_one_span(api: Api, captured: Captured, sdk_spans: InMemorySpanExporter) -> None:
    await resolve(api.client.beta.messages.create(model=MODEL, max_tokens=10, messages=ask()))
    assert len(captured.llm_spans()) + len(sdk_spans.get_finished_spans()) == 1


async def test_beta_stream_helper_gives_one_complete_span(api: Api, captured: Captured) -> None:
    manager = api.client.beta.messages.stream(model=MODEL, max_tokens=10, messages=ask())
    if api.is_async:
        async with manager as stream:
            message = await stream.get_final_message()
    else:
        with manager as stream:
            message = stream.get_final_message()
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.response.id"] == message.id
    assert attrs["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert attrs["llmwatch.stream.completed"] is True


# --- usage, cost, attributes -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
async def test_cache_tokens_are_added_to_input_and_priced(api: Api, captured: Captured, mode: str) -> None:
    with llmwatch.attributes(user="u1", feature="search"):
        reply = await api.run(mode, extra_headers={"x-fake-scenario": "cached"})
    usage = reply.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 50)
    assert usage.cache_creation.ephemeral_1h_input_tokens == 20
    span = only_span(captured)
    attrs = span.attributes
    assert span.name == f"chat {MODEL}" and span.kind.name == "CLIENT"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == MODEL
    assert attrs["gen_ai.response.id"] == reply.id
    assert attrs["gen_ai.request.max_tokens"] == 100
    # input_tokens excludes cache reads and writes: the semconv input count is their sum
    assert attrs["gen_ai.usage.input_tokens"] == total_input(usage) == usage.input_tokens + 150
    assert attrs["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 100
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 50
    assert "gen_ai.usage.cache_write.input_tokens" not in attrs  # never twice: Langfuse would sum both
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.cost.usd"] == pytest.approx(anthropic_cost(usage), abs=1e-9)
    assert attrs["llmwatch.user"] == "u1" and attrs["llmwatch.feature"] == "search"
    assert attrs["llmwatch.stream"] is (mode != "create")


async def test_stream_usage_is_the_latest_value_not_a_sum(api: Api, captured: Captured) -> None:
    reply = await api.run("stream", extra_headers={"x-fake-scenario": "cached"})
    start = reply.events[0].message.usage
    assert start.output_tokens == 1 and start.input_tokens == reply.usage.input_tokens  # cumulative counts
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.usage.input_tokens"] == total_input(reply.usage)
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.output_tokens > 1
    assert attrs["llmwatch.stream.completed"] is True


async def test_stream_events_are_unchanged(api: Api, captured: Captured) -> None:
    seen = await api.run("stream")
    expected = await api.run("stream", plain=True)
    assert [e.type for e in seen.events] == [e.type for e in expected.events]
    assert seen.events[1:] == expected.events[1:]  # the first carries the (numbered) message id
    span = only_span(captured)
    duration_ms = (span.end_time - span.start_time) / 1e6
    assert 0 <= span.attributes["llmwatch.time_to_first_token_ms"] <= duration_ms


@pytest.mark.parametrize("mode", ["stream", "helper"])
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_ttft_counts_to_the_first_text_delta(captured: Captured, flavour: str, mode: str) -> None:
    with FakeLLMServer(ttft_s=TTFT_S) as slow:  # message_start and the pings come at once, the text later
        await Api(slow, flavour).run(mode)
    span = only_span(captured)
    ttft_ms = span.attributes["llmwatch.time_to_first_token_ms"]
    assert TTFT_S * 1000 <= ttft_ms <= (span.end_time - span.start_time) / 1e6
    # the spec's time to first chunk counts to the first chunk received: message_start, before the text
    assert 0 < span.attributes["gen_ai.response.time_to_first_chunk"] * 1000 < ttft_ms


@pytest.mark.parametrize(
    ("scenario", "stop_reason", "semconv_reason"),
    [("", "end_turn", "stop"), ("length", "max_tokens", "length"), ("tool-call", "tool_use", "tool_call")],
)
@pytest.mark.parametrize("mode", MODES)
async def test_finish_reasons_and_content_in_semconv_shape(
    api: Api, captured_content: Captured, mode: str, scenario: str, stop_reason: str, semconv_reason: str
) -> None:
    tools = [{"name": "get_weather", "description": "Weather now", "input_schema": {"type": "object"}}]
    reply = await api.run(mode, system="Be kind", tools=tools, extra_headers={"x-fake-scenario": scenario})
    assert reply.stop_reason == stop_reason
    attrs = only_span(captured_content).attributes
    assert attrs["gen_ai.response.finish_reasons"] == (stop_reason,)
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be kind"}]
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert json.loads(attrs["gen_ai.tool.definitions"]) == [
        {"type": "function", "name": "get_weather", "description": "Weather now", "parameters": {"type": "object"}}
    ]
    parts: list[dict[str, Any]] = [{"type": "text", "content": reply.text}]
    if scenario == "tool-call":
        parts.append({"type": "tool_call", "id": "toolu_0", "name": "get_weather", "arguments": {"city": "Paris"}})
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": parts, "finish_reason": semconv_reason}
    ]


async def test_no_content_attributes_when_capture_is_off(api: Api, captured: Captured) -> None:
    await api.run("create", system="Be kind")
    attrs = only_span(captured).attributes
    assert not [k for k in attrs if k.startswith(("gen_ai.input", "gen_ai.output.messages", "gen_ai.system_instr"))]


# --- errors and broken streams ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("error-400", anthropic.BadRequestError),
        ("error-429", anthropic.RateLimitError),
        ("error-529", anthropic.OverloadedError),
    ],
)
@pytest.mark.parametrize("mode", MODES)
async def test_errors_reach_the_caller_unchanged(
    api: Api, captured: Captured, mode: str, scenario: str, error: type
) -> None:
    headers = {"x-fake-scenario": scenario}
    with pytest.raises(error) as plain_error:
        await api.run(mode, plain=True, extra_headers=headers)
    with pytest.raises(error) as caught:
        await api.run(mode, extra_headers=headers)
    assert type(caught.value) is error
    assert caught.value.status_code == int(scenario[-3:])
    assert caught.value.body["error"] == plain_error.value.body["error"]
    assert_error_span(only_span(captured), caught.value)


@pytest.mark.parametrize("scenario", ["cut-stream", "stream-error-event"])
@pytest.mark.parametrize("mode", ["stream", "helper"])
async def test_broken_streams_raise_what_the_sdk_raises(api: Api, captured: Captured, mode: str, scenario: str) -> None:
    text = f"hi [[scenario:{scenario}]]"
    with pytest.raises(Exception) as plain_error:
        await api.run(mode, plain=True, messages=ask(text))
    with pytest.raises(type(plain_error.value)) as caught:
        await api.run(mode, messages=ask(text))
    assert type(caught.value) is type(plain_error.value)
    span = only_span(captured)
    assert_error_span(span, caught.value)
    assert span.attributes["llmwatch.stream.completed"] is False


@pytest.mark.parametrize("how", ["close", "helper-block-left"])
async def test_stream_ended_early_ends_its_span_once(api: Api, captured: Captured, how: str) -> None:
    if how == "close":
        stream = await api.create(stream=True)
        await api.take(stream, 3)
        await resolve(stream.close())
        await resolve(stream.close())
    else:
        stream = await api.helper_left_early()  # kept alive: only leaving the block may end the span
    span = only_span(captured)
    assert span.attributes["llmwatch.stream.completed"] is False
    assert span.status.status_code.name == "UNSET"
