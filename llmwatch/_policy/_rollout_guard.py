"""A rollout's live comparison of its arms, and the decision to roll back or promote the challenger.

Per arm: the error rate (provider failures, as circuits count them), the latency (log seconds: a
ratio bound on latency is a difference bound on its logarithm), the cost per call, and each score
name. Each guard is one sequential test (``_sequential.compare``), looked at after every call once
both arms have ``min_calls``: valid under continuous monitoring, so equal arms are rolled back at most
``alpha`` of the time however long the rollout runs.

Guards (``rollout(guard={...})``):

- ``error_rate``: the largest tolerated *absolute* increase (0.02: two points more failures);
- ``p95_latency_ratio``: the largest tolerated latency ratio (1.5: half again as slow). Tested on the
  mean of log latency, which for the right-skewed, similarly spread latencies of LLM calls moves with
  the p95; the report shows both arms' p95 as measured;
- ``cost_per_call_ratio``: the largest tolerated ratio of mean cost per call (1.2);
- ``score:<name>``: the largest tolerated *absolute* decrease of that score's mean (``-0.1``; the sign
  may be given either way).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, Final

from llmwatch._errors import ConfigurationError
from llmwatch._policy._sequential import NOT_WORSE, UNDECIDED, WORSE, Decision, Moments, compare

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
ARMS: Final = (CHAMPION, CHALLENGER)
ERROR_RATE: Final = "error_rate"
LATENCY: Final = "p95_latency_ratio"
COST: Final = "cost_per_call_ratio"
SCORE_PREFIX: Final = "score:"
DEFAULT_GUARD: Final = {ERROR_RATE: 0.02, LATENCY: 1.5, COST: 1.2}
_LATENCY_SAMPLES: Final = 2048  # per arm, for the p50/p95 the report shows (the test uses moments)


def parse_guard(guard: Mapping[str, float] | None) -> dict[str, float]:
    """Validated guard bounds (``ConfigurationError`` saying how to fix a wrong one)."""
    if guard is None:
        return dict(DEFAULT_GUARD)
    where = "llmwatch.rollout(): guard"
    if not isinstance(guard, Mapping):
        raise ConfigurationError(f"{where} must be a dict such as {DEFAULT_GUARD}, got {guard!r}")
    parsed: dict[str, float] = {}
    for name, bound in guard.items():
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
            raise ConfigurationError(f"{where}[{name!r}] must be a number, got {bound!r}")
        if name == ERROR_RATE:
            if not 0 <= bound < 1:
                raise ConfigurationError(f"{where}['error_rate'] is an absolute increase in [0, 1), e.g. 0.02")
        elif name in (LATENCY, COST):
            if bound < 1:
                raise ConfigurationError(f"{where}[{name!r}] is a ratio >= 1 (1.5: up to half again), got {bound!r}")
        elif not (isinstance(name, str) and name.startswith(SCORE_PREFIX) and len(name) > len(SCORE_PREFIX)):
            known = ", ".join([ERROR_RATE, LATENCY, COST, "score:<name>"])
            raise ConfigurationError(f"{where}: unknown bound {name!r}; known: {known}")
        parsed[name] = abs(float(bound)) if name.startswith(SCORE_PREFIX) else float(bound)
    return parsed


class ArmStats:
    """One arm's live figures."""

    __slots__ = ("calls", "cost", "errors", "latencies", "log_latency", "scores")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = Moments()  # 1 for a provider failure, 0 for an answer
        self.log_latency = Moments()
        self.cost = Moments()
        self.scores: dict[str, Moments] = {}
        self.latencies: list[float] = []

    def add_call(self, failed: bool, duration_s: float | None, cost_usd: float | None) -> None:
        self.calls += 1
        self.errors.add(1.0 if failed else 0.0)
        if duration_s is not None and duration_s > 0 and not failed:
            self.log_latency.add(math.log(duration_s))
            if len(self.latencies) < _LATENCY_SAMPLES:
                self.latencies.append(duration_s)
            else:  # a reservoir: every answer equally likely to be kept
                index = random.randrange(self.calls)
                if index < _LATENCY_SAMPLES:
                    self.latencies[index] = duration_s
        if cost_usd is not None:
            self.cost.add(cost_usd)

    def add_score(self, name: str, value: float) -> None:
        moments = self.scores.get(name)
        if moments is None:
            moments = self.scores[name] = Moments()
        moments.add(value)

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "calls": self.calls,
            "error_rate": round(self.errors.mean, 6) if self.errors.count else None,
            "p50_s": _quantile(ordered, 0.5),
            "p95_s": _quantile(ordered, 0.95),
            "cost_per_call_usd": self.cost.mean if self.cost.count else None,
            "scores": {name: round(m.mean, 6) for name, m in sorted(self.scores.items())},
        }


def _quantile(ordered: list[float], q: float) -> float | None:
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)], 6) if ordered else None


def decide(challenger: ArmStats, champion: ArmStats, guard: Mapping[str, float], alpha: float) -> dict[str, Decision]:
    """Each guard's decision now (the caller checks ``min_calls`` first)."""
    decisions: dict[str, Decision] = {}
    for name, bound in guard.items():
        if name == ERROR_RATE:
            decisions[name] = compare(challenger.errors, champion.errors, bound=bound, alpha=alpha)
        elif name == LATENCY:
            decisions[name] = compare(challenger.log_latency, champion.log_latency, bound=math.log(bound), alpha=alpha)
        elif name == COST:
            if challenger.cost.count and champion.cost.count:
                decisions[name] = compare(challenger.cost, champion.cost, bound=0.0, scale=bound, alpha=alpha)
        else:
            score = name[len(SCORE_PREFIX) :]
            mine, theirs = challenger.scores.get(score), champion.scores.get(score)
            if mine is not None and theirs is not None:  # a lower score is worse: compare the champion's
                decisions[name] = compare(theirs, mine, bound=bound, alpha=alpha)
    return decisions


def verdict(decisions: Mapping[str, Decision], guard: Mapping[str, float]) -> str:
    """``worse`` if any guard says so; ``not_worse`` when every guard could decide and did so; else undecided."""
    if any(d.verdict == WORSE for d in decisions.values()):
        return WORSE
    if len(decisions) == len(guard) and all(d.verdict == NOT_WORSE for d in decisions.values()):
        return NOT_WORSE
    return UNDECIDED


def evidence(decisions: Mapping[str, Decision]) -> dict[str, Any]:
    return {
        name: {
            "verdict": d.verdict,
            "difference": round(d.difference, 6),
            "bound": round(d.bound, 6),
            "log_likelihood_ratio": round(d.statistic, 4),
            "threshold": round(d.threshold, 4),
        }
        for name, d in decisions.items()
    }
