"""``llm_call`` for providers llmwatch does not wrap, ``prompt`` templates, and ``score`` linked to completions."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanContext

import llmwatch
import llmwatch.testing
from llmwatch._policy import _tokens
from llmwatch.testing import Captured

MODEL = "llama-3-8b"
USER = [{"role": "user", "content": "Summarise this text please"}]
FLAVOURS = ["sync", "async"]
PRICES = {MODEL: {"input": 1.0, "output": 2.0}}


class Boom(Exception):
    pass


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def record(flavour: str, body: Callable[[Any], None], **options: Any) -> None:
    """Run ``body(call)`` inside ``llm_call`` as ``with`` or ``async with``."""
    manager = llmwatch.llm_call(provider="vllm", model=MODEL, **options)
    if flavour == "async":
        async with manager as call:
            body(call)
    else:
        with manager as call:
            body(call)


def reply(output: str = "A summary.", **tokens: int) -> Callable[[Any], None]:
    def body(call: Any) -> None:
        call.set_input(USER)
        call.set_output(output, **tokens)

    return body


def only_span(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


# --- llm_call ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_llm_call_estimates_tokens_and_has_no_cost_for_an_unknown_model(captured: Captured, flavour: str) -> None:
    with llmwatch.attributes(user="u1", feature="summaries"):
        await record(flavour, reply("A summary."))
    span = only_span(captured)
    attrs = span.attributes
    assert span.name == "chat llama-3-8b" and span.kind.name == "CLIENT"
    assert span.status.status_code.name == "UNSET"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "vllm"
    assert attrs["gen_ai.request.model"] == MODEL
    assert "gen_ai.request.stream" not in attrs and attrs["llmwatch.stream"] is False  # the spec: iff streaming
    assert attrs["llmwatch.usage.source"] == "estimate"  # no tiktoken encoding for llama
    assert attrs["gen_ai.usage.input_tokens"] == _tokens.count_message_tokens(MODEL, USER)[0]
    assert attrs["gen_ai.usage.output_tokens"] == 3  # ceil(len("A summary.") / 4)
    assert attrs["llmwatch.cost.unknown_model"] is True
    assert not [k for k in attrs if k.startswith("llmwatch.cost.") and k != "llmwatch.cost.unknown_model"]
    assert attrs["llmwatch.user"] == "u1" and attrs["llmwatch.feature"] == "summaries"
    assert "llmwatch.time_to_first_token_ms" not in attrs


@pytest.mark.parametrize("tokens_given", [True, False])
@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_llm_call_priced_by_an_override(flavour: str, tokens_given: bool) -> None:
    tokens = {"input_tokens": 1000, "output_tokens": 500} if tokens_given else {}
    with llmwatch.testing.capture(prices=PRICES) as captured:
        await record(flavour, reply("ok", **tokens))
    attrs = only_span(captured).attributes
    input_tokens, output_tokens = attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]
    assert (input_tokens, output_tokens) == ((1000, 500) if tokens_given else (input_tokens, 1))
    assert attrs["llmwatch.usage.source"] == ("provider" if tokens_given else "estimate")
    assert attrs["llmwatch.cost.usd"] == pytest.approx((input_tokens * 1.0 + output_tokens * 2.0) / 1e6, abs=1e-12)
    assert attrs["llmwatch.cost.input_usd"] == pytest.approx(input_tokens * 1.0 / 1e6, abs=1e-12)
    assert attrs["llmwatch.cost.source"] == "override"
    assert "llmwatch.cost.unknown_model" not in attrs


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_provider_qualified_price_override_wins(flavour: str) -> None:
    prices = {**PRICES, f"vllm/{MODEL}": {"input": 3.0, "output": 4.0}}
    with llmwatch.testing.capture(prices=prices) as captured:
        await record(flavour, reply("ok", input_tokens=1000, output_tokens=500))
    assert only_span(captured).attributes["llmwatch.cost.usd"] == pytest.approx((3000 + 2000) / 1e6, abs=1e-12)


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_llm_call_exception_propagates_and_marks_the_span(captured: Captured, flavour: str) -> None:
    error = Boom("provider down")

    def fail(call: Any) -> None:
        call.set_input(USER)
        raise error

    with pytest.raises(Boom) as caught:
        await record(flavour, fail)
    assert caught.value is error
    span = only_span(captured)
    assert span.status.status_code.name == "ERROR"
    assert span.status.description == "provider down"
    assert span.attributes["error.type"] == "Boom"
    assert [e.name for e in span.events] == ["exception"]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_llm_call_first_token_gives_ttft_on_a_stream(captured: Captured, flavour: str) -> None:
    def body(call: Any) -> None:
        call.set_input(USER)
        call.record_first_token()
        call.set_output("ok", input_tokens=10, output_tokens=1)

    await record(flavour, body, stream=True)
    span = only_span(captured)
    attrs = span.attributes
    assert attrs["gen_ai.request.stream"] is True and attrs["llmwatch.stream"] is True
    assert attrs["llmwatch.stream.completed"] is True
    assert 0 <= attrs["llmwatch.time_to_first_token_ms"] <= (span.end_time - span.start_time) / 1e6


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_llm_call_content_capture(captured_content: Captured, flavour: str) -> None:
    await record(flavour, reply("A summary.", input_tokens=5, output_tokens=3))
    attrs = only_span(captured_content).attributes
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": USER[0]["content"]}]}
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "A summary."}], "finish_reason": "stop"}
    ]


# --- prompt templates -------------------------------------------------------------------------------
async def complete(client: Any, text: str = "Summarise this text please") -> Any:
    """One chat call through whichever real SDK client is given (sync or async)."""
    messages = [{"role": "user", "content": text}]
    if hasattr(client, "chat"):
        result = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    else:
        result = client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=messages)
    return await resolve(result)


@pytest.fixture(params=["openai_client", "async_openai_client", "anthropic_client", "async_anthropic_client"])
def client(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("capture_content", [False, True])
async def test_prompt_name_version_and_variables(client: Any, capture_content: bool) -> None:
    with llmwatch.testing.capture(capture_content=capture_content) as captured:
        with (
            llmwatch.attributes(user="u1"),
            llmwatch.prompt(name="summarize", version="3", variables={"topic": "cats", "n": 2}),
        ):
            await complete(client)
        await complete(client)  # after the block: no prompt
    inside, after = captured.llm_spans()
    attrs = inside.attributes
    assert attrs["llmwatch.prompt.name"] == "summarize" and attrs["llmwatch.prompt.version"] == "3"
    assert attrs["gen_ai.prompt.name"] == "summarize"  # the registry's name too (it has no version)
    assert attrs["llmwatch.user"] == "u1"
    assert attrs["llmwatch.prompt.fingerprint"] == after.attributes["llmwatch.prompt.fingerprint"]
    if capture_content:
        assert json.loads(attrs["llmwatch.prompt.variables"]) == {"topic": "cats", "n": 2}
    else:
        assert "llmwatch.prompt.variables" not in attrs
    assert not [
        k
        for k in after.attributes
        if k.startswith(("llmwatch.prompt.name", "gen_ai.prompt.name", "llmwatch.prompt.v", "llmwatch.user"))
    ]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_prompt_as_a_decorator_with_an_int_version(captured: Captured, flavour: str) -> None:
    def classify() -> None:
        with llmwatch.llm_call(provider="vllm", model=MODEL) as call:
            reply("ok", input_tokens=1, output_tokens=1)(call)

    async def classify_async() -> None:
        await asyncio.sleep(0)
        classify()

    decorated = llmwatch.prompt(name="classify", version=2)(classify_async if flavour == "async" else classify)
    await resolve(decorated())
    attrs = only_span(captured).attributes
    assert (attrs["llmwatch.prompt.name"], attrs["llmwatch.prompt.version"]) == ("classify", "2")


# --- scores -----------------------------------------------------------------------------------------
def score_spans(captured: Captured) -> list[Any]:
    return [s for s in captured.spans if s.name.startswith("evaluate ")]


async def test_score_by_response_object(client: Any, captured: Captured) -> None:
    response = await complete(client)
    (completion,) = captured.llm_spans()
    returned = llmwatch.score(response, "helpfulness", 0.9, label="good", comment="clear and short")
    (span,) = score_spans(captured)
    expected = {
        "gen_ai.evaluation.name": "helpfulness",
        "gen_ai.evaluation.score.value": 0.9,
        "gen_ai.evaluation.score.label": "good",
        "gen_ai.evaluation.explanation": "clear and short",
        "gen_ai.response.id": response.id,
    }
    assert span.name == "evaluate helpfulness" and span.kind.name == "INTERNAL"
    assert dict(span.attributes) == expected
    assert [(e.name, dict(e.attributes)) for e in span.events] == [("gen_ai.evaluation.result", expected)]
    assert span.links == ()  # no other span was active
    assert span.context.trace_id == completion.context.trace_id
    assert span.parent.span_id == completion.context.span_id  # under the evaluated span
    assert returned == span.context
    # The conventions' form: a log event parented to the evaluated span.
    (event,) = captured.events("gen_ai.evaluation.result")
    assert dict(event.log_record.attributes) == expected
    assert (event.log_record.trace_id, event.log_record.span_id) == (
        completion.context.trace_id,
        completion.context.span_id,
    )


async def test_score_given_inside_another_span_stays_under_the_completion_and_links_to_it(
    openai_client: Any, captured: Captured
) -> None:
    response = await complete(openai_client)
    (completion,) = captured.llm_spans()
    with captured.tracer_provider.get_tracer("app").start_as_current_span("POST /feedback") as request:
        llmwatch.score(response.id, "thumbs", False)
    (span,) = score_spans(captured)
    assert span.parent.span_id == completion.context.span_id
    assert span.context.trace_id == completion.context.trace_id
    assert [link.context.span_id for link in span.links] == [request.get_span_context().span_id]
    (event,) = captured.events("gen_ai.evaluation.result")
    assert event.log_record.span_id == completion.context.span_id


async def test_score_by_response_id_and_by_span_context(openai_client: Any, captured: Captured) -> None:
    response = await complete(openai_client)
    (completion,) = captured.llm_spans()
    assert isinstance(llmwatch.score(response.id, "thumbs", True), SpanContext)
    assert isinstance(llmwatch.score(completion.get_span_context(), "length", 3), SpanContext)
    by_id, by_context = score_spans(captured)
    assert dict(by_id.attributes) == {
        "gen_ai.evaluation.name": "thumbs",
        "gen_ai.evaluation.score.label": "true",  # a bool is a label, not a score value
        "gen_ai.response.id": response.id,
    }
    assert by_context.attributes["gen_ai.evaluation.score.value"] == 3.0
    for span in (by_id, by_context):
        assert span.parent.span_id == completion.context.span_id
        assert span.context.trace_id == completion.context.trace_id


async def test_score_for_an_unknown_completion_is_counted_not_raised(captured: Captured) -> None:
    assert llmwatch.score("chatcmpl-unknown", "helpfulness", 1.0) is None
    assert llmwatch.stats()["scores_unmatched"] == 1
    assert llmwatch.score(object(), "helpfulness", 1.0) is None  # no id at all
    assert llmwatch.stats()["scores_unmatched"] == 2
    assert captured.spans == []
