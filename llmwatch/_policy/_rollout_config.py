"""``llmwatch.rollout()``'s arguments, checked: a wrong one fails at once, saying how to fix it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmwatch._errors import ConfigurationError
from llmwatch._policy import _rollout_guard as guards
from llmwatch._policy._rollouts import MODES, OnRollback, Rollout, valid_share


def rollout_from_args(
    name: str,
    champion: Mapping[str, Any] | None,
    challenger: Mapping[str, Any],
    share: float,
    mode: str,
    feature: str | None,
    guard: Mapping[str, float] | None,
    min_calls: int,
    alpha: float,
    on_rollback: OnRollback | None,
    auto_promote: bool,
) -> Rollout:
    """Validate ``rollout()``'s arguments (``ConfigurationError`` saying how to fix one)."""
    where = "llmwatch.rollout()"
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"{where}: name must be a non-empty string, got {name!r}")
    for arm, overrides in (("champion", champion or {}), ("challenger", challenger)):
        if not isinstance(overrides, Mapping) or not all(isinstance(key, str) for key in overrides):
            raise ConfigurationError(f"{where}: {arm} must be a dict of request keyword arguments, got {overrides!r}")
    if mode not in MODES:
        raise ConfigurationError(f"{where}: mode must be 'canary' or 'shadow', got {mode!r}")
    if feature is not None and (not isinstance(feature, str) or not feature):
        raise ConfigurationError(f"{where}: feature must be a non-empty string or None (every call), got {feature!r}")
    if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 2:
        raise ConfigurationError(f"{where}: min_calls must be a whole number of calls >= 2, got {min_calls!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        raise ConfigurationError(f"{where}: alpha must be a false-alarm rate in (0, 0.5), e.g. 0.05, got {alpha!r}")
    if on_rollback is not None and not callable(on_rollback):
        raise ConfigurationError(f"{where}: on_rollback must be a callable fn(report) or None, got {on_rollback!r}")
    return Rollout(
        name,
        champion or {},
        challenger,
        valid_share(share),
        mode,
        feature,
        guards.parse_guard(guard),
        min_calls,
        float(alpha),
        on_rollback,
        bool(auto_promote),
    )
