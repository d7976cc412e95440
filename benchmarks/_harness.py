"""The parent side: start variant processes, send them commands in interleaved rounds, collect results."""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from benchmarks import _worker

DEFAULT_TIMEOUT_S = 300.0
# Imported once by the fork server, inherited by every variant: the SDKs and OTel, never llmwatch's
# state (gRPC stays out: it is not fork-safe without GRPC_ENABLE_FORK_SUPPORT).
PRELOAD = [
    "openai",
    "anthropic",
    "httpx2",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.metrics",
    "psutil",
    "benchmarks._mock",
    "benchmarks._telemetry",
]


class WorkerError(RuntimeError):
    """A variant failed to start or to answer; the message carries its traceback."""


@functools.cache
def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class Worker:
    """One variant in its own process (see ``benchmarks/_worker.py``)."""

    def __init__(self, module: str, variant: str, params: Mapping[str, Any] | None = None) -> None:
        self.variant = variant
        context = _context()
        self._conn, child = context.Pipe()
        self._proc = context.Process(
            target=_worker.serve, args=(child, module, variant, dict(params or {})), name=f"bench-{variant}"
        )
        self._proc.daemon = True
        self._proc.start()
        child.close()

    def receive(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        if not self._conn.poll(timeout_s):
            raise WorkerError(f"{self.variant}: no answer within {timeout_s:.0f} s")
        try:
            message: dict[str, Any] = self._conn.recv()
        except EOFError:
            raise WorkerError(f"{self.variant}: worker exited (code {self._proc.exitcode})") from None
        if not message["ok"]:
            raise WorkerError(f"{self.variant}: {message['error'].strip()}")
        result: dict[str, Any] = message["result"]
        return result

    def ready(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """Wait for the variant to finish its setup; returns what setup reported."""
        return self.receive(timeout_s)

    def send(self, **command: Any) -> None:
        self._conn.send(command)

    def ask(self, timeout_s: float = DEFAULT_TIMEOUT_S, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self.receive(timeout_s)

    def close(self) -> None:
        with suppress(OSError):
            self._conn.send({"op": "exit"})
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()


class Pool:
    """Variants of one scenario: those that started (``ready``) and those that could not (``failed``)."""

    def __init__(self) -> None:
        self.ready: dict[str, Worker] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}

    def start(self, module: str, variants: Mapping[str, Mapping[str, Any]]) -> None:
        """Start the variants together (setup is mostly waiting on imports), then wait for each."""
        started = {name: Worker(module, name, params) for name, params in variants.items()}
        for name, worker in started.items():
            try:
                self.info[name] = worker.ready()
                self.ready[name] = worker
            except WorkerError as exc:
                self.failed[name] = str(exc)
                worker.close()

    def rounds(self, rounds: int, **command: Any) -> dict[str, list[dict[str, Any]]]:
        """Send ``command`` to every ready variant, ``rounds`` times, rotating the order each round."""
        names = list(self.ready)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for index in range(rounds):
            shift = index % len(names) if names else 0
            for name in names[shift:] + names[:shift]:
                results[name].append(self.ready[name].ask(**command))
        return results

    def broadcast(self, **command: Any) -> dict[str, dict[str, Any]]:
        """Send ``command`` to every ready variant at once (for waits, not timings), then collect."""
        for worker in self.ready.values():
            worker.send(**command)
        return {name: worker.receive() for name, worker in self.ready.items()}

    def close(self) -> None:
        for worker in self.ready.values():
            worker.close()
        self.ready.clear()


@contextmanager
def pool() -> Iterator[Pool]:
    workers = Pool()
    try:
        yield workers
    finally:
        workers.close()
