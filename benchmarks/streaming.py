"""Scenario 2: streaming. Per-chunk cost of llmwatch's stream proxy, and time-to-first-token accuracy.

A 200-chunk SSE chat stream (OpenAI; Anthropic: 200 text deltas plus its framing events) is consumed
in three timed phases: ``setup`` (``create()`` up to the first chunk in hand), ``per chunk`` (every
later chunk the caller receives, divided by their number) and ``finish`` (the last ``next()``, which
ends the stream: llmwatch ends its span there, and for OpenAI hides the usage chunk it asked for).
Overhead per chunk = llmwatch - bare, paired per round.

TTFT: a transport that holds the first chunk back by a known delay; llmwatch's
``llmwatch.time_to_first_token_ms`` (captured in memory) against the caller's own stopwatch
(``create()`` to the first content chunk) and against the known delay.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _harness, _mock, _stats
from benchmarks._report import Result, table

NAME = "streaming"
TITLE = "Streaming: per-chunk overhead and TTFT accuracy"
PROVIDERS = ("openai", "anthropic")
KINDS = ("bare", "llmwatch")
CHUNKS = 200
TTFT_DELAY_MS = 20.0
TARGET_US_PER_CHUNK = 1.0


# --- worker side ----------------------------------------------------------------------------------
def consume(create: Callable[[], Any]) -> tuple[int, int, int, int]:
    """One stream, timed: (setup ns, later-chunks ns, later-chunk count, finish ns)."""
    clock = time.perf_counter_ns
    start = clock()
    iterator = iter(create())
    next(iterator)
    first = last = clock()
    count = 0
    for _ in iterator:
        count += 1
        last = clock()
    return first - start, last - first, count, clock() - last


def time_streams(create: Callable[[], Any], streams: int) -> dict[str, float]:
    """Median over ``streams`` streams of each phase (a median shrugs off the odd preempted stream)."""
    timings = [consume(create) for _ in range(streams)]
    return {
        "setup_us": statistics.median(t[0] for t in timings) / 1000.0,
        "us_per_chunk": statistics.median(t[1] / max(t[2], 1) for t in timings) / 1000.0,
        "chunks_per_stream": timings[0][2] + 1,
        "finish_us": statistics.median(t[3] for t in timings) / 1000.0,
    }


def _is_content(provider: str, chunk: Any) -> bool:
    if provider == "openai":
        return bool(chunk.choices) and bool(chunk.choices[0].delta.content)
    return getattr(chunk, "type", None) == "content_block_delta"


def _ttft_ms(span: Any) -> float:
    value = (span.attributes or {}).get("llmwatch.time_to_first_token_ms")
    return float(value) if isinstance(value, int | float) else float("nan")


def measure_ttft(provider: str, streams: int, delay_ms: float) -> dict[str, Any]:
    """llmwatch's recorded TTFT vs the caller's stopwatch, for streams whose first chunk is delayed."""
    import llmwatch.testing

    create = _mock.caller(
        _mock.make_client(provider, chunks=20, first_chunk_delay_s=delay_ms / 1000.0), provider, stream=True
    )
    observed: list[float] = []
    with llmwatch.testing.capture() as captured:
        for _ in range(streams):
            start = time.perf_counter()
            seen = None
            for chunk in create():
                if seen is None and _is_content(provider, chunk):
                    seen = (time.perf_counter() - start) * 1000.0
            observed.append(seen if seen is not None else float("nan"))
        spans = captured.llm_spans()
        recorded = [_ttft_ms(span) for span in spans]
    return {"delay_ms": delay_ms, "caller_ttft_ms": observed, "span_ttft_ms": recorded}


def setup(variant: str, params: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    provider, kind = variant.split(":", 1)
    if kind == "llmwatch":
        from benchmarks._telemetry import configure_llmwatch

        configure_llmwatch(exporter="none")
    create = _mock.caller(_mock.make_client(provider, chunks=CHUNKS), provider, stream=True)

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        if command.get("op") == "ttft":
            return measure_ttft(provider, int(command["streams"]), float(command["delay_ms"]))
        return time_streams(create, int(command["streams"]))

    return handle, {}


# --- parent side ----------------------------------------------------------------------------------
def _summarise(samples: dict[str, list[dict[str, Any]]], provider: str) -> dict[str, Any]:
    bare, watched = samples[f"{provider}:bare"], samples[f"{provider}:llmwatch"]
    out: dict[str, Any] = {"raw": {"bare": bare, "llmwatch": watched}}
    for key in ("setup_us", "us_per_chunk", "finish_us"):
        out[key] = {kind: _stats.summary([r[key] for r in samples[f"{provider}:{kind}"]]) for kind in KINDS}
        out[f"overhead_{key}"] = _stats.summary([w[key] - b[key] for w, b in zip(watched, bare, strict=True)])
    out["chunks_per_stream"] = watched[0]["chunks_per_stream"] if watched else None
    return out


def _ttft_summary(result: dict[str, Any]) -> dict[str, Any]:
    pairs = list(zip(result["span_ttft_ms"], result["caller_ttft_ms"], strict=False))
    return {
        **result,
        "spans": len(result["span_ttft_ms"]),
        "error_vs_caller_ms": _stats.summary([s - c for s, c in pairs]),
        "error_vs_delay_ms": _stats.summary([s - result["delay_ms"] for s in result["span_ttft_ms"]]),
    }


def _rows(figures: dict[str, Any]) -> list[list[str]]:
    rows = []
    for provider in PROVIDERS:
        f = figures.get(provider)
        if f is None:
            continue
        ttft = f.get("ttft", {})
        rows.append(
            [
                provider,
                _stats.fmt(f["us_per_chunk"]["bare"]["median"], 2),
                _stats.fmt(f["us_per_chunk"]["llmwatch"]["median"], 2),
                _stats.fmt(f["overhead_us_per_chunk"]["median"], 2),
                _stats.fmt_range(f["overhead_us_per_chunk"], 2),
                _stats.fmt(f["overhead_setup_us"]["median"]),
                _stats.fmt(f["overhead_finish_us"]["median"]),
                _stats.fmt(ttft.get("error_vs_caller_ms", {}).get("median"), 2),
                _stats.fmt(ttft.get("error_vs_delay_ms", {}).get("median"), 2),
            ]
        )
    return rows


def run(quick: bool) -> Result:
    streams, rounds, ttft_streams = (5, 3, 5) if quick else (60, 7, 30)
    with _harness.pool() as workers:
        workers.start(NAME, {f"{p}:{k}": {} for p in PROVIDERS for k in KINDS})
        workers.rounds(1, streams=max(streams // 2, 2))
        samples = workers.rounds(rounds, streams=streams)
        ttft = {
            p: workers.ready[f"{p}:llmwatch"].ask(op="ttft", streams=ttft_streams, delay_ms=TTFT_DELAY_MS)
            for p in PROVIDERS
            if f"{p}:llmwatch" in workers.ready
        }
    figures: dict[str, Any] = {}
    for provider in PROVIDERS:
        if all(f"{provider}:{k}" in samples for k in KINDS):
            figures[provider] = _summarise(samples, provider)
            if provider in ttft:
                figures[provider]["ttft"] = _ttft_summary(ttft[provider])
    figures |= {"streams_per_round": streams, "rounds": rounds, "chunks": CHUNKS, "not_measured": workers.failed}
    targets: dict[str, bool | None] = {
        f"{p}: overhead < {TARGET_US_PER_CHUNK} us/chunk": figures[p]["overhead_us_per_chunk"]["median"]
        < TARGET_US_PER_CHUNK
        for p in PROVIDERS
        if p in figures
    }
    header = [
        "provider",
        "bare us/chunk",
        "llmwatch us/chunk",
        "overhead us/chunk",
        "min..max",
        "setup +us",
        "finish +us",
        "TTFT err vs caller ms",
        "TTFT err vs delay ms",
    ]
    notes = [
        f"{streams} streams x {rounds} rounds (each round: median over its streams); {CHUNKS} content chunks/stream",
        f"TTFT: {ttft_streams} streams with the first chunk delayed {TTFT_DELAY_MS:.0f} ms; error = span TTFT - "
        "the caller's stopwatch (create() to first content chunk), and span TTFT - the delay",
        "setup +us / finish +us: llmwatch - bare for create() up to the first chunk / for the last next() "
        "(span end, and for OpenAI the hidden usage chunk llmwatch asked for)",
        *(f"{name}: NOT MEASURED: {reason.splitlines()[-1]}" for name, reason in workers.failed.items()),
    ]
    return Result(NAME, TITLE, figures, table(header, _rows(figures)), targets, notes)
