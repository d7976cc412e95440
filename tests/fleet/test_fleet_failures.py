"""The store down, restarted or paused: the app never sees it; budgets follow store_failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import llmwatch
from tests.fleet.redis_server import RedisServer
from tests.fleet.test_fleet_budget import totals, wait_for

ROOT = Path(__file__).resolve().parents[2]


def call() -> float:
    """One budgeted call; returns how long llmwatch's part took the caller (seconds)."""
    started = time.perf_counter()
    with llmwatch.attributes(feature="search"), llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as c:
        c.set_output("ok", input_tokens=1000, output_tokens=500)
    return time.perf_counter() - started


def store() -> dict[str, Any]:
    return llmwatch.stats()["store"]  # type: ignore[no-any-return]


def configure(server: RedisServer, **settings: Any) -> None:
    llmwatch.configure(service_name="fleet-test", exporter="none", store=server.url, instrument=False, **settings)
    llmwatch.budget(10.0, per="day", feature="search")
    wait_for(lambda: store()["state"] == "connected" and store()["leases"]["feature=search/day"]["held_usd"])


def test_redis_killed_mid_run_the_app_goes_on_and_sharing_resumes_after_restart(redis_server: RedisServer) -> None:
    configure(redis_server)
    for _ in range(20):
        call()
    redis_server.kill()
    down_until = time.monotonic() + 1.5
    while time.monotonic() < down_until:  # open: calls go on from the last known state, no exception
        call()
        time.sleep(0.005)
    assert store()["state"] == "down" and store()["errors"] > 0
    assert "connection" in (store()["last_error"] or "").lower()
    redis_server.start()  # same port, empty: persistence is off
    restarted = time.monotonic()
    wait_for(lambda: store()["state"] == "connected", timeout_s=10)
    assert time.monotonic() - restarted < 10
    call()
    wait_for(lambda: totals(redis_server, "feature=search/day")[1] > 0, timeout_s=5)  # spend made while down, too
    wait_for(lambda: store()["leases"]["feature=search/day"]["unreported_usd"] < 1e-12, timeout_s=5)


def test_closed_refuses_budgeted_calls_while_the_store_is_down(redis_server: RedisServer) -> None:
    configure(redis_server, store_failure="closed")
    call()
    redis_server.kill()
    wait_for(lambda: store()["state"] == "down", timeout_s=5)
    with pytest.raises(llmwatch.BudgetExceeded):
        call()
    with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as c:  # not under the budget: goes ahead
        c.set_output("ok", input_tokens=1, output_tokens=1)
    redis_server.start()
    wait_for(lambda: store()["state"] == "connected", timeout_s=10)
    call()


def test_a_paused_store_never_slows_the_caller(redis_server: RedisServer) -> None:
    # A lease that covers every call below ($0.00045 each): this test is about time, not refusals; with
    # the default 1 % lease a loaded machine could spend it before the worker saw the store down.
    configure(redis_server, lease_usd=1.0)
    healthy = sorted(call() for _ in range(300))
    redis_server.pause()  # accepts nothing, answers nothing: the worker's requests time out
    try:
        paused = sorted(call() for _ in range(300))
        wait_for(lambda: store()["state"] == "down", timeout_s=5)
        paused += [call() for _ in range(100)]
    finally:
        redis_server.resume()
    # A call that waited on the store would take its 0.5 s timeout: none comes near it, and the typical
    # call is as fast as before (the p99 bound of 1 ms is the benchmark's: `--only fleet`).
    paused.sort()
    assert paused[-1] < 0.25 and paused[len(paused) // 2] < healthy[len(healthy) // 2] + 0.001


def test_the_store_url_is_checked_at_configure_and_its_password_never_shown(tmp_path: Any) -> None:
    with pytest.raises(llmwatch.ConfigurationError, match="redis://"):
        llmwatch.configure(exporter="none", store="http://localhost:6379", instrument=False)
    with pytest.raises(llmwatch.ConfigurationError, match="closed"):
        llmwatch.configure(exporter="none", store="redis://localhost:6379/0", store_failure="maybe", instrument=False)
    with pytest.raises(llmwatch.ConfigurationError, match="lease_usd"):
        llmwatch.configure(exporter="none", store="redis://localhost:6379/0", lease_usd=-1, instrument=False)


def test_a_password_in_the_url_reaches_no_span_log_or_stats(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(password="s3cret-pw")
    server.start()
    try:
        llmwatch.configure(service_name="fleet-test", exporter="none", store=server.url, instrument=False)
        llmwatch.budget(1.0, per="day", feature="search")
        wait_for(lambda: store()["state"] == "connected")
        assert "s3cret-pw" not in repr(llmwatch.stats()) and "***" in store()["url"]
        server.kill()
        wait_for(lambda: store()["state"] == "down", timeout_s=5)
        call()
        assert "s3cret-pw" not in repr(llmwatch.stats())
        assert "s3cret-pw" not in caplog.text and "***" in caplog.text  # the once-a-minute warning
    finally:
        server.kill()


def test_a_store_that_forgot_the_lease_script_costs_no_error(redis_server: RedisServer) -> None:
    configure(redis_server)
    call()
    wait_for(lambda: totals(redis_server, "feature=search/day")[1])
    client: Any = redis_server.client()
    client.script_flush()  # what a restarted or failed-over Redis looks like to the worker
    call()
    wait_for(lambda: totals(redis_server, "feature=search/day")[1] >= 2 * 450_000_000)
    assert store()["errors"] == 0 and store()["state"] == "connected"


def test_configuring_again_hands_the_budgets_windows_to_the_new_store_connection(redis_server: RedisServer) -> None:
    configure(redis_server)
    call()
    llmwatch.configure(service_name="fleet-test", exporter="none", store=redis_server.url, instrument=False)
    wait_for(lambda: store()["state"] == "connected" and store()["leases"]["feature=search/day"]["held_usd"])
    for _ in range(5):
        call()
    wait_for(lambda: store()["leases"]["feature=search/day"]["unreported_usd"] < 1e-12)
    assert totals(redis_server, "feature=search/day")[1] == 6 * 450_000_000  # every call, counted once


def test_processes_ride_out_redis_killed_and_restarted_mid_run(redis_server: RedisServer, tmp_path: Any) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fleet.spender",
                redis_server.url,
                "100",
                str(tmp_path / f"s{i}.jsonl"),
                "0.005",
                "6",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for i in range(3)
    ]
    time.sleep(2.0)
    redis_server.kill()
    time.sleep(1.5)
    redis_server.start()
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()[-2000:]  # no exception reached the app
        report = json.loads(out.decode().strip().splitlines()[-1])
        assert report["made"] > 0 and report["refused"] == 0  # open: calls went on while it was down
        assert report["store"]["state"] == "connected" and report["store"]["errors"] > 0
    assert totals(redis_server, "feature=search/day")[1] > 0  # what they spent after the restart was shared
