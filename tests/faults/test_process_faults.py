"""Faults outside the call itself: a broken exporter, ``os.fork()``, interpreter exit mid-stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import llmwatch
from faults._support import OPENAI_MODEL, Clients, InjectedFault, SdkRecorder, normalize
from llmwatch._demo._server import FakeLLMServer

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


class ExplodingExporter(SpanExporter):
    """Every method raises, as a buggy third-party exporter might."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise InjectedFault("export")

    def shutdown(self) -> None:
        raise InjectedFault("shutdown")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        raise InjectedFault("force_flush")


@pytest.mark.usefixtures("production")
def test_exporter_that_raises_costs_the_spans_never_the_call(
    clients: Clients, recorder: SdkRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = ExplodingExporter()
    llmwatch.configure(exporter=exporter, service_name="faults", instrument=False)
    try:
        client = clients.get("openai", False, plain=False)
        plain = clients.get("openai", False, plain=True).chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        for _ in range(2):
            response = client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
            assert response is recorder.results[-1]
            assert normalize(response) == normalize(plain)
            assert llmwatch.force_flush(timeout_s=5.0) is False
        stats = llmwatch.stats()
        assert exporter.calls == 2
        assert stats["exports_failed"] == 2 and stats["spans_dropped"] == 2
        assert "InjectedFault" in stats["last_export_error"]
        failures = [r for r in caplog.records if r.name == "llmwatch" and "span export failed" in r.getMessage()]
        assert len(failures) == 1  # logged once, counted every time
    finally:
        started = time.monotonic()
        llmwatch.shutdown(timeout_s=5.0)  # the exporter's shutdown raises too: never into the caller
        assert time.monotonic() - started < 5.5


def _wait_for_child(pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() in a multi-threaded process
def test_fork_after_configure_child_and_parent_both_record_their_calls(server: FakeLLMServer, tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    llmwatch.configure(exporter="file", file_path=str(path), service_name="forked", instrument=False)
    try:
        parent_client = llmwatch.instrument(
            openai.OpenAI(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0)
        )
        with llmwatch.attributes(user="parent-before"):
            parent_client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)

        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; it never returns to pytest
            code = 1
            try:
                child_client = llmwatch.instrument(
                    openai.OpenAI(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0)
                )
                with llmwatch.attributes(user="child"):
                    reply = child_client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
                flushed = llmwatch.force_flush(timeout_s=5.0)
                code = 0 if flushed and reply.choices[0].message.content else 2
            finally:
                os._exit(code)
        assert _wait_for_child(pid) == 0

        with llmwatch.attributes(user="parent-after"):
            parent_client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        assert llmwatch.force_flush(timeout_s=5.0)
        users = sorted(json.loads(line)["attributes"].get("llmwatch.user") for line in path.read_text().splitlines())
        assert users == ["child", "parent-after", "parent-before"]
        assert llmwatch.stats()["internal_errors"] == 0
    finally:
        llmwatch.shutdown(timeout_s=5.0)


EXIT_SCRIPT = textwrap.dedent(
    """
    import time

    import openai
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    import llmwatch
    from llmwatch._demo._server import FakeLLMServer


    class SlowExporter(SpanExporter):
        def export(self, spans):
            time.sleep(60)
            return SpanExportResult.SUCCESS


    server = FakeLLMServer(chunk_delay_s=0.05).start()
    llmwatch.configure(exporter=SlowExporter(), service_name="exit-test", instrument=True)
    client = openai.OpenAI(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0)
    messages = [{"role": "user", "content": "What is the capital of France? [[chunks:50]]"}]
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    time.sleep(0.3)  # the worker is now inside the slow export
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # queued behind it
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    next(iter(stream))  # a span still open, a stream still in flight
    print(f"exiting without llmwatch.shutdown() at {time.time()!r}", flush=True)
    """
)

# How long the exit itself may take, from the script's last line to the process being gone: llmwatch's
# exit deadline (3 s) plus the interpreter's teardown on a loaded machine. Without the deadline the
# hung exporter would hold the exit for its 60 s. Starting the script (imports, configure()) is not
# timed: on a loaded 2-core machine that alone can take longer than the exit.
EXIT_DEADLINE_S = 8.0
SCRIPT_TIMEOUT_S = 120.0


def run_exit_script(script: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the script; returns its outcome and the seconds from its last line to its exit."""
    try:
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, env=env
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"the script was still running after {SCRIPT_TIMEOUT_S}s: {timeout.stdout!r}")
    ended = time.time()
    marker = "exiting without llmwatch.shutdown() at "
    lines = [line for line in done.stdout.splitlines() if line.startswith(marker)]
    assert lines, (done.stdout, done.stderr)
    return done, ended - float(lines[-1][len(marker) :])


def test_interpreter_exit_with_spans_in_flight_is_quick_and_quiet(tmp_path: Path) -> None:
    script = tmp_path / "exit_mid_stream.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    done, exit_s = run_exit_script(script, env)
    assert exit_s < EXIT_DEADLINE_S, f"the interpreter took {exit_s:.1f}s to exit"
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def test_interpreter_exit_mid_stream_with_a_healthy_exporter_is_quick_and_quiet(tmp_path: Path) -> None:
    script = tmp_path / "exit_mid_stream_healthy.py"
    script.write_text(EXIT_SCRIPT.replace("time.sleep(60)", "pass"))
    done, exit_s = run_exit_script(script, dict(os.environ))
    assert exit_s < EXIT_DEADLINE_S, f"the interpreter took {exit_s:.1f}s to exit"
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
