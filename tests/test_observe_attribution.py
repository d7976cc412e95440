"""``@observe`` spans for every function kind, and attribution across awaits, tasks and threads."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import llmwatch
from llmwatch.testing import Captured

KINDS = ["sync", "async", "generator", "async_generator"]
USER = [{"role": "user", "content": "hi"}]


class Boom(Exception):
    pass


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]  # workflow spans too


def llm(text: str = "ok") -> str:
    """One LLM call recorded through llm_call (a CLIENT span), returning its output."""
    with llmwatch.llm_call(provider="p", model="m") as call:
        call.set_input(USER)
        call.set_output(text, input_tokens=1, output_tokens=1)
    return text


def observed(kind: str, work: Callable[[], Any], **options: Any) -> Callable[..., Any]:
    """An ``@observe``d function of ``kind`` that returns (or yields, then yields "more") ``work()``."""
    if kind == "sync":

        def function() -> Any:
            return work()

    elif kind == "async":

        async def function() -> Any:  # type: ignore[misc]
            await asyncio.sleep(0)
            return await resolve(work())

    elif kind == "generator":

        def function() -> Any:  # type: ignore[misc]
            yield work()
            yield "more"

    else:

        async def function() -> Any:  # type: ignore[misc]
            await asyncio.sleep(0)
            yield await resolve(work())
            yield "more"

    return llmwatch.observe(**options)(function) if options else llmwatch.observe(function)


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def drive(kind: str, function: Callable[..., Any]) -> list[Any]:
    """Call an observed function of ``kind`` to the end; its results as a list."""
    if kind == "sync":
        return [function()]
    if kind == "async":
        return [await function()]
    if kind == "generator":
        return list(function())
    return [item async for item in function()]


def by_name(captured: Captured) -> dict[str, Any]:
    return {span.name: span for span in captured.spans}


# --- @observe ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
async def test_workflow_span_parents_the_llm_calls_inside(captured: Captured, kind: str) -> None:
    function = observed(kind, llm)
    results = await drive(kind, function)
    assert results[0] == "ok"
    spans = by_name(captured)
    workflow, call = spans[function.__qualname__], spans["chat m"]
    assert function.__qualname__.endswith("observed.<locals>.function")
    assert workflow.kind.name == "INTERNAL"
    assert workflow.attributes["llmwatch.span.kind"] == "workflow"
    assert "gen_ai.operation.name" not in workflow.attributes
    assert workflow.parent is None and workflow.status.status_code.name == "UNSET"
    assert call.parent.span_id == workflow.context.span_id
    assert call.context.trace_id == workflow.context.trace_id
    assert [s.name for s in captured.llm_spans()] == ["chat m"]


@pytest.mark.parametrize(
    ("outer", "inner"),
    [(o, i) for o in KINDS for i in KINDS if o.startswith("async") or not i.startswith("async")],
)
async def test_nested_observe_is_a_task(captured: Captured, outer: str, inner: str) -> None:
    task = observed(inner, llm, name="retrieve")

    def run_task() -> Any:
        if outer.startswith("async"):
            return drive(inner, task)  # a coroutine: the async workflow awaits it
        return list(task()) if inner == "generator" else task()

    workflow = observed(outer, run_task, name="handler")
    await drive(outer, workflow)
    spans = by_name(captured)
    handler, retrieve, call = spans["handler"], spans["retrieve"], spans["chat m"]
    assert handler.attributes["llmwatch.span.kind"] == "workflow"
    assert retrieve.attributes["llmwatch.span.kind"] == "task"
    assert retrieve.parent.span_id == handler.context.span_id
    assert call.parent.span_id == retrieve.context.span_id


@pytest.mark.parametrize("kind", ["generator", "async_generator"])
async def test_generator_closed_early_ends_its_span_without_error(captured: Captured, kind: str) -> None:
    generator = observed(kind, llm)()
    if kind == "generator":
        assert next(generator) == "ok"
        generator.close()
    else:
        assert await anext(generator) == "ok"
        await generator.aclose()
    (span,) = [s for s in captured.spans if s.name.endswith("function")]
    assert span.status.status_code.name == "UNSET" and "error.type" not in span.attributes
    assert span.end_time is not None
    assert [s.name for s in captured.spans] == ["chat m", span.name]


@pytest.mark.parametrize("kind", KINDS)
async def test_exception_marks_the_workflow_span_and_propagates(captured: Captured, kind: str) -> None:
    error = Boom("no")

    def fail() -> None:
        llm()
        raise error

    with pytest.raises(Boom) as caught:
        await drive(kind, observed(kind, fail, name="failing"))
    assert caught.value is error
    span = by_name(captured)["failing"]
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "Boom"
    assert by_name(captured)["chat m"].parent.span_id == span.context.span_id


@pytest.mark.parametrize("kind", KINDS)
async def test_observe_feature_attributes_the_calls_inside(captured: Captured, kind: str) -> None:
    with llmwatch.attributes(user="u1", feature="outer"):
        await drive(kind, observed(kind, llm, name="search", feature="search"))
    llm()  # outside: no attribution
    spans = by_name(captured)
    inside, outside = captured.llm_spans()
    assert inside.attributes["llmwatch.feature"] == "search" and inside.attributes["llmwatch.user"] == "u1"
    assert spans["search"].attributes["llmwatch.feature"] == "search"
    assert "llmwatch.feature" not in outside.attributes and "llmwatch.user" not in outside.attributes


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_real_sdk_calls_nest_under_observe(
    captured: Captured, openai_client: Any, async_openai_client: Any, flavour: str
) -> None:
    client = async_openai_client if flavour == "async" else openai_client
    function = observed(flavour, lambda: client.chat.completions.create(model="gpt-4o-mini", messages=USER))
    (reply,) = await drive(flavour, function)
    spans = by_name(captured)
    call = spans["chat gpt-4o-mini"]
    assert call.attributes["gen_ai.response.id"] == reply.id
    assert call.parent.span_id == spans[function.__qualname__].context.span_id


# --- llmwatch.attributes ----------------------------------------------------------------------------
def attribution(span: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in span.attributes.items()
        if k.startswith(
            ("llmwatch.user", "llmwatch.feature", "llmwatch.session", "llmwatch.tag.", "gen_ai.conversation")
        )
    }


async def test_attributes_nest_inner_wins_and_tags_merge(captured: Captured) -> None:
    with llmwatch.attributes(user="u1", feature="outer", session="s-1", region="eu", plan="free"):
        with llmwatch.attributes(feature="inner", plan="pro"):
            llm()
        llm()
    llm()
    inner, outer, outside = captured.llm_spans()
    assert attribution(inner) == {
        "llmwatch.user": "u1",
        "llmwatch.feature": "inner",
        "llmwatch.session": "s-1",
        "gen_ai.conversation.id": "s-1",
        "llmwatch.tag.region": "eu",
        "llmwatch.tag.plan": "pro",
    }
    assert attribution(outer)["llmwatch.feature"] == "outer" and attribution(outer)["llmwatch.tag.plan"] == "free"
    assert attribution(outside) == {}


@pytest.mark.parametrize("kind", KINDS)
async def test_attributes_as_a_decorator(captured: Captured, kind: str) -> None:
    function = observed(kind, llm, name="decorated")
    decorated = llmwatch.attributes(user="u-dec", feature="deco")(function)
    await drive(kind, decorated)
    llm()
    inside, outside = captured.llm_spans()
    assert attribution(inside) == {"llmwatch.user": "u-dec", "llmwatch.feature": "deco"}
    assert by_name(captured)["decorated"].attributes["llmwatch.user"] == "u-dec"
    assert attribution(outside) == {}


async def test_attributes_as_an_async_context_manager(captured: Captured) -> None:
    async with llmwatch.attributes(user="u-async"):
        await asyncio.sleep(0)
        llm()
    assert attribution(captured.llm_spans()[0]) == {"llmwatch.user": "u-async"}


async def test_attributes_cross_await_and_create_task(captured: Captured) -> None:
    async def later() -> None:
        await asyncio.sleep(0.001)
        llm()

    with llmwatch.attributes(user="u-task"):
        await asyncio.sleep(0)
        llm()
        task = asyncio.create_task(later())
    await task  # runs after the block closed: the task keeps the context it was created in
    assert [attribution(s) for s in captured.llm_spans()] == [{"llmwatch.user": "u-task"}] * 2


async def test_threads_see_attribution_only_through_a_copied_context(captured: Captured) -> None:
    with llmwatch.attributes(user="u-thread"):
        copied = threading.Thread(target=contextvars.copy_context().run, args=(llm, "copied"))
        bare = threading.Thread(target=llm, args=("bare",))
        for thread in (copied, bare):
            thread.start()
            thread.join()
    copied_span, bare_span = captured.llm_spans()
    assert attribution(copied_span) == {"llmwatch.user": "u-thread"}
    assert attribution(bare_span) == {}


async def test_fifty_concurrent_tasks_keep_their_own_user(async_openai_client: Any, captured: Captured) -> None:
    async def one(i: int) -> str:
        with llmwatch.attributes(user=f"u{i}"):
            await asyncio.sleep(0.001 * (i % 5))
            reply = await async_openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"user {i}"}]
            )
            return str(reply.id)

    ids = await asyncio.gather(*(one(i) for i in range(50)))
    users = {s.attributes["gen_ai.response.id"]: s.attributes["llmwatch.user"] for s in captured.llm_spans()}
    assert users == {response_id: f"u{i}" for i, response_id in enumerate(ids)}


async def test_one_attributes_object_shared_by_concurrent_tasks(captured: Captured) -> None:
    shared = llmwatch.attributes(feature="shared")

    async def one(delay: float) -> None:
        with shared:
            await asyncio.sleep(delay)
            llm()

    await asyncio.gather(one(0.0), one(0.01))  # the first to enter leaves first
    assert [attribution(s) for s in captured.llm_spans()] == [{"llmwatch.feature": "shared"}] * 2


@pytest.mark.parametrize("kind", KINDS)
async def test_user_and_session_use_the_general_conventions_too(captured: Captured, kind: str) -> None:
    """Phoenix, MLflow and Langfuse read ``user.id`` and ``session.id``: both spans carry them."""
    function = observed(kind, llm)
    with llmwatch.attributes(user="u-7", session="s-9"):
        await drive(kind, function)
    spans = by_name(captured)
    for span in (spans[function.__qualname__], spans["chat m"]):
        attrs = span.attributes
        assert (attrs["user.id"], attrs["llmwatch.user"]) == ("u-7", "u-7"), span.name
        assert (attrs["session.id"], attrs["llmwatch.session"], attrs["gen_ai.conversation.id"]) == ("s-9",) * 3
