"""One budget: a ceiling over a calendar window, what was spent in each of its scopes' windows.

``Budget`` is what ``llmwatch.budget()`` returns; the rules (``_budget.Rules``) hold them and ask each
one, before a call, whether the call's scope is over its limit, and tell it a finished call's cost.
With a store (``FLEET`` set by ``configure(store=...)``), each window of a calendar budget has a share
of the fleet's budget (``_fleet._shares``) and the check reads that share instead of the local total.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from llmwatch._attribution import Attribution
    from llmwatch._fleet._shares import Share
    from llmwatch._fleet._worker import Fleet

from llmwatch._errors import BudgetExceeded
from llmwatch._policy._switches import EACH

Window = Literal["hour", "day", "month", "run"]
OnExceed = Literal["raise", "warn"] | Callable[["BudgetExceeded"], Any]

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
        self.rules: Any = None  # the rules holding this budget (set by them): remove() asks them

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
        """With a store: give every current window a share of the new fleet (a reconfigured store
        replaces the old one's), and open this budget's own window now, so its first lease is taken
        before a call needs it (per-value budgets open theirs as values show up)."""
        fleet = FLEET
        if fleet is None or self.per not in _WINDOWS:
            return
        with self._lock:
            for key, window in self._windows.items():
                if now < window.resets_at:
                    window.share = fleet.share(f"{key}/{self.per}", window, window.resets_at, self._limit_pico)
            if not self._per_value:
                self._current_window(self.scope, now)

    @property
    def rule(self) -> tuple[str, str]:
        """What identifies this budget: setting the same scope and window again replaces its limit."""
        return self.scope, self.per

    def key_for(self, attribution: Attribution, model: str) -> str | None:
        """The scope this call counts against, or None when the budget does not cover it.

        Straight-line comparisons, no allocation: it runs for every budget before every call."""
        want = self.user
        if want is not None and (attribution.user is None or (want != EACH and want != attribution.user)):
            return None
        want = self.feature
        if want is not None and (attribution.feature is None or (want != EACH and want != attribution.feature)):
            return None
        want = self.model
        if want is not None and want != EACH and want != model:
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
            if window.spent_pico < share.granted and not fleet.down:  # a lease left: the common case
                return False
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
        spent = self.spent_pico(key, now)
        share = window.share if window is not None and now < window.resets_at else None
        if share is not None:  # the fleet's spend as last synced, plus this process's since
            spent = share.fleet_spent + max(window.spent_pico - share.reported, 0)  # type: ignore[union-attr]
        return BudgetExceeded(
            scope=key,
            window=self.per,
            limit_usd=self.limit_usd,
            spent_usd=spent / _PICO,
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
                "per_value": self._per_value,  # one of a "*" budget's scopes (a user's own cap, say)
            }
            for key, window in windows
        }

    def remove(self) -> None:
        """Lift this budget."""
        if self.rules is not None:
            self.rules.remove_budget(self)

    def __repr__(self) -> str:
        return f"<llmwatch budget {self.scope}/{self.per} ${self.limit_usd:g}>"


def scope_name(*, user: str | None, feature: str | None, model: str | None) -> str:
    """``"user=u-1,feature=search"``; ``"global"`` when nothing narrows it."""
    parts = [f"{name}={value}" for name, value in (("user", user), ("feature", feature), ("model", model)) if value]
    return ",".join(parts) or "global"
