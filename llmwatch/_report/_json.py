"""The ``--json`` document: a plain dict with stable keys (documented in docs/report.md)."""

from __future__ import annotations

from typing import Any

from llmwatch._report._aggregate import GroupStats, Report

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


def _duration_s(report: Report) -> float | None:
    if report.first_start_ns is None or report.last_end_ns is None:
        return None
    return (report.last_end_ns - report.first_start_ns) / 1e9
