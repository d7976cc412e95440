"""Spans made in multiprocessing children reach a real OTLP/HTTP receiver, or are counted lost.

multiprocessing children leave through ``os._exit`` (no ``atexit``), and ``with Pool() as pool``
ends by terminating its workers with SIGTERM: before llmwatch flushed at those points, a fork Pool
of 10 calls delivered 0-1 spans, 4 fork Processes 0. Each case runs a real script in a fresh
interpreter (start methods other than fork need one), real openai SDK calls in the children against
the loopback server, OTLP/HTTP to the receiver in this process. Deadlines are generous: spawn and
forkserver children each start an interpreter and import the SDKs, slow on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import HttpReceiver, Mode, running

import llmwatch
from llmwatch._demo._server import FakeLLMServer

SCRIPT = textwrap.dedent(
    """
    import concurrent.futures, json, multiprocessing, os, sys, time
    from multiprocessing import util

    import openai
    import llmwatch

    METHOD, RUNNER, WHERE = os.environ["CASE"].split("/")
    TASKS, WORKERS = int(os.environ.get("TASKS", "10")), int(os.environ.get("WORKERS", "4"))


    def configure():
        llmwatch.configure(exporter="otlp", endpoint=os.environ["OTLP_ENDPOINT"], service_name="mp-test")


    if WHERE == "module":  # runs in every process that imports this module: spawn children, the forkserver
        configure()


    def report_stats():  # after llmwatch's own exit flush (exit priority 0)
        stats = llmwatch.stats()
        keys = ("spans_ended", "spans_dropped", "exports_failed")
        # One write(2) per line: under PYTHONUNBUFFERED print() writes the text and its newline apart,
        # and two processes' lines then interleave in the shared pipe (a single small write is atomic).
        os.write(1, ("STATS " + json.dumps({key: stats[key] for key in keys}) + "\\n").encode())


    def call(index):
        client = openai.OpenAI(api_key="sk-test", base_url=os.environ["LLM_BASE_URL"], max_retries=0)
        with llmwatch.attributes(user=f"task-{index}"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        if os.environ.get("REPORT_STATS"):
            util.Finalize(None, report_stats, exitpriority=-1)
        return index


    if __name__ == "__main__":
        if WHERE in ("main", "initializer"):
            configure()
        context = multiprocessing.get_context(METHOD)
        started = time.monotonic()
        if RUNNER == "pool":  # the default exit: Pool.__exit__ terminates the workers (SIGTERM)
            initializer = configure if WHERE == "initializer" else None
            with context.Pool(WORKERS, initializer=initializer) as pool:
                assert pool.map(call, range(TASKS), chunksize=1) == list(range(TASKS))
        elif RUNNER == "executor":
            with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=context) as executor:
                assert list(executor.map(call, range(TASKS))) == list(range(TASKS))
        else:
            children = [context.Process(target=call, args=(i,)) for i in range(TASKS)]
            for child in children:
                child.start()
            for child in children:
                child.join()
            assert [child.exitcode for child in children] == [0] * TASKS
        print("ELAPSED", time.monotonic() - started, flush=True)
        llmwatch.shutdown(timeout_s=5)
    """
)

DEADLINE_S = 300.0  # a whole script; spawn/forkserver children import the SDKs on a loaded machine


@pytest.fixture()
def receiver() -> Iterator[HttpReceiver]:
    yield from running(HttpReceiver)


def run_script(tmp_path: Path, endpoint: str, server: FakeLLMServer, case: str, **env: str) -> Any:
    script = tmp_path / "mp_app.py"
    script.write_text(SCRIPT)
    package_root = str(Path(llmwatch.__file__).resolve().parents[1])
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
        "OTLP_ENDPOINT": endpoint,
        "LLM_BASE_URL": server.openai_base_url,
        "CASE": case,
        **env,
    }
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=DEADLINE_S, env=environ, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return done


def users(receiver: HttpReceiver, count: int) -> list[str]:
    spans = [s for s in receiver.wait_for_spans(count, timeout=10) if "gen_ai.operation.name" in s.attributes]
    assert all(s.resource["service.name"] == "mp-test" for s in spans)
    return sorted(s.attributes["llmwatch.user"] for s in spans)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX start methods")
@pytest.mark.parametrize(
    "case",
    [
        "fork/pool/main",  # the case: 0-1 of 10 before
        "fork/process/main",  # 0 of 4 before
        "fork/executor/main",
        "forkserver/pool/module",  # the forkserver imported the main module, and with it configure()
        "forkserver/pool/initializer",
        "spawn/pool/module",  # spawn children run atexit, but terminate() kills pool workers first
    ],
)
def test_every_span_of_a_multiprocessing_child_reaches_the_collector(
    tmp_path: Path, receiver: HttpReceiver, server: FakeLLMServer, case: str
) -> None:
    tasks = 4 if "/process/" in case else 10
    workers = 4 if case.startswith("fork/") else 2  # each spawn/forkserver worker imports the SDKs afresh
    run_script(tmp_path, receiver.endpoint, server, case, TASKS=str(tasks), WORKERS=str(workers))
    assert users(receiver, tasks) == sorted(f"task-{i}" for i in range(tasks))  # each once: none lost, none twice


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX start methods")
def test_a_child_that_cannot_export_at_exit_counts_its_spans_and_leaves_within_the_deadline(
    tmp_path: Path, receiver: HttpReceiver, server: FakeLLMServer
) -> None:
    receiver.mode = Mode.HANG  # accepts, never answers
    done = run_script(
        tmp_path,
        receiver.endpoint,
        server,
        "fork/process/main",
        TASKS="2",
        REPORT_STATS="1",
        OTEL_EXPORTER_OTLP_TIMEOUT="60",  # an unbounded wait would be the exporter's 60 s
    )
    reports = [json.loads(line[6:]) for line in done.stdout.splitlines() if line.startswith("STATS ")]
    assert len(reports) == 2
    for stats in reports:  # counters a child inherited from the parent are zero: the parent made no span
        assert stats["spans_ended"] == 1 and stats["spans_dropped"] == 1 and stats["exports_failed"] == 1
    elapsed = float(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("ELAPSED")))
    assert elapsed < 30.0  # the children's exit flush is bounded by 3 s, never the exporter's 60 s
    assert "shutdown deadline reached with the exporter still busy" in done.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX start methods")
def test_a_broken_collector_costs_a_pool_worker_one_wait_not_one_per_task(
    tmp_path: Path, receiver: HttpReceiver, server: FakeLLMServer
) -> None:
    receiver.mode = Mode.HANG
    tasks, workers = 20, 2
    done = run_script(
        tmp_path,
        receiver.endpoint,
        server,
        "fork/pool/main",
        TASKS=str(tasks),
        WORKERS=str(workers),
        OTEL_EXPORTER_OTLP_TIMEOUT="60",
    )
    elapsed = float(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("ELAPSED")))
    # A 3 s wait per task would take tasks / workers * 3 = 30 s; one per worker, about 3 s.
    assert elapsed < 15.0
    assert "could not export a task's spans before returning its result" in done.stderr


FORK_DURING_PRICES_IMPORT = textwrap.dedent(
    """
    import importlib.abc, importlib.util, multiprocessing, os, sys, time


    class SlowPrices(importlib.abc.MetaPathFinder):
        # genai-prices takes 2 s to import: configure() imports it on a thread, and the fork lands in it.
        def find_spec(self, name, path=None, target=None):
            if name != "genai_prices" or sys.meta_path[0] is not self:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            real = spec.loader

            class Loader(importlib.abc.Loader):
                def create_module(self, spec):
                    return real.create_module(spec)

                def exec_module(self, module):
                    time.sleep(2)
                    real.exec_module(module)

            spec.loader = Loader()
            return spec


    sys.meta_path.insert(0, SlowPrices())
    import openai
    import llmwatch


    def call():
        client = openai.OpenAI(api_key="sk-test", base_url=os.environ["LLM_BASE_URL"], max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


    if __name__ == "__main__":
        llmwatch.configure(exporter="otlp", endpoint=os.environ["OTLP_ENDPOINT"], service_name="mp-test")
        time.sleep(0.3)  # llmwatch's thread is inside the import now
        assert "genai_prices" in sys.modules and not hasattr(sys.modules["genai_prices"], "calc_price")
        child = multiprocessing.get_context("fork").Process(target=call)
        child.start()
        child.join(60)
        if child.exitcode is None:
            child.kill()
            sys.exit("the child hung")
        sys.exit(child.exitcode)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_fork_right_after_configure_does_not_leave_the_child_a_held_import_lock(
    tmp_path: Path, receiver: HttpReceiver, server: FakeLLMServer
) -> None:
    script = tmp_path / "fork_during_import.py"
    script.write_text(FORK_DURING_PRICES_IMPORT)
    package_root = str(Path(llmwatch.__file__).resolve().parents[1])
    environ = {
        **os.environ,
        "PYTHONPATH": package_root,
        "OTLP_ENDPOINT": receiver.endpoint,
        "LLM_BASE_URL": server.openai_base_url,
    }
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=environ)
    assert done.returncode == 0, done.stderr
    (span,) = [s for s in receiver.wait_for_spans(1, timeout=10) if "gen_ai.operation.name" in s.attributes]
    assert span.attributes["llmwatch.cost.usd"] > 0  # the child priced its call with genai-prices


GUNICORN_LIKE = textwrap.dedent(
    """
    import os, sys
    import openai
    import llmwatch

    llmwatch.configure(exporter="otlp", endpoint=os.environ["OTLP_ENDPOINT"], service_name="mp-test")
    pid = os.fork()  # a pre-forked worker (gunicorn --preload): leaves through sys.exit, so atexit runs
    if pid == 0:
        client = openai.OpenAI(api_key="sk-test", base_url=os.environ["LLM_BASE_URL"], max_retries=0)
        with llmwatch.attributes(user="worker"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_preforked_worker_leaving_through_sys_exit_still_delivers(
    tmp_path: Path, receiver: HttpReceiver, server: FakeLLMServer
) -> None:
    script = tmp_path / "preforked.py"
    script.write_text(GUNICORN_LIKE)
    package_root = str(Path(llmwatch.__file__).resolve().parents[1])
    environ = {
        **os.environ,
        "PYTHONPATH": package_root,
        "OTLP_ENDPOINT": receiver.endpoint,
        "LLM_BASE_URL": server.openai_base_url,
    }
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=environ)
    assert done.returncode == 0, done.stderr
    assert users(receiver, 1) == ["worker"]


def test_the_parent_registers_nothing_with_multiprocessing(tmp_path: Path) -> None:
    from multiprocessing import util

    from llmwatch._export import _process_exit

    llmwatch.configure(exporter="file", file_path=str(tmp_path / "spans.jsonl"), instrument=False)
    try:
        with llmwatch.llm_call(provider="vllm", model="m", operation="chat") as call:
            call.set_output("ok", input_tokens=1, output_tokens=1)
        callbacks = [getattr(f, "_callback", None) for f in list(util._finalizer_registry.values())]
        assert _process_exit._flush_at_exit not in callbacks  # only multiprocessing children pay
    finally:
        llmwatch.shutdown(timeout_s=5)
