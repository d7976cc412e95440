"""The real anthropic SDK against the loopback server: one span per call, cache tokens priced right."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from genai_prices import Usage as PricesUsage
from genai_prices import calc_price
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch.testing import Captured

MODEL = "claude-sonnet-4-5"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def ask(text: str = "Hello there") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture()
def sdk_spans() -> Iterator[InMemorySpanExporter]:
    """A real global TracerProvider: where the anthropic SDK would put its own spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace._TRACER_PROVIDER = None
    trace.set_tracer_provider(provider)
    yield exporter
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace._TRACER_PROVIDER = None


def _only(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_create_with_cache_tokens_priced_like_genai_prices(
    anthropic_client: Any, captured: Captured, sdk_spans: InMemorySpanExporter
) -> None:
    with llmwatch.attributes(user="u1", feature="search"):
        message = anthropic_client.messages.create(
            model=MODEL, max_tokens=100, messages=ask(), extra_headers={"x-fake-scenario": "cached"}
        )
    attrs = _only(captured).attributes
    usage = message.usage
    total_input = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.usage.input_tokens"] == total_input
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 100
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == attrs["gen_ai.usage.cache_write.input_tokens"] == 50
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    expected = calc_price(
        PricesUsage(
            input_tokens=total_input,
            cache_read_tokens=100,
            cache_write_tokens=50,
            cache_write_1h_tokens=20,
            output_tokens=usage.output_tokens,
        ),
        MODEL,
        provider_id="anthropic",
    ).total_price
    assert attrs["llmwatch.cost.usd"] == pytest.approx(float(expected), abs=1e-9)
    assert attrs["llmwatch.user"] == "u1"
    assert sdk_spans.get_finished_spans() == ()  # the SDK's own span is off for traced clients


def test_stream_usage_is_latest_not_summed(anthropic_client: Any, captured: Captured) -> None:
    events = list(anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=ask(), stream=True))
    final_output = events[-2].usage.output_tokens
    attrs = _only(captured).attributes
    assert attrs["gen_ai.usage.output_tokens"] == final_output
    assert attrs["llmwatch.stream.completed"] is True
    assert attrs["llmwatch.time_to_first_token_ms"] >= 0


def test_stream_helper_one_span(anthropic_client: Any, captured_content: Captured, sdk_spans: Any) -> None:
    with anthropic_client.messages.stream(model=MODEL, max_tokens=100, system="Be kind", messages=ask()) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Echo") and final.content[0].text == text
    attrs = _only(captured_content).attributes
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be kind"}]
    (output,) = json.loads(attrs["gen_ai.output.messages"])
    assert output["parts"][0]["content"] == text and output["finish_reason"] == "stop"
    assert sdk_spans.get_finished_spans() == ()


def test_tool_use_and_count_tokens(anthropic_client: Any, captured_content: Captured) -> None:
    anthropic_client.messages.create(
        model=MODEL, max_tokens=100, messages=ask(), extra_headers={"x-fake-scenario": "tool-call"}
    )
    anthropic_client.messages.count_tokens(model=MODEL, messages=ask())
    attrs = _only(captured_content).attributes
    (output,) = json.loads(attrs["gen_ai.output.messages"])
    assert output["finish_reason"] == "tool_call"
    assert output["parts"][-1] == {
        "type": "tool_call",
        "id": "toolu_0",
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("error-400", anthropic.BadRequestError),
        ("error-429", anthropic.RateLimitError),
        ("error-529", anthropic.OverloadedError),
    ],
)
def test_errors(anthropic_client: Any, captured: Captured, scenario: str, error: type) -> None:
    with pytest.raises(error):
        anthropic_client.messages.create(
            model=MODEL, max_tokens=10, messages=ask(), extra_headers={"x-fake-scenario": scenario}
        )
    span = _only(captured)
    assert span.status.status_code.name == "ERROR" and span.attributes["error.type"] == error.__name__


@pytest.mark.parametrize("scenario", ["cut-stream", "stream-error-event"])
def test_broken_streams(anthropic_client: Any, captured: Captured, scenario: str) -> None:
    # The SDK raises its APIError for an error event, and lets httpx2's protocol error through for a cut
    # connection: either way the caller gets exactly what the SDK raised.
    with pytest.raises(Exception) as caught:
        for _ in anthropic_client.messages.create(
            model=MODEL, max_tokens=10, messages=ask(f"hi [[scenario:{scenario}]]"), stream=True
        ):
            pass
    assert type(caught.value).__name__ in {"APIStatusError", "RemoteProtocolError"}
    attrs = _only(captured).attributes
    assert attrs["llmwatch.stream.completed"] is False
    assert attrs["error.type"] == type(caught.value).__name__


async def test_async_create_and_stream_helper(async_anthropic_client: Any, captured: Captured) -> None:
    message = await async_anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=ask())
    async with async_anthropic_client.messages.stream(model=MODEL, max_tokens=10, messages=ask()) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == message.content[0].text
    first, second = captured.llm_spans()
    assert first.attributes["gen_ai.usage.output_tokens"] == second.attributes["gen_ai.usage.output_tokens"]
    assert second.attributes["llmwatch.stream.completed"] is True
