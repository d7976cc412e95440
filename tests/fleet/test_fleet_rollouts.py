"""Rollouts shared by the fleet through a real redis-server: a share changed or a rollback decided in one
process holds in the others within 2 s."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import openai

import llmwatch
from llmwatch._demo._server import FakeLLMServer
from tests.fleet.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PROPAGATION_S = 2.0


def test_a_share_change_and_a_rollback_reach_the_other_processes(redis_server: RedisServer) -> None:
    name = f"fleet-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tests.fleet.rollout_watcher", redis_server.url, name],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert watcher.stdout is not None and watcher.stdout.readline().strip() == "ready"
    llmwatch.configure(service_name="fleet-test", exporter="none", store=redis_server.url, instrument=False)
    with FakeLLMServer() as fake:
        rollout = llmwatch.rollout(name, challenger={"model": "gpt-4o"}, share=0.05, min_calls=20)
        time.sleep(0.2)
        changed_at = time.time()
        rollout.set_share(0.5)
        fake.behave("gpt-4o", "error-500")
        client = llmwatch.instrument(openai.OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0))
        for i in range(400):
            with llmwatch.attributes(user=f"u{i}"), contextlib.suppress(openai.APIError):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            if rollout.state != "running":
                break
        rolled_back_at = time.time()
        assert rollout.state == "rolled_back"
    stdout, _ = watcher.communicate(timeout=60)
    seen = [json.loads(line) for line in stdout.strip().splitlines()]
    shares = [line for line in seen if line["share"] == 0.5 and line["state"] == "running"]
    assert shares and shares[0]["at"] - changed_at < PROPAGATION_S, seen
    assert seen[-1]["state"] == "rolled_back" and seen[-1]["share"] == 0.0, seen
    assert seen[-1]["at"] - rolled_back_at < PROPAGATION_S
