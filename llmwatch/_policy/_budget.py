"""Cost ceilings and the kill switch: in-process rules checked before a call spends anything.

Budgets
-------
``budget(limit_usd, per=..., user=..., feature=..., model=..., on_exceed=...)`` sets a ceiling over a
window that rolls over at UTC calendar boundaries (the hour, midnight, the first of the month), so
``resets_at`` is a moment a person can plan around. A scope field is ``None`` (any value), a value
(only that one), or ``"*"`` (each value separately: ``user="*"`` gives every user their own ceiling).

A call is checked before the provider is asked (no money spent on a refused call): it is refused when
its scope has *already* spent its limit, so the call that crosses the limit completes (DESIGN.md). Its
cost is added when it ends, streams included. Calls in flight together may all pass the check: the
ceiling holds to within the calls already running, which is the best any pre-call check can do.

Hot path: with no budget and no switch, ``check`` is one global read. Otherwise reads take no lock;
only adding a cost does (a short per-budget lock, after the call). Spent totals are integers of
picodollars, so concurrent additions sum exactly whatever their order.

Kill switch
-----------
``kill_switch(feature=..., model=..., enabled=True)`` and ``LLMWATCH_DISABLED_FEATURES`` /
``LLMWATCH_DISABLED_MODELS`` (comma-separated; a trailing ``*`` matches a prefix) refuse calls in
that scope with ``FeatureDisabled`` before any I/O. The environment is read at ``configure()`` and
at each ``kill_switch()`` call (``kill_switch()`` alone re-reads it).
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from llmwatch._attribution import Attribution
    from llmwatch._fleet._shares import Share
    from llmwatch._fleet._worker import Fleet

from llmwatch import _config
from llmwatch._errors import BudgetExceeded as BudgetExceeded  # re-exported: its old home
from llmwatch._errors import FeatureDisabled as FeatureDisabled
from llmwatch._policy._switches import EACH as EACH
from llmwatch._policy._switches import Switches

logger = logging.getLogger("llmwatch")

Window = Literal["hour", "day", "month", "run"]
OnExceed = Literal["raise", "warn"] | Callable[["BudgetExceeded"], Any]

REASON_BUDGET: Final = "budget"
REASON_KILL_SWITCH: Final = "kill_switch"
_PICO: Final = 1_000_000_000_000  # spent totals are int picodollars: exact, order-free sums
_WINDOWS: Final = ("hour", "day", "month")  # calendar windows; "run" is _run_budget's
# Per-value ("*") budgets keep one window per value; past this many, the least-spent are forgotten.
_MAX_KEYS_PER_BUDGET: Final = 10_000


# --- windows ----------------------------------------------------------------------------------------
def window_end(per: str, now: float) -> float:
    """The UTC boundary after ``now`` at which a ``per`` window rolls over (epoch seconds)."""
    if per == "hour":
        return (math.floor(now / 3600) + 1) * 3600.0
    if per == "day":
        return (math.floor(now / 86400) + 1) * 86400.0
    moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


class _Window:
    """One scope's spending in the current window; ``share``: its slice of the fleet's, with a store."""

    __slots__ = ("resets_at", "share", "spent_pico", "warned")

    def __init__(self, resets_at: float) -> None:
        self.resets_at = resets_at
        self.spent_pico = 0
        self.warned = False
        self.share: Share | None = None


# The fleet when a store is configured (set by configure(), None otherwise): shared windows get a share.
FLEET: Fleet | None = None


# --- budgets ----------------------------------------------------------------------------------------
class Budget:
    """One ceiling. Returned by ``llmwatch.budget()``; ``remove()`` lifts it."""

    def __init__(
        self,
        limit_usd: float,
        per: Window,
        user: str | None,
        feature: str | None,
        model: str | None,
        on_exceed: OnExceed,
    ) -> None:
        self.limit_usd = float(limit_usd)
        self.per = per
        self.user = user
        self.feature = feature
        self.model = model
        self.on_exceed = on_exceed
        self.scope = scope_name(user=user, feature=feature, model=model)
        self._limit_pico = round(self.limit_usd * _PICO)
        self._per_value = EACH in (user, feature, model)
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def update(self, limit_usd: float, on_exceed: OnExceed) -> None:
        """A new limit and policy for this scope; what was spent this window stays."""
        self.limit_usd = float(limit_usd)
        self._limit_pico = round(self.limit_usd * _PICO)
        self.on_exceed = on_exceed
        with self._lock:
            windows = list(self._windows.values())
        for window in windows:
            if window.share is not None and FLEET is not None:
                window.share.update_limit(self._limit_pico, FLEET.lease_for(self._limit_pico))
                FLEET.dirty.add(window.share)

    def share_fleet(self, now: float) -> None:
        """With a store: open this budget's share now, so its first lease is taken before a call
        needs it (per-value budgets open theirs as values show up)."""
        if FLEET is not None and not self._per_value and self.per in _WINDOWS:
            with self._lock:
                self._current_window(self.scope, now)

    @property
    def rule(self) -> tuple[str, str]:
        """What identifies this budget: setting the same scope and window again replaces its limit."""
        return self.scope, self.per

    def key_for(self, attribution: Attribution, model: str) -> str | None:
        """The scope this call counts against, or None when the budget does not cover it."""
        values = (attribution.user, attribution.feature, model)
        wanted = (self.user, self.feature, self.model)
        for want, have in zip(wanted, values, strict=True):
            if want is not None and (have is None or (want != EACH and want != have)):
                return None
        if not self._per_value:
            return self.scope
        return scope_name(
            user=attribution.user if self.user is not None else None,
            feature=attribution.feature if self.feature is not None else None,
            model=model if self.model is not None else None,
        )

    def spent_pico(self, key: str, now: float) -> int:
        window = self._windows.get(key)
        if window is None or now >= window.resets_at:
            return 0
        return window.spent_pico

    def over(self, key: str, now: float, attribution: Attribution) -> bool:
        window = self._windows.get(key)
        fleet = FLEET
        if window is None or now >= window.resets_at:  # nothing spent yet in this window
            return self._limit_pico <= 0 or (fleet is not None and fleet.down and fleet.fail_closed)
        share = window.share
        if share is not None and fleet is not None:
            return share.refuses(window.spent_pico, fleet.down, fleet.fail_closed)
        return window.spent_pico >= self._limit_pico

    def add(self, key: str, cost_usd: float, now: float, attribution: Attribution) -> bool:
        """Add a finished call's cost; True when this call took the scope to or over its limit."""
        amount = round(cost_usd * _PICO)
        with self._lock:
            window = self._current_window(key, now)
            before = window.spent_pico
            window.spent_pico = before + amount
            if window.share is not None and FLEET is not None:
                FLEET.spent(window.share, window.spent_pico)  # reported, and the lease refilled if low
            return before < self._limit_pico <= window.spent_pico

    def first_warning(self, key: str, now: float, attribution: Attribution) -> bool:
        """True once per window per scope: "warn" budgets log that often, not per call."""
        with self._lock:
            window = self._current_window(key, now)
            if window.warned:
                return False
            window.warned = True
            return True

    def _current_window(self, key: str, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.resets_at:
            if window is None and len(self._windows) >= _MAX_KEYS_PER_BUDGET:
                self._forget_least_spent(now)
            window = self._windows[key] = _Window(window_end(self.per, now))
            if FLEET is not None and self.per in _WINDOWS:
                window.share = FLEET.share(f"{key}/{self.per}", window, window.resets_at, self._limit_pico)
        return window

    def _forget_least_spent(self, now: float) -> None:
        stale = [k for k, w in self._windows.items() if now >= w.resets_at]
        for key in stale or sorted(self._windows, key=lambda k: self._windows[k].spent_pico)[:1]:
            del self._windows[key]

    def exceeded(self, key: str, now: float, attribution: Attribution | None = None) -> BudgetExceeded:
        window = self._windows.get(key)
        resets_at = window.resets_at if window is not None else window_end(self.per, now)
        return BudgetExceeded(
            scope=key,
            window=self.per,
            limit_usd=self.limit_usd,
            spent_usd=self.spent_pico(key, now) / _PICO,
            resets_at=dt.datetime.fromtimestamp(resets_at, tz=dt.UTC),
        )

    def state(self, now: float) -> dict[str, dict[str, Any]]:
        """``stats()["budgets"]`` entries: ``"{scope}/{per}"`` -> limit, spent, resets_at."""
        with self._lock:
            windows = list(self._windows.items())
        if not windows and not self._per_value:
            windows = [(self.scope, _Window(window_end(self.per, now)))]
        return {
            f"{key}/{self.per}": {
                "limit_usd": self.limit_usd,
                "spent_usd": self.spent_pico(key, now) / _PICO,
                "resets_at": dt.datetime.fromtimestamp(
                    window.resets_at if now < window.resets_at else window_end(self.per, now), tz=dt.UTC
                ).isoformat(),
                "window": self.per,
                "on_exceed": self.on_exceed if isinstance(self.on_exceed, str) else "callable",
            }
            for key, window in windows
        }

    def remove(self) -> None:
        """Lift this budget."""
        RULES.remove_budget(self)

    def __repr__(self) -> str:
        return f"<llmwatch budget {self.scope}/{self.per} ${self.limit_usd:g}>"


def scope_name(*, user: str | None, feature: str | None, model: str | None) -> str:
    """``"user=u-1,feature=search"``; ``"global"`` when nothing narrows it."""
    parts = [f"{name}={value}" for name, value in (("user", user), ("feature", feature), ("model", model)) if value]
    return ",".join(parts) or "global"


# --- the rules the hot path reads --------------------------------------------------------------------
class Refusal:
    """Why a call may not go ahead as asked, and what the caller's policy says to do."""

    __slots__ = ("error", "on_exceed", "reason", "scope")

    def __init__(self, reason: str, scope: str, error: Exception, on_exceed: OnExceed) -> None:
        self.reason = reason
        self.scope = scope
        self.error = error
        self.on_exceed = on_exceed


class Verdict:
    """What the rules say about one call, decided before it is sent.

    ``refusal``: the call may not go ahead as asked (None: it may). ``budget_keys``: the budgets (and
    scope keys) its cost counts against when it ends. ``warned``: a "warn" budget it is over."""

    __slots__ = ("budget_keys", "refusal", "warned")

    def __init__(self, refusal: Refusal | None, budget_keys: tuple[tuple[Budget, str], ...], warned: bool) -> None:
        self.refusal = refusal
        self.budget_keys = budget_keys
        self.warned = warned


class Rules:
    """All budgets and switches. Writers take a lock and publish new tuples; readers never lock."""

    def __init__(self) -> None:
        self.budgets: tuple[Budget, ...] = ()
        self.switches = Switches()
        self.active = False  # the hot path's one read when nothing is set
        self._code_features: set[str] = set()
        self._code_models: set[str] = set()
        self._lifted_features: set[str] = set()
        self._lifted_models: set[str] = set()
        # Engaged fleet-wide (the store's switch hash, with a store): replaced whole by the fleet worker.
        self._fleet_features: frozenset[str] = frozenset()
        self._fleet_models: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    # --- writers -------------------------------------------------------------------------------------
    def set_budget(self, budget: Budget) -> Budget:
        """Add ``budget``, or update the one already set for its scope and window and return that.

        One scope and window is one budget with one handle: ``budget(150, feature="search")`` after
        ``b = budget(100, feature="search")`` raises ``b``'s limit (keeping what was spent), so
        ``b.remove()`` lifts the ceiling, whichever handle the caller kept.
        """
        with self._lock:
            for existing in self.budgets:
                if existing.rule == budget.rule:
                    existing.update(budget.limit_usd, budget.on_exceed)
                    self._publish()
                    return existing
            self.budgets = (*self.budgets, budget)
            self._publish()
        budget.share_fleet(time.time())
        return budget

    def remove_budget(self, budget: Budget) -> None:
        """Lift the budget of ``budget``'s scope and window (a no-op when it is not set)."""
        with self._lock:
            self.budgets = tuple(b for b in self.budgets if b.rule != budget.rule)
            self._publish()

    def switch(self, feature: str | None, model: str | None, enabled: bool, shared: bool = False) -> None:
        """Engage or lift a switch set in code. ``shared`` (a store is configured): the store holds it
        for the fleet, so it is applied here at once as a fleet switch the worker then writes, and a
        ``switch clear`` from anywhere lifts it here too."""
        with self._lock:
            if shared:
                self._fleet_features = _toggled(self._fleet_features, feature, enabled)
                self._fleet_models = _toggled(self._fleet_models, model, enabled)
            for value, engaged, lifted in (
                (feature, self._code_features, self._lifted_features),
                (model, self._code_models, self._lifted_models),
            ):
                if value is None:
                    continue
                if enabled:
                    if not shared:  # shared: the fleet set holds it (and a clear from anywhere lifts it)
                        engaged.add(value)
                    lifted.discard(value)
                else:
                    engaged.discard(value)
                    lifted.add(value)  # also lifts the same name set by the environment
            self._reload_locked(None)

    def set_fleet_switches(self, features: frozenset[str], models: frozenset[str]) -> None:
        """The fleet's switches as the store has them now (the fleet worker)."""
        with self._lock:
            self._fleet_features, self._fleet_models = features, models
            self._reload_locked(None)

    def reload_env(self, environ: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self._reload_locked(environ)

    def _reload_locked(self, environ: Mapping[str, str] | None) -> None:
        # LLMWATCH_DISABLED_FEATURES / _MODELS (None: os.environ)
        features = (_config.env("disabled_features", environ) - self._lifted_features) | self._code_features
        models = (_config.env("disabled_models", environ) - self._lifted_models) | self._code_models
        features, models = features | self._fleet_features, models | self._fleet_models
        self.switches = Switches(features, models)
        self._publish()

    def _publish(self) -> None:
        self.active = bool(self.budgets) or bool(self.switches)

    def reset(self) -> None:
        """Forget every budget and switch (tests)."""
        with self._lock:
            self.budgets = ()
            self._code_features.clear()
            self._code_models.clear()
            self._lifted_features.clear()
            self._lifted_models.clear()
            self._fleet_features = self._fleet_models = frozenset()
            self.switches = Switches()
            self._publish()

    # --- readers (hot path) --------------------------------------------------------------------------
    def check(self, attribution: Attribution, provider: str, model: str, request: Mapping[str, Any]) -> Verdict | None:
        """Before the provider call: what the rules say about it; None when no rule covers it.

        A value, never a change to the call: the lifecycle applies it (refuse, mark, remember which
        budgets the call's cost will count against)."""
        feature = attribution.feature
        switches = self.switches
        if switches:
            scope = switches.refusal_scope(feature, model)
            if scope is not None:
                switched = Refusal(REASON_KILL_SWITCH, scope, FeatureDisabled(scope, feature, model), "raise")
                return Verdict(switched, (), False)
        budgets = self.budgets
        if not budgets:
            return None
        now = time.time()
        matched: list[tuple[Budget, str]] = []
        refusal: Refusal | None = None
        warned = False
        for budget in budgets:
            key = budget.key_for(attribution, model)
            if key is None:
                continue
            matched.append((budget, key))
            if refusal is None and budget.over(key, now, attribution):
                if budget.on_exceed == "warn":
                    warned = True
                    _warn_once(budget, key, now, attribution)
                    continue
                exceeded = budget.exceeded(key, now, attribution)
                exceeded.provider, exceeded.model, exceeded.request = provider, model, request
                refusal = Refusal(REASON_BUDGET, key, exceeded, budget.on_exceed)
        if not matched:
            return None
        return Verdict(refusal, tuple(matched), warned)

    def state(self) -> dict[str, Any]:
        now = time.time()
        result: dict[str, Any] = {}
        for budget in self.budgets:
            result.update(budget.state(now))
        return result


RULES = Rules()
RULES.reload_env()  # switches set in the environment hold from import on, even before configure()


# --- after the call ---------------------------------------------------------------------------------
def charge(budget_keys: Iterable[tuple[Budget, str]], cost_usd: float, attribution: Attribution) -> bool:
    """Count a finished call's cost against the budgets it was checked against; True when that took
    one of them to its limit."""
    now = time.time()
    crossed = False
    for budget, key in budget_keys:
        crossed = budget.add(key, cost_usd, now, attribution) or crossed
    return crossed


def _toggled(names: frozenset[str], name: str | None, engaged: bool) -> frozenset[str]:
    if name is None:
        return names
    return names | {name} if engaged else names - {name}


def _warn_once(budget: Budget, key: str, now: float, attribution: Attribution) -> None:
    if budget.first_warning(key, now, attribution):
        logger.warning(
            "%s (on_exceed='warn': calls go ahead; logged once per %s)",
            budget.exceeded(key, now, attribution),
            budget.per,
        )
