"""Content events over real OTLP logs (issue 15): HTTP ``/v1/logs`` and the gRPC LogsService.

llmwatch's own LoggerProvider exports the ``gen_ai.client.inference.operation.details`` events with
the traces' endpoint, headers and protocol; each event joins its span by trace and span id.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from otlp_receiver import GrpcReceiver, HttpReceiver

import llmwatch
from llmwatch._demo._server import FakeLLMServer

EVENT = "gen_ai.client.inference.operation.details"


def _calls(server: FakeLLMServer) -> None:
    oai = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
    oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi openai"}])
    ant = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.anthropic_base_url, max_retries=0)
    ant.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=10, messages=[{"role": "user", "content": "hi anthropic"}]
    )


@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.parametrize("mode", ["SPAN_AND_EVENT", "EVENT_ONLY"])
def test_events_reach_a_real_otlp_logs_receiver(server: FakeLLMServer, transport: str, mode: str) -> None:
    receiver_type = HttpReceiver if transport == "http" else GrpcReceiver
    with receiver_type() as receiver:
        protocol = "grpc" if transport == "grpc" else "http/protobuf"
        llmwatch.configure(
            service_name="events-e2e",
            exporter="otlp",
            endpoint=receiver.endpoint,
            protocol=protocol,
            headers={"x-team": "llm"},
            capture_content=mode,
        )
        try:
            _calls(server)
            llmwatch.force_flush(timeout_s=10)
            spans = receiver.wait_for_spans(2)
            receiver.wait_for(lambda: len(receiver.log_records()) >= 2)
            records = receiver.log_records()
            log_requests = receiver.requests("logs")
        finally:
            llmwatch.shutdown(timeout_s=5)
    assert len(spans) == 2 and len(records) == 2
    assert all(r.headers.get("x-team") == "llm" for r in log_requests)
    if transport == "http":
        assert {r.path for r in log_requests} == {"/v1/logs"}
    by_span = {(span.proto.trace_id, span.proto.span_id): span for span in spans}
    providers = set()
    for record, attrs, resource in records:
        assert record.event_name == EVENT
        assert resource["service.name"] == "events-e2e"
        span = by_span[(record.trace_id, record.span_id)]  # joined to its span
        assert attrs["gen_ai.provider.name"] == span.attributes["gen_ai.provider.name"]
        assert attrs["gen_ai.usage.input_tokens"] == span.attributes["gen_ai.usage.input_tokens"]
        providers.add(attrs["gen_ai.provider.name"])
        # Structured over the wire: an array of kvlists, not a JSON string.
        user = attrs["gen_ai.input.messages"][-1]
        assert user["role"] == "user" and user["parts"][0]["content"].startswith("hi ")
        assert attrs["gen_ai.output.messages"][0]["role"] == "assistant"
        if mode == "SPAN_AND_EVENT":
            assert json.loads(span.attributes["gen_ai.input.messages"])[-1] == user
        else:
            assert "gen_ai.input.messages" not in span.attributes
            assert "gen_ai.output.messages" not in span.attributes
    assert len(providers) == 2 and "anthropic" in providers  # (the loopback OpenAI is openai_compatible)


def test_span_only_sends_no_logs(server: FakeLLMServer) -> None:
    with HttpReceiver() as receiver:
        llmwatch.configure(exporter="otlp", endpoint=receiver.endpoint, capture_content="SPAN_ONLY")
        try:
            _calls(server)
            llmwatch.force_flush(timeout_s=10)
            spans = receiver.wait_for_spans(2)
        finally:
            llmwatch.shutdown(timeout_s=5)
    assert all("gen_ai.input.messages" in span.attributes for span in spans)
    assert receiver.requests("logs") == []


def test_a_global_logger_provider_is_used_not_replaced(server: FakeLLMServer, monkeypatch: Any) -> None:
    from opentelemetry import _logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    monkeypatch.setattr(_logs._internal, "_LOGGER_PROVIDER", provider)
    with HttpReceiver() as receiver:
        llmwatch.configure(exporter="otlp", endpoint=receiver.endpoint, capture_content="EVENT_ONLY")
        try:
            _calls(server)
            llmwatch.force_flush(timeout_s=10)
            receiver.wait_for_spans(2)
        finally:
            llmwatch.shutdown(timeout_s=5)
    assert receiver.requests("logs") == []  # the app's provider got them, not an exporter of ours
    assert [r.log_record.event_name for r in exporter.get_finished_logs()] == [EVENT, EVENT]
    assert _logs.get_logger_provider() is provider


def test_events_follow_the_otlp_environment(server: FakeLLMServer, monkeypatch: Any) -> None:
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-logs=yes")
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "event_only")
        llmwatch.configure(exporter="otlp")
        try:
            _calls(server)
            llmwatch.force_flush(timeout_s=10)
            receiver.wait_for(lambda: len(receiver.log_records()) >= 2)
        finally:
            llmwatch.shutdown(timeout_s=5)
    requests = receiver.requests("logs")
    assert requests and all(r.path == "/v1/logs" and r.headers.get("x-logs") == "yes" for r in requests)
    assert len(receiver.log_records()) == 2
