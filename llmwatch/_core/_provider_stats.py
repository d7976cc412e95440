"""Each provider's recent health, as the calls saw it: the last success, the error rate, the latency.

Fed by the pipeline when a call ends (``record``: a dict lookup, a lock held for a few additions, a
``deque.append``), read by ``llmwatch.health()`` (``snapshot``). Counts are kept in a sliding window
over the last ``WINDOW_S`` (the circuits' own, ``_policy/_circuit.SlidingWindow``); latencies are the
last ``LATENCY_SAMPLES`` answers' durations, for the median and p95. What a failure is comes from
``_policy/_outcomes``: caller errors do not count.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Final

from llmwatch import _forking
from llmwatch._policy._circuit import SlidingWindow
from llmwatch._policy._outcomes import FAILURE, IGNORED

WINDOW_S: Final = 300.0
LATENCY_SAMPLES: Final = 256
MAX_PROVIDERS: Final = 256  # provider names come from code and config, but a bound costs nothing


class ProviderStats:
    """One provider's recent calls."""

    __slots__ = ("_lock", "_window", "durations", "last_failure_at", "last_success_at")

    def __init__(self) -> None:
        self._window = SlidingWindow(WINDOW_S)
        self._lock = threading.Lock()
        self.durations: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)
        self.last_success_at: float | None = None
        self.last_failure_at: float | None = None

    def record(self, result: str, duration_s: float, now: float) -> None:
        if result == IGNORED:
            return
        failed = result == FAILURE
        with self._lock:
            self._window.add(now, failed)
        if failed:
            self.last_failure_at = now
        else:
            self.last_success_at = now
            self.durations.append(duration_s)  # latency of answers only: a refused connection is not slow

    def snapshot(self, now: float) -> dict[str, Any]:
        with self._lock:
            calls, failures = self._window.totals(now)
        durations = sorted(self.durations)
        return {
            "calls": calls,
            "failures": failures,
            "error_rate": round(failures / calls, 4) if calls else 0.0,
            "latency_p50_s": _quantile(durations, 0.5),
            "latency_p95_s": _quantile(durations, 0.95),
            "last_success_at": self.last_success_at,
            "last_failure_at": self.last_failure_at,
        }


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)], 4)


class Providers:
    """Every provider seen since ``configure()`` (or the process start)."""

    def __init__(self) -> None:
        self._stats: dict[str, ProviderStats] = {}
        self._lock = threading.Lock()

    def record(self, provider: str, result: str, duration_s: float) -> None:
        stats = self._stats.get(provider)
        if stats is None:
            stats = self._add(provider)
            if stats is None:
                return
        stats.record(result, duration_s, time.time())

    def _add(self, provider: str) -> ProviderStats | None:
        with self._lock:
            stats = self._stats.get(provider)
            if stats is None and len(self._stats) < MAX_PROVIDERS:
                stats = self._stats[provider] = ProviderStats()
            return stats

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        with self._lock:
            stats = dict(self._stats)
        return {provider: entry.snapshot(now) for provider, entry in sorted(stats.items())}

    def reset(self) -> None:
        with self._lock:
            self._stats.clear()

    def after_fork(self) -> None:
        """In a forked child: fresh locks (a parent thread may have held one at the fork)."""
        self._lock = threading.Lock()
        for stats in self._stats.values():
            stats._lock = threading.Lock()


PROVIDERS = Providers()
_forking.after_fork_in_child(PROVIDERS.after_fork)
