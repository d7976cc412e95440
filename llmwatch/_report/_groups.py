"""One group's figures (a feature, a user, a model, a rollout's arm, or all calls): :func:`group_stats`.

Percentiles are exact, by the nearest-rank method: the p-th percentile of n sorted values is the
value at rank ``ceil(p/100 * n)`` (1-based), so it is always a latency that some call really had.
Exact is affordable here: the report reads a local file, so sorting even a few hundred thousand
latencies takes well under a second.

Refused calls (budget, kill switch) never reached the provider: they are counted in ``refused`` and
left out of everything that describes the provider's answers (errors, error rate, latency, time to
first token, streams), which is over the calls that were sent. Their few microseconds would
otherwise pull the latency percentiles down, and their ``BudgetExceeded`` would count as errors.

Kept apart from the groupings themselves (``_aggregate``, ``_rollouts``) so that both can use it
without importing each other.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Sequence

from llmwatch._report._load import CallSpan


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
