"""Exporters that survive ``fork()``: a forked child builds its own connection, and a fork hook helper.

A child inherits the parent's pooled HTTP connection (or gRPC channel) along with the exporter
holding it; if both processes write to it their requests interleave on one socket. The wrappers here
rebuild the inner OTLP exporter the first time it is used in a new process. Locks need the same care
(one held at fork time is never released in the child): :func:`call_weak` lets an object re-make its
own from ``os.register_at_fork`` without the hook keeping the object alive.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


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


class ForkSafeMetricExporter(MetricExporter):
    """The metric twin of :class:`ForkSafeSpanExporter`."""

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


def call_weak(weak: weakref.WeakMethod[Callable[[], None]]) -> None:
    """An ``os.register_at_fork`` hook: call the method if its object still exists."""
    method = weak()
    if method is not None:
        method()
