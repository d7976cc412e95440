"""Rollouts: a challenger (another model, prompt or setting) for a share of a feature's users, judged live.

``llmwatch.rollout(name, champion={...}, challenger={...}, share=0.05, ...)`` returns a :class:`Rollout`.
For each traced chat-like call in its ``feature`` (any feature when None), before the request is
sent, the rollout picks an arm and merges that arm's request overrides into the call's keyword
arguments (``{"model": "gpt-4o-mini", "temperature": 0.2}``: any keyword the SDK method takes):

- **sticky by user**: a user's arm comes from a stable hash of the rollout's name and the user
  (``llmwatch.attributes(user=...)``), so a user stays in one arm across calls, processes and
  restarts, and raising the share only adds users to the challenger (a hash below 5 % is below 25 %);
- without a user, each call draws at random, unless ``rollout_arm(name)`` already drew in the
  current ``llmwatch.attributes()`` scope (then that scope's calls get the arm the code was told).

After the call, its outcome, latency and cost go to the arm's figures (``_rollout_guard.ArmStats``);
scores given with ``llmwatch.score()`` go to the arm of the call they score. Once both arms have
``min_calls``, every outcome re-checks the guards with a sequential test; a challenger worse beyond a
bound is rolled back (share 0, the ``llmwatch.rollout.rollback`` span event on the call that decided,
the counter, a log line, ``on_rollback(report)``); with ``auto_promote`` a challenger not worse on
every guard is promoted (every call gets its overrides).

Hot path: with no rollout, one global read. With one, a feature comparison, a dict lookup of the
user's cached hash, and a dict merge when an arm has overrides.
"""

from __future__ import annotations

import collections
import contextvars
import hashlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from llmwatch import _attribution
from llmwatch._errors import ConfigurationError
from llmwatch._policy import _rollout_guard as guards
from llmwatch._policy import _windows
from llmwatch._policy._rollout_guard import CHALLENGER, CHAMPION, ArmStats
from llmwatch._policy._sequential import NOT_WORSE, WORSE

logger = logging.getLogger("llmwatch")

RUNNING: Final = "running"
ROLLED_BACK: Final = "rolled_back"
PROMOTED: Final = "promoted"
STOPPED: Final = "stopped"
MODES: Final = ("canary", "shadow")
_MAX_CACHED_USERS: Final = 100_000  # per rollout; past it the hash is computed again (about 1 us)
# The arms ``rollout_arm()`` drew for calls without a user: (the attribution scope they were drawn in,
# name -> arm). They hold for the calls of that scope (``llmwatch.attributes(...)``: a request, say).
_PINNED: contextvars.ContextVar[tuple[object, dict[str, str]] | None] = contextvars.ContextVar(
    "llmwatch_rollout_arms", default=None
)

OnRollback = Callable[[dict[str, Any]], Any]


class Mark(NamedTuple):
    """What a call is in a rollout: its rollout and arm; ``shadow_request``: the challenger's request
    to send in the background (shadow mode, a user of the share); ``shadow``: this call is that one."""

    rollout: Rollout
    arm: str
    shadow_request: dict[str, Any] | None = None
    shadow: bool = False


def unit_of(name: str, user: str) -> float:
    """A stable number in [0, 1) for (rollout, user): the same in every process and release."""
    digest = hashlib.blake2b(f"{name}\x00{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Rollout:
    """One rollout. Returned by ``llmwatch.rollout()``; ``set_share()``, ``stop()``, ``report()``."""

    def __init__(
        self,
        name: str,
        champion: Mapping[str, Any],
        challenger: Mapping[str, Any],
        share: float,
        mode: str,
        feature: str | None,
        guard: dict[str, float],
        min_calls: int,
        alpha: float,
        on_rollback: OnRollback | None,
        auto_promote: bool,
    ) -> None:
        self.name = name
        self.champion = dict(champion)
        self.challenger = dict(challenger)
        self.share = share
        self.mode = mode
        self.feature = feature
        self.guard = guard
        self.min_calls = min_calls
        self.alpha = alpha
        self.on_rollback = on_rollback
        self.auto_promote = auto_promote
        self.state = RUNNING
        self.arms = {CHAMPION: ArmStats(), CHALLENGER: ArmStats()}
        self.decision: dict[str, Any] | None = None  # the rollback's or promotion's report
        self.decided_at: float | None = None
        self.shadow_dropped = 0  # shadow calls not sent: too many in flight
        self.changed_at = 0.0  # time.time() of the last share or state change, here or in the fleet
        self.last_evidence: dict[str, Any] = {}
        self._units: dict[str, float] = {}
        self._lock = threading.Lock()
        self.rules: Any = None  # the registry holding it: stop() asks it

    # --- control ------------------------------------------------------------------------------------
    def set_share(self, share: float) -> None:
        """Change the challenger's share live (0 sends nobody; users already in stay in while it grows).
        With a store, every process of the fleet follows within a second."""
        self.share = valid_share(share)
        self.changed_at = time.time()
        _tell_fleet(self)

    def stop(self) -> None:
        """End the rollout: every call goes out as written again (the figures stay in ``report()``)."""
        with self._lock:
            if self.state == RUNNING:
                self.state = STOPPED
            self.changed_at = time.time()
        _tell_fleet(self)
        if self.rules is not None:
            self.rules.remove(self)

    def apply_remote(self, state: str, share: float, changed_at: float) -> None:
        """A change made elsewhere in the fleet, applied when it is newer than this rollout's last."""
        if state not in (RUNNING, ROLLED_BACK, PROMOTED, STOPPED) or not 0 <= share <= 1:
            return
        with self._lock:
            if changed_at <= self.changed_at:
                return
            self.state, self.share, self.changed_at = state, share, changed_at
        if state in (ROLLED_BACK, PROMOTED):
            logger.warning(
                "llmwatch: rollout %r %s by another process of the fleet", self.name, state.replace("_", " ")
            )
        if state == STOPPED and self.rules is not None:
            self.rules.remove(self)

    # --- before a call (hot path) --------------------------------------------------------------------
    def covers(self, feature: str | None) -> bool:
        return self.feature is None or self.feature == feature

    def arm_for(self, user: str | None) -> str:
        """The arm of this call: the state decides first (rolled back: champion; promoted: challenger)."""
        state = self.state
        if state != RUNNING:
            return CHALLENGER if state == PROMOTED else CHAMPION
        share = self.share
        if share <= 0.0:
            return CHAMPION
        if user is None:
            pinned = _PINNED.get()
            if pinned is not None and pinned[0] is _attribution.current() and self.name in pinned[1]:
                return pinned[1][self.name]
            return CHALLENGER if random.random() < share else CHAMPION
        unit = self._units.get(user)
        if unit is None:
            unit = unit_of(self.name, user)
            if len(self._units) < _MAX_CACHED_USERS:
                self._units[user] = unit
        return CHALLENGER if unit < share else CHAMPION

    def overrides(self, arm: str) -> dict[str, Any]:
        return self.challenger if arm == CHALLENGER else self.champion

    # --- after a call ---------------------------------------------------------------------------------
    def record(self, arm: str, failed: bool, duration_s: float | None, cost_usd: float | None) -> dict[str, Any] | None:
        """One call of ``arm`` ended; returns the report when this outcome rolled back or promoted it."""
        with self._lock:
            self.arms[arm].add_call(failed, duration_s, cost_usd)
            return self._judge()

    def record_score(self, arm: str, name: str, value: float) -> dict[str, Any] | None:
        with self._lock:
            self.arms[arm].add_score(name, value)
            return self._judge()

    def _judge(self) -> dict[str, Any] | None:
        if self.state != RUNNING:
            return None
        challenger, champion = self.arms[CHALLENGER], self.arms[CHAMPION]
        if challenger.calls < self.min_calls or champion.calls < self.min_calls:
            return None
        decisions = guards.decide(challenger, champion, self.guard, self.alpha)
        self.last_evidence = guards.evidence(decisions)
        verdict = guards.verdict(decisions, self.guard)
        if verdict == WORSE:
            self.state, self.share = ROLLED_BACK, 0.0
        elif verdict == NOT_WORSE and self.auto_promote:
            self.state = PROMOTED
        else:
            return None
        self.decided_at = self.changed_at = time.time()
        self.decision = self._report_locked()
        return self.decision

    # --- reading ------------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The arms side by side, the guards' evidence and the decision (``stats()["rollouts"]``)."""
        with self._lock:
            return self._report_locked()

    def _report_locked(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "mode": self.mode,
            "feature": self.feature,
            "share": self.share,
            "min_calls": self.min_calls,
            "alpha": self.alpha,
            "guard": dict(self.guard),
            "arms": {arm: stats.figures() for arm, stats in self.arms.items()},
            "evidence": dict(self.last_evidence),
            "shadow_dropped": self.shadow_dropped,
            "decided_at": self.decided_at,
        }


class Rollouts:
    """Every running rollout. Writers take a lock and publish a new tuple; readers never lock."""

    def __init__(self) -> None:
        self.rollouts: tuple[Rollout, ...] = ()
        self.active = False  # the hot path's one read
        self._ended: dict[str, Rollout] = {}  # stopped ones, for rollout_arm() and the report
        self._lock = threading.Lock()

    def add(self, rollout: Rollout) -> Rollout:
        with self._lock:
            if any(existing.name == rollout.name for existing in self.rollouts):
                raise ConfigurationError(
                    f"llmwatch.rollout(): a rollout named {rollout.name!r} is running; "
                    "stop() it first or pick another name"
                )
            rollout.rules = self
            self._ended.pop(rollout.name, None)
            self.rollouts = (*self.rollouts, rollout)
            self.active = True
        return rollout

    def remove(self, rollout: Rollout) -> None:
        with self._lock:
            self.rollouts = tuple(r for r in self.rollouts if r is not rollout)
            self._ended[rollout.name] = rollout
            self.active = bool(self.rollouts)

    def running(self) -> tuple[Rollout, ...]:
        """The rollouts running here (the fleet worker applies the fleet's changes to them)."""
        return self.rollouts

    def named(self, name: str) -> Rollout | None:
        for rollout in self.rollouts:
            if rollout.name == name:
                return rollout
        return self._ended.get(name)

    def for_feature(self, feature: str | None) -> Rollout | None:
        """The rollout a call of ``feature`` is in: the first that covers it (one per call)."""
        for rollout in self.rollouts:
            if rollout.covers(feature):
                return rollout
        return None

    def reset(self) -> None:
        with self._lock:
            self.rollouts = ()
            self._ended.clear()
            self.active = False

    def state(self) -> dict[str, Any]:
        with self._lock:
            every = [*self.rollouts, *self._ended.values()]
        return {rollout.name: rollout.report() for rollout in every}


ROLLOUTS = Rollouts()


class _ScoredCalls:
    """response id -> (rollout, arm) of the calls made in a rollout, so a later ``score()`` lands on
    its arm. Bounded: the most recent ``limit`` ids."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._map: collections.OrderedDict[str, tuple[Rollout, str]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def remember(self, response_id: str, rollout: Rollout, arm: str) -> None:
        with self._lock:
            self._map[response_id] = (rollout, arm)
            if len(self._map) > self._limit:
                self._map.popitem(last=False)

    def find(self, response_id: str) -> tuple[Rollout, str] | None:
        with self._lock:
            return self._map.get(response_id)

    def clear(self) -> None:
        with self._lock:
            self._map.clear()


SCORED = _ScoredCalls()


def record_score(response_id: str, name: str, value: float) -> None:
    """``llmwatch.score()`` for a response made in a rollout: the score counts for its arm."""
    found = SCORED.find(response_id)
    if found is None:
        return
    rollout, arm = found
    report = rollout.record_score(arm, name, value)
    if report is not None:
        announce(rollout, report)


def pin_arm(name: str) -> str:
    """``llmwatch.rollout_arm(name)``: the arm the current context's calls of this rollout get."""
    rollout = ROLLOUTS.named(name)
    if rollout is None:
        return CHAMPION
    scope = _attribution.current()
    arm = rollout.arm_for(scope.user)
    if scope.user is None and rollout.state == RUNNING:  # drawn at random: the scope's calls agree with it
        found = _PINNED.get()
        pinned = dict(found[1]) if found is not None and found[0] is scope else {}
        pinned[name] = arm
        _PINNED.set((scope, pinned))
    return arm


def _tell_fleet(rollout: Rollout) -> None:
    fleet = _windows.FLEET
    if fleet is not None:
        fleet.rollout_changed(rollout.name, rollout.state, rollout.share, rollout.changed_at)


def announce(rollout: Rollout, report: dict[str, Any]) -> None:
    """A rollback or promotion decided: the fleet told, the log line and the user's callback (never raising)."""
    _tell_fleet(rollout)
    arms = report["arms"]
    if report["state"] == ROLLED_BACK:
        worse = [name for name, item in report["evidence"].items() if item["verdict"] == WORSE]
        logger.warning(
            "llmwatch: rollout %r rolled back (challenger worse on %s): challenger %s vs champion %s; "
            "every call gets the champion now",
            rollout.name,
            ", ".join(worse),
            arms[CHALLENGER],
            arms[CHAMPION],
        )
    else:
        logger.info("llmwatch: rollout %r promoted: the challenger was not worse on any guard", rollout.name)
    if rollout.on_rollback is not None and report["state"] == ROLLED_BACK:
        try:
            rollout.on_rollback(report)
        except Exception:
            logger.warning("llmwatch: the on_rollback callback of rollout %r raised", rollout.name, exc_info=True)


def valid_share(share: float) -> float:
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1 or math.isnan(share):
        raise ConfigurationError(f"llmwatch.rollout(): share must be a fraction in [0, 1], e.g. 0.05, got {share!r}")
    return float(share)
