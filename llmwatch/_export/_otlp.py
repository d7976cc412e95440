"""The OTLP presets: where ``otlp``, ``datadog`` and ``newrelic`` send, checked up front, and their exporters.

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
  and attributes cut to New Relic's limits before export (``_limits.py``), because New Relic drops
  what is longer.

Only what the caller gave explicitly (and what a preset adds) is passed to OTel's exporters; they
read the remaining ``OTEL_EXPORTER_OTLP_*`` variables themselves. What llmwatch reads it checks at
``configure()``, so a value OTel would reject at export time (or crash on) fails there instead.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from llmwatch import _config
from llmwatch._config import ConfigurationError
from llmwatch._config_parse import parse_protocol
from llmwatch._export._batch import DEFAULT_BATCH_SIZE

# Datadog refuses payloads over 3.2 MB and New Relic over 1 MB: a few KB per span, 100 spans a batch.
SMALL_BATCH_SIZE = 100
HTTP = "http/protobuf"
_SIGNAL_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")
# The OTLP variables llmwatch only checks (OTel's exporters use them), in the order they are checked.
_CHECKED_ROWS: Final = tuple(
    f"otlp_{signal}{kind}"
    for signal in ("", "traces_", "metrics_")
    for kind in ("timeout", "compression", "certificate", "client_certificate", "client_key")
)


@dataclasses.dataclass(frozen=True)
class Signal:
    """One signal's OTLP destination; ``base`` None lets OTel resolve it from the environment."""

    protocol: str
    base: str | None


@dataclasses.dataclass(frozen=True)
class OtlpTarget:
    preset: str
    traces: Signal
    metrics: Signal
    headers: dict[str, str]  # explicit and preset headers only; OTel adds OTEL_EXPORTER_OTLP_HEADERS
    gzip: bool  # forced by the preset; otherwise OTEL_EXPORTER_OTLP_COMPRESSION applies
    delta: bool
    batch_size: int = DEFAULT_BATCH_SIZE
    limit_attributes: bool = False
    logs: Signal | None = None  # content events (OTLP logs); None: as the traces


def _otlp_target(
    endpoint: str | None, headers: dict[str, str], protocol: str | None, environ: Mapping[str, str] | None
) -> OtlpTarget:
    traces, metrics, logs = _protocols(protocol, environ)
    if endpoint is not None:
        endpoint = _check_endpoint(endpoint, traces, "endpoint", base=True)
    else:
        _check_env_endpoints(traces, metrics, logs, environ)
    signals = (Signal(traces, endpoint), Signal(metrics, endpoint))
    return OtlpTarget("otlp", *signals, headers, False, False, logs=Signal(logs, endpoint))


def _datadog_target(
    endpoint: str | None, headers: dict[str, str], protocol: str | None, environ: Mapping[str, str] | None
) -> OtlpTarget:
    traces, metrics, logs = _protocols(protocol, environ)
    api_key: str = _config.env("datadog_api_key", environ)
    if endpoint is not None:
        endpoint = _check_endpoint(endpoint, traces, "endpoint", base=True)
        if api_key:  # agentless: Datadog's LLM Observability OTLP intake
            headers.setdefault("dd-api-key", api_key)
            headers.setdefault("dd-otlp-source", "llmobs")
        signals = (Signal(traces, endpoint), Signal(metrics, endpoint))
        log_signal = Signal(logs, endpoint)
    else:
        host: str = _config.env("datadog_agent_host", environ)
        signals = (Signal(traces, _agent_url(host, traces)), Signal(metrics, _agent_url(host, metrics)))
        log_signal = Signal(logs, _agent_url(host, logs))
    return OtlpTarget("datadog", *signals, headers, False, True, SMALL_BATCH_SIZE, logs=log_signal)


def _agent_url(host: str, protocol: str) -> str:
    url = f"http://{host}:{4318 if protocol == HTTP else 4317}"
    return _check_endpoint(url, protocol, f"DD_AGENT_HOST={host!r}", base=True)


def _newrelic_target(
    endpoint: str | None, headers: dict[str, str], protocol: str | None, environ: Mapping[str, str] | None
) -> OtlpTarget:
    traces, metrics, logs = _protocols(protocol, environ)
    license_key: str = _config.env("newrelic_license_key", environ)
    if "api-key" not in headers and license_key:
        headers["api-key"] = license_key
    if "api-key" not in headers and "api-key" not in _config.env("otlp_traces_headers", environ):
        raise ConfigurationError(
            "exporter='newrelic' needs your New Relic license key: set NEW_RELIC_LICENSE_KEY, "
            "or pass headers={'api-key': '...'}."
        )
    if endpoint is not None:
        base = _check_endpoint(endpoint, traces, "endpoint", base=True)
        signals = (Signal(traces, base), Signal(metrics, base))
        log_signal = Signal(logs, base)
    else:
        host = _newrelic_host(environ)
        signals = (Signal(traces, _newrelic_url(host, traces)), Signal(metrics, _newrelic_url(host, metrics)))
        log_signal = Signal(logs, _newrelic_url(host, logs))
    target = OtlpTarget("newrelic", *signals, headers, True, True, SMALL_BATCH_SIZE, limit_attributes=True)
    return dataclasses.replace(target, logs=log_signal)


def _newrelic_host(environ: Mapping[str, str] | None) -> str:
    region = _config.env("newrelic_region", environ)  # "us" or "eu": the row's parser refuses the rest
    return "otlp.eu01.nr-data.net" if region == "eu" else "otlp.nr-data.net"


def _newrelic_url(host: str, protocol: str) -> str:
    # New Relic serves OTLP/HTTP on 443 and OTLP/gRPC on 4317, both over TLS.
    return f"https://{host}" if protocol == HTTP else f"https://{host}:4317"


TargetBuilder = Callable[[str | None, dict[str, str], str | None, Mapping[str, str] | None], OtlpTarget]
TARGET_BUILDERS: Final[dict[str, TargetBuilder]] = {
    "otlp": _otlp_target,
    "datadog": _datadog_target,
    "newrelic": _newrelic_target,
}


def _protocols(protocol: str | None, environ: Mapping[str, str] | None) -> tuple[str, str, str]:
    """The (traces, metrics, logs) protocols: protocol= for all, else the per-signal then general env var."""
    if protocol is not None:
        checked = parse_protocol("protocol", protocol)
        return checked, checked, checked
    # Default http/protobuf, the spec's.
    return (
        _config.env("otlp_traces_protocol", environ),
        _config.env("otlp_metrics_protocol", environ),
        _config.env("otlp_logs_protocol", environ),
    )


def _check_endpoint(value: str, protocol: str, source: str, *, base: bool) -> str:
    """Check an OTLP endpoint; returns it without a trailing slash.

    HTTP needs a scheme; a base URL must not already end in a signal path (we append it). gRPC takes
    ``host:port`` with an optional ``http://`` or ``https://``, and no path.
    """
    text = value.strip().rstrip("/")
    example = "http://localhost:4318" if protocol == HTTP else "localhost:4317 or http://localhost:4317"
    has_scheme = "://" in text
    if protocol == HTTP and not has_scheme:
        raise ConfigurationError(f"{source}={value!r} needs a scheme for {protocol}: e.g. {example}.")
    parts = urlsplit(text if has_scheme else f"//{text}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise ConfigurationError(f"{source}={value!r} has an invalid port: e.g. {example}.") from None
    if (has_scheme and parts.scheme not in ("http", "https")) or not parts.hostname:
        raise ConfigurationError(f"{source}={value!r} is malformed: use a URL like {example}.")
    if protocol != HTTP and parts.path:
        raise ConfigurationError(f"{source}={value!r}: a gRPC endpoint is host:port without a path, e.g. {example}.")
    if base and parts.path.endswith(_SIGNAL_PATHS):
        raise ConfigurationError(
            f"{source}={value!r} is a base URL: llmwatch appends /v1/traces and /v1/metrics, so drop "
            f"{parts.path[parts.path.rindex('/v1/') :]!r} (or set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to the full URL)."
        )
    return text


def _check_env_endpoints(traces: str, metrics: str, logs: str, environ: Mapping[str, str] | None) -> None:
    general = _config.env("otlp_endpoint", environ)
    rows = (("otlp_traces_endpoint", traces), ("otlp_metrics_endpoint", metrics), ("otlp_logs_endpoint", logs))
    for row, protocol in rows:
        specific = _config.env(row, environ)
        if specific:
            # A signal endpoint is the full URL (HTTP) or host:port (gRPC): used as given.
            _check_endpoint(specific, protocol, _config.variable(row), base=False)
        elif general:
            _check_endpoint(general, protocol, _config.variable("otlp_endpoint"), base=True)


def check_otlp_environ(environ: Mapping[str, str] | None) -> None:
    """Fail at configure() on OTLP variables OTel would otherwise reject at export time (or crash on)."""
    for row in _CHECKED_ROWS:
        _config.env(row, environ)  # the row's parser raises ConfigurationError saying what is wrong


def span_exporter_factory(target: OtlpTarget, environ: Mapping[str, str] | None) -> Callable[[], SpanExporter]:
    signal = target.traces
    if signal.protocol == HTTP:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        kwargs = _http_kwargs(target, signal, "/v1/traces")
        return functools.partial(HttpSpanExporter, **kwargs)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    return functools.partial(GrpcSpanExporter, **_grpc_kwargs(target, signal, environ, "otlp_traces_headers"))


def metric_exporter_factory(
    target: OtlpTarget, temporality: dict[type, Any] | None, environ: Mapping[str, str] | None
) -> Callable[[], MetricExporter]:
    signal = target.metrics
    if signal.protocol == HTTP:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

        kwargs = _http_kwargs(target, signal, "/v1/metrics")
        return functools.partial(HttpMetricExporter, preferred_temporality=temporality, **kwargs)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

    kwargs = _grpc_kwargs(target, signal, environ, "otlp_metrics_headers")
    return functools.partial(GrpcMetricExporter, preferred_temporality=temporality, **kwargs)


def log_exporter_factory(target: OtlpTarget, environ: Mapping[str, str] | None) -> Callable[[], Any]:
    """The content events' OTLP log exporter: the traces' rules, on ``/v1/logs`` (or the LogsService)."""
    signal = target.logs or target.traces
    if signal.protocol == HTTP:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

        return functools.partial(HttpLogExporter, **_http_kwargs(target, signal, "/v1/logs"))
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter

    return functools.partial(GrpcLogExporter, **_grpc_kwargs(target, signal, environ, "otlp_logs_headers"))


def _http_kwargs(target: OtlpTarget, signal: Signal, path: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if signal.base is not None:
        kwargs["endpoint"] = signal.base + path
    if target.headers:
        kwargs["headers"] = dict(target.headers)  # OTel merges these over OTEL_EXPORTER_OTLP_HEADERS
    if target.gzip:
        from opentelemetry.exporter.otlp.proto.http import Compression

        kwargs["compression"] = Compression.Gzip
    return kwargs


def _grpc_kwargs(target: OtlpTarget, signal: Signal, environ: Mapping[str, str] | None, row: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if signal.base is not None:
        kwargs["endpoint"] = signal.base  # OTel reads the scheme: http:// plaintext, https:// TLS
    if target.headers:
        # OTel's gRPC exporter *replaces* the env headers when given any; merge so both apply, like HTTP.
        kwargs["headers"] = {**_config.env(row, environ), **target.headers}
    if target.gzip:
        from grpc import Compression

        kwargs["compression"] = Compression.Gzip
    return kwargs


def delta_temporality() -> dict[type, Any]:
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
