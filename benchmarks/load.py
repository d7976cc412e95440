"""Scenario 3: under load. Throughput and caller latency with 8 threads (sync client) and 1,000
concurrent asyncio tasks (async client), against a mock server that takes a few milliseconds per
call (``time.sleep`` / ``asyncio.sleep`` inside the transport), llmwatch vs bare."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _harness, _mock, _stats
from benchmarks._report import Result, table

NAME = "load"
TITLE = "Under load: 8 threads (sync) and 1,000 asyncio tasks (async)"
KINDS = ("bare", "llmwatch")
THREADS = 8
TASKS = 1000
SERVER_LATENCY_S = 0.002


# --- worker side ----------------------------------------------------------------------------------
def _figures(latencies_s: list[float], wall_s: float) -> dict[str, float]:
    return {
        "calls_per_s": len(latencies_s) / wall_s,
        "p50_ms": _stats.percentile(latencies_s, 50) * 1000.0,
        "p99_ms": _stats.percentile(latencies_s, 99) * 1000.0,
        "calls": len(latencies_s),
    }


def run_threads(client: Any, threads: int, calls_per_thread: int) -> dict[str, float]:
    call = _mock.caller(client, "openai")
    latencies: list[float] = []
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        mine = []
        barrier.wait()
        for _ in range(calls_per_thread):
            start = time.perf_counter()
            call()
            mine.append(time.perf_counter() - start)
        latencies.extend(mine)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    return _figures(latencies, time.perf_counter() - start)


async def _run_tasks(tasks: int, calls_per_task: int) -> dict[str, float]:
    call = _mock.caller(_mock.make_client("openai", is_async=True, latency_s=SERVER_LATENCY_S), "openai")
    latencies: list[float] = []

    async def work() -> None:
        for _ in range(calls_per_task):
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(tasks)))
    return _figures(latencies, time.perf_counter() - start)


def run_tasks(tasks: int, calls_per_task: int) -> dict[str, float]:
    return asyncio.run(_run_tasks(tasks, calls_per_task))


def setup(variant: str, params: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    if variant == "llmwatch":
        from benchmarks._telemetry import configure_llmwatch

        configure_llmwatch(exporter="none")
    client = _mock.make_client("openai", latency_s=SERVER_LATENCY_S)

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        calls = int(command["calls"])
        if command["op"] == "threads":
            return run_threads(client, THREADS, calls)
        return run_tasks(TASKS, calls)

    return handle, {}


# --- parent side ----------------------------------------------------------------------------------
def _summarise(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, results in samples.items():
        out[kind] = {"raw": results} | {
            key: _stats.summary([r[key] for r in results]) for key in ("calls_per_s", "p50_ms", "p99_ms")
        }
    if all(k in out for k in KINDS):
        bare, watched = samples["bare"], samples["llmwatch"]
        out["throughput_ratio"] = _stats.summary(
            [w["calls_per_s"] / b["calls_per_s"] for w, b in zip(watched, bare, strict=True)]
        )
    return out


def _rows(mode: str, figures: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind in KINDS:
        f = figures.get(kind)
        if f is None:
            continue
        rows.append(
            [
                f"{mode} {kind}",
                _stats.fmt(f["calls_per_s"]["median"], 0),
                _stats.fmt_range(f["calls_per_s"], 0),
                _stats.fmt(f["p50_ms"]["median"], 2),
                _stats.fmt(f["p99_ms"]["median"], 2),
                _stats.fmt_range(f["p99_ms"], 2),
                _stats.fmt(figures.get("throughput_ratio", {}).get("median"), 2) if kind == "llmwatch" else "",
            ]
        )
    return rows


def run(quick: bool) -> Result:
    thread_calls, task_calls, rounds = (10, 1, 2) if quick else (150, 2, 5)
    with _harness.pool() as workers:
        workers.start(NAME, {kind: {} for kind in KINDS})
        workers.rounds(1, op="threads", calls=max(thread_calls // 5, 2))
        workers.rounds(1, op="tasks", calls=1)
        threads = workers.rounds(rounds, op="threads", calls=thread_calls)
        tasks = workers.rounds(rounds, op="tasks", calls=task_calls)
    figures: dict[str, Any] = {"threads": _summarise(threads), "asyncio": _summarise(tasks)}
    figures |= {
        "threads": figures["threads"] | {"threads": THREADS, "calls_per_thread": thread_calls},
        "asyncio": figures["asyncio"] | {"tasks": TASKS, "calls_per_task": task_calls},
        "server_latency_ms": SERVER_LATENCY_S * 1000.0,
        "rounds": rounds,
        "not_measured": workers.failed,
    }
    header = ["mode variant", "calls/s", "min..max", "p50 ms", "p99 ms", "p99 min..max", "calls/s vs bare"]
    rows = _rows(f"{THREADS} threads", figures["threads"]) + _rows(f"{TASKS} tasks", figures["asyncio"])
    notes = [
        f"server latency {SERVER_LATENCY_S * 1000:.0f} ms/call; {THREADS} threads x {thread_calls} calls, "
        f"{TASKS} tasks x {task_calls} calls; {rounds} interleaved rounds; no target (calls/s vs bare: "
        "median of the per-round llmwatch/bare ratios)",
        *(f"{name}: NOT MEASURED: {reason.splitlines()[-1]}" for name, reason in workers.failed.items()),
    ]
    return Result(NAME, TITLE, figures, table(header, rows), {}, notes)
