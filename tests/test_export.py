"""Export presets and the batch processor, checked by what arrives at real loopback receivers.

Every preset is built by ``plan_export`` exactly as ``configure()`` builds it, and its spans and
metrics go over real sockets to the OTLP receivers in ``otlp_receiver.py``; failure modes (503,
a receiver that never answers, nothing listening, an exporter that hangs forever) check that the
caller's thread stays fast, that failures and drops are counted, and that shutdown keeps its deadline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality as ProtoTemporality
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from otlp_receiver import DeadPort, GrpcReceiver, HttpReceiver, Mode, running

from llmwatch import _health
from llmwatch._config import ConfigurationError
from llmwatch._export._batch import LlmwatchSpanProcessor
from llmwatch._export._file import SPAN_FILE_DEFAULT, JsonLinesSpanExporter
from llmwatch._export._limits import truncate_value
from llmwatch._export._presets import PRESETS, ExportPlan, make_metric_reader, plan_export
from llmwatch._health import HEALTH

GEN_AI_ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 12,
    "llmwatch.cost.usd": 0.00042,
    "llmwatch.user": "u-42",
    "llmwatch.feature": "search",
}


@pytest.fixture(autouse=True)
def _fast_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    # OTel Python reads this in seconds: failed exports give up after ~1 s instead of 10.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")


@pytest.fixture()
def http_receiver() -> Iterator[HttpReceiver]:
    yield from running(HttpReceiver)


@pytest.fixture()
def grpc_receiver() -> Iterator[GrpcReceiver]:
    yield from running(GrpcReceiver)


def plan(exporter: Any = None, **kwargs: Any) -> ExportPlan:
    arguments: dict[str, Any] = {"endpoint": None, "headers": None, "protocol": None, "file_path": None}
    arguments.update(kwargs)
    return plan_export(exporter, **arguments)


class Pipeline:
    """A TracerProvider wired like configure() wires it: our processor over the plan's exporter."""

    def __init__(self, span_exporter: SpanExporter, **processor_options: Any) -> None:
        self.processor = LlmwatchSpanProcessor(span_exporter, **processor_options)
        self.provider = TracerProvider(resource=Resource({"service.name": "svc"}), shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("llmwatch", "0.1.0")

    def llm_span(self, name: str = "chat gpt-4o-mini", **attributes: Any) -> None:
        with self.tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
            span.set_attributes({**GEN_AI_ATTRIBUTES, **attributes})

    def timed_spans(self, count: int) -> tuple[list[int], list[int]]:
        """End ``count`` spans; the wall and CPU nanoseconds each ``end()`` took on this (the caller's) thread."""
        walls, cpus = [], []
        for index in range(count):
            span = self.tracer.start_span(f"chat {index}", kind=SpanKind.CLIENT, attributes=GEN_AI_ATTRIBUTES)
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            span.end()
            walls.append(time.perf_counter_ns() - started)
            cpus.append(time.thread_time_ns() - started_cpu)
        return walls, cpus

    def shutdown(self, timeout_millis: int = 5000) -> None:
        self.processor.shutdown(timeout_millis=timeout_millis)


class GatedExporter(SpanExporter):
    """Records batches; ``hold()`` makes the next export block until ``release()`` (or forever)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self._gate = threading.Event()
        self._gate.set()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self._gate.wait()
        self.batches.append([span.name for span in spans])
        return SpanExportResult.SUCCESS

    @property
    def names(self) -> list[str]:
        return [name for batch in self.batches for name in batch]


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def p99_ms(durations_ns: list[int]) -> float:
    return statistics.quantiles(durations_ns, n=100)[98] / 1e6


# --- presets: what arrives -----------------------------------------------------------------------------
def test_otlp_http_spans_arrive_with_attributes_resource_and_headers(http_receiver: HttpReceiver) -> None:
    export_plan = plan("otlp", endpoint=http_receiver.endpoint, headers={"X-Team": "llm"})
    assert export_plan.description == f"otlp http/protobuf -> {http_receiver.endpoint}/v1/traces headers: x-team"
    pipeline = Pipeline(export_plan.span_exporter)
    for _ in range(3):
        pipeline.llm_span()
    assert pipeline.processor.force_flush(5000)

    spans = http_receiver.wait_for_spans(3)
    assert [s.name for s in spans] == ["chat gpt-4o-mini"] * 3
    assert spans[0].attributes == GEN_AI_ATTRIBUTES
    assert spans[0].resource["service.name"] == "svc"
    assert spans[0].request.path == "/v1/traces"
    assert spans[0].request.headers["x-team"] == "llm"
    assert spans[0].request.headers["content-type"] == "application/x-protobuf"
    assert HEALTH.exports_succeeded.value >= 1
    assert HEALTH.spans_dropped.value == 0
    pipeline.shutdown()


def test_otlp_grpc_spans_arrive_with_attributes_resource_and_metadata(grpc_receiver: GrpcReceiver) -> None:
    export_plan = plan("otlp", endpoint=grpc_receiver.endpoint, protocol="grpc", headers={"x-team": "llm"})
    assert export_plan.description.startswith(f"otlp grpc -> {grpc_receiver.endpoint} (plaintext)")
    pipeline = Pipeline(export_plan.span_exporter)
    pipeline.llm_span(**{"llmwatch.session": "s-1"})
    assert pipeline.processor.force_flush(5000)

    (span,) = grpc_receiver.wait_for_spans(1)
    assert span.attributes == {**GEN_AI_ATTRIBUTES, "llmwatch.session": "s-1"}
    assert span.resource["service.name"] == "svc"
    assert span.proto.kind == span.proto.SPAN_KIND_CLIENT
    assert span.request.headers["x-team"] == "llm"
    pipeline.shutdown()


def test_otlp_environment_variables_are_honoured_over_http(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-env=1,x-both=from-env")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    export_plan = plan(None, headers={"x-both": "from-argument"})
    assert export_plan.description.startswith(f"otlp http/protobuf -> {http_receiver.endpoint}/v1/traces")
    pipeline = Pipeline(export_plan.span_exporter)
    pipeline.llm_span()
    assert pipeline.processor.force_flush(5000)
    (span,) = http_receiver.wait_for_spans(1)
    assert span.request.path == "/v1/traces"
    assert span.request.gzip is True
    assert span.request.headers["x-env"] == "1"
    assert span.request.headers["x-both"] == "from-argument"  # explicit beats environment

    meter_provider = MeterProvider(metric_readers=[_reader(export_plan)], resource=Resource({"service.name": "svc"}))
    meter_provider.get_meter("llmwatch").create_counter("llmwatch.cost", unit="USD").add(0.5, {"llmwatch.user": "u"})
    assert meter_provider.force_flush(5000)
    (request,) = http_receiver.wait_for_requests(1, "metrics")
    assert request.path == "/v1/metrics"
    assert request.headers["x-both"] == "from-argument"
    # No preset asked for delta: OTel's default (cumulative) applies.
    assert http_receiver.metrics()["llmwatch.cost"].sum.aggregation_temporality == ProtoTemporality.Value(
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    )
    meter_provider.shutdown(timeout_millis=2000)
    pipeline.shutdown()


def test_per_signal_protocols_and_endpoints_from_the_environment(
    grpc_receiver: GrpcReceiver, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", grpc_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{http_receiver.endpoint}/v1/metrics")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-env=1")
    export_plan = plan("otlp", headers={"x-arg": "2"})
    assert export_plan.description.startswith(f"otlp grpc -> {grpc_receiver.endpoint}")
    pipeline = Pipeline(export_plan.span_exporter)
    pipeline.llm_span()
    assert pipeline.processor.force_flush(5000)
    (span,) = grpc_receiver.wait_for_spans(1)
    # OTel's gRPC exporter alone would drop the env headers once given any; llmwatch merges them.
    assert span.request.headers["x-env"] == "1"
    assert span.request.headers["x-arg"] == "2"

    meter_provider = MeterProvider(metric_readers=[_reader(export_plan)])
    meter_provider.get_meter("llmwatch").create_counter("calls").add(1)
    assert meter_provider.force_flush(5000)
    assert http_receiver.wait_for_requests(1, "metrics")[0].path == "/v1/metrics"
    meter_provider.shutdown(timeout_millis=2000)
    pipeline.shutdown()


def test_explicit_endpoint_beats_the_environment(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    with DeadPort() as dead:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", dead.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{dead.endpoint}/v1/traces")
        pipeline = Pipeline(plan("otlp", endpoint=http_receiver.endpoint + "/").span_exporter)
        pipeline.llm_span()
        assert pipeline.processor.force_flush(5000)
        assert len(http_receiver.wait_for_spans(1)) == 1
        pipeline.shutdown()


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_datadog_agentless_headers_and_delta_metrics(
    transport: str, http_receiver: HttpReceiver, grpc_receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver: Any = http_receiver if transport == "http" else grpc_receiver
    monkeypatch.setenv("DD_API_KEY", "dd-secret")
    export_plan = plan(
        "datadog", endpoint=receiver.endpoint, protocol="grpc" if transport == "grpc" else "http/protobuf"
    )
    assert export_plan.recommended_batch_size == 100
    assert "dd-secret" not in export_plan.description
    pipeline = Pipeline(export_plan.span_exporter, max_export_batch_size=export_plan.recommended_batch_size)
    pipeline.llm_span()
    assert pipeline.processor.force_flush(5000)
    (span,) = receiver.wait_for_spans(1)
    assert span.request.headers["dd-api-key"] == "dd-secret"
    assert span.request.headers["dd-otlp-source"] == "llmobs"
    assert span.attributes["llmwatch.cost.usd"] == pytest.approx(0.00042)

    _assert_delta_metrics(export_plan, receiver)
    pipeline.shutdown()


def test_datadog_without_api_key_sends_no_key_and_targets_the_agent(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(plan("datadog", endpoint=http_receiver.endpoint).span_exporter)
    pipeline.llm_span()
    assert pipeline.processor.force_flush(5000)
    (span,) = http_receiver.wait_for_spans(1)
    assert "dd-api-key" not in span.request.headers
    pipeline.shutdown()

    monkeypatch.setenv("DD_AGENT_HOST", "dd-agent.internal")
    monkeypatch.setenv("DD_API_KEY", "dd-secret")  # agent mode (no endpoint): the Agent holds the key
    assert plan("datadog").description == "datadog http/protobuf -> http://dd-agent.internal:4318/v1/traces"
    assert plan("datadog", protocol="grpc").description == "datadog grpc -> http://dd-agent.internal:4317 (plaintext)"
    monkeypatch.delenv("DD_AGENT_HOST")
    assert plan("datadog").description == "datadog http/protobuf -> http://localhost:4318/v1/traces"


def test_newrelic_key_gzip_attribute_limits_and_delta_metrics(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEW_RELIC_LICENSE_KEY", "nr-license")
    export_plan = plan("newrelic", endpoint=http_receiver.endpoint)
    assert export_plan.recommended_batch_size == 100
    assert "nr-license" not in export_plan.description
    pipeline = Pipeline(export_plan.span_exporter, max_export_batch_size=export_plan.recommended_batch_size)
    prompt = "HEAD" + "x" * 20_000 + "TAIL"
    long_key = "llmwatch.tag." + "k" * 300
    with pipeline.tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as live:
        live.set_attributes(GEN_AI_ATTRIBUTES)
        live.set_attribute("gen_ai.input.messages", prompt)
        live.set_attribute("llmwatch.tags", [f"t{i}" for i in range(100)])
        live.set_attribute(long_key, "v")
        live.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.explanation": prompt})
    assert pipeline.processor.force_flush(5000)

    (span,) = http_receiver.wait_for_spans(1)
    assert span.request.headers["api-key"] == "nr-license"
    assert span.request.gzip is True
    sent = span.attributes["gen_ai.input.messages"]
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    assert len(sent) == 4095
    assert sent.startswith("HEAD") and sent.endswith("TAIL")
    assert f"chars sha256:{digest}]..." in sent
    assert len(span.attributes["llmwatch.tags"]) == 64
    assert long_key[:255] in span.attributes and long_key not in span.attributes
    assert len(span.proto.events[0].attributes[0].value.string_value) == 4095
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"  # short values untouched

    _assert_delta_metrics(export_plan, http_receiver)
    assert http_receiver.requests("metrics")[0].gzip is True
    assert http_receiver.requests("metrics")[0].headers["api-key"] == "nr-license"
    pipeline.shutdown()


def test_newrelic_regions_and_key_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEW_RELIC_LICENSE_KEY", "k")
    assert (
        plan("newrelic").description
        == "newrelic http/protobuf -> https://otlp.nr-data.net/v1/traces gzip headers: api-key"
    )
    monkeypatch.setenv("NEW_RELIC_REGION", "EU")
    assert plan("newrelic").description.startswith("newrelic http/protobuf -> https://otlp.eu01.nr-data.net/v1/traces")
    assert plan("newrelic", protocol="grpc").description.startswith(
        "newrelic grpc -> https://otlp.eu01.nr-data.net:4317 gzip (TLS)"
    )
    monkeypatch.delenv("NEW_RELIC_LICENSE_KEY")
    assert "api-key" in plan("newrelic", headers={"Api-Key": "k"}).description
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=k")  # as New Relic's own docs set it
    assert plan("newrelic").span_exporter is not None


def _assert_delta_metrics(export_plan: ExportPlan, receiver: Any) -> None:
    meter_provider = MeterProvider(metric_readers=[_reader(export_plan)], resource=Resource({"service.name": "svc"}))
    meter = meter_provider.get_meter("llmwatch")
    meter.create_counter("llmwatch.cost", unit="USD").add(0.25, {"gen_ai.request.model": "gpt-4o-mini"})
    meter.create_histogram("gen_ai.client.token.usage", unit="{token}").record(12, {"gen_ai.token.type": "input"})
    assert meter_provider.force_flush(5000)
    assert receiver.wait_for(lambda: "gen_ai.client.token.usage" in receiver.metrics())
    metrics = receiver.metrics()
    delta = ProtoTemporality.Value("AGGREGATION_TEMPORALITY_DELTA")
    assert metrics["llmwatch.cost"].sum.aggregation_temporality == delta
    assert metrics["llmwatch.cost"].sum.data_points[0].as_double == pytest.approx(0.25)
    assert metrics["gen_ai.client.token.usage"].histogram.aggregation_temporality == delta
    meter_provider.shutdown(timeout_millis=2000)


def _reader(export_plan: ExportPlan) -> PeriodicExportingMetricReader:
    reader = make_metric_reader(export_plan)
    assert isinstance(reader, PeriodicExportingMetricReader)
    return reader


# --- failure modes -------------------------------------------------------------------------------------
FAILURES = [
    ("http", Mode.UNAVAILABLE),
    ("http", Mode.HANG),
    ("http", None),  # nothing listening
    ("grpc", Mode.UNAVAILABLE),
    ("grpc", Mode.HANG),
    ("grpc", None),
]


@pytest.mark.parametrize(("transport", "mode"), FAILURES, ids=[f"{t}-{m.value if m else 'dead'}" for t, m in FAILURES])
def test_failing_collector_keeps_the_caller_fast_and_counts_everything(transport: str, mode: Mode | None) -> None:
    receiver: Any = DeadPort() if mode is None else (HttpReceiver() if transport == "http" else GrpcReceiver())
    with receiver:
        if mode is not None:
            receiver.mode = mode
        protocol = "grpc" if transport == "grpc" else "http/protobuf"
        pipeline = Pipeline(
            plan("otlp", endpoint=receiver.endpoint, protocol=protocol).span_exporter, schedule_delay_ms=50
        )
        walls, cpus = pipeline.timed_spans(500)
        # end() is a deque append: its CPU time, which a loaded machine does not stretch, stays tiny.
        assert p99_ms(cpus) < 1.0, f"p99 span.end() CPU {p99_ms(cpus):.3f} ms"
        # And it never waits: an export to this collector takes a second or more (OTel's retry
        # backoff, or its 10 s timeout); preemption on a loaded machine costs milliseconds.
        assert statistics.median(walls) / 1e6 < 1.0
        assert max(walls) / 1e6 < 500, f"slowest span.end() {max(walls) / 1e6:.1f} ms"

        assert wait_until(lambda: HEALTH.spans_dropped.value == 500, timeout=15)
        assert HEALTH.exports_failed.value >= 1
        assert HEALTH.exports_succeeded.value == 0
        assert HEALTH.last_export_error == "exporter returned FAILURE"
        if mode is not None:
            assert receiver.wait_for_requests(1)  # the requests did reach the receiver
        started = time.monotonic()
        pipeline.shutdown(timeout_millis=2000)
        assert time.monotonic() - started < 2 + 2.0  # its 2 s (the exporter's own timeout is 10 s), plus slack


def test_hung_collector_cannot_hold_shutdown(http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")  # the exporter would wait 30 s
    http_receiver.mode = Mode.HANG
    pipeline = Pipeline(plan("otlp", endpoint=http_receiver.endpoint).span_exporter, schedule_delay_ms=20)
    pipeline.llm_span()
    assert http_receiver.wait_for_requests(1)  # the export is now stuck inside the exporter
    for _ in range(4):
        pipeline.llm_span()
    started = time.monotonic()
    assert pipeline.processor.force_flush(300) is False
    pipeline.shutdown(timeout_millis=1000)
    assert time.monotonic() - started < 1.3 + 3.0  # its 1.3 s, plus a loaded machine's slack, never the 30 s
    assert HEALTH.spans_dropped.value == 5  # 1 in the abandoned export + 4 still queued
    assert "shutdown deadline" in (HEALTH.last_export_error or "")


def test_export_deadline_fails_a_stalled_export_and_shutdown_returns() -> None:
    exporter = GatedExporter()
    exporter.hold()  # never returns until released
    # The worker never wakes on its own: all 5 spans go in one batch, however slowly a loaded
    # machine makes them (a 20 ms schedule used to split them).
    pipeline = Pipeline(exporter, export_timeout_ms=300, schedule_delay_ms=600_000)
    for _ in range(5):
        pipeline.llm_span()
    assert pipeline.processor.force_flush(0) is False  # wake the worker; do not wait
    assert exporter.entered.wait(5)
    assert wait_until(lambda: HEALTH.exports_failed.value == 1, timeout=5)
    assert HEALTH.spans_dropped.value == 5
    assert HEALTH.last_export_error == "export did not finish within 0.3s (OTEL_BSP_EXPORT_TIMEOUT)"

    for _ in range(3):  # queued behind the stalled call: the exporter is never called twice at once
        pipeline.llm_span()
    started = time.monotonic()
    assert pipeline.processor.force_flush(200) is False
    pipeline.shutdown(timeout_millis=500)
    assert time.monotonic() - started < 0.7 + 3.0  # its 0.7 s plus slack; the stalled export never returns
    assert HEALTH.spans_dropped.value == 8
    assert HEALTH.exports_failed.value == 1
    exporter.release()


def test_exporter_exception_is_counted_with_its_reason() -> None:
    class Broken(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            raise RuntimeError("collector exploded")

    pipeline = Pipeline(Broken())
    pipeline.llm_span()
    pipeline.llm_span()
    assert pipeline.processor.force_flush(2000) is False
    assert HEALTH.exports_failed.value == 1
    assert HEALTH.spans_dropped.value == 2
    assert HEALTH.last_export_error == "RuntimeError: collector exploded"
    pipeline.shutdown()


def test_full_queue_drops_the_new_spans_and_counts_them_exactly(caplog: pytest.LogCaptureFixture) -> None:
    exporter = GatedExporter()
    exporter.hold()
    pipeline = Pipeline(exporter, max_queue_size=10, max_export_batch_size=5, schedule_delay_ms=60_000)
    for index in range(5):
        pipeline.llm_span(f"first-{index}")
    assert exporter.entered.wait(5)  # the worker holds those 5; the queue is empty again
    with caplog.at_level(logging.WARNING, logger="llmwatch"):
        for index in range(15):
            pipeline.llm_span(f"second-{index}")
    assert HEALTH.spans_dropped.value == 5
    assert [r.message for r in caplog.records] == [  # once per interval, not once per dropped span
        "llmwatch: the export queue is full (10 spans); new spans are dropped and counted in "
        "llmwatch.stats()['spans_dropped'] (1 so far). Is the collector reachable? (logged at most once a minute)"
    ]

    exporter.release()
    assert pipeline.processor.force_flush(5000)
    # The oldest spans were kept, the newest dropped.
    assert exporter.names == [f"first-{i}" for i in range(5)] + [f"second-{i}" for i in range(10)]
    assert HEALTH.spans_dropped.value == 5
    assert HEALTH.exports_failed.value == 0
    pipeline.shutdown()


def test_batches_are_cut_at_the_batch_size_without_waiting_for_the_delay() -> None:
    exporter = GatedExporter()
    pipeline = Pipeline(exporter, max_export_batch_size=4, schedule_delay_ms=60_000)
    for index in range(8):
        pipeline.llm_span(f"s{index}")
    assert wait_until(lambda: len(exporter.names) == 8, timeout=5)
    assert [len(batch) for batch in exporter.batches] == [4, 4]
    pipeline.llm_span("tail")
    assert pipeline.processor.force_flush(2000)
    assert exporter.batches[-1] == ["tail"]
    pipeline.shutdown()


def test_exports_run_with_instrumentation_suppressed() -> None:
    seen: list[object] = []

    class Spy(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            seen.append(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
            return SpanExportResult.SUCCESS

    pipeline = Pipeline(Spy())
    pipeline.llm_span()
    assert pipeline.processor.force_flush(2000)
    assert seen == [True]
    assert otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY) is None
    pipeline.shutdown()


def test_shutdown_exports_what_is_queued_and_later_spans_are_counted() -> None:
    exporter = GatedExporter()
    pipeline = Pipeline(exporter, schedule_delay_ms=60_000)
    pipeline.llm_span("before")
    pipeline.shutdown()
    assert exporter.names == ["before"]
    pipeline.llm_span("after")
    assert HEALTH.spans_dropped.value == 1
    assert pipeline.processor.force_flush(100) is True  # nothing left to flush
    pipeline.shutdown()  # a second shutdown is a no-op


def test_exports_still_run_when_python_refuses_new_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = GatedExporter()
    pipeline = Pipeline(exporter, schedule_delay_ms=60_000)

    class Refused(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

    # What Python 3.12+ does in atexit, where OTel's TracerProvider shuts our processor down.
    monkeypatch.setattr(threading, "Thread", Refused)
    pipeline.llm_span("at-exit")
    pipeline.shutdown(timeout_millis=2000)
    assert exporter.names == ["at-exit"]
    assert HEALTH.exports_succeeded.value == 1


def test_processor_settings_from_otel_bsp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = GatedExporter()
    processor = LlmwatchSpanProcessor.from_env(exporter, max_export_batch_size=100)
    assert (processor._max_queue_size, processor._batch_size) == (2048, 100)
    assert (processor._schedule_delay_s, processor._export_timeout_s) == (1.0, 30.0)
    processor.shutdown()

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "7")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "3")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "40")
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "900")
    processor = LlmwatchSpanProcessor.from_env(exporter, max_export_batch_size=100)
    assert (processor._max_queue_size, processor._batch_size) == (7, 3)  # the env wins over the preset
    assert (processor._schedule_delay_s, processor._export_timeout_s) == (0.04, 0.9)
    processor.shutdown()

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    with pytest.raises(ConfigurationError, match="OTEL_BSP_MAX_QUEUE_SIZE='lots' must be a whole number above 0"):
        LlmwatchSpanProcessor.from_env(exporter)
    with pytest.raises(ConfigurationError, match="max_queue_size=0 must be a whole number above 0"):
        LlmwatchSpanProcessor(exporter, max_queue_size=0)


# --- simple presets and metrics plumbing ---------------------------------------------------------------
def test_console_none_file_and_user_exporter_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console = plan("console")
    assert isinstance(console.span_exporter, ConsoleSpanExporter)
    assert isinstance(console.metric_exporter, ConsoleMetricExporter)
    none = plan(" None ")
    assert none.metric_exporter is None and make_metric_reader(none) is None
    assert none.span_exporter.export([]) is SpanExportResult.SUCCESS
    monkeypatch.chdir(tmp_path)
    file_plan = plan("file")
    assert isinstance(file_plan.span_exporter, JsonLinesSpanExporter)
    assert file_plan.span_exporter.path == tmp_path / SPAN_FILE_DEFAULT
    assert file_plan.metric_exporter is None
    mine = GatedExporter()
    user_plan = plan(mine)
    assert user_plan.span_exporter is mine
    assert user_plan.metric_exporter is None
    assert user_plan.description == "GatedExporter (your exporter)"
    assert set(PRESETS) == {"otlp", "datadog", "newrelic", "console", "file", "none"}


def test_metric_interval_and_metrics_off_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan("otlp").metric_interval_ms == 60000
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "1234")
    export_plan = plan("otlp")
    assert export_plan.metric_interval_ms == 1234
    quiet = dataclasses.replace(export_plan, metric_exporter=ConsoleMetricExporter(out=io.StringIO()))
    reader = _reader(quiet)
    assert reader._export_interval_millis == 1234
    MeterProvider(metric_readers=[reader]).shutdown(timeout_millis=1000)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert plan("otlp").metric_exporter is None
    assert plan("console").metric_exporter is None


def test_otel_traces_exporter_picks_the_preset_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert isinstance(plan(None).span_exporter, ConsoleSpanExporter)
    assert plan("none").description.startswith("none")  # an explicit argument still wins


# --- JSON Lines ------------------------------------------------------------------------------------------
def test_json_lines_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    pipeline = Pipeline(plan("file", file_path=str(path)).span_exporter)
    with pipeline.tracer.start_as_current_span("handler") as parent:
        linked = parent.get_span_context()
        with pipeline.tracer.start_as_current_span(
            "chat gpt-4o-mini", kind=SpanKind.CLIENT, links=[Link(linked, {"llmwatch.link": "prompt"})]
        ) as child:
            child.set_attributes(GEN_AI_ATTRIBUTES)
            child.set_attribute("gen_ai.response.finish_reasons", ("stop", "length"))
            child.set_attribute("llmwatch.note", "naïve 日本語\nsecond line")
            child.set_attribute("llmwatch.weird", float("nan"))
            child.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.score.value": 0.9})
            child.set_status(Status(StatusCode.ERROR, "RateLimitError"))
    assert pipeline.processor.force_flush(2000)

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    child_record, parent_record = (json.loads(line) for line in lines)
    assert child_record["name"] == "chat gpt-4o-mini"
    assert child_record["kind"] == "CLIENT"
    assert child_record["trace_id"] == parent_record["trace_id"] == f"{linked.trace_id:032x}"
    assert len(child_record["trace_id"]) == 32 and child_record["trace_id"] == child_record["trace_id"].lower()
    assert child_record["parent_span_id"] == parent_record["span_id"] == f"{linked.span_id:016x}"
    assert parent_record["parent_span_id"] is None
    assert 0 < child_record["start_time_unix_nano"] <= child_record["end_time_unix_nano"]
    assert isinstance(child_record["end_time_unix_nano"], int)
    assert child_record["status"] == {"code": "ERROR", "description": "RateLimitError"}
    assert child_record["attributes"]["llmwatch.cost.usd"] == 0.00042
    assert child_record["attributes"]["gen_ai.response.finish_reasons"] == ["stop", "length"]
    assert child_record["attributes"]["llmwatch.note"] == "naïve 日本語\nsecond line"
    assert child_record["attributes"]["llmwatch.weird"] == "NaN"
    assert child_record["events"][0]["name"] == "gen_ai.evaluation.result"
    assert child_record["events"][0]["attributes"] == {"gen_ai.evaluation.score.value": 0.9}
    assert isinstance(child_record["events"][0]["time_unix_nano"], int)
    assert child_record["links"] == [
        {
            "trace_id": parent_record["trace_id"],
            "span_id": parent_record["span_id"],
            "attributes": {"llmwatch.link": "prompt"},
        }
    ]
    assert child_record["resource"]["service.name"] == "svc"
    assert child_record["scope"] == {"name": "llmwatch", "version": "0.1.0"}
    assert path.stat().st_mode & 0o777 == 0o600  # it may hold prompts
    pipeline.shutdown()

    again = Pipeline(plan("file", file_path=str(path)).span_exporter)  # appends, never truncates
    again.llm_span()
    assert again.processor.force_flush(2000)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    again.shutdown()


def test_json_lines_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = JsonLinesSpanExporter(path, max_bytes=3000)
    pipeline = Pipeline(exporter, max_export_batch_size=2, schedule_delay_ms=60_000)
    for index in range(40):
        pipeline.llm_span(f"span-{index}")
        if index % 2:
            assert pipeline.processor.force_flush(2000)
    rotated = path.with_name("spans.jsonl.1")
    assert rotated.exists()
    current = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    previous = [json.loads(line) for line in rotated.read_text(encoding="utf-8").splitlines()]
    assert current[-1]["name"] == "span-39"
    assert path.stat().st_size < 3000 + 2 * 1000  # rotated before growing past the limit by more than a batch
    assert rotated.stat().st_size >= 3000
    names = [record["name"] for record in previous + current]
    assert names == [f"span-{i}" for i in range(40 - len(names), 40)]  # contiguous, nothing lost between files
    pipeline.shutdown()


# --- configuration errors ------------------------------------------------------------------------------
CONFIG_ERRORS: list[tuple[dict[str, Any], dict[str, str], str]] = [
    ({"exporter": "carrier-pigeon"}, {}, "exporter='carrier-pigeon' is not known: use one of 'otlp', 'datadog'"),
    ({"exporter": 42}, {}, "exporter=42 is not known"),
    ({"exporter": ConsoleSpanExporter}, {}, "is a class: pass an instance, e.g. exporter=ConsoleSpanExporter"),
    ({"protocol": "http/json"}, {}, "protocol='http/json' is not supported .*use 'grpc' or 'http/protobuf'"),
    ({"protocol": "tcp"}, {}, "protocol='tcp' is not supported: use 'grpc' or 'http/protobuf'"),
    ({}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_PROTOCOL='thrift' is not supported"),
    ({"endpoint": "localhost:4318"}, {}, "needs a scheme for http/protobuf: e.g. http://localhost:4318"),
    ({"endpoint": "http://localhost:99999"}, {}, "has an invalid port"),
    ({"endpoint": "ftp://collector:4318"}, {}, "is malformed: use a URL like http://localhost:4318"),
    ({"endpoint": "http://:4318"}, {}, "is malformed"),
    (
        {"endpoint": "http://collector:4318/v1/traces"},
        {},
        "is a base URL: llmwatch appends /v1/traces .* drop '/v1/traces'",
    ),
    ({"endpoint": "collector:4317/x", "protocol": "grpc"}, {}, "a gRPC endpoint is host:port without a path"),
    (
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' needs a scheme",
    ),
    (
        {},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:x/v1/traces"},
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=.* invalid port",
    ),
    (
        {},
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
        "OTEL_EXPORTER_OTLP_TIMEOUT='10s' must be a positive number of seconds",
    ),
    (
        {},
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
        "OTEL_EXPORTER_OTLP_COMPRESSION='zstd' is not supported: use gzip",
    ),
    ({}, {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE=.*no such file"),
    ({}, {"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "OTEL_METRIC_EXPORT_INTERVAL='soon' must be a whole number above 0"),
    ({"exporter": None}, {"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not supported"),
    ({"headers": {"x-bad": "a\r\nInjected: 1"}}, {}, "headers: 'x-bad' is not a valid header"),
    ({"exporter": "newrelic"}, {}, "needs your New Relic license key: set NEW_RELIC_LICENSE_KEY, or pass headers="),
    (
        {"exporter": "newrelic"},
        {"NEW_RELIC_LICENSE_KEY": "k", "NEW_RELIC_REGION": "mars"},
        "NEW_RELIC_REGION='mars' is not known",
    ),
    ({"exporter": "datadog"}, {"DD_AGENT_HOST": "bad host:1"}, "DD_AGENT_HOST='bad host:1'"),
    (
        {"exporter": "file", "file_path": "/nonexistent-dir/spans.jsonl"},
        {},
        "directory '/nonexistent-dir' does not exist",
    ),
]


@pytest.mark.parametrize(("arguments", "environ", "message"), CONFIG_ERRORS, ids=[m[:40] for _, _, m in CONFIG_ERRORS])
def test_configuration_errors_say_how_to_fix_them(
    arguments: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    arguments = {
        "exporter": "otlp",
        "endpoint": None,
        "headers": None,
        "protocol": None,
        "file_path": None,
        **arguments,
    }
    exporter = arguments.pop("exporter")
    with pytest.raises(ConfigurationError, match=message):
        plan_export(exporter, environ=environ, **arguments)


def test_file_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory: give a file name"):
        plan("file", file_path=str(tmp_path))


# --- truncation --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [4096, 5000, 14_095, 100_000, 1_234_567])
def test_truncate_value_keeps_head_and_tail_and_names_the_cut(length: int) -> None:
    value = "".join(chr(65 + i % 26) for i in range(length))
    cut = truncate_value(value, 4095)
    assert len(cut) == 4095
    head, rest = cut.split("...[truncated ", 1)
    removed, rest = rest.split(" chars sha256:", 1)
    digest, tail = rest.split("]...", 1)
    assert digest == hashlib.sha256(value.encode()).hexdigest()[:12]
    assert value.startswith(head) and value.endswith(tail)
    assert int(removed) == length - len(head) - len(tail)
    assert truncate_value("short", 4095) == "short"


# --- fork safety ---------------------------------------------------------------------------------------
def _run_in_child(child: Any, timeout: float = 20.0) -> int:
    """Fork; run ``child()`` (True = success) in the child; the child's exit code, or fail on a hang."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; it never returns to pytest
        code = 1
        try:
            code = 0 if child() else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child deadlocked")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() in a multi-threaded process
def test_fork_while_the_worker_holds_the_file_exporter_lock(tmp_path: Path) -> None:
    parent_pid = os.getpid()
    stuck = threading.Event()
    unstick = threading.Event()

    class StickyFileExporter(JsonLinesSpanExporter):
        def _rotate_if_needed(self) -> None:  # runs under the exporter's lock
            if os.getpid() == parent_pid and not unstick.is_set():
                stuck.set()
                unstick.wait()
            super()._rotate_if_needed()

    path = tmp_path / "spans.jsonl"
    pipeline = Pipeline(StickyFileExporter(path), schedule_delay_ms=20)
    pipeline.llm_span("parent-before-fork")
    assert stuck.wait(5)  # the parent's worker is inside export(), holding both our locks

    def child() -> bool:
        for index in range(3):
            pipeline.llm_span(f"child-{index}")
        return pipeline.processor.force_flush(5000)

    assert _run_in_child(child) == 0
    unstick.set()
    pipeline.llm_span("parent-after-fork")
    assert pipeline.processor.force_flush(5000)
    names = [json.loads(line)["name"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert sorted(names) == ["child-0", "child-1", "child-2", "parent-after-fork", "parent-before-fork"]
    pipeline.shutdown()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_child_exports_over_its_own_otlp_connection(http_receiver: HttpReceiver) -> None:
    pipeline = Pipeline(plan("otlp", endpoint=http_receiver.endpoint).span_exporter)
    pipeline.llm_span("parent")
    assert pipeline.processor.force_flush(5000)  # the parent now holds a pooled keep-alive connection

    def child() -> bool:
        pipeline.llm_span("child", **{"llmwatch.user": "forked"})
        return pipeline.processor.force_flush(5000)

    assert _run_in_child(child) == 0
    spans = http_receiver.wait_for_spans(2)
    assert sorted(s.name for s in spans) == ["child", "parent"]
    pipeline.llm_span("parent-again")  # the parent's own connection still works
    assert pipeline.processor.force_flush(5000)
    peers = {s.name: s.request.peer for s in http_receiver.wait_for_spans(3)}
    assert peers["parent"] == peers["parent-again"]  # one keep-alive connection in the parent...
    assert peers["child"] != peers["parent"]  # ...never shared with the child
    pipeline.shutdown()


def test_persistent_export_trouble_is_logged_again_each_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_health.time, "monotonic", lambda: clock[0])
    assert HEALTH.due("export failed") is True
    assert HEALTH.due("export failed") is False
    clock[0] += _health.LOG_INTERVAL_S - 1
    assert HEALTH.due("export failed") is False
    clock[0] += 1
    assert HEALTH.due("export failed") is True
