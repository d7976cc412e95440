"""``configure(backend_compat=["openinference"])``: the OpenInference attributes Phoenix and other
OpenInference readers show, beside the GenAI ones, under the same content rules (issue 15).

Real SDKs against the loopback server.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

import llmwatch
from llmwatch import testing
from llmwatch._errors import ConfigurationError

COMPAT = {"backend_compat": ["openinference"]}
ASK = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is OTLP?"}]


def _chat(client: Any, **options: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=ASK, **options)


def _span_attrs(captured: testing.Captured) -> dict[str, Any]:
    (span,) = captured.llm_spans()
    return dict(span.attributes or {})


def test_an_llm_span_carries_kind_model_tokens_cost_and_messages(openai_client: Any) -> None:
    with testing.capture(capture_content=True, **COMPAT) as captured:
        reply = _chat(openai_client)
    attrs = _span_attrs(captured)
    assert attrs["openinference.span.kind"] == "LLM"
    assert attrs["llm.model_name"] == reply.model
    assert (attrs["llm.provider"], attrs["llm.system"]) == ("openai", "openai")
    assert attrs["llm.token_count.prompt"] == attrs["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attrs["llm.token_count.completion"] == reply.usage.completion_tokens
    assert attrs["llm.token_count.total"] == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert attrs["llm.cost.total"] == attrs["llmwatch.cost.usd"] > 0
    assert attrs["llm.cost.prompt"] + attrs["llm.cost.completion"] == pytest.approx(attrs["llm.cost.total"])
    # input.value: the same messages JSON as gen_ai.input.messages; output.value: the reply's text.
    assert attrs["input.value"] == attrs["gen_ai.input.messages"]
    assert attrs["input.mime_type"] == "application/json"
    assert attrs["output.value"] == reply.choices[0].message.content
    assert attrs["output.mime_type"] == "text/plain"
    assert attrs["llm.input_messages.0.message.role"] == "system"
    assert attrs["llm.input_messages.0.message.content"] == "be brief"
    assert attrs["llm.input_messages.1.message.content"] == "what is OTLP?"
    assert attrs["llm.output_messages.0.message.role"] == "assistant"
    assert attrs["llm.output_messages.0.message.content"] == reply.choices[0].message.content


def test_tool_calls_are_flattened_and_the_output_stays_json(openai_client: Any) -> None:
    with testing.capture(capture_content=True, **COMPAT) as captured:
        reply = _chat(openai_client, extra_headers={"x-fake-scenario": "tool-call"})
    attrs = _span_attrs(captured)
    (tool_call,) = reply.choices[0].message.tool_calls
    prefix = "llm.output_messages.0.message.tool_calls.0.tool_call."
    assert attrs[prefix + "id"] == tool_call.id
    assert attrs[prefix + "function.name"] == tool_call.function.name
    assert json.loads(attrs[prefix + "function.arguments"]) == json.loads(tool_call.function.arguments)
    assert attrs["output.mime_type"] == "application/json"
    assert attrs["output.value"] == attrs["gen_ai.output.messages"]


def test_anthropic_system_instructions_lead_the_input_messages(anthropic_client: Any) -> None:
    with testing.capture(capture_content=True, **COMPAT) as captured:
        anthropic_client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=20,
            system="be brief",
            messages=[{"role": "user", "content": "hello"}],
        )
    attrs = _span_attrs(captured)
    assert (attrs["llm.provider"], attrs["llm.system"]) == ("anthropic", "anthropic")
    assert attrs["llm.input_messages.0.message.role"] == "system"
    assert attrs["llm.input_messages.0.message.content"] == "be brief"
    assert attrs["llm.input_messages.1.message.content"] == "hello"


@pytest.mark.parametrize("capture", [False, "EVENT_ONLY"], ids=["capture-off", "event-only"])
def test_no_content_attributes_without_content_on_the_span(openai_client: Any, capture: Any) -> None:
    with testing.capture(capture_content=capture, **COMPAT) as captured:
        _chat(openai_client)
    attrs = _span_attrs(captured)
    assert attrs["openinference.span.kind"] == "LLM" and "llm.token_count.total" in attrs
    leaked = [k for k in attrs if k.startswith(("input.", "output.", "llm.input_messages", "llm.output_messages"))]
    assert leaked == []


def test_off_by_default(openai_client: Any) -> None:
    with testing.capture(capture_content=True) as captured:
        _chat(openai_client)
    attrs = _span_attrs(captured)
    assert [k for k in attrs if k.startswith(("openinference.", "llm.", "input.", "output."))] == []


def test_embeddings_are_embedding_spans(openai_client: Any) -> None:
    with testing.capture(**COMPAT) as captured:
        openai_client.embeddings.create(model="text-embedding-3-small", input="hello")
    attrs = _span_attrs(captured)
    assert attrs["openinference.span.kind"] == "EMBEDDING"
    assert attrs["embedding.model_name"].startswith("text-embedding-3-small")
    assert "llm.model_name" not in attrs


def test_observe_spans_are_chains_with_input_and_output(openai_client: Any) -> None:
    @llmwatch.observe(name="answer", capture_args=True)
    def answer(question: str) -> str:
        return str(openai_client.chat.completions.create(model="gpt-4o-mini", messages=ASK).choices[0].message.content)

    with testing.capture(capture_content=True, **COMPAT) as captured:
        text = answer("what is OTLP?")
    (root,) = [s for s in captured.spans if s.name == "answer"]
    attrs = dict(root.attributes or {})
    assert attrs["openinference.span.kind"] == "CHAIN"
    assert json.loads(attrs["input.value"]) == {"args": ["what is OTLP?"], "kwargs": {}}
    assert json.loads(attrs["output.value"]) == text
    assert attrs["input.mime_type"] == attrs["output.mime_type"] == "application/json"


def test_observe_without_capture_is_a_chain_with_no_values() -> None:
    @llmwatch.observe
    def work() -> int:
        return 1

    with testing.capture(**COMPAT) as captured:
        work()
    (root,) = captured.spans
    attrs = dict(root.attributes or {})
    assert attrs["openinference.span.kind"] == "CHAIN"
    assert "input.value" not in attrs and "output.value" not in attrs


@pytest.mark.parametrize("value", ["OpenInference", ["openinference"], "openinference, "])
def test_accepted_forms(monkeypatch: pytest.MonkeyPatch, openai_client: Any, value: Any) -> None:
    if isinstance(value, str):
        monkeypatch.setenv("LLMWATCH_BACKEND_COMPAT", value)
        settings: dict[str, Any] = {}
    else:
        settings = {"backend_compat": value}
    with testing.capture(**settings) as captured:
        _chat(openai_client)
    assert _span_attrs(captured)["openinference.span.kind"] == "LLM"


@pytest.mark.parametrize("value", ["phoenix", ["openinference", "langfuse"], 3, [1]])
def test_unknown_values_fail_at_configure(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="openinference"):
        llmwatch.configure(backend_compat=value, exporter="none", instrument=False)


def test_a_failed_call_has_no_output_value(openai_client: Any) -> None:
    with testing.capture(capture_content=True, **COMPAT) as captured, pytest.raises(openai.APIStatusError):
        _chat(openai_client.with_options(max_retries=0), extra_headers={"x-fake-scenario": "error-500"})
    attrs = _span_attrs(captured)
    assert "input.value" in attrs
    assert "output.value" not in attrs and "llm.output_messages.0.message.role" not in attrs
