"""The ``gen_ai.client.inference.operation.details`` event: a call's content as an OTel log event.

Why it exists: OTel's GenAI conventions let content go to span attributes, to this event, or both
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY | EVENT_ONLY | SPAN_AND_EVENT``), and
teams that keep spans content-free (cheap, long retention) still want the prompts in their log store.
The event, per the GenAI events conventions: name ``gen_ai.client.inference.operation.details``, no
body, the call's ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.*``,
``gen_ai.response.*``, ``gen_ai.usage.*``, ``error.type``, and the content as *structured* values
(``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions``,
``gen_ai.tool.definitions``: on events they must not be JSON strings). It is emitted in the span's
context, so it carries the span's trace and span ids.

The content is the one rendering ``_messages.content_attributes`` made (the pipeline's content step
calls it once, with a structured policy, and serialises it for the span when the span gets it too).
Emitting costs one ``Logger.emit``: the SDK's batch processor queues the record and exports it off
the caller's thread.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber

from llmwatch import _semconv as sc

if TYPE_CHECKING:
    from opentelemetry._logs import Logger

    from llmwatch._core._call import LLMCall

# Span attributes the event repeats, by prefix: what the call asked for, got and used.
_COPIED_PREFIXES = ("gen_ai.request.", "gen_ai.response.", "gen_ai.usage.")
_COPIED_NAMES = frozenset({sc.GEN_AI_CONVERSATION_ID, sc.SERVER_ADDRESS, sc.SERVER_PORT})


def event_attributes(
    call: LLMCall, attrs: dict[str, Any], content: dict[str, Any], error: str | None
) -> dict[str, Any]:
    """The event's attributes: the call's identity and outcome, then its structured content."""
    event: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: call.handler.operation,
        sc.GEN_AI_PROVIDER_NAME: call.provider,
    }
    started = getattr(call.span, "attributes", None)  # an SDK span's start attributes (request params)
    for source in (started or {}, attrs):
        for key, value in source.items():
            if key.startswith(_COPIED_PREFIXES) or key in _COPIED_NAMES:
                event[key] = value
    if error is not None:
        event[sc.ERROR_TYPE] = error
    event.update(content)
    return event


def emit(logger: Logger, call: LLMCall, attributes: dict[str, Any]) -> None:
    """One event in the span's context (so it carries its trace and span ids)."""
    logger.emit(
        timestamp=time.time_ns(),
        context=trace.set_span_in_context(call.span),
        severity_number=SeverityNumber.INFO,
        event_name=sc.GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS_EVENT,
        attributes=attributes,
    )
