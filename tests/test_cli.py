"""The command line: ``llmwatch report`` and ``llmwatch demo`` (``main`` returns the exit code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_report import span, write_spans

import llmwatch._demo
from llmwatch._cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def span_file(tmp_path: Path) -> Path:
    records = [span(user=f"u{i % 3}", feature=["search", "chat"][i % 2], cost=0.01 * i) for i in range(12)]
    return write_spans(tmp_path / "spans.jsonl", records, tail=b"garbage\n")


def test_report_prints_tables(span_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(span_file), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "12 calls | 0 refused | 0 errors (0.0% of 12 sent)" in out
    assert "By feature" in out and "By user" in out and "By model" in out
    assert "(others) 1 more" in out
    assert "skipped 1 unreadable line(s)" in out


def test_report_json(span_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(span_file), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON document
    assert doc["totals"]["calls"] == 12 and doc["skipped_lines"] == 1 and doc["file"] == str(span_file)
    assert doc["totals"]["cost_usd"] == pytest.approx(0.01 * sum(range(12)))


def test_report_several_files(span_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rotated = write_spans(tmp_path / "spans.jsonl.1", [span(cost=1.0)])
    assert main(["report", str(rotated), str(span_file), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["calls"] == 13 and doc["files"] == [str(rotated), str(span_file)]


def test_report_missing_file_exits_2_saying_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "nope.jsonl" in err and "llmwatch demo" in err and 'exporter="file"' in err


def test_report_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2  # a directory
    assert "cannot read" in capsys.readouterr().err


def test_report_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["report", str(tmp_path / "empty.jsonl")]) == 0
    assert "no LLM calls" in capsys.readouterr().out


def test_report_default_file(
    span_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    span_file.rename(tmp_path / "llmwatch-spans.jsonl")
    assert main(["report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["file"] == "llmwatch-spans.jsonl"
    write_spans(tmp_path / "elsewhere.jsonl", [span()])
    monkeypatch.setenv("LLMWATCH_FILE_PATH", str(tmp_path / "elsewhere.jsonl"))
    assert main(["report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["calls"] == 1


def test_report_html_with_json(span_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(span_file), "--json", "--html", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["totals"]["calls"] == 12  # the "wrote" line went to stderr
    assert f"wrote {out}" in captured.err
    assert out.read_text(encoding="utf-8").count('class="chart"') == 3


def test_report_html_without_plotly(
    span_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    assert main(["report", str(span_file), "--html", str(tmp_path / "r.html")]) == 2
    assert "pip install 'llmwatch[html]'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["report", "--top", "-1"], ["demo", "--requests", "0"], ["frobnicate"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--help"]) == 0
    assert "--html" in capsys.readouterr().out


def test_demo_runs_the_workload_then_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}

    def fake_run_demo(**kwargs: Any) -> str:
        seen.update(kwargs)
        return str(write_spans(Path(kwargs["file_path"]), [span(cost=0.5), span(user="u-2", cost=0.25)]))

    monkeypatch.setattr(llmwatch._demo, "run_demo", fake_run_demo)
    out = tmp_path / "demo.html"
    argv = ["demo", "--requests", "7", "--concurrency", "2", "--file", str(tmp_path / "d.jsonl"), "--seed", "3"]
    assert main([*argv, "--html", str(out)]) == 0
    assert seen == {"requests": 7, "concurrency": 2, "file_path": str(tmp_path / "d.jsonl"), "seed": 3}
    text = capsys.readouterr().out
    assert "2 calls" in text and "By model" in text and f"wrote {out}" in text
    assert out.exists()


def test_demo_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run_demo(**kwargs: Any) -> str:
        seen.update(kwargs)
        return str(write_spans(tmp_path / "d.jsonl", [span()]))

    monkeypatch.setattr(llmwatch._demo, "run_demo", fake_run_demo)
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert seen == {"requests": 60, "concurrency": 4, "file_path": "./llmwatch-demo.jsonl", "seed": 7}
    assert (tmp_path / "llmwatch-demo.html").stat().st_size > 100_000  # the page, by default


def test_python_dash_m(span_file: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "llmwatch", "report", str(span_file), "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["calls"] == 12
    missing = subprocess.run(
        [sys.executable, "-m", "llmwatch", "report", str(span_file) + ".missing"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "llmwatch demo" in missing.stderr


def test_real_demo_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first command: the report's totals are the sums over the spans in the file."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--requests", "12", "--concurrency", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    lines = (tmp_path / "llmwatch-demo.jsonl").read_text().splitlines()
    calls = [r["attributes"] for r in map(json.loads, lines) if "gen_ai.operation.name" in r["attributes"]]
    totals = report["totals"]
    assert totals["calls"] == len(calls) == 12
    assert totals["cost_usd"] == pytest.approx(sum(a.get("llmwatch.cost.usd", 0.0) for a in calls), abs=1e-12)
    assert totals["input_tokens"] == sum(a.get("gen_ai.usage.input_tokens", 0) for a in calls)
    assert totals["output_tokens"] == sum(a.get("gen_ai.usage.output_tokens", 0) for a in calls)
    assert totals["errors"] == sum("error.type" in a for a in calls)
    assert (tmp_path / "llmwatch-demo.html").exists()
