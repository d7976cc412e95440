"""MCP client side: ``ClientSession.call_tool``, ``list_tools`` and ``read_resource`` as CLIENT spans.

Each call is a ``{mcp.method.name} {target}`` span (``tools/call get_weather``, ``tools/list``,
``resources/read``); a ``tools/call`` is also a GenAI ``execute_tool`` span (``gen_ai.tool.name``;
arguments and result under the content rules). The span is current (OTel context, llmwatch
attribution, and the attribution as baggage) while the SDK sends the request, and the request's
``params._meta`` gets the trace context and the attribution (``_mcp_context.outgoing_meta``) through
the method's own ``meta=`` / ``params=`` argument: the tool's arguments are never touched.

Inside a tool span the app already opened (``@observe(kind="tool")``, a framework bridge's), no second
span: the MCP attributes go on that one, as the conventions ask. mcp 2.x records its own transport
span (``MCP send tools/call ...``) beneath ours when the global tracer provider records.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmwatch import _attribution
from llmwatch import _semconv as sc
from llmwatch._health import record_internal_error
from llmwatch._instrument import _mcp_context as meta_io
from llmwatch._instrument._observe import ObservedSpan
from llmwatch._text import clean

# method -> (MCP method name, where the request's _meta goes: "meta" keyword or "params" model)
METHODS: dict[str, tuple[str, str]] = {
    "call_tool": (sc.MCP_TOOLS_CALL, "meta"),
    "list_tools": (sc.MCP_TOOLS_LIST, "params"),
    "read_resource": (sc.MCP_RESOURCES_READ, "meta"),
}


class _Call:
    """One client request in flight: its span (or the app's tool span) and the kwargs to send."""

    __slots__ = ("kwargs", "observed", "tokens")

    def __init__(self, kwargs: dict[str, Any], observed: ObservedSpan | None, tokens: Any) -> None:
        self.kwargs = kwargs
        self.observed = observed
        self.tokens = tokens


def wrap(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``original`` (an async ``ClientSession`` method) traced, with ``_meta`` injected."""
    method, carrier = METHODS[name]
    try:
        signature: inspect.Signature | None = inspect.signature(original)
    except (TypeError, ValueError):
        signature = None
    if signature is None or carrier not in signature.parameters:
        carrier = ""  # this SDK version takes no _meta here: traced, nothing injected

    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = _start(self, method, carrier, signature, args, kwargs)
        if call is None:
            return await original(self, *args, **kwargs)
        try:
            result = await original(self, *args, **call.kwargs)
        except BaseException as exc:
            _finish(call, exc, None)
            raise
        _finish(call, None, result)
        return result

    wrapper.__llmwatch_original__ = original  # type: ignore[attr-defined]
    return wrapper


def _start(
    session: Any, method: str, carrier: str, signature: inspect.Signature | None, args: Any, kwargs: dict[str, Any]
) -> _Call | None:
    try:
        bound = _arguments(signature, session, args, kwargs)
        attrs: dict[str, Any] = {sc.MCP_METHOD_NAME: method}
        version = getattr(session, "protocol_version", None)
        if isinstance(version, str):
            attrs[sc.MCP_PROTOCOL_VERSION] = version
        target = None
        tool = method == sc.MCP_TOOLS_CALL
        if tool and isinstance(bound.get("name"), str):
            target = clean(bound["name"])
            attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_EXECUTE_TOOL
            attrs[sc.GEN_AI_TOOL_NAME] = target
        uri = bound.get("uri")
        if method == sc.MCP_RESOURCES_READ and uri is not None:
            attrs[sc.MCP_RESOURCE_URI] = clean(str(uri))
        current = trace.get_current_span()
        base = meta_io.with_meta_baggage(otel_context.get_current(), bound.get(carrier) if carrier == "meta" else None)
        if tool and _is_tool_span(current):  # the app's tool span already covers this call: add the MCP side
            current.set_attributes({k: v for k, v in attrs.items() if k != sc.GEN_AI_TOOL_NAME})
            here = _attribution.current()
            observed = None
            tokens = (otel_context.attach(meta_io.with_attribution(base, here)), _attribution.set_current(here))
        else:
            name = f"{method} {target}" if target else method
            observed = meta_io.open_span(
                name,
                SpanKind.CLIENT,
                attrs,
                tool=tool,
                attribution=_attribution.current(),
                arguments=bound.get("arguments") if tool else None,
            )
            tokens = meta_io.attach(observed, base)
        context = otel_context.get_current()
    except Exception as exc:
        record_internal_error("mcp client start", exc)
        return None
    call = _Call(kwargs, observed, tokens)
    if carrier:
        try:
            new_kwargs = dict(kwargs)
            _inject(carrier, bound, new_kwargs, context)
            call.kwargs = new_kwargs
        except Exception as exc:  # traced, sent as the caller wrote it
            record_internal_error("mcp client inject", exc)
    return call


def _arguments(signature: inspect.Signature | None, session: Any, args: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if signature is None:
        return dict(kwargs)
    try:
        return dict(signature.bind_partial(session, *args, **kwargs).arguments)
    except TypeError:  # the call does not fit: the SDK raises it, not us
        return dict(kwargs)


def _is_tool_span(span: Any) -> bool:
    attributes = getattr(span, "attributes", None) if span.is_recording() else None
    return attributes is not None and attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OP_EXECUTE_TOOL


def _inject(carrier: str, bound: dict[str, Any], kwargs: dict[str, Any], context: otel_context.Context) -> None:
    if carrier == "meta":
        kwargs["meta"] = meta_io.outgoing_meta(meta_io.as_mapping(bound.get("meta")), context)
        return
    params = bound.get("params")  # list_tools(params=PaginatedRequestParams(...)): _meta lives in it
    if params is None:
        if bound.get("cursor") is not None:  # mcp 1.x's list_tools(cursor): params would conflict
            return
        types = sys.modules.get("mcp.types")
        model = getattr(types, "PaginatedRequestParams", None)
        if model is None:
            return
        kwargs["params"] = model.model_validate({"_meta": meta_io.outgoing_meta(None, context)})
    elif hasattr(params, "model_dump"):
        fields = params.model_dump(by_alias=True, exclude_unset=True)
        fields["_meta"] = meta_io.outgoing_meta(meta_io.as_mapping(getattr(params, "meta", None)), context)
        kwargs["params"] = type(params).model_validate(fields)


def _finish(call: _Call, error: BaseException | None, result: Any) -> None:
    try:
        if call.tokens is not None:
            ObservedSpan.detach(call.tokens)
        observed = call.observed
        if observed is None:
            return
        if error is not None:
            meta_io.record_error(observed, error)
        elif meta_io.is_tool_error(result):
            observed.span.set_attribute(sc.ERROR_TYPE, sc.MCP_TOOL_ERROR)
            observed.span.set_status(Status(StatusCode.ERROR))
            observed.end(None, meta_io.result_content(observed, result))
        else:
            observed.end(None, meta_io.result_content(observed, result) if observed.kind == sc.SPAN_KIND_TOOL else None)
    except Exception as exc:
        record_internal_error("mcp client finish", exc)
