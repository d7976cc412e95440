"""Agent and tool spans, rollups and per-run budgets (issue 16), with the real OpenAI SDK on the loopback
server: ``@observe(kind=...)`` shapes, rollups counted once per ancestor across tasks and threads, the
run id on every span of a run, ``budget(per="run")``, and the report's by-run and by-agent tables."""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llmwatch
from llmwatch import _health, testing
from llmwatch._attribution import Rollup
from llmwatch._demo._server import FakeLLMServer
from llmwatch._report import build_report, load_spans
from llmwatch.testing import Captured

ASK = [{"role": "user", "content": "plan the trip"}]
ROLLUP_KEYS = ("cost_usd", "input_tokens", "output_tokens", "llm_calls")


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    stats = llmwatch.stats()
    assert stats["spans_started"] == stats["spans_ended"]


def chat(client: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=ASK)


def by_name(captured: Captured, name: str) -> Any:
    (span,) = [s for s in captured.spans if s.name == name]
    return span


def rollup(span: Any) -> dict[str, Any]:
    """The span's rollups; with no call beneath, only ``llm_calls=0`` is on the span (the rest are 0)."""
    attrs = dict(span.attributes or {})
    assert "llmwatch.rollup.llm_calls" in attrs
    return {key: attrs.get(f"llmwatch.rollup.{key}", 0) for key in ROLLUP_KEYS}


def sums(llm_spans: list[Any]) -> dict[str, Any]:
    attrs = [dict(s.attributes or {}) for s in llm_spans]
    return {
        "cost_usd": pytest.approx(sum(a["llmwatch.cost.usd"] for a in attrs), rel=1e-12),
        "input_tokens": sum(a["gen_ai.usage.input_tokens"] for a in attrs),
        "output_tokens": sum(a["gen_ai.usage.output_tokens"] for a in attrs),
        "llm_calls": len(attrs),
    }


def children_of(captured: Captured, parent: Any) -> list[Any]:
    return [s for s in captured.spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


# --- span shapes -------------------------------------------------------------------------------------
def test_agent_and_tool_spans_follow_the_conventions(openai_client: Any, captured: Captured) -> None:
    @llmwatch.observe(kind="tool", name="lookup_weather")
    def lookup_weather(city: str, days: int = 1) -> dict[str, Any]:
        return {"city": city, "forecast": "sun"}

    @llmwatch.observe(kind="agent", name="Trip planner")
    def planner() -> str:
        chat(openai_client)
        lookup_weather("Paris", days=2)
        return str(chat(openai_client).choices[0].message.content)

    planner()
    agent = by_name(captured, "invoke_agent Trip planner")
    tool = by_name(captured, "execute_tool lookup_weather")
    attrs = dict(agent.attributes or {})
    assert attrs["gen_ai.operation.name"] == "invoke_agent" and attrs["gen_ai.agent.name"] == "Trip planner"
    assert agent.kind.name == "INTERNAL" and attrs["llmwatch.span.kind"] == "agent"
    assert attrs["gen_ai.provider.name"] == "openai"  # the one provider its calls went to
    tool_attrs = dict(tool.attributes or {})
    assert tool_attrs["gen_ai.operation.name"] == "execute_tool"
    assert (tool_attrs["gen_ai.tool.name"], tool_attrs["gen_ai.tool.type"]) == ("lookup_weather", "function")
    # Content capture is off: no arguments or result, whatever the tool was given.
    assert "gen_ai.tool.call.arguments" not in tool_attrs and "gen_ai.tool.call.result" not in tool_attrs
    llm_spans = captured.llm_spans()
    assert len(llm_spans) == 2 and all(s.parent.span_id == agent.context.span_id for s in llm_spans)
    assert tool.parent.span_id == agent.context.span_id
    assert rollup(agent) == sums(llm_spans)
    assert rollup(tool)["llm_calls"] == 0
    for span in llm_spans:  # the run and the agent, on every LLM span of the run
        assert span.attributes["llmwatch.run.id"] == attrs["llmwatch.run.id"]
        assert span.attributes["llmwatch.agent.name"] == "Trip planner"


def test_tool_arguments_and_result_under_the_content_rules(openai_client: Any) -> None:
    @llmwatch.observe(kind="tool")
    def lookup(city: str, days: int = 1) -> dict[str, Any]:
        return {"city": city, "days": days}

    with testing.capture(capture_content=True) as captured:
        lookup("Paris", days=2)
    attrs = dict(captured.spans[0].attributes or {})
    assert json.loads(attrs["gen_ai.tool.call.arguments"]) == {"city": "Paris", "days": 2}
    assert json.loads(attrs["gen_ai.tool.call.result"]) == {"city": "Paris", "days": 2}
    with testing.capture(capture_content="redacted") as captured:
        lookup("alice@example.com")
    assert "alice@example.com" not in captured.spans[0].attributes["gen_ai.tool.call.arguments"]


def test_workflow_and_task_kinds(captured: Captured) -> None:
    @llmwatch.observe(kind="task", name="step")
    def step() -> int:
        return 1

    @llmwatch.observe(kind="workflow", name="checkout")
    def flow() -> int:
        return step()

    flow()
    workflow = by_name(captured, "invoke_workflow checkout")
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["gen_ai.workflow.name"] == "checkout"
    task = by_name(captured, "step")
    assert task.attributes["llmwatch.span.kind"] == "task" and "gen_ai.operation.name" not in task.attributes
    assert captured.llm_spans() == []  # agent/tool/workflow spans are not LLM calls
    for span in (workflow, task):  # no call beneath: llm_calls=0 says it, the zero totals are left off
        rollups = {k: v for k, v in span.attributes.items() if k.startswith("llmwatch.rollup.")}
        assert rollups == {"llmwatch.rollup.llm_calls": 0}


def test_an_unknown_kind_is_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match="'agent', 'tool'"):
        llmwatch.observe(kind="chain")


def test_a_failing_tool_marks_its_span_and_the_error_passes_through(captured: Captured) -> None:
    class ToolError(Exception):
        pass

    @llmwatch.observe(kind="tool")
    def broken() -> None:
        raise ToolError("no such city")

    with pytest.raises(ToolError):
        broken()
    (span,) = captured.spans
    assert span.attributes["error.type"] == "ToolError" and span.status.status_code.name == "ERROR"


@pytest.mark.parametrize("flavour", ["generator", "async_generator"])
async def test_agent_generators_roll_up_the_calls_made_while_iterating(
    openai_client: Any, async_openai_client: Any, captured: Captured, flavour: str
) -> None:
    if flavour == "generator":

        @llmwatch.observe(kind="agent", name="streamer")
        def agent() -> Iterator[str]:
            for _ in range(2):
                yield str(chat(openai_client).choices[0].message.content)

        assert len(list(agent())) == 2
    else:

        @llmwatch.observe(kind="agent", name="streamer")
        async def agent() -> Any:
            for _ in range(2):
                reply = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=ASK)
                yield reply.choices[0].message.content

        assert len([item async for item in agent()]) == 2
    assert rollup(by_name(captured, "invoke_agent streamer")) == sums(captured.llm_spans())


# --- rollups -----------------------------------------------------------------------------------------
def test_rollups_count_each_call_once_at_each_ancestor_across_threads(openai_client: Any, captured: Captured) -> None:
    @llmwatch.observe(kind="tool")
    def research() -> None:
        chat(openai_client)

    @llmwatch.observe(kind="agent", name="inner")
    def inner() -> None:
        chat(openai_client)
        research()

    @llmwatch.observe(name="run")
    def run() -> None:
        chat(openai_client)
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(inner,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run()
    root = by_name(captured, "run")
    llm_spans = captured.llm_spans()
    assert len(llm_spans) == 7 and rollup(root) == sums(llm_spans)
    for agent in [s for s in captured.spans if s.name == "invoke_agent inner"]:
        assert rollup(agent)["llm_calls"] == 2
    for tool in [s for s in captured.spans if s.name == "execute_tool research"]:
        assert rollup(tool)["llm_calls"] == 1
    run_ids = {s.attributes["llmwatch.run.id"] for s in captured.spans}
    assert run_ids == {root.attributes["llmwatch.run.id"]}  # one run, on every span
    assert re.fullmatch("[0-9a-f]{16}", root.attributes["llmwatch.run.id"])  # 64 random bits


async def test_rollups_across_asyncio_tasks(async_openai_client: Any, captured: Captured) -> None:
    @llmwatch.observe(kind="agent", name="fan-out")
    async def fan_out() -> None:
        calls = [async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=ASK) for _ in range(5)]
        await asyncio.gather(*calls)

    await asyncio.gather(fan_out(), fan_out())
    agents = [s for s in captured.spans if s.name == "invoke_agent fan-out"]
    assert len(agents) == 2
    for agent in agents:  # two runs side by side: each counts its own five calls only
        mine = [s for s in captured.llm_spans() if s.parent.span_id == agent.context.span_id]
        assert len(mine) == 5 and rollup(agent) == sums(mine)
    assert len({a.attributes["llmwatch.run.id"] for a in agents}) == 2


def test_an_unpriced_call_counts_as_a_call_but_not_in_the_cost(captured: Captured) -> None:
    @llmwatch.observe(name="run")
    def run() -> None:
        with llmwatch.llm_call(provider="vllm", model="local-model") as call:
            call.set_output("hi", input_tokens=3, output_tokens=2)

    run()
    attrs = dict(captured.spans[-1].attributes or {})
    assert attrs["llmwatch.rollup.llm_calls"] == 1 and attrs["llmwatch.rollup.unpriced_calls"] == 1
    assert attrs["llmwatch.rollup.cost_usd"] == 0.0 and attrs["llmwatch.rollup.input_tokens"] == 3


def test_a_rollup_fault_is_counted_and_the_call_goes_on(
    openai_client: Any, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("injected rollup fault")

    monkeypatch.setattr(Rollup, "add", boom)
    monkeypatch.setattr(_health, "raise_internal_errors", False)  # as in production: counted, not raised

    @llmwatch.observe(kind="agent", name="a")
    def agent() -> Any:
        return chat(openai_client)

    reply = agent()
    assert reply.choices[0].message.content  # the user's result, untouched
    assert llmwatch.stats()["internal_errors"] == 1
    assert len(captured.llm_spans()) == 1  # the LLM span still ended and was exported


# --- per-run budgets ---------------------------------------------------------------------------------
def _one_call_cost(openai_client: Any) -> float:
    with testing.capture() as captured:
        chat(openai_client)
    return float(captured.llm_spans()[0].attributes["llmwatch.cost.usd"])


def test_a_run_budget_stops_the_third_call_and_a_new_run_starts_afresh(
    openai_client: Any, server: FakeLLMServer, captured: Captured
) -> None:
    cost = _one_call_cost(openai_client)
    llmwatch.budget(cost * 1.5, per="run")  # two calls take the run over its limit

    @llmwatch.observe(kind="agent", name="looping")
    def agent() -> None:
        for _ in range(5):
            chat(openai_client)

    sent_before = len(server.requests)
    with pytest.raises(llmwatch.BudgetExceeded) as refused:
        agent()
    assert len(server.requests) - sent_before == 2  # the third call never reached the provider
    assert (refused.value.scope, refused.value.window, refused.value.resets_at) == ("run", "run", None)
    assert refused.value.spent_usd == pytest.approx(2 * cost)
    with pytest.raises(llmwatch.BudgetExceeded):
        agent()  # a new run: two more calls go out before it is stopped in turn
    assert len(server.requests) - sent_before == 4
    chat(openai_client)  # outside any run: not covered
    assert len(server.requests) - sent_before == 5
    refusals = [s for s in captured.llm_spans() if any(e.name == "llmwatch.call.refused" for e in s.events)]
    assert len(refusals) == 2


def test_a_run_budget_fallback_answers_instead(openai_client: Any, server: FakeLLMServer) -> None:
    cost = _one_call_cost(openai_client)
    llmwatch.budget(cost / 2, per="run", on_exceed=lambda exc: "over budget: answer from cache")

    @llmwatch.observe(kind="agent", name="a")
    def agent() -> list[Any]:
        return [chat(openai_client) for _ in range(3)]

    first, second, third = agent()
    assert second == third == "over budget: answer from cache" and first.choices[0].message.content
    assert llmwatch.stats()["budgets"]["run/run"]["limit_usd"] == pytest.approx(cost / 2)


def test_per_run_is_a_valid_window_and_others_still_are_refused() -> None:
    with pytest.raises(ValueError, match="'run'"):
        llmwatch.budget(1.0, per="week")


# --- the report ---------------------------------------------------------------------------------------
def test_the_report_shows_cost_per_run_and_per_agent(openai_client: Any, tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"

    @llmwatch.observe(kind="agent", name="researcher")
    def researcher() -> None:
        chat(openai_client)

    @llmwatch.observe(name="trip")
    def trip(calls: int) -> None:
        for _ in range(calls):
            chat(openai_client)
        researcher()

    llmwatch.configure(exporter="file", file_path=str(path), instrument=False)
    try:
        llmwatch.instrument(openai_client)
        trip(1)
        trip(3)
    finally:
        llmwatch.shutdown()
    report = build_report(load_spans([path]))
    assert report.runs == 2
    first, second = report.by_run
    assert first.key.startswith("trip · ") and first.calls == 4 and second.calls == 2  # costliest first
    (agent,) = report.by_agent
    assert (agent.key, agent.calls) == ("researcher", 2)
    assert first.cost_usd + second.cost_usd == pytest.approx(report.totals.cost_usd)
    assert report.totals.calls == 6  # agent and workflow spans are not LLM calls
