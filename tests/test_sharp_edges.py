"""Regression tests for issue 12's sharp edges: lone surrogates, empty ``llm_call`` blocks, validation
gaps, and ``testing.capture()`` keeping the user's configuration."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest
from otlp_receiver import GrpcReceiver, HttpReceiver

import llmwatch
import llmwatch.testing
from llmwatch._demo._server import FakeLLMServer
from llmwatch.testing import Captured

BAD_USER = "u-\udcff"
BAD_TEXT = "hello \ud800 world"


# --- 3. a lone surrogate must not drop the attribute that holds it -----------------------------------
@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_lone_surrogates_are_repaired_and_counted_not_dropped_over_otlp(
    server: FakeLLMServer, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver_type = HttpReceiver if transport == "http" else GrpcReceiver
    with receiver_type() as receiver, caplog.at_level(logging.WARNING):
        protocol = "grpc" if transport == "grpc" else "http/protobuf"
        llmwatch.configure(exporter="otlp", endpoint=receiver.endpoint, protocol=protocol, capture_content=True)
        client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
        with llmwatch.attributes(user=BAD_USER, feature="f\udc80", session="s-1", tag="t\udfff"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            # The SDK refuses to send a surrogate; a manual record (or a provider's reply) can hold one.
            with llmwatch.llm_call(provider="vllm", model="m") as call:
                call.set_input([{"role": "user", "content": BAD_TEXT}])
                call.set_output(BAD_TEXT, input_tokens=3, output_tokens=3)
        llmwatch.force_flush(timeout_s=10)
        spans = receiver.wait_for_spans(2)
        repaired = llmwatch.stats()["strings_repaired"]
        llmwatch.shutdown(timeout_s=5)
    assert len(spans) == 2
    for span in spans:
        attrs = span.attributes
        assert attrs["llmwatch.user"] == "u-\ufffd"
        assert attrs["llmwatch.feature"] == "f\ufffd"
        assert attrs["llmwatch.tag.tag"] == "t\ufffd"
        assert "gen_ai.input.messages" in attrs
    manual = next(s for s in spans if s.name == "chat m")
    assert "hello \ufffd world" in manual.attributes["gen_ai.input.messages"]
    assert "hello \ufffd world" in manual.attributes["gen_ai.output.messages"]
    assert repaired >= 5  # user, feature, tag, the input and output texts
    assert not [r for r in caplog.records if "Traceback" in r.getMessage() or r.exc_info]


def test_a_surrogate_in_an_error_message_and_a_manual_call(captured_content: Captured) -> None:
    class Odd(Exception):
        pass

    with pytest.raises(Odd), llmwatch.llm_call(provider="vllm\udc00", model="m\udc01") as call:
        call.set_input([{"role": "user", "content": BAD_TEXT}])
        raise Odd("bad \udcff message")
    (span,) = captured_content.llm_spans()
    assert span.name == "chat m\ufffd"
    assert span.attributes["gen_ai.provider.name"] == "vllm\ufffd"
    assert span.status.description == "bad \ufffd message"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.message"] == "bad \ufffd message"
    assert "\udcff" not in event.attributes["exception.stacktrace"]
    for value in span.attributes.values():
        for text in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(text, str):
                text.encode("utf-8")  # every string is valid Unicode


def test_clean_strings_are_returned_as_is() -> None:
    from llmwatch._text import clean

    for text in ("plain", "é ü 漢字 🙂", ""):
        assert clean(text) is text
    assert llmwatch.stats()["strings_repaired"] == 0


# --- 7. an empty llm_call block is not charged ---------------------------------------------------------
@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_an_empty_llm_call_records_no_usage_and_no_cost(captured: Captured, flavour: str) -> None:
    budget = llmwatch.budget(1.0, feature="f")
    with llmwatch.attributes(feature="f"):
        if flavour == "sync":
            with llmwatch.llm_call(provider="openai", model="gpt-4o-mini"):
                pass
        else:
            async with llmwatch.llm_call(provider="openai", model="gpt-4o-mini"):
                pass
    (span,) = captured.llm_spans()
    assert not [k for k in span.attributes if k.startswith(("gen_ai.usage.", "llmwatch.cost", "llmwatch.usage"))]
    assert llmwatch.stats()["budgets"]["feature=f/day"]["spent_usd"] == 0
    assert "gen_ai.client.token.usage" not in captured.metrics()
    budget.remove()


def test_an_llm_call_with_only_output_or_only_tokens_is_still_counted(captured: Captured) -> None:
    with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
        call.set_output("an answer")
    with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
        call.set_output(input_tokens=10, output_tokens=2)
    first, second = captured.llm_spans()
    assert first.attributes["gen_ai.usage.output_tokens"] > 0 and first.attributes["llmwatch.cost.usd"] > 0
    assert (second.attributes["gen_ai.usage.input_tokens"], second.attributes["gen_ai.usage.output_tokens"]) == (10, 2)


# --- 11. validation gaps ----------------------------------------------------------------------------------
@pytest.mark.parametrize("enabled", ["no", "false", 0, 1, None])
def test_kill_switch_enabled_must_be_a_bool(enabled: Any, captured: Captured) -> None:
    with pytest.raises(llmwatch.ConfigurationError, match="enabled must be True"):
        llmwatch.kill_switch(feature="x", enabled=enabled)
    assert llmwatch.stats()["kill_switches"] == {"features": [], "models": []}


@pytest.mark.parametrize("name", ["tracer_provider", "meter_provider"])
def test_configure_rejects_a_provider_of_the_wrong_type(name: str) -> None:
    with pytest.raises(llmwatch.ConfigurationError, match=f"{name} must be an OpenTelemetry"):
        llmwatch.configure(exporter="none", **{name: object()})


def test_configure_rejects_an_exporter_for_a_provider_it_cannot_add_to() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    with pytest.raises(llmwatch.ConfigurationError, match="add_span_processor"):
        llmwatch.configure(exporter="none", tracer_provider=NoOpTracerProvider())
    llmwatch.configure(tracer_provider=NoOpTracerProvider())  # without exporter=: fine
    llmwatch.shutdown(timeout_s=2)


def test_instrument_rejects_a_part_of_a_client_with_the_fix(server: FakeLLMServer) -> None:
    import anthropic

    client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url)
    with pytest.raises(TypeError, match=r"pass the client itself.*llmwatch.instrument\(client\)"):
        llmwatch.instrument(client.chat.completions)
    with pytest.raises(TypeError, match="is not a client"):
        llmwatch.instrument(anthropic.Anthropic(api_key="sk-test").messages)
    assert llmwatch.instrument(client) is client


def test_instrument_accepts_every_sdk_client_class() -> None:
    import anthropic

    for client in (
        openai.AzureOpenAI(api_key="k", api_version="2024-06-01", azure_endpoint="https://x.openai.azure.com"),
        anthropic.AnthropicBedrock(aws_access_key="a", aws_secret_key="b", aws_region="us-east-1"),
    ):
        assert llmwatch.instrument(client) is client


# --- 13. capture() keeps the user's configuration ---------------------------------------------------------
def test_capture_keeps_the_configured_prices(server: FakeLLMServer) -> None:
    llmwatch.configure(exporter="none", prices={"my-model": {"input": 1.0, "output": 2.0}})
    try:
        with llmwatch.testing.capture() as captured, llmwatch.llm_call(provider="vllm", model="my-model") as call:
            call.set_output("x", input_tokens=1000, output_tokens=500)
        (span,) = captured.llm_spans()
        assert span.attributes["llmwatch.cost.usd"] == pytest.approx(0.002)
        assert span.attributes["llmwatch.cost.source"] == "override"
        prices = {"my-model": {"input": 3.0, "output": 0.0}}
        with (
            llmwatch.testing.capture(prices=prices) as captured,
            llmwatch.llm_call(provider="vllm", model="my-model") as c,
        ):
            c.set_output("x", input_tokens=1000, output_tokens=500)
        assert captured.llm_spans()[0].attributes["llmwatch.cost.usd"] == pytest.approx(0.003)  # argument wins
    finally:
        llmwatch.shutdown(timeout_s=2)


def test_capture_keeps_the_configured_content_policy(server: FakeLLMServer) -> None:
    llmwatch.configure(exporter="none", capture_content=True, redact=lambda text: text.replace("secret", "***"))
    try:
        with llmwatch.testing.capture() as captured, llmwatch.llm_call(provider="vllm", model="m") as call:
            call.set_input("my secret")
        assert "my ***" in captured.llm_spans()[0].attributes["gen_ai.input.messages"]
    finally:
        llmwatch.shutdown(timeout_s=2)
