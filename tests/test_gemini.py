"""The real google-genai SDK (sync ``client.models`` and async ``client.aio.models``, Gemini Developer
API and Vertex AI clients) against the loopback server's Gemini wire format.

Each model request gives exactly one CLIENT span (chats and automatic function calling included),
with Gemini's usage read right (cached tokens inside the prompt count, thinking tokens beside the
candidates' and priced as output) and a cost equal to genai-prices' own figure.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage as PricesUsage
from genai_prices import calc_price
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

import llmwatch
import llmwatch.testing
from llmwatch import _health, _instrument
from llmwatch._core import _runtime
from llmwatch._demo._server import FakeLLMServer
from llmwatch._instrument import _gemini
from llmwatch.testing import Captured

MODEL = "gemini-2.5-flash"  # known to genai-prices (provider "google")
EMBEDDING_MODEL = "gemini-embedding-001"
PROMPT = "Hello there"
TTFT_S = 0.05
FLAVOURS = ["sync", "async"]
APIS = ["gemini", "vertex"]


def make_client(server: FakeLLMServer, api: str = "gemini") -> genai.Client:
    options = types.HttpOptions(base_url=server.base_url)  # the SDK's default: no retries
    if api == "vertex":  # a token that is already valid: the SDK never refreshes it (no network)
        credentials = Credentials(token="fake-vertex-token")
        return genai.Client(
            vertexai=True, project="test-project", location="us-central1", credentials=credentials, http_options=options
        )
    return genai.Client(api_key="fake-gemini-key", http_options=options)


class Api:
    """An instrumented google-genai client, sync or async, behind one awaitable interface."""

    def __init__(self, server: FakeLLMServer, flavour: str, api: str = "gemini") -> None:
        self.client = llmwatch.instrument(make_client(server, api))
        self.plain = make_client(server, api)  # never instrumented: what the user gets without llmwatch
        self.is_async = flavour == "async"
        self.server = server
        server.clear()  # the request log is the server's (shared by the session): this test's only

    def models(self, plain: bool = False) -> Any:
        client = self.plain if plain else self.client
        return client.aio.models if self.is_async else client.models

    async def generate(self, contents: Any = PROMPT, *, plain: bool = False, **kwargs: Any) -> Any:
        result = self.models(plain).generate_content(model=MODEL, contents=contents, **kwargs)
        return await result if self.is_async else result

    async def open_stream(self, contents: Any = PROMPT, *, plain: bool = False, **kwargs: Any) -> Any:
        stream = self.models(plain).generate_content_stream(model=MODEL, contents=contents, **kwargs)
        return await stream if self.is_async else stream

    async def stream(self, contents: Any = PROMPT, *, plain: bool = False, **kwargs: Any) -> list[Any]:
        return await self.drain(await self.open_stream(contents, plain=plain, **kwargs))

    async def drain(self, stream: Any) -> list[Any]:
        return [chunk async for chunk in stream] if self.is_async else list(stream)

    async def take(self, stream: Any, count: int) -> list[Any]:
        return [(await anext(stream)) if self.is_async else next(stream) for _ in range(count)]

    async def close(self, stream: Any) -> None:
        if self.is_async:
            await stream.aclose()
        else:
            stream.close()

    async def embed(self, contents: Any, *, plain: bool = False, **kwargs: Any) -> Any:
        result = self.models(plain).embed_content(model=EMBEDDING_MODEL, contents=contents, **kwargs)
        return await result if self.is_async else result

    async def send(self, chat: Any, message: str) -> Any:
        result = chat.send_message(message)
        return await result if self.is_async else result

    def chats(self) -> Any:
        return self.client.aio.chats if self.is_async else self.client.chats


@pytest.fixture(params=FLAVOURS)
def api(request: pytest.FixtureRequest, server: FakeLLMServer) -> Api:
    return Api(server, request.param)


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]


def only_span(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def ask(text: str, *scenarios: str) -> str:
    return f"{text} [[scenario:{','.join(scenarios)}]]" if scenarios else text


def google_cost(usage: Any, model: str = MODEL) -> float:
    """genai-prices' own figure for a Gemini usage: thinking tokens are output tokens."""
    prices_usage = PricesUsage(
        input_tokens=usage.prompt_token_count,
        cache_read_tokens=usage.cached_content_token_count or 0,
        output_tokens=(usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0),
    )
    return float(calc_price(prices_usage, model, provider_id="google").total_price)


def text_of(response: Any) -> str:
    return "".join(p.text for c in response.candidates for p in c.content.parts if p.text and not p.thought)


def assert_error_span(span: Any, exc: BaseException) -> None:
    assert span.status.status_code.name == "ERROR"
    # google-genai raises one ClientError for every 4xx and ServerError for every 5xx: the status tells more
    generic = type(exc).__name__ in ("ClientError", "ServerError")
    assert span.attributes["error.type"] == (str(exc.code) if generic else type(exc).__name__)  # type: ignore[attr-defined]
    assert [e.name for e in span.events] == ["exception"]


# --- non-streamed calls -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", APIS)
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_generate_content_gives_one_priced_span(
    server: FakeLLMServer, captured: Captured, flavour: str, kind: str
) -> None:
    api = Api(server, flavour, kind)
    config = {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "max_output_tokens": 100, "seed": 7}
    config |= {"stop_sequences": ["END"], "candidate_count": 1, "presence_penalty": 0.1, "frequency_penalty": 0.3}
    with llmwatch.attributes(user="u1", feature="search"):
        response = await api.generate(config=config)
    span = only_span(captured)
    attrs = span.attributes
    assert span.name == f"generate_content {MODEL}" and span.kind.name == "CLIENT"
    assert attrs["gen_ai.operation.name"] == "generate_content"
    assert attrs["gen_ai.provider.name"] == ("gcp.vertex_ai" if kind == "vertex" else "gcp.gemini")
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]))
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.request.temperature"] == 0.2 and attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.request.top_k"] == 20 and attrs["gen_ai.request.max_tokens"] == 100
    assert type(attrs["gen_ai.request.top_k"]) is float  # a double in the registry, though given as 20
    assert attrs["gen_ai.request.seed"] == 7 and attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["gen_ai.request.presence_penalty"] == 0.1 and attrs["gen_ai.request.frequency_penalty"] == 0.3
    assert "gen_ai.request.choice.count" not in attrs  # 1 is the default: not recorded
    assert attrs["gen_ai.output.type"] == "text" and "gen_ai.request.stream" not in attrs  # the spec: iff streaming
    assert attrs["gen_ai.response.id"] == response.response_id
    assert attrs["gen_ai.response.model"] == response.model_version == MODEL
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    usage = response.usage_metadata
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_token_count == len(PROMPT.split()) + 3
    assert attrs["gen_ai.usage.output_tokens"] == usage.candidates_token_count
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.cost.usd"] == pytest.approx(google_cost(usage), abs=1e-12)
    assert attrs["llmwatch.cost.source"].startswith("genai-prices")
    assert attrs["llmwatch.user"] == "u1" and attrs["llmwatch.feature"] == "search"
    assert attrs["llmwatch.prompt.fingerprint"]
    path = api.server.requests[-1].path
    assert path.startswith("/v1beta1/projects/test-project/" if kind == "vertex" else "/v1/models/")
    if kind == "vertex":
        assert api.server.requests[-1].headers["authorization"] == "Bearer fake-vertex-token"


async def test_a_typed_config_is_read_like_a_dict(api: Api, captured: Captured) -> None:
    config = types.GenerateContentConfig(temperature=0.5, max_output_tokens=64, candidate_count=2)
    config.response_mime_type = "application/json"
    await api.generate(config=config)
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.request.temperature"] == 0.5 and attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.output.type"] == "json"


async def test_the_result_is_the_sdks_own_object(api: Api, captured: Captured) -> None:
    seen = await api.generate()
    expected = await api.generate(plain=True)
    assert type(seen) is type(expected) is types.GenerateContentResponse
    assert text_of(seen) == text_of(expected)
    assert len(captured.llm_spans()) == 1


# --- tokens and cost ----------------------------------------------------------------------------------
@pytest.mark.parametrize("streamed", [False, True])
async def test_cached_and_thinking_tokens_are_priced_as_genai_prices_prices_them(
    api: Api, captured: Captured, streamed: bool
) -> None:
    contents = ask(PROMPT, "cached", "reasoning")
    if streamed:
        usage = (await api.stream(contents))[-1].usage_metadata
    else:
        usage = (await api.generate(contents)).usage_metadata
    assert usage.thoughts_token_count == 10 and usage.cached_content_token_count == usage.prompt_token_count // 2
    attrs = only_span(captured).attributes
    # prompt_token_count already includes the cached tokens: never added twice
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_token_count
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == usage.cached_content_token_count
    # candidates_token_count excludes the thoughts, which are billed as output
    assert attrs["gen_ai.usage.output_tokens"] == usage.candidates_token_count + 10
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 10
    assert attrs["llmwatch.cost.usd"] == pytest.approx(google_cost(usage), abs=1e-12)


async def test_thinking_costs_what_output_tokens_cost(api: Api, captured: Captured) -> None:
    await api.generate(ask(PROMPT, "cached"))  # the same prompt (a scenario marker is a word too)
    await api.generate(ask(PROMPT, "cached", "reasoning"))
    plain, thinking = (s.attributes for s in captured.llm_spans())
    assert thinking["gen_ai.usage.input_tokens"] == plain["gen_ai.usage.input_tokens"]
    output_rate = calc_price(PricesUsage(output_tokens=1_000_000), MODEL, provider_id="google").total_price
    extra = thinking["llmwatch.cost.usd"] - plain["llmwatch.cost.usd"]
    assert extra == pytest.approx(10 * float(output_rate) / 1_000_000, abs=1e-12)
    assert thinking["llmwatch.cost.output_usd"] - plain["llmwatch.cost.output_usd"] == pytest.approx(extra)


async def test_without_usage_tokens_are_counted_and_say_so(api: Api, captured: Captured) -> None:
    response = await api.generate(ask(PROMPT, "no-usage"))
    assert response.usage_metadata is None
    attrs = only_span(captured).attributes
    assert attrs["llmwatch.usage.source"] == "estimate"  # no tiktoken encoding for Gemini models
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["llmwatch.cost.usd"] > 0


# --- streams ------------------------------------------------------------------------------------------
async def test_stream_chunks_are_unchanged_and_usage_is_the_last_chunks(api: Api, captured: Captured) -> None:
    chunks = await api.stream(ask("Hi [[chunks:4]]"))
    expected = await api.stream(ask("Hi [[chunks:4]]"), plain=True)
    assert [type(c) for c in chunks] == [type(c) for c in expected]
    assert [c.text for c in chunks] == [c.text for c in expected] and len(chunks) == 4
    assert [c.usage_metadata.candidates_token_count for c in chunks] == sorted(
        c.usage_metadata.candidates_token_count for c in chunks
    )  # running totals, not increments
    last = chunks[-1].usage_metadata
    span = only_span(captured)
    attrs = span.attributes
    assert attrs["gen_ai.request.stream"] is True and attrs["llmwatch.stream"] is True
    assert attrs["gen_ai.usage.input_tokens"] == last.prompt_token_count
    assert attrs["gen_ai.usage.output_tokens"] == last.candidates_token_count  # the latest value, never a sum
    assert attrs["gen_ai.response.id"] == chunks[0].response_id
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["llmwatch.stream.completed"] is True and attrs["llmwatch.stream.chunks"] == 4
    assert attrs["llmwatch.cost.usd"] == pytest.approx(google_cost(last), abs=1e-12)
    duration_ms = (span.end_time - span.start_time) / 1e6
    assert 0 <= attrs["llmwatch.time_to_first_token_ms"] <= duration_ms


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_ttft_counts_to_the_first_chunk_with_output(captured: Captured, flavour: str) -> None:
    with FakeLLMServer(ttft_s=TTFT_S) as slow:
        await Api(slow, flavour).stream(ask(PROMPT))
    span = only_span(captured)
    ttft_ms = span.attributes["llmwatch.time_to_first_token_ms"]
    assert TTFT_S * 1000 <= ttft_ms <= (span.end_time - span.start_time) / 1e6
    assert 0 < span.attributes["gen_ai.response.time_to_first_chunk"] * 1000 <= ttft_ms  # the first chunk of any kind


@pytest.mark.parametrize("how", ["close", "dropped"])
async def test_a_stream_left_early_ends_its_span_once(api: Api, captured: Captured, how: str) -> None:
    stream = await api.open_stream(ask("Hi [[chunks:6]]"))
    await api.take(stream, 2)
    if how == "close":
        await api.close(stream)
        await api.close(stream)
    else:
        del stream
        gc.collect()
    if api.is_async:  # the event loop finalizes the SDK's inner async generators (holding ours) next
        for _ in range(5):
            await asyncio.sleep(0)
    span = only_span(captured)
    assert span.attributes["llmwatch.stream.completed"] is False
    assert span.attributes["llmwatch.stream.chunks"] == 2
    assert span.status.status_code.name == "UNSET"
    assert len(api.server.requests) >= 1


async def test_a_cut_stream_raises_what_the_sdk_raises(api: Api, captured: Captured) -> None:
    with pytest.raises(Exception) as plain_error:
        await api.stream(ask(PROMPT, "cut-stream"), plain=True)
    api.server.clear()
    with pytest.raises(type(plain_error.value)) as caught:
        await api.stream(ask(PROMPT, "cut-stream"))
    assert type(caught.value) is type(plain_error.value)
    assert len(api.server.requests) == 1  # one request, one span
    span = only_span(captured)
    assert_error_span(span, caught.value)
    assert span.attributes["llmwatch.stream.completed"] is False


# --- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenario", "error", "status"),
    [
        ("error-400", errors.ClientError, "INVALID_ARGUMENT"),
        ("error-429", errors.ClientError, "RESOURCE_EXHAUSTED"),
        ("error-500", errors.ServerError, "INTERNAL"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_errors_reach_the_caller_unchanged(
    api: Api, captured: Captured, streamed: bool, scenario: str, error: type, status: str
) -> None:
    call = api.stream if streamed else api.generate
    with pytest.raises(error) as plain_error:
        await call(ask(PROMPT, scenario), plain=True)
    api.server.clear()
    with pytest.raises(error) as caught:
        await call(ask(PROMPT, scenario))
    assert type(caught.value) is error
    assert caught.value.code == int(scenario[-3:]) and caught.value.status == status
    assert caught.value.details == plain_error.value.details
    assert len(api.server.requests) == 1  # the SDK's default: no retries
    span = only_span(captured)
    assert_error_span(span, caught.value)
    if streamed:
        assert span.attributes["llmwatch.stream.completed"] is False


# --- budgets and kill switches: refused before any I/O ----------------------------------------------
@pytest.mark.parametrize("streamed", [False, True])
async def test_a_budget_refuses_before_any_request(api: Api, captured: Captured, streamed: bool) -> None:
    call = api.stream if streamed else api.generate
    llmwatch.budget(1e-9, per="day", feature="search")
    with llmwatch.attributes(feature="search"):
        await call()  # spent 0 < limit: goes ahead and crosses it
        api.server.clear()
        with pytest.raises(llmwatch.BudgetExceeded) as refused:
            await call()
    assert api.server.requests == []
    assert refused.value.scope == "feature=search"
    crossing, refused_span = captured.llm_spans()
    assert crossing.attributes["llmwatch.budget.exceeded"] is True
    assert refused_span.attributes["error.type"] == "BudgetExceeded"
    assert refused_span.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert "llmwatch.cost.usd" not in refused_span.attributes
    spent = llmwatch.stats()["budgets"]["feature=search/day"]["spent_usd"]
    assert spent == pytest.approx(crossing.attributes["llmwatch.cost.usd"], abs=1e-12)


@pytest.mark.parametrize("scope", ["feature", "model"])
@pytest.mark.parametrize("operation", ["generate", "stream", "embed"])
async def test_a_kill_switch_refuses_before_any_request(
    api: Api, captured: Captured, scope: str, operation: str
) -> None:
    model = EMBEDDING_MODEL if operation == "embed" else MODEL
    llmwatch.kill_switch(**({"feature": "search"} if scope == "feature" else {"model": model}))
    calls = {"generate": api.generate, "stream": api.stream, "embed": lambda: api.embed("hi")}
    with llmwatch.attributes(feature="search"), pytest.raises(llmwatch.FeatureDisabled):
        await calls[operation]()
    assert api.server.requests == []
    span = only_span(captured)
    assert span.attributes["error.type"] == "FeatureDisabled"
    assert [e.name for e in span.events] == ["llmwatch.call.refused"]


# --- one span per request: chats and automatic function calling --------------------------------------
async def test_each_chat_message_gives_one_span(api: Api, captured: Captured) -> None:
    chat = api.chats().create(model=MODEL)
    first = await api.send(chat, "hi chat")
    second = await api.send(chat, "again")
    spans = captured.llm_spans()
    assert [s.attributes["gen_ai.response.id"] for s in spans] == [first.response_id, second.response_id]
    assert spans[1].attributes["gen_ai.usage.input_tokens"] == second.usage_metadata.prompt_token_count
    streamed = chat.send_message_stream("and streamed")
    chunks = [c async for c in await streamed] if api.is_async else list(streamed)
    assert len(captured.llm_spans()) == 3 and len(api.server.requests) == 3
    assert captured.llm_spans()[2].attributes["gen_ai.response.id"] == chunks[0].response_id


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("streamed", [False, True])
async def test_automatic_function_calling_gives_one_span_per_request(
    api: Api, captured_content: Captured, streamed: bool
) -> None:
    config = types.GenerateContentConfig(tools=[get_weather])
    contents = ask("What is the weather?", "tool-call")
    if streamed:
        await api.stream(contents, config=config)
    else:
        response = await api.generate(contents, config=config)
        assert "deterministic reply" in response.text  # the SDK ran get_weather and asked again
    requests = api.server.requests
    assert len(requests) == 2
    spans = captured_content.llm_spans()
    assert len(spans) == 2
    first, second = (s.attributes for s in spans)
    assert json.loads(first["gen_ai.output.messages"])[0]["parts"][-1] == {
        "type": "tool_call",
        "id": None,
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    sent = json.loads(second["gen_ai.input.messages"])
    roles = [m["role"] for m in sent]  # a stream's model output goes back as one content per chunk
    assert roles[0] == "user" and set(roles[1:-1]) == {"assistant"} and roles[-1] == "tool"
    assert sent[-1]["parts"] == [
        {"type": "tool_call_response", "id": "get_weather", "response": {"result": "sunny in Paris"}}
    ]
    assert json.loads(first["gen_ai.tool.definitions"]) == [
        {"type": "function", "name": "get_weather", "description": "The weather in a city."}
    ]
    assert second["gen_ai.usage.input_tokens"] > first["gen_ai.usage.input_tokens"]  # each request its own usage


# --- finish reasons and content ------------------------------------------------------------------------
@pytest.mark.parametrize(("scenario", "reason", "semconv"), [("length", "max_tokens", "length"), ("", "stop", "stop")])
@pytest.mark.parametrize("streamed", [False, True])
async def test_finish_reasons_and_content_in_semconv_shape(
    api: Api, captured_content: Captured, streamed: bool, scenario: str, reason: str, semconv: str
) -> None:
    weather = types.FunctionDeclaration(
        name="get_weather", description="Weather now", parameters={"type": "OBJECT", "properties": {}}
    )
    config = {"system_instruction": "Be kind", "tools": [types.Tool(function_declarations=[weather])]}
    contents = [
        types.Content(role="user", parts=[types.Part(text=ask(PROMPT, "reasoning", *filter(None, [scenario])))])
    ]
    if streamed:
        chunks = await api.stream(contents, config=config)
        text = "".join(p.text for c in chunks for p in c.candidates[0].content.parts if p.text and not p.thought)
    else:
        text = text_of(await api.generate(contents, config=config))
    attrs = only_span(captured_content).attributes
    assert attrs["gen_ai.response.finish_reasons"] == (reason,)  # Gemini's own value, lower-cased
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be kind"}]
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": contents[0].parts[0].text}]}
    ]
    assert json.loads(attrs["gen_ai.tool.definitions"]) == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather now",
            "parameters": {"type": "OBJECT", "properties": {}},
        }
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Let me think about this request step by step."},
                {"type": "text", "content": text},
            ],
            "finish_reason": semconv,
        }
    ]


async def test_input_content_of_every_shape(api: Api, captured_content: Captured) -> None:
    contents: list[Any] = [
        "a loose string",
        types.Part(text="and a loose part"),
        {"role": "model", "parts": [{"text": "a dict content"}, {"functionCall": {"name": "f", "args": {"x": 1}}}]},
        types.Content(role="user", parts=[types.Part.from_function_response(name="f", response={"y": 2})]),
        types.Content(
            role="user",
            parts=[
                types.Part.from_bytes(data=b"\x89PNG", mime_type="image/png"),
                types.Part.from_uri(file_uri="gs://bucket/doc.pdf", mime_type="application/pdf"),
            ],
        ),
    ]
    await api.generate(contents)
    messages = json.loads(only_span(captured_content).attributes["gen_ai.input.messages"])
    assert messages == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "a loose string"}, {"type": "text", "content": "and a loose part"}],
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "a dict content"},
                {"type": "tool_call", "id": None, "name": "f", "arguments": {"x": 1}},
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "f", "response": {"y": 2}}]},
        {
            "role": "user",
            "parts": [
                {"type": "blob", "modality": "image", "mime_type": "image/png", "byte_size": 4},
                {"type": "uri", "modality": "file", "uri": "gs://bucket/doc.pdf"},
            ],
        },
    ]


async def test_nothing_is_captured_by_default(api: Api, captured: Captured) -> None:
    await api.generate(ask(PROMPT, "tool-call", "reasoning"), config={"system_instruction": "Be kind"})
    await api.stream(ask(PROMPT, "tool-call"))
    content = {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
    }
    assert len(captured.llm_spans()) == 2
    for span in captured.llm_spans():
        assert content.isdisjoint(span.attributes)


# --- embeddings --------------------------------------------------------------------------------------
async def test_gemini_embeddings_have_no_usage_so_tokens_are_counted(api: Api, captured: Captured) -> None:
    response = await api.embed(["first text to embed", "second"], config={"output_dimensionality": 8})
    assert len(response.embeddings) == 2 and response.usage_metadata is None
    attrs = only_span(captured).attributes
    assert only_span(captured).name == f"embeddings {EMBEDDING_MODEL}"
    assert attrs["gen_ai.operation.name"] == "embeddings" and attrs["gen_ai.provider.name"] == "gcp.gemini"
    assert attrs["gen_ai.embeddings.dimension.count"] == 8
    assert attrs["llmwatch.usage.source"] == "estimate"
    tokens = attrs["gen_ai.usage.input_tokens"]
    assert tokens == 5 + 2  # ceil(chars / 4) per input, each counted on its own
    assert "gen_ai.usage.output_tokens" not in attrs  # the embeddings span convention: input tokens only
    expected = calc_price(PricesUsage(input_tokens=tokens), EMBEDDING_MODEL, provider_id="google").total_price
    assert attrs["llmwatch.cost.usd"] == pytest.approx(float(expected), abs=1e-12)
    assert api.server.requests[-1].path.endswith(":batchEmbedContents")


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_vertex_embeddings_report_their_usage(server: FakeLLMServer, captured: Captured, flavour: str) -> None:
    response = await Api(server, flavour, "vertex").embed("three words here")
    assert response.usage_metadata.prompt_token_count == 3
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert attrs["gen_ai.usage.input_tokens"] == 3 and attrs["llmwatch.usage.source"] == "provider"
    expected = calc_price(PricesUsage(input_tokens=3), EMBEDDING_MODEL, provider_id="google").total_price
    assert attrs["llmwatch.cost.usd"] == pytest.approx(float(expected), abs=1e-12)


# --- which clients are traced --------------------------------------------------------------------------
async def test_instrument_traces_only_that_client(api: Api, captured: Captured) -> None:
    await api.generate(plain=True)
    await api.stream(plain=True)
    await api.embed("x", plain=True)
    assert captured.llm_spans() == []
    await api.generate()
    assert len(captured.llm_spans()) == 1
    assert captured.llm_spans()[0].attributes["gen_ai.response.id"] != ""


def test_sync_and_async_parts_of_an_instrumented_client_are_traced(server: FakeLLMServer, captured: Captured) -> None:
    import asyncio

    client = make_client(server)
    assert llmwatch.instrument(client.aio) is client.aio  # the async part marks the same client
    client.models.generate_content(model=MODEL, contents="x")
    asyncio.run(client.aio.models.generate_content(model=MODEL, contents="x"))
    assert len(captured.llm_spans()) == 2


def test_instrumenting_a_part_of_a_client_is_refused(server: FakeLLMServer) -> None:
    client = make_client(server)
    with pytest.raises(TypeError, match=r"not llmwatch.instrument\(client.models\)"):
        llmwatch.instrument(client.models)


async def test_global_instrumentation_traces_every_client_once(api: Api, captured: Captured) -> None:
    _instrument.instrument_all()
    await api.generate()  # instrumented and globally traced: still one span
    await api.generate(plain=True)
    assert len(captured.llm_spans()) == 2


def test_uninstrument_restores_the_sdk(server: FakeLLMServer, captured: Captured) -> None:
    from google.genai.models import AsyncModels, Models

    _instrument.instrument_all()
    client = make_client(server)
    client.models.generate_content(model=MODEL, contents="x")
    assert hasattr(Models.__dict__["_generate_content"], "__wrapped__")  # wrapped
    llmwatch.uninstrument()
    for cls in (Models, AsyncModels):
        for method in ("_generate_content", "_generate_content_stream", "embed_content"):
            assert not hasattr(cls.__dict__[method], "__wrapped__"), (cls, method)
    client.models.generate_content(model=MODEL, contents="x")
    assert len(captured.llm_spans()) == 1


def test_the_provider_follows_the_client() -> None:
    class ApiClient:
        def __init__(self, vertexai: bool | None, base_url: Any) -> None:
            self.vertexai = vertexai
            self._http_options = types.HttpOptions(base_url=base_url)

    settings = _runtime.CURRENT.settings
    gemini = _gemini.client_attributes(ApiClient(False, "https://generativelanguage.googleapis.com/"), settings)
    assert gemini == {
        "gen_ai.provider.name": "gcp.gemini",
        "server.address": "generativelanguage.googleapis.com",
        "server.port": 443,
    }
    vertex = _gemini.client_attributes(ApiClient(True, "https://us-central1-aiplatform.googleapis.com/"), settings)
    assert vertex["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert vertex["server.address"] == "us-central1-aiplatform.googleapis.com"
    assert _gemini.client_attributes(ApiClient(None, None), settings) == {"gen_ai.provider.name": "gcp.gemini"}
    # google-genai 1.x kept its http options in a dict
    legacy = ApiClient(True, None)
    legacy._http_options = {"base_url": "http://localhost:8080/"}  # type: ignore[assignment]
    assert _gemini.client_attributes(legacy, settings)["server.port"] == 8080


def test_the_users_provider_name_wins(server: FakeLLMServer) -> None:
    named = llmwatch.instrument(make_client(server), provider="gemini-gateway")
    plain = make_client(server)
    with llmwatch.testing.capture(providers={server.base_url: "my-proxy"}) as captured:
        _instrument.instrument_all()
        named.models.generate_content(model=MODEL, contents="x")
        plain.models.generate_content(model=MODEL, contents="x")
    first, second = (s.attributes for s in captured.llm_spans())
    assert first["gen_ai.provider.name"] == "gemini-gateway"  # instrument(client, provider=...) first
    assert second["gen_ai.provider.name"] == "my-proxy"  # then configure(providers=...) by URL
    assert "by model name" in second["llmwatch.cost.source"]  # a provider genai-prices does not know


# --- faults inside llmwatch never reach the caller -----------------------------------------------------
@pytest.mark.parametrize("streamed", [False, True])
async def test_a_parsing_fault_is_counted_and_the_caller_gets_the_sdks_objects(
    api: Api, captured: Captured, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    from google.genai._api_client import BaseApiClient

    produced: list[Any] = []
    verify = BaseApiClient._verify_response

    def record(self: Any, response: Any) -> None:  # inside the SDK, below llmwatch: what it made
        produced.append(response)
        verify(self, response)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("fault injected in the Gemini adapter")

    monkeypatch.setattr(BaseApiClient, "_verify_response", record)
    monkeypatch.setattr(_health, "raise_internal_errors", False)
    monkeypatch.setattr(_gemini, "record_candidates", boom)
    if streamed:
        got = await api.stream(ask("Hi [[chunks:3]]"))
        assert len(got) == 3 and all(a is b for a, b in zip(got, produced, strict=True))
    else:
        got = await api.generate()
        assert produced == [got] and got is produced[0]
    stats = llmwatch.stats()
    assert stats["internal_errors"] == (3 if streamed else 1)
    span = only_span(captured)  # the span survives the fault (its tokens counted instead of read)
    assert span.attributes["gen_ai.usage.input_tokens"] > 0
    _health.HEALTH.internal_errors.reset()  # counted as it should be: the health check below is for the rest


# --- import cost ---------------------------------------------------------------------------------------
def test_configure_does_not_import_the_sdk_and_hooks_it_when_the_app_does(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    code = """
        import json, os, sys
        import llmwatch

        llmwatch.configure(exporter="file", file_path=os.environ["SPANS"])
        print("IMPORTED", "google.genai" in sys.modules)
        from google import genai
        from google.genai import types
        from google.genai.models import Models

        print("WRAPPED", hasattr(Models.__dict__["_generate_content"], "__wrapped__"))
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=os.environ["BASE"]))
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        llmwatch.force_flush(timeout_s=10)
        print("SPANS", json.dumps([json.loads(line)["name"] for line in open(os.environ["SPANS"])]))
    """
    package_root = str(Path(llmwatch.__file__).resolve().parents[1])
    environ = {**os.environ, "PYTHONPATH": package_root, "BASE": server.base_url, "SPANS": str(tmp_path / "s.jsonl")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180, env=environ
    )
    assert done.returncode == 0, done.stderr
    assert "IMPORTED False" in done.stdout  # configure() did not import google.genai (~1 s)
    assert "WRAPPED True" in done.stdout  # hooked when the app imported it
    assert 'SPANS ["generate_content gemini-2.5-flash"]' in done.stdout


def test_the_sdk_is_listed_as_installed() -> None:
    assert "google.genai" in _instrument.installed_sdks()


def test_a_rollout_sends_its_arms_model_to_gemini(api: Api, captured: Captured) -> None:
    llmwatch.rollout("gemini-canary", challenger={"model": "gemini-2.5-pro"}, share=1.0)
    with llmwatch.attributes(user="u1"):
        asyncio.run(api.generate())
    assert api.server.requests_for("gemini-2.5-pro")
    assert captured.spans[-1].attributes["llmwatch.rollout.arm"] == "challenger"
    assert captured.spans[-1].attributes["gen_ai.request.model"] == "gemini-2.5-pro"
