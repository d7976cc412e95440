"""Figures of the report: totals, per-feature / per-user / per-model / per-run groups, and rollouts.

One group's figures (percentiles, refusals counted apart) are :func:`._groups.group_stats`; the
rollouts section (arms side by side, decisions) is :mod:`._rollouts`.

The by-model table groups by the *request* model (what the code asked for, and what a failed or
refused call still has); the response models seen within a group (dated snapshots such as
``gpt-4o-2024-08-06``) are listed inside it, with their call counts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from llmwatch._report._groups import GroupStats, group_by, group_stats
from llmwatch._report._load import CallSpan, LoadResult
from llmwatch._report._rollouts import RolloutStats, build_rollouts

OTHERS_LABEL = "(others)"


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything ``llmwatch report`` shows, computed once from the loaded calls."""

    totals: GroupStats
    by_feature: list[GroupStats]  # by cost, highest first
    by_user: list[GroupStats]  # the top N users by cost, then an OTHERS_LABEL row when more exist
    by_model: list[GroupStats]  # key "provider/request model", by cost, highest first; with snapshots
    by_provider: list[GroupStats]  # by cost, highest first
    users: int  # distinct users, "(none)" counting as one
    other_users: int  # users folded into the OTHERS_LABEL row
    first_start_ns: int | None
    last_end_ns: int | None
    skipped_lines: int = 0
    other_spans: int = 0
    files: list[str] = dataclasses.field(default_factory=list)
    by_run: list[GroupStats] = dataclasses.field(default_factory=list)  # top runs by cost, then (others)
    by_agent: list[GroupStats] = dataclasses.field(default_factory=list)  # by cost, highest first
    runs: int = 0  # distinct runs (calls outside any run not counted)
    rollouts: list[RolloutStats] = dataclasses.field(default_factory=list)  # by name


def build_report(spans: LoadResult | Sequence[CallSpan], top_users: int = 10) -> Report:
    """The report for ``spans``, listing the top ``top_users`` users by cost.

    Given a :class:`LoadResult`, the report also carries its file names, skipped lines and the count
    of spans that are not LLM calls.
    """
    loaded = spans if isinstance(spans, LoadResult) else LoadResult(list(spans), 0, 0, [])
    spans = loaded.spans
    users = group_by(spans, lambda call: call.user)
    ranked_users = sorted(users.items(), key=_by_cost_then_calls)
    top = ranked_users[: max(top_users, 0)]
    rest = ranked_users[len(top) :]
    by_user = [group_stats(key, calls) for key, calls in top]
    if rest:
        by_user.append(group_stats(OTHERS_LABEL, [call for _, calls in rest for call in calls]))
    by_run, runs = _runs(spans, loaded.run_names, top_users)
    in_agents = [call for call in spans if call.agent is not None]
    return Report(
        by_run=by_run,
        runs=runs,
        by_agent=_ranked(group_by(in_agents, lambda call: call.agent or "")),
        totals=group_stats("(all)", spans),
        by_feature=_ranked(group_by(spans, lambda call: call.feature)),
        by_user=by_user,
        by_model=_ranked(group_by(spans, lambda call: call.model_key), snapshots=True),
        by_provider=_ranked(group_by(spans, lambda call: call.provider)),
        users=len(users),
        other_users=len(rest),
        first_start_ns=min((call.start_ns for call in spans), default=None),
        last_end_ns=max((call.end_ns for call in spans), default=None),
        skipped_lines=loaded.skipped_lines,
        other_spans=loaded.other_spans,
        files=list(loaded.files),
        rollouts=build_rollouts(spans, loaded.scores, loaded.decisions),
    )


def _runs(spans: Sequence[CallSpan], names: dict[str, str], top: int) -> tuple[list[GroupStats], int]:
    """The costliest ``top`` runs (keyed "root name · run id"), then one row for the rest."""
    in_runs = group_by([call for call in spans if call.run is not None], lambda call: call.run or "")
    ranked = sorted(in_runs.items(), key=_by_cost_then_calls)
    rows = [group_stats(_run_label(run, names), calls) for run, calls in ranked[: max(top, 0)]]
    rest = [call for _, calls in ranked[max(top, 0) :] for call in calls]
    if rest:
        rows.append(group_stats(OTHERS_LABEL, rest))
    return rows, len(in_runs)


def _run_label(run: str, names: dict[str, str]) -> str:
    name = names.get(run)
    return f"{name} · {run}" if name else run


def _ranked(groups: dict[str, list[CallSpan]], *, snapshots: bool = False) -> list[GroupStats]:
    ranked = sorted(groups.items(), key=_by_cost_then_calls)
    return [group_stats(key, calls, snapshots=snapshots) for key, calls in ranked]


def _by_cost_then_calls(item: tuple[str, list[CallSpan]]) -> tuple[float, int, str]:
    key, calls = item
    cost = math.fsum(call.cost_usd for call in calls if call.cost_usd is not None)
    return (-cost, -len(calls), key)
