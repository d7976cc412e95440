"""configure(): validation up front with messages that say how to fix it; env precedence; providers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch import _config
from llmwatch._core import _runtime


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capture_content": "sometimes"}, "redacted"),
        ({"sample_rate": 1.5}, "0.0 to 1.0"),
        ({"sample_rate": "x"}, "not a number"),
        ({"max_content_chars": 0}, "above 0"),
        ({"redact": "no"}, "function"),
        ({"prices": {"m": {"input": 1}}}, "'input' and 'output'"),
        ({"prices": {"m": {"input": 1, "output": -2}}}, "non-negative"),
        ({"prices": {"m": {"input": 1, "output": 2, "cached": 1}}}, "unknown keys"),
        ({"headers": {"a": 1}}, "string values"),
        ({"service_name": ""}, "non-empty"),
    ],
)
def test_bad_arguments_fail_fast_with_a_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(llmwatch.ConfigurationError, match=message):
        _config.resolve(kwargs)


def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMWATCH_SAMPLE_RATE", "2")
    with pytest.raises(llmwatch.ConfigurationError, match="LLMWATCH_SAMPLE_RATE"):
        _config.resolve({})


def test_argument_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _config.resolve({}).capture_content is False
    monkeypatch.setenv("LLMWATCH_CAPTURE_CONTENT", "redacted")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    settings = _config.resolve({})
    assert settings.capture_content == "redacted"
    assert settings.service_name == "from-env"
    assert _config.resolve({"capture_content": False, "service_name": "arg"}).capture_content is False
    assert _config.resolve({"service_name": "arg"}).service_name == "arg"


def test_price_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"my-model": {"input": 1, "output": 2}}))
    assert _config.resolve({"prices": str(path)}).prices == {"my-model": {"input": 1.0, "output": 2.0}}
    path.write_text("{nope")
    with pytest.raises(llmwatch.ConfigurationError, match="not valid JSON"):
        _config.resolve({"prices": str(path)})
    with pytest.raises(llmwatch.ConfigurationError, match="cannot read"):
        _config.resolve({"prices": str(tmp_path / "missing.json")})


def test_user_tracer_provider_is_used_and_never_made_global() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    llmwatch.configure(tracer_provider=provider, exporter="none", instrument=False)
    assert _runtime.CURRENT.tracer_provider is provider
    from opentelemetry import trace

    assert trace.get_tracer_provider() is not provider

    @llmwatch.observe
    def work() -> int:
        return 1

    assert work() == 1
    assert [s.name for s in exporter.get_finished_spans()] == [
        "test_user_tracer_provider_is_used_and_never_made_global.<locals>.work"
    ]
    llmwatch.shutdown(timeout_s=2)


def test_reconfigure_and_configure_after_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    llmwatch.configure(exporter="file", file_path=str(path), instrument=False)
    first = _runtime.CURRENT
    llmwatch.configure(exporter="file", file_path=str(path), instrument=False)
    assert _runtime.CURRENT is not first
    assert first.owned == []  # the first configuration's providers were shut down
    llmwatch.shutdown(timeout_s=2)
    llmwatch.configure(exporter="none", instrument=False)

    @llmwatch.observe(name="after")
    def after() -> None:
        return None

    after()
    assert llmwatch.force_flush(timeout_s=2)
    llmwatch.shutdown(timeout_s=2)


def test_failed_configure_keeps_previous_runtime() -> None:
    before = _runtime.CURRENT
    with pytest.raises(llmwatch.ConfigurationError):
        llmwatch.configure(exporter="carrier-pigeon", instrument=False)
    assert _runtime.CURRENT is before


def test_stats_shape() -> None:
    stats = llmwatch.stats()
    for key in (
        "spans_started",
        "spans_ended",
        "spans_dropped",
        "exports_succeeded",
        "exports_failed",
        "last_export_error",
        "internal_errors",
        "budgets",
        "encodings_ready",
        "prices",
    ):
        assert key in stats
    assert {"source", "version", "loaded"} <= set(stats["prices"])
