"""Scenario 6: import time. ``python -X importtime -c "import llmwatch"`` against
``-c "import opentelemetry.sdk.trace"``, fresh interpreters, interleaved.

The figure per run is the sum of the cumulative column over the top-level (unindented) entries that an
empty interpreter (``-c pass``) does not import: everything the statement pulls in. The wall time of
the whole subprocess (without ``-X importtime``, which slows imports) is reported beside it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

from benchmarks import _stats
from benchmarks._report import Result, table

NAME = "import_time"
TITLE = "Import time"
MODULES = {
    "llmwatch": "import llmwatch",
    "opentelemetry.sdk.trace": "import opentelemetry.sdk.trace",
    "(empty)": "pass",
}
TARGET_MS = 50.0
LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def top_level_imports(stderr: str) -> dict[str, int]:
    """Top-level module -> cumulative microseconds, from ``-X importtime`` output."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        match = LINE.match(line)
        if match and len(match.group(3)) == 1:
            found[match.group(4)] = int(match.group(2))
    return found


def _importtime(statement: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True
    )
    return top_level_imports(done.stderr)


def _wall_ms(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], capture_output=True, check=True)
    return (time.perf_counter() - start) * 1000.0


def measure(runs: int) -> dict[str, dict[str, list[float]]]:
    raw: dict[str, dict[str, list[float]]] = {name: {"import_ms": [], "wall_ms": []} for name in MODULES}
    for _ in range(runs):
        baseline = set(_importtime("pass"))
        for name, statement in MODULES.items():
            imported = _importtime(statement)
            total_us = sum(us for module, us in imported.items() if module not in baseline)
            raw[name]["import_ms"].append(total_us / 1000.0)
            raw[name]["wall_ms"].append(_wall_ms(statement))
    return raw


def run(quick: bool) -> Result:
    runs = 2 if quick else 5
    raw = measure(runs)
    figures: dict[str, Any] = {
        name: {"raw": values} | {key: _stats.summary(values[key]) for key in ("import_ms", "wall_ms")}
        for name, values in raw.items()
    }
    extra = figures["llmwatch"]["import_ms"]["median"] - figures["opentelemetry.sdk.trace"]["import_ms"]["median"]
    figures |= {"llmwatch_minus_otel_ms": extra, "runs": runs}
    rows = [
        [
            name,
            _stats.fmt(f["import_ms"]["median"]),
            _stats.fmt_range(f["import_ms"]),
            _stats.fmt(f["wall_ms"]["median"]),
            _stats.fmt_range(f["wall_ms"]),
        ]
        for name, f in figures.items()
        if isinstance(f, dict)
    ]
    header = ["import", "importtime ms", "min..max", "subprocess wall ms", "min..max"]
    notes = [
        f"median of {runs} fresh interpreters each; llmwatch - opentelemetry.sdk.trace = {extra:+.1f} ms",
        "importtime ms: cumulative over the top-level modules the statement adds to an empty interpreter",
    ]
    targets: dict[str, bool | None] = {
        f"llmwatch import < opentelemetry.sdk.trace + {TARGET_MS:g} ms": extra < TARGET_MS
    }
    return Result(NAME, TITLE, figures, table(header, rows), targets, notes)
