"""A call sent in a rollout, at its end: its figures to its arm, the decision on its span, the score index.

Run by the pipeline before the span ends (a rollback or promotion this call decided is an event on its
span, with the evidence), and after it (the log line and the user's ``on_rollback``, never inside the
span's time). See ``_policy/_rollouts.py``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llmwatch import _semconv as sc
from llmwatch._policy import _rollouts
from llmwatch._policy._outcomes import FAILURE, IGNORED

if TYPE_CHECKING:
    from llmwatch._core._call import LLMCall


def record(call: LLMCall, attrs: dict[str, Any], result: str, duration_s: float) -> dict[str, Any] | None:
    """Count the call for its arm; the report when it decided the rollout (the event is on the span)."""
    assert call.rollout is not None
    rollout, arm = call.rollout.rollout, call.rollout.arm
    if call.response_id is not None:
        _rollouts.SCORED.remember(str(call.response_id), rollout, arm)
    if result == IGNORED:  # a caller error or a cancel says nothing of the arm
        return None
    failed = result == FAILURE
    report: dict[str, Any] | None = rollout.record(
        arm, failed, None if failed else duration_s, attrs.get(sc.LLMWATCH_COST_USD)
    )
    if report is not None:
        name = (
            sc.LLMWATCH_ROLLOUT_ROLLBACK_EVENT
            if report["state"] == _rollouts.ROLLED_BACK
            else sc.LLMWATCH_ROLLOUT_PROMOTE_EVENT
        )
        call.span.add_event(
            name,
            {
                sc.LLMWATCH_ROLLOUT_NAME: rollout.name,
                sc.LLMWATCH_ROLLOUT_EVIDENCE: json.dumps({"arms": report["arms"], "evidence": report["evidence"]}),
            },
        )
    return report


def announce(call: LLMCall, report: dict[str, Any]) -> None:
    assert call.rollout is not None
    _rollouts.announce(call.rollout.rollout, report)
