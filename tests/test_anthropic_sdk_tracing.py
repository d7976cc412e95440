"""The anthropic SDK's own tracing while llmwatch instruments it, and after ``uninstrument()``.

While llmwatch traces a client, the SDK's own span is off (one call, one span). After
``uninstrument()`` the SDK behaves exactly as before llmwatch: each way a user can set its tracing
(default, environment, client option) gives, call for call, what it gave before ``configure()``.
The global TracerProvider here is the application's own (OTel's rule: the SDK's spans go to the
global provider, llmwatch uses a real global provider as is), so every span, the SDK's and
llmwatch's, is seen.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic._base_client import BaseClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch._demo._server import FakeLLMServer
from llmwatch._instrument._base import REGISTRY

MODEL = "claude-haiku-4-5"
SDK_SPAN = "anthropic.messages.create"
LLMWATCH_SPAN = f"chat {MODEL}"
ORIGINAL_TRACER = BaseClient.__dict__["_tracer"]


@pytest.fixture(autouse=True)
def _no_client_instrumented_alone() -> None:
    """Clients earlier tests gave to instrument() (and still alive) would keep the hooks in place."""
    REGISTRY._marked.clear()


@pytest.fixture()
def app_spans(global_spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The application's own global TracerProvider; llmwatch is shut down before it goes."""
    yield global_spans
    llmwatch.shutdown(timeout_s=5)


class Setting:
    """One way a user sets the SDK's tracing: environment and client option."""

    def __init__(self, env: str | None, option: Any = None) -> None:
        self.env = env
        self.option = option

    def client(self, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> anthropic.Anthropic:
        if self.env is None:
            monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
        else:
            monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", self.env)
        extra = {} if self.option is None else {"open_telemetry": self.option}
        return anthropic.Anthropic(api_key="sk-ant-test", base_url=server.anthropic_base_url, max_retries=0, **extra)


OWN_PROVIDER = TracerProvider()
OWN_SPANS = InMemorySpanExporter()
OWN_PROVIDER.add_span_processor(SimpleSpanProcessor(OWN_SPANS))
SETTINGS = {
    "sdk default": Setting(None),
    "env on": Setting("true"),
    "env off": Setting("false"),
    "option off": Setting("true", False),
    "option on, own provider": Setting(None, {"tracer_provider": OWN_PROVIDER}),
}


def ask(client: anthropic.Anthropic, app_spans: InMemorySpanExporter) -> list[str]:
    """One call; the names of the spans it made (in the app's provider, then the client's own)."""
    app_spans.clear()
    OWN_SPANS.clear()
    client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    return [s.name for s in app_spans.get_finished_spans()] + [f"own:{s.name}" for s in OWN_SPANS.get_finished_spans()]


@pytest.mark.parametrize("how", list(SETTINGS))
def test_uninstrument_gives_the_sdk_its_tracing_back_exactly(
    server: FakeLLMServer, app_spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    client = SETTINGS[how].client(server, monkeypatch)
    before = ask(client, app_spans)  # what the user had before llmwatch
    assert before in ([], [SDK_SPAN], [f"own:{SDK_SPAN}"])
    llmwatch.configure(exporter=InMemorySpanExporter())  # a real global provider exists: llmwatch uses it
    assert ask(client, app_spans) == [LLMWATCH_SPAN]  # while instrumented: one call, one span, ours
    llmwatch.uninstrument()
    assert BaseClient.__dict__["_tracer"] is ORIGINAL_TRACER
    assert ask(client, app_spans) == before  # the same client, exactly as before llmwatch
    fresh = SETTINGS[how].client(server, monkeypatch)
    assert ask(fresh, app_spans) == before  # and a client made afterwards too


def test_a_client_instrumented_alone_keeps_its_state_after_the_others_are_released(
    server: FakeLLMServer, app_spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = llmwatch.instrument(SETTINGS["sdk default"].client(server, monkeypatch))
    other = SETTINGS["sdk default"].client(server, monkeypatch)
    llmwatch.configure(exporter=InMemorySpanExporter())
    llmwatch.uninstrument()  # clients given to instrument() stay instrumented (documented)
    assert ask(kept, app_spans) == [LLMWATCH_SPAN]
    assert ask(other, app_spans) == [SDK_SPAN]  # the SDK default for everyone else
    del kept
    gc.collect()
    llmwatch.uninstrument()  # nothing marked any more: every hook goes
    assert BaseClient.__dict__["_tracer"] is ORIGINAL_TRACER
    assert ask(other, app_spans) == [SDK_SPAN]
