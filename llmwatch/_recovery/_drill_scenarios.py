"""What each ``llmwatch drill`` scenario sends: synthetic calls and gauge readings, as plain values.

A :class:`Plan` is data only (no OTel object), so ``--dry-run`` prints exactly what a real run would
send, and the sender (``_drill.py``) turns the same plan into spans and metric points. Each scenario
is sized so the monitors it names (``docs/alerts/``) fire with margin and the others stay quiet: the
drill of one alert never pages for another.

Sizes and margins, against the thresholds of ``docs/alerts/datadog-monitors.json``:

- ``error-spike``: 60 calls, 30 failed: error rate 0.5 against 0.05.
- ``latency-spike``: 40 streamed calls of 35-45 s, first token after 6-9 s: more than 5% of the
  durations land in the 40.96-81.92 s bucket and every first token in 5.12-10.24 s, so the p95 of
  either is past its threshold (30 s, 5 s) however a backend interpolates inside a bucket.
- ``cost-spike``: 50 calls of 0.20 USD: 10 USD in the hour against 4.17.
- ``budget-exhausted``: spent 100.40 of a 100 USD daily limit (1.004 against 0.95), 80 refused
  calls against 50.
- ``circuit-open``: the circuit gauge at 2 (open) against 1.5, 80 refused calls against 50.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from llmwatch import _semconv as sc
from llmwatch._policy._budget import REASON_BUDGET, REASON_CIRCUIT

PROVIDER: Final = "openai"
DEFAULT_MODEL: Final = "llmwatch-drill-model"
DEFAULT_FEATURE: Final = "llmwatch-drill"
BUDGET_WINDOW: Final = "day"
BUDGET_LIMIT_USD: Final = 100.0
# Error types as llmwatch writes them: the SDK exception's class name, or the bare HTTP status.
ERROR_TYPES: Final = ("InternalServerError", "RateLimitError", "500")
REFUSED_ERROR = {REASON_BUDGET: "BudgetExceeded", REASON_CIRCUIT: "CircuitOpen"}  # on_exceed="raise"


@dataclasses.dataclass(frozen=True)
class Call:
    """One synthetic LLM call: what its span and its metric points say."""

    duration_s: float
    input_tokens: int | None = None  # None: no usage came back (a failed call)
    output_tokens: int | None = None
    cost_usd: float | None = None
    error_type: str | None = None
    ttfc_s: float | None = None  # set: a streamed call, first chunk after this long
    refusal: str | None = None  # set: refused by llmwatch before any I/O (budget | circuit_open)
    refusal_scope: str | None = None  # the budget scope or circuit refusing it


@dataclasses.dataclass(frozen=True)
class Reading:
    """One observation of an observable instrument (a budget or circuit gauge, the transitions counter)."""

    metric: str
    value: float
    attributes: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One synchronous measurement: a histogram record or a counter add, as the pipeline makes them."""

    metric: str
    value: float
    attributes: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything one drill sends. ``alerts`` are the rows of docs/alerts.md it fires (runbook anchors)."""

    scenario: str
    summary: str
    alerts: tuple[str, ...]
    model: str
    feature: str
    calls: tuple[Call, ...]
    readings: tuple[Reading, ...] = ()
    provider: str = PROVIDER

    @property
    def marks(self) -> dict[str, Any]:
        """The attributes every span and metric point of this drill carries."""
        return {sc.LLMWATCH_DRILL: True, sc.LLMWATCH_DRILL_SCENARIO: self.scenario}

    def call_attributes(self) -> dict[str, Any]:
        """What the pipeline puts on a call's metric points (``_metric_attributes``), plus the marks."""
        return {
            sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
            sc.GEN_AI_PROVIDER_NAME: self.provider,
            sc.GEN_AI_REQUEST_MODEL: self.model,
            sc.LLMWATCH_FEATURE: self.feature,
            **self.marks,
        }

    def measurements(self) -> list[Measurement]:
        """The metric points the calls make, instrument by instrument as ``_export/_metrics.py`` records them."""
        found: list[Measurement] = []
        base = self.call_attributes()
        for call in self.calls:
            if call.refusal is not None:  # refused before I/O: the refusal counter only (``_end_refused``)
                found.append(Measurement(sc.METRIC_REFUSALS, 1, {**base, sc.LLMWATCH_REFUSAL_REASON: call.refusal}))
                continue
            attrs = {**base, sc.GEN_AI_RESPONSE_MODEL: self.model}
            if call.error_type is not None:
                attrs[sc.ERROR_TYPE] = call.error_type
            found.append(Measurement(sc.METRIC_OPERATION_DURATION, call.duration_s, attrs))
            for kind, tokens in (("input", call.input_tokens), ("output", call.output_tokens)):
                if tokens is not None:
                    found.append(Measurement(sc.METRIC_TOKEN_USAGE, tokens, {**attrs, sc.GEN_AI_TOKEN_TYPE: kind}))
            if call.ttfc_s is not None:
                found.append(Measurement(sc.METRIC_TIME_TO_FIRST_CHUNK, call.ttfc_s, attrs))
            if call.cost_usd is not None:
                found.append(Measurement(sc.METRIC_COST, call.cost_usd, attrs))
            if call.error_type is not None:
                found.append(Measurement(sc.METRIC_ERRORS, 1, attrs))
        return found


def _error_spike(model: str, feature: str) -> Plan:
    calls = []
    for i in range(60):
        if i % 2:  # every other call fails: a provider outage with rate limiting on top
            calls.append(Call(duration_s=0.3 + (i % 5) * 0.1, error_type=ERROR_TYPES[(i // 2) % len(ERROR_TYPES)]))
        else:
            calls.append(Call(0.8 + (i % 7) * 0.2, input_tokens=420 + i, output_tokens=180, cost_usd=0.0021))
    summary = "60 chat calls in the last 2 minutes, 30 of them failed (InternalServerError, RateLimitError, 500)"
    return Plan("error-spike", summary, ("Error rate",), model, feature, tuple(calls))


def _latency_spike(model: str, feature: str) -> Plan:
    calls = tuple(
        Call(35.0 + (i % 11), input_tokens=1200, output_tokens=900, cost_usd=0.012, ttfc_s=6.0 + (i % 4))
        for i in range(40)
    )
    summary = "40 streamed chat calls taking 35-45 s each, first token after 6-9 s"
    return Plan("latency-spike", summary, ("Slow responses", "Slow first token"), model, feature, calls)


def _cost_spike(model: str, feature: str) -> Plan:
    calls = tuple(Call(2.0 + (i % 4), input_tokens=20_000, output_tokens=3_000, cost_usd=0.2) for i in range(50))
    summary = f"50 chat calls of 0.20 USD each: 10.00 USD for feature {feature} within the hour"
    return Plan("cost-spike", summary, ("Cost burn rate",), model, feature, calls)


def _budget_exhausted(model: str, feature: str) -> Plan:
    scope = f"feature={feature}"
    spent = round(BUDGET_LIMIT_USD + 0.4, 2)
    spending = [Call(1.5, input_tokens=8_000, output_tokens=1_000, cost_usd=0.08) for _ in range(5)]
    refused = [Call(0.0002, refusal=REASON_BUDGET, refusal_scope=scope) for _ in range(80)]
    window = {sc.LLMWATCH_BUDGET_SCOPE: scope, sc.LLMWATCH_BUDGET_WINDOW: BUDGET_WINDOW}
    readings = (
        Reading(sc.METRIC_BUDGET_SPENT, spent, window),
        Reading(sc.METRIC_BUDGET_LIMIT, BUDGET_LIMIT_USD, window),
    )
    summary = (
        f"budget {scope}/{BUDGET_WINDOW} at {spent:.2f} of {BUDGET_LIMIT_USD:.0f} USD; "
        "5 calls that spent the last of it, then 80 calls refused (reason budget)"
    )
    return Plan(
        "budget-exhausted",
        summary,
        ("Budget nearly used", "Calls refused"),
        model,
        feature,
        (*spending, *refused),
        readings,
    )


def _circuit_open(model: str, feature: str) -> Plan:
    scope = f"provider={PROVIDER}/model={model}"
    pinned = {sc.LLMWATCH_CIRCUIT_SCOPE: scope, sc.GEN_AI_PROVIDER_NAME: PROVIDER, sc.GEN_AI_REQUEST_MODEL: model}
    readings = (
        Reading(sc.METRIC_CIRCUIT_STATE, sc.CIRCUIT_GAUGE_VALUES[sc.CIRCUIT_OPEN], pinned),
        Reading(sc.METRIC_CIRCUIT_TRANSITIONS, 1, {**pinned, sc.LLMWATCH_CIRCUIT_TO: sc.CIRCUIT_OPEN}),
    )
    refused = tuple(Call(0.0002, refusal=REASON_CIRCUIT, refusal_scope=scope) for _ in range(80))
    summary = f"circuit {scope} open (gauge 2), then 80 calls refused before I/O (reason circuit_open)"
    return Plan("circuit-open", summary, ("Circuit open", "Calls refused"), model, feature, refused, readings)


SCENARIOS: Final = {
    "error-spike": _error_spike,
    "latency-spike": _latency_spike,
    "cost-spike": _cost_spike,
    "budget-exhausted": _budget_exhausted,
    "circuit-open": _circuit_open,
}


def plan_for(scenario: str, model: str = DEFAULT_MODEL, feature: str = DEFAULT_FEATURE) -> Plan:
    """The plan of one scenario (``KeyError`` for a name not in :data:`SCENARIOS`)."""
    plan = SCENARIOS[scenario](model, feature)
    # The marks go on the observations too: every point a drill sends carries them.
    marked = tuple(dataclasses.replace(r, attributes={**r.attributes, **plan.marks}) for r in plan.readings)
    return dataclasses.replace(plan, readings=marked)


def runbook_anchor(alert: str) -> str:
    """``Error rate`` -> ``error-rate``: the runbook section (and alerts.md row) of an alert."""
    return alert.lower().replace(" ", "-")


def describe(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data: what ``--dry-run --json`` prints, and the summary of a real run."""
    metrics: dict[str, dict[str, Any]] = {}
    for m in plan.measurements():
        entry = metrics.setdefault(m.metric, {"points": 0, "total": 0.0, "max": 0.0})
        entry["points"] += 1
        entry["total"] = round(entry["total"] + m.value, 6)
        entry["max"] = max(entry["max"], m.value)
    for reading in plan.readings:
        metrics[reading.metric] = {"points": 1, "value": reading.value}
    errors: dict[str, int] = {}
    for call in plan.calls:
        if call.error_type is not None:
            errors[call.error_type] = errors.get(call.error_type, 0) + 1
    return {
        "scenario": plan.scenario,
        "summary": plan.summary,
        "alerts": [{"alert": alert, "runbook": f"runbook.md#{runbook_anchor(alert)}"} for alert in plan.alerts],
        "provider": plan.provider,
        "model": plan.model,
        "feature": plan.feature,
        "spans": len(plan.calls),
        "refused": sum(1 for call in plan.calls if call.refusal is not None),
        "errors": errors,
        "metrics": metrics,
        "marks": plan.marks,
    }
