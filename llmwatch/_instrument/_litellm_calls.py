"""LiteLLM calls: where each one goes (LiteLLM's routing), and reading its OpenAI-shaped replies.

Whatever provider LiteLLM routes to, it answers in the OpenAI Chat Completions shape (``ModelResponse``,
``ModelResponseStream`` chunks, ``EmbeddingResponse``), so the reading is the OpenAI handlers'
(``_openai_chat.ChatCompletions``, ``_openai_embeddings.Embeddings``); what differs is here:

- **Where the call goes.** ``litellm.get_llm_provider(model, custom_llm_provider, api_base)`` is
  LiteLLM's own routing (the ``openai/``, ``anthropic/``, ``hosted_vllm/`` prefixes, bare model names,
  ``custom_llm_provider=``); asked once per (model, provider, api_base) and cached. LiteLLM's provider
  id is mapped to ``gen_ai.provider.name`` (``_NAMES``) and kept in ``llmwatch.litellm.provider``. Routes
  that speak OpenAI's wire format to whatever ``api_base`` says (``openai/`` with an ``api_base``,
  ``hosted_vllm/``, ``openai_like``, ``litellm_proxy``...) are named by that URL as the OpenAI SDK's
  base URL would be (``_endpoints.py``: the user's ``configure(providers=...)`` mapping, known hosts,
  else ``openai_compatible`` with ``llmwatch.provider.host``); a named route (``anthropic/``,
  ``bedrock/``...) keeps its provider whatever its ``api_base``, unless the user's mapping names it.
- **Usage.** LiteLLM's ``prompt_tokens`` already include the cache reads and writes of every provider
  (Anthropic's too), as llmwatch's input tokens do; cache writes are its
  ``cache_creation_input_tokens``. Streams report usage when asked (``stream_options.include_usage``):
  LiteLLM honours that for every provider, with one usage-only chunk at the end, which llmwatch asks
  for and hides exactly as for OpenAI streams (``_stream_usage.py``, with its refusal retry).
- **Cost.** llmwatch prices the call (provider and model, genai-prices). LiteLLM's own figure
  (``_hidden_params["response_cost"]``, or ``usage.cost`` it puts on stream usage) is used only when
  llmwatch has no price, marked ``llmwatch.cost.source=litellm``: it is LiteLLM's computation, never
  the provider's report.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import LLMCall
from llmwatch._instrument._fields import field
from llmwatch._instrument._openai_chat import ChatCompletions
from llmwatch._instrument._openai_embeddings import Embeddings
from llmwatch._policy._providers import AZURE_OPENAI, OPENAI, OPENAI_COMPATIBLE, host_of, mapped_provider
from llmwatch._text import clean

# LiteLLM provider id -> gen_ai.provider.name, where it has a name of its own (others: LiteLLM's id).
_NAMES = {
    "openai": OPENAI,
    "text-completion-openai": OPENAI,
    "azure": AZURE_OPENAI,
    "azure_text": AZURE_OPENAI,
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "anthropic_text": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_mantle": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "groq": "groq",
    "deepseek": "deepseek",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "cerebras": "cerebras",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "moonshot": "moonshotai",
    "novita": "novita",
    "watsonx": "ibm.watsonx.ai",
}
# Routes that send OpenAI's wire format wherever ``api_base`` points: named by that URL.
_BY_URL = frozenset(
    {
        "openai",
        "text-completion-openai",
        "custom_openai",
        "hosted_vllm",
        "openai_like",
        "litellm_proxy",
        "lm_studio",
        "llamafile",
        "xinference",
    }
)


class _URL:
    """An ``api_base`` as the OpenAI handlers read a client's ``base_url`` (host, port, scheme, str)."""

    __slots__ = ("host", "port", "scheme", "text")

    def __init__(self, text: str) -> None:
        parts = urlsplit(text)
        self.text = text
        self.host = parts.hostname or ""
        self.port = parts.port
        self.scheme = parts.scheme or "https"

    def __str__(self) -> str:
        return self.text


class Route:
    """Where one kind of LiteLLM call goes, as the OpenAI handlers see a client: ``_client.base_url``
    is the ``api_base`` (None: the provider's default endpoint). Made once per route and cached, so
    the URL's identity is stable for the caches keyed on it (``_endpoints``, ``_stream_usage``)."""

    __slots__ = ("_client", "attributes", "base_url", "litellm_provider", "model", "settings")

    def __init__(self, litellm_provider: str, model: str, api_base: str | None, settings: Settings) -> None:
        self._client = self
        self.base_url = _URL(api_base) if api_base else None
        self.litellm_provider = litellm_provider
        self.model = model
        self.settings = settings
        self.attributes = _route_attributes(litellm_provider, model, api_base, settings)


def _route_attributes(litellm_provider: str, model: str, api_base: str | None, settings: Settings) -> dict[str, Any]:
    """What the OpenAI handlers' endpoint reading cannot know: the provider of a named route (None for
    a route named by its URL), the model as sent, LiteLLM's provider id."""
    attributes: dict[str, Any] = {sc.GEN_AI_REQUEST_MODEL: clean(model), sc.LLMWATCH_LITELLM_PROVIDER: litellm_provider}
    if litellm_provider in _BY_URL and api_base:
        return attributes  # the URL decides, as for an OpenAI SDK client with this base_url
    mapped = None
    if api_base and settings.providers:
        mapped = mapped_provider(api_base, host_of(api_base), settings.providers)
    provider = mapped or _NAMES.get(litellm_provider) or (OPENAI_COMPATIBLE if litellm_provider in _BY_URL else None)
    attributes[sc.GEN_AI_PROVIDER_NAME] = provider or clean(litellm_provider)
    if attributes[sc.GEN_AI_PROVIDER_NAME] == AZURE_OPENAI:
        attributes[sc.LLMWATCH_AZURE_DEPLOYMENT] = clean(model)  # Azure's model is a deployment name
    return attributes


_ROUTES: dict[tuple[Any, Any, Any], Route] = {}
_MAX_ROUTES = 1024


def route_of(request: Mapping[str, Any], settings: Settings) -> Route:
    """LiteLLM's routing of this request, cached per (model, custom_llm_provider, api_base) and settings."""
    model = request.get("model")
    custom = request.get("custom_llm_provider")
    api_base = request.get("api_base") or request.get("base_url")
    key = (model, custom, api_base)
    route = _ROUTES.get(key)
    if route is None or route.settings is not settings:
        route = _resolve(str(model or ""), custom, api_base, settings)
        if len(_ROUTES) >= _MAX_ROUTES:
            _ROUTES.clear()
        _ROUTES[key] = route
    return route


def _resolve(model: str, custom: Any, api_base: Any, settings: Settings) -> Route:
    litellm = sys.modules["litellm"]  # a LiteLLM call is being made: it is imported
    try:
        bare, provider, _key, resolved_base = litellm.get_llm_provider(
            model=model,
            custom_llm_provider=custom if isinstance(custom, str) else None,
            api_base=api_base if isinstance(api_base, str) else None,
        )
    except Exception:  # LiteLLM cannot route it: the call will fail the same way; name it by its prefix
        prefix, _, rest = model.partition("/")
        bare, provider, resolved_base = (rest, prefix, None) if rest else (model, "unknown", None)
    base = resolved_base if isinstance(resolved_base, str) and resolved_base else None
    if isinstance(api_base, str) and api_base:
        base = api_base
    return Route(str(provider), str(bare or model), base, settings)


def forget() -> None:
    """Drop every cached route (tests)."""
    _ROUTES.clear()


# --- the reply: LiteLLM's additions to the OpenAI shape ---------------------------------------------
def _record_litellm_usage(call: LLMCall, usage: Any) -> None:
    """Cache writes and the served tier from LiteLLM's usage; its ``usage.cost`` is LiteLLM's figure."""
    if call.reported_cost_usd is not None and call.provider != "openrouter":
        call.fallback_cost = (call.reported_cost_usd, sc.COST_SOURCE_LITELLM)
        call.reported_cost_usd = None
    if usage is None:
        return
    written = field(usage, "cache_creation_input_tokens")
    if type(written) is int and written > 0:
        call.cache_write_tokens = written
        split = field(field(usage, "prompt_tokens_details"), "cache_creation_token_details")
        one_hour = field(split, "ephemeral_1h_input_tokens")
        if type(one_hour) is int:
            call.cache_write_1h_tokens = one_hour
    tier = field(usage, "service_tier")
    if call.service_tier is None and isinstance(tier, str) and tier:
        call.service_tier = tier


def _record_litellm_cost(call: LLMCall, obj: Any) -> None:
    hidden = getattr(obj, "_hidden_params", None)
    cost: Any = hidden.get("response_cost") if isinstance(hidden, dict) else None
    if type(cost) in (int, float) and cost >= 0:
        call.fallback_cost = (float(cost), sc.COST_SOURCE_LITELLM)


def _prepared(route: Route, attrs: dict[str, Any]) -> None:
    attrs.update(route.attributes)
    if route.litellm_provider not in _BY_URL:
        attrs.pop(sc.OPENAI_API_TYPE, None)  # not OpenAI's API on the wire


class _Routed:
    """``prepare`` for both LiteLLM handlers: the OpenAI handler's, given LiteLLM's route as the client."""

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[Any, dict[str, Any], dict[str, Any], bool, bool]:
        route = route_of(kwargs, settings)
        _handler, attrs, send_kwargs, stream, hide_usage = super().prepare(route, kwargs, settings)  # type: ignore[misc]
        _prepared(route, attrs)
        return self, attrs, send_kwargs, stream, hide_usage


class LiteLLMChat(_Routed, ChatCompletions):
    """``litellm.completion`` / ``acompletion``: a chat call to whatever provider LiteLLM routes to."""

    def on_response(self, call: LLMCall, response: Any) -> None:
        super().on_response(call, response)
        _record_litellm_usage(call, field(response, "usage"))
        _record_litellm_cost(call, response)

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        hide = super().on_chunk(call, chunk)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            _record_litellm_usage(call, usage)
            _record_litellm_cost(call, chunk)
        return hide


class LiteLLMEmbeddings(_Routed, Embeddings):
    """``litellm.embedding`` / ``aembedding``."""

    def on_response(self, call: LLMCall, response: Any) -> None:
        super().on_response(call, response)
        _record_litellm_cost(call, response)


CHAT = LiteLLMChat()
EMBEDDINGS = LiteLLMEmbeddings()
