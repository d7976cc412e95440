"""Content policy: built-in redactor, user hook, failing hook, truncation."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

import llmwatch
from llmwatch import _health, testing
from llmwatch._demo._server import FakeLLMServer
from llmwatch._policy._content import REDACTION_FAILED, ContentPolicy, builtin_redact, fingerprint, truncate


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("mail me at jane.doe@example.com", "jane.doe@example.com"),
        ("key sk-proj-abcdefghijklmnop1234", "sk-proj-abcdefghijklmnop1234"),
        ("anthropic sk-ant-api03-abcdefghijklmnopqrst", "sk-ant-api03-abcdefghijklmnopqrst"),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ("card 4111 1111 1111 1111 ok", "4111 1111 1111 1111"),
        ("call +1 415-555-0134 now", "415-555-0134"),
        ("aws AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP"),
    ],
)
def test_builtin_redactor_removes_secrets(text: str, secret: str) -> None:
    assert secret not in builtin_redact(text)


def test_redacted_mode_runs_builtin_then_hook() -> None:
    seen: list[str] = []

    def hook(value: str) -> str:
        seen.append(value)
        return value.upper()

    policy = ContentPolicy("redacted", hook, 1000)
    assert policy.text("to a@b.io") == "TO [REDACTED_EMAIL]"
    assert seen == ["to [REDACTED_EMAIL]"]


def test_failing_hook_drops_the_text_not_the_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_health, "raise_internal_errors", False)

    def hook(value: str) -> str:
        raise RuntimeError("boom")

    assert ContentPolicy(True, hook, 1000).text("secret") == REDACTION_FAILED
    assert _health.HEALTH.internal_errors.value == 1


def test_truncate_keeps_head_and_tail() -> None:
    text = "a" * 100 + "b" * 100
    out = truncate(text, 80)
    assert len(out) == 80
    assert out.startswith("a") and out.endswith("b")
    assert "[truncated 120 chars]" in out
    assert truncate("short", 80) == "short"


def test_fingerprint_is_stable_and_sensitive() -> None:
    assert fingerprint(["user", "hi"]) == fingerprint(["user", "hi"])
    assert fingerprint(["user", "hi"]) != fingerprint(["user", "hi!"])
    assert fingerprint(["user", "ab", "c"]) != fingerprint(["user", "a", "bc"])


def test_a_span_keeps_its_content_within_the_span_budget_and_valid_json() -> None:
    import json

    import llmwatch
    from llmwatch import testing

    limits = {"max_content_chars": 10_000, "max_span_content_chars": 4_000}
    with (
        testing.capture(capture_content=True, **limits) as cap,
        llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call,
    ):
        call.set_input([{"role": "user", "content": "q" * 9_000}, {"role": "user", "content": "r" * 9_000}])
        call.set_output("a" * 9_000, input_tokens=1, output_tokens=1)
    (span,) = cap.llm_spans()
    captured = {k: v for k, v in span.attributes.items() if k in ("gen_ai.input.messages", "gen_ai.output.messages")}
    assert sum(len(v) for v in captured.values()) <= 4_000
    inputs = json.loads(captured["gen_ai.input.messages"])  # still valid JSON: texts were cut, not the JSON
    assert "[truncated" in inputs[0]["parts"][0]["content"]
    assert json.loads(captured["gen_ai.output.messages"])[0]["parts"][0]["content"].startswith("aaa")


def test_tool_call_arguments_count_against_the_span_budget(server: FakeLLMServer) -> None:
    client = llmwatch.instrument(
        openai.OpenAI(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0)
    )
    arguments = json.dumps({"query": "z" * 9_000})
    messages = [
        {"role": "user", "content": "q" * 9_000},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r" * 9_000},
    ]
    limits = {"max_content_chars": 10_000, "max_span_content_chars": 4_000}
    with testing.capture(capture_content=True, **limits) as cap:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    (span,) = cap.llm_spans()
    content = {k: v for k, v in span.attributes.items() if k in ("gen_ai.input.messages", "gen_ai.output.messages")}
    assert sum(len(v) for v in content.values()) <= 4_000  # the arguments were cut like every other text
    inputs = json.loads(content["gen_ai.input.messages"])
    assert "[truncated" in inputs[1]["parts"][0]["arguments"]["query"]


def test_an_image_url_goes_through_the_redaction(server: FakeLLMServer) -> None:
    client = llmwatch.instrument(
        anthropic.Anthropic(api_key="sk-ant-test-0123456789", base_url=server.anthropic_base_url, max_retries=0)
    )
    url = "https://img.example/jane.doe@example.com/face.png"
    image = {"type": "image", "source": {"type": "url", "url": url}}
    with testing.capture(capture_content="redacted") as cap:
        client.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=10, messages=[{"role": "user", "content": [image]}]
        )
    (span,) = cap.llm_spans()
    (message,) = json.loads(span.attributes["gen_ai.input.messages"])
    assert message["parts"] == [
        {"type": "uri", "modality": "image", "uri": "https://img.example/[REDACTED_EMAIL]/face.png"}
    ]
