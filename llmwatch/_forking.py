"""The package's fork hook for its module-level workers: what a forked child must renew registers here.

A child made by ``os.fork()`` (gunicorn ``--preload``, multiprocessing's fork and forkserver starts)
inherits the parent's memory but none of its threads, and may inherit a lock some thread held at the
fork. The module-level parts that keep a lock or a worker thread (the tiktoken loader, the metrics
drainer) say here how to start over; one ``os.register_at_fork`` runs them all in the child, in the
order they registered, each guarded (a failing one is counted, the others still run). Callbacks that
belong to an object are held weakly. The span processor and the JSON Lines exporter keep their own
per-instance ``os.register_at_fork``: registered when they are made, their renewal runs after the
exporter machinery registered before them (through this hook, which registers at import, a
pre-forked worker hung at ``sys.exit``).

Before the fork, in the parent, a part may have to finish something a child could not: an import
running on one of our threads holds that module's import lock, and the child would inherit it held
by a thread it does not have (``before_fork``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from llmwatch._health import record_internal_error

_callbacks: list[Callable[[], Any]] = []
_lock = threading.Lock()


def after_fork_in_child(callback: Callable[[], Any]) -> None:
    """Run ``callback`` in every forked child. A bound method is held weakly (dropped with its object)."""
    entry: Callable[[], Any]
    if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
        weak = weakref.WeakMethod(callback)

        def entry() -> Any:
            method = weak()
            return None if method is None else method()

        entry.__name__ = getattr(callback, "__qualname__", "method")
    else:
        entry = callback
    with _lock:
        _callbacks.append(entry)


def _run_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it at the fork
    for callback in list(_callbacks):
        try:
            callback()
        except Exception as exc:
            record_internal_error(f"after fork: {getattr(callback, '__name__', 'callback')}", exc)


_before: list[Callable[[], Any]] = []


def before_fork(callback: Callable[[], Any]) -> None:
    """Run ``callback`` in the parent just before every fork (it must be quick and bounded)."""
    _before.append(callback)


def _run_before_fork() -> None:
    for callback in list(_before):
        try:
            callback()
        except Exception as exc:
            record_internal_error(f"before fork: {getattr(callback, '__name__', 'callback')}", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_run_before_fork, after_in_child=_run_in_child)
