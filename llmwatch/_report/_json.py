"""The ``--json`` document: a plain dict with stable keys (documented in docs/report.md).

``rollouts`` (a key added within schema 2: new keys do not bump it) is always present, ``[]`` when
no span was sent in a rollout.
"""

from __future__ import annotations

from typing import Any

from llmwatch._report._aggregate import Report
from llmwatch._report._decisions import WORSE, Decision
from llmwatch._report._groups import GroupStats
from llmwatch._report._rollouts import ArmStats, RolloutStats

# 2: refusals counted apart ("refused", "sent"; errors, error_rate and latency over sent calls);
# by_model grouped by the request model, with its response models in "snapshots".
SCHEMA_VERSION = 2


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data; keys are stable, new ones may be added (``schema_version``)."""
    totals = group_to_dict(report.totals)
    totals.update(
        users=report.users,
        features=len(report.by_feature),
        models=len(report.by_model),
        first_start_unix_nano=report.first_start_ns,
        last_end_unix_nano=report.last_end_ns,
        duration_s=_duration_s(report),
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "file": report.files[0] if report.files else None,
        "files": list(report.files),
        "skipped_lines": report.skipped_lines,
        "other_spans": report.other_spans,
        "totals": totals,
        "by_feature": [group_to_dict(group) for group in report.by_feature],
        "by_user": [group_to_dict(group) for group in report.by_user],
        "other_users": report.other_users,
        "by_provider": [group_to_dict(group) for group in report.by_provider],
        "by_model": [_model_to_dict(group) for group in report.by_model],
        "by_run": [group_to_dict(group) for group in report.by_run],
        "runs": report.runs,
        "by_agent": [group_to_dict(group) for group in report.by_agent],
        "rollouts": [rollout_to_dict(rollout) for rollout in report.rollouts],
    }


def group_to_dict(group: GroupStats) -> dict[str, Any]:
    """One table row."""
    return {
        "key": group.key,
        "calls": group.calls,
        "sent": group.sent,
        "refused": group.refused,
        "errors": group.errors,
        "error_rate": group.error_rate if group.sent else None,  # over sent calls; null when none was
        "cost_usd": group.cost_usd,
        "priced_calls": group.priced_calls,
        "unknown_cost_calls": group.unknown_cost_calls,
        "avg_cost_usd": group.avg_cost_usd,
        "input_tokens": group.input_tokens,
        "output_tokens": group.output_tokens,
        "cache_read_input_tokens": group.cache_read_tokens,
        "reasoning_output_tokens": group.reasoning_tokens,
        "streams": group.streams,
        "latency_ms": {"p50": group.latency_p50_ms, "p95": group.latency_p95_ms, "p99": group.latency_p99_ms},
        "ttft_ms": {"p50": group.ttft_p50_ms, "p95": group.ttft_p95_ms},
    }


def _model_to_dict(group: GroupStats) -> dict[str, Any]:
    # Provider names never hold "/", model names may ("meta-llama/Llama-3-8B"): split on the first.
    provider, _, model = group.key.partition("/")
    snapshots = [{"model": snap.model, "calls": snap.calls, "cost_usd": snap.cost_usd} for snap in group.snapshots]
    return {**group_to_dict(group), "provider": provider, "model": model, "snapshots": snapshots}


def rollout_to_dict(rollout: RolloutStats) -> dict[str, Any]:
    """One rollout: its arms by name, the challenger against the champion, its decisions (oldest first)."""
    compared = rollout.comparison
    latest = rollout.decision
    return {
        "name": rollout.name,
        "calls": rollout.calls,
        "first_start_unix_nano": rollout.first_start_ns,
        "last_end_unix_nano": rollout.last_end_ns,
        "decision": latest.action if latest is not None else None,  # the latest one's
        "arms": {arm.arm: _arm_to_dict(arm) for arm in rollout.arms},
        "challenger_vs_champion": {
            "error_rate_difference": compared.error_rate_difference,
            "latency_p50_ratio": compared.latency_p50_ratio,
            "latency_p95_ratio": compared.latency_p95_ratio,
            "cost_per_call_ratio": compared.cost_per_call_ratio,
            "score_differences": dict(compared.score_differences),
        },
        "decisions": [_decision_to_dict(item) for item in rollout.decisions],
    }


def _arm_to_dict(arm: ArmStats) -> dict[str, Any]:
    scores = {name: {"mean": mean.mean, "count": mean.count} for name, mean in arm.scores.items()}
    return {**group_to_dict(arm.stats), "shadow_calls": arm.shadow, "scores": scores}


def _decision_to_dict(item: Decision) -> dict[str, Any]:
    guards = {
        guard.guard: {
            "verdict": guard.verdict,
            "difference": guard.difference,
            "bound": guard.bound,
            "log_likelihood_ratio": guard.log_likelihood_ratio,
            "threshold": guard.threshold,
        }
        for guard in item.guards
    }
    return {
        "action": item.action,
        "time_unix_nano": item.time_ns,
        "evidence_readable": item.readable,
        "worse": item.with_verdict(WORSE),
        "guards": guards,
        "arms_at_decision": item.arms,  # the deciding process's own figures at that moment
    }


def _duration_s(report: Report) -> float | None:
    if report.first_start_ns is None or report.last_end_ns is None:
        return None
    return (report.last_end_ns - report.first_start_ns) / 1e9
