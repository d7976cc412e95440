"""A dead, failing or hung collector never reaches the app: real SDK calls, configure() as users call it.

For each collector failure (503, hang, nothing listening) over gRPC and HTTP, instrumented calls through
the real openai SDK to the loopback server succeed with the latency they have with no exporter at all,
the lost spans are counted in ``llmwatch.stats()``, and ``shutdown()`` returns within its timeout.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from otlp_receiver import DeadPort, GrpcReceiver, HttpReceiver, Mode

import llmwatch
from llmwatch._demo._server import FakeLLMServer

CALLS = 40
COUNTERS = ("spans_started", "spans_ended", "spans_dropped", "exports_succeeded", "exports_failed", "internal_errors")
ASK = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _fast_otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # seconds: a failed export gives up quickly
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")  # ms: export while the calls run
    yield


def timed_calls(client: openai.OpenAI) -> list[float]:
    durations = []
    for _ in range(CALLS):
        started = time.perf_counter()
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=ASK)
        durations.append(time.perf_counter() - started)
        assert reply.choices[0].message.content  # the app sees its answer
    return durations


def baseline(server: FakeLLMServer) -> float:
    llmwatch.configure(exporter="none")
    try:
        client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
        timed_calls(client)  # warm-up: connections, imports
        return statistics.median(timed_calls(client))
    finally:
        llmwatch.shutdown(timeout_s=2)


def collector(transport: str, mode: Mode | None) -> Any:
    if mode is None:
        return DeadPort()
    receiver = HttpReceiver() if transport == "http" else GrpcReceiver()
    receiver.mode = mode
    return receiver


@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.parametrize("mode", [Mode.UNAVAILABLE, Mode.HANG, None], ids=["503", "hang", "dead"])
def test_a_broken_collector_leaves_calls_and_their_latency_alone(
    server: FakeLLMServer, transport: str, mode: Mode | None
) -> None:
    healthy_median = baseline(server)
    before = llmwatch.stats()
    with collector(transport, mode) as receiver:
        protocol = "grpc" if transport == "grpc" else "http/protobuf"
        llmwatch.configure(exporter="otlp", endpoint=receiver.endpoint, protocol=protocol)
        client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
        broken = timed_calls(client)
        broken_median = statistics.median(broken)
        llmwatch.force_flush(timeout_s=1.5)
        after = llmwatch.stats()
        stats = {key: after[key] - before[key] for key in COUNTERS}
        started = time.monotonic()
        llmwatch.shutdown(timeout_s=2)
        shutdown_s = time.monotonic() - started
    # The latency of no exporter at all. The bounds hold on a loaded 2-core machine and still catch a
    # caller that waits on export: each export here takes the OTLP timeout (1 s) to fail, and with a
    # batch every 20 ms most calls would wait on one, so the 90th percentile would pass 1 s.
    assert statistics.quantiles(broken, n=10)[-1] < 0.5, sorted(broken)[-5:]
    assert broken_median < healthy_median * 3 + 0.010, (broken_median, healthy_median)
    assert stats["spans_started"] == stats["spans_ended"] == CALLS
    assert stats["exports_failed"] >= 1 and stats["exports_succeeded"] == 0
    assert stats["spans_dropped"] >= 1 and after["last_export_error"]
    assert stats["internal_errors"] == 0
    assert shutdown_s < 2.6
