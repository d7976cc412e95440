"""The core promise on every supported SDK version: one span per call with usage and cost, streams too.

Written against the API surface the oldest supported ``openai`` (1.40) and ``anthropic`` (0.40) share
with today's, so ``.ci/run`` runs this file again in a venv with those versions pinned (the rest of
the suite uses features only newer SDKs have: the Responses API, ``parse()``, ``beta.messages``...).
"""

from __future__ import annotations

import logging
from typing import Any

import anthropic
import openai
import pytest

import llmwatch
from llmwatch import _instrument
from llmwatch._demo._server import FakeLLMServer
from llmwatch.testing import Captured

ASK = [{"role": "user", "content": "Hello there"}]


def one_span(captured: Captured) -> dict[str, Any]:
    (span,) = captured.llm_spans()
    return dict(span.attributes or {})


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat(server: FakeLLMServer, captured: Captured, stream: bool) -> None:
    client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
    client = llmwatch.instrument(client, provider="openai")  # the loopback host alone: openai_compatible
    result = client.chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=stream)
    if stream:
        chunks = list(result)
        assert all(c.choices for c in chunks)  # the usage chunk llmwatch asked for stays hidden
    attrs = one_span(captured)
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.cost.usd"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages(server: FakeLLMServer, captured: Captured, stream: bool) -> None:
    client = llmwatch.instrument(
        anthropic.Anthropic(api_key="sk-ant-test", base_url=server.anthropic_base_url, max_retries=0)
    )
    result = client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=ASK, stream=stream)
    if stream:
        assert [e.type for e in result][-1] == "message_stop"
    attrs = one_span(captured)
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.usage.output_tokens"] > 0 and attrs["llmwatch.cost.usd"] > 0


def test_openai_errors_pass_through(server: FakeLLMServer, captured: Captured) -> None:
    client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
    client = llmwatch.instrument(client, provider="openai")  # the loopback host alone: openai_compatible
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ASK, extra_headers={"x-fake-scenario": "error-429"}
        )
    assert one_span(captured)["error.type"] == "RateLimitError"


def test_an_unknown_sdk_version_warns_and_still_instruments(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _instrument.uninstall_all()
    monkeypatch.setattr(openai, "__version__", "99.0.0")
    with caplog.at_level(logging.WARNING, logger="llmwatch"):
        assert _instrument.install(_instrument._openai) is True
    assert "openai 99.0.0 is a version llmwatch was not tested with" in caplog.text
