"""``@llmwatch.observe``: workflow, task, agent and tool spans around the user's own functions.

``kind`` picks the GenAI conventions' shape: ``agent`` is ``invoke_agent {name}``
(``gen_ai.operation.name=invoke_agent``, ``gen_ai.agent.name``), ``tool`` is ``execute_tool {name}``
(``gen_ai.tool.name``, ``gen_ai.tool.type``; arguments and result as ``gen_ai.tool.call.arguments`` /
``.result`` under the content rules), ``workflow`` is ``invoke_workflow {name}``; ``task`` and no kind
keep llmwatch's own workflow/task span (no kind: a workflow at the top, a task inside one).

Every observe span carries the rollups of the LLM calls beneath it (``_attribution.Rollup``) and the
run id of the outermost one (``llmwatch.run.id``): the attribution in force inside it holds the
rollups, so each call adds to each ancestor once, across ``await``, tasks and copied contexts.

:class:`ObservedSpan` is the span itself, also opened by the framework bridges (LangChain callbacks,
openai-agents' processor), which have no function to wrap. The function wrappers (sync, async,
generator, async generator) are ``_wrapping``'s; the span's context is attached at the start of each
step and detached at its end, in the same frame, never across a ``yield``. The content policy is the
one in force when the span started.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmwatch import _attribution
from llmwatch import _semconv as sc
from llmwatch._attribution import Attribution, Rollup, open_rollup
from llmwatch._core import _runtime
from llmwatch._health import HEALTH, record_internal_error
from llmwatch._policy._content import ContentPolicy
from llmwatch._text import clean, error_description, exception_event_overrides
from llmwatch._wrapping import wrap_function

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_NOTHING: Any = object()
# kind -> (gen_ai.operation.name, the attribute naming it, OpenInference's kind)
_SHAPES: dict[str, tuple[str | None, str | None, str]] = {
    sc.SPAN_KIND_AGENT: (sc.OP_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME, sc.OI_KIND_AGENT),
    sc.SPAN_KIND_TOOL: (sc.OP_EXECUTE_TOOL, sc.GEN_AI_TOOL_NAME, sc.OI_KIND_TOOL),
    sc.SPAN_KIND_WORKFLOW: (sc.OP_INVOKE_WORKFLOW, sc.GEN_AI_WORKFLOW_NAME, sc.OI_KIND_CHAIN),
    sc.SPAN_KIND_TASK: (None, None, sc.OI_KIND_CHAIN),
}
_INPUT_KEY = {sc.SPAN_KIND_TOOL: sc.GEN_AI_TOOL_CALL_ARGUMENTS}
_OUTPUT_KEY = {sc.SPAN_KIND_TOOL: sc.GEN_AI_TOOL_CALL_RESULT}


class ObservedSpan:
    """One workflow/task/agent/tool span and the rollup of the LLM calls beneath it.

    ``open`` never raises (None when llmwatch failed: the caller goes on without a span); ``attach``
    makes it current (OTel context and attribution) until ``detach``; ``end`` records the result or
    error and the rollups, once."""

    __slots__ = ("attribution", "content", "ended", "kind", "names_provider", "openinference", "rollup", "span")

    def __init__(
        self, span: Span, attribution: Attribution, rollup: Rollup, kind: str, content: ContentPolicy | None
    ) -> None:
        self.span = span
        self.attribution = attribution  # what the calls inside are attributed to (with our rollup)
        self.rollup = rollup
        self.kind = kind
        self.content = content  # the policy at start, when this span records content (else None)
        self.openinference = _runtime.CURRENT.openinference
        # An agent span whose provider nobody named: named at its end from the calls beneath it.
        self.names_provider = kind == sc.SPAN_KIND_AGENT
        self.ended = False

    @classmethod
    def open(
        cls,
        kind: str | None,
        name: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        inputs: Any = _NOTHING,
        capture: bool = False,
        feature: str | None = None,
        parent: otel_context.Context | None = None,
    ) -> ObservedSpan | None:
        """Start the span. ``kind`` None: a workflow at the top, a task inside one (today's
        ``@observe``). ``inputs`` are recorded when ``capture`` and content capture are on."""
        try:
            runtime = _runtime.CURRENT
            outer = _attribution.current()
            if feature is not None:
                outer = outer.merged(feature=feature)
            resolved = kind or (sc.SPAN_KIND_TASK if outer.rollups else sc.SPAN_KIND_WORKFLOW)
            explicit = kind is not None
            attrs: dict[str, Any] = dict(outer.span_attributes)
            attrs[sc.LLMWATCH_SPAN_KIND] = resolved
            operation, name_key, oi_kind = _SHAPES[resolved]
            span_name = name
            if explicit and operation is not None and name_key is not None:
                attrs[sc.GEN_AI_OPERATION_NAME] = operation
                attrs[name_key] = name
                span_name = f"{operation} {name}"
                if resolved == sc.SPAN_KIND_TOOL:
                    attrs[sc.GEN_AI_TOOL_TYPE] = sc.TOOL_TYPE_FUNCTION
            if attributes:
                attrs.update(attributes)
            content = runtime.content if capture else None
            if content is not None and inputs is not _NOTHING:
                attrs[_INPUT_KEY.get(resolved, sc.LLMWATCH_INPUT)] = text = content.json(content.any_value(inputs))
                if runtime.openinference:
                    attrs[sc.OI_INPUT_VALUE] = text
                    attrs[sc.OI_INPUT_MIME_TYPE] = sc.OI_MIME_JSON
            if runtime.openinference:
                attrs[sc.OI_SPAN_KIND] = oi_kind
                if resolved == sc.SPAN_KIND_TOOL:
                    attrs[sc.OI_TOOL_NAME] = name
            rollup = open_rollup(outer, attrs)
            span = runtime.tracer.start_span(span_name, context=parent, kind=SpanKind.INTERNAL, attributes=attrs)
            HEALTH.spans_started.add()
            agent = name if resolved == sc.SPAN_KIND_AGENT else outer.agent
            inner = outer.within((*outer.rollups, rollup), agent)
            opened = cls(span, inner, rollup, resolved, content)
            opened.names_provider = opened.names_provider and sc.GEN_AI_PROVIDER_NAME not in attrs
            return opened
        except Exception as exc:
            record_internal_error("observe start", exc)
            return None

    def attach(self) -> tuple[Any, Any]:
        """Make this span current here: the OTel context and the attribution (tokens for ``detach``)."""
        return (
            otel_context.attach(trace.set_span_in_context(self.span)),
            _attribution.set_current(self.attribution),
        )

    @staticmethod
    def detach(tokens: tuple[Any, Any]) -> None:
        context_token, attribution_token = tokens
        attribution_token.var.reset(attribution_token)
        otel_context.detach(context_token)

    def end(self, error: BaseException | None = None, result: Any = _NOTHING) -> None:
        """Record the error or the result (under the content rules) and the rollups; end the span."""
        if self.ended:
            return
        self.ended = True
        span = self.span
        try:
            rollup = self.rollup
            # (No call beneath: the span keeps the llm_calls=0 it started with; nothing to set.)
            attrs = rollup.span_attributes() if rollup.llm_calls else {}
            if self.names_provider and rollup.provider:  # every call beneath went to one provider
                attrs[sc.GEN_AI_PROVIDER_NAME] = rollup.provider
            if error is not None:
                attrs[sc.ERROR_TYPE] = type(error).__name__
                span.set_status(Status(StatusCode.ERROR, error_description(error)))
                span.record_exception(error, attributes=exception_event_overrides(error))
            elif self.content is not None and result is not _NOTHING and result is not None:
                policy = self.content
                attrs[_OUTPUT_KEY.get(self.kind, sc.LLMWATCH_OUTPUT)] = output = policy.json(policy.any_value(result))
                if self.openinference:
                    attrs[sc.OI_OUTPUT_VALUE] = output
                    attrs[sc.OI_OUTPUT_MIME_TYPE] = sc.OI_MIME_JSON
            if attrs:
                span.set_attributes(attrs)
        except Exception as exc:
            record_internal_error("observe finish", exc)
        finally:  # whatever failed above, the span still ends (and is exported)
            try:
                span.end()
                HEALTH.spans_ended.add()
            except Exception as exc:
                record_internal_error("observe span end", exc)


class ObserveHooks:
    """``@observe``'s hooks for ``_wrapping``: one :class:`ObservedSpan` per call. Guarded."""

    def __init__(
        self, name: str, kind: str | None, feature: str | None, capture_args: bool, signature: inspect.Signature | None
    ) -> None:
        self.name = name
        self.kind = kind
        self.feature = feature
        self.capture_args = capture_args
        self.signature = signature  # tools: arguments recorded by parameter name

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ObservedSpan | None:
        capture = self.capture_args and _runtime.CURRENT.content is not None
        inputs = self._inputs(args, kwargs) if capture else _NOTHING
        return ObservedSpan.open(self.kind, self.name, inputs=inputs, capture=self.capture_args, feature=self.feature)

    def _inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.signature is not None:
            try:
                return dict(self.signature.bind_partial(*args, **kwargs).arguments)
            except TypeError:  # the call does not fit the signature: the function raises it, not us
                pass
        return {"args": list(args), "kwargs": kwargs}

    def enter(self, state: ObservedSpan | None) -> Any:
        if state is None:
            return None
        try:  # ObservedSpan.attach, inlined: one call fewer on every observe span
            return (
                otel_context.attach(trace.set_span_in_context(state.span)),
                _attribution.set_current(state.attribution),
            )
        except Exception as exc:
            record_internal_error("observe enter", exc)
            return None

    def leave(self, state: ObservedSpan | None, tokens: Any) -> None:
        if tokens is None:
            return
        try:  # ObservedSpan.detach, inlined
            context_token, attribution_token = tokens
            attribution_token.var.reset(attribution_token)
            otel_context.detach(context_token)
        except Exception as exc:
            record_internal_error("observe leave", exc)

    def finish(self, state: ObservedSpan | None, error: BaseException | None, result: Any) -> None:
        if state is not None:
            state.end(error, result)


@overload
def observe(fn: F) -> F: ...
@overload
def observe(
    fn: None = None,
    *,
    name: str | None = None,
    kind: str | None = None,
    feature: str | None = None,
    capture_args: bool | None = None,
) -> Callable[[F], F]: ...


def observe(
    fn: Any = None,
    *,
    name: str | None = None,
    kind: str | None = None,
    feature: str | None = None,
    capture_args: bool | None = None,
) -> Any:
    """Trace a function as a workflow, task, agent or tool span.

    ``kind``: ``"agent"`` (an ``invoke_agent`` span), ``"tool"`` (``execute_tool``), ``"workflow"``
    (``invoke_workflow``) or ``"task"``; without it, a workflow span at the top and a task span inside
    one. Works on sync, async, generator and async generator functions; the LLM calls made inside
    become its child spans and are summed in its ``llmwatch.rollup.*`` attributes. ``name`` defaults
    to the function's ``__qualname__``; ``feature`` attributes every call inside to that feature;
    ``capture_args`` records arguments and return value (a tool's by default), only when content
    capture is on and through the same redaction.
    """
    if kind is not None and kind not in sc.OBSERVE_KINDS:
        kinds = ", ".join(map(repr, sc.OBSERVE_KINDS))
        raise ValueError(f"llmwatch.observe(): kind must be one of {kinds}, got {kind!r}")
    capture = capture_args if capture_args is not None else kind == sc.SPAN_KIND_TOOL

    def decorate(func: F) -> F:
        signature = _signature(func) if kind == sc.SPAN_KIND_TOOL else None
        hooks = ObserveHooks(clean(name or func.__qualname__), kind, feature, capture, signature)
        return cast(F, wrap_function(func, hooks))

    if fn is not None:
        return decorate(fn)
    return decorate


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):  # builtins and some C callables have none
        return None
