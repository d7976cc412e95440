"""Every provider a team calls through the ``openai`` SDK, named and priced right.

The SDK believes it talks to the provider's real host (``tests/hosted.py``: a transport that sends
every request to the loopback server over real HTTP), so llmwatch sees exactly the client, base URL
and objects it sees in production. Cost must equal genai-prices' own figure for that provider.
"""

from __future__ import annotations

from typing import Any

import genai_prices
import openai
import pytest
from hosted import hosted_http_client

import llmwatch
from llmwatch._demo._openai_wire import provider_cost
from llmwatch._demo._server import FakeLLMServer
from llmwatch._errors import ConfigurationError
from llmwatch._instrument import _endpoints
from llmwatch._policy import _providers
from llmwatch._policy._pricing import PriceBook, Usage
from llmwatch.testing import Captured

ASK = [{"role": "user", "content": "Say hello to the provider tests"}]

# (provider name, base URL as its docs give it, a model it serves, genai-prices provider id)
HOSTED = [
    ("groq", "https://api.groq.com/openai/v1", "llama-3.1-8b-instant", "groq"),
    ("deepseek", "https://api.deepseek.com/v1", "deepseek-chat", "deepseek"),
    ("openrouter", "https://openrouter.ai/api/v1", "openai/gpt-4o-mini", "openrouter"),
    ("together", "https://api.together.xyz/v1", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "together"),
    ("mistral_ai", "https://api.mistral.ai/v1", "mistral-small-latest", "mistral"),
    ("x_ai", "https://api.x.ai/v1", "grok-3-mini", "x-ai"),
]


def hosted_client(server: FakeLLMServer, base_url: str, *, is_async: bool = False, **options: Any) -> Any:
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    http = hosted_http_client(server, is_async=is_async, models=options.pop("models", None))
    return cls(api_key="sk-provider-test-0123456789", base_url=base_url, http_client=http, max_retries=0, **options)


def genai_prices_cost(attrs: dict[str, Any], model: str, provider_id: str, **context: str) -> float:
    cached = attrs.get("gen_ai.usage.cache_read.input_tokens", 0)
    usage = genai_prices.Usage(
        input_tokens=attrs["gen_ai.usage.input_tokens"],
        cache_read_tokens=cached or None,
        output_tokens=attrs["gen_ai.usage.output_tokens"],
    )
    price = genai_prices.calc_price(usage, model, provider_id=provider_id, price_context=context or None)
    return float(price.total_price)


def only_span(captured: Captured) -> dict[str, Any]:
    spans = captured.llm_spans()
    assert len(spans) == 1, f"{len(spans)} llmwatch spans, expected exactly one"
    assert spans[0].kind.name == "CLIENT"
    return dict(spans[0].attributes or {})


def chat(client: Any, model: str, stream: bool, **kwargs: Any) -> Any:
    reply = client.chat.completions.create(model=model, messages=ASK, stream=stream, **kwargs)
    if stream:
        chunks = list(reply)
        assert chunks and all(chunk.choices for chunk in chunks)  # the usage chunk llmwatch asked for stays hidden
    return reply


@pytest.fixture(autouse=True)
def _configured() -> None:
    llmwatch.configure(exporter="none", instrument=True)


# --- hosted OpenAI-compatible providers -------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("provider", "base_url", "model", "price_id"), HOSTED, ids=[h[0] for h in HOSTED])
def test_a_hosted_provider_is_named_from_its_host_and_priced_at_its_rates(
    server: FakeLLMServer, captured: Captured, provider: str, base_url: str, model: str, price_id: str, stream: bool
) -> None:
    chat(hosted_client(server, base_url), model, stream)
    attrs = only_span(captured)
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["server.address"] == _providers.host_of(base_url)
    assert "llmwatch.provider.host" not in attrs  # a known host needs no host attribute
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["llmwatch.cost.usd"] == pytest.approx(genai_prices_cost(attrs, model, price_id), rel=1e-9)
    assert attrs["llmwatch.cost.source"] == f"genai-prices {genai_prices.__version__}"


async def test_async_clients_resolve_the_same_way(server: FakeLLMServer, captured: Captured) -> None:
    client = hosted_client(server, "https://api.groq.com/openai/v1", is_async=True)
    await client.chat.completions.create(model="llama-3.1-8b-instant", messages=ASK)
    stream = await client.chat.completions.create(model="llama-3.1-8b-instant", messages=ASK, stream=True)
    [chunk async for chunk in stream]
    first, second = (dict(s.attributes or {}) for s in captured.llm_spans())
    assert first["gen_ai.provider.name"] == second["gen_ai.provider.name"] == "groq"
    assert first["llmwatch.cost.usd"] > 0 and second["llmwatch.cost.usd"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_cost_the_provider_reports_wins(server: FakeLLMServer, captured: Captured, stream: bool) -> None:
    client = hosted_client(server, "https://openrouter.ai/api/v1")
    chat(client, "openai/gpt-4o-mini", stream, extra_headers={"x-fake-scenario": "provider-cost"})
    attrs = only_span(captured)
    reported = provider_cost(attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"])
    assert attrs["llmwatch.cost.usd"] == pytest.approx(reported, rel=1e-12)
    assert attrs["llmwatch.cost.source"] == "provider"
    split = attrs["llmwatch.cost.input_usd"] + attrs["llmwatch.cost.output_usd"]
    assert split == pytest.approx(reported, rel=1e-9)  # split in genai-prices' proportions


# --- unknown hosts: priced by name when genai-prices knows it, else visibly unpriced ------------------
def test_an_unknown_self_hosted_model_is_visibly_unpriced(server: FakeLLMServer, captured: Captured) -> None:
    client = hosted_client(server, "http://gpu-1:8000/v1")
    for stream in (False, True):
        chat(client, "my-finetune", stream)
    spans = [dict(s.attributes or {}) for s in captured.llm_spans()]
    assert len(spans) == 2
    for attrs in spans:
        assert attrs["gen_ai.provider.name"] == "openai_compatible"
        assert attrs["llmwatch.provider.host"] == "gpu-1"
        assert attrs["llmwatch.cost.unknown_model"] is True
        assert "llmwatch.cost.usd" not in attrs
        assert attrs["gen_ai.usage.input_tokens"] > 0  # tokens are still recorded
    assert llmwatch.stats()["prices"]["unpriced"] == [
        {"provider": "openai_compatible", "model": "my-finetune", "calls": 2}
    ]
    (point,) = captured.metrics()["llmwatch.calls.unpriced"]
    assert point.value == 2
    assert point.attributes["gen_ai.provider.name"] == "openai_compatible"
    assert point.attributes["gen_ai.request.model"] == "my-finetune"


def test_an_unknown_host_serving_a_known_model_is_priced_by_its_name(server: FakeLLMServer, captured: Captured) -> None:
    chat(hosted_client(server, "http://llm-gateway.internal/v1"), "gpt-4o-mini", False)
    attrs = only_span(captured)
    assert attrs["gen_ai.provider.name"] == "openai_compatible"
    assert attrs["llmwatch.provider.host"] == "llm-gateway.internal"
    assert attrs["llmwatch.cost.source"] == f"genai-prices {genai_prices.__version__}, by model name (openai)"
    model = attrs["gen_ai.response.model"]
    assert attrs["llmwatch.cost.usd"] == pytest.approx(genai_prices_cost(attrs, model, "openai"), rel=1e-9)
    assert llmwatch.stats()["prices"]["unpriced"] == []


def test_hosts_only_genai_prices_knows_are_named_by_its_provider_id(server: FakeLLMServer, captured: Captured) -> None:
    chat(hosted_client(server, "https://api.arcee.ai/api/v1"), "my-model", False)
    assert only_span(captured)["gen_ai.provider.name"] == "arcee"


# --- the user's names win ----------------------------------------------------------------------------
def test_configure_providers_names_an_endpoint_by_url_prefix_or_host(server: FakeLLMServer, captured: Captured) -> None:
    llmwatch.configure(
        exporter="none",
        providers={
            "http://gpu-1:8000/v1": "vllm",
            "http://gpu-1:8000/v1/lora": "vllm-lora",
            "ollama.internal": "ollama",
        },
    )
    with llmwatch.testing.capture() as cap:
        chat(hosted_client(server, "http://gpu-1:8000/v1"), "my-finetune", False)
        chat(hosted_client(server, "http://gpu-1:8000/v1/lora/"), "my-finetune", False)  # the longest prefix
        chat(hosted_client(server, "http://ollama.internal:11434/v1"), "llama3", False)  # a host key: any port
        names = [(s.attributes or {})["gen_ai.provider.name"] for s in cap.llm_spans()]
    assert names == ["vllm", "vllm-lora", "ollama"]
    assert all("llmwatch.provider.host" not in (s.attributes or {}) for s in cap.llm_spans())


def test_instrument_with_a_provider_wins_and_survives_with_options(server: FakeLLMServer) -> None:
    llmwatch.configure(exporter="none", instrument=False, providers={"http://gpu-1:8000/v1": "vllm"})
    with llmwatch.testing.capture() as cap:
        client = llmwatch.instrument(hosted_client(server, "http://gpu-1:8000/v1"), provider="ollama")
        chat(client, "llama3", False)
        chat(client.with_options(timeout=5), "llama3", False)  # a copy keeps the name it was given
        chat(llmwatch.instrument(hosted_client(server, "http://gpu-1:8000/v1")), "llama3", False)
        names = [(s.attributes or {})["gen_ai.provider.name"] for s in cap.llm_spans()]
    assert names == ["ollama", "ollama", "vllm"]


def test_instrument_refuses_an_empty_provider_name(server: FakeLLMServer) -> None:
    with pytest.raises(ConfigurationError, match="provider must be a non-empty string"):
        llmwatch.instrument(hosted_client(server, "http://gpu-1:8000/v1"), provider=" ")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gpu-1:8000", "is not key=provider"),
        (["http://gpu-1:8000/v1"], "must map a base URL or host"),
        ({"gpu-1:8000": "vllm"}, "neither a host"),
        ({"http://gpu-1:8000/v1": ""}, "is not a base URL or host mapped to a provider name"),
        ({3: "vllm"}, "is not a base URL or host mapped to a provider name"),
    ],
)
def test_a_wrong_providers_mapping_fails_at_configure(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        llmwatch.configure(exporter="none", providers=value)


def test_providers_come_from_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMWATCH_PROVIDERS", "http://gpu-1:8000/v1=vllm, ollama.internal=ollama")
    llmwatch.configure(exporter="none")
    assert llmwatch._api._runtime.CURRENT.settings.providers == {
        "http://gpu-1:8000/v1": "vllm",
        "ollama.internal": "ollama",
    }
    monkeypatch.setenv("LLMWATCH_PROVIDERS", '{"http://gpu-2/v1": "tgi"}')
    llmwatch.configure(exporter="none")
    assert llmwatch._api._runtime.CURRENT.settings.providers == {"http://gpu-2/v1": "tgi"}
    monkeypatch.setenv("LLMWATCH_PROVIDERS", "gpu-1")
    with pytest.raises(ConfigurationError, match="LLMWATCH_PROVIDERS"):
        llmwatch.configure(exporter="none")


# --- Azure -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_azure_prices_the_response_model_and_keeps_the_deployment(
    server: FakeLLMServer, captured: Captured, stream: bool
) -> None:
    http = hosted_http_client(server, models={"prod-chat": "gpt-4o-mini"})
    azure = {"api_key": "azure-test-key", "api_version": "2024-10-21", "azure_endpoint": "https://r.openai.azure.com"}
    client = openai.AzureOpenAI(**azure, http_client=http)
    chat(client, "prod-chat", stream)
    attrs = only_span(captured)
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"
    assert attrs["gen_ai.request.model"] == attrs["llmwatch.azure.deployment"] == "prod-chat"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    expected = genai_prices_cost(attrs, "gpt-4o-mini-2024-07-18", "azure")
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected, rel=1e-9)


def test_an_azure_deployment_set_on_the_client_is_the_one_recorded(server: FakeLLMServer, captured: Captured) -> None:
    http = hosted_http_client(server, models={"prod-chat": "gpt-4o-mini", "ignored": "gpt-4o-mini"})
    client = openai.AzureOpenAI(
        api_key="azure-test-key",
        api_version="2024-10-21",
        azure_endpoint="https://r.openai.azure.com",
        azure_deployment="prod-chat",
        http_client=http,
    )
    chat(client, "ignored", False)
    assert only_span(captured)["llmwatch.azure.deployment"] == "prod-chat"


# --- service tiers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_flex_call_is_priced_at_the_flex_rate(server: FakeLLMServer, captured: Captured, stream: bool) -> None:
    client = hosted_client(server, "https://api.openai.com/v1")
    chat(client, "o4-mini", stream, service_tier="flex")
    chat(client, "o4-mini", stream)
    flex, default = (dict(s.attributes or {}) for s in captured.llm_spans())
    assert flex["openai.request.service_tier"] == flex["openai.response.service_tier"] == "flex"
    assert default["openai.response.service_tier"] == "default" and "openai.request.service_tier" not in default
    model = flex["gen_ai.request.model"]  # the loopback's dated name is unknown: priced by the requested one
    assert flex["llmwatch.cost.usd"] == pytest.approx(
        genai_prices_cost(flex, model, "openai", service_tier="flex"), rel=1e-9
    )
    assert flex["llmwatch.cost.usd"] == pytest.approx(default["llmwatch.cost.usd"] / 2, rel=1e-6)  # half price
    assert flex["llmwatch.cost.source"].endswith(", flex tier")


@pytest.mark.parametrize(("provider", "model"), [("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini")])
def test_batch_results_are_priced_at_the_batch_rate(provider: str, model: str) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=500)
    batch = PriceBook().lookup(provider, model, "batch")
    standard = PriceBook().lookup(provider, model, "standard")  # a provider's name for no tier
    assert batch is not None and standard is not None
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1_000, output_tokens=500),
        model,
        provider_id=provider,
        price_context={"processing": "batch"},
    )
    assert batch.cost(usage).total_usd == pytest.approx(float(expected.total_price), rel=1e-9)
    assert batch.cost(usage).total_usd == pytest.approx(standard.cost(usage).total_usd / 2, rel=1e-6)


# --- refused before any I/O, whoever the provider --------------------------------------------------
def test_kill_switches_and_budgets_refuse_hosted_calls_before_io(server: FakeLLMServer, captured: Captured) -> None:
    client = hosted_client(server, "https://api.groq.com/openai/v1")
    llmwatch.kill_switch(model="llama-3.1-8b-instant")
    sent = len(server.requests)
    with pytest.raises(llmwatch.FeatureDisabled):
        chat(client, "llama-3.1-8b-instant", False)
    llmwatch.kill_switch(model="llama-3.1-8b-instant", enabled=False)
    llmwatch.budget(1e-9, feature="groq-chat")
    with llmwatch.attributes(feature="groq-chat"):
        chat(client, "llama-3.1-8b-instant", False)  # spends past the tiny limit
        sent = len(server.requests)
        with pytest.raises(llmwatch.BudgetExceeded):
            chat(client, "llama-3.1-8b-instant", True)
    assert len(server.requests) == sent  # neither refused call reached the provider
    names = {(s.attributes or {})["gen_ai.provider.name"] for s in captured.llm_spans()}
    assert names == {"groq"}


# --- resolved once per base URL ------------------------------------------------------------------------
def test_the_provider_is_resolved_once_per_base_url(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = _endpoints.resolve_endpoint

    def counting(base_url: str, **kwargs: Any) -> _providers.Endpoint:
        calls.append(base_url)
        return real(base_url, **kwargs)

    monkeypatch.setattr(_endpoints, "resolve_endpoint", counting)
    _endpoints.forget()
    client = hosted_client(server, "https://api.groq.com/openai/v1")
    with llmwatch.testing.capture():
        for _ in range(5):
            chat(client, "llama-3.1-8b-instant", False)
    assert calls == ["https://api.groq.com/openai/v1/"]
    llmwatch.configure(exporter="none", providers={"api.groq.com": "groq-eu"})  # new settings: asked again
    with llmwatch.testing.capture() as cap:
        chat(client, "llama-3.1-8b-instant", False)
    assert len(calls) == 2
    assert (cap.llm_spans()[0].attributes or {})["gen_ai.provider.name"] == "groq-eu"


def test_the_host_table_has_the_designs_names() -> None:
    assert {url: _providers.resolve_endpoint(url).provider for url in DESIGN_HOSTS} == DESIGN_HOSTS


DESIGN_HOSTS = {
    "https://api.openai.com/v1": "openai",
    "https://myres.openai.azure.com/openai": "azure.ai.openai",
    "https://api.groq.com/openai/v1": "groq",
    "https://api.deepseek.com": "deepseek",
    "https://api.mistral.ai/v1": "mistral_ai",
    "https://api.x.ai/v1": "x_ai",
    "https://api.perplexity.ai": "perplexity",
    "https://openrouter.ai/api/v1": "openrouter",
    "https://api.together.xyz/v1": "together",
    "https://api.fireworks.ai/inference/v1": "fireworks",
    "https://api.cerebras.ai/v1": "cerebras",
    "https://generativelanguage.googleapis.com/v1beta/openai/": "gcp.gemini",
    "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1": "aws.bedrock",
}
