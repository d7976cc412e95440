"""Exporters that survive ``fork()``: a forked child builds its own connection, and a fork hook helper.

A child inherits the parent's pooled HTTP connection (or gRPC channel) along with the exporter
holding it; if both processes write to it their requests interleave on one socket. The wrappers here
rebuild the inner OTLP exporter the first time it is used in a new process. Locks need the same care
(one held at fork time is never released in the child): :func:`call_weak` lets an object re-make its
own from ``os.register_at_fork`` without the hook keeping the object alive.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llmwatch._health import HEALTH

logger = logging.getLogger("llmwatch")
_METRIC_EXPORT_FAILED = "metric export failed"


class ForkSafeSpanExporter(SpanExporter):
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


class ForkSafeLogExporter(LogRecordExporter):
    """The log twin of :class:`ForkSafeSpanExporter` (content events over OTLP logs)."""

    def __init__(self, factory: Callable[[], LogRecordExporter]) -> None:
        self._factory = factory
        self._inner = factory()
        self._pid = os.getpid()

    @property
    def inner(self) -> LogRecordExporter:
        if self._pid != os.getpid():
            self._inner, self._pid = self._factory(), os.getpid()
        return self._inner

    def export(self, batch: Sequence[Any]) -> Any:
        return self.inner.export(batch)

    def shutdown(self) -> None:
        if self._pid == os.getpid():
            self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class ForkSafeMetricExporter(MetricExporter):
    """The metric twin of :class:`ForkSafeSpanExporter`; also counts every failed metric export.

    OTel's periodic reader logs a failed export (its exporter's warning) and moves on: without the
    count, ``stats()`` said all was well while every metric was rejected (a traces-only endpoint's 404)."""

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
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _metric_export_failed(f"{type(exc).__name__}: {exc}"[:300])
            raise
        if result is not MetricExportResult.SUCCESS:
            _metric_export_failed(f"exporter returned {getattr(result, 'name', result)}")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._pid == os.getpid():
            self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _metric_export_failed(reason: str) -> None:
    HEALTH.metric_exports_failed.add()
    HEALTH.exports_failed.add()
    HEALTH.last_metric_export_failed_at = time.time()
    HEALTH.last_export_error = f"metrics: {reason}"
    if HEALTH.due(_METRIC_EXPORT_FAILED):
        logger.warning(
            "llmwatch: metric export failed (%s); those points are lost. %d failed metric exports so far, "
            "counted in llmwatch.stats() (logged at most once a minute).",
            reason,
            HEALTH.metric_exports_failed.value,
        )


def call_weak(weak: weakref.WeakMethod[Callable[[], None]]) -> None:
    """An ``os.register_at_fork`` hook: call the method if its object still exists."""
    method = weak()
    if method is not None:
        method()
