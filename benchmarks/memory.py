"""Scenario 5: memory. 1,000,000 ``llmwatch.llm_call`` records (no HTTP) with ``exporter="none"``
after a 10k warm-up must not grow the process by more than 5 MB, and every call must be accounted for
in ``llmwatch.stats()`` (started = ended, drops counted).

Two passes, each in its own process, one after the other; growth is measured after
``llmwatch.force_flush()`` and ``gc.collect()`` at both ends (so spans waiting in the export queue do
not count as growth):

- ``rss``: the full count, RSS (psutil) before and after, ``gc.collect()`` at both ends;
- ``tracemalloc``: a smaller count (tracemalloc slows every allocation several times) with
  tracemalloc started after the warm-up: growth of traced memory and its top allocation sites.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _harness, _stats
from benchmarks._report import Result, table

NAME = "memory"
TITLE = "Memory: llm_call records, exporter='none'"
WARMUP = 10_000
QUICK_WARMUP = 2_000
TARGET_MB = 5.0
MB = 1024.0 * 1024.0


# --- worker side ----------------------------------------------------------------------------------
def record_calls(calls: int) -> None:
    """``calls`` manual llm_call records, each with output and token counts (no HTTP)."""
    import llmwatch

    for _ in range(calls):
        with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
            call.set_output("Hello there!", input_tokens=20, output_tokens=4)


def _rss() -> int:
    import psutil  # type: ignore[import-untyped]

    return int(psutil.Process().memory_info().rss)


def _accounting() -> dict[str, Any]:
    import llmwatch

    stats = llmwatch.stats()
    keys = ["spans_started", "spans_ended", "spans_dropped", "exports_succeeded", "exports_failed", "internal_errors"]
    keys.append("metrics_dropped")  # metric measurements lost when llmwatch's metric drainer lags
    return {key: stats.get(key) for key in keys}


def settle() -> None:
    """Export what is queued, then collect: growth is then what stays, not spans waiting in the queue."""
    import llmwatch

    llmwatch.force_flush(timeout_s=30.0)
    gc.collect()


def rss_pass(calls: int, warmup: int) -> dict[str, Any]:
    record_calls(warmup)
    settle()
    before = _rss()
    start = time.perf_counter()
    record_calls(calls)
    elapsed = time.perf_counter() - start
    settle()
    return {
        "calls": calls,
        "warmup": warmup,
        "rss_before_mb": before / MB,
        "rss_growth_mb": (_rss() - before) / MB,
        "us_per_call": elapsed / calls * 1e6,
        "stats": _accounting(),
    }


def tracemalloc_pass(calls: int, warmup: int) -> dict[str, Any]:
    import tracemalloc

    record_calls(warmup)
    settle()
    tracemalloc.start(5)
    baseline = tracemalloc.take_snapshot()
    before, _ = tracemalloc.get_traced_memory()
    record_calls(calls)
    settle()
    after, peak = tracemalloc.get_traced_memory()
    top = tracemalloc.take_snapshot().compare_to(baseline, "lineno")[:5]
    tracemalloc.stop()
    return {
        "calls": calls,
        "warmup": warmup,
        "traced_growth_mb": (after - before) / MB,
        "traced_peak_mb": (peak - before) / MB,
        "top_growth": [str(stat) for stat in top],
        "stats": _accounting(),
    }


def setup(variant: str, params: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    from benchmarks._telemetry import configure_llmwatch

    configure_llmwatch(exporter="none")

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        calls, warmup = int(command["calls"]), int(command["warmup"])
        return rss_pass(calls, warmup) if variant == "rss" else tracemalloc_pass(calls, warmup)

    return handle, {}


# --- parent side ----------------------------------------------------------------------------------
def accounted(result: dict[str, Any]) -> bool:
    """Every call has a span that started and ended (drops are counted, not lost)."""
    stats = result["stats"]
    expected = result["warmup"] + result["calls"]
    return bool(stats["spans_started"] == stats["spans_ended"] == expected)


def run(quick: bool) -> Result:
    calls = {"rss": 20_000, "tracemalloc": 5_000} if quick else {"rss": 1_000_000, "tracemalloc": 100_000}
    warmup = QUICK_WARMUP if quick else WARMUP
    with _harness.pool() as workers:
        workers.start(NAME, {name: {} for name in calls})
        results = {
            name: worker.ask(timeout_s=1800, calls=calls[name], warmup=warmup) for name, worker in workers.ready.items()
        }
    figures: dict[str, Any] = {**results, "warmup": warmup, "not_measured": workers.failed}
    rows = []
    for name, r in results.items():
        growth = r.get("rss_growth_mb", r.get("traced_growth_mb"))
        s = r["stats"]
        rows.append(
            [
                f"{name} ({r['calls']:,} calls)",
                _stats.fmt(growth, 2),
                _stats.fmt(r.get("us_per_call")),
                str(s["spans_started"]),
                str(s["spans_ended"]),
                str(s["spans_dropped"]),
                str(accounted(r)),
            ]
        )
    targets: dict[str, bool | None] = {
        f"{name}: growth < {TARGET_MB:g} MB": r.get("rss_growth_mb", r.get("traced_growth_mb", 99.0)) < TARGET_MB
        for name, r in results.items()
    }
    targets |= {f"{name}: every call accounted for": accounted(r) for name, r in results.items()}
    header = ["pass", "growth MB", "us/call", "started", "ended", "dropped", "accounted"]
    notes = [
        f"after a {warmup:,}-call warm-up; growth measured after force_flush() + gc at both ends; the two passes "
        "run one after the other (us/call: the rss pass, no tracemalloc); tracemalloc's top growth sites in the JSON",
        *(f"{name}: NOT MEASURED: {reason.splitlines()[-1]}" for name, reason in workers.failed.items()),
    ]
    return Result(NAME, TITLE, figures, table(header, rows), targets, notes)
