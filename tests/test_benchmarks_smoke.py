"""The benchmark suite runs end to end (``python -m benchmarks --quick``) and writes its table and JSON.

Performance targets are deliberately not asserted: CI machines are too noisy for that. This only
checks that every scenario ran and produced numbers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.redis_server import redis_server_binary

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    *("overhead", "streaming", "observe", "fleet", "breakers", "load"),
    *("exporters", "memory", "import_time", "configure_time"),
)
HEADLINES = {  # scenario -> path to one figure that must always be a number
    "overhead": ("openai", "llmwatch", "median_us"),
    "streaming": ("openai", "overhead_us_per_chunk", "median"),
    "observe": ("observe_over_bare_us", "median"),
    "fleet": ("store", "healthy", "check_us"),
    "breakers": ("one", "check_us"),
    "load": ("threads", "llmwatch", "calls_per_s", "median"),
    "exporters": ("stalled", "p99_us", "median"),
    "memory": ("rss", "rss_growth_mb"),
    "import_time": ("llmwatch", "import_ms", "median"),
    "configure_time": ("llmwatch", "total_ms", "median"),
}


class Run:
    def __init__(self, stdout: str, document: dict[str, Any]) -> None:
        self.stdout = stdout
        self.document = document


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # the quick suite takes ~40 s idle; a loaded 2-core machine, several times that
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Run(done.stdout, json.loads(out.read_text()))


def _numbers(value: Any) -> list[float]:
    """Every number anywhere inside ``value`` (booleans excluded)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return []


def test_prints_a_table_per_scenario(quick_run: Run) -> None:
    for name in SCENARIOS:
        assert f"(`{name}`" in quick_run.stdout, f"no table for {name}"
    assert "| variant" in quick_run.stdout and "|---" in quick_run.stdout


def test_json_has_environment_and_every_scenario(quick_run: Run) -> None:
    document = quick_run.document
    assert document["quick"] is True
    env = document["environment"]
    assert env["python"] and env["cpu_count"] and env["packages"]["llmwatch"]
    assert set(document["scenarios"]) == set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_has_numeric_figures(quick_run: Run, name: str) -> None:
    if name == "fleet":
        redis_server_binary()  # skips without redis-server (fails where .ci/run requires it)
    scenario = quick_run.document["scenarios"][name]
    figures = scenario["figures"]
    assert "error" not in figures, figures.get("error")
    numbers = _numbers(figures)
    assert numbers and all(math.isfinite(n) for n in numbers)
    headline: Any = figures
    for key in HEADLINES[name]:
        headline = headline[key]
    assert isinstance(headline, int | float) and not isinstance(headline, bool)
    assert all(ok in (True, False, None) for ok in scenario["targets"].values())
    assert scenario["targets"] or name == "load"
