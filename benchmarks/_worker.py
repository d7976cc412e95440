"""The process side of a benchmark variant.

Each variant runs in its own process so instrumentation state (class-level wrappers, global
providers) never leaks between variants. Processes are forked from a multiprocessing fork server
that has already imported the SDKs and OTel (but never llmwatch's configuration), so a variant starts
in a fraction of a second instead of re-importing ~1.5 s of SDKs.

``benchmarks.<module>.setup(variant, params)`` builds the variant and returns ``(handler, info)``;
the worker then answers one command at a time over its pipe. The parent sends commands to the
variants in turn, so only one variant runs at a time and rounds interleave. Whatever the SDKs or
exporters print goes to a private log whose tail accompanies any error.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import IO, Any

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _redirect_output() -> IO[str]:
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  # lives as long as the process
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    return log


def _failure(log: IO[str]) -> dict[str, Any]:
    sys.stderr.flush()
    log.seek(0)
    tail = log.read()[-2000:]
    log.seek(0, os.SEEK_END)
    error = traceback.format_exc() + (f"\n--- worker output ---\n{tail}" if tail else "")
    return {"ok": False, "error": error}


def _serve(conn: Connection, handler: Handler, log: IO[str]) -> None:
    while True:
        try:
            command = conn.recv()
        except EOFError:
            return
        if command.get("op") == "exit":
            return
        try:
            conn.send({"ok": True, "result": handler(command)})
        except Exception:
            conn.send(_failure(log))


def serve(conn: Connection, module_name: str, variant: str, params: dict[str, Any]) -> None:
    """Process entry point: set the variant up, report, then answer commands until told to exit."""
    log = _redirect_output()
    try:
        module = importlib.import_module(f"benchmarks.{module_name}")
        handler, info = module.setup(variant, params)
    except Exception:
        conn.send(_failure(log))
    else:
        conn.send({"ok": True, "result": info})
        _serve(conn, handler, log)
    conn.close()
    # Skip interpreter teardown: a deliberately stalled exporter thread must not hold the process.
    os._exit(0)
