"""Shadow calls: a rollout's challenger asked the same thing in the background, its answer thrown away.

In ``mode="shadow"`` every caller gets the champion's answer and waits for nothing else. For the
rollout's sticky share of users, the same request, with the challenger's overrides and without
streaming, is sent again off the caller's path:

- sync SDK methods: on a small thread pool (``MAX_WORKERS``), the caller's context copied (its user,
  feature and trace: the shadow span is the champion's sibling, and links to it);
- async SDK methods: as a task on the caller's event loop (the async client belongs to that loop).

At most ``MAX_IN_FLIGHT`` shadow calls run or wait at once; beyond that a shadow call is dropped and
counted (``stats()["rollouts"][name]["shadow_dropped"]``): a slow challenger must never queue work
without bound. The shadow call goes through the SDK's instrumented method like any call: its own span
(``llmwatch.rollout.shadow=true``, the challenger arm), its cost priced and counted against budgets
(a budget can refuse it), its outcome and latency in the challenger arm's figures.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from opentelemetry.trace import SpanContext

from llmwatch import _forking
from llmwatch._health import Counter, record_internal_error
from llmwatch._policy._rollouts import Rollout

MAX_WORKERS: Final = 4
MAX_IN_FLIGHT: Final = 32
# Set while a shadow call runs: (the rollout, the champion span it shadows). The call's own rollout
# step then sends it as the challenger, marks it shadow, links it, and never shadows it again.
SHADOWING: contextvars.ContextVar[tuple[Rollout, SpanContext] | None] = contextvars.ContextVar(
    "llmwatch_shadowing", default=None
)
_STREAM_KEYS: Final = ("stream", "stream_options")


class _Pool:
    """The shadow calls in flight, their thread pool (made on first use, new in a forked child)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.dropped = Counter()
        self.failed = Counter()
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            if self.in_flight >= MAX_IN_FLIGHT:
                return False
            self.in_flight += 1
            return True

    def done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="llmwatch-shadow")
        return self._executor

    def keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)  # a task nobody references can be collected before it ends
        task.add_done_callback(self._tasks.discard)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._executor = None  # the parent's threads are not here
        self._tasks = set()
        self.in_flight = 0


POOL = _Pool()
_forking.after_fork_in_child(POOL.after_fork)


def shadow_request(request: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The challenger's request: the caller's with the overrides, never streamed."""
    shadow = {key: value for key, value in request.items() if key not in _STREAM_KEYS}
    shadow.update(overrides)
    return shadow


def start_sync(send: Callable[[], Any], rollout: Rollout, champion: SpanContext) -> None:
    """Send the shadow call on the pool; the caller returns at once."""
    if not POOL.admit():
        _dropped(rollout)
        return
    context = contextvars.copy_context()
    try:
        POOL.executor().submit(context.run, _run_sync, send, rollout, champion)
    except RuntimeError:  # the interpreter is shutting down: no new threads
        POOL.done()
        _dropped(rollout)


def _run_sync(send: Callable[[], Any], rollout: Rollout, champion: SpanContext) -> None:
    token = SHADOWING.set((rollout, champion))
    try:
        send()
    except Exception:  # the challenger's failure is in its span and its arm's figures: nothing to raise
        POOL.failed.add()
    finally:
        SHADOWING.reset(token)
        POOL.done()


def start_async(send: Callable[[], Coroutine[Any, Any, Any]], rollout: Rollout, champion: SpanContext) -> None:
    """Send the shadow call as a task on the caller's loop; the caller does not await it."""
    if not POOL.admit():
        _dropped(rollout)
        return
    try:
        loop = asyncio.get_running_loop()
        POOL.keep(loop.create_task(_run_async(send, rollout, champion)))
    except Exception as exc:
        POOL.done()
        record_internal_error("shadow call", exc)


async def _run_async(send: Callable[[], Coroutine[Any, Any, Any]], rollout: Rollout, champion: SpanContext) -> None:
    token = SHADOWING.set((rollout, champion))  # a task runs in its own copy of the context
    try:
        await send()
    except Exception:
        POOL.failed.add()
    finally:
        SHADOWING.reset(token)
        POOL.done()


def _dropped(rollout: Rollout) -> None:
    POOL.dropped.add()
    rollout.shadow_dropped += 1
