"""configure(): validation up front with messages that say how to fix it; env precedence; providers."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch import _config
from llmwatch._core import _runtime
from llmwatch._export._batch import DEFAULT_BATCH_SIZE, LlmwatchSpanProcessor


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


# --- the table -----------------------------------------------------------------------------------------------
def test_argument_rows_are_configures_parameters_and_the_settings_fields() -> None:
    parameters = list(inspect.signature(llmwatch.configure).parameters)
    assert [param.name for param in _config.ARGUMENTS] == parameters
    assert [field.name for field in dataclasses.fields(_config.Settings)] == parameters
    assert [field.default for field in dataclasses.fields(_config.Settings)] == [
        param.default for param in _config.ARGUMENTS
    ]


def test_configure_hands_every_argument_to_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[dict[str, Any]] = []

    def resolve(arguments: dict[str, Any]) -> Any:
        received.append(dict(arguments))
        raise llmwatch.ConfigurationError("stop here")

    monkeypatch.setattr(_config, "resolve", resolve)
    given = {name: object() for name in inspect.signature(llmwatch.configure).parameters}
    with pytest.raises(llmwatch.ConfigurationError, match="stop here"):
        llmwatch.configure(**given)
    assert received == [given]
    assert all(received[0][name] is value for name, value in given.items())


def test_env_reads_a_row_in_precedence_order_and_parses_it() -> None:
    both = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert _config.env("otlp_traces_protocol", both) == "grpc"
    assert _config.env("otlp_metrics_protocol", both) == "http/protobuf"  # falls back to the general one
    assert _config.env("otlp_traces_protocol", {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "  "}) == "http/protobuf"
    assert _config.env("export_queue_size", {}) == 2048  # the row's default
    assert _config.env("export_batch_size", {}, default=100) == 100  # the caller's default
    assert _config.env("export_batch_size", {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "7"}, default=100) == 7
    assert _config.env("disabled_models", {"LLMWATCH_DISABLED_MODELS": " a, b*,, "}) == {"a", "b*"}
    assert _config.env("file_path", {"LLMWATCH_FILE_PATH": "spans.jsonl"}) == "spans.jsonl"  # argument rows too
    with pytest.raises(llmwatch.ConfigurationError, match="OTEL_EXPORTER_OTLP_PROTOCOL='thrift' is not supported"):
        _config.env("otlp_traces_protocol", {"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"})


def test_env_keeps_empty_values_only_where_the_row_says(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _config.env("tiktoken_cache_dir", {"TIKTOKEN_CACHE_DIR": "", "DATA_GYM_CACHE_DIR": "/gym"}) == ""
    assert _config.env("tiktoken_cache_dir", {"DATA_GYM_CACHE_DIR": "/gym"}) == "/gym"
    assert _config.env("tiktoken_cache_dir", {}) is None
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "1234")
    assert _config.env("metric_export_interval_ms") == 1234  # no mapping: os.environ, read now


def test_env_refuses_rows_only_opentelemetry_reads() -> None:
    only_otel = [param.name for param in _config.PARAMS if _config.LLMWATCH not in param.read_by]
    assert "resource_attributes" in only_otel
    for name in only_otel:
        with pytest.raises(LookupError, match="llmwatch does not"):
            _config.env(name, {})


def test_processor_defaults_are_the_tables() -> None:
    defaults = inspect.signature(LlmwatchSpanProcessor.__init__).parameters
    for argument, row in (
        ("max_queue_size", "export_queue_size"),
        ("max_export_batch_size", "export_batch_size"),
        ("schedule_delay_ms", "export_schedule_delay_ms"),
        ("export_timeout_ms", "export_timeout_ms"),
    ):
        assert defaults[argument].default == _config.env(row, {}), argument
    assert _config.env("export_batch_size", {}) == DEFAULT_BATCH_SIZE


def test_kill_switches_in_the_environment_hold_from_import_on() -> None:
    code = "from llmwatch._policy._budget import RULES; print(sorted(RULES.switches.features), RULES.active)"
    environ = {key: value for key, value in os.environ.items() if not key.startswith("LLMWATCH_")}
    environ.update({"LLMWATCH_DISABLED_FEATURES": "search, chat", "PYTHONPATH": str(Path(__file__).parent.parent)})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['chat', 'search'] True"
