"""Every exception llmwatch raises to its users, in one place (all are re-exported by ``llmwatch``).

- :class:`ConfigurationError` (a ``ValueError``): a wrong ``configure()`` argument or environment
  variable, raised at ``configure()`` with a message saying how to fix it.
- :class:`BudgetExceeded`: a call refused before any I/O because its budget scope spent its limit.
- :class:`FeatureDisabled`: a call refused before any I/O because a kill switch covers it.
- :class:`CircuitOpen`: a call refused before any I/O because its circuit breaker is open.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


class ConfigurationError(ValueError):
    """A wrong ``configure()`` argument or environment variable; the message says how to fix it."""


class BudgetExceeded(Exception):
    """A call was refused because its budget scope has spent its limit for the current window (or run:
    then ``window`` is ``"run"`` and ``resets_at`` None)."""

    def __init__(
        self, scope: str, window: str, limit_usd: float, spent_usd: float, resets_at: dt.datetime | None
    ) -> None:
        self.scope = scope
        self.window = window
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.resets_at = resets_at
        # The refused call, so an ``on_exceed`` callable can ask a cheaper model the same thing:
        # ``request`` is the keyword arguments of the SDK call (``{"model": ...}`` for ``llm_call``).
        self.provider: str | None = None
        self.model: str | None = None
        self.request: Mapping[str, Any] = {}
        super().__init__(
            f"llmwatch budget exceeded for {scope} ({window}): spent ${spent_usd:.6f} of ${limit_usd:.6f}; "
            + (f"resets at {resets_at.isoformat()}" if resets_at is not None else "a new run starts afresh")
        )


class FeatureDisabled(Exception):
    """A call was refused because a kill switch covers its feature or model."""

    def __init__(self, scope: str, feature: str | None, model: str | None) -> None:
        self.scope = scope
        self.feature = feature
        self.model = model
        super().__init__(f"llmwatch kill switch engaged for {scope}: call refused before any request was sent")


class CircuitOpen(Exception):
    """A call was refused because the circuit breaker covering it is open (its provider has been failing),
    or half-open with its one probe already in flight.

    ``scope`` is the circuit (``provider=openai/model=gpt-4o``), ``state`` ``"open"`` or ``"half_open"``,
    ``reopens_at`` when the next probe may go (UTC). ``request`` holds the refused call's keyword
    arguments, so a ``fallback`` can send the same request to another model or provider."""

    def __init__(
        self,
        scope: str,
        state: str,
        reopens_at: dt.datetime | None,
        provider: str | None,
        model: str | None,
        feature: str | None = None,
        failure_rate: float | None = None,
    ) -> None:
        self.scope = scope
        self.state = state
        self.reopens_at = reopens_at
        self.provider = provider
        self.model = model
        self.feature = feature
        self.failure_rate = failure_rate
        self.request: Mapping[str, Any] = {}
        why = f" after {failure_rate:.0%} of recent calls failed" if failure_rate is not None else ""
        when = (
            "a probe is in flight"
            if state != "open"
            else (f"next probe at {reopens_at.isoformat()}" if reopens_at is not None else "probing soon")
        )
        super().__init__(f"llmwatch circuit {state} for {scope}{why}: call refused before any request was sent; {when}")
