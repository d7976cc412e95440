"""pydantic-ai: agent runs as ``invoke_agent {name}`` spans, tool calls as ``execute_tool {name}``.

Hooks (read from pydantic-ai 2.x's source): every way to run an agent (``run``, ``run_sync``,
``run_stream``, ``run_stream_events``, ``iter``) enters ``Agent.iter``, an async context manager whose
body drives the graph; every function-tool call, after its arguments are validated, goes through
``ToolManager.execute_tool_call`` (around the capabilities' ``wrap_tool_execute`` hooks). Both are
public methods; we wrap them at class level. The span is opened and attached when ``iter`` is entered
and detached when it is exited, both in the caller's task (an ``async with`` frame); pydantic-ai copies
that context into the tasks it starts (its ``wrap_run`` task, parallel tool calls), so the model calls
its ``OpenAIChatModel``, ``OpenAIResponsesModel``, ``AnthropicModel``, ``GoogleModel`` and
``BedrockConverseModel`` make through the real SDK clients start inside the span: llmwatch's SDK-level
spans are its children and count in its rollups. Why not a capability (pydantic-ai's own extension
point, which its ``Instrumentation`` uses): there is no global capability registry
(``Agent.instrument_all()`` is for ``Instrumentation`` only), so injecting one means patching agent
construction or the private run-capability resolution, and durable execution (Temporal, DBOS)
rejects capabilities it does not know to be runtime-safe.

pydantic-ai's own instrumentation (``agent.instrument = True``, ``Agent.instrument_all()``,
``logfire.instrument_pydantic_ai()``: the ``Instrumentation`` capability) emits an agent run span, a
``chat {model}`` span per model request and an ``execute_tool`` span per tool. **llmwatch's spans
win**: in a run llmwatch traces, that capability's tracer is replaced for the run by one that turns
its ``invoke_agent`` and ``execute_tool`` spans, and its ``chat`` spans when the model's SDK client is
traced by llmwatch, into non-recording spans carrying the parent's context (so whatever starts
beneath still parents correctly); its other spans (failed request attempts, ...) and, for models
llmwatch does not trace (Groq, Mistral, ...), its ``chat`` spans pass through. Then its token and cost
histograms are silenced too (llmwatch records them), so nothing is counted twice.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Tracer

from llmwatch import _semconv as sc
from llmwatch._health import record_internal_error
from llmwatch._instrument._observe import ObservedSpan

FRAMEWORK_MODULE = "pydantic_ai"

# (class, attribute, original) wrapped so far; removed in reverse order.
_patched: list[tuple[type, str, Any]] = []
# The run span llmwatch opened for the agent run in progress here (None outside one).
_RUN: ContextVar[ObservedSpan | None] = ContextVar("llmwatch_pydantic_ai_run", default=None)
# pydantic-ai's span operations llmwatch's own spans replace.
_REPLACED = frozenset({sc.OP_INVOKE_AGENT, sc.OP_EXECUTE_TOOL})
# The SDKs (client class modules) of pydantic-ai's models that llmwatch's adapters trace, each tested.
_TRACED_SDKS = ("openai", "anthropic", "google.genai", "botocore")  # botocore: bedrock-runtime
# pydantic-ai's exceptions that are control flow (a deferred or approval-gated call), not failures.
_CONTROL_FLOW = ("CallDeferred", "ApprovalRequired", "SkipToolExecution")


def install(module: Any) -> None:
    """Wrap ``Agent.iter``, ``ToolManager.execute_tool_call`` and ``Instrumentation.for_run``."""
    if _patched:
        return
    for path, cls, name, factory in (
        ("pydantic_ai.agent", "Agent", "iter", _wrap_iter),
        ("pydantic_ai.tool_manager", "ToolManager", "execute_tool_call", _wrap_execute_tool_call),
        ("pydantic_ai.capabilities.instrumentation", "Instrumentation", "for_run", _wrap_for_run),
    ):
        try:
            owner = getattr(importlib.import_module(path), cls)  # imported by pydantic_ai itself already
            original = owner.__dict__[name]
        except Exception:  # another pydantic-ai shape: all or nothing
            uninstall()
            raise
        setattr(owner, name, factory(original))
        _patched.append((owner, name, original))


def uninstall() -> None:
    while _patched:
        owner, name, original = _patched.pop()
        setattr(owner, name, original)


# --- agent runs -------------------------------------------------------------------------------


def _wrap_iter(original: Any) -> Any:
    @functools.wraps(original)
    def iter(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _RunScope(self, original(self, *args, **kwargs), args, kwargs)

    return iter


class _RunScope:
    """``Agent.iter``'s async context manager, inside an ``invoke_agent`` span. What the framework's
    own context manager returns, raises and suppresses passes through untouched."""

    __slots__ = ("agent", "args", "inner", "kwargs", "run", "span", "tokens")

    def __init__(self, agent: Any, inner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.agent = agent
        self.inner = inner
        self.args = args
        self.kwargs = kwargs
        self.span: ObservedSpan | None = None
        self.tokens: Any = None
        self.run: Any = None

    async def __aenter__(self) -> Any:
        self._start()
        try:
            self.run = await self.inner.__aenter__()
        except BaseException as exc:
            self._finish(exc)
            raise
        return self.run

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            suppressed = await self.inner.__aexit__(exc_type, exc, tb)
        except BaseException as error:
            self._finish(error)
            raise
        self._finish(None if suppressed else exc)
        return suppressed

    def _start(self) -> None:
        try:
            name = _agent_name(self.agent)
            prompt = self.kwargs.get("user_prompt", self.args[0] if self.args else None)
            attributes = _run_attributes(self.agent, self.kwargs)
            self.span = ObservedSpan.open(
                sc.SPAN_KIND_AGENT, name, attributes=attributes, inputs=prompt, capture=prompt is not None
            )
            if self.span is not None:
                self.tokens = (self.span.attach(), _RUN.set(self.span))
        except Exception as exc:
            record_internal_error("pydantic-ai run start", exc)

    def _finish(self, error: BaseException | None) -> None:
        span, tokens = self.span, self.tokens
        self.span = self.tokens = None
        if span is None:
            return
        try:
            if tokens is not None:
                _RUN.reset(tokens[1])
                ObservedSpan.detach(tokens[0])
        except Exception as exc:
            record_internal_error("pydantic-ai run detach", exc)
        try:
            if error is None:
                span.end(result=_run_output(self.run))
            else:
                span.end(error)
        except Exception as exc:
            record_internal_error("pydantic-ai run finish", exc)


def _agent_name(agent: Any) -> str:
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) and name else "agent"


def _run_attributes(agent: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    conversation = kwargs.get("conversation_id")
    if isinstance(conversation, str) and conversation:
        attributes[sc.GEN_AI_CONVERSATION_ID] = conversation
    description = getattr(agent, "description", None)
    if isinstance(description, str) and description:
        attributes[sc.GEN_AI_AGENT_DESCRIPTION] = description
    model = kwargs.get("model") or getattr(agent, "model", None)
    model_name = getattr(model, "model_name", model)
    if isinstance(model_name, str) and model_name:
        attributes[sc.GEN_AI_REQUEST_MODEL] = model_name.split(":", 1)[-1]
    return attributes


def _run_output(run: Any) -> Any:
    result = getattr(run, "result", None)  # AgentRun.result: None until the run produced its output
    return getattr(result, "output", None)


# --- tools -------------------------------------------------------------------------------------


def _wrap_execute_tool_call(original: Any) -> Any:
    @functools.wraps(original)
    async def execute_tool_call(self: Any, validated: Any, *args: Any, **kwargs: Any) -> Any:
        span = _open_tool(validated)
        if span is None:
            return await original(self, validated, *args, **kwargs)
        tokens = _attach(span)
        try:
            result = await original(self, validated, *args, **kwargs)
        except BaseException as exc:
            _end_tool(span, tokens, None if type(exc).__name__ in _CONTROL_FLOW else exc)
            raise
        _end_tool(span, tokens, None, result)
        return result

    return execute_tool_call


def _open_tool(validated: Any) -> ObservedSpan | None:
    try:
        call = validated.call
        tool = getattr(validated, "tool", None)
        tool_def = getattr(tool, "tool_def", None)
        if getattr(tool_def, "kind", None) == "output":  # the agent's output, not a tool
            return None
        attributes: dict[str, Any] = {}
        if call.tool_call_id:
            attributes[sc.GEN_AI_TOOL_CALL_ID] = call.tool_call_id
        description = getattr(tool_def, "description", None)
        if isinstance(description, str) and description:
            attributes[sc.GEN_AI_TOOL_DESCRIPTION] = description
        arguments = validated.validated_args
        if arguments is None:
            arguments = call.args
        return ObservedSpan.open(
            sc.SPAN_KIND_TOOL, call.tool_name, attributes=attributes, inputs=arguments, capture=True
        )
    except Exception as exc:
        record_internal_error("pydantic-ai tool start", exc)
        return None


def _attach(span: ObservedSpan) -> Any:
    try:
        return span.attach()
    except Exception as exc:
        record_internal_error("pydantic-ai tool attach", exc)
        return None


def _end_tool(span: ObservedSpan, tokens: Any, error: BaseException | None, result: Any = None) -> None:
    try:
        if tokens is not None:
            ObservedSpan.detach(tokens)
    except Exception as exc:
        record_internal_error("pydantic-ai tool detach", exc)
    span.end(error, result)  # never raises


# --- pydantic-ai's own instrumentation -----------------------------------------------------------


def _wrap_for_run(original: Any) -> Any:
    @functools.wraps(original)
    async def for_run(self: Any, ctx: Any) -> Any:
        instrumentation = await original(self, ctx)
        if _RUN.get() is None:  # not a run llmwatch traces: pydantic-ai's spans stay as they are
            return instrumentation
        try:
            return _quieted(self, instrumentation, ctx)
        except Exception as exc:
            record_internal_error("pydantic-ai instrumentation", exc)
            return instrumentation

    return for_run


def _quieted(capability: Any, instrumentation: Any, ctx: Any) -> Any:
    """The run's ``Instrumentation`` with its settings' tracer replaced (a copy: never the agent's)."""
    settings = instrumentation.settings
    if isinstance(settings.tracer, _QuietTracer):
        return instrumentation
    if instrumentation is capability:
        instrumentation = copy.copy(capability)
    chat = _sdk_traced(getattr(ctx, "model", None))
    quiet = copy.copy(settings)
    quiet.tracer = _QuietTracer(settings.tracer, chat)
    if chat:  # llmwatch records these for the calls it traces
        for key, value in vars(settings).items():
            if key.endswith("_histogram") and hasattr(value, "record"):
                setattr(quiet, key, _SILENT_HISTOGRAM)
    instrumentation.settings = quiet
    return instrumentation


def _sdk_traced(model: Any, depth: int = 0) -> bool:
    """Whether every request of this model goes through an SDK client llmwatch traces."""
    from llmwatch._instrument._base import REGISTRY

    if model is None or depth > 4:
        return False
    models = getattr(model, "models", None)  # FallbackModel
    if isinstance(models, (list, tuple)) and models:
        return all(_sdk_traced(inner, depth + 1) for inner in models)
    wrapped = getattr(model, "wrapped", None)  # WrapperModel
    if wrapped is not None:
        return _sdk_traced(wrapped, depth + 1)
    client = getattr(model, "client", None)
    if client is None:
        return False
    module = type(client).__module__
    return any(module == sdk or module.startswith(sdk + ".") for sdk in _TRACED_SDKS) and REGISTRY.is_traced(client)


class _SilentHistogram:
    def record(self, *args: Any, **kwargs: Any) -> None:
        return None


_SILENT_HISTOGRAM = _SilentHistogram()


class _QuietTracer(Tracer):
    """pydantic-ai's tracer for a run llmwatch traces: the spans llmwatch's own replace start as
    non-recording spans with the current span's context; every other span is the real tracer's."""

    def __init__(self, tracer: Tracer, chat: bool) -> None:
        self._tracer = tracer
        self._replaced = _REPLACED | {sc.OP_CHAT} if chat else _REPLACED

    def _quiet(self, attributes: Any) -> bool:
        try:
            return bool(attributes) and attributes.get(sc.GEN_AI_OPERATION_NAME) in self._replaced
        except Exception:
            return False

    def start_span(  # type: ignore[override]
        self, name: str, context: Any = None, kind: SpanKind = SpanKind.INTERNAL, attributes: Any = None, **kw: Any
    ) -> Span:
        if self._quiet(attributes):
            return NonRecordingSpan(trace.get_current_span(context).get_span_context())
        return self._tracer.start_span(name, context, kind, attributes, **kw)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Any = None, kind: SpanKind = SpanKind.INTERNAL, attributes: Any = None, **kw: Any
    ) -> Iterator[Span]:
        if not self._quiet(attributes):
            with self._tracer.start_as_current_span(name, context, kind, attributes, **kw) as span:
                yield span
            return
        span = NonRecordingSpan(trace.get_current_span(context).get_span_context())
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield span

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracer, name)
