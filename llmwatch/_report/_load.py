"""Reading the JSON Lines span file (``exporter="file"``) into compact call records.

The file can be large (hundreds of thousands of lines, each possibly holding captured prompts), so
each line is parsed, reduced to the few fields the report needs (:class:`CallSpan`) and dropped:
memory grows with the number of calls, not with the size of their content. The file is written by
other processes and may end in a half-written line (a process killed mid-write) or hold junk: such
lines are skipped and counted, never fatal, so the report always says how much it could not read.

A call refused by a budget or kill switch (the ``llmwatch.call.refused`` event) is kept and marked
``refused``: it never reached the provider, so it has no response model, latency or tokens worth
reporting, and the aggregation counts it apart from the calls that were sent.

Rollouts: a call sent in one carries ``llmwatch.rollout.name`` / ``.arm`` (and ``.shadow``); only such
calls have their span id kept (to link scores to them) and their events read for the rollout's
decisions (:mod:`._decisions`), so the thousands of calls outside rollouts cost nothing more. Score
spans (``evaluate {name}``, children of the call they score, :mod:`llmwatch._scores`) are kept as
(parent span id, name, numeric value): the aggregation links them to the rollout calls.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._report._decisions import PROMOTED, ROLLED_BACK, Decision, decision

NONE_LABEL = "(none)"
_DECISION_EVENTS = {sc.LLMWATCH_ROLLOUT_ROLLBACK_EVENT: ROLLED_BACK, sc.LLMWATCH_ROLLOUT_PROMOTE_EVENT: PROMOTED}


@dataclasses.dataclass(frozen=True, slots=True)
class CallSpan:
    """One LLM call (a span carrying ``gen_ai.operation.name``), reduced to what the report uses."""

    start_ns: int
    end_ns: int
    provider: str
    model: str  # the request model, else the response model: the by-model key
    response_model: str | None  # the model that answered (often a dated snapshot); None when none did
    operation: str
    user: str  # NONE_LABEL when the call had no user
    feature: str  # NONE_LABEL when the call had no feature
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    cost_usd: float | None  # None: no cost recorded (unknown model, or a failed call)
    unknown_model: bool
    error: bool  # a sent call that failed; a refused call is never an error
    error_type: str | None
    refused: bool  # refused before any request was sent (budget, kill switch)
    stream: bool
    ttft_ms: float | None
    run: str | None = None  # llmwatch.run.id: the outermost observe span (agent run) it ran in
    agent: str | None = None  # llmwatch.agent.name: the innermost agent it ran in
    rollout: RolloutMark | None = None  # the rollout it was sent in, and its arm; None for most calls

    @property
    def latency_ms(self) -> float:
        """Wall time of the call, from span start to span end."""
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def model_key(self) -> str:
        """``provider/model``, the key of the by-model table."""
        return f"{self.provider}/{self.model}"


@dataclasses.dataclass(frozen=True, slots=True)
class RolloutMark:
    """Where a call sent in a rollout went. One object, made for rollout calls only, so that the
    other calls pay one field, not four (each field of a frozen dataclass costs at every call)."""

    name: str  # llmwatch.rollout.name
    arm: str  # llmwatch.rollout.arm (champion, challenger); NONE_LABEL when the span has none
    shadow: bool  # a shadow call: sent in its arm, its answer discarded
    span_id: str | None  # the scores' link to the call


@dataclasses.dataclass
class LoadResult:
    """The LLM calls read from one or more span files, and what could not be read."""

    spans: list[CallSpan]
    skipped_lines: int  # not JSON, not a span object, or a call span missing its times
    other_spans: int  # valid spans that are not LLM calls (@observe workflows, score spans)
    files: list[str]
    run_names: dict[str, str] = dataclasses.field(default_factory=dict)  # run id -> its root span's name
    # run id -> (start, parent span id) of the span named in run_names: the run's earliest span so far
    run_roots: dict[str, tuple[int, object]] = dataclasses.field(default_factory=dict, repr=False)
    scores: list[ScoreRecord] = dataclasses.field(default_factory=list)  # numeric scores, any call's
    decisions: list[Decision] = dataclasses.field(default_factory=list)  # rollbacks and promotions, as read


@dataclasses.dataclass(frozen=True, slots=True)
class ScoreRecord:
    """One numeric score (``llmwatch.score()``'s ``evaluate {name}`` span) and the span it scores."""

    span_id: str  # the scored call's span id: the score span's parent
    name: str
    value: float


def load_spans(paths: Iterable[str | os.PathLike[str]]) -> LoadResult:
    """Read every span file in ``paths``; raises ``OSError`` if one cannot be opened.

    Only the files given are read (a rotated ``<file>.1`` is read only when listed). Blank lines are
    ignored; other unreadable lines are counted in ``skipped_lines``.
    """
    result = LoadResult(spans=[], skipped_lines=0, other_spans=0, files=[])
    for path in paths:
        result.files.append(os.fspath(path))
        with Path(path).open("rb") as stream:
            for line in stream:
                _load_line(line, result)
    return result


def _load_line(line: bytes, result: LoadResult) -> None:
    if not line.strip():
        return
    try:
        record = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError: junk bytes, or a line cut short mid-write
        result.skipped_lines += 1
        return
    if not isinstance(record, dict) or not isinstance(record.get("attributes"), dict):
        result.skipped_lines += 1
        return
    attrs = record["attributes"]
    if attrs.get(sc.GEN_AI_OPERATION_NAME, sc.OP_INVOKE_AGENT) in sc.AGENT_OPERATIONS:  # no operation, or an agent's
        result.other_spans += 1
        run = _text(attrs.get(sc.LLMWATCH_RUN_ID))
        if run is not None:
            _note_run_span(record, run, result)
        if sc.GEN_AI_EVALUATION_NAME in attrs:
            _note_score(record, attrs, result)
        return
    call = call_from_record(record)
    if call is None:
        result.skipped_lines += 1
        return
    result.spans.append(call)
    if call.rollout is not None:  # the decision events are on calls sent in the rollout
        _note_decisions(record, call, result)


def _note_score(record: Mapping[str, Any], attrs: Mapping[str, Any], result: LoadResult) -> None:
    # A label-only score (good/bad, True) has no value to average: the rollout guards skip it too.
    name = _text(attrs[sc.GEN_AI_EVALUATION_NAME])
    number = _number(attrs.get(sc.GEN_AI_EVALUATION_SCORE_VALUE))
    parent = record.get("parent_span_id")
    if name is not None and number is not None and isinstance(parent, str) and parent:
        result.scores.append(ScoreRecord(parent, name, number))


def _note_decisions(record: Mapping[str, Any], call: CallSpan, result: LoadResult) -> None:
    events = record.get("events")
    if not isinstance(events, list):
        return
    for event in events:
        name = event.get("name") if isinstance(event, dict) else None
        action = _DECISION_EVENTS.get(name) if isinstance(name, str) else None  # a junk name may be unhashable
        if action is None:
            continue
        attrs = event.get("attributes")
        attrs = attrs if isinstance(attrs, dict) else {}
        rollout = _text(attrs.get(sc.LLMWATCH_ROLLOUT_NAME)) or (call.rollout.name if call.rollout else NONE_LABEL)
        when = _timestamp(event.get("time_unix_nano")) or call.end_ns
        result.decisions.append(decision(rollout, action, when, attrs.get(sc.LLMWATCH_ROLLOUT_EVIDENCE)))


def _note_run_span(record: Mapping[str, Any], run: str, result: LoadResult) -> None:
    """Name the run after its root span: the first of its spans to start (every span of a run starts
    inside the root's lifetime); on a tie, the parent of the one kept so far."""
    start = _timestamp(record.get("start_time_unix_nano"))
    if start is None:
        return
    span_id = record.get("span_id")
    kept = result.run_roots.get(run)
    if kept is not None:
        kept_start, kept_parent = kept
        if start > kept_start or (start == kept_start and kept_parent != span_id):
            return
    result.run_roots[run] = (start, record.get("parent_span_id"))
    result.run_names[run] = _text(record.get("name")) or run


def call_from_record(record: Mapping[str, Any]) -> CallSpan | None:
    """The call record for one parsed JSON line, or None when its start/end times are unusable."""
    start, end = _timestamp(record.get("start_time_unix_nano")), _timestamp(record.get("end_time_unix_nano"))
    if start is None or end is None or end < start:
        return None
    attrs: Mapping[str, Any] = record["attributes"]
    status = record.get("status")
    status_code = status.get("code") if isinstance(status, dict) else None
    error_type = _text(attrs.get(sc.ERROR_TYPE))
    cost = _number(attrs.get(sc.LLMWATCH_COST_USD))
    ttft = _number(attrs.get(sc.LLMWATCH_TIME_TO_FIRST_TOKEN_MS))
    request_model = _text(attrs.get(sc.GEN_AI_REQUEST_MODEL))
    response_model = _text(attrs.get(sc.GEN_AI_RESPONSE_MODEL))
    refused = _is_refused(record, attrs)
    rollout = attrs.get(sc.LLMWATCH_ROLLOUT_NAME)
    return CallSpan(
        start_ns=start,
        end_ns=end,
        provider=_text(attrs.get(sc.GEN_AI_PROVIDER_NAME)) or "(unknown)",
        model=request_model or response_model or "(unknown)",
        response_model=response_model,
        operation=_text(attrs.get(sc.GEN_AI_OPERATION_NAME)) or "(unknown)",
        user=_text(attrs.get(sc.LLMWATCH_USER)) or NONE_LABEL,
        feature=_text(attrs.get(sc.LLMWATCH_FEATURE)) or NONE_LABEL,
        input_tokens=_count(attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS)),
        output_tokens=_count(attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)),
        cache_read_tokens=_count(attrs.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
        reasoning_tokens=_count(attrs.get(sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)),
        cost_usd=cost if cost is not None and cost >= 0 else None,
        unknown_model=attrs.get(sc.LLMWATCH_COST_UNKNOWN_MODEL) is True,
        error=not refused and (status_code == "ERROR" or error_type is not None),
        error_type=error_type,
        refused=refused,
        stream=attrs.get(sc.LLMWATCH_STREAM) is True,
        ttft_ms=ttft if ttft is not None and ttft >= 0 else None,
        run=_text(attrs.get(sc.LLMWATCH_RUN_ID)),
        agent=_text(attrs.get(sc.LLMWATCH_AGENT_NAME)),
        rollout=None if rollout is None else _rollout_mark(record, attrs, rollout),
    )


def _rollout_mark(record: Mapping[str, Any], attrs: Mapping[str, Any], name: object) -> RolloutMark | None:
    rollout = _text(name)
    if rollout is None:
        return None
    span_id = record.get("span_id")
    return RolloutMark(
        name=rollout,
        arm=_text(attrs.get(sc.LLMWATCH_ROLLOUT_ARM)) or NONE_LABEL,
        shadow=attrs.get(sc.LLMWATCH_ROLLOUT_SHADOW) is True,
        span_id=span_id if isinstance(span_id, str) and span_id else None,
    )


def _is_refused(record: Mapping[str, Any], attrs: Mapping[str, Any]) -> bool:
    # The refusal event is what llmwatch writes; the attributes are accepted too, so a span whose
    # events were dropped (an attribute-limited exporter) still counts as refused.
    if attrs.get(sc.LLMWATCH_REFUSAL_REASON) is not None or attrs.get(sc.LLMWATCH_BUDGET_FALLBACK) is True:
        return True
    events = record.get("events")
    if not isinstance(events, list):
        return False
    return any(isinstance(event, dict) and event.get("name") == sc.LLMWATCH_REFUSED_EVENT for event in events)


def _timestamp(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text(value: object) -> str | None:
    # Attribute values come from users' data: anything that is not a non-empty string is "absent",
    # except numbers (a numeric user id is still an id).
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: object) -> float | None:
    # The exporter writes non-finite floats as strings ("NaN"): those, like any non-number, are absent.
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _count(value: object) -> int:
    number = _number(value)
    return int(number) if number is not None and number > 0 else 0
