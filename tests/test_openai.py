"""The real openai SDK (sync and async) against the loopback server.

Every test runs once per client flavour through :class:`Api`, which gives the sync and the async client
one awaitable interface, so a test body is written once. Each call must give exactly one span with the
exact values the server reported, and the user must get exactly what an uninstrumented client gets
(``Api.plain``: same SDK class, never passed to ``llmwatch.instrument``).
"""

from __future__ import annotations

import gc
import inspect
import json
import operator
from collections.abc import Iterator
from typing import Any

import genai_prices
import openai
import pydantic
import pytest
import tiktoken
from genai_prices import Usage as PricesUsage
from genai_prices import calc_price
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import SpanProcessor

import llmwatch
from llmwatch import _instrument
from llmwatch._demo._server import FakeLLMServer
from llmwatch._policy import _tokens
from llmwatch.testing import Captured

MODEL = "gpt-4o-mini"
SNAPSHOT = "gpt-4o-mini-2024-07-18"  # the loopback server answers with a dated snapshot, as OpenAI does
EMBEDDING_MODEL = "text-embedding-3-small"
USER = [{"role": "user", "content": "What is the capital of France?"}]
TTFT_S = 0.05
CONTENT_KEYS = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
)


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Api:
    """An instrumented OpenAI client, sync or async, behind one awaitable interface."""

    def __init__(self, client: Any, plain: Any) -> None:
        self.client = client
        self.plain = plain  # same class, never instrumented: what the user would get without llmwatch
        self.is_async = isinstance(client, openai.AsyncOpenAI)

    async def call(self, path: str, *, plain: bool = False, **kwargs: Any) -> Any:
        method = operator.attrgetter(path)(self.plain if plain else self.client)
        return await resolve(method(**kwargs))

    async def chat(self, *, plain: bool = False, **kwargs: Any) -> Any:
        return await self.call("chat.completions.create", plain=plain, **{"model": MODEL, "messages": USER, **kwargs})

    async def drain(self, stream: Any) -> list[Any]:
        return [item async for item in stream] if self.is_async else list(stream)

    async def take(self, stream: Any, count: int) -> list[Any]:
        return [(await anext(stream)) if self.is_async else next(stream) for _ in range(count)]

    async def first_in_with_block(self, stream: Any) -> list[Any]:
        """Leave a ``with`` block after the first chunk (``break`` out of the loop)."""
        seen: list[Any] = []
        if self.is_async:
            async with stream:
                async for chunk in stream:
                    seen.append(chunk)
                    break
        else:
            with stream:
                for chunk in stream:
                    seen.append(chunk)
                    break
        return seen

    async def stream_helper(self, kind: str, *, first_only: bool = False) -> tuple[list[Any], Any]:
        """``chat.completions.stream(...)`` or ``responses.stream(...)`` in its ``with`` block: the events
        read (all, or only the first before leaving the block) and the helper's stream object."""
        if kind == "chat":
            manager = self.client.chat.completions.stream(model=MODEL, messages=USER)
        else:
            manager = self.client.responses.stream(model=MODEL, input="Hello there")
        events: list[Any] = []
        if self.is_async:
            async with manager as stream:
                async for event in stream:
                    events.append(event)
                    if first_only:
                        break
        else:
            with manager as stream:
                for event in stream:
                    events.append(event)
                    if first_only:
                        break
        return events, stream

    async def streaming_response(self, **kwargs: Any) -> tuple[Any, Any]:
        """``with_streaming_response.create(...)``: its headers and parsed body."""
        manager = self.client.chat.completions.with_streaming_response.create(model=MODEL, messages=USER, **kwargs)
        if self.is_async:
            async with manager as response:
                return response.headers, await response.parse()
        with manager as response:
            return response.headers, response.parse()


def make_api(server: FakeLLMServer, flavour: str) -> Api:
    cls = openai.AsyncOpenAI if flavour == "async" else openai.OpenAI
    options = {"api_key": "sk-test-key-0123456789", "base_url": server.openai_base_url, "max_retries": 0}
    client = cls(**options)
    # the same object, usable exactly as before; named openai (the loopback host alone: openai_compatible)
    assert llmwatch.instrument(client, provider="openai") is client
    return Api(client, cls(**options))


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, server: FakeLLMServer) -> Api:
    return make_api(server, request.param)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[FakeLLMServer]:
    """Streams whose first output event comes TTFT_S after the headers and preamble events."""
    with FakeLLMServer(ttft_s=TTFT_S) as slow:
        yield slow


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]  # every span ended (exactly once: see only_span)


# --- helpers ----------------------------------------------------------------------------------------
def only_span(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def openai_cost(model: str, input_tokens: int, cached: int, output_tokens: int) -> float:
    usage = PricesUsage(input_tokens=input_tokens, cache_read_tokens=cached, output_tokens=output_tokens)
    return float(calc_price(usage, model, provider_id="openai").total_price)


def port_of(server: FakeLLMServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def without_ids(items: list[Any]) -> list[dict[str, Any]]:
    """What the user sees, minus what differs per request (its id and creation second)."""
    return [item.model_dump(exclude={"id", "created"}) for item in items]


def stream_text(chunks: list[Any], index: int = 0) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == index)


def assert_ttft(span: Any) -> None:
    attrs = span.attributes
    duration_ms = (span.end_time - span.start_time) / 1e6
    assert 0 <= attrs["llmwatch.time_to_first_token_ms"] <= duration_ms
    # the spec's time to first chunk: to the first chunk received, output or not (never after the first output)
    assert 0 < attrs["gen_ai.response.time_to_first_chunk"] * 1e3 <= attrs["llmwatch.time_to_first_token_ms"]


def assert_error_span(span: Any, exc: BaseException) -> None:
    assert span.status.status_code.name == "ERROR"
    assert span.status.description == str(exc)[:512]
    assert span.attributes["error.type"] == type(exc).__name__
    assert [e.name for e in span.events] == ["exception"]


# --- chat, non-streamed -----------------------------------------------------------------------------
async def test_chat_span_carries_every_applicable_attribute(api: Api, captured: Captured, server: Any) -> None:
    request = {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "seed": 7,
        "stop": ["\n\n"],
        "frequency_penalty": 0.1,
        "presence_penalty": 0.3,
    }
    with llmwatch.attributes(user="u1", feature="search"):
        reply = await api.chat(**request)
    plain = await api.chat(plain=True, **request)
    assert without_ids([reply]) == without_ids([plain])  # the user's result is untouched
    assert len(captured.spans) == 1
    span = only_span(captured)
    attrs = dict(span.attributes)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind.name == "CLIENT"
    assert span.status.status_code.name == "UNSET"
    cost = openai_cost(SNAPSHOT, reply.usage.prompt_tokens, 0, reply.usage.completion_tokens)
    assert attrs.pop("llmwatch.cost.usd") == pytest.approx(cost, abs=1e-9)
    assert attrs.pop("llmwatch.cost.input_usd") + attrs.pop("llmwatch.cost.output_usd") == pytest.approx(cost, abs=1e-9)
    fingerprint = attrs.pop("llmwatch.prompt.fingerprint")
    assert isinstance(fingerprint, str) and len(fingerprint) == 16
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("\n\n",),
        "gen_ai.request.frequency_penalty": 0.1,
        "gen_ai.request.presence_penalty": 0.3,
        "gen_ai.output.type": "text",
        "openai.api.type": "chat_completions",
        "openai.response.system_fingerprint": reply.system_fingerprint,
        "gen_ai.response.id": reply.id,
        "gen_ai.response.model": SNAPSHOT,
        "gen_ai.response.finish_reasons": ("stop",),
        "openai.response.service_tier": "default",
        "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": reply.usage.completion_tokens,
        "server.address": "127.0.0.1",
        "server.port": port_of(server),
        "llmwatch.usage.source": "provider",
        "llmwatch.cost.source": f"genai-prices {genai_prices.__version__}",
        "llmwatch.user": "u1",
        "user.id": "u1",
        "llmwatch.feature": "search",
        "llmwatch.stream": False,
    }
    stats = llmwatch.stats()
    assert stats["spans_started"] == stats["spans_ended"] == 1


class StartRecorder(SpanProcessor):
    """The attributes each span had when it started: what a sampler can see."""

    def __init__(self) -> None:
        self.at_start: list[dict[str, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.at_start.append(dict(span.attributes))


async def test_sampling_relevant_attributes_are_set_when_the_span_starts(
    api: Api, captured: Captured, server: FakeLLMServer
) -> None:
    recorder = StartRecorder()
    captured.tracer_provider.add_span_processor(recorder)
    with llmwatch.attributes(user="u1", feature="search"):
        await api.chat()
    (at_start,) = recorder.at_start
    assert {k: at_start.get(k) for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
    }
    assert (at_start["server.address"], at_start["server.port"]) == ("127.0.0.1", port_of(server))
    assert (at_start["llmwatch.user"], at_start["llmwatch.feature"]) == ("u1", "search")


@pytest.mark.parametrize("scenario", ["cached", "reasoning", "cached,reasoning"])
async def test_cached_and_reasoning_tokens_are_counted_once_and_priced(
    api: Api, captured: Captured, scenario: str
) -> None:
    reply = await api.chat(extra_headers={"x-fake-scenario": scenario})
    usage = reply.usage
    cached = usage.prompt_tokens_details.cached_tokens
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert (cached > 0) is ("cached" in scenario) and (reasoning == 10) is ("reasoning" in scenario)
    attrs = only_span(captured).attributes
    # prompt_tokens already includes cached_tokens, completion_tokens already includes reasoning_tokens
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs.get("gen_ai.usage.cache_read.input_tokens") == (cached or None)
    assert attrs.get("gen_ai.usage.reasoning.output_tokens") == (reasoning or None)
    expected = openai_cost(SNAPSHOT, usage.prompt_tokens, cached, usage.completion_tokens)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected, abs=1e-9)


async def test_fingerprint_is_stable_per_prompt(api: Api, captured: Captured) -> None:
    for content in ("same prompt", "same prompt", "another prompt"):
        await api.chat(messages=[{"role": "user", "content": content}])
    await api.chat(messages=[{"role": "system", "content": "same prompt"}])  # same text, other role
    prints = [s.attributes["llmwatch.prompt.fingerprint"] for s in captured.llm_spans()]
    assert prints[0] == prints[1]
    assert len({prints[0], prints[2], prints[3]}) == 3


async def test_content_capture_text_reply_in_semconv_shape(api: Api, captured_content: Captured) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]
    reply = await api.chat(messages=messages)
    attrs = only_span(captured_content).attributes
    # a system message is part of the chat history: in the input messages only (the spec), not twice
    assert "gen_ai.system_instructions" not in attrs
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_9", "name": "get_weather", "arguments": {"city": "Oslo"}}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_9", "response": "sunny"}]},
        {"role": "user", "parts": [{"type": "text", "content": "And tomorrow?"}]},
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": reply.choices[0].message.content}],
            "finish_reason": "stop",
        }
    ]
    assert "gen_ai.tool.definitions" not in attrs


async def test_content_capture_tool_call_reply(api: Api, captured_content: Captured) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object"}},
        }
    ]
    await api.chat(tools=tools, extra_headers={"x-fake-scenario": "tool-call"})
    attrs = only_span(captured_content).attributes
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)  # the provider's own value
    assert json.loads(attrs["gen_ai.tool.definitions"]) == [
        {"type": "function", "name": "get_weather", "description": "Weather now", "parameters": {"type": "object"}}
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_0", "name": "get_weather", "arguments": {"city": "Paris"}}],
            "finish_reason": "tool_call",  # the semconv enum
        }
    ]


async def test_no_content_attributes_when_capture_is_off(api: Api, captured: Captured) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    await api.chat(messages=[{"role": "system", "content": "Be brief."}, *USER], tools=tools)
    await api.drain(await api.chat(stream=True))
    attrs = [s.attributes for s in captured.llm_spans()]
    assert all(key not in a for a in attrs for key in (*CONTENT_KEYS, "llmwatch.prompt.variables"))


async def test_two_choices_keep_a_finish_reason_and_an_output_message_each(
    api: Api, captured_content: Captured
) -> None:
    reply = await api.chat(n=2, extra_headers={"x-fake-scenario": "length"})
    attrs = only_span(captured_content).attributes
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.response.finish_reasons"] == ("length", "length")
    outputs = json.loads(attrs["gen_ai.output.messages"])
    assert [o["parts"][0]["content"] for o in outputs] == [c.message.content for c in reply.choices]
    assert [o["finish_reason"] for o in outputs] == ["length", "length"]


# --- chat, streamed ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stream_options", [None, {"include_usage": True}, {"include_obfuscation": False}], ids=["unset", "usage", "other"]
)
async def test_stream_user_sees_the_same_chunks(
    api: Api, server: FakeLLMServer, captured: Captured, stream_options: dict[str, bool] | None
) -> None:
    options = {"stream_options": stream_options} if stream_options else {}
    user_asked_usage = bool(stream_options and stream_options.get("include_usage"))
    expected = await api.drain(await api.chat(plain=True, stream=True, **options))
    assert server.requests[-1].body.get("stream_options") == stream_options
    with llmwatch.attributes(user="u1"):
        seen = await api.drain(await api.chat(stream=True, **options))
    assert server.requests[-1].body["stream_options"] == {**(stream_options or {}), "include_usage": True}
    assert without_ids(seen) == without_ids(expected)
    assert all(c.choices for c in seen[:-1])
    assert (seen[-1].choices == [] and seen[-1].usage is not None) is user_asked_usage
    usage = (await api.chat(plain=True)).usage  # the server's usage is a function of the request
    span = only_span(captured)
    attrs = span.attributes
    assert attrs["gen_ai.request.stream"] is True and attrs["llmwatch.stream"] is True
    assert attrs["llmwatch.stream.completed"] is True
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["gen_ai.response.id"] == seen[0].id
    assert attrs["gen_ai.response.model"] == SNAPSHOT
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(
        openai_cost(SNAPSHOT, usage.prompt_tokens, 0, usage.completion_tokens), abs=1e-9
    )
    assert attrs["llmwatch.user"] == "u1"
    assert_ttft(span)


async def test_stream_chunks_serialise_like_uninstrumented_ones(api: Api, captured: Captured) -> None:
    expected = await api.drain(await api.chat(plain=True, stream=True))
    seen = await api.drain(await api.chat(stream=True))
    as_sent = operator.methodcaller("to_dict")  # exclude_unset: the fields the server sent
    assert [{**as_sent(c), "id": "", "created": 0} for c in seen] == [
        {**as_sent(c), "id": "", "created": 0} for c in expected
    ]


async def test_stream_with_two_choices(api: Api, captured_content: Captured) -> None:
    expected = await api.drain(await api.chat(plain=True, stream=True, n=2))
    seen = await api.drain(await api.chat(stream=True, n=2))
    assert without_ids(seen) == without_ids(expected)
    assert [c.choices[0].index for c in seen[2:4]] == [0, 1]  # interleaved
    usage = (await api.chat(plain=True, n=2)).usage
    attrs = only_span(captured_content).attributes
    assert attrs["gen_ai.response.finish_reasons"] == ("stop", "stop")
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    outputs = json.loads(attrs["gen_ai.output.messages"])
    assert [o["parts"] for o in outputs] == [[{"type": "text", "content": stream_text(seen, i)}] for i in (0, 1)]


async def test_stream_usage_on_last_content_chunk_stays_visible(api: Api, captured: Captured) -> None:
    headers = {"x-fake-scenario": "usage-on-last-chunk"}
    expected = await api.drain(await api.chat(plain=True, stream=True, extra_headers=headers))
    seen = await api.drain(await api.chat(stream=True, extra_headers=headers))
    assert without_ids(seen) == without_ids(expected)
    last = seen[-1]
    assert last.choices[0].finish_reason == "stop" and last.usage is not None
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.usage.input_tokens"] == last.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == last.usage.completion_tokens
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.stream.completed"] is True


async def test_stream_without_usage_counts_with_tiktoken(api: Api, captured: Captured) -> None:
    _tokens.start_loading()
    assert _tokens.wait_until_ready(30.0)
    messages = [{"role": "system", "content": "You are terse."}, *USER]
    seen = await api.drain(
        await api.chat(stream=True, messages=messages, extra_headers={"x-fake-scenario": "no-usage"})
    )
    assert all(c.usage is None for c in seen)
    encoding = tiktoken.get_encoding("o200k_base")
    # OpenAI's cookbook count: 3 per message + role + content tokens, and 3 to prime the reply
    prompt = 3 + sum(3 + len(encoding.encode(m["role"])) + len(encoding.encode(m["content"])) for m in messages)
    attrs = only_span(captured).attributes
    assert attrs["llmwatch.usage.source"] == "tiktoken"
    assert attrs["gen_ai.usage.input_tokens"] == prompt
    assert attrs["gen_ai.usage.output_tokens"] == len(encoding.encode(stream_text(seen)))
    assert attrs["llmwatch.cost.usd"] == pytest.approx(
        openai_cost(SNAPSHOT, prompt, 0, attrs["gen_ai.usage.output_tokens"]), abs=1e-9
    )


async def _end_early(api: Api, how: str) -> tuple[list[Any], Any]:
    """End a stream early; returns the chunks seen and the stream (kept alive: only close() may end it)."""
    stream = await api.chat(stream=True)
    if how == "break-in-with":
        return await api.first_in_with_block(stream), stream
    seen = await api.take(stream, 3 if how.endswith("3") else 1)
    if how.startswith("abandon"):
        del stream
        gc.collect()
        return seen, None
    await resolve(stream.close())
    await resolve(stream.close())  # closing twice is harmless
    return seen, stream


@pytest.mark.parametrize(
    "how", ["close-after-1", "close-after-3", "break-in-with", "abandon-after-1", "abandon-after-3"]
)
async def test_stream_ended_early_gives_one_partial_span(api: Api, captured_content: Captured, how: str) -> None:
    seen, stream = await _end_early(api, how)
    span = only_span(captured_content)
    attrs = span.attributes
    assert attrs["llmwatch.stream.completed"] is False
    assert span.status.status_code.name == "UNSET" and "error.type" not in attrs
    text = stream_text(seen)
    assert bool(text) is how.endswith("3")
    (output,) = json.loads(attrs["gen_ai.output.messages"])
    assert output["parts"] == ([{"type": "text", "content": text}] if text else [])
    assert output["finish_reason"] == "error"
    assert attrs["gen_ai.response.finish_reasons"] == ("error",)  # cut before its finish reason: its place kept
    del stream
    gc.collect()
    assert len(captured_content.llm_spans()) == 1


@pytest.mark.parametrize("request_kind", ["chat", "chat-tool-call", "responses"])
@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_ttft_counts_to_the_first_output_chunk(
    slow_server: FakeLLMServer, captured: Captured, flavour: str, request_kind: str
) -> None:
    api = make_api(slow_server, flavour)
    if request_kind == "responses":
        stream = await api.call("responses.create", model=MODEL, input="Hello there", stream=True)
    else:
        scenario = "tool-call" if request_kind.endswith("tool-call") else ""
        stream = await api.chat(stream=True, extra_headers={"x-fake-scenario": scenario})
    await api.drain(stream)
    span = only_span(captured)
    assert_ttft(span)
    # the role-only first chunk and the lifecycle events come at once: they are not output, but they
    # are the first chunk the spec's gen_ai.response.time_to_first_chunk counts to
    assert span.attributes["llmwatch.time_to_first_token_ms"] >= TTFT_S * 1000
    assert (
        span.attributes["gen_ai.response.time_to_first_chunk"] * 1000
        < span.attributes["llmwatch.time_to_first_token_ms"]
    )


async def test_cut_stream_raises_the_sdks_own_error(api: Api, captured: Captured) -> None:
    headers = {"x-fake-scenario": "cut-stream"}
    with pytest.raises(Exception) as plain_error:
        await api.drain(await api.chat(plain=True, stream=True, extra_headers=headers))
    with pytest.raises(type(plain_error.value)) as caught:
        await api.drain(await api.chat(stream=True, extra_headers=headers))
    assert type(caught.value) is type(plain_error.value) is openai.APIConnectionError
    span = only_span(captured)
    assert_error_span(span, caught.value)
    assert span.attributes["llmwatch.stream.completed"] is False


async def test_stream_helper_gives_one_span_and_an_intact_final_completion(api: Api, captured: Captured) -> None:
    events, stream = await api.stream_helper("chat")
    final = await resolve(stream.get_final_completion())
    plain_stream = await api.chat(plain=True, stream=True)
    expected_text = stream_text(await api.drain(plain_stream))
    assert final.choices[0].message.content == expected_text
    assert final.choices[0].finish_reason == "stop"
    assert "".join(e.delta for e in events if e.type == "content.delta") == expected_text
    usage = (await api.chat(plain=True)).usage
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.response.id"] == final.id
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs["llmwatch.stream.completed"] is True


async def test_responses_stream_helper_gives_one_span(api: Api, captured: Captured) -> None:
    events, stream = await api.stream_helper("responses")
    final = await resolve(stream.get_final_response())
    assert events[-1].type == "response.completed"
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.response.id"] == final.id
    assert attrs["gen_ai.usage.input_tokens"] == final.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert attrs["llmwatch.stream.completed"] is True


@pytest.mark.parametrize("kind", ["chat", "responses"])
async def test_stream_helper_left_early_ends_its_span_at_block_exit(api: Api, captured: Captured, kind: str) -> None:
    events, stream = await api.stream_helper(kind, first_only=True)
    ended_in_block = [s.attributes["llmwatch.stream.completed"] for s in captured.llm_spans()]
    del stream  # (the stream is documented as usable after the block; let a failure end its span here)
    gc.collect()
    assert len(events) == 1
    assert ended_in_block == [False]


async def test_with_raw_response(api: Api, captured: Captured) -> None:
    raw = await api.call("chat.completions.with_raw_response.create", model=MODEL, messages=USER)
    headers, completion = raw.headers, raw.parse()  # synchronous, even on AsyncOpenAI (LegacyAPIResponse)
    del raw  # (a raw response never parsed ends its span when collected: not later, in another test)
    assert headers["content-type"] == "application/json"
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.response.id"] == completion.id
    assert attrs["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens


async def test_with_raw_response_streamed(api: Api, captured: Captured) -> None:
    raw = await api.call("chat.completions.with_raw_response.create", model=MODEL, messages=USER, stream=True)
    chunks = await api.drain(await resolve(raw.parse()))
    assert all(c.choices for c in chunks)  # our usage chunk stays hidden here too
    attrs = only_span(captured).attributes
    assert attrs["llmwatch.stream.completed"] is True and attrs["gen_ai.usage.output_tokens"] > 0


async def test_with_streaming_response(api: Api, captured: Captured) -> None:
    headers, completion = await api.streaming_response()
    assert headers["content-type"] == "application/json"
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.response.id"] == completion.id
    assert attrs["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens


@pytest.mark.parametrize(
    ("method", "request_body"),
    [("chat.completions.parse", {"messages": USER}), ("responses.parse", {"input": "Hello there"})],
)
async def test_structured_output_parse_gives_one_span(
    api: Api, captured: Captured, method: str, request_body: dict[str, Any]
) -> None:
    parsed = await api.call(method, model=MODEL, **request_body)
    assert only_span(captured).attributes["gen_ai.response.id"] == parsed.id


class Answer(pydantic.BaseModel):
    city: str


@pytest.mark.parametrize(
    ("method", "request_body"),
    [
        ("chat.completions.parse", {"messages": USER, "response_format": Answer}),
        ("responses.parse", {"input": "Hello there", "text_format": Answer}),
    ],
)
async def test_structured_output_parse_says_json(
    api: Api, captured: Captured, method: str, request_body: dict[str, Any]
) -> None:
    with pytest.raises(pydantic.ValidationError):  # the loopback server's replies are plain text
        await api.call(method, model=MODEL, **request_body)
    assert only_span(captured).attributes["gen_ai.output.type"] == "json"


# --- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("error-400", openai.BadRequestError),
        ("error-429", openai.RateLimitError),
        ("error-500", openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_errors_reach_the_caller_unchanged(
    api: Api, captured: Captured, scenario: str, error: type, stream: bool
) -> None:
    headers = {"x-fake-scenario": scenario}
    with pytest.raises(error) as plain_error:
        await api.chat(plain=True, stream=stream, extra_headers=headers)
    with pytest.raises(error) as caught:
        await api.chat(stream=stream, extra_headers=headers)
    assert type(caught.value) is error
    assert caught.value.body == plain_error.value.body
    assert caught.value.body["message"] == f"simulated {scenario[-3:]}"
    assert caught.value.status_code == int(scenario[-3:])
    span = only_span(captured)
    assert_error_span(span, caught.value)
    assert span.events[0].attributes["exception.message"] == str(caught.value)
    assert span.attributes.get("gen_ai.request.stream") is (True if stream else None)  # set iff streaming


async def test_retried_call_is_one_span(api: Api, captured: Captured, request: pytest.FixtureRequest) -> None:
    headers = {"x-fake-scenario": "error-429-once", "x-fake-retry-key": request.node.nodeid}
    client = api.client.with_options(max_retries=2)
    reply = await resolve(client.chat.completions.create(model=MODEL, messages=USER, extra_headers=headers))
    span = only_span(captured)
    assert span.status.status_code.name == "UNSET"
    assert span.attributes["gen_ai.response.id"] == reply.id


# --- Responses API and embeddings -------------------------------------------------------------------
RESPONSES_SCENARIOS = ["", "cached,reasoning", "tool-call", "length"]


def response_finish(scenario: str) -> str:
    return "max_output_tokens" if scenario == "length" else "completed"


@pytest.mark.parametrize("scenario", RESPONSES_SCENARIOS)
async def test_responses_api(api: Api, captured_content: Captured, scenario: str) -> None:
    headers = {"x-fake-scenario": scenario}
    request = {"model": MODEL, "input": "Hello there", "instructions": "Be kind", "extra_headers": headers}
    response = await api.call("responses.create", **request)
    span = only_span(captured_content)
    attrs = span.attributes
    usage = response.usage
    cached = usage.input_tokens_details.cached_tokens
    reasoning = usage.output_tokens_details.reasoning_tokens
    assert span.name == "chat gpt-4o-mini" and attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.response.id"] == response.id and attrs["gen_ai.response.model"] == SNAPSHOT
    assert attrs["gen_ai.usage.input_tokens"] == usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert attrs.get("gen_ai.usage.cache_read.input_tokens") == (cached or None)
    assert attrs.get("gen_ai.usage.reasoning.output_tokens") == (reasoning or None)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(
        openai_cost(SNAPSHOT, usage.input_tokens, cached, usage.output_tokens), abs=1e-9
    )
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be kind"}]
    assert attrs["gen_ai.response.finish_reasons"] == (response_finish(scenario),)
    (output,) = json.loads(attrs["gen_ai.output.messages"])
    if scenario == "tool-call":
        call = {"type": "tool_call", "id": "call_0", "name": "get_weather", "arguments": {"city": "Paris"}}
        assert output["parts"] == [call]
    else:
        assert output["parts"] == [{"type": "text", "content": response.output_text}]
    assert output["finish_reason"] == ("length" if scenario == "length" else "stop")


@pytest.mark.parametrize("scenario", RESPONSES_SCENARIOS)
async def test_responses_api_streamed(api: Api, captured: Captured, scenario: str) -> None:
    request = {"model": MODEL, "input": "Hello there", "stream": True, "extra_headers": {"x-fake-scenario": scenario}}
    expected = await api.drain(await api.call("responses.create", plain=True, **request))
    events = await api.drain(await api.call("responses.create", **request))
    assert [e.type for e in events] == [e.type for e in expected]
    assert [getattr(e, "delta", None) for e in events] == [getattr(e, "delta", None) for e in expected]
    final = events[-1].response
    usage = final.usage  # a Responses stream reports usage in its last event only
    cached = usage.input_tokens_details.cached_tokens
    span = only_span(captured)
    attrs = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert attrs["gen_ai.response.id"] == final.id
    assert attrs["gen_ai.usage.input_tokens"] == usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert attrs.get("gen_ai.usage.cache_read.input_tokens") == (cached or None)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(
        openai_cost(SNAPSHOT, usage.input_tokens, cached, usage.output_tokens), abs=1e-9
    )
    assert attrs["gen_ai.response.finish_reasons"] == (response_finish(scenario),)
    assert attrs["llmwatch.stream.completed"] is True
    assert_ttft(span)


@pytest.mark.parametrize("encoding_format", [None, "float"])
async def test_embeddings(api: Api, server: FakeLLMServer, captured: Captured, encoding_format: str | None) -> None:
    request: dict[str, Any] = {"model": EMBEDDING_MODEL, "input": ["one two", "three"]}
    if encoding_format:
        request["encoding_format"] = encoding_format
    expected = await api.call("embeddings.create", plain=True, **request)
    with llmwatch.attributes(feature="rag"):
        vectors = await api.call("embeddings.create", **request)
    assert server.requests[-1].body["encoding_format"] == (encoding_format or "base64")  # the SDK's default
    assert [d.embedding for d in vectors.data] == [d.embedding for d in expected.data]
    span = only_span(captured)
    attrs = span.attributes
    assert span.name == "embeddings text-embedding-3-small"
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.usage.input_tokens"] == vectors.usage.prompt_tokens == 3
    assert "gen_ai.usage.output_tokens" not in attrs  # not an attribute of the embeddings span convention
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.feature"] == "rag"
    assert attrs.get("gen_ai.request.encoding_formats") == ((encoding_format,) if encoding_format else None)
    expected_cost = float(calc_price(PricesUsage(input_tokens=3), EMBEDDING_MODEL, provider_id="openai").total_price)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected_cost, abs=1e-12)


# --- instrumentation: one span per call, none for clients not instrumented -------------------------
async def test_global_and_instance_instrumentation_overlap_gives_one_span(api: Api, captured: Captured) -> None:
    _instrument.instrument_all()
    await api.chat()
    await api.chat(plain=True)  # global instrumentation traces every client
    assert len(captured.llm_spans()) == 2


async def test_client_not_instrumented_gives_no_span(api: Api, captured: Captured) -> None:
    assert _instrument._base.REGISTRY.global_enabled is False
    await api.chat(plain=True)  # the class-level hooks are installed (api.client is instrumented)
    await api.drain(await api.chat(plain=True, stream=True))
    assert captured.spans == []
    assert llmwatch.instrument(api.plain) is api.plain
    copy = api.plain.with_options(timeout=5)  # a copy of an instrumented client stays instrumented
    await resolve(copy.chat.completions.create(model=MODEL, messages=USER))
    assert len(captured.llm_spans()) == 1


@pytest.mark.parametrize(
    "key",
    [
        otel_context._SUPPRESS_INSTRUMENTATION_KEY,  # what the SDK's exporters set while exporting
        "suppress_instrumentation",  # opentelemetry-instrumentation's suppress_instrumentation() sets it too
        "suppress_language_model_instrumentation",
    ],
)
def test_suppressed_instrumentation_makes_no_span(openai_client: Any, captured: Captured, key: str) -> None:
    token = otel_context.attach(otel_context.set_value(key, True))
    try:
        reply = openai_client.chat.completions.create(model=MODEL, messages=USER)
    finally:
        otel_context.detach(token)
    assert reply.choices[0].message.content
    assert captured.llm_spans() == []


def test_reasoning_content_of_compatible_servers_counts_as_first_output() -> None:
    # DeepSeek-style servers stream reasoning as an undeclared delta field before any content.
    from llmwatch._core import _runtime
    from llmwatch._core._call import start_call
    from llmwatch._instrument._openai import CHAT

    chunk = openai.types.chat.ChatCompletionChunk.model_validate(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "delta": {"content": None, "reasoning_content": "Let me think"}}],
        }
    )
    call = start_call(_runtime.CURRENT, CHAT, {"model": "deepseek-reasoner", "messages": []}, {}, stream=True)
    assert CHAT.on_chunk(call, chunk) is False
    assert call.choices[0].reasoning == ["Let me think"] and call.first_chunk_ns is not None
    call.end_stream(True)
