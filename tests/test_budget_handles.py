"""One scope and window, one budget, one handle: the runbook's "lift the ceiling" does what it says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import llmwatch
from llmwatch.testing import Captured

RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "runbook.md"


def spend(feature: str) -> None:
    with llmwatch.attributes(feature=feature), llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
        call.set_output("x", input_tokens=1_000_000, output_tokens=0)  # $0.15


def test_setting_a_scope_again_returns_the_same_handle(captured: Captured) -> None:
    first = llmwatch.budget(1.0, feature="search")
    second = llmwatch.budget(2.0, feature="search", on_exceed="warn")
    assert second is first
    assert (first.limit_usd, first.on_exceed) == (2.0, "warn")
    assert llmwatch.budget(3.0, per="hour", feature="search") is not first  # another window, another budget


def test_removing_the_first_handle_lifts_a_raised_ceiling(captured: Captured) -> None:
    first = llmwatch.budget(1e-9, feature="search")
    spend("search")
    llmwatch.budget(1e-8, feature="search")  # still below what was spent: refused
    with pytest.raises(llmwatch.BudgetExceeded):
        spend("search")
    first.remove()
    spend("search")  # lifted: goes ahead
    assert llmwatch.stats()["budgets"] == {}


def runbook_budget_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", RUNBOOK.read_text(), flags=re.S)
    (block,) = [b for b in blocks if ".remove()" in b and "llmwatch.budget(" in b]
    return block


def test_the_runbooks_budget_steps_do_what_they_say(captured: Captured) -> None:
    """The runbook's block, run literally line by line, with a call after each step."""
    lines = [line for line in runbook_budget_block().splitlines() if line.strip()]
    assert len(lines) == 3, lines
    scope: dict[str, Any] = {"llmwatch": llmwatch}

    exec(lines[0], scope)  # budget(100): the ceiling is set
    assert llmwatch.stats()["budgets"]["feature=search/day"]["limit_usd"] == 100
    spend("search")

    exec(lines[1], scope)  # budget(150): "raise the limit (same scope and window)", spending kept
    state = llmwatch.stats()["budgets"]["feature=search/day"]
    assert state["limit_usd"] == 150 and state["spent_usd"] == pytest.approx(0.15)
    assert len(llmwatch.stats()["budgets"]) == 1

    exec(lines[2], scope)  # .remove(): "lift the ceiling altogether"
    assert llmwatch.stats()["budgets"] == {}
    for _ in range(3):
        spend("search")  # nothing left to refuse them
    assert [s.attributes.get("error.type") for s in captured.llm_spans()] == [None] * 4
