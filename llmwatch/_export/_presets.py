"""Where spans and metrics go: ``configure(exporter=...)`` planned into exporters, checked up front.

The presets turn ``configure(exporter=..., endpoint=..., headers=..., protocol=...)`` into OTel's
own exporters, validated up front (:func:`plan_export` raises ``ConfigurationError`` saying how
to fix it), so a typo fails at ``configure()`` and never on a user's request:

- ``otlp`` (the default), ``datadog``, ``newrelic``: OTel's OTLP exporters (``_otlp.py`` says where
  each sends), rebuilt in a forked child (``_forksafe.py``); ``newrelic`` spans are cut to New
  Relic's attribute limits first (``_limits.py``).
- ``console``: OTel's console exporters for spans *and* metrics (stdout; for a first look).
- ``file``: JSON Lines (``_file.py``). No metrics (the report computes its figures from spans).
- ``none``: spans are made and counted, then discarded. No metrics.
- any ``SpanExporter`` instance: used as is (no metric exporter).

Spans reach the exporter through ``LlmwatchSpanProcessor`` (``_batch.py``); metrics through the
periodic reader of :func:`make_metric_reader`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llmwatch import _config
from llmwatch._config import ConfigurationError
from llmwatch._export._batch import DEFAULT_BATCH_SIZE
from llmwatch._export._file import SPAN_FILE_DEFAULT, JsonLinesSpanExporter
from llmwatch._export._forksafe import ForkSafeLogExporter, ForkSafeMetricExporter, ForkSafeSpanExporter
from llmwatch._export._limits import NEW_RELIC_LIMITS, AttributeLimitingSpanExporter
from llmwatch._export._otlp import (
    HTTP,
    TARGET_BUILDERS,
    OtlpTarget,
    check_otlp_environ,
    delta_temporality,
    log_exporter_factory,
    metric_exporter_factory,
    span_exporter_factory,
)

PRESETS: Final = ("otlp", "datadog", "newrelic", "console", "file", "none")


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """What ``configure()`` wires up: the span exporter, the metric exporter, and how to batch."""

    span_exporter: SpanExporter
    metric_exporter: MetricExporter | None  # None for "none", "file" and a user's SpanExporter
    metric_interval_ms: int  # OTEL_METRIC_EXPORT_INTERVAL, default 60000
    description: str  # for logs; never holds header values (they carry API keys)
    recommended_batch_size: int = DEFAULT_BATCH_SIZE
    # Content events (OTLP logs): built only when content goes to events. None: events go nowhere.
    log_exporter_factory: Callable[[], LogRecordExporter] | None = None


# --- planning ---------------------------------------------------------------------------------------
def plan_export(
    exporter: str | SpanExporter | None,
    *,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    protocol: str | None,
    file_path: str | None,
    environ: Mapping[str, str] | None = None,
) -> ExportPlan:
    """Validate the export settings and build the exporters; raises ConfigurationError.

    ``environ`` (default ``os.environ``) is what llmwatch itself reads, through the config table
    (validation, presets, protocol); OTel's exporters read the remaining ``OTEL_EXPORTER_OTLP_*``
    variables from ``os.environ`` themselves.
    """
    interval_ms: int = _config.env("metric_export_interval_ms", environ)
    if isinstance(exporter, SpanExporter):
        return ExportPlan(exporter, None, interval_ms, f"{type(exporter).__name__} (your exporter)")
    name = _preset_name(exporter, environ)
    if name == "none":
        return ExportPlan(NullSpanExporter(), None, interval_ms, "none (spans counted, not exported)")
    if name == "console":
        return _plan_console(interval_ms, environ)
    if name == "file":
        path = _check_file_path(file_path)
        return ExportPlan(JsonLinesSpanExporter(path), None, interval_ms, f"file {path} (JSON Lines)")
    check_otlp_environ(environ)
    target = TARGET_BUILDERS[name](endpoint, _check_headers(headers), protocol, environ)
    return _plan_otlp(target, interval_ms, environ)


def _preset_name(exporter: object, environ: Mapping[str, str] | None) -> str:
    if exporter is None:
        from_env: str = _config.env("traces_exporter", environ)
        if from_env and from_env not in PRESETS:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={from_env!r} is not supported by llmwatch: use one of "
                f"{', '.join(PRESETS)}, or pass configure(exporter=...)."
            )
        return from_env or "otlp"
    if isinstance(exporter, type) and issubclass(exporter, SpanExporter):
        raise ConfigurationError(
            f"exporter={exporter.__name__} is a class: pass an instance, e.g. exporter={exporter.__name__}(...)."
        )
    name = exporter.strip().lower() if isinstance(exporter, str) else None
    if name not in PRESETS:
        raise ConfigurationError(
            f"exporter={exporter!r} is not known: use one of {', '.join(repr(p) for p in PRESETS)}, "
            "or pass a SpanExporter instance."
        )
    return name


def _plan_console(interval_ms: int, environ: Mapping[str, str] | None) -> ExportPlan:
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    metrics = None if _metrics_off(environ) else ConsoleMetricExporter()
    return ExportPlan(
        ConsoleSpanExporter(), metrics, interval_ms, "console (stdout)", DEFAULT_BATCH_SIZE, ConsoleLogRecordExporter
    )


def _metrics_off(environ: Mapping[str, str] | None) -> bool:
    return bool(_config.env("metrics_exporter", environ) == "none")


def _check_file_path(file_path: str | None) -> Path:
    path = Path(file_path or SPAN_FILE_DEFAULT).expanduser().absolute()
    if path.is_dir():
        raise ConfigurationError(
            f"file_path={str(path)!r} is a directory: give a file name, e.g. {path / SPAN_FILE_DEFAULT}."
        )
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"file_path={str(path)!r}: directory {str(path.parent)!r} does not exist; create it or choose another path."
        )
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigurationError(f"file_path={str(path)!r} is not writable by this process.")
    return path


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigurationError("headers must map header names (str) to values (str).")
        if not key.strip() or any(ch in key for ch in " :\r\n") or "\r" in value or "\n" in value:
            raise ConfigurationError(f"headers: {key!r} is not a valid header (no spaces, colons or line breaks).")
        # gRPC metadata keys must be lower-case; HTTP header names are case-insensitive.
        checked[key.strip().lower()] = value.strip()
    return checked


def _plan_otlp(target: OtlpTarget, interval_ms: int, environ: Mapping[str, str] | None) -> ExportPlan:
    temporality = delta_temporality() if target.delta else None
    span_factory = span_exporter_factory(target, environ)
    span_exporter: SpanExporter = ForkSafeSpanExporter(span_factory)
    if target.limit_attributes:
        span_exporter = AttributeLimitingSpanExporter(span_exporter, **NEW_RELIC_LIMITS)
    metric_exporter: MetricExporter | None = None
    if not _metrics_off(environ):
        metric_factory = metric_exporter_factory(target, temporality, environ)
        metric_exporter = ForkSafeMetricExporter(metric_factory)
    log_factory = log_exporter_factory(target, environ)
    return ExportPlan(
        span_exporter,
        metric_exporter,
        interval_ms,
        _describe(target, environ),
        target.batch_size,
        lambda: ForkSafeLogExporter(log_factory),
    )


def _describe(target: OtlpTarget, environ: Mapping[str, str] | None) -> str:
    signal = target.traces
    if signal.base is not None:
        where = signal.base + "/v1/traces" if signal.protocol == HTTP else signal.base
    else:
        where = _env_traces_url(signal.protocol, environ)
    extras = [" gzip"] if target.gzip else []
    if signal.protocol != HTTP:
        extras.append(" (TLS)" if _grpc_uses_tls(where, environ) else " (plaintext)")
    if target.headers:
        extras.append(f" headers: {', '.join(sorted(target.headers))}")  # names only: values are secrets
    return f"{target.preset} {signal.protocol} -> {_without_credentials(where)}{''.join(extras)}"


def _without_credentials(url: str) -> str:
    """A URL fit for a log line: no ``user:password@`` and no query string (keys hide in both)."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    if not parts.username and not parts.password and not parts.query:
        return url
    netloc = parts.netloc
    if parts.username or parts.password:
        netloc = f"***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    return f"{scheme}{netloc}{parts.path}" + ("?***" if parts.query else "")


def _grpc_uses_tls(endpoint: str, environ: Mapping[str, str] | None) -> bool:
    # OTel's rule: the scheme decides; without one, OTEL_EXPORTER_OTLP_[TRACES_]INSECURE (default false).
    if endpoint.startswith(("http://", "https://")):
        return endpoint.startswith("https://")
    return not _config.env("otlp_traces_insecure", environ)


def _env_traces_url(protocol: str, environ: Mapping[str, str] | None) -> str:
    specific: str = _config.env("otlp_traces_endpoint", environ)
    general: str = _config.env("otlp_endpoint", environ).rstrip("/")
    if specific:
        return specific
    if protocol == HTTP:
        return f"{general or 'http://localhost:4318'}/v1/traces"
    return general or "http://localhost:4317"


def make_metric_reader(plan: ExportPlan) -> MetricReader | None:
    """A periodic reader for the plan's metric exporter, or None when metrics go nowhere."""
    if plan.metric_exporter is None:
        return None
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return PeriodicExportingMetricReader(plan.metric_exporter, export_interval_millis=plan.metric_interval_ms)


class NullSpanExporter(SpanExporter):
    """exporter='none': spans are made (and counted) but go nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS
