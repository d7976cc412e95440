"""No secret ever leaves the process through llmwatch, whatever the key, header or prompt looks like.

Hypothesis generates API keys (OpenAI and Anthropic shapes and random tokens), custom header values
and prompts. Each example makes real SDK calls (chat, streamed chat, Anthropic messages, a failing
call) to the loopback server with ``api_key=secret`` and ``default_headers`` holding more secrets.
Everything llmwatch emits is then searched byte for byte:

- the protobuf bodies (and headers) a real OTLP/HTTP receiver on loopback got, spans and metrics;
- the JSON Lines file written by a second span processor on the same provider;
- every log record of ``llmwatch`` and ``opentelemetry`` at DEBUG (the SDKs' own debug logs are theirs,
  not ours, and are not searched);
- ``llmwatch.stats()``.

Capture off: neither the secrets nor the prompt are found. ``True``: the prompt is there (capture
works) and the secrets are not. ``"redacted"``: e-mails, phone and card numbers and key shapes
embedded in the prompt are replaced by the built-in redactor's markers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from otlp_receiver import HttpReceiver

import llmwatch
import llmwatch.testing
from llmwatch import _health
from llmwatch._core import _runtime
from llmwatch._demo._server import FakeLLMServer
from llmwatch._export._batch import LlmwatchSpanProcessor
from llmwatch._export._file import JsonLinesSpanExporter

KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN_CHARS = KEY_CHARS + "-_"
HEADER_CHARS = KEY_CHARS + "-._~+/="
SEARCHED_LOGGERS = ("llmwatch", "opentelemetry")


def _chars(alphabet: str, low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=low, max_size=high)


api_keys = st.one_of(
    _chars(TOKEN_CHARS, 20, 48).map(lambda tail: f"sk-{tail}"),
    _chars(TOKEN_CHARS, 20, 48).map(lambda tail: f"sk-proj-{tail}"),
    _chars(TOKEN_CHARS, 40, 90).map(lambda tail: f"sk-ant-api03-{tail}"),
    _chars(KEY_CHARS, 24, 64),  # a random token, no recognisable shape
)
header_secrets = _chars(HEADER_CHARS, 20, 64).map(lambda value: f"hdr{value}")
markers = _chars("abcdefghijklmnopqrstuvwxyz", 14, 14).map(lambda tail: f"zq{tail}")
free_text = st.text(alphabet=st.characters(whitelist_categories=("L", "Zs", "P")), max_size=60)
emails = st.builds(
    "{}@{}.{}".format,
    _chars(KEY_CHARS + "._+", 1, 12).filter(lambda s: s[0].isalnum()),
    _chars(KEY_CHARS, 1, 10),
    _chars("abcdefghijklmnopqrstuvwxyz", 2, 5),
)
digits = "0123456789"
phones = st.builds(
    "+{} {} {} {}".format, _chars(digits, 1, 2), _chars(digits, 3, 3), _chars(digits, 3, 3), _chars(digits, 4, 4)
)
cards = st.lists(_chars(digits, 4, 4), min_size=4, max_size=4).map(" ".join)


class Sinks:
    """Where llmwatch's output goes in these tests, and everything that arrived there, as bytes."""

    def __init__(self, receiver: HttpReceiver, path: Path, caplog: pytest.LogCaptureFixture) -> None:
        self.receiver = receiver
        self.path = path
        self.caplog = caplog

    def everything(self) -> dict[str, bytes]:
        received = b"".join(
            request.message.SerializeToString() + json.dumps(dict(request.headers)).encode()
            for request in self.receiver.requests()
        )
        logs = "\n".join(  # formatted as a log handler writes them: message, arguments and traceback
            self.caplog.handler.format(record)
            for record in self.caplog.records
            if record.name.startswith(SEARCHED_LOGGERS)
        )
        return {
            "otlp": received,
            "file": self.path.read_bytes() if self.path.exists() else b"",
            "logs": logs.encode(),
            "stats": json.dumps(llmwatch.stats(), default=str).encode(),
        }

    def assert_nowhere(self, *needles: str) -> None:
        found = {
            where: needle for where, data in self.everything().items() for needle in needles if needle.encode() in data
        }
        assert not found, f"leaked: {found}"


@pytest.fixture()
def sinks_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    """``sinks_for(capture_content)``: configure llmwatch to export to a real OTLP receiver and a file."""
    caplog.set_level(logging.DEBUG)
    with HttpReceiver() as receiver:

        def configure(capture_content: bool | str) -> Sinks:
            llmwatch.configure(
                service_name="secrets-fuzz",
                exporter="otlp",
                endpoint=receiver.endpoint,
                protocol="http/protobuf",
                capture_content=capture_content,
                instrument=False,
            )
            path = tmp_path / "spans.jsonl"
            _runtime.CURRENT.tracer_provider.add_span_processor(  # type: ignore[attr-defined]
                LlmwatchSpanProcessor(JsonLinesSpanExporter(path))
            )
            return Sinks(receiver, path, caplog)

        try:
            yield configure
        finally:
            llmwatch.shutdown(timeout_s=5.0)


def _calls(server: FakeLLMServer, api_key: str, header_secret: str, prompt: str) -> None:
    headers = {"X-Custom-Auth": header_secret, "api-key": header_secret[::-1]}
    oai = llmwatch.instrument(
        openai.OpenAI(api_key=api_key, base_url=server.openai_base_url, max_retries=0, default_headers=headers)
    )
    claude = llmwatch.instrument(
        anthropic.Anthropic(api_key=api_key, base_url=server.anthropic_base_url, max_retries=0, default_headers=headers)
    )
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
    with llmwatch.attributes(user="fuzz", feature="secrets"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
        for _ in oai.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
            pass
        claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=[messages[1]])
        with pytest.raises(openai.RateLimitError):
            oai.chat.completions.create(
                model="gpt-4o-mini", messages=messages, extra_headers={"x-fake-scenario": "error-429"}
            )
    oai.close()
    claude.close()
    assert llmwatch.force_flush(timeout_s=10.0)


FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,  # nothing written into the checkout; a failure prints its example
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("capture_content", [False, True], ids=["capture-off", "capture-on"])
def test_keys_and_header_values_never_leave_the_process(
    capture_content: bool, server: FakeLLMServer, sinks_for: Any
) -> None:
    sinks = sinks_for(capture_content)
    seen: list[str] = []

    @FUZZ
    @given(api_key=api_keys, header_secret=header_secrets, marker=markers, text=free_text)
    def example(api_key: str, header_secret: str, marker: str, text: str) -> None:
        prompt = f"{marker} {text}"
        _calls(server, api_key, header_secret, prompt)
        seen.extend([api_key, header_secret, header_secret[::-1]])
        sinks.assert_nowhere(api_key, header_secret, header_secret[::-1])
        if capture_content:
            assert marker.encode() in sinks.everything()["file"]  # content capture works: the search means something
        else:
            sinks.assert_nowhere(marker)  # capture off: not even the prompt leaves

    example()
    llmwatch.shutdown(timeout_s=5.0)  # metrics are exported now: search those bytes too
    sinks.receiver.wait_for_requests(1, "metrics", timeout=5.0)
    assert sinks.receiver.requests("metrics"), "no metrics arrived: the search would miss them"
    assert len(sinks.receiver.spans()) >= 4, "no spans arrived: the search would miss them"
    sinks.assert_nowhere(*seen)


def test_redacted_mode_replaces_personal_data_and_key_shapes_in_prompts(server: FakeLLMServer, sinks_for: Any) -> None:
    sinks = sinks_for("redacted")

    @FUZZ
    @given(
        api_key=api_keys,
        header_secret=header_secrets,
        text=free_text,
        email=emails,
        phone=phones,
        card=cards,
        pasted_key=_chars(TOKEN_CHARS, 24, 40).map(lambda tail: f"sk-proj-{tail}"),
    )
    def example(
        api_key: str, header_secret: str, text: str, email: str, phone: str, card: str, pasted_key: str
    ) -> None:
        prompt = f"mail {email} or call {phone} pay with {card} key {pasted_key} {text}"
        _calls(server, api_key, header_secret, prompt)
        sinks.assert_nowhere(api_key, header_secret, email, phone, card, pasted_key)
        exported = sinks.everything()["file"]
        for marker in (b"[REDACTED_EMAIL]", b"[REDACTED_PHONE]", b"[REDACTED_CARD]", b"[REDACTED_API_KEY]"):
            assert marker in exported

    example()


def test_a_failing_redact_hook_never_leaks_the_text_through_logs_or_stats(
    server: FakeLLMServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_health, "raise_internal_errors", False)
    caplog.set_level(logging.DEBUG)
    private = "zqprivatepatientnote Jane Roe, diagnosis confidential"

    def hook(text: str) -> str:
        raise ValueError(f"cannot redact {text!r}")  # a plausible bug in a user's hook

    client = llmwatch.instrument(openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0))
    with llmwatch.testing.capture(capture_content=True, redact=hook) as captured:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": private}])
    (span,) = captured.llm_spans()
    assert private not in json.dumps(dict(span.attributes or {}))  # the span holds "[redaction failed]" only
    ours = [r for r in caplog.records if r.name.startswith("llmwatch")]
    logs = "\n".join(caplog.handler.format(r) for r in ours)  # message and traceback, as a log handler writes them
    assert "zqprivatepatientnote" not in logs
    assert "zqprivatepatientnote" not in json.dumps(llmwatch.stats(), default=str)
