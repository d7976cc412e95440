"""Scenario: what circuit breakers cost a call while their circuits are closed (the usual state).

Variants, each in its own process, rounds interleaved:

- ``none``: ``llm_call`` with reported usage, no rule at all (the check is skipped: one global read);
- ``one``: the same call under one breaker with a circuit per provider (``provider="*"``), closed;
- ``three``: under three breakers that all cover it (``provider="openai"``, ``model="*"``,
  ``feature="bench"``), every circuit closed.

Each round times every call (median) and, apart, the check before a call (``RULES.check``: what
the hot path runs with rules set) and the outcome recorded when a call ends (``Admission.record``).

Target: the breaker check under 1 us per call with breakers configured (``one``; ``three`` is reported).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _harness, _stats, _telemetry
from benchmarks._report import Result, table

NAME = "breakers"
TITLE = "Circuit breakers: the check before a call and the outcome after it, circuits closed"
KINDS = ("none", "one", "three")
CHECK_TARGET_US = 1.0


def _call() -> None:
    import llmwatch

    with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
        call.set_output("ok", input_tokens=12, output_tokens=3)


def setup(variant: str, params: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    import llmwatch
    from llmwatch import _attribution
    from llmwatch._policy._budget import RULES
    from llmwatch._policy._outcomes import OK

    _telemetry.configure_llmwatch(exporter="none", instrument=False, service_name="bench-breakers")
    if variant == "one":
        llmwatch.circuit_breaker(provider="*")
    if variant == "three":
        llmwatch.circuit_breaker(provider="openai")
        llmwatch.circuit_breaker(model="*")
        llmwatch.circuit_breaker(feature="bench")
    scope = llmwatch.attributes(feature="bench")
    scope.__enter__()

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        n = int(command["calls"])
        clock = time.perf_counter_ns
        durations = []
        for _ in range(n):
            start = clock()
            _call()
            durations.append((clock() - start) / 1000.0)
        attribution = _attribution.current()
        check = RULES.check
        start = clock()
        for _ in range(n):
            check(attribution, "openai", "gpt-4o-mini", {})
        check_us = (clock() - start) / n / 1000.0
        verdict = check(attribution, "openai", "gpt-4o-mini", {})
        record_us = math.nan
        if verdict is not None and verdict.admission is not None:
            record = verdict.admission.record
            start = clock()
            for _ in range(n):
                record(OK)
            record_us = (clock() - start) / n / 1000.0
        durations.sort()
        return {"median_us": durations[len(durations) // 2], "check_us": check_us, "record_us": record_us}

    return handle, {}


def run(quick: bool) -> Result:
    calls, rounds = (500, 3) if quick else (5000, 7)
    with _harness.pool() as workers:
        workers.start(NAME, {kind: {} for kind in KINDS})
        workers.rounds(1, calls=max(calls // 5, 50))  # warm-up
        samples = workers.rounds(rounds, calls=calls)
    return _result(samples, calls, rounds, workers.failed)


def _median(samples: dict[str, list[dict[str, Any]]], kind: str, key: str) -> float:
    values = [sample[key] for sample in samples.get(kind, []) if not math.isnan(sample[key])]
    return _stats.summary(values)["median"] if values else math.nan


def _result(samples: dict[str, list[dict[str, Any]]], calls: int, rounds: int, failed: dict[str, str]) -> Result:
    figures: dict[str, Any] = {"calls_per_round": calls, "rounds": rounds, "not_measured": failed}
    rows = []
    for kind in KINDS:
        row = {key: _median(samples, kind, key) for key in ("median_us", "check_us", "record_us")}
        figures[kind] = {key: value for key, value in row.items() if not math.isnan(value)}  # none records nothing
        rows.append(
            [kind, _stats.fmt(row["median_us"], 2), _stats.fmt(row["check_us"], 3), _stats.fmt(row["record_us"], 3)]
        )
    deltas = {kind: figures[kind]["median_us"] - figures["none"]["median_us"] for kind in ("one", "three")}
    figures["call_delta_us"] = deltas
    check_us = figures["one"]["check_us"]
    targets = {f"the breaker check (one breaker, closed) < {CHECK_TARGET_US} us": check_us < CHECK_TARGET_US}
    notes = [
        f"{calls} calls x {rounds} rounds; median over rounds",
        f"whole llm_call - none: one {_stats.fmt(deltas['one'], 2)} us, three {_stats.fmt(deltas['three'], 2)} us "
        "(check, span attribute, outcome; per-call medians differ by more than that between rounds here)",
        "none's check_us is RULES.check with no rule: the hot path skips it (RULES.active is False)",
        *(f"{name}: NOT MEASURED: {reason.splitlines()[-1]}" for name, reason in failed.items()),
    ]
    headers = ["variant", "llm_call median us", "check us", "outcome record us"]
    return Result(NAME, TITLE, figures, table(headers, rows), targets, notes)
