"""Budgets shared by a fleet of processes through a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import llmwatch
from tests.fleet.redis_server import RedisServer

CALL_USD = 1000 * 0.15e-6 + 500 * 0.6e-6  # gpt-4o-mini, 1,000 in + 500 out
ROOT = Path(__file__).resolve().parents[2]


def spend_from_spans(path: Path) -> float:
    total = 0.0
    for line in path.read_text().splitlines():
        attrs = json.loads(line)["attributes"]
        if attrs.get("gen_ai.operation.name") == "chat":
            total += attrs.get("llmwatch.cost.usd", 0.0)
    return total


def run_fleet(store: str, limit: float, processes: int, tmp_path: Path) -> tuple[float, list[dict[str, Any]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = [tmp_path / f"spans-{index}.jsonl" for index in range(processes)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fleet.spender", store, str(limit), str(path)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for path in files
    ]
    reports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return sum(spend_from_spans(path) for path in files), reports


def test_four_processes_share_one_budget_and_without_a_store_spend_four_times_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    limit = 0.2  # about 444 calls for the fleet; a lease (1 %) is about 4 calls
    lease = limit * 0.01
    shared, reports = run_fleet(redis_server.url, limit, 4, tmp_path / "shared")
    assert limit <= shared <= limit + 4 * lease + 4 * CALL_USD, reports
    assert all(report["refused"] > 0 and report["made"] > 0 for report in reports)  # every process refused
    # a refusal says what the fleet spent (as last synced), more than any one process spent
    assert all(report["refusal_spent_usd"] > report["made"] * CALL_USD for report in reports)
    allocated, spent = totals(redis_server, "feature=search/day")
    assert spent == round(shared * 1e12, -3) or abs(spent / 1e12 - shared) < 1e-9  # exact in picodollars
    assert allocated == spent  # every unused lease went back at shutdown
    alone, _ = run_fleet("", limit, 4, tmp_path / "alone")
    assert 4 * limit <= alone <= 4 * (limit + CALL_USD)


def wait_for(condition: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def totals(server: RedisServer, name: str) -> tuple[int, int]:
    client: Any = server.client()
    (key,) = [k for k in client.keys("llmwatch:fleet-test:budget:*") if name in k]
    values = client.hmget(key, ["allocated", "spent"])
    return int(values[0] or 0), int(values[1] or 0)


def test_in_process_budget_takes_a_lease_and_reports_spend(redis_server: RedisServer) -> None:
    llmwatch.configure(service_name="fleet-test", exporter="none", store=redis_server.url, instrument=False)
    llmwatch.budget(1.0, per="day", feature="search")
    wait_for(lambda: llmwatch.stats()["store"]["leases"].get("feature=search/day", {}).get("held_usd"))
    store = llmwatch.stats()["store"]
    assert store["state"] == "connected" and store["url"] == redis_server.url
    assert store["leases"]["feature=search/day"]["held_usd"] == pytest.approx(0.01)
    with llmwatch.attributes(feature="search"), llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
        call.set_output("ok", input_tokens=1000, output_tokens=500)
    wait_for(lambda: totals(redis_server, "feature=search/day")[1])
    assert totals(redis_server, "feature=search/day")[1] == round(CALL_USD * 1e12)
    llmwatch.shutdown()
    allocated, spent = totals(redis_server, "feature=search/day")
    assert allocated == spent == round(CALL_USD * 1e12)  # the unused lease went back


def _child_spends(conn: Any) -> None:
    try:
        stats_before = llmwatch.stats()["store"]["leases"]["feature=search/day"]
        for _ in range(3):
            with llmwatch.attributes(feature="search"), llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as c:
                c.set_output("ok", input_tokens=1000, output_tokens=500)
        wait_for(lambda: llmwatch.stats()["store"]["leases"]["feature=search/day"]["unreported_usd"] < 1e-12)
        conn.send({"held_at_fork": stats_before["held_usd"], "after": llmwatch.stats()["store"]})
        llmwatch.shutdown()
    except BaseException as exc:  # the parent asserts on it
        conn.send({"error": repr(exc)})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_worker_opens_its_own_connection_and_takes_its_own_lease(redis_server: RedisServer) -> None:
    import multiprocessing

    llmwatch.configure(service_name="fleet-test", exporter="none", store=redis_server.url, instrument=False)
    llmwatch.budget(1.0, per="day", feature="search")
    wait_for(lambda: llmwatch.stats()["store"]["leases"]["feature=search/day"]["held_usd"])
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    child = context.Process(target=_child_spends, args=(child_end,))
    child.start()
    result = parent_end.recv()
    child.join(10)
    assert "error" not in result, result
    assert result["held_at_fork"] == 0  # the parent's lease stayed the parent's
    assert result["after"]["state"] == "connected" and result["after"]["errors"] == 0
    llmwatch.shutdown()  # the parent returns its untouched lease
    allocated, spent = totals(redis_server, "feature=search/day")
    assert spent == allocated == 3 * round(CALL_USD * 1e12)  # the child's three calls, counted once
