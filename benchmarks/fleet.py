"""Scenario: what a shared (fleet) budget costs the caller, with the store healthy and paused.

A real ``redis-server`` (Debian's; the scenario is NOT MEASURED without one) on a free loopback port.
Variants, each in its own process, rounds interleaved:

- ``no_budget``: ``llm_call`` with reported usage, no budget;
- ``local``: the same call under a per-process budget;
- ``store``: the same call under a budget shared through the store (``configure(store=...)``).

Each round times every call on its own (p99 over the round) and, apart, the check before a call
(``RULES.check``: what the hot path reads). Then the store is paused (SIGSTOP: it accepts
connections and never answers, so the worker's requests time out) and the rounds run again.

Targets: the check with a store under 2 us; the caller's p99 with the store paused within 1 ms of
its healthy p99.
"""

from __future__ import annotations

import math
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _harness, _stats, _telemetry
from benchmarks._report import Result, table

NAME = "fleet"
TITLE = "Fleet budgets: the caller's cost with a store, healthy and paused"
KINDS = ("no_budget", "local", "store")
CHECK_TARGET_US = 2.0
PAUSED_P99_TARGET_MS = 1.0


def _call() -> None:
    import llmwatch

    with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
        call.set_output("ok", input_tokens=12, output_tokens=3)


def setup(variant: str, params: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    import llmwatch
    from llmwatch import _attribution
    from llmwatch._policy._budget import RULES

    store = params["store"] if variant == "store" else None
    _telemetry.configure_llmwatch(exporter="none", instrument=False, service_name="bench-fleet", store=store)
    if variant != "no_budget":
        llmwatch.budget(1_000_000.0, per="day", feature="bench")  # never reached: the cost is the check's
    scope = llmwatch.attributes(feature="bench")
    scope.__enter__()
    if store is not None:  # the first lease
        deadline = time.monotonic() + 10
        while not llmwatch.stats()["store"]["leases"].get("feature=bench/day", {}).get("held_usd"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no lease from the store: {llmwatch.stats()['store']}")
            time.sleep(0.02)

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        n = int(command["calls"])
        clock = time.perf_counter_ns
        durations = []
        for _ in range(n):
            start = clock()
            _call()
            durations.append((clock() - start) / 1000.0)
        attribution = _attribution.current()
        start = clock()
        for _ in range(n):
            RULES.check(attribution, "openai", "gpt-4o-mini", {})
        check_us = (clock() - start) / n / 1000.0
        durations.sort()
        return {
            "median_us": durations[len(durations) // 2],
            "p99_us": durations[int(len(durations) * 0.99)],
            "check_us": check_us,
            "store_state": llmwatch.stats().get("store", {}).get("state"),
        }

    return handle, {}


class _Redis:
    def __init__(self, binary: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait(5)


def run(quick: bool) -> Result:
    calls, rounds = (500, 3) if quick else (3000, 7)
    binary = shutil.which("redis-server")
    if binary is None:
        notes = ["NOT MEASURED: redis-server is not installed (apt-get install redis-server)"]
        return Result(NAME, TITLE, {"not_measured": "no redis-server"}, [], {}, notes)
    redis = _Redis(binary)
    try:
        with _harness.pool() as workers:
            workers.start(NAME, {kind: {"store": redis.url} for kind in KINDS})
            workers.rounds(1, calls=max(calls // 3, 50))  # warm-up
            healthy = workers.rounds(rounds, calls=calls)
            redis.process.send_signal(signal.SIGSTOP)
            time.sleep(1.0)  # the worker is now waiting out its timeouts
            paused = workers.rounds(rounds, calls=calls)
            redis.process.send_signal(signal.SIGCONT)
    finally:
        redis.stop()
    return _result(healthy, paused, calls, rounds, workers.failed)


def _median(samples: dict[str, list[dict[str, Any]]], kind: str, key: str) -> float:
    values = [sample[key] for sample in samples.get(kind, [])]
    return _stats.summary(values)["median"] if values else math.nan


def _result(
    healthy: dict[str, list[dict[str, Any]]],
    paused: dict[str, list[dict[str, Any]]],
    calls: int,
    rounds: int,
    failed: dict[str, str],
) -> Result:
    figures: dict[str, Any] = {"calls_per_round": calls, "rounds": rounds, "not_measured": failed}
    rows = []
    for kind in KINDS:
        figures[kind] = {
            phase: {key: _median(samples, kind, key) for key in ("median_us", "p99_us", "check_us")}
            for phase, samples in (("healthy", healthy), ("paused", paused))
        }
        for phase in ("healthy", "paused"):
            row = figures[kind][phase]
            rows.append(
                [
                    kind,
                    phase,
                    _stats.fmt(row["median_us"], 1),
                    _stats.fmt(row["p99_us"], 1),
                    _stats.fmt(row["check_us"], 2),
                ]
            )
    store = figures["store"]
    figures["paused_states"] = sorted({sample["store_state"] for sample in paused.get("store", [])} - {None})
    p99_delta_ms = (store["paused"]["p99_us"] - store["healthy"]["p99_us"]) / 1000.0
    figures["store_paused_p99_delta_ms"] = p99_delta_ms
    targets = {
        f"the check with a store < {CHECK_TARGET_US} us": store["healthy"]["check_us"] < CHECK_TARGET_US,
        f"p99 with the store paused within {PAUSED_P99_TARGET_MS} ms of healthy": p99_delta_ms < PAUSED_P99_TARGET_MS,
    }
    notes = [
        f"{calls} calls x {rounds} rounds per phase; median over rounds of each round's median and p99",
        f"store paused: the store variant saw state {figures['paused_states']} (down: the worker timed out)",
        f"store p99 paused - healthy: {_stats.fmt(p99_delta_ms, 3)} ms",
        *(f"{name}: NOT MEASURED: {reason.splitlines()[-1]}" for name, reason in failed.items()),
    ]
    headers = ["variant", "store", "median us", "p99 us", "check us"]
    return Result(NAME, TITLE, figures, table(headers, rows), targets, notes)
