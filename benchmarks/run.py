"""Run the benchmark suite, print one table per scenario, write the figures as JSON.

::

    python -m benchmarks                      # everything, full size (several minutes)
    python -m benchmarks --quick              # small N, for the smoke test
    python -m benchmarks --only overhead,streaming --out /tmp/bench.json

The machine is shared and noisy: every variant runs in its own interpreter, variants are interleaved
round by round, and only ratios and paired differences within one run mean anything. Figures are
medians with min/max over rounds. Targets are reported PASS/FAIL/n/a, never enforced (exit code 0
unless a scenario crashed).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _stats
from benchmarks._report import Result

SCENARIOS = (
    "overhead",
    "streaming",
    "observe",
    "fleet",
    "breakers",
    "load",
    "exporters",
    "memory",
    "import_time",
    "configure_time",
)
PACKAGES = (
    "llmwatch",
    "openai",
    "anthropic",
    "httpx2",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "wrapt",
    "genai-prices",
    "tiktoken",
    "psutil",
)
RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def _package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def environment() -> dict[str, Any]:
    status = _git("status", "--porcelain", "--", "llmwatch")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_llmwatch_dirty": bool(status) if status is not None else None,
        "packages": _package_versions(),
    }


def run_scenario(name: str, quick: bool) -> Result:
    module = importlib.import_module(f"benchmarks.{name}")
    start = time.perf_counter()
    try:
        result: Result = module.run(quick)
    except Exception:
        error = traceback.format_exc()
        result = Result(name, getattr(module, "TITLE", name), {"error": error}, [], {}, [f"CRASHED: {error}"])
    result.seconds = time.perf_counter() - start
    return result


def render(result: Result) -> str:
    lines = [f"## {result.title} (`{result.name}`, {result.seconds:.0f} s)", "", *result.table, ""]
    lines += [f"- {note}" for note in result.notes]
    lines += [f"- target {_stats.verdict(ok)}: {target}" for target, ok in result.targets.items()]
    return "\n".join(lines) + "\n"


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def write_json(path: Path, quick: bool, env: dict[str, Any], results: Sequence[Result]) -> None:
    document = {
        "suite": "llmwatch benchmarks",
        "quick": quick,
        "environment": env,
        "scenarios": {result.name: result.to_json() for result in results},
        "targets": {f"{r.name}: {target}": ok for r in results for target, ok in r.targets.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(document), indent=2, allow_nan=False) + "\n")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="llmwatch benchmark suite")
    parser.add_argument("--quick", action="store_true", help="small N, a few seconds per scenario (smoke test)")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios from: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/DATE.json)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = [name for name in SCENARIOS if name in chosen]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    env = environment()
    out = args.out or RESULTS / f"{datetime.date.today().isoformat()}.json"
    print(
        f"# llmwatch benchmarks{' (quick)' if args.quick else ''}: python {env['python']}, {env['cpu_count']} cpus, "
        f"openai {env['packages']['openai']}, anthropic {env['packages']['anthropic']}, "
        f"opentelemetry-sdk {env['packages']['opentelemetry-sdk']}, commit {(env['git_commit'] or '?')[:10]}"
        f"{' (llmwatch/ modified)' if env['git_llmwatch_dirty'] else ''}\n",
        flush=True,
    )
    results = []
    for name in args.scenarios:
        result = run_scenario(name, args.quick)
        results.append(result)
        print(render(result), flush=True)
    write_json(out, args.quick, env, results)
    print(f"JSON: {out}")
    return 1 if any("error" in r.figures for r in results) else 0
