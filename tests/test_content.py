"""Content policy: built-in redactor, user hook, failing hook, truncation."""

from __future__ import annotations

import pytest

from llmwatch import _health
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
