"""openai-agents (``import agents``): its traces and spans as llmwatch workflow, agent and tool spans.

One ``TracingProcessor`` registered with ``agents.add_trace_processor``. The SDK calls it
synchronously, inside the frame that does the work: a trace starts in ``Runner.run``'s own coroutine
(for ``run_streamed``, in the background task that runs the loop, from start to finish), an agent
span in the run loop's coroutine, and function, handoff and guardrail spans are ``with`` blocks in
the task that runs them (the SDK marks each current in its own ContextVar there, and resets it at the
end from the same context). So ``on_span_start`` attaches our span (OTel context and llmwatch
attribution) and ``on_span_end`` detaches it in the same context, and the model call the SDK makes
inside, in a task it creates from that context (``asyncio.create_task`` copies it), goes through
llmwatch's OpenAI adapter (Responses API, or chat completions with ``OpenAIChatCompletionsModel``)
as a child of the agent span and counts in its rollups. A detach whose token belongs to another
context (an abandoned stream finalised elsewhere: the SDK skips its own reset there too) is skipped.

What becomes what (names in ``_semconv``):

- a trace: ``invoke_workflow {workflow_name}`` (``gen_ai.conversation.id`` from its ``group_id``);
  the outermost observe span unless the app opened one around it, so it is the run of
  ``budget(per="run")`` and its id is ``llmwatch.run.id``;
- ``AgentSpanData``: ``invoke_agent {name}``;
- ``FunctionSpanData`` (function tools, and the SDK-side tools it traces the same way: computer,
  shell, apply_patch, MCP tools called through the SDK): ``execute_tool {name}``, arguments (its
  ``input``) and result (its ``output``) under the content rules;
- ``HandoffSpanData``: a task span ``handoff {from} -> {to}``. The conventions have no handoff
  operation, and ``execute_tool`` would need the tool name and call id the SDK's handoff span does not
  carry; the transfer is control flow between two agents, shown with ``llmwatch.handoff.from_agent``
  / ``.to_agent``. The next agent's ``invoke_agent`` span follows as its sibling;
- ``GuardrailSpanData``: a task span ``guardrail {name}`` with ``llmwatch.guardrail.triggered``;
- ``MCPListToolsSpanData``: a task span ``mcp list_tools {server}``; ``CustomSpanData``: a task span;
- hosted tools (web search, file search, code interpreter, ... run by OpenAI inside the model call):
  the SDK has no span for them; the output items of the ``ResponseSpanData`` that returned them
  become ``execute_tool {type}`` spans (``gen_ai.tool.type`` extension, datastore for file search,
  ``gen_ai.tool.call.id``), children of the agent span, opened and ended when the model call's span in the SDK ends;
- ``ResponseSpanData`` / ``GenerationSpanData`` are never re-emitted: the model call's span is the
  OpenAI adapter's. They, the SDK's task and turn spans and voice spans open nothing and are
  transparent: what starts inside them is parented to the nearest span above that we opened.

The SDK's own exporter (a ``BatchTraceProcessor`` posting to OpenAI's backend from a worker thread)
is another processor beside ours and independent of it: with no key it logs a warning and drops the
batch; offline it retries on its thread and gives up at its deadline (5 s at exit). Neither blocks the
app nor touches our spans. ``set_tracing_disabled(True)`` / ``OPENAI_AGENTS_DISABLE_TRACING=1``
stop every processor, ours too (the model calls are still traced, without agent spans);
``set_trace_processors([...])`` replacing the list drops ours unless it is in it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from opentelemetry import trace as otel_trace

from llmwatch import _semconv as sc
from llmwatch._health import record_internal_error
from llmwatch._instrument._observe import ObservedSpan
from llmwatch._text import clean

FRAMEWORK_MODULE = "agents"

# SDK span types that open nothing (the model call is the SDK adapter's span; task and turn spans
# only group an agent's work; voice spans time audio the media adapters trace).
_TRANSPARENT = frozenset({"response", "generation", "task", "turn", "transcription", "speech", "speech_group"})
# Responses API output items that are tools run by OpenAI: item type -> gen_ai.tool.type
_HOSTED = {
    "web_search_call": sc.TOOL_TYPE_EXTENSION,
    "file_search_call": sc.TOOL_TYPE_DATASTORE,
    "code_interpreter_call": sc.TOOL_TYPE_EXTENSION,
    "image_generation_call": sc.TOOL_TYPE_EXTENSION,
    "mcp_call": sc.TOOL_TYPE_EXTENSION,
    "mcp_list_tools": sc.TOOL_TYPE_EXTENSION,
    "tool_search_call": sc.TOOL_TYPE_EXTENSION,
}
_MAX_LIVE = 10_000  # spans never ended (a run abandoned mid-way) cannot grow the table past this


class AgentsSpanError(Exception):
    """An openai-agents span that ended with ``span.error`` set (its message): the span's error."""


class _Live:
    """One SDK trace or span in flight: our span (None for a transparent one), the tokens of its
    attach, and the nearest span of ours at or above it (what its children are parented to)."""

    __slots__ = ("anchor", "obs", "tokens")

    def __init__(self, obs: ObservedSpan | None, tokens: Any, anchor: ObservedSpan | None) -> None:
        self.obs = obs
        self.tokens = tokens
        self.anchor = anchor


class _Bridge:
    """The processor's behaviour; ``install`` mixes it with the SDK's ``TracingProcessor``."""

    def __init__(self) -> None:
        self.active = True
        self.live: dict[str, _Live] = {}  # SDK trace id / span id -> what we opened for it

    # --- the SDK's hooks (each guarded: the SDK logs a processor's error, we count it) ---
    def on_trace_start(self, trace: Any) -> None:
        try:
            if self.active and len(self.live) < _MAX_LIVE:
                self._trace_start(trace)
        except Exception as exc:
            record_internal_error("openai-agents trace start", exc)

    def on_trace_end(self, trace: Any) -> None:
        try:
            entry = self.live.pop(trace.trace_id, None)
            if entry is not None:
                _close(entry, None, None)
        except Exception as exc:
            record_internal_error("openai-agents trace end", exc)

    def on_span_start(self, span: Any) -> None:
        try:
            if self.active and len(self.live) < _MAX_LIVE:
                self._span_start(span)
        except Exception as exc:
            record_internal_error("openai-agents span start", exc)

    def on_span_end(self, span: Any) -> None:
        try:
            entry = self.live.pop(span.span_id, None)
            if entry is not None:
                self._span_end(span, entry)
        except Exception as exc:
            record_internal_error("openai-agents span end", exc)

    def shutdown(self) -> None:
        return None

    def force_flush(self) -> None:
        return None

    # --- the work ---
    def _trace_start(self, trace: Any) -> None:
        attributes: dict[str, Any] = {}
        group_id = getattr(trace, "group_id", None)
        if isinstance(group_id, str) and group_id:
            attributes[sc.GEN_AI_CONVERSATION_ID] = group_id
        obs = ObservedSpan.open(sc.SPAN_KIND_WORKFLOW, clean(str(trace.name)), attributes=attributes)
        self.live[trace.trace_id] = _Live(obs, _attach(obs), obs)

    def _span_start(self, span: Any) -> None:
        parent = self.live.get(span.parent_id) if span.parent_id else None
        if parent is None:
            parent = self.live.get(span.trace_id)
        anchor = parent.anchor if parent is not None else None
        data = span.span_data
        opened = _open_for(data, anchor)
        if opened is None:
            self.live[span.span_id] = _Live(None, None, anchor)
            return
        self.live[span.span_id] = _Live(opened, _attach(opened), opened)

    def _span_end(self, span: Any, entry: _Live) -> None:
        data = span.span_data
        if entry.obs is None:
            if data.type == "response" and entry.anchor is not None:
                _hosted_tools(data, entry.anchor)
            return
        obs = entry.obs
        result: Any = None
        kind = data.type
        if kind == "function":
            if obs.content is not None and data.input is not None:
                obs.span.set_attribute(sc.GEN_AI_TOOL_CALL_ARGUMENTS, _content_json(obs, _arguments(data.input)))
            result = data.output
        elif kind == "guardrail":
            obs.span.set_attribute(sc.LLMWATCH_GUARDRAIL_TRIGGERED, bool(data.triggered))
        elif kind == "handoff" and data.to_agent:
            to_agent = clean(str(data.to_agent))
            obs.span.set_attribute(sc.LLMWATCH_HANDOFF_TO_AGENT, to_agent)
            obs.span.update_name(f"handoff {clean(str(data.from_agent))} -> {to_agent}")
        error = span.error
        failure = AgentsSpanError(str(error.get("message") or "error")) if error else None
        _close(entry, failure, result)


def _open_for(data: Any, anchor: ObservedSpan | None) -> ObservedSpan | None:
    """Our span for an SDK span's data, or None for a transparent one."""
    kind = data.type
    if kind in _TRANSPARENT:
        return None
    parent = otel_trace.set_span_in_context(anchor.span) if anchor is not None else None
    if kind == "agent":
        return ObservedSpan.open(sc.SPAN_KIND_AGENT, clean(str(data.name)), parent=parent)
    if kind == "function":
        return ObservedSpan.open(sc.SPAN_KIND_TOOL, clean(str(data.name)), capture=True, parent=parent)
    if kind == "handoff":
        from_agent = clean(str(data.from_agent))
        attributes = {sc.LLMWATCH_HANDOFF_FROM_AGENT: from_agent}
        return ObservedSpan.open(sc.SPAN_KIND_TASK, f"handoff {from_agent}", attributes=attributes, parent=parent)
    if kind == "guardrail":
        name = clean(str(data.name))
        attributes = {sc.LLMWATCH_GUARDRAIL_NAME: name}
        return ObservedSpan.open(sc.SPAN_KIND_TASK, f"guardrail {name}", attributes=attributes, parent=parent)
    if kind == "mcp_tools":
        return ObservedSpan.open(sc.SPAN_KIND_TASK, f"mcp list_tools {clean(str(data.server))}", parent=parent)
    custom = getattr(data, "name", None)  # a custom span (or one of a newer SDK): a task span by its name
    return ObservedSpan.open(sc.SPAN_KIND_TASK, clean(str(custom or kind)), parent=parent)


def _hosted_tools(data: Any, anchor: ObservedSpan) -> None:
    """``execute_tool`` spans for the tools OpenAI ran inside this model call (the SDK has none)."""
    response = getattr(data, "response", None)
    items = getattr(response, "output", None) or ()
    hosted = [item for item in items if getattr(item, "type", None) in _HOSTED]
    if not hosted:
        return
    parent = otel_trace.set_span_in_context(anchor.span)
    for item in hosted:
        item_type: str = item.type
        name = item_type.removesuffix("_call")
        if item_type == "mcp_call" and getattr(item, "name", None):
            name = clean(str(item.name))
        attributes: dict[str, Any] = {sc.GEN_AI_TOOL_TYPE: _HOSTED[item_type]}
        call_id = getattr(item, "id", None)
        if isinstance(call_id, str) and call_id:
            attributes[sc.GEN_AI_TOOL_CALL_ID] = call_id
        obs = ObservedSpan.open(sc.SPAN_KIND_TOOL, name, attributes=attributes, parent=parent)
        if obs is not None:
            status = getattr(item, "status", None)
            obs.end(AgentsSpanError(f"{item_type} {status}") if status in ("failed", "incomplete") else None)


def _attach(obs: ObservedSpan | None) -> Any:
    return obs.attach() if obs is not None else None


def _close(entry: _Live, error: BaseException | None, result: Any) -> None:
    if entry.tokens is not None:
        with contextlib.suppress(ValueError):  # a token of another context (module docstring): nothing to undo
            ObservedSpan.detach(entry.tokens)
    if entry.obs is not None:
        entry.obs.end(error, result)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _content_json(obs: ObservedSpan, value: Any) -> str:
    policy = obs.content
    assert policy is not None
    return policy.json(policy.any_value(value))


_PROCESSOR: Any = None  # registered once: the SDK has no way to remove a processor


def install(module: Any) -> None:
    """Register llmwatch's processor with the SDK (once; ``uninstall`` only quiets it)."""
    global _PROCESSOR
    if not hasattr(module, "add_trace_processor"):  # an app's own package named ``agents``: not the SDK
        return
    if _PROCESSOR is None:
        base = module.TracingProcessor
        processor_class = type("LlmwatchTracingProcessor", (_Bridge, base), {"__module__": __name__})
        processor = processor_class()
        module.add_trace_processor(processor)
        _PROCESSOR = processor
    _PROCESSOR.active = True


def uninstall() -> None:
    """Stop opening spans (those in flight still end): the SDK cannot unregister a processor."""
    if _PROCESSOR is not None:
        _PROCESSOR.active = False
