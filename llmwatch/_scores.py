"""``llmwatch.score``: attach an evaluation or user feedback to a completion, even much later.

The GenAI conventions' ``gen_ai.evaluation.result`` event "SHOULD be parented to the GenAI operation
span being evaluated". A score is therefore, in the completion's trace:

- the ``gen_ai.evaluation.result`` log event, emitted through the OTel Logs API in the completion
  span's context (so it carries that span's trace and span ids), when a LoggerProvider is in use
  (``configure(logger_provider=)``, a global one, or llmwatch's own for content events);
- a short INTERNAL child span ``evaluate {name}`` of the completion span, carrying the same attributes
  and the event as a span event, for backends that read spans only. When the score is given inside
  another span (a feedback endpoint's request), the child span links to it.

Completions are found by response id through a bounded in-memory map filled as LLM spans end (the
most recent ``MAX_REMEMBERED`` ids); an unknown id is reported (logged once, counted), never raised.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind

from llmwatch import _semconv as sc
from llmwatch._core import _runtime
from llmwatch._core._completions import COMPLETIONS, MAX_REMEMBERED
from llmwatch._health import HEALTH, record_internal_error
from llmwatch._policy import _rollouts

logger = logging.getLogger("llmwatch")


def _resolve(target: Any) -> tuple[SpanContext | None, str | None]:
    if isinstance(target, SpanContext):
        return target, None
    response_id = target if isinstance(target, str) else getattr(target, "id", None)
    if not isinstance(response_id, str):
        return None, None
    return COMPLETIONS.find(response_id), response_id


def score(
    target: Any,
    name: str,
    value: float | int | bool | str,
    *,
    label: str | None = None,
    comment: str | None = None,
) -> SpanContext | None:
    """Record an evaluation of a completion; returns the score span's context (None if not recorded).

    ``target`` is the response object, its response id, or a ``SpanContext``. ``value`` is the score
    (a number, or a bool/str that is also used as the label), ``label`` a human-readable verdict
    ("good", "hallucination"), ``comment`` a free-text explanation (captured as given: it is your text).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("llmwatch.score(): name must be a non-empty string")
    try:
        context, response_id = _resolve(target)
        if response_id is not None and _rollouts.ROLLOUTS.active and _is_number(value):
            _rollouts.record_score(response_id, name, float(value))  # the arm it was made in counts it
        if context is None:
            _report_unknown(target, response_id)
            return None
        return _emit(context, response_id, name, value, label, comment)
    except Exception as exc:
        record_internal_error("score", exc)
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _report_unknown(target: Any, response_id: str | None) -> None:
    if HEALTH.first_time("score:unknown-target"):
        logger.warning(
            "llmwatch.score(): no completion known for %r (llmwatch remembers the last %d response ids "
            "of this process); pass the SpanContext instead. Further misses are not logged.",
            response_id if response_id is not None else type(target).__name__,
            MAX_REMEMBERED,
        )
    HEALTH.scores_unmatched.add()


def _emit(
    context: SpanContext,
    response_id: str | None,
    name: str,
    value: float | int | bool | str,
    label: str | None,
    comment: str | None,
) -> SpanContext:
    attrs: dict[str, Any] = {sc.GEN_AI_EVALUATION_NAME: name}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        attrs[sc.GEN_AI_EVALUATION_SCORE_VALUE] = float(value)
    else:
        label = label if label is not None else str(value).lower()
    if label is not None:
        attrs[sc.GEN_AI_EVALUATION_SCORE_LABEL] = label
    if comment is not None:
        attrs[sc.GEN_AI_EVALUATION_EXPLANATION] = comment
    if response_id is not None:
        attrs[sc.GEN_AI_RESPONSE_ID] = response_id
    runtime = _runtime.CURRENT
    current = trace.get_current_span().get_span_context()
    links = [Link(current)] if current.is_valid and current != context else []
    span = runtime.tracer.start_span(
        f"evaluate {name}",
        context=trace.set_span_in_context(NonRecordingSpan(context)),  # under the evaluated span
        kind=SpanKind.INTERNAL,
        attributes=attrs,
        links=links,
    )
    span.add_event(sc.GEN_AI_EVALUATION_RESULT_EVENT, attributes=attrs)
    span.end()
    _emit_log_event(runtime, context, attrs)
    return span.get_span_context()


def _emit_log_event(runtime: _runtime.Runtime, context: SpanContext, attrs: dict[str, Any]) -> None:
    event_logger = runtime.event_logger
    if event_logger is None and not runtime.configured:
        event_logger = _runtime.global_event_logger()
    if event_logger is None:
        return
    from opentelemetry._logs import SeverityNumber

    event_logger.emit(
        timestamp=time.time_ns(),
        context=trace.set_span_in_context(NonRecordingSpan(context)),
        severity_number=SeverityNumber.INFO,
        event_name=sc.GEN_AI_EVALUATION_RESULT_EVENT,
        attributes=attrs,
    )
