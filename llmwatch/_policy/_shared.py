"""The fleet wired into the rules: started by ``configure(store=...)``, stopped by ``shutdown()``.

Budgets read ``_windows.FLEET`` (their windows get shares of the fleet's budget); the fleet worker
hands the store's kill switches to ``RULES`` and syncs every circuit breaker's circuits;
``kill_switch()`` in code goes to the store through the worker. See ``_fleet`` and docs/fleet.md.
"""

from __future__ import annotations

import time
from typing import Any

from llmwatch._config import Settings
from llmwatch._fleet._redis import RedisStore
from llmwatch._fleet._worker import Fleet
from llmwatch._policy import _budget, _rollouts, _windows


def prepare(settings: Settings) -> Fleet | None:
    """The fleet for ``settings``, not started: raises ``ConfigurationError`` (redis-py missing)
    before anything is swapped. None without a store."""
    if settings.store is None:
        return None
    store = RedisStore(settings.store, settings.service_name)
    rules = _budget.RULES
    fail_closed = settings.store_failure == "closed"
    rollouts = _rollouts.ROLLOUTS.running
    return Fleet(store, settings.lease_usd, fail_closed, rules.set_fleet_switches, rules.all_circuits, rollouts)


def start(fleet: Fleet | None) -> None:
    """Make ``fleet`` the one budgets share through (None: budgets per process again)."""
    _windows.FLEET = fleet
    if fleet is None:
        _budget.RULES.set_fleet_switches(frozenset(), frozenset())
        return
    now = time.time()
    for budget in _budget.RULES.budgets:
        budget.share_fleet(now)
    fleet.start()


def stop(timeout_s: float) -> None:
    """Stop the fleet worker, returning unused leases; budgets are per process afterwards."""
    fleet, _windows.FLEET = _windows.FLEET, None
    if fleet is not None:
        fleet.shutdown(timeout_s)
        _budget.RULES.set_fleet_switches(frozenset(), frozenset())


def switch(feature: str | None, model: str | None, enabled: bool) -> None:
    """``kill_switch()``: fleet-wide with a store (applied here at once, written by the worker)."""
    fleet = _windows.FLEET
    _budget.RULES.switch(feature, model, enabled, shared=fleet is not None)
    if fleet is not None:
        fleet.switch(feature, model, enabled)


def state() -> dict[str, Any] | None:
    """``stats()["store"]``: None without a store."""
    fleet = _windows.FLEET
    return fleet.state() if fleet is not None else None


def last_sync() -> float | None:
    """When the fleet worker last synced with the store (``time.time()``); None without a store or sync."""
    fleet = _windows.FLEET
    return fleet.last_sync if fleet is not None else None
