"""MCP server side: each inbound request continues the caller's trace and attribution.

mcp 2.x runs every inbound request through ``ServerRunner``'s middleware chain, where the raw
``params._meta`` is on the request context. llmwatch adds one step at the inside of that chain
(around validation and the handler, so around the tool function), which reads the caller's trace
context and attribution from ``_meta`` (``_mcp_context``) and makes them current for the handler:
the LLM calls a tool makes sit under the server span and are attributed to the caller's user,
feature and session (the caller's values win over the server's own for that request).

The server span: mcp 2.x's own ``OpenTelemetryMiddleware`` opens one (``tools/call get_weather``,
SERVER, parented from ``_meta``) whenever the global tracer provider records; llmwatch then adds
attribution, session, transport and rollups to it instead of opening a second. Otherwise (the
SDK's span is not recording, or was removed from ``Server.middleware``) llmwatch opens that span
itself, with the same names. A request without ``_meta``, or with a malformed one, is served as if
llmwatch were not there, under a span of its own trace.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from llmwatch import _attribution
from llmwatch import _semconv as sc
from llmwatch._attribution import Attribution, Rollup, open_rollup
from llmwatch._core import _runtime
from llmwatch._health import record_internal_error
from llmwatch._instrument import _mcp_context as meta_io
from llmwatch._instrument._observe import ObservedSpan
from llmwatch._text import clean

SDK_TRACER = "mcp-python-sdk"  # the instrumentation scope of mcp's own spans
_SESSION_HEADER = "mcp-session-id"


class _Request:
    """One inbound request being served: our span, or the SDK's span we enrich (with a rollup)."""

    __slots__ = ("content", "observed", "rollup", "sdk_span", "tokens", "tool")

    def __init__(
        self, observed: ObservedSpan | None, sdk_span: Any, rollup: Rollup | None, tokens: Any, tool: bool = False
    ) -> None:
        self.tool = tool
        self.observed = observed
        self.sdk_span = sdk_span
        self.rollup = rollup
        self.tokens = tokens
        self.content = _runtime.CURRENT.content if sdk_span is not None else None


def wrap_compose(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ServerRunner._compose_server_middleware`` with llmwatch's step innermost."""

    @functools.wraps(original)
    def compose(self: Any, inner: Any) -> Any:
        return original(self, functools.partial(serve, inner))

    compose.__llmwatch_original__ = original  # type: ignore[attr-defined]
    return compose


async def serve(call_next: Callable[[Any], Any], ctx: Any) -> Any:
    """Run the rest of the chain under the caller's trace and attribution."""
    request = _start(ctx)
    if request is None:
        return await call_next(ctx)
    try:
        result = await call_next(ctx)
    except BaseException as exc:
        _finish(request, exc, None)
        raise
    _finish(request, None, result)
    return result


def wrap_handle_request(original: Callable[..., Any]) -> Callable[..., Any]:
    """mcp 1.x: ``Server._handle_request(message, req, session, ...)``, which answers the request
    itself (errors become error responses there, so this span records no error)."""

    @functools.wraps(original)
    async def handle(self: Any, message: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        request = _start(_context_v1(message, req))
        if request is None:
            return await original(self, message, req, *args, **kwargs)
        try:
            result = await original(self, message, req, *args, **kwargs)
        except BaseException as exc:
            _finish(request, exc, None)
            raise
        _finish(request, None, None)
        return result

    handle.__llmwatch_original__ = original  # type: ignore[attr-defined]
    return handle


class _ContextV1:
    """What ``_start`` reads off mcp 2.x's request context, from mcp 1.x's responder and request."""

    __slots__ = ("method", "params", "protocol_version", "request", "request_id")

    def __init__(self, message: Any, req: Any) -> None:
        self.request_id = getattr(message, "request_id", None)
        self.method = getattr(req, "method", None) or ""
        self.protocol_version = None
        self.request = getattr(getattr(message, "message_metadata", None), "request_context", None)
        typed = getattr(req, "params", None)
        params: dict[str, Any] = {}
        for key in ("name", "arguments"):
            if getattr(typed, key, None) is not None:
                params[key] = getattr(typed, key)
        uri = getattr(typed, "uri", None)
        if uri is not None:
            params["uri"] = str(uri)
        meta = meta_io.as_mapping(getattr(typed, "meta", None))
        if meta is not None:
            params["_meta"] = meta
        self.params = params


def _context_v1(message: Any, req: Any) -> _ContextV1 | None:
    try:
        return _ContextV1(message, req)
    except Exception as exc:
        record_internal_error("mcp server start", exc)
        return None


def _attributes(ctx: Any, params: Any) -> tuple[str, dict[str, Any], bool]:
    method = clean(str(ctx.method))
    attrs: dict[str, Any] = {sc.MCP_METHOD_NAME: method}
    version = getattr(ctx, "protocol_version", None)
    if isinstance(version, str):
        attrs[sc.MCP_PROTOCOL_VERSION] = version
    attrs[sc.JSONRPC_REQUEST_ID] = str(ctx.request_id)
    name = params.get("name") if isinstance(params, Mapping) else None
    target = clean(name) if isinstance(name, str) else None
    tool = method == sc.MCP_TOOLS_CALL
    if tool and target is not None:
        attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_EXECUTE_TOOL
        attrs[sc.GEN_AI_TOOL_NAME] = target
    elif method == "prompts/get" and target is not None:
        attrs[sc.GEN_AI_PROMPT_NAME] = target
    else:
        target = None
    uri = params.get("uri") if isinstance(params, Mapping) else None
    if method == sc.MCP_RESOURCES_READ and isinstance(uri, str):
        attrs[sc.MCP_RESOURCE_URI] = clean(uri)
    http = getattr(ctx, "request", None)
    if http is not None:  # streamable HTTP (a starlette request); stdio carries none
        attrs[sc.NETWORK_TRANSPORT] = "tcp"
        headers = getattr(http, "headers", None)
        session_id = headers.get(_SESSION_HEADER) if headers is not None else None
        if isinstance(session_id, str) and session_id:
            attrs[sc.MCP_SESSION_ID] = clean(session_id)
    return (f"{method} {target}" if target else method), attrs, tool


def _start(ctx: Any) -> _Request | None:
    try:
        if (
            ctx is None or getattr(ctx, "request_id", None) is None
        ):  # a notification: nothing to answer, nothing to trace
            return None
        params = ctx.params
        carrier = meta_io.raw_meta(params)
        remote = meta_io.incoming_context(carrier)
        fields = meta_io.caller_fields(carrier)
        here = _attribution.current()
        attribution = (
            here.merged(user=fields.get("user"), feature=fields.get("feature"), session=fields.get("session"))
            if fields
            else here
        )
        name, attrs, tool = _attributes(ctx, params)
        arguments = params.get("arguments") if tool and isinstance(params, Mapping) else None
        current = trace.get_current_span()
        if _is_sdk_server_span(current):
            return _enrich(current, attribution, attrs, remote, tool, arguments)
        observed = meta_io.open_span(
            name, SpanKind.SERVER, attrs, tool=tool, attribution=attribution, parent=remote, arguments=arguments
        )
        return _Request(observed, None, None, meta_io.attach(observed, remote))
    except Exception as exc:
        record_internal_error("mcp server start", exc)
        return None


def _is_sdk_server_span(span: Any) -> bool:
    """mcp's own span for this request, recorded by the provider llmwatch exports through."""
    scope = getattr(span, "instrumentation_scope", None)
    ours = getattr(_runtime.CURRENT.tracer_provider, "_active_span_processor", None)
    return (
        span.is_recording()
        and getattr(scope, "name", None) == SDK_TRACER
        and getattr(span, "kind", None) is SpanKind.SERVER
        and getattr(span, "_span_processor", None) is ours
    )


def _enrich(
    span: Any,
    attribution: Attribution,
    attrs: dict[str, Any],
    remote: otel_context.Context | None,
    tool: bool,
    arguments: Any,
) -> _Request:
    extra = dict(attribution.span_attributes)
    extra[sc.LLMWATCH_SPAN_KIND] = sc.SPAN_KIND_TOOL if tool else sc.SPAN_KIND_TASK
    for key in (sc.NETWORK_TRANSPORT, sc.MCP_SESSION_ID, sc.MCP_RESOURCE_URI):
        if key in attrs:
            extra[key] = attrs[key]
    request = _Request(None, span, None, None, tool)
    if request.content is not None and arguments is not None:
        extra[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = request.content.json(request.content.any_value(arguments))
    request.rollup = rollup = open_rollup(attribution, extra)
    span.set_attributes(extra)
    inner = attribution.within((*attribution.rollups, rollup), attribution.agent)
    context = meta_io.with_attribution(set_span_in_context(span, remote), inner)
    request.tokens = (otel_context.attach(context), _attribution.set_current(inner))
    return request


def _finish(request: _Request, error: BaseException | None, result: Any) -> None:
    try:
        if request.tokens is not None:
            ObservedSpan.detach(request.tokens)
        if request.sdk_span is not None:
            _finish_sdk_span(request, error, result)
            return
        observed = request.observed
        if observed is None:
            return
        if error is not None:
            meta_io.record_error(observed, error)
            return
        if meta_io.is_tool_error(result):
            observed.span.set_attribute(sc.ERROR_TYPE, sc.MCP_TOOL_ERROR)
            observed.span.set_status(Status(StatusCode.ERROR))
        observed.end(None, meta_io.result_content(observed, result) if observed.kind == sc.SPAN_KIND_TOOL else None)
    except Exception as exc:
        record_internal_error("mcp server finish", exc)


def _finish_sdk_span(request: _Request, error: BaseException | None, result: Any) -> None:
    """The SDK ends its own span (and records its errors): we add the rollups, and the result."""
    rollup = request.rollup
    attrs: dict[str, Any] = rollup.span_attributes() if rollup is not None else {}
    policy = request.content
    if error is None and policy is not None and request.tool and result is not None:
        attrs[sc.GEN_AI_TOOL_CALL_RESULT] = policy.json(policy.any_value(result))
    if attrs:
        request.sdk_span.set_attributes(attrs)
