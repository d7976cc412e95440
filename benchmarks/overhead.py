"""Scenario 1: per-call overhead of a non-streaming chat call (OpenAI and Anthropic SDKs).

Variants, each in its own interpreter, interleaved round by round:

- ``bare``: the SDK alone over the mock transport;
- ``floor``: ``bare`` plus one hand-made CLIENT span carrying the very attributes llmwatch's span
  carries (copied from the ``llmwatch`` variant's span), through a real SDK TracerProvider with a
  BatchSpanProcessor into a no-op exporter: the least any OTel-based instrumentation can cost;
- ``llmwatch``: ``llmwatch.configure(exporter="none")`` with global instrumentation;
- ``llmwatch+content``: the same with ``capture_content=True``;
- ``contrib`` (OpenAI only): ``opentelemetry-instrumentation-openai-v2`` with real SDK providers.

Overhead = variant - bare, paired per round (median over rounds); ``x floor`` = overhead / floor's.
Every round also counts the spans each variant really produced (``spans/call``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks import _harness, _mock, _stats
from benchmarks._report import Result, table

NAME = "overhead"
TITLE = "Per-call overhead, non-streaming chat"
PROVIDERS = ("openai", "anthropic")
KINDS = ("bare", "floor", "llmwatch", "llmwatch+content", "contrib")
FLOOR_TARGET = 1.5

Call = Callable[[], Any]
SpanCounter = Callable[[], int]
Built = tuple[Call, SpanCounter, dict[str, Any]]


# --- worker side ----------------------------------------------------------------------------------
def _bare(provider: str, params: dict[str, Any]) -> Built:
    return _mock.caller(_mock.make_client(provider), provider), lambda: 0, {}


def _floor(provider: str, params: dict[str, Any]) -> Built:
    from benchmarks import _telemetry

    exporter = _telemetry.CountingExporter()
    tracer_provider = _telemetry.sdk_tracer_provider(exporter)
    model = _mock.OPENAI_MODEL if provider == "openai" else _mock.ANTHROPIC_MODEL
    wrap = _telemetry.floor_span(tracer_provider, f"chat {model}", params["attributes"])
    call = _mock.caller(_mock.make_client(provider), provider)

    def count() -> int:
        tracer_provider.force_flush()
        return exporter.exported

    return (lambda: wrap(call)), count, {"attributes": len(params["attributes"])}


def _llmwatch(provider: str, params: dict[str, Any], capture_content: bool) -> Built:
    import llmwatch
    from benchmarks._telemetry import configure_llmwatch

    configure_llmwatch(exporter="none", capture_content=capture_content)
    call = _mock.caller(_mock.make_client(provider), provider)
    attributes = llmwatch_span_attributes(call, capture_content)
    return call, lambda: int(llmwatch.stats()["spans_started"]), {"attributes": attributes}


def llmwatch_span_attributes(call: Call, capture_content: bool) -> dict[str, Any]:
    """The attributes llmwatch puts on this call's span (recorded once, in memory)."""
    import llmwatch.testing
    from benchmarks._telemetry import jsonable_attributes

    with llmwatch.testing.capture(capture_content=capture_content) as captured:
        call()
    (span,) = captured.llm_spans()
    return jsonable_attributes(span.attributes or {})


def _alias_httpx() -> bool:
    """contrib's openai-v2 imports ``httpx`` (for ``isinstance(base_url, httpx.URL)``) but recent openai
    SDKs use the ``httpx2`` fork: without ``httpx`` it cannot even import. Alias the fork (whose ``URL``
    is what the SDK really holds, so the check works as intended); True when the alias was needed."""
    import importlib.util
    import sys

    if importlib.util.find_spec("httpx") is not None:
        return False
    import httpx2

    sys.modules["httpx"] = httpx2
    return True


def _contrib(provider: str, params: dict[str, Any]) -> Built:
    """opentelemetry-instrumentation-openai-v2; refuses to report a number if it makes no spans."""
    import openai

    from benchmarks import _telemetry

    aliased = _alias_httpx()
    try:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    except ImportError as exc:
        raise RuntimeError(
            f"opentelemetry-instrumentation-openai-v2 {_version('opentelemetry-instrumentation-openai-v2')} "
            f"does not import with opentelemetry-util-genai {_version('opentelemetry-util-genai')} "
            f"and openai {openai.__version__} ({exc}); pin a util-genai release matching it to measure "
            "contrib, so no contrib figure"
        ) from exc

    exporter = _telemetry.CountingExporter()
    tracer_provider = _telemetry.sdk_tracer_provider(exporter)
    OpenAIInstrumentor().instrument(  # type: ignore[no-untyped-call]
        tracer_provider=tracer_provider, meter_provider=_telemetry.sdk_meter_provider()
    )
    call = _mock.caller(_mock.make_client(provider), provider)
    for _ in range(5):
        call()
    tracer_provider.force_flush()
    if exporter.exported < 5:
        raise RuntimeError(
            f"opentelemetry-instrumentation-openai-v2 made {exporter.exported} spans for 5 calls with "
            f"openai {openai.__version__}: it cannot wrap this SDK version, so no contrib figure"
        )

    def count() -> int:
        tracer_provider.force_flush()
        return exporter.exported

    return call, count, {"httpx_aliased_to_httpx2": aliased}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


def _build(provider: str, kind: str, params: dict[str, Any]) -> Built:
    if kind == "bare":
        return _bare(provider, params)
    if kind == "floor":
        return _floor(provider, params)
    if kind in ("llmwatch", "llmwatch+content"):
        return _llmwatch(provider, params, capture_content=kind == "llmwatch+content")
    if kind == "contrib":
        return _contrib(provider, params)
    raise ValueError(kind)


def time_calls(call: Call, calls: int) -> float:
    """Microseconds per call over ``calls`` back-to-back calls."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - start) / calls / 1000.0


def setup(variant: str, params: dict[str, Any]) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]:
    provider, kind = variant.split(":", 1)
    call, count_spans, info = _build(provider, kind, params)

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        calls = int(command["calls"])
        before = count_spans()
        us = time_calls(call, calls)
        return {"us_per_call": us, "spans_per_call": (count_spans() - before) / calls}

    return handle, info


# --- parent side ----------------------------------------------------------------------------------
def _variants(provider: str) -> list[str]:
    return [f"{provider}:{kind}" for kind in KINDS if kind != "contrib" or provider == "openai"]


def _start(workers: _harness.Pool) -> None:
    """llmwatch's variants first: the floors copy their span's attributes."""
    workers.start(NAME, {f"{p}:llmwatch": {} for p in PROVIDERS})
    rest: dict[str, dict[str, Any]] = {}
    for provider in PROVIDERS:
        info = workers.info.get(f"{provider}:llmwatch")
        for variant in _variants(provider):
            if variant.endswith(":floor"):
                if info is None:
                    continue
                rest[variant] = {"attributes": info["attributes"]}
            elif not variant.endswith(":llmwatch"):
                rest[variant] = {}
    workers.start(NAME, rest)


def _summarise(provider: str, samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    bare = [r["us_per_call"] for r in samples[f"{provider}:bare"]]
    out: dict[str, Any] = {}
    for variant in _variants(provider):
        if variant not in samples:
            continue
        values = [r["us_per_call"] for r in samples[variant]]
        overheads = [v - b for v, b in zip(values, bare, strict=True)]
        out[variant.split(":", 1)[1]] = {
            "us_per_call": values,
            "spans_per_call": [r["spans_per_call"] for r in samples[variant]],
            **{f"{k}_us": v for k, v in _stats.summary(values).items()},
            "overhead_us": _stats.summary(overheads),
            # Noise on a shared machine only ever adds time: the fastest round is a second estimate.
            "overhead_of_minima_us": min(values) - min(bare),
        }
    floor = out.get("floor", {})
    for figures in out.values():
        figures["x_floor"] = _stats.ratio(
            figures["overhead_us"]["median"], floor.get("overhead_us", {}).get("median", 0)
        )
        figures["x_floor_of_minima"] = _stats.ratio(
            figures["overhead_of_minima_us"], floor.get("overhead_of_minima_us", 0)
        )
    return out


def _targets(figures: dict[str, Any]) -> dict[str, bool | None]:
    targets: dict[str, bool | None] = {}
    for provider in PROVIDERS:
        variants = figures.get(provider, {})
        ratio = variants.get("llmwatch", {}).get("x_floor")
        targets[f"{provider}: llmwatch overhead <= {FLOOR_TARGET}x floor"] = (
            None if ratio is None or ratio != ratio else ratio <= FLOOR_TARGET
        )
    contrib = figures.get("openai", {}).get("contrib")
    llmwatch = figures.get("openai", {}).get("llmwatch")
    targets["openai: llmwatch overhead < contrib overhead"] = (
        None
        if contrib is None or llmwatch is None
        else llmwatch["overhead_us"]["median"] < contrib["overhead_us"]["median"]
    )
    return targets


def _rows(figures: dict[str, Any]) -> list[list[str]]:
    rows = []
    for provider in PROVIDERS:
        for kind, f in figures.get(provider, {}).items():
            spans = _stats.summary(f["spans_per_call"])["median"]
            rows.append(
                [
                    f"{provider} {kind}",
                    _stats.fmt(f["median_us"]),
                    _stats.fmt(f["min_us"]),
                    _stats.fmt(f["max_us"]),
                    _stats.fmt(f["overhead_us"]["median"]),
                    _stats.fmt(f["x_floor"], 2),
                    _stats.fmt(f["overhead_of_minima_us"]),
                    _stats.fmt(f["x_floor_of_minima"], 2),
                    _stats.fmt(spans, 2),
                ]
            )
    return rows


def run(quick: bool) -> Result:
    # Short rounds, many of them: each bare/variant pair is measured close in time, and the median over
    # rounds shrugs off the rounds another process on this shared machine disturbed.
    calls, rounds, warmup = (40, 3, 20) if quick else (200, 25, 200)
    with _harness.pool() as workers:
        _start(workers)
        workers.rounds(1, calls=warmup)
        samples = workers.rounds(rounds, calls=calls)
    figures: dict[str, Any] = {p: _summarise(p, samples) for p in PROVIDERS if f"{p}:bare" in samples}
    figures["calls_per_round"], figures["rounds"] = calls, rounds
    figures["llmwatch_span_attributes"] = {
        p: sorted(workers.info[f"{p}:llmwatch"]["attributes"]) for p in PROVIDERS if f"{p}:llmwatch" in workers.info
    }
    figures["not_measured"] = workers.failed
    header = [
        "variant",
        "median us",
        "min us",
        "max us",
        "overhead us",
        "x floor",
        "min-min us",
        "x floor (min)",
        "spans/call",
    ]
    notes = [f"{name}: NOT MEASURED: {reason.splitlines()[-1]}" for name, reason in workers.failed.items()]
    if workers.info.get("openai:contrib", {}).get("httpx_aliased_to_httpx2"):
        notes.append("contrib: openai-v2 imports `httpx`, absent here (the SDK uses httpx2): aliased to httpx2")
    notes.append(
        f"{calls} calls x {rounds} interleaved rounds per variant; overhead = median over rounds of (variant - bare) "
        "in the same round; min-min = fastest round - fastest bare round (a second estimate: noise only adds); "
        "targets use the median"
    )
    counts = ", ".join(f"{p} {len(names)}" for p, names in figures["llmwatch_span_attributes"].items())
    notes.append(f"floor spans carry the attributes of llmwatch's span ({counts} attributes)")
    return Result(NAME, TITLE, figures, table(header, _rows(figures)), _targets(figures), notes)
