"""OTel pieces the variants share: exporters that count or stall, and the hand-made "floor" span."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class CountingExporter(SpanExporter):
    """A healthy exporter that does nothing but count what it is given."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


class StalledExporter(SpanExporter):
    """An exporter whose every ``export`` blocks for ``stall_s`` (a collector that accepts and hangs).

    ``shutdown`` does not release a stalled export: llmwatch's own deadline has to."""

    def __init__(self, stall_s: float = 10.0) -> None:
        self.stall_s = stall_s
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        time.sleep(self.stall_s)
        return SpanExportResult.FAILURE


def sdk_tracer_provider(exporter: SpanExporter) -> TracerProvider:
    """A real SDK TracerProvider with a batch processor into ``exporter`` (not installed globally)."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def sdk_meter_provider() -> Any:
    """A real SDK MeterProvider with a reader nobody reads (aggregation happens, nothing is sent)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return MeterProvider(metric_readers=[InMemoryMetricReader()])


def floor_span(
    provider: TracerProvider, name: str, attributes: Mapping[str, Any]
) -> Callable[[Callable[[], Any]], Any]:
    """Wrap a call in one CLIENT span carrying ``attributes``: the least any OTel instrumentation costs."""
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("benchmarks.floor")
    attrs = dict(attributes)

    def run(call: Callable[[], Any]) -> Any:
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
        try:
            return call()
        finally:
            span.end()

    return run


def jsonable_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes as JSON values (tuples become lists), to hand them to another process."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in attributes.items()}


def configure_llmwatch(**settings: Any) -> None:
    """``llmwatch.configure(**settings)``, then wait (up to 30 s) for its background loaders (price data,
    tiktoken encodings) so they do not compete with the timed rounds for the CPU."""
    import threading

    import llmwatch

    llmwatch.configure(**settings)
    deadline = time.monotonic() + 30.0
    for thread in threading.enumerate():
        if thread.name.startswith(("llmwatch-prices", "llmwatch-tiktoken")):
            thread.join(max(deadline - time.monotonic(), 0.0))
