"""Spans of multiprocessing children: exported before the child leaves, or counted.

Why this module exists
----------------------
A multiprocessing child does not leave through ``atexit``. ``Process._bootstrap`` runs the child's
target, then ``multiprocessing.util._exit_function()`` (the ``Finalize`` callbacks registered with an
exit priority), and the fork and forkserver start methods then end the process with ``os._exit``.
Whatever the export queue still holds at that moment is lost, and nothing counts it. Pool workers
mostly do not leave at all: ``with Pool() as pool: pool.map(...)`` ends in ``pool.terminate()``,
which sends SIGTERM to workers waiting for their next task, and SIGTERM's default action ends a
process without running any Python code.

So in a multiprocessing child, llmwatch's span processor:

- **flushes at the child's exit**: a ``multiprocessing.util.Finalize`` (exit priority 0: after a
  Pool the child made itself, priority 15, has been terminated) shuts the processor down within
  :data:`EXIT_FLUSH_TIMEOUT_S` (as at interpreter exit); what could not be sent by then is counted
  in ``stats()["spans_dropped"]`` and logged, the only trace that outlives a child;
- **in a Pool worker, exports a task's spans before its result goes back**: the worker's result
  queue write lock is wrapped so that, before the result is written, the spans the task ended are
  exported (see ``LlmwatchSpanProcessor.flush_before_handoff``). The parent cannot collect the last
  result, leave ``map()`` and terminate the worker while that task's spans are still queued.

Only children pay, once, at the first span they end (the parent's cost is one flag test per span):

- the processor arms that check when it is made with ``multiprocessing`` already imported (a spawn
  or forkserver child configuring while multiprocessing imports the main module, or a child running
  ``configure()`` in ``Pool(initializer=...)`` or in its target) and in its ``os.register_at_fork``
  child hook (every forked child);
- the check (:func:`watch_if_child`) asks ``multiprocessing.parent_process()``, set by
  ``Process._bootstrap`` for every start method. Not earlier: the fork start method clears the
  child's inherited finalizers at ``_bootstrap``, spawn runs no after-fork hooks at all, and whether
  the process is a Pool worker (its target) is only known once ``_bootstrap`` has the process
  object. A child forked by anything else (gunicorn ``--preload`` workers, which leave through
  ``sys.exit`` so ``atexit`` flushes them) has no multiprocessing parent and is left alone.

With ``spawn`` and ``forkserver`` the child is a fresh interpreter (forkserver: forked from a server
process that imported the main module, not from the parent), so it has llmwatch configured only if
``configure()`` runs there: at module level, or in ``Pool(initializer=llmwatch.configure)``, or in the
target. ``configure()`` under ``if __name__ == "__main__":`` runs in the parent only: such children
are not instrumented and make no spans at all (nothing is lost: nothing was recorded).

Why not a SIGTERM handler: a Python signal handler runs only when the main thread returns to the
interpreter, so a worker busy in C code would no longer stop at ``terminate()``, and
``Pool.terminate()`` then waits for it without a deadline. The task boundary needs no signal.
"""

from __future__ import annotations

import os
import sys
import weakref
from typing import Any, Protocol

from llmwatch._health import record_internal_error

EXIT_FLUSH_TIMEOUT_S = 3.0  # as at interpreter exit: export what we can, never hold the exit longer


class ChildProcessor(Protocol):
    """What a multiprocessing child needs of the span processor."""

    def shutdown_before_exit(self, timeout_s: float) -> None: ...

    def flush_before_handoff(self) -> None: ...


# The processors already watched in this process, by pid (a forked child inherits the parent's entries).
_watched: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def may_be_child() -> bool:
    """When a processor is made: could this process be (or become, at ``_bootstrap``) a multiprocessing child?"""
    return "multiprocessing.process" in sys.modules


def watch_if_child(processor: ChildProcessor) -> bool:
    """At a processor's first span: in a multiprocessing child, watch it. True once settled either way."""
    try:
        process_module = sys.modules.get("multiprocessing.process")
        if process_module is None:
            return True
        if getattr(process_module.current_process(), "_inheriting", False):
            return False  # spawn/forkserver still importing the main module: ask again at the next span
        if process_module.parent_process() is not None:
            watch(processor)
    except Exception as exc:
        record_internal_error("multiprocessing child watch", exc)
    return True


def watch(processor: ChildProcessor) -> None:
    """In a multiprocessing child: flush at its exit, and before each result of a Pool worker."""
    pid = os.getpid()
    if _watched.get(processor) == pid:
        return
    _watched[processor] = pid  # two threads ending their first spans at once: at worst a second, idle Finalize
    from multiprocessing import util

    util.Finalize(None, _flush_at_exit, args=(weakref.ref(processor),), exitpriority=0)
    _hook_pool_results(processor)


def _flush_at_exit(ref: weakref.ref[ChildProcessor]) -> None:
    processor = ref()
    if processor is None:
        return
    try:
        processor.shutdown_before_exit(EXIT_FLUSH_TIMEOUT_S)
    except Exception as exc:
        record_internal_error("multiprocessing child exit flush", exc)


def _hook_pool_results(processor: ChildProcessor) -> None:
    """In a ``multiprocessing.Pool`` worker, export a task's spans before its result is written.

    The worker binds ``put = outqueue.put`` before running the pool's initializer, so the method
    cannot be replaced once the worker runs; ``SimpleQueue.put`` reads ``self._wlock`` on every call
    (``with self._wlock: self._writer.send_bytes(...)``), so that lock is wrapped: the flush runs
    before the lock is taken, never while other workers wait for it.
    """
    pool = sys.modules.get("multiprocessing.pool")
    process_module = sys.modules.get("multiprocessing.process")
    if pool is None or process_module is None:
        return
    process = process_module.current_process()
    if getattr(process, "_target", None) is not getattr(pool, "worker", None):
        return
    args = getattr(process, "_args", ())
    outqueue = args[1] if isinstance(args, tuple) and len(args) > 1 else None
    lock = getattr(outqueue, "_wlock", None)
    if lock is None or isinstance(lock, _FlushFirst):  # no lock: Windows pipes, where fork does not exist
        return
    outqueue._wlock = _FlushFirst(lock, weakref.ref(processor))  # type: ignore[union-attr]


class _FlushFirst:
    """A Pool worker's result-queue lock that first exports the spans the finished task left queued."""

    __slots__ = ("_lock", "_processor")

    def __init__(self, lock: Any, processor: weakref.ref[ChildProcessor]) -> None:
        self._lock = lock
        self._processor = processor

    def __enter__(self) -> Any:
        processor = self._processor()
        if processor is not None:
            try:
                processor.flush_before_handoff()
            except Exception as exc:
                record_internal_error("pool task flush", exc)
        return self._lock.__enter__()

    def __exit__(self, *exc_info: object) -> Any:
        return self._lock.__exit__(*exc_info)

    def __getattr__(self, name: str) -> Any:  # acquire(), release(), ... as the real lock
        return getattr(self._lock, name)
