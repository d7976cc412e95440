"""Where spans and metrics go: exporter presets over OTLP, and llmwatch's own batch processor.

Presets (``configure(exporter=...)``), all validated up front by :func:`plan_export`:

- ``otlp`` (default): OTel's OTLP exporters, honouring the standard ``OTEL_EXPORTER_OTLP_*``
  variables; ``endpoint=`` is a base URL like ``OTEL_EXPORTER_OTLP_ENDPOINT`` (HTTP appends
  ``/v1/traces`` and ``/v1/metrics``; gRPC takes ``host:port``, ``http://`` meaning insecure).
- ``datadog``: the Datadog Agent's OTLP intake (``DD_AGENT_HOST`` or localhost, 4318 HTTP / 4317 gRPC);
  agentless LLM Observability when an ``endpoint`` and ``DD_API_KEY`` are given
  (``dd-api-key`` and ``dd-otlp-source: llmobs`` headers). Delta temporality for metrics.
- ``newrelic``: OTLP/HTTP to ``otlp.nr-data.net`` (``otlp.eu01.nr-data.net`` with
  ``NEW_RELIC_REGION=eu``), ``api-key`` from ``NEW_RELIC_LICENSE_KEY``, gzip, delta temporality,
  attribute values truncated to New Relic's 4095-character limit, small batches.
- ``console``, ``file`` (JSON Lines, below), ``none``, or any ``SpanExporter`` instance.

The file format, one finished span per line (read by ``llmwatch report``)::

    {"name": "chat gpt-4o-mini", "trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_span_id": null,
     "kind": "CLIENT", "start_time_unix_nano": 1, "end_time_unix_nano": 2,
     "status": {"code": "UNSET", "description": null}, "attributes": {...},
     "events": [{"name": ..., "time_unix_nano": ..., "attributes": {...}}],
     "links": [{"trace_id": ..., "span_id": ..., "attributes": {...}}],
     "resource": {"service.name": ...}, "scope": {"name": "llmwatch", "version": ...}}

:class:`LlmwatchSpanProcessor` replaces OTel's BatchSpanProcessor for the spans llmwatch exports: the
same bounded queue and background worker, but a full queue drops the *new* span and counts it
(``llmwatch.stats()["spans_dropped"]``), failed exports are counted, and shutdown has one deadline
even when the exporter hangs.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llmwatch._config import ConfigurationError
from llmwatch._health import HEALTH

logger = logging.getLogger("llmwatch")

SPAN_FILE_DEFAULT = "llmwatch-spans.jsonl"
PRESETS = ("otlp", "datadog", "newrelic", "console", "file", "none")
PROTOCOLS = ("grpc", "http/protobuf")
NEW_RELIC_ATTRIBUTE_LIMIT = 4095
_SUPPRESS_KEY = otel_context.create_key("suppress_instrumentation")


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    span_exporter: SpanExporter
    metric_exporter: Any
    metric_interval_ms: int
    description: str
    recommended_batch_size: int = 512


def plan_export(
    exporter: str | SpanExporter | None,
    *,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    protocol: str | None,
    file_path: str | None,
    environ: Mapping[str, str] = os.environ,
) -> ExportPlan:
    """Validate the export settings and build the exporters; raises ConfigurationError."""
    interval = _interval_ms(environ)
    if isinstance(exporter, SpanExporter):
        return ExportPlan(exporter, None, interval, f"user exporter {type(exporter).__name__}")
    name = (exporter or environ.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    if name not in PRESETS:
        raise ConfigurationError(
            f"exporter={exporter!r} is not known: use one of {', '.join(PRESETS)}, or pass a SpanExporter instance."
        )
    if name == "none":
        return ExportPlan(NullSpanExporter(), None, interval, "none")
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ExportPlan(ConsoleSpanExporter(), None, interval, "console")
    if name == "file":
        path = Path(file_path or SPAN_FILE_DEFAULT)
        if not path.parent.exists():
            raise ConfigurationError(f"file_path={str(path)!r}: directory {str(path.parent)!r} does not exist.")
        return ExportPlan(JsonLinesSpanExporter(path), None, interval, f"file {path}")
    return _plan_otlp(name, endpoint, dict(headers or {}), protocol, environ, interval)


def _interval_ms(environ: Mapping[str, str]) -> int:
    raw = environ.get("OTEL_METRIC_EXPORT_INTERVAL", "60000")
    try:
        return max(int(raw), 100)
    except ValueError:
        raise ConfigurationError(
            f"OTEL_METRIC_EXPORT_INTERVAL={raw!r} is not a whole number of milliseconds."
        ) from None


def _resolve_protocol(protocol: str | None, environ: Mapping[str, str], default: str) -> str:
    value = protocol or environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    value = (value or default).strip().lower()
    if value == "http":
        value = "http/protobuf"
    if value not in PROTOCOLS:
        raise ConfigurationError(f"protocol={value!r} is not supported: use 'grpc' or 'http/protobuf'.")
    return value


def _check_endpoint(endpoint: str, protocol: str) -> None:
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    if protocol == "http/protobuf" and "://" not in endpoint:
        raise ConfigurationError(f"endpoint={endpoint!r}: an HTTP endpoint needs a scheme, e.g. http://localhost:4318.")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if not parsed.hostname or port == -1 or parsed.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"endpoint={endpoint!r} is malformed: use a base URL like http://localhost:4318 (HTTP) "
            "or host:port like localhost:4317 (gRPC)."
        )


def _plan_otlp(
    name: str,
    endpoint: str | None,
    headers: dict[str, str],
    protocol: str | None,
    environ: Mapping[str, str],
    interval: int,
) -> ExportPlan:
    batch, compression, delta = 512, None, False
    if name == "datadog":
        protocol = _resolve_protocol(protocol, environ, "http/protobuf")
        host = environ.get("DD_AGENT_HOST") or "localhost"
        api_key = environ.get("DD_API_KEY")
        if endpoint is not None and api_key:
            headers.setdefault("dd-api-key", api_key)
            headers.setdefault("dd-otlp-source", "llmobs")
        endpoint = endpoint or (f"http://{host}:4318" if protocol == "http/protobuf" else f"http://{host}:4317")
        batch, delta = 256, True
    elif name == "newrelic":
        protocol = _resolve_protocol(protocol, environ, "http/protobuf")
        key = headers.get("api-key") or environ.get("NEW_RELIC_LICENSE_KEY")
        if not key:
            raise ConfigurationError(
                "exporter='newrelic' needs a license key: set NEW_RELIC_LICENSE_KEY or pass headers={'api-key': ...}."
            )
        headers["api-key"] = key
        region_eu = environ.get("NEW_RELIC_REGION", "").strip().lower() == "eu"
        default = "https://otlp.eu01.nr-data.net" if region_eu else "https://otlp.nr-data.net"
        endpoint = endpoint or (default if protocol == "http/protobuf" else default.replace("https://", "") + ":4317")
        batch, compression, delta = 100, "gzip", True
    else:
        protocol = _resolve_protocol(protocol, environ, "http/protobuf")
    if endpoint is not None:
        _check_endpoint(endpoint, protocol)
    span_exporter, metric_exporter = _otlp_exporters(protocol, endpoint, headers or None, compression, delta)
    if name == "newrelic":
        span_exporter = TruncatingSpanExporter(span_exporter, NEW_RELIC_ATTRIBUTE_LIMIT)
    where = endpoint or "OTEL_EXPORTER_OTLP_* / default endpoint"
    return ExportPlan(span_exporter, metric_exporter, interval, f"{name} {protocol} -> {where}", batch)


def _otlp_exporters(
    protocol: str, endpoint: str | None, headers: dict[str, str] | None, compression: str | None, delta: bool
) -> tuple[SpanExporter, Any]:
    temporality = _delta_temporality() if delta else None
    if protocol == "grpc":
        from grpc import Compression as GrpcCompression
        from opentelemetry.exporter.otlp.proto.grpc import metric_exporter as grpc_metrics
        from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_traces

        kwargs: dict[str, Any] = {}
        if endpoint is not None:
            kwargs["endpoint"] = endpoint.split("://", 1)[-1]
            kwargs["insecure"] = not endpoint.startswith("https://")
        if headers:
            kwargs["headers"] = headers
        if compression:
            kwargs["compression"] = GrpcCompression.Gzip
        return (
            grpc_traces.OTLPSpanExporter(**kwargs),
            grpc_metrics.OTLPMetricExporter(preferred_temporality=temporality, **kwargs),
        )
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/") if endpoint is not None else None
    common: dict[str, Any] = {}
    if headers:
        common["headers"] = headers
    if compression:
        common["compression"] = HttpCompression.Gzip
    traces = OTLPSpanExporter(endpoint=f"{base}/v1/traces" if base else None, **common)
    metrics = OTLPMetricExporter(
        endpoint=f"{base}/v1/metrics" if base else None, preferred_temporality=temporality, **common
    )
    return traces, metrics


def _delta_temporality() -> dict[type, Any]:
    from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter, ObservableUpDownCounter, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    return {
        Counter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA,
        ObservableCounter: AggregationTemporality.DELTA,
        UpDownCounter: AggregationTemporality.CUMULATIVE,
        ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    }


def make_metric_reader(plan: ExportPlan) -> Any:
    """A periodic reader for the plan's metric exporter, or None when metrics go nowhere."""
    if plan.metric_exporter is None:
        return None
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return PeriodicExportingMetricReader(plan.metric_exporter, export_interval_millis=plan.metric_interval_ms)


# --- exporters ------------------------------------------------------------------------------------
class NullSpanExporter(SpanExporter):
    """exporter='none': spans are made (and counted) but go nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class TruncatingSpanExporter(SpanExporter):
    """Truncates long string attribute values (head + tail + a hash of the whole) before export."""

    def __init__(self, inner: SpanExporter, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._truncated(span) for span in spans])

    def _truncated(self, span: ReadableSpan) -> ReadableSpan:
        attrs = span.attributes or {}
        if not any(isinstance(v, str) and len(v) > self._limit for v in attrs.values()):
            return span
        fixed = {k: truncate_value(v, self._limit) if isinstance(v, str) else v for k, v in attrs.items()}
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=fixed,
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def truncate_value(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    marker = f"...[truncated {len(value) - limit} chars sha256:{digest}]..."
    keep = limit - len(marker)
    return value[: keep - keep // 2] + marker + value[len(value) - keep // 2 :]


class JsonLinesSpanExporter(SpanExporter):
    """exporter='file': one JSON object per finished span per line; rotated to ``.1`` by size."""

    def __init__(self, path: str | Path, max_bytes: int = 50 * 1024 * 1024) -> None:
        self.path = Path(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(span), default=str) + "\n" for span in spans)
        with self._lock:
            self._rotate_if_needed()
            with self.path.open("a", encoding="utf-8") as out:
                out.write(lines)
        return SpanExportResult.SUCCESS

    def _rotate_if_needed(self) -> None:
        try:
            if self.path.stat().st_size >= self._max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except FileNotFoundError:
            pass


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "attributes": _plain(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": _plain(e.attributes)} for e in span.events
        ],
        "links": [
            {
                "trace_id": f"{link.context.trace_id:032x}",
                "span_id": f"{link.context.span_id:016x}",
                "attributes": _plain(link.attributes),
            }
            for link in span.links
        ],
        "resource": _plain(span.resource.attributes),
        "scope": {
            "name": span.instrumentation_scope.name if span.instrumentation_scope else None,
            "version": span.instrumentation_scope.version if span.instrumentation_scope else None,
        },
    }


def _plain(attributes: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


# --- the batch processor --------------------------------------------------------------------------
class LlmwatchSpanProcessor(SpanProcessor):
    """Bounded queue + one background worker; drops counted; one deadline for flush and shutdown."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_ms: int = 1000,
        export_timeout_ms: int = 30000,
    ) -> None:
        self._exporter = exporter
        self._max_queue = max_queue_size
        self._batch = min(max_export_batch_size, max_queue_size)
        self._delay_s = schedule_delay_ms / 1000
        self._export_timeout_s = export_timeout_ms / 1000
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._condition = threading.Condition(threading.Lock())
        self._flush_requests: list[threading.Event] = []
        self._shutdown = False
        self._export_lock = threading.Lock()
        self._start_worker()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reinit_after_fork(ref))

    @classmethod
    def from_env(cls, exporter: SpanExporter, *, max_export_batch_size: int = 512) -> LlmwatchSpanProcessor:
        """Sizes from ``OTEL_BSP_*`` when set, as OTel's BatchSpanProcessor reads them."""
        return cls(
            exporter,
            max_queue_size=_env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048),
            max_export_batch_size=_env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", max_export_batch_size),
            schedule_delay_ms=_env_int("OTEL_BSP_SCHEDULE_DELAY", 1000),
            export_timeout_ms=_env_int("OTEL_BSP_EXPORT_TIMEOUT", 30000),
        )

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._run, name="llmwatch-export", daemon=True)
        self._worker.start()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._shutdown or not span.context.trace_flags.sampled:
            return
        queue = self._queue
        if len(queue) >= self._max_queue:
            HEALTH.spans_dropped.add()
            if HEALTH.first_time("export queue full"):
                logger.warning(
                    "llmwatch: export queue full (%d spans); new spans are dropped and counted in "
                    "llmwatch.stats()['spans_dropped']. Is the collector reachable?",
                    self._max_queue,
                )
            return
        queue.append(span)
        if len(queue) >= self._batch:
            with self._condition:
                self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._shutdown and len(self._queue) < self._batch and not self._flush_requests:
                    self._condition.wait(self._delay_s)
                requests, self._flush_requests = self._flush_requests, []
                stopping = self._shutdown
            self._drain(everything=bool(requests) or stopping)
            for event in requests:
                event.set()
            if stopping:
                return

    def _drain(self, everything: bool) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
            self._export(batch)
            if not everything and len(self._queue) < self._batch:
                return

    def _export(self, batch: list[ReadableSpan]) -> None:
        token = otel_context.attach(otel_context.set_value(_SUPPRESS_KEY, True))
        try:
            with self._export_lock:
                result = self._exporter.export(batch)
            if result is SpanExportResult.SUCCESS:
                HEALTH.exports_succeeded.add()
                return
            self._count_failure(len(batch), f"exporter returned {result.name}")
        except Exception as exc:
            self._count_failure(len(batch), f"{type(exc).__name__}: {exc}")
        finally:
            otel_context.detach(token)

    def _count_failure(self, spans: int, reason: str) -> None:
        HEALTH.exports_failed.add()
        for _ in range(spans):
            HEALTH.spans_dropped.add()
        HEALTH.last_export_error = reason[:500]
        if HEALTH.first_time("export failed"):
            logger.warning("llmwatch: span export failed (%s); counted in llmwatch.stats(), not logged again.", reason)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._shutdown:
            return True
        done = threading.Event()
        with self._condition:
            self._flush_requests.append(done)
            self._condition.notify()
        return done.wait(timeout_millis / 1000)

    def shutdown(self, timeout_millis: int = 30000) -> None:
        if self._shutdown:
            return
        with self._condition:
            self._shutdown = True
            self._condition.notify()
        self._worker.join(min(timeout_millis / 1000, self._export_timeout_s))
        # A hung exporter keeps the daemon worker busy; we return at the deadline regardless.
        left = len(self._queue)
        for _ in range(left):
            HEALTH.spans_dropped.add()
        self._queue.clear()
        threading.Thread(target=self._exporter.shutdown, name="llmwatch-export-shutdown", daemon=True).start()

    def _after_fork(self) -> None:
        self._queue.clear()
        self._condition = threading.Condition(threading.Lock())
        self._export_lock = threading.Lock()
        self._flush_requests = []
        if not self._shutdown:
            self._start_worker()


def _reinit_after_fork(ref: weakref.ref[LlmwatchSpanProcessor]) -> None:
    processor = ref()
    if processor is not None:
        processor._after_fork()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return max(int(raw), 1)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number.") from None
