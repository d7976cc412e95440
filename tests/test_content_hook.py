"""configure(content_hook=fn): content handed off the caller's thread; references in place of it (issue 15)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import llmwatch
from llmwatch import _config, _health, testing
from llmwatch._core._content_hook import ContentHook, ContentRecord

EVENT = "gen_ai.client.inference.operation.details"


class Uploader:
    """A hook that 'uploads' to a dict, with references built from the span's ids."""

    def __init__(self) -> None:
        self.records: list[ContentRecord] = []
        self.threads: set[int] = set()

    def references(self, span_context: Any) -> dict[str, str]:
        base = f"s3://prompts/{span_context.trace_id:032x}/{span_context.span_id:016x}"
        return {"gen_ai.input.messages_ref": f"{base}/in.json", "gen_ai.output.messages_ref": f"{base}/out.json"}

    def __call__(self, record: ContentRecord) -> None:
        self.threads.add(threading.get_ident())
        self.records.append(record)


TOOL = {"type": "function", "function": {"name": "lookup", "description": "find a fact", "parameters": {}}}


def _chat(client: Any) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "secret plan"}],
        tools=[TOOL],
    )


def test_references_go_on_the_span_instead_of_the_content(openai_client: Any) -> None:
    hook = Uploader()
    with testing.capture(capture_content=True, content_hook=hook) as captured:
        _chat(openai_client)
    (span,) = captured.llm_spans()
    attrs = dict(span.attributes or {})
    ids = f"{span.context.trace_id:032x}/{span.context.span_id:016x}"
    assert attrs["gen_ai.input.messages_ref"] == f"s3://prompts/{ids}/in.json"
    assert attrs["gen_ai.output.messages_ref"] == f"s3://prompts/{ids}/out.json"
    assert "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs
    assert "gen_ai.tool.definitions" in attrs  # no reference for it: it stays
    (record,) = hook.records
    assert hook.threads and threading.get_ident() not in hook.threads  # off the caller's thread
    assert record.span_context.span_id == span.context.span_id
    system, user = record.input_messages  # structured, complete (OpenAI's system message in the history)
    assert system["role"] == "system" and user["parts"][0]["content"] == "secret plan"
    assert record.output_messages[0]["role"] == "assistant"
    assert record.references == {k: v for k, v in attrs.items() if k.endswith("_ref")}


def test_references_replace_the_content_in_the_event_too(openai_client: Any) -> None:
    hook = Uploader()
    with testing.capture(capture_content="SPAN_AND_EVENT", content_hook=hook) as captured:
        _chat(openai_client)
    (record,) = captured.events(EVENT)
    event = dict(record.log_record.attributes or {})
    assert event["gen_ai.input.messages_ref"].endswith("/in.json")
    assert "gen_ai.input.messages" not in event and "gen_ai.output.messages" not in event
    assert event["gen_ai.tool.definitions"][0]["name"] == "lookup"


def test_a_plain_function_gets_a_copy_and_the_content_stays(openai_client: Any) -> None:
    seen: list[ContentRecord] = []
    with testing.capture(capture_content="redacted", content_hook=seen.append) as captured:
        openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "mail jane.doe@example.com"}]
        )
    (span,) = captured.llm_spans()
    assert "gen_ai.input.messages" in (span.attributes or {})
    (record,) = seen
    assert record.references == {}
    assert record.input_messages[0]["parts"][0]["content"] == "mail [REDACTED_EMAIL]"  # the policy applies


def test_a_failing_hook_is_counted_never_raised(openai_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_health, "raise_internal_errors", False)

    class Broken:
        def references(self, span_context: Any) -> dict[str, str]:
            raise RuntimeError("no refs")

        def __call__(self, record: ContentRecord) -> None:
            raise RuntimeError("no upload")

    with testing.capture(capture_content=True, content_hook=Broken()) as captured:
        _chat(openai_client)
    (span,) = captured.llm_spans()
    assert "gen_ai.input.messages" in (span.attributes or {})  # no references: the content stays
    assert _health.HEALTH.internal_errors.value == 2


def test_a_full_queue_drops_and_counts() -> None:
    release = threading.Event()
    hook = ContentHook(lambda record: release.wait(10), max_queue=2)
    for _ in range(6):
        hook.submit(ContentRecord(None, {}, {}))
    try:
        assert llmwatch.stats()["content_hook_dropped"] >= 3
    finally:
        release.set()
        assert hook.force_flush(5000)
        hook.shutdown()


def test_configure_flushes_the_hook_and_checks_it(openai_client: Any) -> None:
    with pytest.raises(llmwatch.ConfigurationError, match="function"):
        _config.resolve({"content_hook": "s3://bucket", "capture_content": True})
    with pytest.raises(llmwatch.ConfigurationError, match="capture_content"):
        _config.resolve({"content_hook": print})
    hook = Uploader()
    llmwatch.configure(exporter="none", capture_content=True, content_hook=hook, instrument=False)
    try:
        llmwatch.instrument(openai_client)
        _chat(openai_client)
        assert llmwatch.force_flush(timeout_s=5)
        assert len(hook.records) == 1
    finally:
        llmwatch.shutdown()


def test_testing_capture_can_turn_content_off_under_a_configured_hook() -> None:
    llmwatch.configure(exporter="none", capture_content=True, content_hook=print, instrument=False)
    try:
        with testing.capture(capture_content=False) as captured:
            pass
        assert captured.events() == []
    finally:
        llmwatch.shutdown()
