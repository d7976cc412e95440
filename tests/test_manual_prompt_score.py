"""llm_call for unwrapped providers, prompt templates, and scores linked to completions."""

from __future__ import annotations

import json
from typing import Any

import pytest

import llmwatch
import llmwatch.testing
from llmwatch.testing import Captured

USER = [{"role": "user", "content": "Summarise this text please"}]


def test_llm_call_unknown_model_estimates_and_has_no_cost(captured: Captured) -> None:
    with llmwatch.llm_call(provider="vllm", model="llama-3-8b") as call:
        call.set_input(USER)
        call.set_output("A summary.")
    (span,) = captured.llm_spans()
    attrs = span.attributes
    assert span.name == "chat llama-3-8b" and attrs["gen_ai.provider.name"] == "vllm"
    assert attrs["llmwatch.usage.source"] == "estimate"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["llmwatch.cost.unknown_model"] is True and "llmwatch.cost.usd" not in attrs


async def test_llm_call_with_price_override_async() -> None:
    with llmwatch.testing.capture(prices={"llama-3-8b": {"input": 1.0, "output": 2.0}}) as captured:
        async with llmwatch.llm_call(provider="vllm", model="llama-3-8b", stream=True) as call:
            call.set_input(USER)
            call.record_first_token()
            call.set_output("ok", input_tokens=1000, output_tokens=500)
    attrs = captured.llm_spans()[0].attributes
    assert attrs["llmwatch.cost.usd"] == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert attrs["llmwatch.cost.source"] == "override"
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.time_to_first_token_ms"] >= 0


def test_llm_call_exception_propagates_and_marks_span(captured: Captured) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), llmwatch.llm_call(provider="bedrock", model="m"):
        raise Boom("provider down")
    (span,) = captured.llm_spans()
    assert span.status.status_code.name == "ERROR" and span.attributes["error.type"] == "Boom"


def test_prompt_template_name_version_and_variables(openai_client: Any) -> None:
    for capture in (False, True):
        with (
            llmwatch.testing.capture(capture_content=capture) as captured,
            llmwatch.prompt(name="summarize", version=3, variables={"topic": "cats"}),
        ):
            openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        attrs = captured.llm_spans()[0].attributes
        assert attrs["llmwatch.prompt.name"] == "summarize" and attrs["llmwatch.prompt.version"] == "3"
        assert ("llmwatch.prompt.variables" in attrs) is capture
        if capture:
            assert json.loads(attrs["llmwatch.prompt.variables"]) == {"topic": "cats"}


def test_score_by_object_id_and_span_context(openai_client: Any, captured: Captured) -> None:
    reply = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    (completion,) = captured.llm_spans()
    assert llmwatch.score(reply, "helpfulness", 0.9, label="good", comment="clear") is not None
    assert llmwatch.score(reply.id, "thumbs", True) is not None
    assert llmwatch.score(completion.get_span_context(), "length", 3) is not None
    scores = [s for s in captured.spans if s.name.startswith("evaluate ")]
    assert [s.name for s in scores] == ["evaluate helpfulness", "evaluate thumbs", "evaluate length"]
    first = scores[0]
    assert first.attributes["gen_ai.evaluation.score.value"] == 0.9
    assert first.attributes["gen_ai.evaluation.score.label"] == "good"
    assert first.attributes["gen_ai.evaluation.explanation"] == "clear"
    assert first.attributes["gen_ai.response.id"] == reply.id
    assert first.events[0].name == "gen_ai.evaluation.result"
    assert first.links[0].context.span_id == completion.context.span_id
    assert all(s.context.trace_id == completion.context.trace_id for s in scores)
    assert scores[1].attributes["gen_ai.evaluation.score.label"] == "true"


def test_score_unknown_id_is_reported_not_raised(captured: Captured) -> None:
    assert llmwatch.score("chatcmpl-unknown", "helpfulness", 1.0) is None
    assert llmwatch.stats()["scores_unmatched"] == 1
    assert captured.spans == []
