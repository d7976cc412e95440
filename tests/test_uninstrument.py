"""After ``uninstrument()`` the anthropic SDK's own tracing is what it was without llmwatch.

llmwatch turns the SDK's own spans off for the clients it traces (one call, one span). Once it stops
tracing them, the SDK's spans must not start pouring into llmwatch's exporter (without llmwatch there
would be no provider for them at all), and where the user has a provider of their own, the SDK's
spans must reach it again, exactly as before llmwatch.
"""

from __future__ import annotations

from typing import Any

import anthropic
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch._demo._server import FakeLLMServer

ASK: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
SDK_SPAN = "anthropic.messages.create"


def names(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]


def client(server: FakeLLMServer, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=server.anthropic_base_url, **options)


def test_no_sdk_spans_reach_llmwatchs_own_provider_after_uninstrument(server: FakeLLMServer) -> None:
    exporter = InMemorySpanExporter()
    llmwatch.configure(exporter=exporter, service_name="uninstrument")
    try:
        used_before = client(server)
        used_before.messages.create(**ASK)
        llmwatch.uninstrument()
        used_before.messages.create(**ASK)
        client(server).messages.create(**ASK)  # a client made afterwards
        llmwatch.force_flush(timeout_s=5)
        assert names(exporter) == ["chat claude-haiku-4-5"]  # llmwatch's one span, from before
    finally:
        llmwatch.shutdown(timeout_s=5)


def test_the_users_own_provider_gets_the_sdks_spans_again(
    server: FakeLLMServer, global_spans: InMemorySpanExporter
) -> None:
    llmwatch.configure(service_name="uninstrument")  # llmwatch adopts the user's global provider
    try:
        traced = client(server)
        traced.messages.create(**ASK)
        assert names(global_spans) == ["chat claude-haiku-4-5"]  # one span per call: llmwatch's
        global_spans.clear()
        llmwatch.uninstrument()
        traced.messages.create(**ASK)
        client(server).messages.create(**ASK)
        assert names(global_spans) == [SDK_SPAN, SDK_SPAN]  # as before llmwatch
    finally:
        llmwatch.shutdown(timeout_s=5)


def test_a_client_with_its_own_provider_keeps_its_sdk_spans(server: FakeLLMServer) -> None:
    own = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(own))
    llmwatch.configure(exporter="none", service_name="uninstrument")
    try:
        llmwatch.uninstrument()
        client(server, open_telemetry={"tracer_provider": provider}).messages.create(**ASK)
        assert names(own) == [SDK_SPAN]
    finally:
        llmwatch.shutdown(timeout_s=5)
        provider.shutdown()
