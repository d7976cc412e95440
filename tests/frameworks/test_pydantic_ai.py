"""pydantic-ai: agent runs and tool calls as invoke_agent / execute_tool spans, one LLM span per model
request whether or not pydantic-ai's own instrumentation is on.

The real pydantic-ai with its real OpenAI (chat completions, Responses) and Anthropic models, over the
real SDK clients, against the loopback server's ``agent`` scenario: a tool call first, then the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

import anthropic
import openai
from pydantic_ai import Agent
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.tool_manager import ToolManager

import llmwatch
from llmwatch import _health
from llmwatch import _semconv as sc
from llmwatch._demo._server import FakeLLMServer
from llmwatch._instrument import _frameworks, _pydantic_ai, instrument_all
from llmwatch.testing import Captured

AGENT = {"x-fake-scenario": "agent"}
MODEL_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
MODEL_SUFFIXES = (":generateContent", ":streamGenerateContent", "/converse", "/converse-stream")
MODEL_OPERATIONS = frozenset({sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_GENERATE_CONTENT, sc.OP_EMBEDDINGS})
MODES = ("run", "run_sync", "run_stream")
KINDS = ("chat", "responses", "anthropic", "google", "bedrock")


def make_model(kind: str, server: FakeLLMServer) -> Any:
    if kind == "google":
        from google import genai
        from google.genai import types
        from pydantic_ai.models.google import GoogleModel
        from pydantic_ai.providers.google import GoogleProvider

        options = types.HttpOptions(base_url=server.base_url, headers=AGENT)
        client = genai.Client(api_key="k", http_options=options)
        return GoogleModel("gemini-2.0-flash", provider=GoogleProvider(client=client))
    if kind == "bedrock":
        import boto3
        from botocore.config import Config
        from pydantic_ai.models.bedrock import BedrockConverseModel
        from pydantic_ai.providers.bedrock import BedrockProvider

        config = Config(retries={"mode": "standard", "total_max_attempts": 1})
        bedrock = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=server.base_url,
            aws_access_key_id="k",
            aws_secret_access_key="s",
            config=config,
        )
        bedrock.meta.events.register("before-send.*", _agent_scenario)
        model_id = "anthropic.claude-3-5-haiku-20241022-v1:0"
        return BedrockConverseModel(model_id, provider=BedrockProvider(bedrock_client=bedrock))
    if kind == "anthropic":
        client = anthropic.AsyncAnthropic(
            base_url=server.anthropic_base_url, api_key="k", default_headers=AGENT, max_retries=0
        )
        return AnthropicModel("claude-3-5-haiku-latest", provider=AnthropicProvider(anthropic_client=client))
    client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", default_headers=AGENT, max_retries=0)
    model_class = OpenAIChatModel if kind == "chat" else OpenAIResponsesModel
    return model_class("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))


def _agent_scenario(request: Any, **kwargs: Any) -> None:
    request.headers["x-fake-scenario"] = "agent"


def make_agent(kind: str, server: FakeLLMServer) -> Agent[None, str]:
    agent = Agent(make_model(kind, server), name="weather", instructions="Answer about the weather.")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return agent


async def run(agent: Agent[None, str], mode: str) -> Any:
    """The output and the messages of one run (what the app sees), without timestamps and ids."""
    if mode == "run":
        result = await agent.run("What is the weather?")
        output, messages = result.output, result.all_messages()
    elif mode == "run_sync":
        import asyncio

        result = await asyncio.to_thread(agent.run_sync, "What is the weather?")
        output, messages = result.output, result.all_messages()
    else:
        async with agent.run_stream("What is the weather?") as stream:
            output = await stream.get_output()
            messages = stream.all_messages()
    shape = [
        (type(part).__name__, getattr(part, "content", None), getattr(part, "args", None))
        for message in messages
        for part in message.parts
    ]
    return type(output), output, shape


def model_requests(server: FakeLLMServer) -> int:
    paths = [r.path.split("?")[0] for r in server.requests]
    return sum(1 for path in paths if path in MODEL_PATHS or path.endswith(MODEL_SUFFIXES))


def model_call_spans(captured: Captured) -> list[Any]:
    """LLM spans from any instrumentation scope (llmwatch's or pydantic-ai's)."""
    return [s for s in captured.spans if (s.attributes or {}).get(sc.GEN_AI_OPERATION_NAME) in MODEL_OPERATIONS]


def spans_named(captured: Captured, operation: str) -> list[Any]:
    return [s for s in captured.spans if (s.attributes or {}).get(sc.GEN_AI_OPERATION_NAME) == operation]


@pytest.fixture(autouse=True)
def _no_bridge_left() -> Iterator[None]:
    """Start and end without bridges: another module's test may have left global instrumentation on
    (``_state.reset_for_tests`` restores the SDK hooks, not the framework bridges)."""
    _frameworks.uninstall_all()
    yield
    _frameworks.uninstall_all()


@pytest.fixture()
def bridge() -> Iterator[None]:
    instrument_all()
    assert "_pydantic_ai" in _frameworks._installed
    yield
    llmwatch.uninstrument()


def check_run_spans(captured: Captured, server: FakeLLMServer) -> None:
    llm = model_call_spans(captured)
    # The tool call, then the answer; run_stream with Anthropic: one (the loopback's tool-call turn has
    # text too, which pydantic-ai's run_stream takes as the final output, running the tool call as well).
    assert len(llm) == model_requests(server) >= 1
    assert all(s.instrumentation_scope.name == "llmwatch" for s in llm)
    (agent,) = spans_named(captured, sc.OP_INVOKE_AGENT)
    (tool,) = spans_named(captured, sc.OP_EXECUTE_TOOL)
    assert agent.name == "invoke_agent weather"
    assert agent.attributes[sc.GEN_AI_AGENT_NAME] == "weather"
    assert agent.parent is None
    assert tool.name == "execute_tool get_weather"
    assert tool.attributes[sc.GEN_AI_TOOL_NAME] == "get_weather"
    assert tool.attributes[sc.GEN_AI_TOOL_TYPE] == "function"
    assert tool.attributes[sc.GEN_AI_TOOL_CALL_ID]
    assert tool.attributes[sc.GEN_AI_TOOL_DESCRIPTION] == "The weather in a city."
    assert sc.GEN_AI_TOOL_CALL_ARGUMENTS not in tool.attributes  # content capture is off
    assert tool.parent.span_id == agent.context.span_id
    run_id = agent.attributes["llmwatch.run.id"]
    for span in llm:
        assert span.parent.span_id == agent.context.span_id
        assert span.context.trace_id == agent.context.trace_id
        assert span.attributes[sc.LLMWATCH_RUN_ID] == run_id
    attrs = agent.attributes
    assert attrs[sc.LLMWATCH_ROLLUP_LLM_CALLS] == len(llm)
    assert attrs[sc.LLMWATCH_ROLLUP_INPUT_TOKENS] == sum(s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] for s in llm)
    assert attrs[sc.LLMWATCH_ROLLUP_OUTPUT_TOKENS] == sum(s.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] for s in llm)
    assert attrs[sc.LLMWATCH_ROLLUP_COST_USD] == pytest.approx(sum(s.attributes[sc.LLMWATCH_COST_USD] for s in llm))
    assert attrs[sc.LLMWATCH_ROLLUP_COST_USD] > 0
    assert tool.attributes[sc.LLMWATCH_ROLLUP_LLM_CALLS] == 0  # the tool made no model call


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
async def test_agent_run_spans(kind: str, mode: str, server: FakeLLMServer, captured: Captured) -> None:
    server.clear()
    baseline = await run(make_agent(kind, server), mode)  # without llmwatch
    assert captured.spans == []
    instrument_all()
    try:
        server.clear()
        traced = await run(make_agent(kind, server), mode)
    finally:
        llmwatch.uninstrument()
    assert traced == baseline
    check_run_spans(captured, server)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
async def test_with_pydantic_ais_own_instrumentation(
    kind: str, mode: str, server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    """llmwatch's spans win: pydantic-ai's run, chat and tool spans for the same things stay quiet."""
    agent = make_agent(kind, server)
    agent.instrument = InstrumentationSettings(tracer_provider=captured.tracer_provider)
    server.clear()
    await run(agent, mode)
    check_run_spans(captured, server)
    assert [s for s in captured.spans if s.instrumentation_scope.name == "pydantic-ai"] == []


async def test_instrument_all_too(server: FakeLLMServer, captured: Captured, bridge: None) -> None:
    Agent.instrument_all(InstrumentationSettings(tracer_provider=captured.tracer_provider))
    try:
        server.clear()
        await run(make_agent("chat", server), "run")
    finally:
        Agent.instrument_all(False)
    check_run_spans(captured, server)


async def test_pydantic_ais_spans_without_the_bridge(server: FakeLLMServer, captured: Captured) -> None:
    """The check above is live: without the bridge, pydantic-ai's own spans are there (two LLM spans a
    request: its ``chat`` span and llmwatch's SDK-level one)."""
    instrument_all()
    _frameworks.uninstall_all()
    try:
        agent = make_agent("chat", server)
        agent.instrument = InstrumentationSettings(tracer_provider=captured.tracer_provider)
        server.clear()
        await run(agent, "run")
    finally:
        llmwatch.uninstrument()
    scopes = sorted(s.instrumentation_scope.name for s in model_call_spans(captured))
    assert scopes == ["llmwatch", "llmwatch", "pydantic-ai", "pydantic-ai"]
    assert [s.instrumentation_scope.name for s in spans_named(captured, sc.OP_INVOKE_AGENT)] == ["pydantic-ai"]


async def test_models_llmwatch_does_not_trace_keep_pydantic_ais_chat_span(captured: Captured, bridge: None) -> None:
    agent = Agent(TestModel(), name="offline")
    agent.instrument = InstrumentationSettings(tracer_provider=captured.tracer_provider)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    await agent.run("What is the weather?")
    chats = model_call_spans(captured)
    assert [s.instrumentation_scope.name for s in chats] == ["pydantic-ai", "pydantic-ai"]
    (agent_span,) = spans_named(captured, sc.OP_INVOKE_AGENT)
    assert agent_span.instrumentation_scope.name == "llmwatch"
    assert all(s.parent.span_id == agent_span.context.span_id for s in chats)
    assert len(spans_named(captured, sc.OP_EXECUTE_TOOL)) == 1


async def test_tool_arguments_and_result_under_the_content_rules(server: FakeLLMServer, bridge: None) -> None:
    with llmwatch.testing.capture(capture_content=True) as captured:
        server.clear()
        await run(make_agent("chat", server), "run")
    (tool,) = spans_named(captured, sc.OP_EXECUTE_TOOL)
    assert tool.attributes[sc.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"city":"Paris"}'
    assert tool.attributes[sc.GEN_AI_TOOL_CALL_RESULT] == '"sunny in Paris"'
    (agent,) = spans_named(captured, sc.OP_INVOKE_AGENT)
    assert "What is the weather?" in agent.attributes[sc.LLMWATCH_INPUT]
    assert "Echo" in agent.attributes[sc.LLMWATCH_OUTPUT]


async def test_attribution_and_outer_spans_carry_into_the_run(
    server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    @llmwatch.observe(kind="workflow", name="support")
    async def workflow() -> Any:
        with llmwatch.attributes(user="u-1", feature="weather"):
            return await run(make_agent("chat", server), "run")

    server.clear()
    await workflow()
    (outer,) = spans_named(captured, sc.OP_INVOKE_WORKFLOW)
    (agent,) = spans_named(captured, sc.OP_INVOKE_AGENT)
    assert agent.parent.span_id == outer.context.span_id
    llm = captured.llm_spans()
    assert len(llm) == 2
    assert all(s.attributes[sc.LLMWATCH_USER] == "u-1" for s in llm)
    assert all(s.attributes["llmwatch.agent.name"] == "weather" for s in llm)
    assert outer.attributes[sc.LLMWATCH_ROLLUP_LLM_CALLS] == 2


@pytest.mark.parametrize("broken", ["_run_attributes", "tool span", "_quieted", "_sdk_traced"])
async def test_a_bridge_fault_leaves_the_run_unchanged(
    broken: str, server: FakeLLMServer, captured: Captured, bridge: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.clear()
    baseline = await run(make_agent("chat", server), "run")
    captured.clear()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(_health, "raise_internal_errors", False)
    if broken == "tool span":
        monkeypatch.setattr(_pydantic_ai, "ObservedSpan", _Broken(_pydantic_ai.ObservedSpan))
    else:
        monkeypatch.setattr(_pydantic_ai, broken, boom)
    agent = make_agent("chat", server)
    agent.instrument = InstrumentationSettings(tracer_provider=captured.tracer_provider)
    before = llmwatch.stats()["internal_errors"]
    server.clear()
    assert await run(agent, "run") == baseline
    assert llmwatch.stats()["internal_errors"] > before
    ours = [s for s in captured.llm_spans() if s.instrumentation_scope.name == "llmwatch"]
    assert len(ours) == model_requests(server) == 2  # (a fault in quieting: pydantic-ai's chat spans too)


class _Broken:
    """``ObservedSpan`` whose ``open`` raises for tool spans only (as a bug in our tool span would)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def open(self, kind: str | None, *args: Any, **kwargs: Any) -> Any:
        if kind == sc.SPAN_KIND_TOOL:
            raise RuntimeError("injected")
        return self._real.open(kind, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_uninstrument_restores_pydantic_ai() -> None:
    from pydantic_ai.capabilities.instrumentation import Instrumentation

    originals = (Agent.__dict__["iter"], ToolManager.__dict__["execute_tool_call"], Instrumentation.for_run)
    instrument_all()
    assert Agent.__dict__["iter"] is not originals[0]
    instrument_all()  # idempotent
    llmwatch.uninstrument()
    assert (Agent.__dict__["iter"], ToolManager.__dict__["execute_tool_call"], Instrumentation.for_run) == originals
