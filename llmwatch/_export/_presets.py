"""Where spans and metrics go: exporter presets over OTel's OTLP exporters, and our batch processor.

Why this module exists
----------------------
Every span llmwatch makes ends on the caller's request thread. OTel's own ``BatchSpanProcessor`` is
close to what we need, but when its queue is full it silently evicts the *oldest* span, counts
nothing, and its ``export_timeout`` is not enforced, so a stalled collector can hold ``shutdown()``
for as long as the exporter likes. :class:`LlmwatchSpanProcessor` keeps the good part (bounded
queue, one daemon worker, fork re-initialisation, instrumentation suppressed while exporting) and
adds what an always-on library owes its host: ``on_end`` is O(1) and never blocks or does I/O; a
full queue drops the *new* span and counts it; every failed batch is counted; each export call has a
deadline; ``force_flush``/``shutdown`` return within their timeouts even if the exporter never
does. Everything shows up in ``llmwatch.stats()``.

The presets turn ``configure(exporter=..., endpoint=..., headers=..., protocol=...)`` into OTel's
own OTLP exporters, validated up front (:func:`plan_export` raises ``ConfigurationError`` saying how
to fix it), so a typo fails at ``configure()`` and never on a user's request:

- ``otlp`` (the default): OTel's OTLP exporters, honouring the standard ``OTEL_EXPORTER_OTLP_*``
  variables (ENDPOINT, TRACES_/METRICS_ENDPOINT, HEADERS, PROTOCOL (default ``http/protobuf``),
  COMPRESSION, TIMEOUT (seconds, as OTel Python reads it), CERTIFICATE, INSECURE, ...): we pass only
  what the caller gave explicitly and let OTel read the rest. ``endpoint=`` is a base URL like
  ``OTEL_EXPORTER_OTLP_ENDPOINT``: HTTP appends ``/v1/traces`` and ``/v1/metrics``; gRPC takes
  ``host:port`` (``http://`` = plaintext, ``https://`` = TLS, no scheme = ``OTEL_EXPORTER_OTLP_INSECURE``,
  default TLS, as the spec says). ``OTEL_TRACES_EXPORTER`` naming a preset is honoured when
  ``exporter`` is not given; ``OTEL_METRICS_EXPORTER=none`` turns metrics off.
- ``datadog``: the Datadog Agent's OTLP intake, ``DD_AGENT_HOST`` or localhost, port 4318 (HTTP) or
  4317 (gRPC). With an ``endpoint`` and ``DD_API_KEY`` (agentless LLM Observability intake) it adds
  the ``dd-api-key`` and ``dd-otlp-source: llmobs`` headers. Delta temporality for counters and
  histograms; batches of 100 spans (the intake refuses payloads over 3.2 MB).
- ``newrelic``: OTLP to ``https://otlp.nr-data.net`` (``https://otlp.eu01.nr-data.net`` with
  ``NEW_RELIC_REGION=eu``), ``api-key`` from ``NEW_RELIC_LICENSE_KEY`` (or ``headers=``, or
  ``OTEL_EXPORTER_OTLP_HEADERS``), gzip, delta temporality, batches of 100 spans (payload < 1 MB),
  and attributes cut to New Relic's limits before export (values 4095 chars, keeping head + tail
  and a hash of the whole; names 255 chars; arrays 64 items), because New Relic drops what is longer.
- ``console``: OTel's console exporters for spans *and* metrics (stdout; for a first look).
- ``file``: JSON Lines, below. No metrics (the report computes its figures from spans).
- ``none``: spans are made and counted, then discarded. No metrics.
- any ``SpanExporter`` instance: used as is (no metric exporter).

The JSON Lines file (``exporter="file"``, read by ``llmwatch report``)
-----------------------------------------------------------------------
One finished span per line, UTF-8, appended; created private (mode 0600) since it may hold prompts
and user ids. When the file reaches ``max_bytes`` (50 MiB) it is renamed to ``<file>.1`` (the
previous ``.1`` is replaced) and a new file is started. Each line is one JSON object::

    {"name": "chat gpt-4o-mini", "kind": "CLIENT",
     "trace_id": "<32 lower-case hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex>" | null,
     "start_time_unix_nano": 1718000000000000000, "end_time_unix_nano": 1718000000250000000,
     "status": {"code": "UNSET" | "OK" | "ERROR", "description": null | "..."},
     "attributes": {"gen_ai.operation.name": "chat", "llmwatch.cost.usd": 0.00042, ...},
     "events": [{"name": "...", "time_unix_nano": 1718000000100000000, "attributes": {...}}],
     "links": [{"trace_id": "<32 hex>", "span_id": "<16 hex>", "attributes": {...}}],
     "resource": {"service.name": "svc", ...},
     "scope": {"name": "llmwatch", "version": "0.1.0" | null}}

Attribute values are JSON strings, numbers, booleans or arrays of one of those; non-finite floats
are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (as protobuf's JSON mapping does).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricReader, MetricsData
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link
from opentelemetry.util.re import parse_env_headers
from opentelemetry.util.types import Attributes, AttributeValue

from llmwatch._config import ConfigurationError
from llmwatch._export import _process_exit
from llmwatch._health import HEALTH

logger = logging.getLogger("llmwatch")

SPAN_FILE_DEFAULT = "llmwatch-spans.jsonl"
PRESETS: Final = ("otlp", "datadog", "newrelic", "console", "file", "none")
PROTOCOLS: Final = ("grpc", "http/protobuf")
DEFAULT_BATCH_SIZE = 512
# Datadog refuses payloads over 3.2 MB and New Relic over 1 MB: a few KB per span, 100 spans a batch.
SMALL_BATCH_SIZE = 100
NEW_RELIC_LIMITS = {"max_value_chars": 4095, "max_name_chars": 255, "max_array_items": 64}
FILE_ROTATE_BYTES = 50 * 1024 * 1024

_HTTP = "http/protobuf"
_SIGNAL_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """What ``configure()`` wires up: the span exporter, the metric exporter, and how to batch."""

    span_exporter: SpanExporter
    metric_exporter: MetricExporter | None  # None for "none", "file" and a user's SpanExporter
    metric_interval_ms: int  # OTEL_METRIC_EXPORT_INTERVAL, default 60000
    description: str  # for logs; never holds header values (they carry API keys)
    recommended_batch_size: int = DEFAULT_BATCH_SIZE


# --- planning ---------------------------------------------------------------------------------------
def plan_export(
    exporter: str | SpanExporter | None,
    *,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    protocol: str | None,
    file_path: str | None,
    environ: Mapping[str, str] = os.environ,
) -> ExportPlan:
    """Validate the export settings and build the exporters; raises ConfigurationError.

    ``environ`` is what llmwatch itself reads (validation, presets, protocol); OTel's exporters read
    the remaining ``OTEL_EXPORTER_OTLP_*`` variables from ``os.environ`` themselves.
    """
    interval_ms = _positive_int_env(environ, "OTEL_METRIC_EXPORT_INTERVAL", 60000)
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
    _check_otlp_environ(environ)
    target = _TARGET_BUILDERS[name](endpoint, _check_headers(headers), protocol, environ)
    return _plan_otlp(target, interval_ms, environ)


def _preset_name(exporter: object, environ: Mapping[str, str]) -> str:
    if exporter is None:
        from_env = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
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


def _plan_console(interval_ms: int, environ: Mapping[str, str]) -> ExportPlan:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    metrics = None if _metrics_off(environ) else ConsoleMetricExporter()
    return ExportPlan(ConsoleSpanExporter(), metrics, interval_ms, "console (stdout)")


def _metrics_off(environ: Mapping[str, str]) -> bool:
    return environ.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none"


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


# --- OTLP presets -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Signal:
    """One signal's OTLP destination; ``base`` None lets OTel resolve it from the environment."""

    protocol: str
    base: str | None


@dataclasses.dataclass(frozen=True)
class _OtlpTarget:
    preset: str
    traces: _Signal
    metrics: _Signal
    headers: dict[str, str]  # explicit and preset headers only; OTel adds OTEL_EXPORTER_OTLP_HEADERS
    gzip: bool  # forced by the preset; otherwise OTEL_EXPORTER_OTLP_COMPRESSION applies
    delta: bool
    batch_size: int = DEFAULT_BATCH_SIZE
    limit_attributes: bool = False


def _otlp_target(
    endpoint: str | None, headers: dict[str, str], protocol: str | None, environ: Mapping[str, str]
) -> _OtlpTarget:
    traces, metrics = _protocols(protocol, environ)
    if endpoint is not None:
        endpoint = _check_endpoint(endpoint, traces, "endpoint", base=True)
    else:
        _check_env_endpoints(traces, metrics, environ)
    return _OtlpTarget("otlp", _Signal(traces, endpoint), _Signal(metrics, endpoint), headers, False, False)


def _datadog_target(
    endpoint: str | None, headers: dict[str, str], protocol: str | None, environ: Mapping[str, str]
) -> _OtlpTarget:
    traces, metrics = _protocols(protocol, environ)
    api_key = environ.get("DD_API_KEY", "").strip()
    if endpoint is not None:
        endpoint = _check_endpoint(endpoint, traces, "endpoint", base=True)
        if api_key:  # agentless: Datadog's LLM Observability OTLP intake
            headers.setdefault("dd-api-key", api_key)
            headers.setdefault("dd-otlp-source", "llmobs")
        signals = (_Signal(traces, endpoint), _Signal(metrics, endpoint))
    else:
        host = environ.get("DD_AGENT_HOST", "").strip() or "localhost"
        signals = (_Signal(traces, _agent_url(host, traces)), _Signal(metrics, _agent_url(host, metrics)))
    return _OtlpTarget("datadog", *signals, headers, False, True, SMALL_BATCH_SIZE)


def _agent_url(host: str, protocol: str) -> str:
    url = f"http://{host}:{4318 if protocol == _HTTP else 4317}"
    return _check_endpoint(url, protocol, f"DD_AGENT_HOST={host!r}", base=True)


def _newrelic_target(
    endpoint: str | None, headers: dict[str, str], protocol: str | None, environ: Mapping[str, str]
) -> _OtlpTarget:
    traces, metrics = _protocols(protocol, environ)
    license_key = environ.get("NEW_RELIC_LICENSE_KEY", "").strip()
    if "api-key" not in headers and license_key:
        headers["api-key"] = license_key
    if "api-key" not in headers and "api-key" not in _env_headers(environ, "TRACES"):
        raise ConfigurationError(
            "exporter='newrelic' needs your New Relic license key: set NEW_RELIC_LICENSE_KEY, "
            "or pass headers={'api-key': '...'}."
        )
    if endpoint is not None:
        base = _check_endpoint(endpoint, traces, "endpoint", base=True)
        signals = (_Signal(traces, base), _Signal(metrics, base))
    else:
        host = _newrelic_host(environ)
        signals = (_Signal(traces, _newrelic_url(host, traces)), _Signal(metrics, _newrelic_url(host, metrics)))
    return _OtlpTarget("newrelic", *signals, headers, True, True, SMALL_BATCH_SIZE, limit_attributes=True)


def _newrelic_host(environ: Mapping[str, str]) -> str:
    region = environ.get("NEW_RELIC_REGION", "").strip().lower()
    if region in ("", "us"):
        return "otlp.nr-data.net"
    if region == "eu":
        return "otlp.eu01.nr-data.net"
    raise ConfigurationError(
        f"NEW_RELIC_REGION={region!r} is not known: use 'us' (the default) or 'eu', or pass endpoint=."
    )


def _newrelic_url(host: str, protocol: str) -> str:
    # New Relic serves OTLP/HTTP on 443 and OTLP/gRPC on 4317, both over TLS.
    return f"https://{host}" if protocol == _HTTP else f"https://{host}:4317"


_TargetBuilder = Callable[[str | None, dict[str, str], str | None, Mapping[str, str]], _OtlpTarget]
_TARGET_BUILDERS: Final[dict[str, _TargetBuilder]] = {
    "otlp": _otlp_target,
    "datadog": _datadog_target,
    "newrelic": _newrelic_target,
}


def _protocols(protocol: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """The (traces, metrics) protocols: protocol= for both, else the per-signal then general env var."""
    if protocol is not None:
        checked = _check_protocol(protocol, "protocol")
        return checked, checked
    return _env_protocol(environ, "TRACES"), _env_protocol(environ, "METRICS")


def _env_protocol(environ: Mapping[str, str], signal: str) -> str:
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = environ.get(name, "").strip()
        if value:
            return _check_protocol(value, name)
    return _HTTP  # the spec's default


def _check_protocol(value: str, source: str) -> str:
    normalized = value.strip().lower()
    if normalized in PROTOCOLS:
        return normalized
    hint = " (OTel Python has no http/json exporter)" if normalized == "http/json" else ""
    raise ConfigurationError(f"{source}={value!r} is not supported{hint}: use 'grpc' or 'http/protobuf'.")


def _check_endpoint(value: str, protocol: str, source: str, *, base: bool) -> str:
    """Check an OTLP endpoint; returns it without a trailing slash.

    HTTP needs a scheme; a base URL must not already end in a signal path (we append it). gRPC takes
    ``host:port`` with an optional ``http://`` or ``https://``, and no path.
    """
    text = value.strip().rstrip("/")
    example = "http://localhost:4318" if protocol == _HTTP else "localhost:4317 or http://localhost:4317"
    has_scheme = "://" in text
    if protocol == _HTTP and not has_scheme:
        raise ConfigurationError(f"{source}={value!r} needs a scheme for {protocol}: e.g. {example}.")
    parts = urlsplit(text if has_scheme else f"//{text}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise ConfigurationError(f"{source}={value!r} has an invalid port: e.g. {example}.") from None
    if (has_scheme and parts.scheme not in ("http", "https")) or not parts.hostname:
        raise ConfigurationError(f"{source}={value!r} is malformed: use a URL like {example}.")
    if protocol != _HTTP and parts.path:
        raise ConfigurationError(f"{source}={value!r}: a gRPC endpoint is host:port without a path, e.g. {example}.")
    if base and parts.path.endswith(_SIGNAL_PATHS):
        raise ConfigurationError(
            f"{source}={value!r} is a base URL: llmwatch appends /v1/traces and /v1/metrics, so drop "
            f"{parts.path[parts.path.rindex('/v1/') :]!r} (or set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to the full URL)."
        )
    return text


def _check_env_endpoints(traces: str, metrics: str, environ: Mapping[str, str]) -> None:
    general = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    for signal, protocol in (("TRACES", traces), ("METRICS", metrics)):
        name = f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"
        specific = environ.get(name, "").strip()
        if specific:
            # A signal endpoint is the full URL (HTTP) or host:port (gRPC): used as given.
            _check_endpoint(specific, protocol, name, base=False)
        elif general:
            _check_endpoint(general, protocol, "OTEL_EXPORTER_OTLP_ENDPOINT", base=True)


def _check_otlp_environ(environ: Mapping[str, str]) -> None:
    """Fail at configure() on OTLP variables OTel would otherwise reject at export time (or crash on)."""
    for signal in ("", "TRACES_", "METRICS_"):
        name = f"OTEL_EXPORTER_OTLP_{signal}TIMEOUT"
        raw = environ.get(name, "").strip()
        if raw and not _is_positive_number(raw):
            raise ConfigurationError(f"{name}={raw!r} must be a positive number of seconds (OTel Python's unit).")
        name = f"OTEL_EXPORTER_OTLP_{signal}COMPRESSION"
        raw = environ.get(name, "").strip().lower()
        if raw and raw not in ("gzip", "deflate", "none"):
            raise ConfigurationError(f"{name}={raw!r} is not supported: use gzip, deflate or none.")
        for kind in ("CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"):
            name = f"OTEL_EXPORTER_OTLP_{signal}{kind}"
            raw = environ.get(name, "").strip()
            if raw and not Path(raw).is_file():
                raise ConfigurationError(f"{name}={raw!r}: no such file.")


def _is_positive_number(raw: str) -> bool:
    try:
        return math.isfinite(float(raw)) and float(raw) > 0
    except ValueError:
        return False


def _env_headers(environ: Mapping[str, str], signal: str) -> dict[str, str]:
    raw = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    return {key.lower(): value for key, value in parse_env_headers(raw, liberal=True).items()}


def _plan_otlp(target: _OtlpTarget, interval_ms: int, environ: Mapping[str, str]) -> ExportPlan:
    temporality = _delta_temporality() if target.delta else None
    span_factory = _span_exporter_factory(target, environ)
    span_exporter: SpanExporter = _ForkSafeSpanExporter(span_factory)
    if target.limit_attributes:
        span_exporter = AttributeLimitingSpanExporter(span_exporter, **NEW_RELIC_LIMITS)
    metric_exporter: MetricExporter | None = None
    if not _metrics_off(environ):
        metric_factory = _metric_exporter_factory(target, temporality, environ)
        metric_exporter = _ForkSafeMetricExporter(metric_factory)
    return ExportPlan(span_exporter, metric_exporter, interval_ms, _describe(target, environ), target.batch_size)


def _span_exporter_factory(target: _OtlpTarget, environ: Mapping[str, str]) -> Callable[[], SpanExporter]:
    signal = target.traces
    if signal.protocol == _HTTP:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        kwargs = _http_kwargs(target, signal, "/v1/traces")
        return functools.partial(HttpSpanExporter, **kwargs)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    return functools.partial(GrpcSpanExporter, **_grpc_kwargs(target, signal, environ, "TRACES"))


def _metric_exporter_factory(
    target: _OtlpTarget, temporality: dict[type, Any] | None, environ: Mapping[str, str]
) -> Callable[[], MetricExporter]:
    signal = target.metrics
    if signal.protocol == _HTTP:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

        kwargs = _http_kwargs(target, signal, "/v1/metrics")
        return functools.partial(HttpMetricExporter, preferred_temporality=temporality, **kwargs)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

    kwargs = _grpc_kwargs(target, signal, environ, "METRICS")
    return functools.partial(GrpcMetricExporter, preferred_temporality=temporality, **kwargs)


def _http_kwargs(target: _OtlpTarget, signal: _Signal, path: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if signal.base is not None:
        kwargs["endpoint"] = signal.base + path
    if target.headers:
        kwargs["headers"] = dict(target.headers)  # OTel merges these over OTEL_EXPORTER_OTLP_HEADERS
    if target.gzip:
        from opentelemetry.exporter.otlp.proto.http import Compression

        kwargs["compression"] = Compression.Gzip
    return kwargs


def _grpc_kwargs(target: _OtlpTarget, signal: _Signal, environ: Mapping[str, str], name: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if signal.base is not None:
        kwargs["endpoint"] = signal.base  # OTel reads the scheme: http:// plaintext, https:// TLS
    if target.headers:
        # OTel's gRPC exporter *replaces* the env headers when given any; merge so both apply, like HTTP.
        kwargs["headers"] = {**_env_headers(environ, name), **target.headers}
    if target.gzip:
        from grpc import Compression

        kwargs["compression"] = Compression.Gzip
    return kwargs


def _delta_temporality() -> dict[type, Any]:
    """Delta for monotonic instruments, cumulative for up-down ones (what Datadog and New Relic take)."""
    from opentelemetry.sdk.metrics import (
        Counter,
        Histogram,
        ObservableCounter,
        ObservableGauge,
        ObservableUpDownCounter,
        UpDownCounter,
    )
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    delta, cumulative = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
    return {
        Counter: delta,
        Histogram: delta,
        ObservableCounter: delta,
        ObservableGauge: cumulative,
        UpDownCounter: cumulative,
        ObservableUpDownCounter: cumulative,
    }


def _describe(target: _OtlpTarget, environ: Mapping[str, str]) -> str:
    signal = target.traces
    if signal.base is not None:
        where = signal.base + "/v1/traces" if signal.protocol == _HTTP else signal.base
    else:
        where = _env_traces_url(signal.protocol, environ)
    extras = [" gzip"] if target.gzip else []
    if signal.protocol != _HTTP:
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


def _grpc_uses_tls(endpoint: str, environ: Mapping[str, str]) -> bool:
    # OTel's rule: the scheme decides; without one, OTEL_EXPORTER_OTLP_[TRACES_]INSECURE (default false).
    if endpoint.startswith(("http://", "https://")):
        return endpoint.startswith("https://")
    insecure = environ.get("OTEL_EXPORTER_OTLP_TRACES_INSECURE") or environ.get("OTEL_EXPORTER_OTLP_INSECURE", "")
    return insecure.strip().lower() != "true"


def _env_traces_url(protocol: str, environ: Mapping[str, str]) -> str:
    specific = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    general = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip().rstrip("/")
    if specific:
        return specific
    if protocol == _HTTP:
        return f"{general or 'http://localhost:4318'}/v1/traces"
    return general or "http://localhost:4317"


def make_metric_reader(plan: ExportPlan) -> MetricReader | None:
    """A periodic reader for the plan's metric exporter, or None when metrics go nowhere."""
    if plan.metric_exporter is None:
        return None
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return PeriodicExportingMetricReader(plan.metric_exporter, export_interval_millis=plan.metric_interval_ms)


# --- exporters ----------------------------------------------------------------------------------------
class NullSpanExporter(SpanExporter):
    """exporter='none': spans are made (and counted) but go nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _ForkSafeSpanExporter(SpanExporter):
    """Builds a fresh OTLP exporter in a forked child.

    A child inherits the parent's pooled HTTP connection (or gRPC channel); writing to it from both
    processes interleaves their requests on one socket. The child builds its own on first use.
    """

    def __init__(self, factory: Callable[[], SpanExporter]) -> None:
        self._factory = factory
        self._inner = factory()  # built now: construction errors surface at configure()
        self._pid = os.getpid()

    @property
    def inner(self) -> SpanExporter:
        if self._pid != os.getpid():
            self._inner, self._pid = self._factory(), os.getpid()
        return self._inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export(spans)

    def shutdown(self) -> None:
        if self._pid == os.getpid():  # an exporter inherited and never used here needs no shutdown
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _ForkSafeMetricExporter(MetricExporter):
    """The metric twin of :class:`_ForkSafeSpanExporter`."""

    def __init__(self, factory: Callable[[], MetricExporter]) -> None:
        self._factory = factory
        self._inner = factory()
        self._pid = os.getpid()
        # The reader reads these from the exporter it is given: pass on the inner exporter's choice
        # (ours, or OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE as OTel resolved it).
        super().__init__(
            preferred_temporality=self._inner._preferred_temporality,
            preferred_aggregation=self._inner._preferred_aggregation,
        )

    @property
    def inner(self) -> MetricExporter:
        if self._pid != os.getpid():
            self._inner, self._pid = self._factory(), os.getpid()
        return self._inner

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._pid == os.getpid():
            self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class AttributeLimitingSpanExporter(SpanExporter):
    """Cuts attributes to a backend's limits before export (New Relic drops longer ones).

    Runs on the export worker, never on the request thread. Long strings keep their head and tail
    around a marker holding the number of characters removed and a hash of the whole value, so two
    long prompts stay distinguishable and the full text can be matched elsewhere.
    """

    def __init__(self, inner: SpanExporter, *, max_value_chars: int, max_name_chars: int, max_array_items: int) -> None:
        self._inner = inner
        self._max_value = max_value_chars
        self._max_name = max_name_chars
        self._max_items = max_array_items

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._limited(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def _limited(self, span: ReadableSpan) -> ReadableSpan:
        attributes = self._limit(span.attributes)
        events = [self._limited_event(event) for event in span.events]
        if attributes is span.attributes and all(new is old for new, old in zip(events, span.events, strict=True)):
            return span  # the common case: nothing too long, no copy
        return _LimitedSpan(span, attributes, events)

    def _limited_event(self, event: Event) -> Event:
        attributes = self._limit(event.attributes)
        return event if attributes is event.attributes else Event(event.name, attributes, event.timestamp)

    def _limit(self, attributes: Attributes) -> Attributes:
        if not attributes or not any(self._too_big(key, value) for key, value in attributes.items()):
            return attributes
        return {key[: self._max_name]: self._limit_value(value) for key, value in attributes.items()}

    def _too_big(self, key: str, value: AttributeValue) -> bool:
        if len(key) > self._max_name:
            return True
        if isinstance(value, str):
            return len(value) > self._max_value
        if isinstance(value, Sequence):
            return len(value) > self._max_items or any(isinstance(v, str) and len(v) > self._max_value for v in value)
        return False

    def _limit_value(self, value: AttributeValue) -> AttributeValue:
        if isinstance(value, str):
            return truncate_value(value, self._max_value)
        if isinstance(value, Sequence) and value and isinstance(value[0], str):
            return [truncate_value(str(v), self._max_value) for v in value[: self._max_items]]
        if isinstance(value, Sequence):
            return value[: self._max_items]
        return value


class _LimitedSpan(ReadableSpan):
    """A finished span with replaced attributes and events; everything else is the original's."""

    def __init__(self, original: ReadableSpan, attributes: Attributes, events: Sequence[Event]) -> None:
        super().__init__(
            name=original.name,
            context=original.context,
            parent=original.parent,
            resource=original.resource,
            attributes=attributes,
            events=events,
            links=original.links,
            kind=original.kind,
            status=original.status,
            start_time=original.start_time,
            end_time=original.end_time,
            instrumentation_scope=original.instrumentation_scope,
        )
        self._original = original

    # The exporters send these counts; keep the original span's (the rebuilt mappings count nothing).
    @property
    def dropped_attributes(self) -> int:
        return self._original.dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._original.dropped_events

    @property
    def dropped_links(self) -> int:
        return self._original.dropped_links


def truncate_value(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` chars: head + ``...[truncated N chars sha256:<12 hex>]...`` + tail.

    N is the number of characters removed; the hash is of the whole original value.
    """
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    removed = len(value) - limit
    for _ in range(3):  # the marker's own length depends on N's digits: settle in a step or two
        marker = f"...[truncated {removed} chars sha256:{digest}]..."
        keep = max(limit - len(marker), 0)
        if len(value) - keep == removed:
            break
        removed = len(value) - keep
    if keep == 0:
        return marker[:limit]
    head = keep - keep // 2
    return value[:head] + marker + value[len(value) - (keep - head) :]


class JsonLinesSpanExporter(SpanExporter):
    """exporter='file': one JSON object per finished span per line (format in the module docstring).

    It runs on the export worker, never on the request thread; the lock serialises writers in this
    process (and is re-made in a forked child, where a lock held at fork time would never be
    released). Each batch is one ``write()`` in append mode, so processes sharing the file do not
    interleave lines. An ``OSError`` (disk full, ...) propagates so the processor records the reason.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = FILE_ROTATE_BYTES) -> None:
        self.path = Path(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        weak = weakref.WeakMethod(self._renew_lock)
        os.register_at_fork(after_in_child=functools.partial(_call_weak, weak))

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = b"".join(_json_line(span_to_dict(span)) for span in spans)
        with self._lock:
            self._rotate_if_needed()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def _rotate_if_needed(self) -> None:
        try:
            if self.path.stat().st_size >= self._max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except FileNotFoundError:
            pass  # nothing written yet, or another process rotated it first


def _json_line(record: dict[str, Any]) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape everything rather than lose the span
        return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("ascii")


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """One span as the JSON Lines record described in the module docstring."""
    context = span.context
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "attributes": _plain(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": _plain(e.attributes)} for e in span.events
        ],
        "links": [_link_dict(link) for link in span.links],
        "resource": _plain(span.resource.attributes),
        "scope": {"name": scope.name if scope else None, "version": scope.version if scope else None},
    }


def _link_dict(link: Link) -> dict[str, Any]:
    return {
        "trace_id": f"{link.context.trace_id:032x}",
        "span_id": f"{link.context.span_id:016x}",
        "attributes": _plain(link.attributes),
    }


def _plain(attributes: Attributes) -> dict[str, Any]:
    return {key: _plain_value(value) for key, value in (attributes or {}).items()}


def _plain_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (tuple, list)):
        return [_plain_value(item) for item in value]
    return value


# --- the batch processor ------------------------------------------------------------------------------
_QUEUE_FULL = "llmwatch.export.queue_full"
_EXPORT_FAILED = "llmwatch.export.failed"
_SHUTDOWN_ABANDONED = "llmwatch.export.shutdown_abandoned"
_HANDOFF_FAILED = "llmwatch.export.pool_handoff_failed"


class _Batch:
    """Spans handed to the exporter; ``settled`` makes sure each batch is counted exactly once."""

    __slots__ = ("settled", "spans")

    def __init__(self, spans: list[ReadableSpan]) -> None:
        self.spans = spans
        self.settled = False


class _FlushRequest:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class _BackgroundCall:
    """Runs ``fn`` on a daemon thread so the caller can stop waiting at a deadline.

    Python cannot cancel a thread: at the deadline the call is abandoned, not stopped.
    """

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        try:
            threading.Thread(target=self._run, name=name, daemon=True).start()
        except RuntimeError:
            # Python 3.12+ refuses new threads during interpreter shutdown (atexit, where OTel's
            # provider shuts us down): run inline, the deadline then rests on the exporter's own timeout.
            self._run()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # reported to the waiting thread, never raised on a daemon
            self.error = exc
        finally:
            self.done.set()


class LlmwatchSpanProcessor(SpanProcessor):
    """Bounded queue + one daemon worker; drops and failures counted; deadlines everywhere.

    - ``on_end`` (the caller's thread): a length check and a ``deque.append``. When the queue is
      full the *new* span is dropped and counted (``spans_dropped``); nothing blocks, nothing does
      I/O apart from one warning the first time the queue fills. The bound is checked without a lock,
      so concurrent threads may overshoot it by at most one span each; every drop is counted.
    - The worker wakes when a batch is ready, a flush is asked for, or the schedule delay passes.
      Each export runs with instrumentation suppressed (an HTTP instrumentation must not trace our
      own exports) and has ``export_timeout_ms``: past it the batch counts as failed and its spans
      as dropped, and the worker waits for the stalled call before the next one (an exporter is
      never called concurrently).
    - ``force_flush`` and ``shutdown`` return within their timeouts whatever the exporter does.
    - In a forked child the queue (the parent's spans, which the parent exports) is emptied and a
      new worker started. A multiprocessing child (which leaves through ``os._exit``, never
      ``atexit``) flushes at its exit and, in a Pool worker, before each task's result goes back:
      see ``_process_exit``.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = DEFAULT_BATCH_SIZE,
        schedule_delay_ms: int = 1000,
        export_timeout_ms: int = 30000,
    ) -> None:
        for name, value in (
            ("max_queue_size", max_queue_size),
            ("max_export_batch_size", max_export_batch_size),
            ("schedule_delay_ms", schedule_delay_ms),
            ("export_timeout_ms", export_timeout_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"{name}={value!r} must be a whole number above 0.")
        self._exporter = exporter
        self._max_queue_size = max_queue_size
        self._batch_size = min(max_export_batch_size, max_queue_size)
        self._schedule_delay_s = schedule_delay_ms / 1000
        self._export_timeout_s = export_timeout_ms / 1000
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._is_shutdown = False
        # Pool workers wait for the export of a task's spans before its result goes back, unless
        # the last such wait failed: then they stop waiting until an export succeeds again.
        self._handoff_waits = True
        # Whether the next span ended must first ask if this is a multiprocessing child (_process_exit).
        self._child_check = _process_exit.may_be_child()
        self._start()
        weak = weakref.WeakMethod(self._restart_after_fork)
        os.register_at_fork(after_in_child=functools.partial(_call_weak, weak))

    @classmethod
    def from_env(
        cls,
        exporter: SpanExporter,
        *,
        max_export_batch_size: int = DEFAULT_BATCH_SIZE,
        environ: Mapping[str, str] = os.environ,
    ) -> LlmwatchSpanProcessor:
        """Sizes and delays from ``OTEL_BSP_*`` where set; ``max_export_batch_size`` is the preset's default."""
        return cls(
            exporter,
            max_queue_size=_positive_int_env(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
            max_export_batch_size=_positive_int_env(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", max_export_batch_size),
            schedule_delay_ms=_positive_int_env(environ, "OTEL_BSP_SCHEDULE_DELAY", 1000),
            export_timeout_ms=_positive_int_env(environ, "OTEL_BSP_EXPORT_TIMEOUT", 30000),
        )

    def _start(self) -> None:
        # Every lock and event is made here, so a forked child never inherits one held at fork time.
        self._wake = threading.Event()
        self._flush_lock = threading.Lock()
        self._flush_requests: list[_FlushRequest] = []
        self._settle_lock = threading.Lock()
        self._in_flight: _Batch | None = None
        self._abandoned = False
        self._worker = threading.Thread(target=self._run, name="llmwatch-span-export", daemon=True)
        self._worker.start()

    def _restart_after_fork(self) -> None:
        self._queue.clear()
        if not self._is_shutdown:
            self._child_check = True
            self._start()

    # -- a multiprocessing child (see _process_exit) ------------------------------------------------------
    def shutdown_before_exit(self, timeout_s: float) -> None:
        """The child is about to ``os._exit``: export what is queued, count what cannot be sent."""
        self.shutdown(timeout_millis=min(timeout_s, self._export_timeout_s) * 1000)

    def flush_before_handoff(self) -> None:
        """A Pool worker's task is done: export its spans before the result can reach the parent.

        The parent may terminate the worker (SIGTERM) as soon as it has the last result. Nothing
        queued: returns at once (most tasks). Bounded by the exit deadline; when a wait fails (a
        collector down or slow), later tasks stop waiting until an export succeeds again, so a
        broken collector costs a worker one wait, not one per task.
        """
        if self._is_shutdown or (not self._queue and self._in_flight is None):
            return
        if not self._handoff_waits:
            self._wake.set()  # export now, in the background
            return
        timeout_s = min(_process_exit.EXIT_FLUSH_TIMEOUT_S, self._export_timeout_s)
        if not self.force_flush(int(timeout_s * 1000)):
            self._handoff_waits = False
            if HEALTH.due(_HANDOFF_FAILED):
                logger.warning(
                    "llmwatch: pool worker %d could not export a task's spans before returning its result; "
                    "spans still queued if the pool terminates this worker are lost (export failures are "
                    "counted in this worker's llmwatch.stats()). Is the collector reachable? "
                    "(logged at most once a minute)",
                    os.getpid(),
                )

    # -- the caller's thread ----------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        queue = self._queue
        if self._is_shutdown or len(queue) >= self._max_queue_size:
            HEALTH.spans_dropped.add()
            if not self._is_shutdown and HEALTH.due(_QUEUE_FULL):
                # Logged here, at most once a minute: the worker may be the very thing that is stuck.
                logger.warning(
                    "llmwatch: the export queue is full (%d spans); new spans are dropped and counted in "
                    "llmwatch.stats()['spans_dropped'] (%d so far). Is the collector reachable? "
                    "(logged at most once a minute)",
                    self._max_queue_size,
                    HEALTH.spans_dropped.value,
                )
            return
        queue.append(span)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        if self._child_check:  # once per process at most: False in the parent after its first span
            self._child_check = not _process_exit.watch_if_child(self)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export every span queued now; True when all of them were exported within the timeout."""
        if self._is_shutdown:
            return True  # shutdown already drained (or counted) everything
        request = _FlushRequest()
        with self._flush_lock:
            self._flush_requests.append(request)
        self._wake.set()
        return request.done.wait(max(timeout_millis, 0) / 1000) and request.ok

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Export what is queued and shut the exporter down, all within ``timeout_millis``.

        Default: ``export_timeout_ms``. OTel's TracerProvider calls this without a timeout.
        Spans still queued at the deadline are counted as dropped.
        """
        if self._is_shutdown:
            return
        timeout_s = self._export_timeout_s if timeout_millis is None else max(timeout_millis, 0) / 1000
        deadline = time.monotonic() + timeout_s
        self._is_shutdown = True
        self._wake.set()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout_s)
        if self._worker.is_alive():
            self._abandon()
        else:  # a span that passed on_end's shutdown check just as the worker left
            for _ in self._take(len(self._queue)):
                HEALTH.spans_dropped.add()
        call = _BackgroundCall(self._exporter.shutdown, "llmwatch-exporter-shutdown")
        if call.done.wait(max(deadline - time.monotonic(), 0)) and call.error is not None:
            logger.debug("llmwatch: exporter shutdown failed: %r", call.error)

    def _abandon(self) -> None:
        """The shutdown deadline passed with the worker still busy: count what will never be sent."""
        self._abandoned = True
        left = len(self._take(len(self._queue)))
        for _ in range(left):
            HEALTH.spans_dropped.add()
        in_flight = self._in_flight
        if in_flight is not None:
            self._settle(in_flight, "export still running at the shutdown deadline; batch abandoned")
        if HEALTH.first_time(_SHUTDOWN_ABANDONED):
            logger.warning(
                "llmwatch: shutdown deadline reached with the exporter still busy; %d queued spans dropped "
                "(counted in llmwatch.stats()).",
                left,
            )

    # -- the worker thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self._schedule_delay_s)
            self._wake.clear()
            with self._flush_lock:
                requests, self._flush_requests = self._flush_requests, []
            stopping = self._is_shutdown
            # Woken for a full batch: export full batches only; the delay passed, or a flush or
            # shutdown asked: export everything queued now.
            ok = self._drain(everything=not woken or bool(requests) or stopping)
            for request in requests:
                request.ok = ok
                request.done.set()
            if stopping:
                return

    def _drain(self, everything: bool) -> bool:
        # Only what is queued now: under constant load a flush must not chase new spans forever.
        remaining = len(self._queue)
        threshold = 1 if everything else self._batch_size
        ok = True
        while remaining >= threshold and not self._abandoned:
            batch = self._take(min(self._batch_size, remaining))
            if not batch:
                break
            remaining -= len(batch)
            ok = self._export(batch) and ok
        return ok

    def _take(self, count: int) -> list[ReadableSpan]:
        taken: list[ReadableSpan] = []
        try:
            for _ in range(count):
                taken.append(self._queue.popleft())
        except IndexError:  # shutdown emptied the queue under us
            pass
        return taken

    def _export(self, spans: list[ReadableSpan]) -> bool:
        batch = _Batch(spans)
        self._in_flight = batch
        call = _BackgroundCall(functools.partial(self._export_suppressed, spans), "llmwatch-export-call")
        if call.done.wait(self._export_timeout_s):
            reason = _failure_reason(call)
        else:
            reason = f"export did not finish within {self._export_timeout_s:g}s (OTEL_BSP_EXPORT_TIMEOUT)"
        ok = self._settle(batch, reason)
        call.done.wait()  # one export at a time: exporters are not required to be thread-safe
        self._in_flight = None
        return ok

    def _export_suppressed(self, spans: list[ReadableSpan]) -> SpanExportResult:
        token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            return self._exporter.export(spans)
        finally:
            otel_context.detach(token)

    def _settle(self, batch: _Batch, failure: str | None) -> bool:
        """Count a batch's outcome exactly once (the worker and shutdown may both try)."""
        with self._settle_lock:
            if batch.settled:
                return False
            batch.settled = True
        if failure is None:
            HEALTH.exports_succeeded.add()
            self._handoff_waits = True
            return True
        HEALTH.exports_failed.add()
        for _ in batch.spans:
            HEALTH.spans_dropped.add()
        HEALTH.last_export_error = failure
        if HEALTH.due(_EXPORT_FAILED):
            logger.warning(
                "llmwatch: span export failed (%s); the batch was dropped. %d failed exports and %d dropped "
                "spans so far, counted in llmwatch.stats() (logged at most once a minute).",
                failure,
                HEALTH.exports_failed.value,
                HEALTH.spans_dropped.value,
            )
        return False


def _failure_reason(call: _BackgroundCall) -> str | None:
    if call.error is not None:
        return f"{type(call.error).__name__}: {call.error}"[:300]
    if call.result is SpanExportResult.SUCCESS:
        return None
    name = getattr(call.result, "name", repr(call.result))
    return f"exporter returned {name}"


def _call_weak(weak: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = weak()
    if method is not None:
        method()


def _positive_int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be a whole number above 0 (milliseconds or a count).")
    return value
