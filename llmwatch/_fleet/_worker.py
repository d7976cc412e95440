"""The fleet worker: the one thread that talks to the store, so no user request ever waits on it.

Every tick (50 ms) it reports spend and refills the leases of the shares that changed (the budget
marks a share when a call's cost lands on it), writes circuit transitions and reports circuit outcomes
(``_circuits``), drains the kill-switch channel, and every second re-reads every share, the switch hash
and the circuit hash (the polling fallback when a pub/sub message is lost).
A failure marks the store down (the hot path then applies ``store_failure``), is counted and logged
at most once a minute, and the worker reconnects with backoff (0.25 s doubling to 5 s); spend made
meanwhile stays in the shares and is reported when the store is back. At shutdown the unused leases
are returned. A forked child starts its own worker and connection, holding no lease of its parent's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from llmwatch import _forking
from llmwatch._fleet._circuits import CircuitSource, CircuitSync
from llmwatch._fleet._redis import FEATURE, MODEL, RedisStore
from llmwatch._fleet._rollouts import RolloutSource, RolloutSync
from llmwatch._fleet._shares import LEASE_WAITS, Share, SyncRequest, lease_for
from llmwatch._health import HEALTH, Counter

logger = logging.getLogger("llmwatch")

TICK_S: Final = 0.05
FULL_SWEEP_S: Final = 1.0  # every share and the switch hash, at least this often
BACKOFF_START_S: Final = 0.25
BACKOFF_MAX_S: Final = 5.0
_STORE_FAILED: Final = "llmwatch.store.failed"

SwitchSink = Callable[[frozenset[str], frozenset[str]], None]


class Fleet:
    """The shares of this process and the worker syncing them with the store."""

    def __init__(
        self,
        store: RedisStore,
        lease_usd: float | None,
        fail_closed: bool,
        on_switches: SwitchSink,
        circuits: CircuitSource = tuple,
        rollouts: RolloutSource = tuple,
    ) -> None:
        self.store = store
        self.lease_usd = lease_usd
        self.fail_closed = fail_closed
        self.down = False  # read by the hot path: the store is unreachable now
        self.errors = Counter()
        self.last_sync: float | None = None
        self.last_error: str | None = None
        self._on_switches = on_switches
        self.circuits = CircuitSync(circuits)
        self.rollouts = RolloutSync(rollouts)
        self._shares: dict[tuple[str, float], Share] = {}
        self.dirty: set[Share] = set()  # marked by the budget after a call; popped by the worker
        self._pending_switches: list[tuple[str, str, bool]] = []
        self._pending_lock = threading.Lock()
        self._remote: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self._pubsub: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._failures = 0
        self._retry_at = 0.0
        self._last_sweep = 0.0
        self._thread: threading.Thread | None = None
        _forking.after_fork_in_child(self._after_fork)

    # --- called by budgets (on the caller's thread: memory only) -------------------------------------
    def share(self, name: str, window: Any, resets_at: float, limit_pico: int) -> Share:
        """The share of budget window ``name`` ending at ``resets_at``, made on first use."""
        key = (name, resets_at)
        share = self._shares.get(key)
        if share is None:
            share = Share(name, window, resets_at, limit_pico, lease_for(limit_pico, self.lease_usd))
            share = self._shares.setdefault(key, share)
            self.dirty.add(share)
        return share

    def spent(self, share: Share, spent: int) -> None:
        """A call's cost landed on ``share`` (the budget's lock held): sync it, now if its lease is low."""
        self.dirty.add(share)
        if share.low(spent) and not self._wake.is_set():
            self._wake.set()

    def lease_for(self, limit_pico: int) -> int:
        return lease_for(limit_pico, self.lease_usd)

    # --- kill switches --------------------------------------------------------------------------------
    def switch(self, feature: str | None, model: str | None, engaged: bool) -> None:
        """Queue a switch change for the store (written by the worker, within a tick)."""
        with self._pending_lock:
            for kind, name in ((FEATURE, feature), (MODEL, model)):
                if name is not None:
                    self._pending_switches.append((kind, name, engaged))

    def _push_switches(self) -> None:
        with self._pending_lock:
            pending, self._pending_switches = self._pending_switches, []
        for index, (kind, name, engaged) in enumerate(pending):
            try:
                self.store.set_switch(kind, name, engaged)
            except Exception:
                with self._pending_lock:  # not written: keep it (and the rest) for the next try
                    self._pending_switches[:0] = pending[index:]
                raise

    def _refresh_switches(self) -> None:
        features, models = self.store.switches()
        with self._pending_lock:
            pending = list(self._pending_switches)
        for kind, name, engaged in pending:  # written soon: the store does not show them yet
            if kind == FEATURE:
                features = features | {name} if engaged else features - {name}
            else:
                models = models | {name} if engaged else models - {name}
        if (features, models) != self._remote:
            self._remote = (features, models)
            self._on_switches(features, models)

    # --- circuit breakers ---------------------------------------------------------------------------
    def circuit_changed(self, circuit_id: str, state: str, reopens_at: float, changed_at: float) -> None:
        """A circuit of this process changed state: written to the store within a tick."""
        self.circuits.changed(circuit_id, state, reopens_at, changed_at)
        self._wake.set()

    def rollout_changed(self, name: str, state: str, share: float, changed_at: float) -> None:
        """A rollout of this process changed (share, stop, rollback, promotion): written within a tick."""
        self.rollouts.changed(name, state, share, changed_at)
        self._wake.set()

    # --- the worker -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="llmwatch-fleet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            if not self._stop.is_set():
                self.tick()

    def tick(self) -> None:
        """One round of syncing; never raises (failures mark the store down)."""
        now = time.monotonic()
        if self._failures and now < self._retry_at:
            return
        try:
            self._sync_once(now)
        except Exception as exc:
            self._failed(exc)
            return
        if self._failures or self.down:
            logger.info("llmwatch: the store %s is reachable again; sharing budgets and switches", self.store.url)
        self._failures = 0
        self.down = False
        self.last_sync = time.time()

    def _sync_once(self, now: float) -> None:
        self._push_switches()
        self.circuits.push_transitions(self.store)
        self.rollouts.push(self.store)
        sweep = now - self._last_sweep >= FULL_SWEEP_S or self._failures > 0
        if self._drain_channel() or sweep:
            self._refresh_switches()
            self.circuits.refresh(self.store)
            self.rollouts.refresh(self.store)
        self.circuits.report_outcomes(self.store)
        if sweep:  # every share (the marks cleared first: a share made meanwhile is marked again)
            self._last_sweep = now
            self.dirty.clear()
            shares = list(self._shares.values())
        else:
            shares = self._pop_dirty()
        requests = [request for request in (share.request() for share in shares) if request is not None]
        self._apply(requests, self.store.sync(requests))
        if sweep:
            self._forget_finished()

    def _pop_dirty(self) -> list[Share]:
        popped: list[Share] = []
        while True:
            try:
                popped.append(self.dirty.pop())  # set.pop is atomic: a share marked meanwhile stays marked
            except KeyError:
                return popped

    @staticmethod
    def _apply(requests: list[SyncRequest], answers: list[tuple[int, int, int]]) -> None:
        for request, (grant, allocated, spent) in zip(requests, answers, strict=True):
            request.share.settled(request, grant, allocated, spent)

    def _drain_channel(self) -> bool:
        if self._pubsub is None:
            self._pubsub = self.store.subscribe()
            return True  # (re)subscribed: what changed meanwhile is only in the hash
        changed = False
        while self._pubsub.get_message(timeout=0) is not None:
            changed = True
        return changed

    def _forget_finished(self) -> None:
        now = time.time()
        for key, share in list(self._shares.items()):
            if share.resets_at <= now and share.window.spent_pico == share.reported:
                self._shares.pop(key, None)

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self.errors.add()
        self.down = True
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._retry_at = time.monotonic() + min(BACKOFF_START_S * 2 ** (self._failures - 1), BACKOFF_MAX_S)
        self._drop_connection()
        if HEALTH.due(_STORE_FAILED):
            logger.warning(
                "llmwatch: the store %s is unreachable (%s); budgets enforce %s until it is back "
                "(%d store errors so far; logged at most once a minute)",
                self.store.url,
                self.last_error,
                "by refusing shared-budget calls" if self.fail_closed else "from the last known state",
                self.errors.value,
            )

    def _drop_connection(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):  # a dead connection may fail to close: dropped anyway
                pubsub.close()
        self.store.close()

    def _after_fork(self) -> None:
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._pubsub = None
        self.circuits.after_fork()
        self.rollouts.after_fork()
        self.store.forget_connection()
        for share in self._shares.values():
            share.forget_parent()
        self.dirty = set(self._shares.values())
        if self._thread is not None and not self._stop.is_set():
            self.start()

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the worker, report the spend and return the unused leases (within ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        try:
            self._push_switches()
            self.circuits.push_transitions(self.store)
            self.rollouts.push(self.store)
            shares = list(self._shares.values())
            returned = [share.give_back() for share in shares]
            requests = [SyncRequest.report_only(share) for share in shares]
            self._apply(requests, self.store.sync(requests, returned))
        except Exception as exc:
            self.errors.add()
            logger.warning("llmwatch: could not return leases to the store %s at shutdown: %s", self.store.url, exc)
        finally:
            self._drop_connection()

    def state(self) -> dict[str, Any]:
        """``stats()["store"]``."""
        return {
            "url": self.store.url.redacted,
            "state": "down" if self.down else ("connected" if self.last_sync is not None else "connecting"),
            "store_failure": "closed" if self.fail_closed else "open",
            "last_sync": (
                dt.datetime.fromtimestamp(self.last_sync, tz=dt.UTC).isoformat() if self.last_sync is not None else None
            ),
            "errors": self.errors.value,
            "lease_waits": LEASE_WAITS.value,
            "last_error": self.last_error,
            "leases": {share.name: share.state() for share in list(self._shares.values())},
        }
