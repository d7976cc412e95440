"""Figures of the report: totals and per-feature / per-user / per-model groups.

Percentiles are exact, by the nearest-rank method: the p-th percentile of n sorted values is the
value at rank ``ceil(p/100 * n)`` (1-based), so it is always a latency that some call really had.
Exact is affordable here: the report reads a local file, so sorting even a few hundred thousand
latencies takes well under a second.

Refused calls (budget, kill switch) never reached the provider: they are counted in ``refused`` and
left out of everything that describes the provider's answers (errors, error rate, latency, time to
first token, streams), which is over the calls that were sent. Their few microseconds would
otherwise pull the latency percentiles down, and their ``BudgetExceeded`` would count as errors.

The by-model table groups by the *request* model (what the code asked for, and what a failed or
refused call still has); the response models seen within a group (dated snapshots such as
``gpt-4o-2024-08-06``) are listed inside it, with their call counts.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Sequence

from llmwatch._report._load import CallSpan, LoadResult

OTHERS_LABEL = "(others)"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One response model seen inside a by-model group, and how many of its calls it answered."""

    model: str
    calls: int
    cost_usd: float


@dataclasses.dataclass(frozen=True)
class GroupStats:
    """Figures for one group of calls (a feature, a user, a model, or all of them)."""

    key: str
    calls: int  # every call, refused ones included
    refused: int  # refused before any request was sent: not in errors, latency or ttft
    errors: int  # sent calls that failed
    cost_usd: float  # sum over the calls that carry a cost
    priced_calls: int  # calls that carry a cost
    unknown_cost_calls: int  # calls whose model has no known price: their cost is not in cost_usd
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    streams: int  # sent streamed calls
    latency_p50_ms: float | None  # over sent calls; None when none was sent
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None  # streams that recorded a first token only; None when there were none
    ttft_p95_ms: float | None
    snapshots: tuple[Snapshot, ...] = ()  # by-model groups only: response models, most calls first

    @property
    def sent(self) -> int:
        """Calls that reached the provider."""
        return self.calls - self.refused

    @property
    def error_rate(self) -> float:
        """Failed calls as a fraction of the calls sent (0.0 when none was sent)."""
        return self.errors / self.sent if self.sent else 0.0

    @property
    def avg_cost_usd(self) -> float | None:
        """Mean cost of the calls that carry a cost; None when none does."""
        return self.cost_usd / self.priced_calls if self.priced_calls else None


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


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def group_stats(key: str, calls: Sequence[CallSpan], *, snapshots: bool = False) -> GroupStats:
    """Aggregate one group of calls; ``snapshots`` lists the response models inside it."""
    sent = [call for call in calls if not call.refused]
    latencies = sorted(call.latency_ms for call in sent)
    ttfts = sorted(call.ttft_ms for call in sent if call.stream and call.ttft_ms is not None)
    costs = [call.cost_usd for call in calls if call.cost_usd is not None]
    return GroupStats(
        key=key,
        calls=len(calls),
        refused=len(calls) - len(sent),
        errors=sum(call.error for call in sent),
        cost_usd=math.fsum(costs),
        priced_calls=len(costs),
        unknown_cost_calls=sum(call.unknown_model for call in calls),
        input_tokens=sum(call.input_tokens for call in calls),
        output_tokens=sum(call.output_tokens for call in calls),
        cache_read_tokens=sum(call.cache_read_tokens for call in calls),
        reasoning_tokens=sum(call.reasoning_tokens for call in calls),
        streams=sum(call.stream for call in sent),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        latency_p99_ms=percentile(latencies, 99),
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p95_ms=percentile(ttfts, 95),
        snapshots=_snapshots(calls) if snapshots else (),
    )


def _snapshots(calls: Sequence[CallSpan]) -> tuple[Snapshot, ...]:
    answered = group_by([call for call in calls if call.response_model is not None], _response_model)
    found = [
        Snapshot(model, len(group), math.fsum(call.cost_usd for call in group if call.cost_usd is not None))
        for model, group in answered.items()
    ]
    return tuple(sorted(found, key=lambda snap: (-snap.calls, snap.model)))


def _response_model(call: CallSpan) -> str:
    return call.response_model or ""


def group_by(calls: Sequence[CallSpan], key: Callable[[CallSpan], str]) -> dict[str, list[CallSpan]]:
    """Calls grouped by ``key``, in first-seen order."""
    groups: dict[str, list[CallSpan]] = defaultdict(list)
    for call in calls:
        groups[key(call)].append(call)
    return groups


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
