"""``llmwatch drill SCENARIO``: synthetic telemetry that makes the alerts of ``docs/alerts/`` fire.

A team that has imported the monitors wants to see them page (the right channel, the right runbook
link) before a real incident does it for them. A drill configures llmwatch as the environment says
(``OTEL_EXPORTER_OTLP_*``, ``LLMWATCH_*``; ``--endpoint``/``--protocol``/``--service`` override),
sends LLM-call-shaped spans and the metric points llmwatch's own instruments would record for such
calls (the scenarios are in ``_drill_scenarios.py``), flushes, and says whether everything was
exported. Every span and point carries ``llmwatch.drill=true`` and ``llmwatch.drill.scenario``, so a
monitor or a notification rule can tell a drill from an incident (docs/drills.md).

The points come from the drill's own instruments (meter ``llmwatch.drill``) with the names, units and
bucket advice of the real ones: a backend cannot tell them apart, which is the point. Spans get
explicit start and end times, so a 40 s latency spike needs no 40 s wait. This module never imports
the public API (it sits beside ``_api`` in the layers): the command line hands it in as :class:`Api`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from llmwatch import _config
from llmwatch import _semconv as sc
from llmwatch._core import _runtime
from llmwatch._errors import ConfigurationError
from llmwatch._policy._budget import REASON_BUDGET
from llmwatch._recovery._drill_scenarios import (
    DEFAULT_FEATURE,
    DEFAULT_MODEL,
    REFUSED_ERROR,
    SCENARIOS,
    Call,
    Plan,
    describe,
    plan_for,
)

EXIT_OK = 0
EXIT_EXPORT_FAILED = 1
EXIT_USAGE = 2
DRILL_SCOPE: Final = "llmwatch.drill"  # the tracer's and meter's instrumentation scope
DEFAULT_SERVICE: Final = "llmwatch-drill"
SPREAD_S: Final = 120.0  # the calls end evenly over the last two minutes, as real traffic would
FAILURE_COUNTERS: Final = ("exports_failed", "metric_exports_failed", "spans_dropped")

# Kept equal to the real instruments of ``_export/_metrics.py`` (tests/test_drill.py compares them):
# name -> (unit, description, bucket advice).
HISTOGRAMS: Final = {
    sc.METRIC_OPERATION_DURATION: ("s", "GenAI operation duration.", sc.DURATION_BUCKETS),
    sc.METRIC_TIME_TO_FIRST_CHUNK: (
        "s",
        "Time from the request to the first output chunk of a streamed response.",
        sc.DURATION_BUCKETS,
    ),
    sc.METRIC_TOKEN_USAGE: ("{token}", "Number of input and output tokens used.", sc.TOKEN_BUCKETS),
}
COUNTERS: Final = {
    sc.METRIC_COST: ("USD", "Cost of GenAI operations in US dollars."),
    sc.METRIC_ERRORS: ("{error}", "Failed GenAI operations, by error.type."),
    sc.METRIC_REFUSALS: ("{call}", "Calls refused by llmwatch before any I/O (budget exceeded or kill switch)."),
}
GAUGES: Final = {
    sc.METRIC_BUDGET_SPENT: ("USD", "Spent in the current window of each llmwatch budget scope."),
    sc.METRIC_BUDGET_LIMIT: ("USD", "The limit of each llmwatch budget scope."),
    sc.METRIC_CIRCUIT_STATE: ("1", "State of each llmwatch circuit breaker scope: 0 closed, 1 half-open, 2 open."),
}
OBSERVABLE_COUNTERS: Final = {
    sc.METRIC_CIRCUIT_TRANSITIONS: ("{transition}", "Transitions of llmwatch circuit breakers, by the state entered."),
}


class Api(Protocol):
    """What a drill needs of ``llmwatch`` (the module satisfies it)."""

    def configure(
        self,
        *,
        service_name: str | None = ...,
        endpoint: str | None = ...,
        protocol: str | None = ...,
        instrument: bool | None = ...,
    ) -> None: ...

    def force_flush(self, timeout_s: float = ...) -> bool: ...

    def shutdown(self, timeout_s: float = ...) -> None: ...

    def stats(self) -> dict[str, Any]: ...


def add_parser(commands: Any) -> None:
    """The ``drill`` subcommand, on the command line's subparsers."""
    drill = commands.add_parser(
        "drill",
        help="send synthetic telemetry that fires the alerts of docs/alerts (marked llmwatch.drill=true)",
        description="Rehearse an alert: send spans and metrics shaped like an incident through the exporter "
        "llmwatch is configured with (OTEL_EXPORTER_OTLP_*, LLMWATCH_*), so the monitors of docs/alerts fire. "
        "Every span and point carries llmwatch.drill=true and llmwatch.drill.scenario. See docs/drills.md.",
    )
    drill.add_argument("scenario", choices=tuple(SCENARIOS), metavar="SCENARIO", help=f"one of {', '.join(SCENARIOS)}")
    drill.add_argument(
        "--service", metavar="NAME", help=f"service.name (default: $OTEL_SERVICE_NAME, else {DEFAULT_SERVICE})"
    )
    drill.add_argument("--endpoint", metavar="URL", help="OTLP endpoint (default: $OTEL_EXPORTER_OTLP_ENDPOINT)")
    drill.add_argument("--protocol", metavar="P", help="grpc or http/protobuf (default: $OTEL_EXPORTER_OTLP_PROTOCOL)")
    drill.add_argument(
        "--model", type=_name, default=DEFAULT_MODEL, metavar="M", help=f"model named by the calls ({DEFAULT_MODEL})"
    )
    drill.add_argument(
        "--feature", type=_name, default=DEFAULT_FEATURE, metavar="F", help=f"llmwatch.feature ({DEFAULT_FEATURE})"
    )
    drill.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    drill.add_argument("--json", action="store_true", help="print one JSON document")
    drill.add_argument("--timeout", type=_timeout, default=30.0, metavar="S", help="seconds to flush (default 30)")


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def _timeout(text: str) -> float:
    value = float(text)
    if not 0 < value <= 600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 600 seconds, got {text}")
    return value


def run(args: argparse.Namespace, api: Api, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run one drill from parsed arguments; returns the exit code (0: everything was exported)."""
    out = out or sys.stdout
    err = err or sys.stderr
    plan = plan_for(args.scenario, args.model, args.feature)
    service = args.service or _config.env("service_name", default=None) or DEFAULT_SERVICE
    exporter = _config.env("exporter") or "otlp"  # LLMWATCH_EXPORTER, as configure() will read it
    endpoint = args.endpoint or _config.env("otlp_endpoint") or None
    report = {**describe(plan), "service_name": service, "exporter": str(exporter), "endpoint": _shown(endpoint)}
    if args.dry_run:  # nothing configured, nothing opened: the plan only
        report["dry_run"] = True
        _print(report, args.json, out, _plan_lines(report, dry_run=True))
        return EXIT_OK
    given = {"endpoint": args.endpoint, "protocol": args.protocol}
    before = api.stats()
    try:
        api.configure(service_name=service, instrument=False, **{k: v for k, v in given.items() if v is not None})
    except ConfigurationError as exc:
        print(f"llmwatch drill: {exc}", file=err)
        return EXIT_USAGE
    runtime = _runtime.CURRENT
    try:
        if runtime.meter_provider is None or not _exports_metrics(runtime.meter_provider):
            print(
                "llmwatch drill: the configured exporter sends no metrics (LLMWATCH_EXPORTER=file or none, or "
                "OTEL_METRICS_EXPORTER=none), and every alert of docs/alerts is built on metrics: drill through "
                "otlp, datadog or newrelic.",
                file=err,
            )
            return EXIT_USAGE
        emit(plan, runtime.tracer_provider, runtime.meter_provider)
        flushed = api.force_flush(args.timeout)
    finally:
        api.shutdown(args.timeout)  # exports what force_flush left, and the last metric collection
    after = api.stats()
    lost = {key: after.get(key, 0) - before.get(key, 0) for key in FAILURE_COUNTERS}
    lost = {key: count for key, count in lost.items() if count > 0}
    report["exported"] = flushed and not lost
    if not report["exported"]:
        report["export_failures"] = lost
        report["last_export_error"] = after.get("last_export_error")
        print(_failure_message(plan, lost, flushed, after.get("last_export_error")), file=err)
        if args.json:
            print(json.dumps(report, indent=2), file=out)
        return EXIT_EXPORT_FAILED
    _print(report, args.json, out, _plan_lines(report, dry_run=False))
    return EXIT_OK


def emit(plan: Plan, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    """Send ``plan`` through these providers: its spans now, its metric points at the next collection."""
    _instrument(plan, meter_provider.get_meter(DRILL_SCOPE, _runtime.VERSION))
    tracer = tracer_provider.get_tracer(DRILL_SCOPE, _runtime.VERSION)
    now_ns = time.time_ns()
    step_ns = int(SPREAD_S * 1e9 / max(len(plan.calls), 1))
    for index, call in enumerate(plan.calls):
        end_ns = now_ns - (len(plan.calls) - 1 - index) * step_ns
        start_ns = end_ns - int(call.duration_s * 1e9)
        span = tracer.start_span(
            f"{sc.OP_CHAT} {plan.model}",
            kind=SpanKind.CLIENT,
            attributes=_span_attributes(plan, call),
            start_time=start_ns,
        )
        if call.refusal is not None:  # as ``_pipeline._end_refused`` writes a refused call
            scope_key = sc.LLMWATCH_BUDGET_SCOPE if call.refusal == REASON_BUDGET else sc.LLMWATCH_CIRCUIT_SCOPE
            event = {sc.LLMWATCH_REFUSAL_REASON: call.refusal, scope_key: call.refusal_scope or "", **plan.marks}
            span.add_event(sc.LLMWATCH_REFUSED_EVENT, event, timestamp=start_ns)
        error = call.error_type or (REFUSED_ERROR.get(call.refusal) if call.refusal else None)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, f"llmwatch drill {plan.scenario}: synthetic {error}"))
        span.end(end_time=end_ns)


def _span_attributes(plan: Plan, call: Call) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        sc.GEN_AI_PROVIDER_NAME: plan.provider,
        sc.GEN_AI_REQUEST_MODEL: plan.model,
        sc.LLMWATCH_FEATURE: plan.feature,
        sc.LLMWATCH_STREAM: call.ttfc_s is not None,
        **plan.marks,
    }
    if call.refusal == REASON_BUDGET:
        attrs[sc.LLMWATCH_BUDGET_EXCEEDED] = True
    elif call.refusal is not None:
        attrs[sc.LLMWATCH_CIRCUIT_STATE] = sc.CIRCUIT_OPEN
        attrs[sc.LLMWATCH_CIRCUIT_SCOPE] = call.refusal_scope or ""
    if call.refusal is not None:
        attrs[sc.ERROR_TYPE] = REFUSED_ERROR[call.refusal]
        return attrs
    attrs[sc.GEN_AI_RESPONSE_MODEL] = plan.model
    if call.input_tokens is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = call.input_tokens
    if call.output_tokens is not None:
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = call.output_tokens
    if call.cost_usd is not None:
        attrs[sc.LLMWATCH_COST_USD] = call.cost_usd
    if call.error_type is not None:
        attrs[sc.ERROR_TYPE] = call.error_type
    else:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = ("stop",)
    if call.ttfc_s is not None:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
        attrs[sc.LLMWATCH_STREAM_COMPLETED] = True
        attrs[sc.LLMWATCH_STREAM_CHUNKS] = call.output_tokens or 1
        attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = call.ttfc_s
        attrs[sc.LLMWATCH_TIME_TO_FIRST_TOKEN_MS] = call.ttfc_s * 1000
    return attrs


def _instrument(plan: Plan, meter: Meter) -> None:
    """Create the drill's instruments, record the plan's measurements, register its observations."""
    record: dict[str, Callable[[float, Mapping[str, Any]], None]] = {}
    for name, (unit, description, buckets) in HISTOGRAMS.items():
        histogram = meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
        )
        record[name] = histogram.record
    for name, (unit, description) in COUNTERS.items():
        record[name] = meter.create_counter(name, unit=unit, description=description).add
    for measurement in plan.measurements():
        record[measurement.metric](measurement.value, dict(measurement.attributes))
    for name, (unit, description) in GAUGES.items():
        meter.create_observable_gauge(name, callbacks=[_observe(plan, name)], unit=unit, description=description)
    for name, (unit, description) in OBSERVABLE_COUNTERS.items():
        meter.create_observable_counter(name, callbacks=[_observe(plan, name)], unit=unit, description=description)


def _observe(plan: Plan, metric: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    readings = [reading for reading in plan.readings if reading.metric == metric]

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(reading.value, dict(reading.attributes)) for reading in readings]

    return observe


def _exports_metrics(meter_provider: MeterProvider) -> bool:
    """False when the provider has no metric reader (the file and none exporters): nothing would leave.

    The SDK has no public way to ask, so this reads where its versions keep the readers (on the provider,
    or in its configuration); a provider that keeps them elsewhere is given the benefit of the doubt."""
    readers = getattr(meter_provider, "_metric_readers", None)
    if readers is None:
        readers = getattr(getattr(meter_provider, "_sdk_config", None), "metric_readers", None)
    return readers is None or bool(readers)


def _failure_message(plan: Plan, lost: Mapping[str, int], flushed: bool, last_error: str | None) -> str:
    parts = [f"{count} {key.replace('_', ' ')}" for key, count in lost.items()]
    if not flushed:
        parts.append("the flush did not finish within --timeout")
    return (
        f"llmwatch drill {plan.scenario}: not everything was exported ({', '.join(parts)}); "
        f"last export error: {last_error or 'none recorded'}. The monitors may not fire: check --endpoint "
        "(OTEL_EXPORTER_OTLP_ENDPOINT), the protocol and OTEL_EXPORTER_OTLP_HEADERS "
        "(docs/runbook.md#telemetry-not-arriving)."
    )


def _plan_lines(report: Mapping[str, Any], *, dry_run: bool) -> list[str]:
    head = "would send" if dry_run else "sent"
    lines = [
        f"llmwatch drill {report['scenario']}{' (dry run: nothing is sent)' if dry_run else ''}",
        f"  {head}: {report['summary']}",
        f"  service.name={report['service_name']}, model {report['model']}, feature {report['feature']}, "
        f"provider {report['provider']}",
        f"  through: exporter {report['exporter']}, endpoint {report['endpoint'] or 'the exporter default'}",
        f"  spans: {report['spans']} (refused {report['refused']}, failed {sum(report['errors'].values())}"
        + (f": {', '.join(f'{k} {v}' for k, v in report['errors'].items())})" if report["errors"] else ")"),
        "  metrics:",
    ]
    for name, entry in report["metrics"].items():
        if "value" in entry:  # an observation: the gauge (or running count) a backend will see
            figure = f"value {entry['value']:g}"
        elif name in HISTOGRAMS:
            figure = f"{entry['points']} points, max {entry['max']:g}"
        else:
            figure = f"{entry['points']} points, total {entry['total']:g}"
        lines.append(f"    {name:<44} {figure}")
    marks = ", ".join(f"{key}={json.dumps(value)}" for key, value in report["marks"].items())
    lines.append(f"  every span and point carries {marks}")
    fires = ", ".join(f"{a['alert']} ({a['runbook']})" for a in report["alerts"])
    lines.append(f"  {'would fire' if dry_run else 'should fire within a few minutes'}: {fires}")
    if not dry_run:
        lines.append("  it clears by itself once the drill's data ages out of each monitor's window (5-60 min)")
    return lines


def _shown(url: str | None) -> str | None:
    """An endpoint fit to print: no ``user:password@`` and no query string (keys hide in both)."""
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"//{url}")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")) or None


def _print(report: Mapping[str, Any], as_json: bool, out: IO[str], lines: list[str]) -> None:
    print(json.dumps(report, indent=2) if as_json else "\n".join(lines), file=out)
