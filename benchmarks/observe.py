"""Scenario: ``@observe`` spans (with their rollups) and the rollup's cost on the LLM call path.

Variants, each in its own process, interleaved round by round:

- ``bare``: a plain function call (what the user's function costs without llmwatch);
- ``floor``: the same call inside one hand-made INTERNAL OTel span (SDK provider, batch processor,
  no-op exporter): the least any span costs;
- ``observe``: ``@llmwatch.observe`` (a workflow span with its rollup, its run id, the attribution it
  pushes for the calls inside);
- ``agent``: ``@llmwatch.observe(kind="agent")`` (the invoke_agent shape);
- ``llm``: one ``llm_call`` with reported usage, outside any observe span;
- ``llm_in_span``: the same ``llm_call`` inside one long-lived plain OTel span (llmwatch's tracer, no
  observe): a child span, as in a run, without a run;
- ``llm_in_run``: the same ``llm_call`` inside one long-lived observe span: the difference to
  ``llm_in_span`` is what a call pays to count in its run's rollups (and carry the run's id). The
  difference to ``llm`` (a root span) is mostly what any child span costs over a root one here.

Per-call figures are the median over rounds of (time of N calls / N). Compare ``observe`` with the
same scenario run on an older tree (``PYTHONPATH=<tree> python -m benchmarks --only observe``): the
target "an observe span with rollups costs no more than the observe span before rollups + 20 %" is a
comparison between two commits, reported in the issue note, not computed here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _harness, _stats, _telemetry
from benchmarks._report import Result, table

NAME = "observe"
TITLE = "@observe spans and rollups: per-call cost"
KINDS = ("bare", "floor", "observe", "agent", "llm", "llm_in_span", "llm_in_run")
FLOOR_ATTRIBUTES = {"llmwatch.span.kind": "workflow"}
ROLLUP_TARGET_US = 2.0  # what counting in the run's rollups may add to an LLM call


def _work() -> int:
    return 1


def _llm_call() -> None:
    import llmwatch

    with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
        call.set_output("ok", input_tokens=12, output_tokens=3)


def _build(kind: str) -> Callable[[], Any]:
    import llmwatch

    if kind == "bare":
        return _work
    if kind == "floor":
        provider = _telemetry.sdk_tracer_provider(_telemetry.CountingExporter())
        tracer = provider.get_tracer("benchmarks.floor")

        def floor() -> int:
            span = tracer.start_span("work", attributes=FLOOR_ATTRIBUTES)
            try:
                return _work()
            finally:
                span.end()

        return floor
    _telemetry.configure_llmwatch(exporter="none", instrument=False)
    if kind == "observe":
        return llmwatch.observe(name="work")(_work)
    if kind == "agent":
        return llmwatch.observe(name="work", kind="agent")(_work)
    return _llm_call


def setup(variant: str, params: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    call = _build(variant)

    def timed(n: int) -> float:
        clock = time.perf_counter_ns
        start = clock()
        for _ in range(n):
            call()
        return (clock() - start) / n / 1000.0

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        n = int(command["calls"])
        if variant == "llm_in_span":
            from opentelemetry import trace

            from llmwatch._core import _runtime

            with trace.use_span(_runtime.CURRENT.tracer.start_span("parent"), end_on_exit=True):
                return {"us_per_call": timed(n)}
        if variant != "llm_in_run":
            return {"us_per_call": timed(n)}
        import llmwatch

        @llmwatch.observe(name="run")
        def run() -> float:
            return timed(n)

        return {"us_per_call": run()}

    return handle, {}


def run(quick: bool) -> Result:
    calls, rounds = (300, 3) if quick else (3000, 9)
    with _harness.pool() as workers:
        workers.start(NAME, {kind: {} for kind in KINDS})
        workers.rounds(1, calls=max(calls // 3, 50))  # warm-up: price data, first spans
        samples = workers.rounds(rounds, calls=calls)
    per_call = {kind: _stats.summary([r["us_per_call"] for r in samples[kind]]) for kind in KINDS if kind in samples}

    def paired(a: str, b: str) -> dict[str, Any]:
        if a not in samples or b not in samples:
            return {}
        return _stats.summary(
            [x["us_per_call"] - y["us_per_call"] for x, y in zip(samples[a], samples[b], strict=True)]
        )

    figures: dict[str, Any] = {
        "per_call_us": per_call,
        "observe_over_bare_us": paired("observe", "bare"),
        "agent_over_bare_us": paired("agent", "bare"),
        "floor_over_bare_us": paired("floor", "bare"),
        "rollup_on_llm_call_us": paired("llm_in_run", "llm_in_span"),
        "child_over_root_llm_call_us": paired("llm_in_span", "llm"),
        "calls_per_round": calls,
        "rounds": rounds,
        "not_measured": workers.failed,
    }
    floor = figures["floor_over_bare_us"].get("median")
    observe = figures["observe_over_bare_us"].get("median")
    ratio = _stats.ratio(observe, floor) if observe is not None and floor is not None else math.nan
    figures["observe_x_floor"] = ratio if math.isfinite(ratio) else None
    rollup_us = figures["rollup_on_llm_call_us"].get("median", math.nan)
    targets = {f"a call's rollup accounting < {ROLLUP_TARGET_US} us": rollup_us < ROLLUP_TARGET_US}
    rows = [
        [
            kind,
            _stats.fmt(per_call[kind]["median"], 2),
            _stats.fmt_range(per_call[kind], 2),
        ]
        for kind in KINDS
        if kind in per_call
    ]
    notes = [
        f"{calls} calls x {rounds} rounds; per call = (time of the round's calls) / calls; median over rounds",
        f"observe - bare: {_stats.fmt(observe, 2)} us; floor - bare: {_stats.fmt(floor, 2)} us; "
        f"observe / floor: {_stats.fmt(figures['observe_x_floor'], 2)}",
        f"agent - bare: {_stats.fmt(figures['agent_over_bare_us'].get('median'), 2)} us; a call's rollup "
        f"accounting (llm_in_run - llm_in_span): {_stats.fmt(figures['rollup_on_llm_call_us'].get('median'), 2)} us; "
        f"a child LLM span over a root one (llm_in_span - llm): "
        f"{_stats.fmt(figures['child_over_root_llm_call_us'].get('median'), 2)} us",
        *(f"{name}: NOT MEASURED: {reason.splitlines()[-1]}" for name, reason in workers.failed.items()),
    ]
    return Result(NAME, TITLE, figures, table(["variant", "us/call", "min..max"], rows), targets, notes)
