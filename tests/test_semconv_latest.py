"""``OTEL_SEMCONV_STABILITY_OPT_IN``: the v1.41 names by default, the GenAI conventions repo's newer
names with ``gen_ai_latest_experimental``, both with ``gen_ai_latest_experimental/dup`` (issue 15).

Newer names: the ``gen_ai.client.inference.usage.*`` token counters by ``gen_ai.token.modality`` and the
``gen_ai.client.inference.operation.*`` per-call histograms in place of ``gen_ai.client.token.usage``;
the proposed ``gen_ai.usage.cost.amount|currency|source`` beside ``llmwatch.cost.usd``. Real SDKs
against the loopback server.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from google import genai
from google.genai import types
from hosted import hosted_http_client

import llmwatch
from llmwatch import testing
from llmwatch._demo._server import FakeLLMServer

ASK = [{"role": "user", "content": "count the tokens of this question"}]
V141_TOKENS = "gen_ai.client.token.usage"
LATEST = (
    "gen_ai.client.inference.usage.input_tokens",
    "gen_ai.client.inference.usage.output_tokens",
    "gen_ai.client.inference.usage.cache_read.input_tokens",
    "gen_ai.client.inference.usage.cache_write.input_tokens",
    "gen_ai.client.inference.usage.reasoning.output_tokens",
    "gen_ai.client.inference.operation.input_tokens",
    "gen_ai.client.inference.operation.output_tokens",
)
COST = ("gen_ai.usage.cost.amount", "gen_ai.usage.cost.currency", "gen_ai.usage.cost.source")


def _chat(client: Any, **options: Any) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=ASK, **options)


def _points(captured: testing.Captured, name: str) -> list[tuple[dict[str, Any], Any]]:
    return [(dict(p.attributes), p) for p in captured.metrics().get(name, [])]


@pytest.mark.parametrize(
    ("opt_in", "v141", "latest"),
    [("", True, False), ("gen_ai_latest_experimental", False, True), ("gen_ai_latest_experimental/dup", True, True)],
    ids=["default", "latest", "dup"],
)
def test_opt_in_chooses_the_names(
    monkeypatch: pytest.MonkeyPatch, openai_client: Any, opt_in: str, v141: bool, latest: bool
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    with testing.capture() as captured:
        _chat(openai_client)
    (span,) = captured.llm_spans()
    attrs = dict(span.attributes or {})
    metrics = captured.metrics()
    assert (V141_TOKENS in metrics) is v141
    for name in LATEST:
        assert (name in metrics) is latest, name
    for key in COST:
        assert (key in attrs) is latest, key
    assert ("gen_ai.system" in attrs) is (opt_in.endswith("/dup"))
    assert "gen_ai.client.operation.duration" in metrics  # the same name in both generations


def test_latest_token_counters_and_cost(monkeypatch: pytest.MonkeyPatch, openai_client: Any) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    with testing.capture() as captured:
        _chat(openai_client)
    (span,) = captured.llm_spans()
    attrs = dict(span.attributes or {})
    # OpenAI reports no modality breakdown for chat: the totals count as ``unknown``.
    (inputs,) = _points(captured, "gen_ai.client.inference.usage.input_tokens")
    assert inputs[0]["gen_ai.token.modality"] == "unknown"
    assert inputs[1].value == attrs["gen_ai.usage.input_tokens"]
    (outputs,) = _points(captured, "gen_ai.client.inference.usage.output_tokens")
    assert outputs[1].value == attrs["gen_ai.usage.output_tokens"]
    for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model"):
        assert inputs[0][key] == attrs[key], key
    (reads,) = _points(captured, "gen_ai.client.inference.usage.cache_read.input_tokens")
    assert reads[1].value == 0  # recorded for every call, 0 when there was no cache read
    (per_call,) = _points(captured, "gen_ai.client.inference.operation.input_tokens")
    assert per_call[1].sum == attrs["gen_ai.usage.input_tokens"] and per_call[1].count == 1
    assert "gen_ai.token.modality" not in per_call[0]
    assert attrs["gen_ai.usage.cost.amount"] == attrs["llmwatch.cost.usd"] > 0
    assert attrs["gen_ai.usage.cost.currency"] == "USD"
    assert attrs["gen_ai.usage.cost.source"] == "local"


def test_a_failed_call_counts_zero_tokens_of_unknown_modality(
    monkeypatch: pytest.MonkeyPatch, openai_client: Any
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    with testing.capture() as captured, pytest.raises(openai.APIStatusError):
        _chat(openai_client.with_options(max_retries=0), extra_headers={"x-fake-scenario": "error-500"})
    (inputs,) = _points(captured, "gen_ai.client.inference.usage.input_tokens")
    assert inputs[1].value == 0 and inputs[0]["gen_ai.token.modality"] == "unknown"
    (per_call,) = _points(captured, "gen_ai.client.inference.operation.output_tokens")
    assert per_call[0]["error.type"] == "InternalServerError" and per_call[1].sum == 0
    (span,) = captured.llm_spans()
    assert "gen_ai.usage.cost.amount" not in (span.attributes or {})  # nothing priced, nothing claimed


def test_a_provider_reported_cost_says_provider(monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    client = llmwatch.instrument(
        openai.OpenAI(
            api_key="k",
            base_url="https://openrouter.ai/api/v1",
            http_client=hosted_http_client(server),
            max_retries=0,
        )
    )
    with testing.capture() as captured:
        _chat(client, extra_headers={"x-fake-scenario": "provider-cost"})
    (span,) = captured.llm_spans()
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.usage.cost.source"] == "provider"
    assert attrs["gen_ai.usage.cost.amount"] == attrs["llmwatch.cost.usd"]


def test_gemini_reports_modalities(monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    client = genai.Client(api_key="fake-gemini-key", http_options=types.HttpOptions(base_url=server.base_url))
    with testing.capture() as captured:
        llmwatch.instrument(client)
        client.models.generate_content(model="gemini-2.0-flash", contents="count the tokens of this question")
    (span,) = captured.llm_spans()
    (inputs,) = _points(captured, "gen_ai.client.inference.usage.input_tokens")
    assert inputs[0]["gen_ai.token.modality"] == "text"  # Gemini's promptTokensDetails
    assert inputs[1].value == (span.attributes or {})["gen_ai.usage.input_tokens"]


@pytest.mark.parametrize(
    ("opt_in", "names"),
    [
        ("", {"gen_ai.usage.cache_creation.input_tokens"}),
        ("gen_ai_latest_experimental", {"gen_ai.usage.cache_write.input_tokens"}),
        (
            "gen_ai_latest_experimental/dup",
            {"gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens"},
        ),
    ],
    ids=["default", "latest", "dup"],
)
def test_cache_writes_go_by_one_name_unless_dup(
    monkeypatch: pytest.MonkeyPatch, anthropic_client: Any, opt_in: str, names: set[str]
) -> None:
    """Never both names by default: a backend that sums every usage count (Langfuse) would count
    the cache writes twice."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    with testing.capture() as captured:
        anthropic_client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=20,
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"x-fake-scenario": "cached"},
        )
    attrs = dict(captured.llm_spans()[0].attributes or {})
    assert {k for k in attrs if "cache_creation" in k or "cache_write" in k} == names
    for name in names:
        assert attrs[name] == 50
    if "latest" in opt_in:
        (writes,) = _points(captured, "gen_ai.client.inference.usage.cache_write.input_tokens")
        assert writes[1].value == 50
