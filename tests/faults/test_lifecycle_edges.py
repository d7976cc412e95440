"""The ways user code leaves things half done: streams abandoned, closed early or left in a ``with``
block; observed generators closed early or resumed elsewhere; recursion and reentrancy. Every span
ends exactly once, with no error raised or logged, and no context left attached.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import Any

import pytest
from opentelemetry import trace

import llmwatch
import llmwatch.testing
from faults._support import ANTHROPIC_MODEL, OPENAI_MODEL, PROMPT, Clients
from llmwatch.testing import Captured

STREAM_TARGETS = [
    pytest.param("openai", False, id="openai-sync"),
    pytest.param("openai", True, id="openai-async"),
    pytest.param("anthropic", False, id="anthropic-sync"),
    pytest.param("anthropic", True, id="anthropic-async"),
]
EARLY_ENDINGS = ["never-iterated-and-collected", "one-chunk-then-collected", "closed-early", "with-left-early"]


async def _open_stream(clients: Clients, provider: str, is_async: bool) -> Any:
    client = clients.get(provider, is_async, plain=False)
    messages = [{"role": "user", "content": f"{PROMPT} [[chunks:20]]"}]
    if provider == "openai":
        stream = client.chat.completions.create(model=OPENAI_MODEL, messages=messages, stream=True)
    else:
        stream = client.messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=messages, stream=True)
    return await stream if is_async else stream


async def _end_early(stream: Any, is_async: bool, how: str) -> None:
    if how == "one-chunk-then-collected":
        await anext(stream) if is_async else next(stream)
    elif how == "closed-early":
        await anext(stream) if is_async else next(stream)
        await stream.close() if is_async else stream.close()
    elif how == "with-left-early":
        if is_async:
            async with stream:
                async for _ in stream:
                    break
        else:
            with stream:
                for _ in stream:
                    break


@pytest.mark.parametrize("how", EARLY_ENDINGS)
@pytest.mark.parametrize(("provider", "is_async"), STREAM_TARGETS)
async def test_stream_ended_early_ends_its_span_once_as_incomplete(
    provider: str, is_async: bool, how: str, clients: Clients, captured: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    stream = await _open_stream(clients, provider, is_async)
    await _end_early(stream, is_async, how)
    del stream
    gc.collect()
    await asyncio.sleep(0)
    (span,) = captured.llm_spans()
    assert span.attributes["llmwatch.stream.completed"] is False
    assert "error.type" not in span.attributes
    stats = llmwatch.stats()
    assert stats["spans_started"] == stats["spans_ended"] == 1
    assert stats["internal_errors"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- observed generators ------------------------------------------------------------------------------
@llmwatch.observe
def _numbers(count: int) -> Any:
    yield from range(count)


@llmwatch.observe
async def _async_numbers(count: int) -> Any:
    for number in range(count):
        yield number


def _observe_spans(captured: Captured) -> list[Any]:
    return [s for s in captured.spans if s.attributes and "llmwatch.span.kind" in s.attributes]


def test_observed_generator_closed_early_ends_its_span_without_error(captured: Captured) -> None:
    before = trace.get_current_span()
    gen = _numbers(10)
    assert next(gen) == 0 and next(gen) == 1
    gen.close()
    assert trace.get_current_span() is before
    (span,) = _observe_spans(captured)
    assert span.status.is_ok and "error.type" not in span.attributes
    assert llmwatch.stats()["spans_ended"] == 1


async def test_observed_async_generator_closed_early_ends_its_span_without_error(captured: Captured) -> None:
    agen = _async_numbers(10)
    assert await anext(agen) == 0
    await agen.aclose()
    (span,) = _observe_spans(captured)
    assert span.status.is_ok and "error.type" not in span.attributes


def test_observed_generator_abandoned_is_ended_when_collected(captured: Captured) -> None:
    gen = _numbers(10)
    next(gen)
    del gen
    gc.collect()
    assert len(_observe_spans(captured)) == 1
    assert llmwatch.stats()["spans_started"] == llmwatch.stats()["spans_ended"] == 1


def test_observed_generator_resumed_in_another_thread_never_fails_to_detach(
    captured: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    gen = _numbers(4)
    seen = [next(gen)]

    def consume() -> None:
        seen.extend(gen)

    worker = threading.Thread(target=consume)
    worker.start()
    worker.join(30)
    assert seen == [0, 1, 2, 3]
    assert not [r for r in caplog.records if "Failed to detach context" in r.getMessage()]
    assert len(_observe_spans(captured)) == 1


@llmwatch.observe
def _factorial(n: int) -> int:
    return 1 if n <= 1 else n * _factorial(n - 1)


def test_recursive_observed_function_nests_one_span_per_call(captured: Captured) -> None:
    assert _factorial(5) == 120
    spans = _observe_spans(captured)
    assert len(spans) == 5
    by_id = {s.context.span_id: s for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1 and roots[0].attributes["llmwatch.span.kind"] == "workflow"
    depth = {id(s): 0 for s in spans}
    for span in spans:
        parent, hops = span.parent, 0
        while parent is not None:
            parent, hops = by_id[parent.span_id].parent, hops + 1
        depth[id(span)] = hops
    assert sorted(depth.values()) == [0, 1, 2, 3, 4]
    assert {s.attributes["llmwatch.span.kind"] for s in spans if s.parent is not None} == {"task"}
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_llm_call_inside_an_observed_generator_is_its_child_and_the_consumer_is_not(
    clients: Clients, captured: Captured
) -> None:
    client = clients.get("openai", False, plain=False)

    @llmwatch.observe(name="answer-stream")
    def answer() -> Any:
        stream = client.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    @llmwatch.observe(name="consumer-step")
    def consumer_step(text: str) -> str:
        return text.upper()

    shouted = [consumer_step(piece) for piece in answer()]
    assert shouted
    workflow = next(s for s in captured.spans if s.name == "answer-stream")
    (llm,) = captured.llm_spans()
    assert llm.parent is not None and llm.parent.span_id == workflow.context.span_id
    steps = [s for s in captured.spans if s.name == "consumer-step"]
    assert len(steps) == len(shouted)
    # the generator's context is attached only while it runs: the consumer's spans are not its children
    assert all(s.parent is None or s.parent.span_id != workflow.context.span_id for s in steps)
    assert llmwatch.stats()["spans_started"] == llmwatch.stats()["spans_ended"]


def test_reentrant_observed_generator_inside_itself(captured: Captured) -> None:
    @llmwatch.observe
    def walk(depth: int) -> Any:
        yield depth
        if depth:
            yield from walk(depth - 1)

    assert list(walk(3)) == [3, 2, 1, 0]
    assert len(_observe_spans(captured)) == 4
    assert trace.get_current_span() is trace.INVALID_SPAN
