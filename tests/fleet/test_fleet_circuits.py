"""Circuit breakers shared by the fleet through a real redis-server.

Three processes that each see too few calls to open a circuit on their own open it together (the
fleet's window); a process that sent nothing sees it open within 2 s; a probe that succeeds in one
process closes it in the others within 2 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import llmwatch
from llmwatch._demo._server import FakeLLMServer
from tests.fleet.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PROPAGATION_S = 2.0


def start(url: str, base_url: str, model: str, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.fleet.breaker", url, base_url, model, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    return worker


def go(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()


def lines(worker: subprocess.Popen[str]) -> list[dict[str, Any]]:
    stdout, _ = worker.communicate(timeout=60)
    return [json.loads(line) for line in stdout.strip().splitlines()]


def wait_for_state(key: str, state: str, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if llmwatch.stats()["circuits"][key]["state"] == state:
            return time.time()
        time.sleep(0.01)
    raise AssertionError(f"{key} not {state} within {timeout_s} s: {llmwatch.stats()['circuits'][key]}")


def test_the_fleet_opens_a_circuit_together_and_a_probe_anywhere_closes_it(redis_server: RedisServer) -> None:
    import openai

    model = f"gpt-4o-mini-{uuid.uuid4().hex[:6]}"
    key = f"model={model}"
    with FakeLLMServer() as fake:
        fake.behave(model, "error-500")
        watcher = start(redis_server.url, fake.openai_base_url, model, "watch")
        callers = [start(redis_server.url, fake.openai_base_url, model, "call") for _ in range(3)]
        llmwatch.configure(service_name="fleet-test", exporter="none", store=redis_server.url, instrument=False)
        llmwatch.circuit_breaker(model=model, min_calls=20, failure_rate=0.5, open_s=1.5)
        go([watcher, *callers])
        results = [lines(caller)[-1] for caller in callers]
        for result in results:  # each alone sent too few calls to open it: the fleet's window did
            assert result["refused_at"] is not None, results
            assert result["sent"] < 20, results
        first_refusal = min(result["refused_at"] for result in results)
        opened_here = wait_for_state(key, "open", PROPAGATION_S)  # this process sent nothing
        assert opened_here - first_refusal < PROPAGATION_S
        assert len(fake.requests_for(model)) < 3 * 20

        fake.behave(model)  # healthy again: after open_s, a probe from this process closes it everywhere
        client = llmwatch.instrument(openai.OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
                break
            except llmwatch.CircuitOpen:
                assert time.monotonic() < deadline, llmwatch.stats()["circuits"]
                time.sleep(0.05)
        closed_at = time.time()
        assert llmwatch.stats()["circuits"][key]["state"] == "closed"
        seen = lines(watcher)
        assert [line["state"] for line in seen][-1] == "closed", seen
        assert "open" in [line["state"] for line in seen]
        assert seen[-1]["at"] - closed_at < PROPAGATION_S


def test_store_down_circuits_keep_deciding_locally(redis_server: RedisServer) -> None:
    import openai

    model = f"gpt-4o-mini-{uuid.uuid4().hex[:6]}"
    with FakeLLMServer() as fake:
        fake.behave(model, "error-500")
        llmwatch.configure(service_name="fleet-test", exporter="none", store=redis_server.url, instrument=False)
        llmwatch.circuit_breaker(model=model, min_calls=5, open_s=30)
        redis_server.kill()
        client = llmwatch.instrument(openai.OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0))
        for _ in range(5):
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(llmwatch.CircuitOpen):
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert len(fake.requests_for(model)) == 5
