"""llmwatch's own health: the internal-error guard and the counters behind ``llmwatch.stats()``.

Everything llmwatch does runs inside somebody else's request. An exception in our code must never
reach the host application: it is caught here, counted, and logged once per place (a bug that fires
on every call must not flood the host's logs). Our own test-suite flips ``raise_internal_errors`` so
that a bug in llmwatch fails the test that hit it instead of hiding behind the guard; users' test
suites keep the production behaviour.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

logger = logging.getLogger("llmwatch")

LOG_INTERVAL_S = 60.0  # export trouble is logged at most this often

P = ParamSpec("P")
R = TypeVar("R")

# Set by llmwatch's own tests (never by users): re-raise internal errors instead of swallowing them.
raise_internal_errors = False


class Counter:
    """A thread-safe monotonic counter without a lock.

    ``next()`` on an ``itertools.count`` is a single C call, atomic under the GIL, so concurrent
    increments are never lost (``x += 1`` on an attribute can lose them).
    """

    __slots__ = ("_base", "_count")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._base = 0

    def add(self) -> None:
        next(self._count)

    @property
    def value(self) -> int:
        # count(n).__reduce__() is (count, (n,)): reading it does not advance the counter.
        current = self._count.__reduce__()[1][0]
        return int(current) - self._base

    def reset(self) -> None:
        self._base = int(self._count.__reduce__()[1][0])


class StreamUsageRejections:
    """Servers that refused the ``stream_options`` llmwatch adds to OpenAI streams (see ``_stream_usage``).

    ``retries`` counts the calls sent again without it; the base URLs (secret-free: no user info,
    no query) are remembered so later streams to them are sent as the caller wrote them. Bounded: past
    ``MAX_URLS`` the oldest is forgotten (it then costs one more retry). Read without a lock on every
    stream; written, under one, only when a server refuses.
    """

    MAX_URLS = 256

    def __init__(self) -> None:
        self.retries = Counter()
        self._urls: dict[str, None] = {}
        self._lock = threading.Lock()

    def __contains__(self, base_url: str) -> bool:
        return base_url in self._urls

    def __bool__(self) -> bool:
        return bool(self._urls)

    def remember(self, base_url: str) -> None:
        with self._lock:
            self._urls.pop(base_url, None)
            self._urls[base_url] = None
            while len(self._urls) > self.MAX_URLS:
                del self._urls[next(iter(self._urls))]

    def snapshot(self) -> dict[str, Any]:
        return {"retries": self.retries.value, "base_urls": list(self._urls)}

    def reset(self) -> None:
        self.retries.reset()
        with self._lock:
            self._urls.clear()


class Health:
    """Process-wide counters. One instance, ``HEALTH``; ``reset()`` is for tests."""

    def __init__(self) -> None:
        self.spans_started = Counter()
        self.spans_ended = Counter()
        self.spans_dropped = Counter()
        self.exports_succeeded = Counter()
        self.exports_failed = Counter()  # span and metric exports
        self.metric_exports_failed = Counter()
        self.internal_errors = Counter()
        self.calls_refused = Counter()
        self.scores_unmatched = Counter()
        self.metrics_dropped = Counter()
        self.strings_repaired = Counter()  # lone surrogates replaced before a string reached a span
        self.content_hook_dropped = Counter()  # content records the hook's full queue refused
        self.stream_usage_rejected = StreamUsageRejections()
        self.last_export_error: str | None = None
        # When span exports last succeeded and failed, and metric exports last failed (time.time()):
        # what ``llmwatch.health()`` judges the exporter by.
        self.last_export_ok_at: float | None = None
        self.last_export_failed_at: float | None = None
        self.last_metric_export_failed_at: float | None = None
        self.last_internal_error: str | None = None
        self._logged_places: set[str] = set()
        self._last_logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def counters(self) -> dict[str, Any]:
        return {
            "spans_started": self.spans_started.value,
            "spans_ended": self.spans_ended.value,
            "spans_dropped": self.spans_dropped.value,
            "exports_succeeded": self.exports_succeeded.value,
            "exports_failed": self.exports_failed.value,
            "metric_exports_failed": self.metric_exports_failed.value,
            "last_export_error": self.last_export_error,
            "internal_errors": self.internal_errors.value,
            "last_internal_error": self.last_internal_error,
            "calls_refused": self.calls_refused.value,
            "scores_unmatched": self.scores_unmatched.value,
            "metrics_dropped": self.metrics_dropped.value,
            "strings_repaired": self.strings_repaired.value,
            "content_hook_dropped": self.content_hook_dropped.value,
            "stream_usage_rejected": self.stream_usage_rejected.snapshot(),
        }

    def reset(self) -> None:
        for counter in (
            self.spans_started,
            self.spans_ended,
            self.spans_dropped,
            self.exports_succeeded,
            self.exports_failed,
            self.metric_exports_failed,
            self.internal_errors,
            self.calls_refused,
            self.scores_unmatched,
            self.metrics_dropped,
            self.strings_repaired,
            self.content_hook_dropped,
        ):
            counter.reset()
        self.stream_usage_rejected.reset()
        self.last_export_error = None
        self.last_export_ok_at = self.last_export_failed_at = self.last_metric_export_failed_at = None
        self.last_internal_error = None
        with self._lock:
            self._logged_places.clear()
            self._last_logged.clear()

    def first_time(self, place: str) -> bool:
        """True the first time ``place`` is seen: used to log a recurring problem once."""
        if place in self._logged_places:
            return False
        with self._lock:
            if place in self._logged_places:
                return False
            self._logged_places.add(place)
            return True

    def due(self, place: str, interval_s: float = LOG_INTERVAL_S) -> bool:
        """True at most once per ``interval_s`` for ``place``: a problem that persists (a dead
        collector) is logged again each interval, with its counts, never once per span."""
        now = time.monotonic()
        last = self._last_logged.get(place)
        if last is not None and now - last < interval_s:
            return False
        self._last_logged[place] = now  # a race may log twice in one interval: harmless, and no lock
        return True


HEALTH = Health()


def record_internal_error(place: str, exc: BaseException, *, private: bool = False) -> None:
    """Count an exception raised by llmwatch's own code and log it the first time ``place`` fails.

    ``private``: the exception may quote user content (a ``redact`` hook's error about the text it
    was given), so only its type is logged and kept, never its message or traceback.
    """
    HEALTH.internal_errors.add()
    HEALTH.last_internal_error = f"{place}: {type(exc).__name__}" + ("" if private else f": {exc}")
    if HEALTH.first_time(place):
        logger.warning(
            "llmwatch internal error in %s%s (your code still runs; telemetry for this call may be "
            "incomplete; further errors here are counted in llmwatch.stats() but not logged)",
            place,
            f": {type(exc).__name__} (message withheld: it may quote captured content)" if private else "",
            exc_info=None if private else exc,
        )
    if raise_internal_errors:
        raise exc


@contextmanager
def guard(place: str) -> Iterator[None]:
    """Run a block of llmwatch code; any exception in it is recorded, never propagated."""
    try:
        yield
    except Exception as exc:
        record_internal_error(place, exc)


def guarded(place: str, default: Any = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of :func:`guard`: on an internal error the function returns ``default``.

    Only for llmwatch's own functions; the user's result never passes through one.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                record_internal_error(place, exc)
                return default  # type: ignore[no-any-return]

        return wrapper

    return decorate
