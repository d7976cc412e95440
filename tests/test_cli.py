"""The command line: ``llmwatch report``, ``demo`` and ``serve-fake`` (``main`` returns the exit code)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from test_report import span, write_spans

import llmwatch._demo
from llmwatch._cli import main
from llmwatch._demo._serve import serve_fake

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


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["report", "--top", "-1"],
        ["demo", "--requests", "0"],
        ["frobnicate"],
        ["serve-fake", "--port", "70000"],
        ["serve-fake", "--latency", "nan"],
    ],
)
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
    assert seen == {"requests": 7, "concurrency": 2, "file_path": str(tmp_path / "d.jsonl"), "seed": 3, "store": None}
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
    assert seen == {"requests": 60, "concurrency": 4, "file_path": "./llmwatch-demo.jsonl", "seed": 7, "store": None}
    assert (tmp_path / "llmwatch-demo.html").stat().st_size > 100_000  # the page, by default


def test_python_dash_m(span_file: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "llmwatch", "report", str(span_file), "--json"],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["calls"] == 12
    missing = subprocess.run(
        [sys.executable, "-m", "llmwatch", "report", str(span_file) + ".missing"],
        capture_output=True, text=True, env=env, timeout=180, check=False,
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
    llm_operations = {"chat", "embeddings", "generate_content"}
    records = [r for r in map(json.loads, lines) if r["attributes"].get("gen_ai.operation.name") in llm_operations]
    calls = [r["attributes"] for r in records]
    refused = [any(e["name"] == "llmwatch.call.refused" for e in r["events"]) for r in records]
    totals = report["totals"]
    assert totals["calls"] == len(calls) > 12  # the 12 planned calls, then the agent runs
    assert totals["cost_usd"] == pytest.approx(sum(a.get("llmwatch.cost.usd", 0.0) for a in calls), abs=1e-12)
    assert totals["input_tokens"] == sum(a.get("gen_ai.usage.input_tokens", 0) for a in calls)
    assert totals["output_tokens"] == sum(a.get("gen_ai.usage.output_tokens", 0) for a in calls)
    # the budget's refusals (how many depends on the workers' timing) are counted apart from errors
    assert totals["refused"] == sum(refused)
    assert totals["errors"] == sum("error.type" in a and not no for a, no in zip(calls, refused, strict=True))
    assert (tmp_path / "llmwatch-demo.html").exists()


# --- serve-fake -----------------------------------------------------------------------------------


def _start_serve_fake(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``python -m llmwatch serve-fake`` in a subprocess; returns it and the ``export`` lines it printed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmwatch", "serve-fake", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    watchdog = threading.Timer(120, proc.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    exports: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if match := re.match(r"\s*export (\w+_BASE_URL)=(\S+)$", line):
            exports[match.group(1)] = match.group(2)
        if line.startswith("  ") and "stream-error-event" in line:  # the scenario list: the banner's end
            break
    watchdog.cancel()
    return proc, exports


def _stop(proc: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serve_fake_serves_the_real_sdks_until_stopped(signum: int) -> None:
    import anthropic
    import openai

    proc, exports = _start_serve_fake("--port", "0")
    try:
        assert set(exports) == {"OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"}, exports
        base = exports["ANTHROPIC_BASE_URL"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base) and int(base.rsplit(":", 1)[1]) > 0
        assert exports["OPENAI_BASE_URL"] == base + "/v1"
        oai = openai.OpenAI(api_key="anything", base_url=exports["OPENAI_BASE_URL"], max_retries=0)
        reply = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello there"}])
        assert reply.model == "gpt-4o-2024-08-06" and reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.prompt_tokens == 5
        with pytest.raises(openai.RateLimitError):  # a scenario, chosen from the prompt text
            oai.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi [[scenario:error-429]]"}]
            )
        ant = anthropic.Anthropic(api_key="whatever", base_url=exports["ANTHROPIC_BASE_URL"], max_retries=0)
        message = ant.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hello there"}]
        )
        assert message.content[0].type == "text" and message.usage.input_tokens == 5
        with ant.messages.stream(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "stream [[chunks:3]]"}]
        ) as stream:
            assert "".join(stream.text_stream)
    finally:
        code, err = _stop(proc, signum)
    assert code == 0, err
    assert "stopped after 4 request(s)" in err
    assert "Traceback" not in err and "warning" not in err


def test_serve_fake_off_loopback_only_when_asked_and_with_a_warning() -> None:
    out, err = io.StringIO(), io.StringIO()
    stopped = threading.Event()
    stopped.set()  # serve, print, and stop at once
    assert serve_fake(out=out, err=err, stop=stopped) == 0
    assert "(loopback only)" in out.getvalue() and "warning" not in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert serve_fake(host="0.0.0.0", out=out, err=err, stop=stopped) == 0
    assert "warning: listening on 0.0.0.0, not loopback" in err.getvalue()
    assert "reachable from other machines" in out.getvalue()
    assert "export OPENAI_BASE_URL=http://127.0.0.1:" in out.getvalue()  # the URL to use on this machine


def test_serve_fake_lists_every_scenario_and_how_to_pick_one() -> None:
    from llmwatch._demo._server import SCENARIOS

    out = io.StringIO()
    stopped = threading.Event()
    stopped.set()
    assert serve_fake(out=out, err=io.StringIO(), stop=stopped) == 0
    text = out.getvalue()
    assert "[[scenario:NAME]]" in text and "x-fake-scenario" in text and "any API key works" in text
    assert set(text.splitlines()[-1].split()) == SCENARIOS
    docs = (ROOT / "docs" / "report.md").read_text()
    assert all(f"`{name}`" in docs for name in SCENARIOS)  # each one documented


def test_serve_fake_port_in_use_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve-fake", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1
