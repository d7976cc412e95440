"""What crosses the MCP process boundary: trace context and llmwatch attribution in ``params._meta``.

MCP's SEP-414 puts W3C trace context in a request's ``_meta`` (``traceparent``, ``tracestate``,
``baggage``). The client side writes it with OTel's propagator API (the app's configured propagators),
plus the caller's attribution as W3C baggage entries ``llmwatch.user``, ``llmwatch.feature`` and
``llmwatch.session`` (written by the W3C baggage propagator even when the app's propagators leave
baggage out). The server side reads them back: the trace context becomes the server span's parent,
the entries the attribution of everything the handler does. Anything absent or malformed reads as
nothing: a request is never refused for its ``_meta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import baggage, propagate
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span, set_span_in_context

from llmwatch import _attribution
from llmwatch import _semconv as sc
from llmwatch._attribution import Attribution, open_rollup
from llmwatch._core import _runtime
from llmwatch._health import HEALTH
from llmwatch._instrument._observe import ObservedSpan
from llmwatch._text import error_description

_BAGGAGE = W3CBaggagePropagator()
_BAGGAGE_HEADER = "baggage"
_MAX_VALUE = 256  # longest attribution value taken from a peer (they become span attributes)
_FIELDS = ((sc.BAGGAGE_USER, "user"), (sc.BAGGAGE_FEATURE, "feature"), (sc.BAGGAGE_SESSION, "session"))


def with_attribution(context: otel_context.Context, attribution: Attribution) -> otel_context.Context:
    """``context`` with the attribution's user, feature and session as baggage entries."""
    for key, field in _FIELDS:
        value = getattr(attribution, field)
        if value is not None:
            context = baggage.set_baggage(key, value, context)
    return context


def with_meta_baggage(context: otel_context.Context, meta: Any) -> otel_context.Context:
    """``context`` with the entries of a ``baggage`` the caller put in ``meta`` themselves, so whoever
    injects from the context (us, mcp's dispatcher) keeps them beside ours."""
    theirs = meta.get(_BAGGAGE_HEADER) if isinstance(meta, Mapping) else None
    if not isinstance(theirs, str) or not theirs.strip():
        return context
    return _BAGGAGE.extract({_BAGGAGE_HEADER: theirs}, context=context)


def outgoing_meta(meta: Mapping[str, Any] | None, context: otel_context.Context) -> dict[str, Any]:
    """A copy of the caller's ``meta`` with the trace context and baggage of ``context`` written in
    (the caller's other keys stay; their baggage is in ``context`` already: ``with_meta_baggage``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    if baggage.get_all(context):
        _BAGGAGE.inject(carrier, context=context)  # the entries travel whatever the app's propagators
    merged = dict(meta or {})
    merged.update(carrier)
    return merged


def as_mapping(meta: Any) -> Mapping[str, Any] | None:
    """A ``_meta`` as a mapping: mcp 2.x's is a dict, 1.x's a pydantic model with extra fields."""
    if meta is None or isinstance(meta, Mapping):
        return meta
    dump = getattr(meta, "model_dump", None)
    return dump(by_alias=True, exclude_none=True) if callable(dump) else None


def raw_meta(params: Any) -> dict[str, str]:
    """The string entries of a request's raw ``params._meta`` ({} when absent or not a mapping)."""
    if not isinstance(params, Mapping):
        return {}
    meta = params.get("_meta")
    if not isinstance(meta, Mapping):
        return {}
    return {key: value for key, value in meta.items() if isinstance(key, str) and isinstance(value, str)}


def incoming_context(carrier: Mapping[str, str]) -> otel_context.Context | None:
    """The caller's context (span and baggage) from ``_meta``; None when it carries no valid span."""
    if not carrier:
        return None
    try:
        context = propagate.extract(carrier)
        context = _BAGGAGE.extract(carrier, context=context)
    except (ValueError, TypeError):
        return None
    if not get_current_span(context).get_span_context().is_valid:
        return None
    return context


def caller_fields(carrier: Mapping[str, str]) -> dict[str, str]:
    """The caller's user, feature and session from the ``_meta`` baggage ({} when none)."""
    if _BAGGAGE_HEADER not in carrier:
        return {}
    try:
        entries = baggage.get_all(_BAGGAGE.extract(carrier, context=otel_context.Context()))
    except (ValueError, TypeError):
        return {}
    fields: dict[str, str] = {}
    for key, field in _FIELDS:
        value = entries.get(key)
        if isinstance(value, str) and value:
            fields[field] = value[:_MAX_VALUE]
    return fields


def open_span(
    name: str,
    span_kind: SpanKind,
    attributes: Mapping[str, Any],
    *,
    tool: bool,
    attribution: Attribution,
    parent: otel_context.Context | None = None,
    arguments: Any = None,
) -> ObservedSpan:
    """An MCP span (``{mcp.method.name} {target}``, CLIENT or SERVER) with rollups, as ``observe``'s.

    ``tool``: a ``tools/call`` (llmwatch kind ``tool``; arguments recorded under the content rules)."""
    runtime = _runtime.CURRENT
    attrs: dict[str, Any] = dict(attribution.span_attributes)
    attrs[sc.LLMWATCH_SPAN_KIND] = sc.SPAN_KIND_TOOL if tool else sc.SPAN_KIND_TASK
    attrs.update(attributes)
    content = runtime.content if tool else None
    if content is not None and arguments is not None:
        attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = text = content.json(content.any_value(arguments))
        if runtime.openinference:
            attrs[sc.OI_INPUT_VALUE] = text
            attrs[sc.OI_INPUT_MIME_TYPE] = sc.OI_MIME_JSON
    if runtime.openinference:
        attrs[sc.OI_SPAN_KIND] = sc.OI_KIND_TOOL if tool else sc.OI_KIND_CHAIN
        if tool and sc.GEN_AI_TOOL_NAME in attrs:
            attrs[sc.OI_TOOL_NAME] = attrs[sc.GEN_AI_TOOL_NAME]
    rollup = open_rollup(attribution, attrs)
    span = runtime.tracer.start_span(name, context=parent, kind=span_kind, attributes=attrs)
    HEALTH.spans_started.add()
    inner = attribution.within((*attribution.rollups, rollup), attribution.agent)
    return ObservedSpan(span, inner, rollup, sc.SPAN_KIND_TOOL if tool else sc.SPAN_KIND_TASK, content)


def attach(observed: ObservedSpan, base: otel_context.Context | None = None) -> tuple[Any, Any]:
    """Make ``observed`` current (on ``base``, else the current context) with its attribution as
    baggage too, so any propagator injecting from here carries it (``ObservedSpan.detach`` undoes)."""
    context = set_span_in_context(observed.span, base)
    return (
        otel_context.attach(with_attribution(context, observed.attribution)),
        _attribution.set_current(observed.attribution),
    )


def error_code(exc: BaseException) -> str | None:
    """The JSON-RPC error code of an ``MCPError`` (its ``.error.code``), as text; None otherwise."""
    code = getattr(getattr(exc, "error", None), "code", None)
    return str(code) if isinstance(code, int) else None


def record_error(observed: ObservedSpan, exc: BaseException) -> None:
    """End ``observed`` for a failed request: a JSON-RPC error by its code, anything else by type."""
    code = error_code(exc)
    if code is None:
        observed.end(exc)
        return
    span = observed.span
    span.set_attributes({sc.ERROR_TYPE: code, sc.RPC_RESPONSE_STATUS_CODE: code})
    span.set_status(Status(StatusCode.ERROR, error_description(exc)))
    observed.end()


def result_content(observed: ObservedSpan, result: Any) -> Any:
    """What ``end`` records as the tool result: the result's wire JSON, only when content is on."""
    if observed.content is None or result is None:
        return None
    dump = getattr(result, "model_dump", None)
    return dump(mode="json", by_alias=True, exclude_none=True) if callable(dump) else result


def is_tool_error(result: Any) -> bool:
    """A ``CallToolResult`` with ``isError`` (a tool that failed reports it in the result)."""
    if isinstance(result, Mapping):
        return result.get("isError") is True
    return getattr(result, "is_error", None) is True or getattr(result, "isError", None) is True
