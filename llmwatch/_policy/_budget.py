"""Cost ceilings and the kill switch: the rules checked before a call spends anything.

Here: the rules (``Rules``, ``RULES``) and what a check returns; one budget and its windows are
``_windows.Budget``, the switch sets ``_switches``; with a store, both are shared by the fleet
(``_shared``, ``_fleet``), the check still reading memory only.

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

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from llmwatch._attribution import Attribution

from llmwatch import _config, _forking
from llmwatch._errors import BudgetExceeded as BudgetExceeded  # re-exported: its old home
from llmwatch._errors import FeatureDisabled as FeatureDisabled
from llmwatch._policy import _windows
from llmwatch._policy._breakers import Admission, CircuitBreaker, Fallback, Refused, check_circuits
from llmwatch._policy._circuit import Circuit
from llmwatch._policy._switches import EACH as EACH
from llmwatch._policy._switches import Switches
from llmwatch._policy._windows import _WINDOWS as _WINDOWS
from llmwatch._policy._windows import Budget as Budget
from llmwatch._policy._windows import OnExceed as OnExceed
from llmwatch._policy._windows import Window as Window
from llmwatch._policy._windows import scope_name as scope_name
from llmwatch._policy._windows import window_end as window_end

logger = logging.getLogger("llmwatch")

REASON_BUDGET: Final = "budget"
REASON_KILL_SWITCH: Final = "kill_switch"
REASON_CIRCUIT: Final = "circuit_open"


# --- the rules the hot path reads --------------------------------------------------------------------
class Refusal:
    """Why a call may not go ahead as asked, and what the caller's policy says to do."""

    __slots__ = ("error", "on_exceed", "reason", "scope")

    def __init__(self, reason: str, scope: str, error: Exception, on_exceed: OnExceed | Fallback) -> None:
        self.reason = reason
        self.scope = scope
        self.error = error
        self.on_exceed = on_exceed


class Verdict:
    """What the rules say about one call, decided before it is sent.

    ``refusal``: the call may not go ahead as asked (None: it may). ``budget_keys``: the budgets (and
    scope keys) its cost counts against when it ends. ``warned``: a "warn" budget it is over.
    ``admission``: the circuits it goes through, told its outcome when it ends."""

    __slots__ = ("admission", "budget_keys", "refusal", "warned")

    def __init__(
        self,
        refusal: Refusal | None,
        budget_keys: Sequence[tuple[Budget, str]],
        warned: bool,
        admission: Admission | None = None,
    ) -> None:
        self.refusal = refusal
        self.budget_keys = budget_keys
        self.warned = warned
        self.admission = admission


class Rules:
    """All budgets, switches and circuit breakers. Writers take a lock and publish new tuples; readers
    never lock."""

    def __init__(self) -> None:
        self.budgets: tuple[Budget, ...] = ()
        self.breakers: tuple[CircuitBreaker, ...] = ()
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
            budget.rules = self
            self._publish()
        budget.share_fleet(time.time())
        return budget

    def set_breaker(self, breaker: CircuitBreaker) -> CircuitBreaker:
        """Add ``breaker``, or update the one already set for its scope (keeping its circuits' state)."""
        with self._lock:
            for existing in self.breakers:
                if existing.rule == breaker.rule:
                    existing.update(breaker.thresholds, breaker.fallback)
                    return existing
            breaker.rules = self
            breaker.on_transition = self._circuit_changed
            self.breakers = (*self.breakers, breaker)
            self._publish()
        return breaker

    @staticmethod
    def _circuit_changed(circuit: Circuit, old: str, new: str) -> None:
        """A circuit's transition made here: with a store, the fleet is told (written by its worker)."""
        fleet = _windows.FLEET
        if fleet is not None:
            fleet.circuit_changed(circuit.fleet_id, new, circuit.reopens_at, circuit.changed_at)

    def all_circuits(self) -> list[Circuit]:
        """Every circuit of every breaker (the fleet worker syncs them)."""
        return [circuit for breaker in self.breakers for circuit in breaker.circuits()]

    def remove_breaker(self, breaker: CircuitBreaker) -> None:
        with self._lock:
            self.breakers = tuple(b for b in self.breakers if b.rule != breaker.rule)
            self._publish()

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
        self.active = bool(self.budgets) or bool(self.switches) or bool(self.breakers)

    def reset(self) -> None:
        """Forget every budget and switch (tests)."""
        with self._lock:
            self.budgets = ()
            self.breakers = ()
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
        if switches.engaged:
            scope = switches.refusal_scope(feature, model)
            if scope is not None:
                switched = Refusal(REASON_KILL_SWITCH, scope, FeatureDisabled(scope, feature, model), "raise")
                return Verdict(switched, (), False)
        verdict = self._check_budgets(attribution, provider, model, request) if self.budgets else None
        breakers = self.breakers
        if not breakers or (verdict is not None and verdict.refusal is not None):
            return verdict
        admission = check_circuits(breakers, provider, model, feature)
        if admission is None:
            return verdict
        if isinstance(admission, Refused):
            breaker, circuit = admission.breaker, admission.circuit
            refused = breaker.refusal(circuit, provider, model, feature)
            refused.request = request
            return Verdict(Refusal(REASON_CIRCUIT, circuit.key, refused, breaker.fallback or "raise"), (), False)
        if verdict is None:
            return Verdict(None, (), False, admission)
        verdict.admission = admission
        return verdict

    def _check_budgets(
        self, attribution: Attribution, provider: str, model: str, request: Mapping[str, Any]
    ) -> Verdict | None:
        now = time.time()
        matched: list[tuple[Budget, str]] = []
        refusal: Refusal | None = None
        warned = False
        for budget in self.budgets:
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
        return Verdict(refusal, matched, warned)  # the list, owned by this verdict from here

    def circuits_state(self) -> dict[str, Any]:
        """``stats()["circuits"]``: every circuit of every breaker, by its scope."""
        result: dict[str, Any] = {}
        for breaker in self.breakers:
            result.update(breaker.state())
        return result

    def state(self) -> dict[str, Any]:
        now = time.time()
        result: dict[str, Any] = {}
        for budget in self.budgets:
            result.update(budget.state(now))
        return result


RULES = Rules()
RULES.reload_env()  # switches set in the environment hold from import on, even before configure()


def _breakers_after_fork() -> None:
    for breaker in RULES.breakers:
        breaker.after_fork()


_forking.after_fork_in_child(_breakers_after_fork)


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
