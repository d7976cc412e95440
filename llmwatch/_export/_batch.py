"""The span processor: a bounded queue and one export worker, with deadlines and every loss counted.

Why this module exists
----------------------
Every span llmwatch makes ends on the caller's request thread. OTel's own ``BatchSpanProcessor`` is
close to what we need, but when its queue is full it silently evicts the *oldest* span, counts
nothing, and its ``export_timeout`` is not enforced, so a stalled collector can hold ``shutdown()``
for as long as the exporter likes. :class:`LlmwatchSpanProcessor` keeps the good part (bounded
queue, one daemon worker, fork re-initialisation, instrumentation suppressed while exporting) and
adds what an always-on library owes its host: ``on_end`` is O(1) and never blocks or does I/O; a
full queue drops the *new* span and counts it; every failed batch is counted; each export call has a
deadline; ``force_flush``/``shutdown`` return within their timeouts even if the exporter never
does. Everything shows up in ``llmwatch.stats()``.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llmwatch import _config
from llmwatch._config import ConfigurationError
from llmwatch._export import _process_exit
from llmwatch._export._forksafe import call_weak as _call_weak  # the processor's fork hook
from llmwatch._health import HEALTH

logger = logging.getLogger("llmwatch")

DEFAULT_BATCH_SIZE = 512
_QUEUE_FULL = "llmwatch.export.queue_full"
_EXPORT_FAILED = "llmwatch.export.failed"
_SHUTDOWN_ABANDONED = "llmwatch.export.shutdown_abandoned"
_HANDOFF_FAILED = "llmwatch.export.pool_handoff_failed"


class _Batch:
    """Spans handed to the exporter; ``settled`` makes sure each batch is counted exactly once."""

    __slots__ = ("settled", "spans")

    def __init__(self, spans: list[ReadableSpan]) -> None:
        self.spans = spans
        self.settled = False


class _FlushRequest:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class _BackgroundCall:
    """Runs ``fn`` on a daemon thread so the caller can stop waiting at a deadline.

    Python cannot cancel a thread: at the deadline the call is abandoned, not stopped.
    """

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        try:
            threading.Thread(target=self._run, name=name, daemon=True).start()
        except RuntimeError:
            # Python 3.12+ refuses new threads during interpreter shutdown (atexit, where OTel's
            # provider shuts us down): run inline, the deadline then rests on the exporter's own timeout.
            self._run()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # reported to the waiting thread, never raised on a daemon
            self.error = exc
        finally:
            self.done.set()


class LlmwatchSpanProcessor(SpanProcessor):
    """Bounded queue + one daemon worker; drops and failures counted; deadlines everywhere.

    - ``on_end`` (the caller's thread): a length check and a ``deque.append``. When the queue is
      full the *new* span is dropped and counted (``spans_dropped``); nothing blocks, nothing does
      I/O apart from one warning the first time the queue fills. The bound is checked without a lock,
      so concurrent threads may overshoot it by at most one span each; every drop is counted.
    - The worker wakes when a batch is ready, a flush is asked for, or the schedule delay passes.
      Each export runs with instrumentation suppressed (an HTTP instrumentation must not trace our
      own exports) and has ``export_timeout_ms``: past it the batch counts as failed and its spans
      as dropped, and the worker waits for the stalled call before the next one (an exporter is
      never called concurrently).
    - ``force_flush`` and ``shutdown`` return within their timeouts whatever the exporter does.
    - In a forked child the queue (the parent's spans, which the parent exports) is emptied and a
      new worker started. A multiprocessing child (which leaves through ``os._exit``, never
      ``atexit``) flushes at its exit and, in a Pool worker, before each task's result goes back:
      see ``_process_exit``.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = DEFAULT_BATCH_SIZE,
        schedule_delay_ms: int = 1000,
        export_timeout_ms: int = 30000,
    ) -> None:
        for name, value in (
            ("max_queue_size", max_queue_size),
            ("max_export_batch_size", max_export_batch_size),
            ("schedule_delay_ms", schedule_delay_ms),
            ("export_timeout_ms", export_timeout_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"{name}={value!r} must be a whole number above 0.")
        self._exporter = exporter
        self._max_queue_size = max_queue_size
        self._batch_size = min(max_export_batch_size, max_queue_size)
        self._schedule_delay_s = schedule_delay_ms / 1000
        self._export_timeout_s = export_timeout_ms / 1000
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._is_shutdown = False
        # Pool workers wait for the export of a task's spans before its result goes back, unless
        # the last such wait failed: then they stop waiting until an export succeeds again.
        self._handoff_waits = True
        # Whether the next span ended must first ask if this is a multiprocessing child (_process_exit).
        self._child_check = _process_exit.may_be_child()
        self._start()
        weak = weakref.WeakMethod(self._restart_after_fork)
        os.register_at_fork(after_in_child=functools.partial(_call_weak, weak))

    @classmethod
    def from_env(
        cls,
        exporter: SpanExporter,
        *,
        max_export_batch_size: int = DEFAULT_BATCH_SIZE,
        environ: Mapping[str, str] | None = None,
    ) -> LlmwatchSpanProcessor:
        """Sizes and delays from ``OTEL_BSP_*`` where set; ``max_export_batch_size`` is the preset's default."""
        return cls(
            exporter,
            max_queue_size=_config.env("export_queue_size", environ),
            max_export_batch_size=_config.env("export_batch_size", environ, default=max_export_batch_size),
            schedule_delay_ms=_config.env("export_schedule_delay_ms", environ),
            export_timeout_ms=_config.env("export_timeout_ms", environ),
        )

    def _start(self) -> None:
        # Every lock and event is made here, so a forked child never inherits one held at fork time.
        self._wake = threading.Event()
        self._flush_lock = threading.Lock()
        self._flush_requests: list[_FlushRequest] = []
        self._settle_lock = threading.Lock()
        self._in_flight: _Batch | None = None
        self._abandoned = False
        self._worker = threading.Thread(target=self._run, name="llmwatch-span-export", daemon=True)
        self._worker.start()

    def _restart_after_fork(self) -> None:
        self._queue.clear()
        if not self._is_shutdown:
            self._child_check = True
            self._start()

    # -- a multiprocessing child (see _process_exit) ------------------------------------------------------
    def shutdown_before_exit(self, timeout_s: float) -> None:
        """The child is about to ``os._exit``: export what is queued, count what cannot be sent."""
        self.shutdown(timeout_millis=min(timeout_s, self._export_timeout_s) * 1000)

    def flush_before_handoff(self) -> None:
        """A Pool worker's task is done: export its spans before the result can reach the parent.

        The parent may terminate the worker (SIGTERM) as soon as it has the last result. Nothing
        queued: returns at once (most tasks). Bounded by the exit deadline; when a wait fails (a
        collector down or slow), later tasks stop waiting until an export succeeds again, so a
        broken collector costs a worker one wait, not one per task.
        """
        if self._is_shutdown or (not self._queue and self._in_flight is None):
            return
        if not self._handoff_waits:
            self._wake.set()  # export now, in the background
            return
        timeout_s = min(_process_exit.EXIT_FLUSH_TIMEOUT_S, self._export_timeout_s)
        if not self.force_flush(int(timeout_s * 1000)):
            self._handoff_waits = False
            if HEALTH.due(_HANDOFF_FAILED):
                logger.warning(
                    "llmwatch: pool worker %d could not export a task's spans before returning its result; "
                    "spans still queued if the pool terminates this worker are lost (export failures are "
                    "counted in this worker's llmwatch.stats()). Is the collector reachable? "
                    "(logged at most once a minute)",
                    os.getpid(),
                )

    # -- the caller's thread ----------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        queue = self._queue
        if self._is_shutdown or len(queue) >= self._max_queue_size:
            HEALTH.spans_dropped.add()
            if not self._is_shutdown and HEALTH.due(_QUEUE_FULL):
                # Logged here, at most once a minute: the worker may be the very thing that is stuck.
                logger.warning(
                    "llmwatch: the export queue is full (%d spans); new spans are dropped and counted in "
                    "llmwatch.stats()['spans_dropped'] (%d so far). Is the collector reachable? "
                    "(logged at most once a minute)",
                    self._max_queue_size,
                    HEALTH.spans_dropped.value,
                )
            return
        queue.append(span)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        if self._child_check:  # once per process at most: False in the parent after its first span
            self._child_check = not _process_exit.watch_if_child(self)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export every span queued now; True when all of them were exported within the timeout."""
        if self._is_shutdown:
            return True  # shutdown already drained (or counted) everything
        request = _FlushRequest()
        with self._flush_lock:
            self._flush_requests.append(request)
        self._wake.set()
        return request.done.wait(max(timeout_millis, 0) / 1000) and request.ok

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Export what is queued and shut the exporter down, all within ``timeout_millis``.

        Default: ``export_timeout_ms``. OTel's TracerProvider calls this without a timeout.
        Spans still queued at the deadline are counted as dropped.
        """
        if self._is_shutdown:
            return
        timeout_s = self._export_timeout_s if timeout_millis is None else max(timeout_millis, 0) / 1000
        deadline = time.monotonic() + timeout_s
        self._is_shutdown = True
        self._wake.set()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout_s)
        if self._worker.is_alive():
            self._abandon()
        else:  # a span that passed on_end's shutdown check just as the worker left
            for _ in self._take(len(self._queue)):
                HEALTH.spans_dropped.add()
        call = _BackgroundCall(self._exporter.shutdown, "llmwatch-exporter-shutdown")
        if call.done.wait(max(deadline - time.monotonic(), 0)) and call.error is not None:
            logger.debug("llmwatch: exporter shutdown failed: %r", call.error)

    def _abandon(self) -> None:
        """The shutdown deadline passed with the worker still busy: count what will never be sent."""
        self._abandoned = True
        left = len(self._take(len(self._queue)))
        for _ in range(left):
            HEALTH.spans_dropped.add()
        in_flight = self._in_flight
        if in_flight is not None:
            self._settle(in_flight, "export still running at the shutdown deadline; batch abandoned")
        if HEALTH.first_time(_SHUTDOWN_ABANDONED):
            logger.warning(
                "llmwatch: shutdown deadline reached with the exporter still busy; %d queued spans dropped "
                "(counted in llmwatch.stats()).",
                left,
            )

    # -- the worker thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self._schedule_delay_s)
            self._wake.clear()
            with self._flush_lock:
                requests, self._flush_requests = self._flush_requests, []
            stopping = self._is_shutdown
            # Woken for a full batch: export full batches only; the delay passed, or a flush or
            # shutdown asked: export everything queued now.
            ok = self._drain(everything=not woken or bool(requests) or stopping)
            for request in requests:
                request.ok = ok
                request.done.set()
            if stopping:
                return

    def _drain(self, everything: bool) -> bool:
        # Only what is queued now: under constant load a flush must not chase new spans forever.
        remaining = len(self._queue)
        threshold = 1 if everything else self._batch_size
        ok = True
        while remaining >= threshold and not self._abandoned:
            batch = self._take(min(self._batch_size, remaining))
            if not batch:
                break
            remaining -= len(batch)
            ok = self._export(batch) and ok
        return ok

    def _take(self, count: int) -> list[ReadableSpan]:
        taken: list[ReadableSpan] = []
        try:
            for _ in range(count):
                taken.append(self._queue.popleft())
        except IndexError:  # shutdown emptied the queue under us
            pass
        return taken

    def _export(self, spans: list[ReadableSpan]) -> bool:
        batch = _Batch(spans)
        self._in_flight = batch
        call = _BackgroundCall(functools.partial(self._export_suppressed, spans), "llmwatch-export-call")
        if call.done.wait(self._export_timeout_s):
            reason = _failure_reason(call)
        else:
            reason = f"export did not finish within {self._export_timeout_s:g}s (OTEL_BSP_EXPORT_TIMEOUT)"
        ok = self._settle(batch, reason)
        call.done.wait()  # one export at a time: exporters are not required to be thread-safe
        self._in_flight = None
        return ok

    def _export_suppressed(self, spans: list[ReadableSpan]) -> SpanExportResult:
        token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            return self._exporter.export(spans)
        finally:
            otel_context.detach(token)

    def _settle(self, batch: _Batch, failure: str | None) -> bool:
        """Count a batch's outcome exactly once (the worker and shutdown may both try)."""
        with self._settle_lock:
            if batch.settled:
                return False
            batch.settled = True
        if failure is None:
            HEALTH.exports_succeeded.add()
            HEALTH.last_export_ok_at = time.time()
            self._handoff_waits = True
            return True
        HEALTH.exports_failed.add()
        HEALTH.last_export_failed_at = time.time()
        for _ in batch.spans:
            HEALTH.spans_dropped.add()
        HEALTH.last_export_error = failure
        if HEALTH.due(_EXPORT_FAILED):
            logger.warning(
                "llmwatch: span export failed (%s); the batch was dropped. %d failed exports and %d dropped "
                "spans so far, counted in llmwatch.stats() (logged at most once a minute).",
                failure,
                HEALTH.exports_failed.value,
                HEALTH.spans_dropped.value,
            )
        return False


def _failure_reason(call: _BackgroundCall) -> str | None:
    if call.error is not None:
        return f"{type(call.error).__name__}: {call.error}"[:300]
    if call.result is SpanExportResult.SUCCESS:
        return None
    name = getattr(call.result, "name", repr(call.result))
    return f"exporter returned {name}"
