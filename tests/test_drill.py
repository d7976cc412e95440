"""``llmwatch drill SCENARIO``: what it sends reaches a real OTLP receiver, and fires the alerts it names.

Each scenario runs through the command line's ``main`` (in-process) against the loopback receivers of
``otlp_receiver.py``; the metric points that arrive are judged by ``alert_queries.py``, an evaluator of
the very queries in ``docs/alerts/datadog-monitors.json``: each scenario's monitors fire with the
thresholds of that file, the other monitors stay quiet. The evaluator is tested on its own too, on
data built by hand, so that "it fires" means something: healthy traffic does not fire the error rate.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_queries import MonitorQuery, Point, parse, parse_term, points_from
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otlp_receiver import GrpcReceiver, HttpReceiver, Mode, attributes

from llmwatch import _semconv as sc
from llmwatch._cli import main
from llmwatch._core import _runtime
from llmwatch._export._metrics import Metrics
from llmwatch._recovery import _drill
from llmwatch._recovery._drill_scenarios import SCENARIOS, plan_for, runbook_anchor

ALERTS = Path(__file__).resolve().parent.parent / "docs" / "alerts"
DATADOG = json.loads((ALERTS / "datadog-monitors.json").read_text(encoding="utf-8"))
NEW_RELIC = json.loads((ALERTS / "newrelic-conditions.json").read_text(encoding="utf-8"))
MARKS = {sc.LLMWATCH_DRILL: True}


def anchor_of(monitor: dict[str, Any]) -> str:
    return monitor["message"].rsplit("runbook.md#", 1)[1].split()[0]


MONITORS = {anchor_of(monitor): monitor for monitor in DATADOG}


@pytest.fixture()
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as started:
        yield started


def drill(receiver: Any, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """``llmwatch drill ...`` configured by the environment, as a user's shell would be."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    return main(["drill", *argv])


def received(receiver: Any) -> list[Point]:
    return points_from(receiver.requests("metrics", accepted_only=True))


# --- the evaluator, on its own -------------------------------------------------------------------------
@pytest.mark.parametrize("monitor", DATADOG, ids=anchor_of)
def test_every_monitor_query_parses_with_its_own_threshold(monitor: dict[str, Any]) -> None:
    query = parse(monitor["query"])
    assert query.threshold == monitor["options"]["thresholds"]["critical"]
    assert query.comparator in (">", ">=")
    emitted = {value for name, value in vars(sc).items() if name.startswith("METRIC_")}
    for term in (query.numerator, query.denominator):
        if term is not None:
            assert term.metric in emitted, term.metric
            assert term.filters == () and term.by  # {*}, and one alert per group


def test_the_parser_reads_each_part_and_refuses_what_it_cannot_judge() -> None:
    query = parse(MONITORS["error-rate"]["query"])
    assert (query.time_aggregation, query.window_s, query.comparator) == ("sum", 900, ">")
    assert query.numerator == parse_term("sum:llmwatch.errors{*} by {gen_ai.request.model}.as_count()")
    assert query.denominator is not None and query.denominator.aggregation == "count"
    assert query.denominator.as_count
    scoped = parse_term("max:llmwatch.circuit.state{service:checkout,!llmwatch.drill:true} by {a,b}")
    assert scoped.filters == (("service", "checkout", False), ("llmwatch.drill", "true", True))
    assert scoped.by == ("a", "b")
    for bad in ("avg(last_5m):avg:x{*} > 1 > 2", "sum(last_1h):sum:x{*} by {a} / sum:y{*} by {b} > 1", "x > 1"):
        with pytest.raises(ValueError):
            parse(bad)


def _counter(metric: str, value: float, model: str = "m", cumulative: bool = False, t: int = 1) -> Point:
    return Point(metric, "sum", cumulative, {sc.GEN_AI_REQUEST_MODEL: model}, t, value)


def _durations(values: list[float], model: str = "m") -> Point:
    bounds = sc.DURATION_BUCKETS
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[next((i for i, bound in enumerate(bounds) if value <= bound), len(bounds))] += 1
    return Point(
        sc.METRIC_OPERATION_DURATION,
        "histogram",
        False,
        {sc.GEN_AI_REQUEST_MODEL: model},
        1,
        sum(values),
        len(values),
        bounds,
        tuple(counts),
        max(values),
    )


def test_healthy_traffic_does_not_fire_the_error_rate_and_an_outage_does() -> None:
    error_rate = parse(MONITORS["error-rate"]["query"])
    healthy = [_durations([1.0] * 100), _counter(sc.METRIC_ERRORS, 1)]  # 1% failed
    assert error_rate.values(healthy) == {((sc.GEN_AI_REQUEST_MODEL, "m"),): 0.01}
    assert error_rate.firing(healthy) == {}
    outage = [_durations([1.0] * 100), _counter(sc.METRIC_ERRORS, 4), _counter(sc.METRIC_ERRORS, 6)]
    assert error_rate.firing(outage) == {((sc.GEN_AI_REQUEST_MODEL, "m"),): 0.1}
    # Only the failing model's group alerts; a model with no errors has no group on the numerator.
    assert set(error_rate.firing([*outage, _durations([1.0] * 50, model="other")])) == {
        ((sc.GEN_AI_REQUEST_MODEL, "m"),)
    }


def test_a_cumulative_point_exported_twice_counts_once() -> None:
    cost = parse(MONITORS["cost-burn-rate"]["query"])
    feature = {sc.LLMWATCH_FEATURE: "f"}
    again = [Point(sc.METRIC_COST, "sum", True, feature, t, 3.0) for t in (1, 2, 3)]
    assert cost.values(again) == {((sc.LLMWATCH_FEATURE, "f"),): 3.0}
    deltas = [Point(sc.METRIC_COST, "sum", False, feature, t, 3.0) for t in (1, 2)]
    assert cost.firing(deltas) == {((sc.LLMWATCH_FEATURE, "f"),): 6.0}


def test_p95_is_the_upper_bound_of_its_bucket() -> None:
    slow = parse(MONITORS["slow-responses"]["query"])
    group = ((sc.GEN_AI_REQUEST_MODEL, "m"),)
    assert slow.values([_durations([1.0] * 96 + [45.0] * 4)]) == {group: 1.28}  # 4% slow: p95 still fast
    assert slow.values([_durations([1.0] * 94 + [45.0] * 6)]) == {group: 81.92}
    assert slow.values([_durations([1.0] * 94 + [100.0] * 6)]) == {group: 100.0}  # overflow: the max
    # An upper bound: 25 s calls read 40.96, past 30, though a backend interpolating in the bucket may
    # say 25. So the drill does not rely on it: its p95 sits in a bucket whose lower bound is past the
    # threshold (test_plans_are_sized_with_margin), where every estimate agrees.
    assert slow.values([_durations([25.0] * 100)]) == {group: 40.96}


def test_gauge_ratios_group_by_both_tags() -> None:
    budget = parse(MONITORS["budget-nearly-used"]["query"])
    scope = {sc.LLMWATCH_BUDGET_SCOPE: "feature=f", sc.LLMWATCH_BUDGET_WINDOW: "day"}
    points = [
        Point(sc.METRIC_BUDGET_SPENT, "gauge", False, scope, 1, 90.0),
        Point(sc.METRIC_BUDGET_SPENT, "gauge", False, scope, 2, 97.0),
        Point(sc.METRIC_BUDGET_LIMIT, "gauge", False, scope, 2, 100.0),
    ]
    assert budget.firing(points) == {
        ((sc.LLMWATCH_BUDGET_SCOPE, "feature=f"), (sc.LLMWATCH_BUDGET_WINDOW, "day")): 0.97
    }
    assert budget.firing(points[:1] + points[2:]) == {}


def test_the_routing_queries_of_drills_md_tell_drills_from_real_traffic() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "drills.md").read_text(encoding="utf-8")
    queries = dict(re.findall(r"^(query|production|drills):\s+(\S.*)$", text, flags=re.MULTILINE))
    real = {sc.LLMWATCH_FEATURE: "f", "service.name": "checkout"}
    drilled = {**real, sc.LLMWATCH_DRILL: True, "service.name": "checkout-drill"}
    cost = [Point(sc.METRIC_COST, "sum", False, attrs, 1, 10.0) for attrs in (real, drilled)]
    assert parse(queries["production"]).firing(cost[:1]) and not parse(queries["production"]).firing(cost[1:])
    assert parse(queries["drills"]).firing(cost[1:]) and not parse(queries["drills"]).firing(cost[:1])
    by_service = parse(queries["query"])  # the error rate, grouped by service as well
    errors = [
        dataclasses.replace(point, attributes={**point.attributes, "service.name": "checkout-drill"})
        for point in (_counter(sc.METRIC_ERRORS, 10), _durations([1.0] * 20))
    ]
    assert set(by_service.firing(errors)) == {((sc.GEN_AI_REQUEST_MODEL, "m"), ("service", "checkout-drill"))}


# --- each scenario against a real receiver ---------------------------------------------------------------
@pytest.mark.parametrize("exporter", ["otlp", "datadog"])  # cumulative, and delta as the datadog preset sends
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_drill_fires_its_monitors_and_only_those(
    scenario: str, exporter: str, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_for(scenario)
    monkeypatch.setenv("LLMWATCH_EXPORTER", exporter)
    assert drill(receiver, monkeypatch, scenario, "--service", "checkout-drill", "--endpoint", receiver.endpoint) == 0
    spans = receiver.wait_for_spans(len(plan.calls))
    assert len(spans) == len(plan.calls)
    points = received(receiver)
    assert points, "no metric point arrived"
    counters = {point.cumulative for point in points if point.kind != "gauge"}
    assert counters == {exporter == "otlp"}, counters
    for span in spans:
        assert span.attributes[sc.LLMWATCH_DRILL] is True
        assert span.attributes[sc.LLMWATCH_DRILL_SCENARIO] == scenario
        assert span.resource["service.name"] == "checkout-drill"
    for point in points:
        assert point.attributes[sc.LLMWATCH_DRILL] is True, point
        assert point.attributes[sc.LLMWATCH_DRILL_SCENARIO] == scenario, point
        assert point.attributes["service.name"] == "checkout-drill"
    expected = {runbook_anchor(alert) for alert in plan.alerts}
    assert expected <= set(MONITORS), f"{scenario} names alerts with no monitor: {expected - set(MONITORS)}"
    for anchor, monitor in MONITORS.items():
        query: MonitorQuery = parse(monitor["query"])
        firing = query.firing(points)
        if anchor in expected:
            assert firing, f"{scenario}: {monitor['name']} does not fire: {query.values(points)}"
        else:
            assert not firing, f"{scenario} also fires {monitor['name']}: {firing}"
    # The New Relic condition of each alert queries a metric the drill sent.
    sent = {point.metric for point in points}
    for condition in NEW_RELIC:
        if condition["runbookUrl"].rsplit("#", 1)[1] in expected:
            assert any(f"({name}" in condition["nrql"]["query"] for name in sent), condition["name"]


def test_spans_are_shaped_like_llm_calls(receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    assert drill(receiver, monkeypatch, "latency-spike") == 0
    spans = receiver.wait_for_spans(40)
    for span in spans:
        assert span.name == "chat llmwatch-drill-model"
        assert span.proto.kind == SpanProto.SPAN_KIND_CLIENT
        assert span.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
        assert span.attributes[sc.GEN_AI_PROVIDER_NAME] == "openai"
        assert span.attributes[sc.LLMWATCH_FEATURE] == "llmwatch-drill"
        assert span.attributes[sc.LLMWATCH_COST_USD] > 0
        assert 35 <= (span.proto.end_time_unix_nano - span.proto.start_time_unix_nano) / 1e9 <= 45
        assert 6 <= span.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] <= 9
        assert span.resource["service.name"] == "llmwatch-drill"  # no --service, no OTEL_SERVICE_NAME
        assert span.proto.end_time_unix_nano <= time.time_ns()  # in the past: inside every window


@pytest.mark.parametrize("scenario", ["error-spike", "budget-exhausted", "circuit-open"])
def test_failed_and_refused_calls_look_like_llmwatchs_own(
    scenario: str, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert drill(receiver, monkeypatch, scenario) == 0
    plan = plan_for(scenario)
    spans = receiver.wait_for_spans(len(plan.calls))
    failed = [span for span in spans if sc.ERROR_TYPE in span.attributes]
    assert failed and all(span.proto.status.code == span.proto.status.STATUS_CODE_ERROR for span in failed)
    refused = [span for span in spans if span.proto.events]
    assert len(refused) == sum(1 for call in plan.calls if call.refusal)
    for span in refused:
        (event,) = span.proto.events
        assert event.name == sc.LLMWATCH_REFUSED_EVENT
        reason = attributes(event.attributes)[sc.LLMWATCH_REFUSAL_REASON]
        assert reason == ("budget" if scenario == "budget-exhausted" else "circuit_open")
        assert span.attributes[sc.ERROR_TYPE] == ("BudgetExceeded" if reason == "budget" else "CircuitOpen")
    if scenario == "circuit-open":
        circuit = [p for p in received(receiver) if p.metric == sc.METRIC_CIRCUIT_STATE]
        assert {p.attributes[sc.LLMWATCH_CIRCUIT_SCOPE] for p in circuit} == {
            "provider=openai/model=llmwatch-drill-model"
        }
        assert {p.attributes[sc.GEN_AI_REQUEST_MODEL] for p in circuit} == {"llmwatch-drill-model"}


def test_grpc_and_flags_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    with GrpcReceiver() as grpc_receiver:
        argv = ["drill", "cost-spike", "--endpoint", grpc_receiver.endpoint, "--protocol", "grpc", "--feature", "ask"]
        assert main([*argv, "--json"]) == 0
        spans = grpc_receiver.wait_for_spans(50)
        points = received(grpc_receiver)
    assert {span.resource["service.name"] for span in spans} == {"from-env"}
    assert {span.attributes[sc.LLMWATCH_FEATURE] for span in spans} == {"ask"}
    firing = parse(MONITORS["cost-burn-rate"]["query"]).firing(points)
    assert firing == {((sc.LLMWATCH_FEATURE, "ask"),): pytest.approx(10.0)}
    document = json.loads(capsys.readouterr().out)
    assert document["exported"] is True and document["service_name"] == "from-env" and document["feature"] == "ask"


def test_dry_run_sends_nothing_and_prints_the_plan(
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert drill(receiver, monkeypatch, "budget-exhausted", "--dry-run") == 0
    text = capsys.readouterr().out
    assert "dry run: nothing is sent" in text and "Budget nearly used" in text and "runbook.md#calls-refused" in text
    assert "llmwatch.drill=true" in text
    assert drill(receiver, monkeypatch, "error-spike", "--dry-run", "--json", "--service", "s") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["dry_run"] is True and document["service_name"] == "s" and document["spans"] == 60
    assert document["metrics"][sc.METRIC_ERRORS]["total"] == 30
    assert receiver.requests() == [] and not _runtime.CURRENT.configured  # no configure, no connection


def test_the_plan_names_the_endpoint_without_its_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:secret@collector.internal:4318/otlp?key=k-123")
    assert main(["drill", "cost-spike", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "endpoint https://collector.internal:4318/otlp" in text
    assert "secret" not in text and "k-123" not in text


def test_an_unknown_scenario_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "meteor-strike"]) == 2
    message = capsys.readouterr().err
    assert "meteor-strike" in message and all(name in message for name in SCENARIOS)


def test_a_failed_export_exits_non_zero_saying_so(
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # seconds: the refused exports give up quickly
    receiver.mode = Mode.UNAVAILABLE
    started = time.monotonic()
    assert drill(receiver, monkeypatch, "error-spike", "--timeout", "3") == _drill.EXIT_EXPORT_FAILED
    assert time.monotonic() - started < 15
    message = capsys.readouterr().err
    assert "not everything was exported" in message and "telemetry-not-arriving" in message


def test_an_exporter_without_metrics_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLMWATCH_EXPORTER", "file")
    monkeypatch.setenv("LLMWATCH_FILE_PATH", str(tmp_path / "spans.jsonl"))
    assert main(["drill", "error-spike"]) == 2
    assert "sends no metrics" in capsys.readouterr().err


# --- the drill's instruments are the real ones -------------------------------------------------------------
def _shapes(reader: InMemoryMetricReader) -> dict[tuple[str, str], tuple[Any, ...]]:
    data = reader.get_metrics_data()
    assert data is not None
    found = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = list(metric.data.data_points)
                bounds = tuple(getattr(points[0], "explicit_bounds", ()) or ()) if points else ()
                shape = (metric.unit, metric.description, type(metric.data).__name__, bounds)
                found[(scope_metrics.scope.name, metric.name)] = shape
    return found


def test_the_drills_instruments_match_llmwatchs_own() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    circuits = {"c": {"state": "open", "transitions": {"open": 1}, "provider": "openai"}}
    budgets = {"feature=f/day": {"spent_usd": 1.0, "limit_usd": 2.0}}
    real = Metrics(
        provider.get_meter("llmwatch"),
        user_dimension=False,
        budget_state=lambda: budgets,
        circuit_state=lambda: circuits,
    )
    attrs = {sc.GEN_AI_REQUEST_MODEL: "m", sc.ERROR_TYPE: "500"}
    real.record_call(attrs, user=None, duration_s=1.0, input_tokens=1, output_tokens=1, cost_usd=0.1, ttfc_s=0.5)
    real.record_refusal({sc.GEN_AI_REQUEST_MODEL: "m"}, "budget")
    # One plan with every kind of point: failed and streamed calls, refusals, budget and circuit gauges.
    calls = [
        call for scenario in ("error-spike", "latency-spike", "budget-exhausted") for call in plan_for(scenario).calls
    ]
    readings = plan_for("budget-exhausted").readings + plan_for("circuit-open").readings
    everything = dataclasses.replace(plan_for("error-spike"), calls=tuple(calls), readings=readings)
    _drill.emit(everything, _noop_tracer_provider(), provider)
    shapes = _shapes(reader)
    ours = {name: shape for (scope, name), shape in shapes.items() if scope == _drill.DRILL_SCOPE}
    theirs = {name: shape for (scope, name), shape in shapes.items() if scope == "llmwatch"}
    assert set(ours) == set(_drill.HISTOGRAMS) | set(_drill.COUNTERS) | set(_drill.GAUGES) | set(
        _drill.OBSERVABLE_COUNTERS
    )
    assert set(ours) <= set(theirs)
    for name, shape in ours.items():
        assert shape == theirs[name], name
    provider.shutdown()


def _noop_tracer_provider() -> Any:
    from opentelemetry.trace import NoOpTracerProvider

    return NoOpTracerProvider()


def test_plans_are_sized_with_margin() -> None:
    for scenario in SCENARIOS:
        plan = plan_for(scenario)
        assert 40 <= len(plan.calls) <= 100, scenario
        assert plan.alerts and all(runbook_anchor(alert) in MONITORS for alert in plan.alerts)
    latency = plan_for("latency-spike")
    # More than 5% of the durations past 40.96 s: the p95 is in the 40.96-81.92 s bucket, whose lower
    # bound is past the 30 s threshold. Every first token past 5.12 s, the lower bound of its bucket.
    over = [call for call in latency.calls if call.duration_s > sc.DURATION_BUCKETS[-2]]
    assert sc.DURATION_BUCKETS[-2] > MONITORS["slow-responses"]["options"]["thresholds"]["critical"]
    assert len(over) / len(latency.calls) > 0.05 * 2
    lower = max(bound for bound in sc.DURATION_BUCKETS if bound <= 6.0)
    assert lower > MONITORS["slow-first-token"]["options"]["thresholds"]["critical"]
    assert all(call.ttfc_s is not None and call.ttfc_s > lower for call in latency.calls)
