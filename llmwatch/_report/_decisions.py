"""A rollout's decisions, as read from its span events: rolled back or promoted, when, and on what evidence.

The call that decided a rollout carries a span event (``llmwatch.rollout.rollback`` or
``llmwatch.rollout.promote``) whose ``llmwatch.rollout.evidence`` attribute is a JSON string::

    {"arms": {"champion": {...figures}, "challenger": {...}},
     "evidence": {"error_rate": {"verdict": "worse", "difference": 0.38, "bound": 0.02,
                                 "log_likelihood_ratio": 41.2, "threshold": 3.0}, ...}}

That string comes from another process, possibly another llmwatch release, possibly cut short by an
attribute length limit: anything in it may be missing or of the wrong type. What can be read is
kept (a guard entry that is not an object is skipped; a figure that is not a finite number is None);
a string that is not such JSON at all makes the decision "evidence unreadable", never an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Final

ROLLED_BACK: Final = "rolled_back"
PROMOTED: Final = "promoted"
# The verdicts the live test writes (llmwatch/_policy/_sequential.py); written here as the file
# format they are, so a report reads files from other releases without importing the policy code.
WORSE: Final = "worse"
NOT_WORSE: Final = "not_worse"
UNDECIDED: Final = "undecided"
_MAX_DEPTH: Final = 6  # of the arms' figures kept: they are a few levels deep; deeper is not ours


@dataclasses.dataclass(frozen=True, slots=True)
class GuardVerdict:
    """One guard's test at the moment of the decision (figures None when absent or not numbers)."""

    guard: str  # error_rate, p95_latency_ratio, cost_per_call_ratio, score:<name>
    verdict: str  # worse, not_worse, undecided (or whatever the file says)
    difference: float | None
    bound: float | None
    log_likelihood_ratio: float | None
    threshold: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """A rollback or promotion of a rollout, from the event on the call that decided it."""

    rollout: str
    action: str  # ROLLED_BACK or PROMOTED
    time_ns: int  # the event's time (the deciding call's end when the event has none)
    readable: bool  # False: the evidence was missing or not the JSON described above
    guards: tuple[GuardVerdict, ...] = ()
    arms: dict[str, Any] | None = None  # the arms' figures the deciding process had, as written

    def with_verdict(self, verdict: str) -> list[str]:
        """The guards whose verdict was ``verdict``, in the order the evidence lists them."""
        return [guard.guard for guard in self.guards if guard.verdict == verdict]


def decision(rollout: str, action: str, time_ns: int, evidence: object) -> Decision:
    """The decision of one rollback/promote event, its ``evidence`` attribute read as far as it can be."""
    parsed = _parse(evidence)
    if parsed is None:
        return Decision(rollout, action, time_ns, readable=False)
    guards, arms = parsed
    return Decision(rollout, action, time_ns, readable=True, guards=guards, arms=arms)


def _parse(evidence: object) -> tuple[tuple[GuardVerdict, ...], dict[str, Any] | None] | None:
    if not isinstance(evidence, str):
        return None
    try:
        document = json.loads(evidence)
    except (ValueError, RecursionError):  # not JSON (cut short by a length limit), or absurdly nested
        return None
    if not isinstance(document, dict) or not isinstance(document.get("evidence"), dict):
        return None
    guards = tuple(
        GuardVerdict(
            guard=name,
            verdict=item["verdict"],
            difference=_finite(item.get("difference")),
            bound=_finite(item.get("bound")),
            log_likelihood_ratio=_finite(item.get("log_likelihood_ratio")),
            threshold=_finite(item.get("threshold")),
        )
        for name, item in document["evidence"].items()
        if isinstance(item, dict) and isinstance(item.get("verdict"), str)
    )
    if not guards:  # a decision always rests on some guard: with none readable, nothing is known
        return None
    arms = document.get("arms")
    return guards, _plain(arms, 0) if isinstance(arms, dict) else None


def _finite(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _plain(value: Any, depth: int) -> Any:
    """``value`` with only what strict JSON allows: Python's ``json`` reads ``NaN`` and ``Infinity``,
    which ``--json`` must not print (they become None), and nothing nested past ``_MAX_DEPTH``."""
    if isinstance(value, dict):
        if depth >= _MAX_DEPTH:
            return None
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, depth + 1) for item in value] if depth < _MAX_DEPTH else None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
