"""The real openai SDK against the loopback server: one correct span per call, the user's results unchanged."""

from __future__ import annotations

import gc
import json
from typing import Any

import openai
import pytest
import tiktoken
from genai_prices import Usage as PricesUsage
from genai_prices import calc_price

import llmwatch
from llmwatch.testing import Captured

USER = [{"role": "user", "content": "What is the capital of France?"}]


def _only_span(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def _expected_cost(attrs: Any, provider: str = "openai") -> float:
    usage = PricesUsage(
        input_tokens=attrs["gen_ai.usage.input_tokens"],
        cache_read_tokens=attrs.get("gen_ai.usage.cache_read.input_tokens", 0),
        output_tokens=attrs.get("gen_ai.usage.output_tokens", 0),
    )
    return float(calc_price(usage, attrs["gen_ai.response.model"], provider_id=provider).total_price)


def test_chat_span_has_tokens_cost_and_attribution(openai_client: Any, captured: Captured, server: Any) -> None:
    with llmwatch.attributes(user="u1", feature="search"):
        reply = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0.2, seed=7)
    span = _only_span(captured)
    attrs = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind.name == "CLIENT"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in attrs
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == reply.model == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.response.id"] == reply.id
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.request.seed"] == 7
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == int(server.base_url.rsplit(":", 1)[1])
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.cost.usd"] == pytest.approx(_expected_cost(attrs), abs=1e-9)
    assert attrs["llmwatch.user"] == "u1" and attrs["llmwatch.feature"] == "search"
    assert len(attrs["llmwatch.prompt.fingerprint"]) == 16
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output.messages")) for k in attrs)
    assert llmwatch.stats()["internal_errors"] == 0


def test_cached_and_reasoning_tokens_priced_at_their_rates(openai_client: Any, captured: Captured) -> None:
    openai_client.chat.completions.create(
        model="o3-mini", messages=USER, extra_headers={"x-fake-scenario": "cached,reasoning"}
    )
    attrs = _only_span(captured).attributes
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == attrs["gen_ai.usage.input_tokens"] // 2 > 0
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 10
    usage = PricesUsage(
        input_tokens=attrs["gen_ai.usage.input_tokens"],
        cache_read_tokens=attrs["gen_ai.usage.cache_read.input_tokens"],
        output_tokens=attrs["gen_ai.usage.output_tokens"],
    )
    expected = float(calc_price(usage, "o3-mini", provider_id="openai").total_price)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected, abs=1e-9)


def test_fingerprint_is_stable_and_changes_with_the_prompt(openai_client: Any, captured: Captured) -> None:
    for content in ("same prompt", "same prompt", "another prompt"):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
    prints = [s.attributes["llmwatch.prompt.fingerprint"] for s in captured.llm_spans()]
    assert prints[0] == prints[1] != prints[2]


def test_content_capture_semconv_shape(openai_client: Any, captured_content: Captured) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=tools, extra_headers={"x-fake-scenario": "tool-call"}
    )
    attrs = _only_span(captured_content).attributes
    inputs = json.loads(attrs["gen_ai.input.messages"])
    assert [m["role"] for m in inputs] == ["system", "user"]
    assert inputs[1]["parts"] == [{"type": "text", "content": USER[0]["content"]}]
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(attrs["gen_ai.tool.definitions"])[0]["name"] == "get_weather"
    (output,) = json.loads(attrs["gen_ai.output.messages"])
    assert output["finish_reason"] == "tool_call"
    assert output["parts"] == [
        {"type": "tool_call", "id": "call_0", "name": "get_weather", "arguments": {"city": "Paris"}}
    ]


def _plain_client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-plain", base_url=server.openai_base_url, max_retries=0)


def _dump(chunks: list[Any]) -> list[Any]:
    return [(c.choices[0].delta.content if c.choices else None, c.usage is not None) for c in chunks]


@pytest.mark.parametrize("user_asked_usage", [False, True])
def test_stream_is_unchanged_and_usage_chunk_hidden_only_when_we_asked(
    openai_client: Any, server: Any, captured: Captured, user_asked_usage: bool
) -> None:
    options = {"stream_options": {"include_usage": True}} if user_asked_usage else {}
    expected = list(
        _plain_client(server).chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, **options)
    )
    server.clear()
    seen = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, **options))
    assert _dump(seen) == _dump(expected)
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}
    span = _only_span(captured)
    attrs = span.attributes
    assert attrs["llmwatch.stream"] is True and attrs["llmwatch.stream.completed"] is True
    assert attrs["llmwatch.usage.source"] == "provider" and attrs["gen_ai.usage.output_tokens"] > 0
    assert 0 <= attrs["llmwatch.time_to_first_token_ms"] <= (span.end_time - span.start_time) / 1e6


def test_stream_with_n_choices_keeps_one_finish_reason_each(openai_client: Any, captured: Captured) -> None:
    chunks = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, n=2))
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}
    attrs = _only_span(captured).attributes
    assert attrs["gen_ai.response.finish_reasons"] == ("stop", "stop")
    assert attrs["gen_ai.request.choice.count"] == 2


def test_usage_on_last_content_chunk_is_never_hidden(openai_client: Any, captured: Captured) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, extra_headers={"x-fake-scenario": "usage-on-last-chunk"}
        )
    )
    assert chunks[-1].choices and chunks[-1].usage is not None
    assert _only_span(captured).attributes["llmwatch.usage.source"] == "provider"


def test_no_usage_falls_back_to_tiktoken(openai_client: Any, captured: Captured) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, extra_headers={"x-fake-scenario": "no-usage"}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    attrs = _only_span(captured).attributes
    assert attrs["llmwatch.usage.source"] == "tiktoken"
    assert attrs["gen_ai.usage.output_tokens"] == len(tiktoken.get_encoding("o200k_base").encode(text))


def test_stream_closed_early_ends_span_once_with_partial_output(openai_client: Any, captured_content: Captured) -> None:
    stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    next(stream)
    next(stream)
    stream.close()
    stream.close()
    attrs = _only_span(captured_content).attributes
    assert attrs["llmwatch.stream.completed"] is False
    (output,) = json.loads(attrs["gen_ai.output.messages"])
    assert output["parts"][0]["content"].startswith("Echo")


def test_stream_left_in_with_block_and_abandoned(openai_client: Any, captured: Captured) -> None:
    with openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True) as stream:
        for _ in stream:
            break
    abandoned = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    next(abandoned)
    del abandoned
    gc.collect()
    spans = captured.llm_spans()
    assert len(spans) == 2
    assert [s.attributes["llmwatch.stream.completed"] for s in spans] == [False, False]


def test_cut_stream_raises_the_sdk_error_and_marks_the_span(openai_client: Any, captured: Captured) -> None:
    stream = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x [[scenario:cut-stream]]"}], stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        for _ in stream:
            pass
    span = _only_span(captured)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "APIConnectionError"
    assert span.attributes["llmwatch.stream.completed"] is False


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("error-400", openai.BadRequestError),
        ("error-429", openai.RateLimitError),
        ("error-500", openai.InternalServerError),
    ],
)
def test_errors_reach_the_caller_unchanged(openai_client: Any, captured: Captured, scenario: str, error: type) -> None:
    with pytest.raises(error) as caught:
        openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, extra_headers={"x-fake-scenario": scenario}
        )
    assert type(caught.value) is error
    span = _only_span(captured)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == error.__name__


def test_stream_helper_raw_and_streaming_response(openai_client: Any, captured: Captured) -> None:
    with openai_client.chat.completions.stream(model="gpt-4o-mini", messages=USER) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content.startswith("Echo")
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    assert raw.headers["content-type"] == "application/json"
    assert raw.parse().choices[0].message.content.startswith("Echo")
    with openai_client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=USER) as response:
        assert response.parse().id.startswith("chatcmpl-")
    spans = captured.llm_spans()
    assert len(spans) == 3
    assert all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in spans)


def test_responses_and_embeddings(openai_client: Any, server: Any, captured: Captured) -> None:
    with llmwatch.attributes(user="u1", feature="search"):
        response = openai_client.responses.create(model="gpt-4o-mini", input="Hello there", instructions="Be kind")
        events = list(openai_client.responses.create(model="gpt-4o-mini", input="Hello there", stream=True))
        vectors = openai_client.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    plain = _plain_client(server).embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    assert [d.embedding for d in vectors.data] == [d.embedding for d in plain.data]
    assert events[-1].type == "response.completed"
    chat, streamed, embeddings = captured.llm_spans()
    final = events[-1].response
    for span, usage in ((chat, response.usage), (streamed, final.usage)):
        assert span.name == "chat gpt-4o-mini"
        assert span.attributes["gen_ai.usage.input_tokens"] == usage.input_tokens
        assert span.attributes["gen_ai.usage.output_tokens"] == usage.output_tokens
        assert span.attributes["llmwatch.cost.usd"] == pytest.approx(_expected_cost(span.attributes), abs=1e-9)
    assert streamed.attributes["llmwatch.time_to_first_token_ms"] >= 0
    assert embeddings.name == "embeddings text-embedding-3-small"
    assert embeddings.attributes["gen_ai.usage.input_tokens"] == vectors.usage.prompt_tokens
    assert embeddings.attributes["llmwatch.user"] == "u1"
    assert embeddings.attributes["llmwatch.cost.usd"] > 0


async def test_async_chat_stream_and_error(async_openai_client: Any, captured: Captured) -> None:
    with llmwatch.attributes(user="u2", feature="chat"):
        reply = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        stream = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        chunks = [c async for c in stream]
        with pytest.raises(openai.RateLimitError):
            await async_openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=USER, extra_headers={"x-fake-scenario": "error-429"}
            )
    assert reply.choices[0].message.content.startswith("Echo")
    assert all(c.choices for c in chunks)  # the usage chunk we asked for is hidden
    plain, streamed, failed = captured.llm_spans()
    assert plain.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert streamed.attributes["llmwatch.stream.completed"] is True
    assert streamed.attributes["llmwatch.time_to_first_token_ms"] >= 0
    assert failed.attributes["error.type"] == "RateLimitError"
    assert {s.attributes["llmwatch.user"] for s in (plain, streamed, failed)} == {"u2"}


def test_one_span_when_global_and_instance_instrumentation_overlap(openai_client: Any, captured: Captured) -> None:
    from llmwatch import _providers

    _providers.instrument_all()
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert len(captured.llm_spans()) == 1


def test_uninstrumented_client_makes_no_span(server: Any, captured: Captured) -> None:
    client = _plain_client(server)
    llmwatch.instrument(openai.OpenAI(api_key="sk-x", base_url=server.openai_base_url))  # installs the hooks
    client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert captured.llm_spans() == []
    assert llmwatch.instrument(client) is client
    client.with_options(timeout=5).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert len(captured.llm_spans()) == 1
