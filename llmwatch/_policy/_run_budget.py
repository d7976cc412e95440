"""Per-run budgets (``budget(limit, per="run")``) and the check of ``llmwatch.budget()``'s arguments.

A run is the outermost ``@observe`` span (or framework agent run) around a call: an agent's loop of
model and tool calls. Its spend is the run's rollup (``_attribution.Rollup``), which every priced call
beneath it adds to as it ends, so the check before a call is one comparison of an integer the run
already holds: no window, no table of runs, nothing left behind when the run ends. The next call of a
run that has spent its limit is refused before any I/O (``BudgetExceeded``, scope ``run``); the call
that crosses the limit completes, as with every budget. Calls outside any run are not covered.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from llmwatch._policy._budget import _WINDOWS, EACH, Budget, BudgetExceeded, scope_name

if TYPE_CHECKING:
    from llmwatch._attribution import Attribution

PER_RUN: Final = "run"
_PICO: Final = 1_000_000_000_000
_MAX_WARNED_RUNS: Final = 10_000  # "warn" logs once per run; past this many remembered, start over


class RunBudget(Budget):
    """A ceiling per run, narrowed like any budget by ``user``, ``feature`` and ``model``."""

    def __init__(self, limit_usd: float, user: str | None, feature: str | None, model: str | None, on_exceed: Any):
        super().__init__(limit_usd, PER_RUN, user, feature, model, on_exceed)
        narrowed = scope_name(user=user, feature=feature, model=model)
        self.scope = PER_RUN if narrowed == "global" else f"{PER_RUN},{narrowed}"
        self._last_spent_usd = 0.0  # the latest run checked, for stats() and the budget gauge
        self._warned: set[str] = set()

    def key_for(self, attribution: Attribution, model: str) -> str | None:
        if attribution.run is None:
            return None
        values = (attribution.user, attribution.feature, model)
        for want, have in zip((self.user, self.feature, self.model), values, strict=True):
            if want is not None and (have is None or (want != EACH and want != have)):
                return None
        return self.scope

    def over(self, key: str, now: float, attribution: Attribution) -> bool:
        run = attribution.run
        if run is None:
            return False
        self._last_spent_usd = run.cost_pico / _PICO
        return run.cost_pico >= self._limit_pico

    def add(self, key: str, cost_usd: float, now: float, attribution: Attribution) -> bool:
        """The run's rollup already holds this call's cost (the rollup step runs first)."""
        run = attribution.run
        if run is None:
            return False
        after = run.cost_pico
        before = after - round(cost_usd * _PICO)
        return before < self._limit_pico <= after

    def first_warning(self, key: str, now: float, attribution: Attribution) -> bool:
        run = attribution.run
        run_id = run.run_id if run is not None else None
        if run_id is None or run_id in self._warned:
            return False
        if len(self._warned) >= _MAX_WARNED_RUNS:
            self._warned.clear()
        self._warned.add(run_id)
        return True

    def exceeded(self, key: str, now: float, attribution: Attribution | None = None) -> BudgetExceeded:
        run = attribution.run if attribution is not None else None
        spent = run.cost_pico / _PICO if run is not None else self._last_spent_usd
        return BudgetExceeded(scope=key, window=PER_RUN, limit_usd=self.limit_usd, spent_usd=spent, resets_at=None)

    def state(self, now: float) -> dict[str, dict[str, Any]]:
        return {
            f"{self.scope}/{PER_RUN}": {
                "limit_usd": self.limit_usd,
                "spent_usd": self._last_spent_usd,  # of the latest run checked: runs come and go
                "resets_at": None,
                "window": PER_RUN,
                "on_exceed": self.on_exceed if isinstance(self.on_exceed, str) else "callable",
            }
        }


def budget_from_args(
    limit_usd: float,
    per: str,
    user: str | None,
    feature: str | None,
    model: str | None,
    on_exceed: Any,
) -> Budget:
    """Validate ``llmwatch.budget()``'s arguments (a wrong one raises ``ValueError`` saying how to fix it)."""
    if isinstance(limit_usd, bool) or not isinstance(limit_usd, (int, float)) or not math.isfinite(limit_usd):
        raise ValueError(f"llmwatch.budget(): limit_usd must be a finite number of US dollars, got {limit_usd!r}")
    if limit_usd < 0:
        raise ValueError(f"llmwatch.budget(): limit_usd must be >= 0, got {limit_usd!r}")
    if per not in (*_WINDOWS, PER_RUN):
        choices = ", ".join(map(repr, (*_WINDOWS, PER_RUN)))
        raise ValueError(f"llmwatch.budget(): per must be one of {choices}, got {per!r}")
    for name, value in (("user", user), ("feature", feature), ("model", model)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"llmwatch.budget(): {name} must be a non-empty string or '*', got {value!r}")
    if on_exceed not in ("raise", "warn") and not callable(on_exceed):
        raise ValueError(
            "llmwatch.budget(): on_exceed must be 'raise', 'warn' or a callable(BudgetExceeded) returning a "
            f"fallback response or None, got {on_exceed!r}"
        )
    if per == PER_RUN:
        return RunBudget(float(limit_usd), user, feature, model, on_exceed)
    return Budget(float(limit_usd), per, user, feature, model, on_exceed)  # type: ignore[arg-type]
