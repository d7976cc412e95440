"""``llmwatch demo``'s workload: real SDK calls on the loopback server, every one a span in the file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from llmwatch._demo import run_demo
from llmwatch._demo._agent import RUNAWAY_BUDGET_USD
from llmwatch._demo._workload import BUDGETED_FEATURE, plan_workload


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def workload(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned calls' spans: those outside the agent runs."""
    return [s for s in spans if "llmwatch.run.id" not in s["attributes"]]


@pytest.fixture(scope="module")
def all_spans(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    path = run_demo(requests=40, concurrency=4, file_path=tmp_path_factory.mktemp("demo") / "s.jsonl", progress=False)
    return read_spans(path)


@pytest.fixture(scope="module")
def demo_spans(all_spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return workload(all_spans)


def test_every_planned_call_is_one_span(demo_spans: list[dict[str, Any]]) -> None:
    assert len(demo_spans) == 40
    assert all("gen_ai.operation.name" in s["attributes"] for s in demo_spans)
    assert {s["resource"]["service.name"] for s in demo_spans} == {"llmwatch-demo"}


def test_the_mix_has_users_features_models_streams_and_costs(demo_spans: list[dict[str, Any]]) -> None:
    attrs = [s["attributes"] for s in demo_spans]
    assert len({a["llmwatch.user"] for a in attrs}) >= 4
    features = {"search", "chat", "summarize", "support-bot", "rag-index", "translate", "extract", "classify"}
    assert {a["llmwatch.feature"] for a in attrs} == features
    assert {a["gen_ai.provider.name"] for a in attrs} == {"openai", "anthropic", "groq", "gcp.gemini", "aws.bedrock"}
    assert any(a.get("llmwatch.stream") for a in attrs) and any(not a.get("llmwatch.stream") for a in attrs)
    assert all(a["llmwatch.time_to_first_token_ms"] > 0 for a in attrs if a.get("llmwatch.stream.completed"))
    assert sum(a.get("llmwatch.cost.usd", 0) for a in attrs) > 0
    assert not any(a.get("llmwatch.cost.unknown_model") for a in attrs)


def test_the_run_side_events_show(demo_spans: list[dict[str, Any]]) -> None:
    errors = Counter(s["attributes"].get("error.type") for s in demo_spans)
    assert errors["BudgetExceeded"] >= 1  # the budgeted feature hit its ceiling
    assert errors["InternalServerError"] >= 1  # a provider failure
    refused = [s for s in demo_spans if s["attributes"].get("error.type") == "BudgetExceeded"]
    assert {s["attributes"]["llmwatch.feature"] for s in refused} == {BUDGETED_FEATURE}
    assert all(e["name"] == "llmwatch.call.refused" for s in refused for e in s["events"])


def test_the_agent_runs_show_with_tools_rollups_and_a_run_budget(all_spans: list[dict[str, Any]]) -> None:
    ids = {s["span_id"]: s for s in all_spans}

    def starts_its_run(span: dict[str, Any]) -> bool:
        run, parent = span["attributes"].get("llmwatch.run.id"), ids.get(span["parent_span_id"])
        return run is not None and (parent is None or parent["attributes"].get("llmwatch.run.id") != run)

    runs = [s for s in all_spans if starts_its_run(s)]
    names = Counter(s["name"] for s in runs)
    assert names == {"invoke_agent trip-planner": 3, "invoke_agent researcher": 2}
    tools = {s["attributes"]["gen_ai.tool.name"] for s in all_spans if s["name"].startswith("execute_tool ")}
    assert tools == {"get_weather"}  # the agent scenario calls the first tool offered
    for run in runs:
        mine = [s for s in all_spans if s["attributes"].get("llmwatch.run.id") == run["attributes"]["llmwatch.run.id"]]
        llm = [s for s in mine if s["attributes"].get("gen_ai.operation.name") == "chat"]
        sent = [s for s in llm if s["attributes"].get("error.type") != "BudgetExceeded"]
        assert run["attributes"]["llmwatch.rollup.llm_calls"] == len(sent)  # a refused call was never made
        total = sum(s["attributes"].get("llmwatch.cost.usd", 0.0) for s in sent)
        assert run["attributes"]["llmwatch.rollup.cost_usd"] == pytest.approx(total, rel=1e-9)
        if run["name"] == "invoke_agent researcher":  # the runaway: stopped by its per-run budget
            assert 1 <= len(sent) < 50 and len(llm) == len(sent) + 1
            assert total >= RUNAWAY_BUDGET_USD


def test_the_plan_is_deterministic_and_includes_a_retry() -> None:
    plan = plan_workload(60, seed=3)
    assert plan == plan_workload(60, seed=3)
    assert any(c.scenario == "error-429-once" for c in plan)


def test_a_rerun_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    run_demo(requests=3, concurrency=2, file_path=path, progress=False)
    run_demo(requests=2, concurrency=2, file_path=path, progress=False)
    assert len(workload(read_spans(path))) == 2


def test_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_demo(requests=0, file_path=tmp_path / "s.jsonl", progress=False)
