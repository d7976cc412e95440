"""LangChain / LangGraph bridge: chains and graphs as workflow/task spans, agents as ``invoke_agent``,
tools as ``execute_tool``; a chat model call stays one span, the SDK adapter's.

**Registration.** One callback handler, added to every run by LangChain's own configure hook
(``langchain_core.tracers.context.register_configure_hook``): its ContextVar's *default* is the handler,
so every context has it, threads started from scratch included (a value ``set`` at install would reach
only the installing context and its copies); ``var.set(None)`` turns it off for a block; uninstall
takes the hook out of LangChain's list (and the handler does nothing once uninstalled, in case it
cannot be taken out). ``run_inline = True``: async callback managers then call it in order, in the
running task, instead of gathering it in executor threads (a child's start would race its parent's).

**Which runs become spans.** A run with no parent we know (the top-level chain or graph: the run),
each LangGraph node run (``metadata["langgraph_node"] == name``) and each tool. The runnables inside a
node (its function, a prompt, ``prompt | model``, the routing function) and retrievers are folded
into the nearest span: their children go under it. A graph with a node named like an agent's model
node (``agent``: ``langgraph.prebuilt.create_react_agent``; ``model``: ``langchain.agents.create_agent``)
becomes ``invoke_agent {graph name}`` when that node first starts, before anything in it ran; a graph
run folded into a node (a sub-agent called from a node's code) gets its span at its first node. Chat
model and LLM runs open nothing: the model call goes through the openai/anthropic client, whose
adapter traces it.

**The hard part: the SDK span under the right span, counted in its rollups.** The model call must
start while our span is current (OTel context and llmwatch attribution). Attaching on ``*_start`` and
detaching on ``*_end`` does not hold: the async ``on_chain_end``/``on_llm_end`` are ``@shielded``,
run in a task with a *copy* of the context, so the detach cannot happen where the attach did and the
caller's context would keep an ended span current after ``await chain.ainvoke()`` returned. So:

- our spans are parented explicitly: the parent's span and attribution come from ``parent_run_id``
  (``ObservedSpan.open(parent=...)`` with the parent's attribution current while it opens), whatever
  context the callback runs in;
- the work of a run (a node's function, a tool's function, each step of a sequence) runs in a fresh
  context LangChain makes for it, ``set_config_context``: ``ctx = copy_context()``, then
  ``ctx.run(_set_config_context, child_config)``, then the work in ``ctx`` (``ctx.run`` when sync, a
  task on ``ctx`` when async, each step of a stream). That is where LangChain itself makes its LangSmith
  run current for ``@traceable`` code. We wrap ``_set_config_context`` (``langchain_core.runnables.config``
  and LangGraph's own in ``langgraph._internal._runnable``): after it, the run the child config belongs
  to (its callbacks' ``parent_run_id``) has its span attached in ``ctx``. Never detached: ``ctx`` lives
  as long as that work and is dropped with it, so nothing outlives the run, in ``invoke``, ``ainvoke``,
  ``stream`` and ``astream`` alike. Model calls made directly with an SDK client inside a tool or a
  node count too.

Not covered: legacy ``Chain`` subclasses that call their children without ``set_config_context`` (their
spans exist and nest; the model call's span then sits under whatever was current).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from opentelemetry import trace

from llmwatch import _attribution, _health
from llmwatch import _semconv as sc
from llmwatch._health import record_internal_error
from llmwatch._instrument import _import_hooks
from llmwatch._instrument._observe import ObservedSpan
from llmwatch._text import clean

FRAMEWORK_MODULE = "langchain_core"

# A graph with a node of one of these names is an agent (create_react_agent's, langchain's create_agent's).
AGENT_NODES = frozenset({"agent", "model"})
_HIDDEN_TAG = "langsmith:hidden"
# LangGraph's control flow (interrupts, Command(goto=...) to a parent): not errors of the run.
_CONTROL_FLOW = ("GraphBubbleUp",)
_MAX_RUNS = 10_000  # runs open at once; past that (runs never ended) the oldest are forgotten
# Where each ``_set_config_context`` lives: LangChain's, LangGraph's (and its older home).
_CONFIG_CONTEXT_MODULES = (
    "langchain_core.runnables.config",
    "langgraph._internal._runnable",
    "langgraph.utils.runnable",
)
_ORIGINAL = "__llmwatch_original__"


class Run:
    """One LangChain run we track: its own span (None when folded) and the span its children go under."""

    __slots__ = ("name", "own", "scope")

    def __init__(self, name: str, own: ObservedSpan | None, scope: ObservedSpan | None) -> None:
        self.name = name
        self.own = own
        self.scope = scope


class Bridge:
    """The callback logic (the handler, a ``BaseCallbackHandler`` subclass, delegates here). Guarded."""

    def __init__(self) -> None:
        self.runs: dict[Any, Run] = {}  # run_id -> Run; each callback touches one key (atomic under the GIL)
        self.active = True

    def chain_start(self, run_id: Any, serialized: Any, kwargs: dict[str, Any]) -> None:
        name = kwargs.get("name") or (serialized.get("name") if isinstance(serialized, dict) else None)
        name = clean(str(name or "chain"))
        parent_run_id = kwargs.get("parent_run_id")
        parent = self.runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is None:  # the run
            self._track(run_id, Run(name, *_both(open_span(None, name, None))))
            return
        metadata, tags = kwargs.get("metadata"), kwargs.get("tags")
        node = metadata.get("langgraph_node") if isinstance(metadata, dict) else None
        if node != name or (tags and _HIDDEN_TAG in tags):  # plumbing inside a node: folded
            self._track(run_id, Run(name, None, parent.scope))
            return
        if parent.own is None:  # a node of a graph run inside another node's code (a sub-agent): the
            # graph gets its span now, at its first node (before anything ran in it)
            parent.own = parent.scope = open_span(None, parent.name, parent.scope)
        if name in AGENT_NODES and parent.own is not None and parent.own.kind != sc.SPAN_KIND_AGENT:
            promote_to_agent(parent.own, parent.name)
        self._track(run_id, Run(name, *_both(open_span(None, name, parent.scope))))

    def tool_start(self, run_id: Any, parent_run_id: Any, serialized: Any, input_str: Any, kwargs: Any) -> None:
        parent = self.runs.get(parent_run_id) if parent_run_id is not None else None
        info = serialized if isinstance(serialized, dict) else {}
        name = clean(str(info.get("name") or kwargs.get("name") or "tool"))
        attrs: dict[str, Any] = {}
        call_id = kwargs.get("tool_call_id")
        if isinstance(call_id, str):
            attrs[sc.GEN_AI_TOOL_CALL_ID] = clean(call_id)
        description = info.get("description")
        if isinstance(description, str) and description:
            attrs[sc.GEN_AI_TOOL_DESCRIPTION] = clean(description)
        inputs = kwargs.get("inputs")
        span = open_span(
            sc.SPAN_KIND_TOOL,
            name,
            parent.scope if parent is not None else None,
            attributes=attrs,
            inputs=input_str if inputs is None else inputs,
        )
        self._track(run_id, Run(name, *_both(span)))

    def fold(self, run_id: Any, parent_run_id: Any) -> None:
        """A run with no span of its own (a retriever): what runs beneath it goes under its parent's span."""
        parent = self.runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is not None:
            self._track(run_id, Run("", None, parent.scope))

    def end(self, run_id: Any, error: BaseException | None = None, result: Any = None) -> None:
        run = self.runs.pop(run_id, None)
        if run is None or run.own is None:
            return
        if error is not None and _is_control_flow(error):
            error = None
        if run.own.kind == sc.SPAN_KIND_TOOL and error is None:
            call_id = getattr(result, "tool_call_id", None)  # a ToolMessage's: older langchain-core
            if isinstance(call_id, str):  # passes no tool_call_id to on_tool_start
                run.own.span.set_attribute(sc.GEN_AI_TOOL_CALL_ID, clean(call_id))
            run.own.end(result=getattr(result, "content", result))  # a ToolMessage: its content
        else:
            run.own.end(error)

    def _track(self, run_id: Any, run: Run) -> None:
        runs = self.runs
        if len(runs) >= _MAX_RUNS:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # another thread changed it: fine
                del runs[next(iter(runs))]
        runs[run_id] = run

    def enter_work(self, config: Any) -> None:
        """In the fresh context LangChain made for a run's work: make that run's span current there."""
        if not self.runs or not isinstance(config, dict):
            return
        run_id = getattr(config.get("callbacks"), "parent_run_id", None)
        run = self.runs.get(run_id) if run_id is not None else None
        if run is not None and run.scope is not None:
            run.scope.attach()  # never detached: this context is the run's work's own, dropped with it


def _both(span: ObservedSpan | None) -> tuple[ObservedSpan | None, ObservedSpan | None]:
    return span, span


def open_span(
    kind: str | None,
    name: str,
    parent: ObservedSpan | None,
    *,
    attributes: dict[str, Any] | None = None,
    inputs: Any = None,
) -> ObservedSpan | None:
    """Open a span under ``parent`` (its span and its attribution, so its rollups count what runs
    beneath), or under what is current here when the run has no parent we know."""
    capture = kind == sc.SPAN_KIND_TOOL
    if parent is None:
        return ObservedSpan.open(kind, name, attributes=attributes, inputs=inputs, capture=capture)
    token = _attribution.set_current(parent.attribution)
    try:
        context = trace.set_span_in_context(parent.span)
        return ObservedSpan.open(kind, name, attributes=attributes, inputs=inputs, capture=capture, parent=context)
    finally:
        token.var.reset(token)


def promote_to_agent(observed: ObservedSpan, name: str) -> None:
    """A workflow/task span found to be an agent (before anything ran in it): ``invoke_agent {name}``."""
    observed.kind = sc.SPAN_KIND_AGENT
    observed.span.update_name(f"{sc.OP_INVOKE_AGENT} {name}")
    attrs: dict[str, Any] = {
        sc.LLMWATCH_SPAN_KIND: sc.SPAN_KIND_AGENT,
        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
        sc.GEN_AI_AGENT_NAME: name,
    }
    if observed.openinference:
        attrs[sc.OI_SPAN_KIND] = sc.OI_KIND_AGENT
    observed.span.set_attributes(attrs)
    observed.attribution = observed.attribution.within(observed.attribution.rollups, name)


def _is_control_flow(error: BaseException) -> bool:
    return any(cls.__name__ in _CONTROL_FLOW for cls in type(error).__mro__)


# --- the handler ----------------------------------------------------------------------------------

_bridge: Bridge | None = None
_var: ContextVar[Any] | None = None


def _guarded(place: str, call: Callable[..., None], *args: Any) -> None:
    bridge = _bridge
    if bridge is None or not bridge.active:
        return
    try:
        call(bridge, *args)
    except Exception as exc:
        record_internal_error(place, exc)


def _handler_class(base: type) -> type:
    """A ``BaseCallbackHandler`` subclass (built at install: langchain_core is imported by then)."""

    class LlmwatchCallbackHandler(base):  # type: ignore[misc]
        """llmwatch's spans for LangChain runs; sync methods, called inline on the async path too."""

        run_inline = True

        @property
        def raise_error(self) -> bool:  # our own tests see our bugs; elsewhere LangChain logs and goes on
            return _health.raise_internal_errors

        def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, **kwargs: Any) -> None:
            _guarded("langchain chain start", Bridge.chain_start, run_id, serialized, kwargs)

        def on_chain_end(self, outputs: Any, *, run_id: Any, **kwargs: Any) -> None:
            _guarded("langchain chain end", Bridge.end, run_id)

        def on_chain_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            _guarded("langchain chain error", Bridge.end, run_id, error)

        def on_tool_start(self, serialized: Any, input_str: Any, *, run_id: Any, **kwargs: Any) -> None:
            parent = kwargs.get("parent_run_id")
            _guarded("langchain tool start", Bridge.tool_start, run_id, parent, serialized, input_str, kwargs)

        def on_tool_end(self, output: Any, *, run_id: Any, **kwargs: Any) -> None:
            _guarded("langchain tool end", Bridge.end, run_id, None, output)

        def on_tool_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            _guarded("langchain tool error", Bridge.end, run_id, error)

        def on_retriever_start(self, serialized: Any, query: Any, *, run_id: Any, **kwargs: Any) -> None:
            _guarded("langchain retriever start", Bridge.fold, run_id, kwargs.get("parent_run_id"))

        def on_retriever_end(self, documents: Any, *, run_id: Any, **kwargs: Any) -> None:
            _guarded("langchain retriever end", Bridge.end, run_id)

        def on_retriever_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            _guarded("langchain retriever error", Bridge.end, run_id, error)

    return LlmwatchCallbackHandler


def _wrap_set_config_context(original: Callable[..., Any]) -> Callable[..., Any]:
    def _set_config_context(config: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(config, *args, **kwargs)  # LangChain's own, unguarded: its errors are its own
        _guarded("langchain work context", Bridge.enter_work, config)
        return result

    _set_config_context.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(_set_config_context, _ORIGINAL, original)
    return _set_config_context


def _patch_config_context(module: ModuleType) -> None:
    original = getattr(module, "_set_config_context", None)
    if original is None or hasattr(original, _ORIGINAL):
        return
    module._set_config_context = _wrap_set_config_context(original)  # type: ignore[attr-defined]


def _unpatch_config_context(module: ModuleType) -> None:
    current = getattr(module, "_set_config_context", None)
    original = getattr(current, _ORIGINAL, None)
    if original is not None:
        module._set_config_context = original  # type: ignore[attr-defined]


def install(module: ModuleType) -> None:
    """Register the handler with LangChain's configure hook; wrap the work-context setters."""
    global _bridge, _var
    if _bridge is not None and _bridge.active:
        return
    callbacks_base = importlib.import_module("langchain_core.callbacks.base")
    tracer_context = importlib.import_module("langchain_core.tracers.context")
    _bridge = Bridge()
    handler = _handler_class(callbacks_base.BaseCallbackHandler)()
    _var = ContextVar("llmwatch_langchain_handler", default=handler)
    tracer_context.register_configure_hook(_var, inheritable=True)
    for name in _CONFIG_CONTEXT_MODULES:
        _import_hooks.when_imported(name, ("langchain", name), _patch_config_context)


def uninstall() -> None:
    global _bridge, _var
    if _bridge is not None:
        _bridge.active = False
    _bridge = None
    for name in _CONFIG_CONTEXT_MODULES:
        _import_hooks.cancel(("langchain", name))
        module = sys.modules.get(name)
        if module is not None:
            _unpatch_config_context(module)
    var, _var = _var, None
    hooks_module = sys.modules.get("langchain_core.tracers.context")
    hooks = getattr(hooks_module, "_configure_hooks", None)
    if var is not None and isinstance(hooks, list):
        hooks[:] = [hook for hook in hooks if not (isinstance(hook, tuple) and hook and hook[0] is var)]
