"""@observe spans for every function kind, and attribution across awaits, tasks and threads."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import llmwatch
from llmwatch.testing import Captured

USER = [{"role": "user", "content": "hi"}]


def test_sync_workflow_with_nested_task_and_llm_child(openai_client: Any, captured: Captured) -> None:
    @llmwatch.observe(name="retrieve")
    def retrieve() -> str:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER).id

    @llmwatch.observe(feature="search")
    def handler() -> str:
        return retrieve()

    handler()
    by_name = {s.name: s for s in captured.spans}
    workflow, task, llm = by_name[handler.__qualname__], by_name["retrieve"], by_name["chat gpt-4o-mini"]
    assert workflow.kind.name == "INTERNAL" and workflow.attributes["llmwatch.span.kind"] == "workflow"
    assert task.attributes["llmwatch.span.kind"] == "task"
    assert "gen_ai.operation.name" not in workflow.attributes
    assert task.parent.span_id == workflow.context.span_id
    assert llm.parent.span_id == task.context.span_id
    assert llm.attributes["llmwatch.feature"] == "search"


def test_generator_closed_early_and_error(captured: Captured) -> None:
    @llmwatch.observe
    def numbers() -> Iterator[int]:
        yield 1
        yield 2

    @llmwatch.observe
    def fails() -> None:
        raise ValueError("no")

    gen = numbers()
    assert next(gen) == 1
    gen.close()
    with pytest.raises(ValueError):
        fails()
    closed, failed = captured.spans
    assert closed.status.status_code.name == "UNSET"
    assert failed.status.status_code.name == "ERROR" and failed.attributes["error.type"] == "ValueError"


async def test_async_and_async_generator(async_openai_client: Any, captured: Captured) -> None:
    @llmwatch.observe
    async def answer() -> str:
        reply = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        return str(reply.id)

    @llmwatch.observe
    async def stream_words() -> AsyncIterator[str]:
        for word in ("a", "b"):
            await asyncio.sleep(0)
            yield word

    await answer()
    assert [w async for w in stream_words()] == ["a", "b"]
    names = [s.name for s in captured.spans]
    assert names[0] == "chat gpt-4o-mini"
    llm, answer_span, gen_span = captured.spans
    assert llm.parent.span_id == answer_span.context.span_id
    assert gen_span.name.endswith("stream_words")


def test_attributes_nest_merge_and_decorate(captured: Captured) -> None:
    @llmwatch.attributes(feature="inner", plan="pro")
    def call() -> None:
        with llmwatch.llm_call(provider="p", model="m") as c:
            c.set_output("x", input_tokens=1, output_tokens=1)

    with llmwatch.attributes(user="u1", feature="outer", region="eu"):
        call()
    attrs = captured.llm_spans()[0].attributes
    assert attrs["llmwatch.user"] == "u1" and attrs["llmwatch.feature"] == "inner"
    assert attrs["llmwatch.tag.plan"] == "pro" and attrs["llmwatch.tag.region"] == "eu"


def _record(user_seen: list[Any]) -> None:
    with llmwatch.llm_call(provider="p", model="m") as c:
        c.set_output("x", input_tokens=1, output_tokens=1)
    user_seen.append(True)


def test_threads_need_a_copied_context(captured: Captured) -> None:
    seen: list[Any] = []
    with llmwatch.attributes(user="u-thread"):
        copied = threading.Thread(target=contextvars.copy_context().run, args=(_record, seen))
        bare = threading.Thread(target=_record, args=(seen,))
        copied.start()
        copied.join()
        bare.start()
        bare.join()
    first, second = captured.llm_spans()
    assert first.attributes["llmwatch.user"] == "u-thread"
    assert "llmwatch.user" not in second.attributes


async def test_concurrent_tasks_keep_their_own_user(async_openai_client: Any, captured: Captured) -> None:
    async def one(i: int) -> None:
        with llmwatch.attributes(user=f"u{i}"):
            await asyncio.sleep(0)
            await async_openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"user {i}"}]
            )

    await asyncio.gather(*(one(i) for i in range(30)))
    spans = captured.llm_spans()
    assert len(spans) == 30
    server_side = {s.attributes["llmwatch.user"] for s in spans}
    assert server_side == {f"u{i}" for i in range(30)}
