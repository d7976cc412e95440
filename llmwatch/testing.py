"""Test helpers for your own test-suite: llmwatch's spans and metrics, in memory.

::

    import llmwatch.testing

    def test_search_is_attributed(client):
        llmwatch.instrument(client)
        with llmwatch.testing.capture() as captured:
            with llmwatch.attributes(feature="search"):
                client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        (span,) = captured.llm_spans()
        assert span.attributes["llmwatch.feature"] == "search"

Content events (``capture_content="EVENT_ONLY"`` or ``"SPAN_AND_EVENT"``: the
``gen_ai.client.inference.operation.details`` log records) are in ``captured.events()``.

While the block runs, llmwatch records into private in-memory providers (the globals are not
touched). Everything else stays as your ``llmwatch.configure()`` set it (prices, content capture,
redaction, ...), so a test sees what production would record; settings you pass (same names as
``llmwatch.configure``) override it for the block. On exit the previous configuration is back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmwatch import _config, _config_parse
from llmwatch import _semconv as sc
from llmwatch._core import _runtime
from llmwatch._instrument import _openai_batch_results

__all__ = ["Captured", "capture"]


class Captured:
    """What llmwatch recorded inside a :func:`capture` block."""

    def __init__(
        self,
        exporter: InMemorySpanExporter,
        reader: InMemoryMetricReader,
        provider: TracerProvider,
        logs: InMemoryLogRecordExporter | None = None,
    ) -> None:
        self._exporter = exporter
        self._reader = reader
        self._logs = logs
        self.tracer_provider = provider

    @property
    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended (batch results still being read first)."""
        _openai_batch_results.wait_idle(10.0)  # they are recorded off the caller's thread
        return list(self._exporter.get_finished_spans())

    def llm_spans(self) -> list[ReadableSpan]:
        """The LLM call spans only: those with a ``gen_ai.operation.name`` that is not an agent, tool
        or workflow operation (``invoke_agent``, ``execute_tool``, ...)."""
        return [
            s
            for s in self.spans
            if s.attributes and s.attributes.get("gen_ai.operation.name", sc.OP_INVOKE_AGENT) not in sc.AGENT_OPERATIONS
        ]

    def events(self, name: str | None = None) -> list[ReadableLogRecord]:
        """The log events llmwatch emitted (content events), optionally only those named ``name``."""
        records = list(self._logs.get_finished_logs()) if self._logs is not None else []
        return [r for r in records if name is None or r.log_record.event_name == name]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> data points collected so far."""
        data = self._reader.get_metrics_data()
        points: dict[str, list[Any]] = {}
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points

    def clear(self) -> None:
        self._exporter.clear()
        if self._logs is not None:
            self._logs.clear()


@contextmanager
def capture(**settings: Any) -> Iterator[Captured]:
    """Record llmwatch's spans and metrics in memory for the duration of the block."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "llmwatch-test"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider(resource=tracer_provider.resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    resolved = _settings_for_capture(settings)
    resolved = dataclasses.replace(
        resolved, tracer_provider=tracer_provider, meter_provider=meter_provider, logger_provider=logger_provider
    )
    runtime = _runtime.Runtime(resolved, tracer_provider, meter_provider, logger_provider=logger_provider)
    previous = _runtime.swap(runtime)
    try:
        yield Captured(exporter, reader, tracer_provider, logs)
    finally:
        _runtime.swap(previous)
        if runtime.content_hook is not None:
            runtime.content_hook.shutdown()  # every record queued in the block went through the hook
        meter_provider.shutdown()
        tracer_provider.shutdown()
        logger_provider.shutdown()


def _settings_for_capture(overrides: dict[str, Any]) -> _config.Settings:
    """The current configuration with ``overrides`` on top (validated as ``configure()`` would).

    Only the export side is swapped for in-memory providers: what the user configured (prices,
    content policy, ...) still applies, else a test would see other costs than production."""
    runtime = _runtime.CURRENT
    if not runtime.configured:  # nothing configured yet: the environment and defaults, as configure() would
        return _config.resolve({**overrides, "instrument": False})
    current = runtime.settings
    given = {field.name: getattr(current, field.name) for field in dataclasses.fields(current)}
    if "capture_content" in overrides and "content_destination" not in overrides:
        del given["content_destination"]  # the new capture value says where (or the default does)
        capture_off = not _config_parse.parse_capture("capture_content", overrides["capture_content"]).mode
        if capture_off and "content_hook" not in overrides:
            del given["content_hook"]  # a hook needs capture on: capture_content=False in a test drops it
    return _config.resolve({**given, **overrides, "instrument": False})
