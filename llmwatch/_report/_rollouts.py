"""The rollouts section: each rollout's arms side by side, how the challenger compares, and its decisions.

A call sent in a rollout (``llmwatch.rollout()``) carries the rollout's name and its arm
(``champion`` or ``challenger``). Per rollout and arm, the figures are the report's own
(:func:`._groups.group_stats`): errors and error rate over the calls sent, latency percentiles over
the calls sent (span durations, failed calls included, as in every other table), cost per call over
the priced calls. Shadow calls (``llmwatch.rollout.shadow``: sent, their answer discarded) count in
their arm and are also counted apart.

Scores are linked by span: a score span's parent is the call it scores, so a score counts for the
arm of that call; scores of calls outside any rollout (or whose call is in no file read) are left out.

These figures are the whole files', while the evidence of a decision is what the deciding process
had seen when it decided (its own calls, up to that moment; latency of answers only): the two can
differ, and the report shows both (the evidence in ``--json``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Final

from llmwatch._report._decisions import Decision
from llmwatch._report._groups import GroupStats, group_by, group_stats
from llmwatch._report._load import CallSpan, ScoreRecord

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"


@dataclasses.dataclass(frozen=True)
class ScoreMean:
    """The mean of one score name over an arm's scored calls, and how many scores it is over."""

    mean: float
    count: int


@dataclasses.dataclass(frozen=True)
class ArmStats:
    """One arm of a rollout: the report's figures for its calls, its shadow calls, its scores."""

    arm: str
    stats: GroupStats  # key: the arm
    shadow: int  # of stats.calls, the shadow calls
    scores: dict[str, ScoreMean]  # by score name, sorted by name


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The challenger against the champion; None where either arm has no figure to compare."""

    error_rate_difference: float | None  # challenger minus champion, as a fraction (0.05: 5 points more)
    latency_p50_ratio: float | None  # challenger / champion
    latency_p95_ratio: float | None
    cost_per_call_ratio: float | None
    score_differences: dict[str, float]  # challenger mean minus champion mean, names both arms have


@dataclasses.dataclass(frozen=True)
class RolloutStats:
    """One rollout: its arms (champion, challenger, then any other arm the spans name), the comparison
    and its decisions (oldest first)."""

    name: str
    arms: list[ArmStats]
    comparison: Comparison
    decisions: list[Decision]
    first_start_ns: int | None
    last_end_ns: int | None

    @property
    def calls(self) -> int:
        """Every call of the rollout, in any arm."""
        return sum(arm.stats.calls for arm in self.arms)

    @property
    def decision(self) -> Decision | None:
        """The latest decision, or None when the files hold none (running, or stopped by hand)."""
        return self.decisions[-1] if self.decisions else None


def build_rollouts(
    calls: Sequence[CallSpan], scores: Sequence[ScoreRecord], decisions: Sequence[Decision]
) -> list[RolloutStats]:
    """Every rollout named by a call or a decision, by name."""
    in_rollouts = [call for call in calls if call.rollout is not None]
    by_rollout = group_by(in_rollouts, lambda call: call.rollout.name if call.rollout else "")
    arm_scores = _arm_scores(in_rollouts, scores) if scores else {}
    decided: dict[str, list[Decision]] = defaultdict(list)
    for item in decisions:
        decided[item.rollout].append(item)
    return [
        _rollout(name, by_rollout.get(name, []), arm_scores, sorted(decided.get(name, []), key=_decision_time))
        for name in sorted(set(by_rollout) | set(decided))
    ]


def _decision_time(item: Decision) -> int:
    return item.time_ns


def _rollout(
    name: str,
    calls: list[CallSpan],
    arm_scores: dict[tuple[str, str], dict[str, list[float]]],
    decisions: list[Decision],
) -> RolloutStats:
    by_arm = group_by(calls, lambda call: call.rollout.arm if call.rollout else "")
    # Both arms always, so the table keeps its shape when one got no calls (a 0 % share, a rollback).
    names = [CHAMPION, CHALLENGER, *sorted(set(by_arm) - {CHAMPION, CHALLENGER})]
    arms = [_arm(arm, by_arm.get(arm, []), arm_scores.get((name, arm), {})) for arm in names]
    return RolloutStats(
        name=name,
        arms=arms,
        comparison=_compare(arms[0], arms[1]),
        decisions=decisions,
        first_start_ns=min((call.start_ns for call in calls), default=None),
        last_end_ns=max((call.end_ns for call in calls), default=None),
    )


def _arm(arm: str, calls: list[CallSpan], scores: dict[str, list[float]]) -> ArmStats:
    means = {name: ScoreMean(math.fsum(values) / len(values), len(values)) for name, values in sorted(scores.items())}
    shadow = sum(call.rollout is not None and call.rollout.shadow for call in calls)
    return ArmStats(arm=arm, stats=group_stats(arm, calls), shadow=shadow, scores=means)


def _arm_scores(
    calls: Sequence[CallSpan], scores: Sequence[ScoreRecord]
) -> dict[tuple[str, str], dict[str, list[float]]]:
    """(rollout, arm) -> score name -> the values of the scores whose scored span is in that arm."""
    marks = [call.rollout for call in calls if call.rollout is not None and call.rollout.span_id is not None]
    arm_of = {mark.span_id: (mark.name, mark.arm) for mark in marks}
    found: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for score in scores:
        key = arm_of.get(score.span_id)
        if key is not None:
            found[key][score.name].append(score.value)
    return found


def _compare(champion: ArmStats, challenger: ArmStats) -> Comparison:
    old, new = champion.stats, challenger.stats
    return Comparison(
        error_rate_difference=new.error_rate - old.error_rate if old.sent and new.sent else None,
        latency_p50_ratio=_ratio(new.latency_p50_ms, old.latency_p50_ms),
        latency_p95_ratio=_ratio(new.latency_p95_ms, old.latency_p95_ms),
        cost_per_call_ratio=_ratio(new.avg_cost_usd, old.avg_cost_usd),
        score_differences={
            name: challenger.scores[name].mean - mean.mean
            for name, mean in champion.scores.items()
            if name in challenger.scores
        },
    )


def _ratio(new: float | None, old: float | None) -> float | None:
    return new / old if new is not None and old is not None and old > 0 else None
