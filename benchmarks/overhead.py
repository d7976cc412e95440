"""Per-call overhead of llmwatch on a non-streaming chat completion, next to the bare-OTel floor.

Variants, interleaved round by round (the machine is shared and noisy, so only ratios measured in
one run mean anything):

- ``bare``: the real ``openai`` SDK over an in-process mock transport (no network), no telemetry;
- ``floor``: ``bare`` plus one hand-made OTel span carrying the same number of attributes as
  llmwatch's span, under a BatchSpanProcessor with a do-nothing exporter: the least any
  OTel-based instrumentation can cost;
- ``llmwatch``: ``bare`` instrumented by llmwatch (same provider setup as ``floor``, plus metrics
  into a MeterProvider with a reader, as in production);
- ``llmwatch+content``: the same with content capture on.

Overhead = variant median - bare median, in microseconds per call; ratio = overhead / floor overhead.

Run: ``python benchmarks/overhead.py [--calls N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESPONSE = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there!"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 20,
        "completion_tokens": 4,
        "total_tokens": 24,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]


def make_client() -> Any:
    import httpx2
    import openai

    body = json.dumps(RESPONSE).encode()

    def handler(request: Any) -> Any:
        return httpx2.Response(200, content=body, headers={"content-type": "application/json"})

    return openai.OpenAI(
        api_key="sk-bench",
        base_url="http://bench.invalid/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def null_tracer_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NullExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=100_000))
    return provider


def null_meter_provider() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return MeterProvider(metric_readers=[InMemoryMetricReader()])


def span_attribute_count(client: Any) -> int:
    """How many attributes llmwatch puts on this call's span (the floor carries as many)."""
    import llmwatch.testing

    with llmwatch.testing.capture() as captured:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (span,) = captured.llm_spans()
    return len(span.attributes or {})


def build_variants(calls: int) -> dict[str, Callable[[], None]]:
    from opentelemetry.trace import SpanKind

    import llmwatch

    bare_client = make_client()
    watched_client = llmwatch.instrument(make_client())
    n_attrs = span_attribute_count(watched_client)
    floor_tracer = null_tracer_provider().get_tracer("floor")

    def bare() -> None:
        bare_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    def floor() -> None:
        attrs = {f"attr.{i}": i for i in range(n_attrs)}
        span = floor_tracer.start_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=attrs)
        bare_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        span.end()

    def watched() -> None:
        watched_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    tracer_provider, meter_provider = null_tracer_provider(), null_meter_provider()
    runtimes = {}
    for capture in (False, True):
        llmwatch.configure(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=capture,
            instrument=False,
        )
        from llmwatch import _runtime

        runtimes[capture] = _runtime.CURRENT

    def with_runtime(capture: bool) -> Callable[[], None]:
        from llmwatch import _runtime

        def run() -> None:
            _runtime.swap(runtimes[capture])
            watched()

        return run

    return {"bare": bare, "floor": floor, "llmwatch": with_runtime(False), "llmwatch+content": with_runtime(True)}


def time_per_call(fn: Callable[[], None], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1000.0


def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    variants = build_variants(calls)
    for fn in variants.values():  # warm-up: imports, price resolution, caches
        time_per_call(fn, 200)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(time_per_call(fn, calls))
    return samples


def table(samples: dict[str, list[float]]) -> tuple[str, dict[str, Any]]:
    bare = statistics.median(samples["bare"])
    floor_overhead = statistics.median(samples["floor"]) - bare
    rows = []
    result: dict[str, Any] = {}
    for name, values in samples.items():
        median = statistics.median(values)
        overhead = median - bare
        ratio = overhead / floor_overhead if floor_overhead > 0 else float("nan")
        result[name] = {
            "median_us": median,
            "min_us": min(values),
            "max_us": max(values),
            "overhead_us": overhead,
            "ratio_to_floor": ratio,
        }
        rows.append(
            f"| {name:<17} | {median:9.1f} | {min(values):9.1f} | {max(values):9.1f} | {overhead:9.1f} | {ratio:6.2f} |"
        )
    header = "| variant           | median us |    min us |    max us | overhead  | x floor |"
    return "\n".join([header, "|---|---:|---:|---:|---:|---:|", *rows]), result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    samples = measure(args.calls, args.rounds)
    text, result = table(samples)
    print(f"non-streaming chat completion, {args.calls} calls x {args.rounds} rounds, python {sys.version.split()[0]}")
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
