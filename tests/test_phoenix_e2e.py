"""End to end against a real Arize Phoenix: the demo's traffic shows user, session, tokens, model,
messages, input/output and the workflow kind (``benchmarks/phoenix_check.py``, docs/phoenix.md), each
from an OpenInference attribute llmwatch sent itself (not only from Phoenix's own ``gen_ai.*`` conversion).

Phoenix is far too heavy for the project's environment (about 850 MB), so CI does not install it and
this test skips there. With Phoenix in a venv of its own it runs in about half a minute::

    python3 -m venv /work/phoenix-venv && /work/phoenix-venv/bin/pip install arize-phoenix
    LLMWATCH_PHOENIX_BIN=/work/phoenix-venv/bin/phoenix .venv/bin/python -m pytest tests/test_phoenix_e2e.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.phoenix_check import PHOENIX_BIN_ENV, find_phoenix

ROOT = Path(__file__).resolve().parent.parent
PHOENIX = find_phoenix()

pytestmark = pytest.mark.skipif(
    PHOENIX is None,
    reason=f"no phoenix executable (set ${PHOENIX_BIN_ENV} or put phoenix on PATH: pip install arize-phoenix "
    "in a venv of its own)",
)


def test_phoenix_shows_every_field_of_the_demo_traffic(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.phoenix_check", "--phoenix", str(PHOENIX), "--requests", "12"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = result.stdout + result.stderr
    assert "no configure(backend_compat=)" not in report, "this llmwatch has no backend_compat:\n" + report
    assert result.returncode == 0, report
    table = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0]]
    shows, sent = header.index("openinference shows"), header.index("openinference sent")
    for row in table[1:]:
        name, status, sent_count = row[0].strip(), row[shows].strip(), row[sent].strip()
        # Phoenix shows every field, and from llmwatch's own attributes (not only its gen_ai.* conversion).
        assert status.startswith(("found", "n/a", "partly")), f"{name}: {status}\n{report}"
        if sent_count:
            got, total = sent_count.split("/")
            assert got == total, f"{name}: llmwatch sent it on {sent_count} spans\n{report}"
