"""LiteLLM through llmwatch: the real ``litellm`` against the loopback server, every route LiteLLM takes.

LiteLLM would fetch its model-price map from GitHub at import: ``LITELLM_LOCAL_MODEL_COST_MAP=True``
(read in ``litellm/litellm_core_utils/get_model_cost_map.py``) keeps it to the copy it ships.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

from genai_prices import Usage as PricesUsage  # noqa: E402
from genai_prices import calc_price  # noqa: E402

import llmwatch  # noqa: E402
from llmwatch import _health, _instrument  # noqa: E402
from llmwatch._demo._server import FakeLLMServer  # noqa: E402
from llmwatch._instrument import _litellm, _litellm_calls  # noqa: E402

MESSAGES = [{"role": "user", "content": "say hello to the test"}]
GPT = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-20241022"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@pytest.fixture()
def instrumented() -> Iterator[None]:
    _instrument.instrument_all()
    yield
    _instrument.uninstrument()


@pytest.fixture()
def fresh(server: FakeLLMServer) -> FakeLLMServer:
    server.clear()
    return server


def route(server: FakeLLMServer, name: str, **kwargs: Any) -> dict[str, Any]:
    """The kwargs of a ``litellm.completion`` call on one of LiteLLM's routes, at the loopback server."""
    models = {
        "openai": (f"openai/{GPT}", server.openai_base_url),
        "hosted_vllm": ("hosted_vllm/my-served-model", server.openai_base_url),
        "anthropic": (f"anthropic/{CLAUDE}", server.anthropic_base_url),
    }
    model, base = models[name]
    return {"model": model, "messages": MESSAGES, "api_base": base, "api_key": "k", **kwargs}


def attributes(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def genai_cost(usage: Any, model: str, provider_id: str | None) -> float:
    prices_usage = PricesUsage(
        input_tokens=usage.prompt_tokens,
        cache_read_tokens=(usage.prompt_tokens_details.cached_tokens or 0) if usage.prompt_tokens_details else 0,
        output_tokens=usage.completion_tokens,
    )
    return float(calc_price(prices_usage, model, provider_id=provider_id).total_price)


def comparable(result: Any) -> Any:
    """A LiteLLM result without what differs per call (ids, timestamps)."""
    if isinstance(result, list):
        return [comparable(item) for item in result]
    return type(result), result.model_dump(exclude={"id", "created"})


# --- one span per model request, named and priced --------------------------------------------------
@pytest.mark.parametrize(
    ("name", "provider", "price_provider"),
    [
        ("openai", "openai_compatible", None),
        ("anthropic", "anthropic", "anthropic"),
        ("hosted_vllm", "openai_compatible", None),
    ],
)
def test_each_route_is_one_span_named_and_priced(
    fresh: FakeLLMServer, captured: Any, instrumented: None, name: str, provider: str, price_provider: str | None
) -> None:
    response = litellm.completion(**route(fresh, name))

    spans = captured.llm_spans()
    assert len(spans) == len(fresh.requests) == 1
    attrs = attributes(spans[0])
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["llmwatch.litellm.provider"] == name
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == response.usage.completion_tokens
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["gen_ai.response.model"] == response.model
    if provider == "openai_compatible":
        assert attrs["llmwatch.provider.host"] == "127.0.0.1"
    if name == "hosted_vllm":  # nobody knows "my-served-model"'s price; LiteLLM neither
        assert attrs["llmwatch.cost.unknown_model"] is True
        assert "llmwatch.cost.usd" not in attrs
    else:  # priced by genai-prices: gpt-* by model name at an unknown host, Claude by provider
        assert attrs["llmwatch.cost.usd"] == pytest.approx(genai_cost(response.usage, response.model, price_provider))
        assert attrs["llmwatch.cost.source"].startswith("genai-prices")


def test_a_user_mapping_names_the_api_base(fresh: FakeLLMServer, instrumented: None) -> None:
    with llmwatch.testing.capture(providers={fresh.openai_base_url: "openai"}) as captured:
        response = litellm.completion(**route(fresh, "openai"))
    attrs = attributes(captured.llm_spans()[0])
    assert attrs["gen_ai.provider.name"] == "openai"
    assert "llmwatch.provider.host" not in attrs
    assert attrs["llmwatch.cost.usd"] == pytest.approx(genai_cost(response.usage, response.model, "openai"))


def test_anthropic_cache_writes_and_reads_are_priced(fresh: FakeLLMServer, captured: Any, instrumented: None) -> None:
    # LiteLLM calls Anthropic over its own httpx code (not the anthropic SDK): no SDK hook could see it.
    response = litellm.completion(**route(fresh, "anthropic", extra_headers={"x-fake-scenario": "cached"}))
    attrs = attributes(captured.llm_spans()[0])
    usage = response.usage
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens  # LiteLLM's total includes the cache
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 100
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 50
    expected = calc_price(
        PricesUsage(
            input_tokens=usage.prompt_tokens,
            cache_read_tokens=100,
            cache_write_tokens=50,
            cache_write_1h_tokens=20,  # of the 50: the 1-hour cache, dearer
            output_tokens=usage.completion_tokens,
        ),
        CLAUDE,
        provider_id="anthropic",
    )
    assert attrs["llmwatch.cost.usd"] == pytest.approx(float(expected.total_price))


def test_litellm_cost_is_used_only_without_a_price(fresh: FakeLLMServer, instrumented: None) -> None:
    kwargs = {"model": "openai/text-embedding-3-small", "input": ["one two", "three"], "api_key": "k"}
    with llmwatch.testing.capture() as captured:  # at an unknown host, genai-prices cannot tell whose model
        response = litellm.embedding(api_base=fresh.openai_base_url, **kwargs)
    attrs = attributes(captured.llm_spans()[0])
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens == 3
    assert attrs["llmwatch.cost.usd"] == response._hidden_params["response_cost"]
    assert attrs["llmwatch.cost.source"] == "litellm"
    assert "llmwatch.cost.unknown_model" not in attrs
    with llmwatch.testing.capture(providers={fresh.openai_base_url: "openai"}) as captured:
        litellm.embedding(api_base=fresh.openai_base_url, **kwargs)
    attrs = attributes(captured.llm_spans()[0])
    assert attrs["llmwatch.cost.source"].startswith("genai-prices")  # llmwatch's own price wins
    assert len(fresh.requests) == 2


# --- streams, async ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_streams_sync_and_async(fresh: FakeLLMServer, captured: Any, instrumented: None, name: str) -> None:
    plain = litellm.completion(**route(fresh, name))
    chunks = list(litellm.completion(**route(fresh, name, stream=True)))

    async def run() -> list[Any]:
        stream = await litellm.acompletion(**route(fresh, name, stream=True))
        return [chunk async for chunk in stream]

    async_chunks = asyncio.run(run())
    spans = captured.llm_spans()
    assert len(spans) == len(fresh.requests) == 3
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert all(c.choices for c in chunks + async_chunks)  # the usage chunk llmwatch asked for is hidden
    for span in spans[1:]:
        attrs = attributes(span)
        assert attrs["gen_ai.request.stream"] is True
        assert attrs["llmwatch.stream.completed"] is True
        assert attrs["gen_ai.usage.input_tokens"] == plain.usage.prompt_tokens
        assert attrs["gen_ai.usage.output_tokens"] == plain.usage.completion_tokens
        assert attrs["llmwatch.usage.source"] == "provider"
        assert attrs["llmwatch.cost.usd"] == attributes(spans[0])["llmwatch.cost.usd"]


def test_acompletion_and_aembedding_are_one_span_each(fresh: FakeLLMServer, captured: Any, instrumented: None) -> None:
    async def run() -> None:
        await litellm.acompletion(**route(fresh, "openai"))  # LiteLLM runs completion() in a thread inside
        await litellm.aembedding(
            model="openai/text-embedding-3-small", input=["a b"], api_base=fresh.openai_base_url, api_key="k"
        )

    asyncio.run(run())
    spans = captured.llm_spans()
    assert len(spans) == len(fresh.requests) == 2
    assert [attributes(s)["gen_ai.operation.name"] for s in spans] == ["chat", "embeddings"]


def test_the_openai_sdk_underneath_adds_no_second_span(fresh: FakeLLMServer, captured: Any, instrumented: None) -> None:
    # With encoding_format LiteLLM calls the openai SDK's embeddings.with_raw_response.create, which
    # llmwatch's OpenAI hook traces: inside a LiteLLM call it stays silent.
    litellm.embedding(
        model="openai/text-embedding-3-small",
        input=["a"],
        encoding_format="float",
        api_base=fresh.openai_base_url,
        api_key="k",
    )
    spans = captured.llm_spans()
    assert len(spans) == len(fresh.requests) == 1
    assert attributes(spans[0])["llmwatch.litellm.provider"] == "openai"


def test_a_server_refusing_stream_options_gets_the_call_as_written(
    fresh: FakeLLMServer, captured: Any, instrumented: None
) -> None:
    kwargs = route(fresh, "openai", stream=True, extra_headers={"x-fake-scenario": "reject-stream-options"})
    chunks = list(litellm.completion(**kwargs))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    spans = captured.llm_spans()
    assert len(spans) == 1 and len(fresh.requests) == 2  # ours refused, then the caller's as written
    assert "error.type" not in attributes(spans[0])


# --- the result is LiteLLM's, unchanged -------------------------------------------------------------
@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_results_are_identical_with_and_without_llmwatch(fresh: FakeLLMServer, name: str) -> None:
    def results() -> list[Any]:
        reply = litellm.completion(**route(fresh, name))
        stream = list(litellm.completion(**route(fresh, name, stream=True)))
        embedding = litellm.embedding(
            model="openai/text-embedding-3-small", input=["a b"], api_base=fresh.openai_base_url, api_key="k"
        )
        return [comparable(reply), comparable(stream), comparable(embedding)]

    without = results()
    with llmwatch.testing.capture() as captured:
        _instrument.instrument_all()
        try:
            with_llmwatch = results()
        finally:
            _instrument.uninstrument()
    assert with_llmwatch == without
    assert len(captured.llm_spans()) == 3


def test_uninstrument_puts_litellms_functions_back(instrumented: None) -> None:
    assert getattr(litellm.completion, "__llmwatch_litellm__", False)
    assert getattr(litellm.main.acompletion, "__llmwatch_litellm__", False)
    _instrument.uninstrument()
    for module, attribute, _handler, _async in _litellm._TARGETS:
        target = __import__(module, fromlist=["_"])
        assert not getattr(getattr(target, attribute), "__llmwatch_litellm__", False), (module, attribute)
    _instrument.instrument_all()  # the fixture's teardown uninstruments again


# --- policy, agents, faults ---------------------------------------------------------------------------
def test_a_kill_switch_and_a_budget_refuse_before_any_request(
    fresh: FakeLLMServer, captured: Any, instrumented: None
) -> None:
    llmwatch.kill_switch(model=GPT)
    with pytest.raises(llmwatch.FeatureDisabled):
        litellm.completion(**route(fresh, "openai"))
    assert fresh.requests == []
    llmwatch.kill_switch(model=GPT, enabled=False)
    llmwatch.budget(1e-9, per="day")
    litellm.completion(**route(fresh, "anthropic"))  # spends over the limit
    with pytest.raises(llmwatch.BudgetExceeded):
        litellm.completion(**route(fresh, "anthropic"))
    assert len(fresh.requests) == 1


def test_agent_and_tool_spans_hold_the_litellm_calls(fresh: FakeLLMServer, captured: Any, instrumented: None) -> None:
    @llmwatch.observe(kind="tool", name="get_weather")
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    @llmwatch.observe(kind="agent", name="weather-agent")
    def agent() -> str:
        messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
        turn = {**route(fresh, "openai"), "tools": TOOLS, "extra_headers": {"x-fake-scenario": "agent"}}
        first = litellm.completion(**{**turn, "messages": messages})
        tool_call = first.choices[0].message.tool_calls[0]
        result = get_weather("Paris")
        messages.append(first.choices[0].message.model_dump())
        messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": result})
        final = litellm.completion(**{**turn, "messages": messages})
        return str(final.choices[0].message.content)

    assert agent()
    llm = captured.llm_spans()
    assert len(llm) == len(fresh.requests) == 2
    agent_span = next(s for s in captured.spans if attributes(s).get("gen_ai.operation.name") == "invoke_agent")
    tool_span = next(s for s in captured.spans if attributes(s).get("gen_ai.operation.name") == "execute_tool")
    assert attributes(tool_span)["gen_ai.tool.name"] == "get_weather"
    assert all(s.parent is not None and s.parent.span_id == agent_span.context.span_id for s in [*llm, tool_span])
    rollup = attributes(agent_span)
    assert rollup["llmwatch.rollup.llm_calls"] == 2
    assert rollup["llmwatch.rollup.input_tokens"] == sum(attributes(s)["gen_ai.usage.input_tokens"] for s in llm)
    assert rollup["llmwatch.rollup.output_tokens"] == sum(attributes(s)["gen_ai.usage.output_tokens"] for s in llm)
    assert rollup["llmwatch.rollup.cost_usd"] == pytest.approx(sum(attributes(s)["llmwatch.cost.usd"] for s in llm))
    assert all(attributes(s)["llmwatch.agent.name"] == "weather-agent" for s in llm)


def test_router_calls_are_traced(fresh: FakeLLMServer, captured: Any, instrumented: None) -> None:
    router = litellm.Router(
        model_list=[{"model_name": "chat", "litellm_params": route(fresh, "openai") | {"messages": None}}]
    )
    router.completion(model="chat", messages=MESSAGES)
    assert len(captured.llm_spans()) == len(fresh.requests) == 1


@pytest.mark.parametrize("where", ["route_of", "_record_litellm_cost"])
def test_a_fault_in_the_adapter_leaves_the_result_unchanged(
    fresh: FakeLLMServer, captured: Any, instrumented: None, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    expected = comparable(litellm.completion(**route(fresh, "openai")))
    monkeypatch.setattr(_health, "raise_internal_errors", False)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(_litellm_calls, where, broken)
    before = llmwatch.stats()["internal_errors"]
    assert comparable(litellm.completion(**route(fresh, "openai"))) == expected
    assert llmwatch.stats()["internal_errors"] > before
    assert len(captured.llm_spans()) == (1 if where == "route_of" else 2)  # untraced, or traced without it


@pytest.mark.parametrize(
    ("request_", "provider", "model"),
    [
        ({"model": "gpt-4o-mini"}, "openai", "gpt-4o-mini"),
        ({"model": "openai/gpt-4o", "api_base": "https://api.groq.com/openai/v1"}, "groq", "gpt-4o"),
        (
            {"model": "azure/my-deployment", "api_base": "https://acme.openai.azure.com"},
            "azure.ai.openai",
            "my-deployment",
        ),
        (
            {"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0"},
            "aws.bedrock",
            "anthropic.claude-3-haiku-20240307-v1:0",
        ),
        ({"model": "gemini/gemini-2.0-flash"}, "gcp.gemini", "gemini-2.0-flash"),
        ({"model": "groq/llama-3.1-8b-instant"}, "groq", "llama-3.1-8b-instant"),
        ({"model": "mistral/mistral-small-latest"}, "mistral_ai", "mistral-small-latest"),
        (
            {"model": "my-model", "custom_llm_provider": "hosted_vllm", "api_base": "http://gpu-1:8000/v1"},
            "openai_compatible",
            "my-model",
        ),
    ],
)
def test_providers_follow_litellms_routing(request_: dict[str, Any], provider: str, model: str) -> None:
    from llmwatch._core import _runtime

    _handler, attrs, _send, _stream, _hide = _litellm_calls.CHAT.prepare(None, request_, _runtime.CURRENT.settings)
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["gen_ai.request.model"] == model
    if provider == "azure.ai.openai":
        assert attrs["llmwatch.azure.deployment"] == "my-deployment"
    if provider == "openai_compatible":
        assert attrs["llmwatch.provider.host"] == "gpu-1"


def test_content_only_under_the_content_rules(fresh: FakeLLMServer, instrumented: None) -> None:
    with llmwatch.testing.capture() as captured:
        litellm.completion(**route(fresh, "anthropic"))
    assert not any(key.endswith(("input.messages", "output.messages")) for key in attributes(captured.llm_spans()[0]))
    with llmwatch.testing.capture(capture_content=True) as captured:
        reply = litellm.completion(**route(fresh, "anthropic"))
    attrs = attributes(captured.llm_spans()[0])
    assert "say hello to the test" in attrs["gen_ai.input.messages"]
    assert reply.choices[0].message.content in attrs["gen_ai.output.messages"].replace('\\"', '"')


def test_a_rollout_sends_its_arms_model_through_litellm(
    fresh: FakeLLMServer, captured: Any, instrumented: None
) -> None:
    llmwatch.rollout("litellm-canary", challenger={"model": "openai/gpt-4o"}, share=1.0)
    with llmwatch.attributes(user="u1"):
        litellm.completion(**route(fresh, "openai"))
    assert fresh.requests_for("gpt-4o")
    span = captured.spans[-1]
    assert attributes(span)["llmwatch.rollout.arm"] == "challenger"
