"""One circuit: the state machine of one breaker scope (closed -> open -> half-open -> closed).

``CircuitBreaker`` (``_breakers.py``) is the rule a user sets; each scope it covers (one, or one per
value with ``"*"``) has a :class:`Circuit` here:

- **closed**: calls go ahead; each outcome lands in a sliding window of ``BUCKETS`` time buckets over
  ``window_s``. A provider failure that takes the window to ``min_calls`` calls or more with a failure
  rate of ``failure_rate`` or more opens the circuit.
- **open**: calls are refused before any I/O until ``reopens_at`` (``open_s`` after opening).
- **half-open**: one call at a time goes through as a probe (up to ``half_open_probes`` in a row);
  they all succeed: closed, with an empty window; one fails: open again for ``open_s``. Outcomes that
  say nothing of the provider (a 400, a cancelled call) free the probe's place without deciding.

Hot path: while closed, :meth:`Circuit.admit` is one attribute read. Only the rare paths (a
transition, a probe while half-open) and recording an outcome after the call take the circuit's lock.
With a store, every transition is told to the fleet and the fleet's transitions are applied here
(:meth:`Circuit.apply_remote`); outcomes are counted for the fleet's window too (``take_deltas``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from llmwatch import _semconv as sc
from llmwatch._policy._outcomes import FAILURE, IGNORED, OK

logger = logging.getLogger("llmwatch")

CLOSED: Final = sc.CIRCUIT_CLOSED
HALF_OPEN: Final = sc.CIRCUIT_HALF_OPEN
OPEN: Final = sc.CIRCUIT_OPEN
BUCKETS: Final = 10  # the sliding window's resolution: it covers between 90 % and 100 % of window_s
_CANONICAL: Final = {CLOSED: CLOSED, HALF_OPEN: HALF_OPEN, OPEN: OPEN}  # states compare with ``is``
PROBE_STALE_S: Final = 600.0  # a probe never ended (a leaked stream) stops blocking the next after this

# Told of every transition made here (circuit, old state, new state): the fleet writes it to the store.
TransitionSink = Callable[["Circuit", str, str], None]


class Thresholds:
    """What a breaker's circuits decide by; shared by all of them, replaced whole on an update."""

    __slots__ = ("failure_rate", "half_open_probes", "min_calls", "open_s", "window_s")

    def __init__(self, failure_rate: float, min_calls: int, window_s: float, open_s: float, probes: int) -> None:
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.window_s = window_s
        self.open_s = open_s
        self.half_open_probes = probes


class SlidingWindow:
    """Calls and failures in the last ``window_s`` seconds, in ``BUCKETS`` buckets (the caller locks)."""

    __slots__ = ("_slots", "bucket_s")

    def __init__(self, window_s: float) -> None:
        self.bucket_s = window_s / BUCKETS
        self._slots = [[-1, 0, 0] for _ in range(BUCKETS)]  # [bucket index, calls, failures]

    def add(self, now: float, failed: bool) -> None:
        index = int(now / self.bucket_s)
        slot = self._slots[index % BUCKETS]
        if slot[0] != index:
            slot[0], slot[1], slot[2] = index, 0, 0
        slot[1] += 1
        if failed:
            slot[2] += 1

    def totals(self, now: float) -> tuple[int, int]:
        index = int(now / self.bucket_s)
        calls = failures = 0
        for start, slot_calls, slot_failures in self._slots:
            if index - start < BUCKETS:
                calls += slot_calls
                failures += slot_failures
        return calls, failures

    def clear(self) -> None:
        for slot in self._slots:
            slot[0], slot[1], slot[2] = -1, 0, 0


class Circuit:
    """One scope's circuit. ``state`` and ``reopens_at`` are read without a lock by the hot path."""

    __slots__ = (
        "_lock",
        "_probe_started",
        "_probe_successes",
        "_probes_in_flight",
        "changed_at",
        "delta_calls",
        "delta_failures",
        "fleet_id",
        "key",
        "labels",
        "last_failure_rate",
        "on_transition",
        "reopens_at",
        "scope",
        "state",
        "thresholds",
        "transitions",
        "window",
    )

    def __init__(
        self,
        scope: str,
        key: str,
        thresholds: Thresholds,
        on_transition: TransitionSink | None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.scope = scope  # the breaker's rule, as text: provider=openai/model=*
        self.key = key  # the values of this circuit: provider=openai/model=gpt-4o
        self.labels = labels or {}  # the pinned values by field (provider, model, feature): metric attributes
        self.fleet_id = key if key == scope else f"{scope}|{key}"
        self.thresholds = thresholds
        self.on_transition = on_transition
        self.state: str = CLOSED
        self.reopens_at = 0.0  # time.time() at which an open circuit lets a probe through
        self.changed_at = 0.0  # time.time() of the last transition, here or in the fleet
        self.window = SlidingWindow(thresholds.window_s)
        self.transitions: dict[str, int] = {}  # new state -> how many times (the transitions counter)
        self.last_failure_rate: float | None = None
        self.delta_calls = 0  # outcomes not yet counted in the fleet's window (with a store)
        self.delta_failures = 0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._probe_started = 0.0
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, and the parent's uncounted outcomes stay the parent's."""
        self._lock = threading.Lock()
        self.delta_calls = self.delta_failures = 0
        self._probes_in_flight = 0  # the parent's probe is not in flight here

    @property
    def window_s(self) -> float:
        return self.thresholds.window_s

    # --- before a call (hot path) --------------------------------------------------------------------
    def admit(self) -> bool | None:
        """None: closed, the call goes ahead. True: it goes ahead as a probe. False: refuse it."""
        if self.state is CLOSED:
            return None
        return self._admit_slow(time.time())

    def _admit_slow(self, now: float) -> bool | None:
        with self._lock:
            if self.state is CLOSED:
                return None
            if self.state is OPEN:
                if now < self.reopens_at:
                    return False
                self._transition(HALF_OPEN, now)
            stale = self._probes_in_flight and now - self._probe_started > PROBE_STALE_S
            if self._probes_in_flight and not stale:
                return False
            self._probes_in_flight = 1
            self._probe_started = now
            return True

    def release_probe(self) -> None:
        """A probe admitted but never sent (another rule refused the call)."""
        with self._lock:
            self._probes_in_flight = 0

    # --- after a call ---------------------------------------------------------------------------------
    def record(self, result: str, probe: bool, now: float) -> None:
        """A call this circuit admitted ended with ``result`` (``_outcomes``: ok, failure or ignored)."""
        if probe:
            with self._lock:
                self._record_probe(result, now)
            return
        if self.state is not CLOSED or result == IGNORED:
            return  # late outcomes of calls sent before the circuit opened decide nothing
        failed = result == FAILURE
        window = self.window
        with self._lock:
            window.add(now, failed)
            self.delta_calls += 1
            if failed:
                self.delta_failures += 1
                calls, failures = self.window.totals(now)
                self._open_if_over(calls, failures, now)

    def _record_probe(self, result: str, now: float) -> None:
        self._probes_in_flight = 0
        if self.state is not HALF_OPEN:  # the fleet decided meanwhile
            return
        if result == FAILURE:
            self._open(now)
        elif result == OK:
            self._probe_successes += 1
            if self._probe_successes >= self.thresholds.half_open_probes:
                self._transition(CLOSED, now)

    def fleet_totals(self, calls: int, failures: int) -> None:
        """The fleet's window (every process's outcomes, this one's included): open if it is over."""
        with self._lock:
            if self.state is CLOSED and failures:
                self._open_if_over(calls, failures, time.time())

    def take_deltas(self) -> tuple[int, int]:
        """The outcomes counted since the last call (the fleet worker adds them to the store's window)."""
        with self._lock:
            deltas = (self.delta_calls, self.delta_failures)
            self.delta_calls = self.delta_failures = 0
            return deltas

    def apply_remote(self, state: str, reopens_at: float, changed_at: float) -> None:
        """A transition made elsewhere in the fleet, applied when it is newer than this circuit's last."""
        state = _CANONICAL.get(state, "")
        with self._lock:
            if not state or changed_at <= self.changed_at:
                return
            if state == OPEN:
                self.reopens_at = reopens_at
            self._transition(state, changed_at, remote=True)

    def _open_if_over(self, calls: int, failures: int, now: float) -> None:
        limits = self.thresholds
        if calls >= limits.min_calls and failures / calls >= limits.failure_rate:
            self.last_failure_rate = failures / calls
            self._open(now, f"{failures} of {calls} calls failed in the last {limits.window_s:g} s")

    def _open(self, now: float, why: str = "the probe failed") -> None:
        self.reopens_at = now + self.thresholds.open_s
        self._transition(OPEN, now, why=why)

    def _transition(self, new: str, now: float, *, remote: bool = False, why: str = "") -> None:
        old, self.state = self.state, new
        self.changed_at = now
        self.transitions[new] = self.transitions.get(new, 0) + 1
        self._probes_in_flight = self._probe_successes = 0
        if new == CLOSED:
            self.window.clear()
        _log_transition(self, old, new, why or ("set by another process of the fleet" if remote else ""))
        if self.on_transition is not None and not remote:
            try:
                self.on_transition(self, old, new)
            except Exception:  # the fleet's queue: never lets a transition fail
                logger.debug("llmwatch: circuit transition sink failed", exc_info=True)

    # --- reading ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """``stats()["circuits"]`` and ``health()``: this circuit now."""
        now = time.time()
        with self._lock:
            calls, failures = self.window.totals(now)
            state = self.state
            reopens_at = self.reopens_at
        if state is OPEN and now >= reopens_at:  # the next call is a probe: half-open in all but name
            state = HALF_OPEN
        return {
            "state": state,
            "calls": calls,
            "failures": failures,
            "failure_rate": round(failures / calls, 4) if calls else 0.0,
            "reopens_at": _iso(reopens_at) if state == OPEN else None,
            "opened": self.transitions.get(OPEN, 0),
            "transitions": dict(self.transitions),
            **self.labels,
        }


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat()


def _log_transition(circuit: Circuit, old: str, new: str, why: str) -> None:
    reason = f" ({why})" if why else ""
    if new == OPEN:
        logger.warning(
            "llmwatch: circuit %s opened%s; calls are refused before any request until %s, then probed",
            circuit.key,
            reason,
            _iso(circuit.reopens_at),
        )
    elif new == HALF_OPEN:
        logger.info("llmwatch: circuit %s half-open%s: probing the provider, one call at a time", circuit.key, reason)
    else:
        logger.info("llmwatch: circuit %s closed (was %s)%s: calls go ahead again", circuit.key, old, reason)
