"""Kill switches that hold for the fleet: from the CLI or kill_switch() in any process, within 2 s."""

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
from llmwatch import _cli
from tests.fleet.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PROPAGATION_S = 2.0


def start_switchers(url: str, count: int) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fleet.switcher", url], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        for _ in range(count)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    return workers


def cli(*args: str, server: RedisServer) -> int:
    return _cli.main(["switch", *args, "--store", server.url, "--service", "fleet-test"])


def results(workers: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    out = []
    for worker in workers:
        stdout, _ = worker.communicate(timeout=60)
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_a_switch_set_from_the_cli_stops_every_process_within_2_s(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = start_switchers(redis_server.url, 3)
    engaged_at = time.time()
    assert cli("set", "--feature", "search", server=redis_server) == 0
    for result in results(workers):
        assert result["refused_at"] is not None and result["refused_at"] - engaged_at < PROPAGATION_S, result
        assert result["last_ok"] < engaged_at + PROPAGATION_S  # no call started after that
    capsys.readouterr()
    assert cli("list", "--json", server=redis_server) == 0
    assert list(json.loads(capsys.readouterr().out)["switches"]) == ["feature:search"]
    assert cli("clear", "--feature", "search", server=redis_server) == 0
    capsys.readouterr()
    assert cli("list", server=redis_server) == 0
    assert "no switches engaged" in capsys.readouterr().out


def test_kill_switch_in_one_process_reaches_the_others_and_clearing_it_anywhere_lifts_it(
    redis_server: RedisServer,
) -> None:
    llmwatch.configure(service_name="fleet-test", exporter="none", store=redis_server.url, instrument=False)
    workers = start_switchers(redis_server.url, 2)
    engaged_at = time.time()
    llmwatch.kill_switch(feature="search")
    with (  # refused here at once
        pytest.raises(llmwatch.FeatureDisabled),
        llmwatch.attributes(feature="search"),
        llmwatch.llm_call(provider="openai", model="gpt-4o-mini"),
    ):
        pass
    for result in results(workers):
        assert result["refused_at"] is not None and result["refused_at"] - engaged_at < PROPAGATION_S, result
    assert cli("clear", "--feature", "search", server=redis_server) == 0
    deadline = time.monotonic() + PROPAGATION_S
    while llmwatch.stats()["kill_switches"]["features"]:
        assert time.monotonic() < deadline, "the clear did not reach this process"
        time.sleep(0.02)


def test_the_cli_says_what_is_wrong_without_showing_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli.main(["switch", "set", "--feature", "x", "--store", "redis://:s3cret@127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert "could not be reached" in err and "s3cret" not in err
    assert _cli.main(["switch", "list", "--store", "http://nope"]) == 2
    assert "redis://" in capsys.readouterr().err
    assert _cli.main(["switch", "set", "--store", "redis://127.0.0.1:1/0"]) == 2
    assert "--feature" in capsys.readouterr().err
