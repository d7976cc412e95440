"""Each content-capture mode puts content exactly where it says (issue 15).

``SPAN_ONLY``: span attributes (JSON text), no event. ``EVENT_ONLY``: one
``gen_ai.client.inference.operation.details`` log event (structured values) in the span's context,
nothing on the span. ``SPAN_AND_EVENT``: both, the same content. ``NO_CONTENT``: neither. Real SDKs
against the loopback server.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch import testing

EVENT = "gen_ai.client.inference.operation.details"
# OpenAI's system message is part of the chat history (gen_ai.input.messages); Anthropic's is separate.
CONTENT_KEYS = {
    "openai": ("gen_ai.input.messages", "gen_ai.output.messages"),
    "anthropic": ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"),
}
MODES = {
    "NO_CONTENT": (False, False),
    "SPAN_ONLY": (True, False),
    "EVENT_ONLY": (False, True),
    "SPAN_AND_EVENT": (True, True),
}


def _call_openai(client: Any, stream: bool) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    if stream:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
            pass
    else:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0.5)


def _call_anthropic(client: Any, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 20,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hello there"}],
    }
    if stream:
        with client.messages.stream(**kwargs) as events:
            for _ in events:
                pass
    else:
        client.messages.create(**kwargs)


CALLS = {"openai": ("openai_client", _call_openai), "anthropic": ("anthropic_client", _call_anthropic)}


@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
@pytest.mark.parametrize("provider", sorted(CALLS))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_mode_puts_content_where_it_says(
    request: pytest.FixtureRequest, provider: str, mode: str, stream: bool
) -> None:
    fixture, call = CALLS[provider]
    client = request.getfixturevalue(fixture)
    on_span, in_event = MODES[mode]
    with testing.capture(capture_content=mode) as captured:
        call(client, stream)
    (span,) = captured.llm_spans()
    attrs = dict(span.attributes or {})
    for key in CONTENT_KEYS[provider]:
        assert (key in attrs) is on_span, (key, mode)
    assert provider == "anthropic" or "gen_ai.system_instructions" not in attrs
    events = captured.events()
    assert len(events) == (1 if in_event else 0)
    if not in_event:
        return
    (record,) = events
    log = record.log_record
    assert log.event_name == EVENT
    assert log.body is None
    # In the span's context: the backend joins the event to its span by these ids.
    assert log.trace_id == span.context.trace_id
    assert log.span_id == span.context.span_id
    event = dict(log.attributes or {})
    for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"):
        assert event[key] == attrs[key]
    for key in ("gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        assert event[key] == attrs[key], key
    # Structured values, not JSON text (the conventions: events carry them structured).
    *history, user = event["gen_ai.input.messages"]
    assert user["role"] == "user"
    assert user["parts"][0] == {"type": "text", "content": "hello there"}
    system = event["gen_ai.system_instructions"][0] if provider == "anthropic" else history[0]["parts"][0]
    assert system["content"] == "be brief"
    (output,) = event["gen_ai.output.messages"]
    assert output["role"] == "assistant" and output["parts"]
    if on_span:  # both: the same content in both places
        for key in CONTENT_KEYS[provider]:
            assert json.loads(attrs[key]) == _plain(event[key]), key


def _plain(value: Any) -> Any:
    """The SDK stores sequences in attributes as tuples: back to lists to compare with JSON."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_event_carries_the_error_type(openai_client: Any) -> None:
    with testing.capture(capture_content="EVENT_ONLY") as captured, pytest.raises(openai.APIStatusError):
        openai_client.with_options(max_retries=0).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-scenario": "error-500"},
        )
    (span,) = captured.llm_spans()
    (record,) = captured.events(EVENT)
    assert record.log_record.attributes["error.type"] == span.attributes["error.type"]


def test_redacted_content_goes_to_the_event_redacted(openai_client: Any) -> None:
    with testing.capture(capture_content="redacted", content_destination="event") as captured:
        openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "mail jane.doe@example.com"}]
        )
    (span,) = captured.llm_spans()
    assert "gen_ai.input.messages" not in (span.attributes or {})
    (record,) = captured.events(EVENT)
    (message,) = record.log_record.attributes["gen_ai.input.messages"]
    assert message["parts"][0]["content"] == "mail [REDACTED_EMAIL]"


def test_the_event_keeps_to_the_content_budget(openai_client: Any) -> None:
    limits = {"max_content_chars": 10_000, "max_span_content_chars": 4_000}
    with testing.capture(capture_content="EVENT_ONLY", **limits) as captured:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "q" * 9_000}])
    (record,) = captured.events(EVENT)
    (message,) = record.log_record.attributes["gen_ai.input.messages"]
    assert "[truncated" in message["parts"][0]["content"]


def test_configure_uses_the_logger_provider_given(openai_client: Any) -> None:
    logs, spans = InMemoryLogRecordExporter(), InMemorySpanExporter()
    logger_provider = LoggerProvider(shutdown_on_exit=False)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    llmwatch.configure(
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
        capture_content="SPAN_AND_EVENT",
        instrument=False,
    )
    try:
        llmwatch.instrument(openai_client)
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        (record,) = logs.get_finished_logs()
        assert record.log_record.event_name == EVENT
        (span,) = [s for s in spans.get_finished_spans() if "gen_ai.operation.name" in (s.attributes or {})]
        assert "gen_ai.input.messages" in (span.attributes or {})
    finally:
        llmwatch.shutdown()


@pytest.mark.parametrize("given", [True, False], ids=["logger_provider", "none"])
def test_score_events_go_through_a_logger_provider_and_need_no_content_capture(openai_client: Any, given: bool) -> None:
    """A score's ``gen_ai.evaluation.result`` log event uses the LoggerProvider given (content capture
    off); without one, llmwatch creates no Logs export for it and the span form still carries it."""
    logs, spans = InMemoryLogRecordExporter(), InMemorySpanExporter()
    logger_provider = LoggerProvider(shutdown_on_exit=False)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    llmwatch.configure(
        tracer_provider=tracer_provider, logger_provider=logger_provider if given else None, instrument=False
    )
    try:
        llmwatch.instrument(openai_client)
        reply = openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        llmwatch.score(reply, "helpfulness", 1.0)
        (completion,) = [s for s in spans.get_finished_spans() if "gen_ai.operation.name" in (s.attributes or {})]
        (score_span,) = [s for s in spans.get_finished_spans() if s.name == "evaluate helpfulness"]
        assert [e.name for e in score_span.events] == ["gen_ai.evaluation.result"]
        records = logs.get_finished_logs()
        if given:
            (record,) = records
            assert record.log_record.event_name == "gen_ai.evaluation.result"
            assert record.log_record.span_id == completion.context.span_id
        else:
            assert records == ()
            assert llmwatch._core._runtime.CURRENT.logger_provider is None
    finally:
        llmwatch.shutdown()
