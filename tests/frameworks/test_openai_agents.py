"""openai-agents through llmwatch's bridge: the real Agents SDK and the real openai SDK on the loopback
server (its ``agent`` scenario answers a tool call first, a final text once a tool result is in).

The SDK's default exporter (to OpenAI's backend) is replaced for these tests by processors we choose:
ours alone, or ours beside an exporter pointed at the loopback server or at a closed port. No test
reaches the network.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

agents = pytest.importorskip("agents")

from openai import AsyncOpenAI  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402

import llmwatch  # noqa: E402
import llmwatch.testing  # noqa: E402
from llmwatch import _health  # noqa: E402
from llmwatch._demo._server import FakeLLMServer  # noqa: E402
from llmwatch._instrument import _frameworks, _openai_agents  # noqa: E402
from llmwatch.testing import Captured  # noqa: E402

MODEL = "gpt-4o-mini"
ASK = "What is the weather in Paris?"


@agents.function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.fixture(autouse=True)
def _sdk_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only llmwatch's processor (no export to OpenAI's backend), no key for the SDK's exporter."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_AGENTS_DISABLE_TRACING", raising=False)
    _frameworks.uninstall_all()  # whatever an earlier test's configure() left installed
    agents.set_trace_processors([])
    _openai_agents._PROCESSOR = None  # registered afresh below, as configure() would in a new process
    _frameworks.install_all()
    yield
    _frameworks.uninstall_all()
    agents.set_trace_processors([])


def client(server: FakeLLMServer, *, traced: bool = True) -> AsyncOpenAI:
    """A fresh client per event loop (``run_sync`` runs its own)."""
    made = AsyncOpenAI(
        api_key="sk-test-key-0123456789",
        base_url=server.openai_base_url,
        max_retries=0,
        default_headers={"x-fake-scenario": "agent"},
    )
    return llmwatch.instrument(made, provider="openai") if traced else made


def weather_agent(server: FakeLLMServer, *, chat: bool = False, traced: bool = True, **options: Any) -> Any:
    model_class = agents.OpenAIChatCompletionsModel if chat else agents.OpenAIResponsesModel
    model = model_class(model=MODEL, openai_client=client(server, traced=traced))
    return agents.Agent(name="weather", instructions="Answer briefly.", tools=[get_weather], model=model, **options)


def summary(result: Any) -> tuple[Any, ...]:
    """What the app sees of a run (response ids are the server's random ones: left out)."""
    items = [(type(item).__name__, getattr(item.raw_item, "type", None)) for item in result.new_items]
    outputs = [item.output for item in result.new_items if hasattr(item, "output")]
    usage = result.context_wrapper.usage
    return (
        type(result).__name__,
        result.final_output,
        items,
        outputs,
        result.last_agent.name,
        (usage.requests, usage.input_tokens, usage.output_tokens),
    )


def model_requests(server: FakeLLMServer, since: int) -> int:
    return sum(1 for r in server.requests[since:] if r.path in ("/v1/responses", "/v1/chat/completions"))


def by_name(captured: Captured, name: str) -> ReadableSpan:
    (span,) = [s for s in captured.spans if s.name == name]
    return span


def children(captured: Captured, parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in captured.spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def assert_rollups_are_sums(span: ReadableSpan, llm_spans: list[ReadableSpan]) -> None:
    attrs = span.attributes or {}
    assert attrs["llmwatch.rollup.llm_calls"] == len(llm_spans)
    assert attrs["llmwatch.rollup.input_tokens"] == sum(s.attributes["gen_ai.usage.input_tokens"] for s in llm_spans)
    assert attrs["llmwatch.rollup.output_tokens"] == sum(s.attributes["gen_ai.usage.output_tokens"] for s in llm_spans)
    cost = sum(s.attributes["llmwatch.cost.usd"] for s in llm_spans)
    assert attrs["llmwatch.rollup.cost_usd"] == pytest.approx(cost)
    assert cost > 0


def assert_agent_run(captured: Captured, requests: int) -> None:
    """One weather run: workflow > agent > (2 LLM spans, the tool span), rollups the LLM spans' sums."""
    llm = captured.llm_spans()
    assert len(llm) == requests == 2  # one span per model call, none re-emitted from the SDK's spans
    workflow = by_name(captured, "invoke_workflow Agent workflow")
    agent = by_name(captured, "invoke_agent weather")
    tool = by_name(captured, "execute_tool get_weather")
    assert workflow.parent is None
    assert agent.parent is not None and agent.parent.span_id == workflow.context.span_id
    assert {s.context.span_id for s in children(captured, agent)} == {s.context.span_id for s in [*llm, tool]}
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "weather"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "get_weather"
    assert tool.attributes["gen_ai.tool.type"] == "function"
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert_rollups_are_sums(agent, llm)
    assert_rollups_are_sums(workflow, llm)
    assert tool.attributes["llmwatch.rollup.llm_calls"] == 0
    run_id = workflow.attributes["llmwatch.run.id"]
    assert len(run_id) == 16 and agent.attributes["llmwatch.run.id"] == tool.attributes["llmwatch.run.id"] == run_id
    assert {s.attributes["llmwatch.run.id"] for s in llm} == {run_id}
    assert {s.attributes["llmwatch.agent.name"] for s in llm} == {"weather"}


async def run_async(agent: Any) -> Any:
    return await agents.Runner.run(agent, ASK)


def run_sync(agent: Any) -> Any:
    return agents.Runner.run_sync(agent, ASK)


async def run_streamed(agent: Any) -> Any:
    result = agents.Runner.run_streamed(agent, ASK)
    async for _event in result.stream_events():
        pass
    return result


def untraced_result(server: FakeLLMServer, run: str, **options: Any) -> Any:
    """The same run without llmwatch (bridge off, client not instrumented)."""
    _frameworks.uninstall_all()
    try:
        agent = weather_agent(server, traced=False, **options)
        return run_sync(agent) if run == "sync" else asyncio.run(globals()[f"run_{run}"](agent))
    finally:
        _frameworks.install_all()


@pytest.mark.parametrize("run", ["async", "sync", "streamed"])
@pytest.mark.parametrize("chat", [False, True], ids=["responses", "chat_completions"])
def test_agent_with_a_tool(server: FakeLLMServer, captured: Captured, run: str, chat: bool) -> None:
    plain = untraced_result(server, run, chat=chat)
    before = len(server.requests)
    agent = weather_agent(server, chat=chat)
    result = run_sync(agent) if run == "sync" else asyncio.run(globals()[f"run_{run}"](agent))
    assert summary(result) == summary(plain)
    assert type(result) is type(plain)
    assert summary(result)[3] == ["sunny in Paris"]
    assert_agent_run(captured, model_requests(server, before))


def test_the_bridge_is_installed_by_configure_and_quiet_after_uninstrument(server: FakeLLMServer) -> None:
    _frameworks.uninstall_all()
    agents.set_trace_processors([])
    _openai_agents._PROCESSOR = None
    llmwatch.configure(instrument=True, exporter="none", service_name="agents-test")
    try:
        with llmwatch.testing.capture() as captured:
            run_sync(weather_agent(server, traced=False))  # configure(instrument=True) traces every client
            assert_agent_run(captured, 2)
            llmwatch.uninstrument()
            captured.clear()
            run_sync(weather_agent(server, traced=False))
            assert captured.spans == []
    finally:
        llmwatch.shutdown(timeout_s=5)


def test_tool_arguments_and_result_only_with_content_capture(server: FakeLLMServer) -> None:
    with llmwatch.testing.capture() as captured:
        run_sync(weather_agent(server))
    tool = by_name(captured, "execute_tool get_weather")
    assert "gen_ai.tool.call.arguments" not in tool.attributes
    assert "gen_ai.tool.call.result" not in tool.attributes
    with llmwatch.testing.capture(capture_content=True) as captured:
        run_sync(weather_agent(server))
    tool = by_name(captured, "execute_tool get_weather")
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"city":"Paris"}'
    assert tool.attributes["gen_ai.tool.call.result"] == '"sunny in Paris"'


def test_a_handoff_between_two_agents(server: FakeLLMServer, captured: Captured) -> None:
    def triage() -> Any:
        billing = agents.Agent(
            name="billing", model=agents.OpenAIResponsesModel(model=MODEL, openai_client=client(server))
        )
        model = agents.OpenAIResponsesModel(model=MODEL, openai_client=client(server))
        return agents.Agent(name="triage", instructions="Route.", handoffs=[billing], model=model)

    _frameworks.uninstall_all()
    plain = agents.Runner.run_sync(triage(), "I want a refund")
    _frameworks.install_all()
    captured.clear()
    before = len(server.requests)
    result = agents.Runner.run_sync(triage(), "I want a refund")
    assert summary(result) == summary(plain)
    assert result.last_agent.name == "billing"
    llm = captured.llm_spans()
    assert len(llm) == model_requests(server, before) == 2
    workflow = by_name(captured, "invoke_workflow Agent workflow")
    first, second = by_name(captured, "invoke_agent triage"), by_name(captured, "invoke_agent billing")
    handoff = by_name(captured, "handoff triage -> billing")
    assert handoff.attributes["llmwatch.handoff.from_agent"] == "triage"
    assert handoff.attributes["llmwatch.handoff.to_agent"] == "billing"
    assert handoff.attributes["llmwatch.span.kind"] == "task"
    for agent in (first, second):
        assert agent.parent is not None and agent.parent.span_id == workflow.context.span_id
        (own,) = [s for s in children(captured, agent) if s in llm]
        assert_rollups_are_sums(agent, [own])
    assert handoff.parent is not None and handoff.parent.span_id == first.context.span_id
    assert_rollups_are_sums(workflow, llm)


def test_a_guardrail_is_a_task_span_with_its_verdict(server: FakeLLMServer, captured: Captured) -> None:
    @agents.input_guardrail
    def polite(context: Any, agent: Any, text: Any) -> Any:
        return agents.GuardrailFunctionOutput(output_info=None, tripwire_triggered=False)

    result = run_sync(weather_agent(server, input_guardrails=[polite]))
    assert result.final_output
    guardrail = by_name(captured, "guardrail polite")
    agent = by_name(captured, "invoke_agent weather")
    assert guardrail.parent is not None and guardrail.parent.span_id == agent.context.span_id
    assert guardrail.attributes["llmwatch.guardrail.name"] == "polite"
    assert guardrail.attributes["llmwatch.guardrail.triggered"] is False


def test_hosted_tools_in_a_response_become_tool_spans(captured: Captured) -> None:
    from openai.types.responses import Response, ResponseFunctionWebSearch, ResponseOutputMessage

    search = ResponseFunctionWebSearch.model_construct(id="ws_1", status="completed", type="web_search_call")
    message = ResponseOutputMessage.model_construct(id="msg_1", type="message", role="assistant", content=[])
    response = Response.model_construct(id="resp_1", output=[search, message])
    with agents.trace("research"), agents.agent_span(name="researcher"), agents.response_span() as span:
        span.span_data.response = response
    tool = by_name(captured, "execute_tool web_search")
    agent = by_name(captured, "invoke_agent researcher")
    assert tool.parent is not None and tool.parent.span_id == agent.context.span_id
    assert tool.attributes["gen_ai.tool.type"] == "extension"
    assert tool.attributes["gen_ai.tool.call.id"] == "ws_1"
    assert captured.llm_spans() == []  # the response span itself is never re-emitted
    assert [s.name for s in captured.spans if s.parent is None] == ["invoke_workflow research"]


@pytest.mark.parametrize("where", ["_open_for", "_close"])
def test_a_fault_in_the_bridge_leaves_the_run_unchanged(
    server: FakeLLMServer, captured: Captured, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    plain = untraced_result(server, "sync")
    monkeypatch.setattr(_health, "raise_internal_errors", False)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(_openai_agents, where, broken)
    errors = llmwatch.stats()["internal_errors"]
    before = len(server.requests)
    result = run_sync(weather_agent(server))
    assert summary(result) == summary(plain)
    assert llmwatch.stats()["internal_errors"] > errors
    assert len(captured.llm_spans()) == model_requests(server, before) == 2  # the model calls still traced


@pytest.mark.parametrize("run", ["async", "streamed"])
def test_a_per_run_budget_stops_the_agents_next_model_call(server: FakeLLMServer, captured: Captured, run: str) -> None:
    llmwatch.budget(1e-9, per="run")  # the first call of a run spends past it: the next is refused
    for _ in range(2):  # a new run starts afresh: its first call goes out again
        before = len(server.requests)
        with pytest.raises(llmwatch.BudgetExceeded) as refused:
            asyncio.run(globals()[f"run_{run}"](weather_agent(server)))
        assert refused.value.scope == "run"
        assert model_requests(server, before) == 1
    agent_spans = [s for s in captured.spans if s.name == "invoke_agent weather"]
    assert len(agent_spans) == 2
    assert all(s.attributes["llmwatch.rollup.llm_calls"] == 1 for s in agent_spans)
    assert len({s.attributes["llmwatch.run.id"] for s in agent_spans}) == 2


def test_the_sdks_own_exporter_on_beside_llmwatch(server: FakeLLMServer, captured: Captured) -> None:
    """The SDK's exporter posting to the loopback server (which has no tracing route: an error), with
    no key (it skips), and to a closed port (offline): the run and llmwatch's spans are unaffected."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    exporters = [
        agents.tracing.processors.BackendSpanExporter(api_key="sk-x", endpoint=server.base_url + "/v1/traces/ingest"),
        agents.tracing.processors.BackendSpanExporter(endpoint=server.base_url + "/v1/traces/ingest"),
        agents.tracing.processors.BackendSpanExporter(
            api_key="sk-x", endpoint=f"http://127.0.0.1:{closed_port}/v1/traces/ingest", max_retries=1, base_delay=0.01
        ),
    ]
    processors = [agents.tracing.processors.BatchTraceProcessor(exporter) for exporter in exporters]
    for processor in processors:
        agents.add_trace_processor(processor)
    plain = untraced_result(server, "async")
    captured.clear()
    before = len(server.requests)
    started = time.monotonic()
    result = asyncio.run(run_async(weather_agent(server)))
    assert time.monotonic() - started < 5  # the exporters work on their own threads
    for processor in processors:
        processor.force_flush()
        processor.shutdown(timeout=5)
    assert summary(result) == summary(plain)
    assert_agent_run(captured, model_requests(server, before))
    posted = [r for r in server.requests[before:] if r.path.startswith("/v1/traces")]
    assert posted  # the keyed exporter did post (and was refused); the keyless one skipped


def test_inside_the_apps_own_observe_span_the_run_is_the_apps(server: FakeLLMServer, captured: Captured) -> None:
    @llmwatch.observe(kind="workflow", name="support")
    def support() -> Any:
        with agents.trace("weather desk"), agents.custom_span("lookup"):
            return run_sync(weather_agent(server))

    assert support().final_output
    outer = by_name(captured, "invoke_workflow support")
    desk = by_name(captured, "invoke_workflow weather desk")
    lookup = by_name(captured, "lookup")
    agent = by_name(captured, "invoke_agent weather")
    assert desk.parent is not None and desk.parent.span_id == outer.context.span_id
    assert lookup.parent is not None and lookup.parent.span_id == desk.context.span_id
    assert agent.parent is not None and agent.parent.span_id == lookup.context.span_id  # the run joins the trace
    assert lookup.attributes["llmwatch.span.kind"] == "task"
    run_id = outer.attributes["llmwatch.run.id"]
    assert {s.attributes["llmwatch.run.id"] for s in captured.llm_spans()} == {run_id}
    assert_rollups_are_sums(outer, captured.llm_spans())


def test_with_the_sdks_tracing_disabled_only_the_model_calls_are_traced(
    server: FakeLLMServer, captured: Captured
) -> None:
    agents.set_tracing_disabled(True)
    try:
        before = len(server.requests)
        assert run_sync(weather_agent(server)).final_output
    finally:
        agents.set_tracing_disabled(False)
    assert len(captured.llm_spans()) == model_requests(server, before) == 2
    assert [s for s in captured.spans if s not in captured.llm_spans()] == []
