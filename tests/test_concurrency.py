"""Under heavy concurrency every call is accounted for and no span carries another request's attribution.

- 10,000 concurrent asyncio calls through the real async ``openai`` and ``anthropic`` clients (chat and
  messages, streamed and not). Over real loopback sockets 10,000 calls take ~55 s (the server shares
  the process and its GIL), so the full-size run uses an ``httpx2.MockTransport`` that answers with the
  loopback server's own reply logic in-process (the SDKs, llmwatch's wrappers and stream proxies all run
  for real); 1,000 concurrent calls still go over real sockets;
- 10,000 concurrent ``llmwatch.llm_call`` blocks;
- 8 threads x 50,000 ``llm_call`` calls (``LLMWATCH_THREAD_CALLS`` scales it down for a quick run).

Each task or thread sets ``llmwatch.attributes(user=f"u{i}", feature=..., req=i)`` and puts its own id
in the prompt; a span processor checks every finished span: its ``llmwatch.user`` and ``llmwatch.tag.req``
belong together and (where content is captured) the prompt in ``gen_ai.input.messages`` is its own.
Accounting: ``spans_started == spans_ended == calls`` and ``exported + spans_dropped == calls``.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import llmwatch
from llmwatch._demo._server import FakeLLMServer
from llmwatch._demo._wire import Stream, sse_bytes

ASYNC_CALLS = 10_000
SOCKET_CALLS = 1_000
THREADS = 8
THREAD_CALLS = int(os.environ.get("LLMWATCH_THREAD_CALLS", "50000"))


class AttributionChecker(SpanProcessor):
    """Checks each finished LLM span as it ends (keeps counts, not spans: 400k spans would not fit)."""

    def __init__(self) -> None:
        self._ended = itertools.count()
        self.mismatches: list[str] = []
        self.requests_seen: set[int] = set()
        self._lock = threading.Lock()

    @property
    def ended(self) -> int:
        return int(self._ended.__reduce__()[1][0])

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        if "gen_ai.operation.name" not in attrs:
            return
        next(self._ended)
        req = attrs.get("llmwatch.tag.req")
        problems = []
        if attrs.get("llmwatch.user") != f"u{req}" or attrs.get("llmwatch.feature") != f"f{req % 7}":
            problems.append(f"user={attrs.get('llmwatch.user')} feature={attrs.get('llmwatch.feature')}")
        messages = attrs.get("gen_ai.input.messages")
        if messages is not None and f"request {req} " not in json.loads(str(messages))[-1]["parts"][0]["content"]:
            problems.append(f"prompt={messages}")  # the prompt this span recorded is another request's
        with self._lock:
            if problems:
                self.mismatches.append(f"req={req}: {', '.join(problems)}")
            if isinstance(req, int):
                self.requests_seen.add(req)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)  # one export at a time: the processor never calls us concurrently
        return SpanExportResult.SUCCESS


class Harness:
    def __init__(self, checker: AttributionChecker, exporter: CountingExporter) -> None:
        self.checker = checker
        self.exporter = exporter

    def assert_all_accounted_for(self, calls: int) -> None:
        assert llmwatch.force_flush(timeout_s=30.0)
        stats = llmwatch.stats()
        assert stats["spans_started"] == stats["spans_ended"] == calls
        assert self.exporter.exported + stats["spans_dropped"] == calls
        assert self.checker.ended == calls
        assert self.checker.mismatches == []
        assert self.checker.requests_seen == set(range(calls))
        assert stats["internal_errors"] == 0


@pytest.fixture()
def harness() -> Iterator[Harness]:
    checker, exporter = AttributionChecker(), CountingExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(checker)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    llmwatch.configure(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exporter=exporter,  # llmwatch's own batch processor on our provider: drops are counted
        capture_content=True,
        instrument=False,
    )
    try:
        yield Harness(checker, exporter)
    finally:
        llmwatch.shutdown(timeout_s=10.0)
        meter_provider.shutdown()
        tracer_provider.shutdown()


def _attributed(req: int) -> Any:
    return llmwatch.attributes(user=f"u{req}", feature=f"f{req % 7}", req=req)


def _prompt(req: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"request {req} please answer"}]


def _in_process_transport() -> httpx2.MockTransport:
    """The loopback server's replies without its sockets: the same JSON and SSE bytes, made in-process."""
    engine = FakeLLMServer()  # never started: only its reply logic is used

    def handler(request: httpx2.Request) -> httpx2.Response:
        reply = engine._reply(request.method, request.url.path, dict(request.headers), request.content)
        if isinstance(reply, Stream):
            body = b"".join(sse_bytes(event) for event in reply.events)
            return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return httpx2.Response(reply.status, json=reply.body, headers=dict(reply.headers))

    return httpx2.MockTransport(handler)


async def _concurrent_sdk_calls(calls: int, openai_url: str, anthropic_url: str, http_client: Any) -> None:
    options: dict[str, Any] = {"max_retries": 0, "timeout": 120.0}
    if http_client is not None:
        options["http_client"] = http_client
    oai = llmwatch.instrument(openai.AsyncOpenAI(api_key="sk-test", base_url=openai_url, **options))
    claude = llmwatch.instrument(anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=anthropic_url, **options))

    async def one(req: int) -> None:
        with _attributed(req):
            await asyncio.sleep(0)  # let the other tasks run between setting attribution and calling
            if req % 4 == 0:
                await oai.chat.completions.create(model="gpt-4o-mini", messages=_prompt(req))
            elif req % 4 == 1:
                stream = await oai.chat.completions.create(model="gpt-4o-mini", messages=_prompt(req), stream=True)
                async for _ in stream:
                    await asyncio.sleep(0)
            elif req % 4 == 2:
                await claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=_prompt(req))
            else:
                stream = await claude.messages.create(
                    model="claude-haiku-4-5", max_tokens=50, messages=_prompt(req), stream=True
                )
                async for _ in stream:
                    await asyncio.sleep(0)

    started = time.monotonic()
    await asyncio.gather(*(one(req) for req in range(calls)))
    print(f"\n{calls} concurrent SDK calls: {time.monotonic() - started:.1f}s")
    await oai.close()
    await claude.close()


async def test_ten_thousand_concurrent_sdk_calls_keep_their_own_attribution(harness: Harness) -> None:
    http_client = httpx2.AsyncClient(transport=_in_process_transport())
    await _concurrent_sdk_calls(ASYNC_CALLS, "http://loopback.invalid/v1", "http://loopback.invalid", http_client)
    await http_client.aclose()
    harness.assert_all_accounted_for(ASYNC_CALLS)


async def test_concurrent_sdk_calls_over_real_sockets_keep_their_own_attribution(
    server: FakeLLMServer, harness: Harness
) -> None:
    await _concurrent_sdk_calls(SOCKET_CALLS, server.openai_base_url, server.anthropic_base_url, None)
    harness.assert_all_accounted_for(SOCKET_CALLS)


async def test_ten_thousand_concurrent_llm_call_blocks_keep_their_own_attribution(harness: Harness) -> None:
    async def one(req: int) -> None:
        with _attributed(req):
            async with llmwatch.llm_call(provider="vllm", model="llama-3-8b") as call:
                call.set_input(_prompt(req))
                await asyncio.sleep(0)  # interleave every block with the others
                call.record_first_token()
                await asyncio.sleep(0)
                call.set_output(f"answer {req}", input_tokens=5, output_tokens=2)

    await asyncio.gather(*(one(req) for req in range(ASYNC_CALLS)))
    harness.assert_all_accounted_for(ASYNC_CALLS)


def test_eight_threads_of_llm_calls_keep_their_own_attribution(harness: Harness) -> None:
    start = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        start.wait()
        for index in range(THREAD_CALLS):
            req = thread * THREAD_CALLS + index
            with _attributed(req), llmwatch.llm_call(provider="vllm", model="llama-3-8b") as call:
                call.set_input(_prompt(req))
                call.set_output(f"answer {req}", input_tokens=5, output_tokens=2)

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(worker, thread)) for thread in range(THREADS)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"\n{THREADS} threads x {THREAD_CALLS} llm_call: {time.monotonic() - started:.1f}s")
    harness.assert_all_accounted_for(THREADS * THREAD_CALLS)
