"""Scenario 4: a stalled exporter and a dead collector must not reach the caller.

Variants, each llmwatch-instrumented in its own interpreter, same sequential OpenAI calls:

- ``healthy``: a custom no-op ``SpanExporter`` instance (``configure(exporter=...)``);
- ``stalled``: a custom ``SpanExporter`` whose ``export`` blocks for 10 s;
- ``otlp-grpc`` / ``otlp-http``: ``exporter="otlp"`` to a loopback port nothing listens on.

Caller p99 under each must stay within 10% of ``healthy``; ``llmwatch.stats()`` shows the drops and
export failures; ``llmwatch.shutdown(timeout_s=2)`` is timed at the end and must honour its deadline.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _harness, _mock, _stats
from benchmarks._report import Result, table

NAME = "exporters"
TITLE = "Stalled exporter and dead collector: caller latency, drops, shutdown"
KINDS = ("healthy", "stalled", "otlp-grpc", "otlp-http")
STALL_S = 10.0
SHUTDOWN_TIMEOUT_S = 2.0
SHUTDOWN_SLACK_S = 0.5
P99_TOLERANCE = 1.10
STAT_KEYS = ("spans_started", "spans_ended", "spans_dropped", "exports_succeeded", "exports_failed")


# --- worker side ----------------------------------------------------------------------------------
def _configure(kind: str, port: int) -> None:
    from benchmarks import _telemetry

    if kind == "healthy":
        _telemetry.configure_llmwatch(exporter=_telemetry.CountingExporter())
    elif kind == "stalled":
        _telemetry.configure_llmwatch(exporter=_telemetry.StalledExporter(STALL_S))
    else:
        protocol = "grpc" if kind == "otlp-grpc" else "http/protobuf"
        _telemetry.configure_llmwatch(exporter="otlp", endpoint=f"http://127.0.0.1:{port}", protocol=protocol)


def _stats_snapshot() -> dict[str, Any]:
    import llmwatch

    stats = llmwatch.stats()
    return {key: stats.get(key) for key in (*STAT_KEYS, "last_export_error", "internal_errors")}


def time_calls(call: Callable[[], Any], calls: int) -> dict[str, Any]:
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - start)
    return {
        "p50_us": _stats.percentile(latencies, 50) * 1e6,
        "p99_us": _stats.percentile(latencies, 99) * 1e6,
        "max_us": max(latencies) * 1e6,
        "stats": _stats_snapshot(),
    }


def time_shutdown() -> dict[str, Any]:
    import llmwatch

    before = _stats_snapshot()
    start = time.perf_counter()
    llmwatch.shutdown(timeout_s=SHUTDOWN_TIMEOUT_S)
    return {"shutdown_s": time.perf_counter() - start, "stats_before": before, "stats_after": _stats_snapshot()}


def setup(variant: str, params: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    _configure(variant, int(params["port"]))
    call = _mock.caller(_mock.make_client("openai"), "openai")

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        if command["op"] == "shutdown":
            return time_shutdown()
        return time_calls(call, int(command["calls"]))

    return handle, {}


# --- parent side ----------------------------------------------------------------------------------
def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _summarise(kind: str, results: list[dict[str, Any]], healthy_p99: list[float]) -> dict[str, Any]:
    p99 = [r["p99_us"] for r in results]
    return {
        "raw": results,
        "p50_us": _stats.summary([r["p50_us"] for r in results]),
        "p99_us": _stats.summary(p99),
        "max_us": _stats.summary([r["max_us"] for r in results]),
        "p99_vs_healthy": _stats.summary([a / b for a, b in zip(p99, healthy_p99, strict=True)]),
        "stats": results[-1]["stats"] if results else {},
    }


def _targets(figures: dict[str, Any]) -> dict[str, bool | None]:
    targets: dict[str, bool | None] = {}
    for kind in KINDS[1:]:
        f = figures.get(kind)
        targets[f"{kind}: caller p99 within 10% of healthy"] = (
            None if f is None else f["p99_vs_healthy"]["median"] <= P99_TOLERANCE
        )
    for kind in KINDS:
        f = figures.get(kind)
        targets[f"{kind}: shutdown(timeout_s={SHUTDOWN_TIMEOUT_S:g}) returns in time"] = (
            None if f is None else f["shutdown"]["shutdown_s"] <= SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S
        )
    return targets


def _rows(figures: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind in KINDS:
        f = figures.get(kind)
        if f is None:
            continue
        stats, after = f["shutdown"]["stats_before"], f["shutdown"]["stats_after"]
        rows.append(
            [
                kind,
                _stats.fmt(f["p50_us"]["median"]),
                _stats.fmt(f["p99_us"]["median"]),
                _stats.fmt(f["p99_vs_healthy"]["median"], 2),
                _stats.fmt_range(f["p99_vs_healthy"], 2),
                str(stats.get("spans_ended")),
                f"{stats.get('spans_dropped')} / {after.get('spans_dropped')}",
                f"{stats.get('exports_failed')} / {after.get('exports_failed')}",
                _stats.fmt(f["shutdown"]["shutdown_s"], 2),
            ]
        )
    return rows


def run(quick: bool) -> Result:
    calls, rounds = (100, 2) if quick else (1000, 11)
    with _harness.pool() as workers:
        workers.start(NAME, {kind: {"port": dead_port()} for kind in KINDS})
        workers.rounds(1, op="calls", calls=max(calls // 10, 10))
        samples = workers.rounds(rounds, op="calls", calls=calls)
        shutdowns = workers.broadcast(op="shutdown")  # each timed in its own process: they may overlap
    figures: dict[str, Any] = {}
    healthy = [r["p99_us"] for r in samples.get("healthy", [])]
    for kind, results in samples.items():
        figures[kind] = _summarise(kind, results, healthy) | {"shutdown": shutdowns[kind]}
    figures |= {"calls_per_round": calls, "rounds": rounds, "stall_s": STALL_S, "not_measured": workers.failed}
    header = [
        "exporter",
        "p50 us",
        "p99 us",
        "p99 / healthy",
        "min..max",
        "spans ended",
        "dropped run/end",
        "exports failed run/end",
        "shutdown s",
    ]
    notes = [
        f"{calls} sequential calls x {rounds} interleaved rounds; run/end = stats() before/after shutdown; "
        f"shutdown(timeout_s={SHUTDOWN_TIMEOUT_S:g}) must return within {SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S:g} s",
        *(f"{name}: NOT MEASURED: {reason.splitlines()[-1]}" for name, reason in workers.failed.items()),
    ]
    return Result(NAME, TITLE, figures, table(header, _rows(figures)), _targets(figures), notes)
