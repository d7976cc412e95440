"""OTel's content-capture values start the app and resolve to what and where (issue 15).

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` takes OpenTelemetry's ``NO_CONTENT |
SPAN_ONLY | EVENT_ONLY | SPAN_AND_EVENT`` (util-genai's ContentCapturingMode) as well as ``true/false``;
``LLMWATCH_CAPTURE_CONTENT`` and ``configure(capture_content=)`` still win, whole.
"""

from __future__ import annotations

import pytest

import llmwatch
from llmwatch import _config

OTEL_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (OTEL_VAR, "LLMWATCH_CAPTURE_CONTENT", "LLMWATCH_CONTENT_DESTINATION"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("value", "mode", "destination"),
    [
        ("NO_CONTENT", False, "span"),
        ("SPAN_ONLY", True, "span"),
        ("EVENT_ONLY", True, "event"),
        ("SPAN_AND_EVENT", True, "span_and_event"),
        ("span_only", True, "span"),
        ("Event_Only", True, "event"),
        (" span_and_event ", True, "span_and_event"),
        ("true", True, "span"),
        ("TRUE", True, "span"),
        ("false", False, "span"),
        ("False", False, "span"),
    ],
)
def test_every_otel_value_resolves(monkeypatch: pytest.MonkeyPatch, value: str, mode: object, destination: str) -> None:
    monkeypatch.setenv(OTEL_VAR, value)
    settings = _config.resolve({})
    assert settings.capture_content is mode
    assert settings.content_destination == destination


@pytest.mark.parametrize("value", ["NO_CONTENT", "SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT", "true", "false"])
def test_every_otel_value_starts_the_app(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(OTEL_VAR, value)
    try:
        llmwatch.configure(exporter="none", instrument=False)
    finally:
        llmwatch.shutdown()


@pytest.mark.parametrize(
    ("argument", "mode", "destination"),
    [
        ("SPAN_ONLY", True, "span"),
        ("event_only", True, "event"),
        ("SPAN_AND_EVENT", True, "span_and_event"),
        ("NO_CONTENT", False, "span"),
        (True, True, "span"),
        ("redacted", "redacted", "span"),
    ],
)
def test_configure_takes_otel_strings(argument: object, mode: object, destination: str) -> None:
    settings = _config.resolve({"capture_content": argument})
    assert settings.capture_content == mode
    assert settings.content_destination == destination


def test_llmwatch_variable_wins_whole_over_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OTEL_VAR, "EVENT_ONLY")
    monkeypatch.setenv("LLMWATCH_CAPTURE_CONTENT", "redacted")
    settings = _config.resolve({})
    assert (settings.capture_content, settings.content_destination) == ("redacted", "span")
    monkeypatch.setenv("LLMWATCH_CAPTURE_CONTENT", "false")
    assert _config.resolve({}).capture_content is False


def test_argument_wins_over_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OTEL_VAR, "SPAN_AND_EVENT")
    monkeypatch.setenv("LLMWATCH_CAPTURE_CONTENT", "true")
    settings = _config.resolve({"capture_content": "EVENT_ONLY"})
    assert (settings.capture_content, settings.content_destination) == (True, "event")
    assert _config.resolve({"capture_content": False}).capture_content is False


def test_destination_says_where_over_the_capture_value(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _config.resolve({"capture_content": "redacted", "content_destination": "event"})
    assert (settings.capture_content, settings.content_destination) == ("redacted", "event")
    monkeypatch.setenv("LLMWATCH_CONTENT_DESTINATION", "both")
    settings = _config.resolve({"capture_content": "SPAN_ONLY"})
    assert settings.content_destination == "span_and_event"


@pytest.mark.parametrize("value", ["SPAN", "events_only", "sometimes", "2"])
def test_garbage_fails_with_the_values_to_use(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(OTEL_VAR, value)
    with pytest.raises(llmwatch.ConfigurationError, match=rf"{OTEL_VAR}=.*SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT"):
        _config.resolve({})
    with pytest.raises(llmwatch.ConfigurationError, match=r"capture_content=.*NO_CONTENT"):
        _config.resolve({"capture_content": value})


def test_bad_destination_fails() -> None:
    with pytest.raises(llmwatch.ConfigurationError, match=r"content_destination='logs'.*span_and_event"):
        _config.resolve({"content_destination": "logs"})


def test_logger_provider_must_be_one() -> None:
    with pytest.raises(llmwatch.ConfigurationError, match="LoggerProvider"):
        _config.resolve({"logger_provider": object()})
