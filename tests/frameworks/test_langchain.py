"""The LangChain / LangGraph bridge with the real frameworks and SDKs against the loopback server.

A LangGraph ReAct agent (``create_react_agent`` over ``ChatOpenAI``) and a plain LCEL chain
(``prompt | ChatAnthropic``): one LLM span per model request, under the agent/node/tool spans, counted
in their rollups, for ``invoke``, ``ainvoke``, ``stream`` and ``astream``; the framework's result is the
same with and without llmwatch, and a fault in the bridge changes nothing but a counter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")
pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")

import openai
from langchain_anthropic import ChatAnthropic
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

import llmwatch
from llmwatch import _attribution, _health, _instrument
from llmwatch import _semconv as sc
from llmwatch._demo._server import FakeLLMServer
from llmwatch._instrument import _frameworks, _langchain
from llmwatch.testing import Captured

# Moved to langchain.agents.create_agent in LangGraph 1.0 (langchain is not installed here); still there.
pytestmark = pytest.mark.filterwarnings("ignore:create_react_agent has been moved")

QUESTION = {"messages": [("user", "What is the weather in Paris?")]}


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"sunny in {city}"


@pytest.fixture(autouse=True)
def _no_bridge_left() -> Iterator[None]:
    _frameworks.uninstall_all()  # another test's instrument_all() may have installed it
    yield
    _frameworks.uninstall_all()


@pytest.fixture()
def bridge() -> None:
    _instrument.instrument_all()  # what configure(instrument=True) does: SDKs and framework bridges


def chat_openai(server: FakeLLMServer) -> Any:
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.openai_base_url,
        api_key="sk-test",
        max_retries=0,
        default_headers={"x-fake-scenario": "agent"},
        # langchain-openai caches one async HTTP client per base URL; each test has its own event loop
        http_async_client=openai.DefaultAsyncHttpxClient(),
    )


def react_agent(server: FakeLLMServer, tools: list[Any] | None = None) -> Any:
    return create_react_agent(chat_openai(server), tools=tools or [get_weather], name="weather_agent")


def model_requests(server: FakeLLMServer) -> int:
    return sum(1 for r in server.requests if r.path.endswith(("/chat/completions", "/messages")))


def shape(result: Any) -> Any:
    """The result without what differs run to run (message ids, response ids)."""
    if isinstance(result, dict):
        return {k: shape(v) for k, v in result.items() if k != "id"}
    if isinstance(result, (list, tuple)):
        return [shape(v) for v in result]
    if hasattr(result, "model_dump"):
        return (type(result).__name__, shape(result.model_dump()))
    return result


def by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans if s.context is not None}


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    return by_id(spans).get(span.parent.span_id) if span.parent is not None else None


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[str]:
    names = []
    parent = parent_of(span, spans)
    while parent is not None:
        names.append(parent.name)
        parent = parent_of(parent, spans)
    return names


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def assert_rollup(span: ReadableSpan, llm: list[ReadableSpan]) -> None:
    """The span's rollups are the sums over the LLM spans beneath it."""
    assert attr(span, sc.LLMWATCH_ROLLUP_LLM_CALLS) == len(llm)
    assert attr(span, sc.LLMWATCH_ROLLUP_INPUT_TOKENS) == sum(attr(s, sc.GEN_AI_USAGE_INPUT_TOKENS) for s in llm)
    assert attr(span, sc.LLMWATCH_ROLLUP_OUTPUT_TOKENS) == sum(attr(s, sc.GEN_AI_USAGE_OUTPUT_TOKENS) for s in llm)
    cost = sum(attr(s, sc.LLMWATCH_COST_USD) or 0.0 for s in llm)
    assert math.isclose(attr(span, sc.LLMWATCH_ROLLUP_COST_USD), cost, rel_tol=1e-9, abs_tol=1e-12)


def assert_agent_run(captured: Captured, requests: int, llm_calls: int = 2) -> None:
    spans = captured.spans
    llm = captured.llm_spans()
    assert len(llm) == requests == llm_calls  # one LLM span per model request, none for the chat model run
    (agent,) = [s for s in spans if attr(s, sc.GEN_AI_OPERATION_NAME) == sc.OP_INVOKE_AGENT]
    assert agent.name == "invoke_agent weather_agent"
    assert attr(agent, sc.GEN_AI_AGENT_NAME) == "weather_agent"
    assert agent.parent is None
    (tool_span,) = [s for s in spans if attr(s, sc.GEN_AI_OPERATION_NAME) == sc.OP_EXECUTE_TOOL]
    assert tool_span.name == "execute_tool get_weather"
    assert attr(tool_span, sc.GEN_AI_TOOL_NAME) == "get_weather"
    assert attr(tool_span, sc.GEN_AI_TOOL_TYPE) == "function"
    assert attr(tool_span, sc.GEN_AI_TOOL_CALL_ID) == "call_0"
    assert attr(tool_span, sc.GEN_AI_TOOL_CALL_ARGUMENTS) is None  # content capture is off
    assert ancestors(tool_span, spans) == ["tools", agent.name]
    for span in llm:  # each model call under the agent's model node, attributed to the run and the agent
        assert ancestors(span, spans) == ["agent", agent.name]
        assert attr(span, sc.LLMWATCH_AGENT_NAME) == "weather_agent"
        assert attr(span, sc.LLMWATCH_RUN_ID) == attr(agent, sc.LLMWATCH_RUN_ID)
        assert_rollup(parent_of(span, spans), [span])  # type: ignore[arg-type]
    assert_rollup(agent, llm)
    assert len(str(attr(agent, sc.LLMWATCH_RUN_ID))) == 16  # the run: the graph is the outermost span
    assert {s.trace_id for s in (s.context for s in spans)} == {agent.context.trace_id}
    assert all(s.end_time is not None for s in spans)


def assert_nothing_left_current() -> None:
    """No span of an ended run stays current in the caller's context."""
    assert not trace.get_current_span().get_span_context().is_valid
    assert _attribution.current().rollups == ()


def test_react_agent_invoke(server: FakeLLMServer, captured: Captured, bridge: None) -> None:
    agent = react_agent(server)
    server.clear()
    result = agent.invoke(QUESTION)
    assert result["messages"][-1].content.startswith("Echo: What is the weather in Paris?")
    assert_agent_run(captured, model_requests(server))
    assert_nothing_left_current()


async def test_react_agent_ainvoke(server: FakeLLMServer, captured: Captured, bridge: None) -> None:
    agent = react_agent(server)
    server.clear()
    result = await agent.ainvoke(QUESTION)
    assert result["messages"][-1].content.startswith("Echo:")
    assert_agent_run(captured, model_requests(server))
    assert_nothing_left_current()  # the async on_chain_end runs in a copy of the context: nothing leaked


@pytest.mark.parametrize("mode", ["updates", "messages"])  # "messages" makes the model stream its tokens
def test_react_agent_stream(server: FakeLLMServer, captured: Captured, bridge: None, mode: str) -> None:
    agent = react_agent(server)
    server.clear()
    chunks = list(agent.stream(QUESTION, stream_mode=mode))
    assert chunks
    assert_agent_run(captured, model_requests(server))
    assert_nothing_left_current()


@pytest.mark.parametrize("method", ["astream", "astream_events"])
async def test_react_agent_astream(server: FakeLLMServer, captured: Captured, bridge: None, method: str) -> None:
    agent = react_agent(server)
    server.clear()
    if method == "astream":
        chunks = [chunk async for chunk in agent.astream(QUESTION, stream_mode="messages")]
    else:
        chunks = [event async for event in agent.astream_events(QUESTION, version="v2")]
    assert chunks
    assert_agent_run(captured, model_requests(server))
    assert_nothing_left_current()


def test_result_identical_with_and_without_llmwatch(server: FakeLLMServer, captured: Captured) -> None:
    plain = react_agent(server).invoke(QUESTION)
    assert captured.spans == []  # not instrumented yet
    _instrument.instrument_all()
    try:  # a new agent: a ChatOpenAI used before instrumentation keeps the SDK method it cached then
        observed = react_agent(server).invoke(QUESTION)
    finally:
        _frameworks.uninstall_all()
    assert type(observed) is type(plain)
    assert [type(m) for m in observed["messages"]] == [type(m) for m in plain["messages"]]
    assert shape(observed) == shape(plain)
    assert len(captured.llm_spans()) == 2


def test_model_call_inside_a_tool_sits_under_the_tool(server: FakeLLMServer, captured: Captured, bridge: None) -> None:
    client = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)

    @tool
    def summarize(text: str) -> str:
        """Summarize a text."""
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        return reply.choices[0].message.content or ""

    agent = react_agent(server, tools=[summarize])
    server.clear()
    agent.invoke(QUESTION)
    spans, llm = captured.spans, captured.llm_spans()
    assert len(llm) == model_requests(server) == 3
    (tool_span,) = [s for s in spans if s.name == "execute_tool summarize"]
    inner = [s for s in llm if parent_of(s, spans) is tool_span]
    assert len(inner) == 1  # the direct SDK call runs in the tool's work context: under the tool
    assert_rollup(tool_span, inner)
    (agent_span,) = [s for s in spans if s.name == "invoke_agent weather_agent"]
    assert_rollup(agent_span, llm)


def test_tool_arguments_and_result_under_content_capture(
    server: FakeLLMServer, captured_content: Captured, bridge: None
) -> None:
    react_agent(server).invoke(QUESTION)
    (tool_span,) = [s for s in captured_content.spans if s.name == "execute_tool get_weather"]
    assert attr(tool_span, sc.GEN_AI_TOOL_CALL_ARGUMENTS) == '{"city":"Paris"}'
    assert attr(tool_span, sc.GEN_AI_TOOL_CALL_RESULT) == '"sunny in Paris"'


def anthropic_chain(server: FakeLLMServer) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{question}")])
    model = ChatAnthropic(
        model="claude-haiku-4-5", base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0
    )
    return prompt | model


def assert_chain_run(captured: Captured, requests: int) -> None:
    spans, llm = captured.spans, captured.llm_spans()
    assert len(llm) == requests == 1
    (workflow,) = [s for s in spans if s.parent is None]
    assert workflow.name == "RunnableSequence"
    assert attr(workflow, sc.LLMWATCH_SPAN_KIND) == sc.SPAN_KIND_WORKFLOW
    assert parent_of(llm[0], spans) is workflow  # the prompt step is folded into the chain's span
    assert attr(llm[0], sc.GEN_AI_PROVIDER_NAME) == "anthropic"
    assert_rollup(workflow, llm)
    assert len(spans) == 2


def test_lcel_chain_with_anthropic(server: FakeLLMServer, captured: Captured, bridge: None) -> None:
    chain = anthropic_chain(server)
    server.clear()
    reply = chain.invoke({"question": "What is the capital of France?"})
    assert "capital of France" in reply.content
    assert_chain_run(captured, model_requests(server))


async def test_lcel_chain_with_anthropic_async_and_streaming(
    server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    chain = anthropic_chain(server)
    server.clear()
    await chain.ainvoke({"question": "What is the capital of France?"})
    assert_chain_run(captured, model_requests(server))
    captured.clear()
    server.clear()
    pieces = [chunk async for chunk in chain.astream({"question": "What is the capital of France?"})]
    assert len(pieces) > 1
    assert_chain_run(captured, model_requests(server))
    assert_nothing_left_current()


def test_a_retriever_is_folded_into_its_chain(server: FakeLLMServer, captured: Captured, bridge: None) -> None:
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda

    class Shelf(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            normalize = RunnableLambda(lambda text: text.strip(), name="normalize")
            text = normalize.invoke(query, config={"callbacks": run_manager.get_child()})
            return [Document(page_content=f"Paris is in France ({text})")]

    def as_question(docs: list[Document]) -> dict[str, str]:
        return {"question": docs[0].page_content}

    chain = Shelf() | RunnableLambda(as_question) | anthropic_chain(server)
    server.clear()
    chain.invoke("capital ")
    spans, llm = captured.spans, captured.llm_spans()
    assert len(llm) == model_requests(server) == 1
    (root,) = [s for s in spans if s.parent is None]
    assert [s.name for s in spans if s is not root] == [llm[0].name]  # the chain in the retriever: folded
    assert parent_of(llm[0], spans) is root
    assert_rollup(root, llm)


def test_agent_inside_an_observe_span_is_part_of_that_run(
    server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    @llmwatch.observe(kind="workflow", name="support")
    def handle() -> Any:
        return react_agent(server).invoke(QUESTION)

    handle()
    spans = captured.spans
    (outer,) = [s for s in spans if s.name == "invoke_workflow support"]
    (agent,) = [s for s in spans if s.name == "invoke_agent weather_agent"]
    assert parent_of(agent, spans) is outer
    assert_rollup(outer, captured.llm_spans())
    assert {attr(s, sc.LLMWATCH_RUN_ID) for s in captured.llm_spans()} == {attr(outer, sc.LLMWATCH_RUN_ID)}


async def test_sub_agent_called_inside_a_node(server: FakeLLMServer, captured: Captured, bridge: None) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    worker = react_agent(server)

    async def supervisor(state: MessagesState) -> dict[str, Any]:
        result = await worker.ainvoke({"messages": state["messages"]})
        return {"messages": result["messages"][-1:]}

    graph = StateGraph(MessagesState)
    graph.add_node("supervisor", supervisor)
    graph.add_edge(START, "supervisor")
    graph.add_edge("supervisor", END)
    team = graph.compile(name="team")
    server.clear()
    await team.ainvoke(QUESTION)
    spans, llm = captured.spans, captured.llm_spans()
    assert len(llm) == model_requests(server) == 2
    (run,) = [s for s in spans if s.parent is None]
    assert run.name == "team"
    (agent,) = [s for s in spans if s.name == "invoke_agent weather_agent"]
    assert ancestors(agent, spans) == ["supervisor", "team"]
    for span in llm:
        assert ancestors(span, spans) == ["agent", agent.name, "supervisor", "team"]
        assert attr(span, sc.LLMWATCH_AGENT_NAME) == "weather_agent"
    assert_rollup(agent, llm)
    assert_rollup(run, llm)


def test_a_run_budget_caps_each_agent_run(server: FakeLLMServer, captured: Captured, bridge: None) -> None:
    llmwatch.budget(1e-9, per="run")  # the first call of a run crosses it; the run's next is refused
    agent = react_agent(server)
    for _ in range(2):  # each invoke is a new run: its first call goes through again
        server.clear()
        with pytest.raises(llmwatch.BudgetExceeded) as refused:
            agent.invoke(QUESTION)
        assert refused.value.window == "run"
        assert model_requests(server) == 1
    agents = [s for s in captured.spans if s.name == "invoke_agent weather_agent"]
    assert len(agents) == 2
    assert all(not s.status.is_ok for s in agents)  # the run ended with the refusal as its error
    assert len({attr(s, sc.LLMWATCH_RUN_ID) for s in agents}) == 2


def test_an_interrupt_is_not_an_error(captured: Captured, bridge: None) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.types import Command, interrupt

    def approve(state: MessagesState) -> dict[str, Any]:
        return {"messages": [("ai", str(interrupt("approve?")))]}

    graph = StateGraph(MessagesState)
    graph.add_node("approve", approve)
    graph.add_edge(START, "approve")
    graph.add_edge("approve", END)
    app = graph.compile(checkpointer=InMemorySaver(), name="approval")
    thread = {"configurable": {"thread_id": "t-1"}}
    paused = app.invoke(QUESTION, config=thread)
    assert "__interrupt__" in paused
    done = app.invoke(Command(resume="yes"), config=thread)
    assert done["messages"][-1].content == "yes"
    spans = captured.spans
    assert [s.name for s in spans if s.parent is None] == ["approval", "approval"]
    assert all(s.status.status_code.name == "UNSET" for s in spans)
    assert all(attr(s, sc.ERROR_TYPE) is None for s in spans)


@pytest.mark.parametrize("target", ["chain_start", "tool_start", "end", "enter_work", "open_span", "promote_to_agent"])
def test_a_fault_in_the_bridge_leaves_the_result_unchanged(
    server: FakeLLMServer, captured: Captured, bridge: None, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    agent = react_agent(server)
    expected = shape(agent.invoke(QUESTION))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(_health, "raise_internal_errors", False)
    owner = _langchain.Bridge if hasattr(_langchain.Bridge, target) else _langchain
    monkeypatch.setattr(owner, target, broken)
    before = llmwatch.stats()["internal_errors"]
    server.clear()
    assert shape(agent.invoke(QUESTION)) == expected
    assert llmwatch.stats()["internal_errors"] > before
    assert len(server.requests) == 2  # the agent still ran its two model calls


def test_uninstrument_removes_the_handler_and_the_wrappers(
    server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    from langchain_core.runnables import config as runnable_config
    from langchain_core.tracers import context as tracer_context

    assert hasattr(runnable_config._set_config_context, "__llmwatch_original__")
    hooks = len(tracer_context._configure_hooks)
    llmwatch.uninstrument()
    assert not hasattr(runnable_config._set_config_context, "__llmwatch_original__")
    assert len(tracer_context._configure_hooks) == hooks - 1
    react_agent(server).invoke(QUESTION)
    assert captured.spans == []
    _instrument.instrument_all()  # and back
    react_agent(server).invoke(QUESTION)
    assert len([s for s in captured.spans if s.name == "invoke_agent weather_agent"]) == 1
