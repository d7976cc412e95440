"""Which provider a call really talks to, and which genai-prices provider prices it.

One SDK reaches many providers: the ``openai`` SDK with ``base_url=`` talks to Groq, DeepSeek,
OpenRouter, vLLM..., so ``gen_ai.provider.name`` comes from the host, as OpenInference, OpenLLMetry,
Logfire and Datadog all do. The order (DESIGN.md, "Providers, priced right"):

1. the user's mapping: ``instrument(client, provider=...)``, then ``configure(providers={base_url or
   host: name})`` (the longest matching URL prefix, else the host);
2. the client class (``AzureOpenAI`` is ``azure.ai.openai`` whatever its host);
3. the table of hosts below (OTel's well-known names where the semconv has one);
4. the hosts genai-prices recognises by its URL patterns, named by its provider id, once genai-prices
   is loaded (it is imported in the background: resolving never imports it on a caller's thread);
5. else ``openai_compatible``, the host kept in ``llmwatch.provider.host``.

Callers resolve once per client base URL and cache the answer; nothing here runs per call.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

OPENAI: Final = "openai"
AZURE_OPENAI: Final = "azure.ai.openai"
OPENAI_COMPATIBLE: Final = "openai_compatible"

# Host -> provider name. Exact hosts; ``_HOST_SUFFIXES`` below for per-tenant subdomains.
HOSTS: Final[Mapping[str, str]] = {
    "api.openai.com": OPENAI,
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "api.cerebras.ai": "cerebras",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.cohere.ai": "cohere",
    "api.cohere.com": "cohere",
    "api.moonshot.ai": "moonshotai",
    "api.novita.ai": "novita",
}
_HOST_SUFFIXES: Final = (
    (".openai.azure.com", AZURE_OPENAI),
    (".cognitiveservices.azure.com", AZURE_OPENAI),
    (".services.ai.azure.com", AZURE_OPENAI),
    (".azure-api.net", AZURE_OPENAI),
    ("-aiplatform.googleapis.com", "gcp.vertex_ai"),
)
_BEDROCK_HOST: Final = re.compile(r"bedrock-runtime(-fips)?\.[a-z0-9-]+\.amazonaws\.com")

# Provider name -> genai-prices provider id, where the two differ or genai-prices has the provider.
PRICE_PROVIDER_IDS: Final[Mapping[str, str]] = {
    OPENAI: "openai",
    "anthropic": "anthropic",
    AZURE_OPENAI: "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "groq": "groq",
    "deepseek": "deepseek",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
    "cerebras": "cerebras",
    "cohere": "cohere",
}
# genai-prices id -> our name where they differ, for hosts found by genai-prices' URL patterns.
_NAMES_OF_PRICE_IDS: Final = {
    "azure": AZURE_OPENAI,
    "aws": "aws.bedrock",
    "google": "gcp.gemini",
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Who a client talks to: ``provider`` for ``gen_ai.provider.name``; ``host`` is set only for an
    unrecognised host (``llmwatch.provider.host``); ``final`` is False while the answer may still
    change once genai-prices is loaded (so a cache keeps asking)."""

    provider: str
    host: str | None = None
    final: bool = True


def resolve_endpoint(
    base_url: str,
    *,
    mapping: Mapping[str, str] | None = None,
    client_provider: str | None = None,
) -> Endpoint:
    """The provider behind ``base_url`` (see the module docstring for the order).

    ``client_provider``: what the client's class says (``azure.ai.openai`` for ``AzureOpenAI``), after
    the user's mapping and before the host tables."""
    host = host_of(base_url)
    mapped = mapped_provider(base_url, host, mapping) if mapping else None
    if mapped is not None:
        return Endpoint(mapped)
    if client_provider is not None:
        return Endpoint(client_provider)
    known = provider_of_host(host)
    if known is not None:
        return Endpoint(known)
    if "genai_prices" not in sys.modules:
        return Endpoint(OPENAI_COMPATIBLE, host or None, final=False)
    by_url = _genai_prices_provider(base_url)
    if by_url is not None:
        return Endpoint(_NAMES_OF_PRICE_IDS.get(by_url, by_url))
    return Endpoint(OPENAI_COMPATIBLE, host or None)


def host_of(base_url: str) -> str:
    try:
        return (urlsplit(base_url).hostname or "").lower()
    except ValueError:
        return ""


def provider_of_host(host: str) -> str | None:
    known = HOSTS.get(host)
    if known is not None:
        return known
    for suffix, name in _HOST_SUFFIXES:
        if host.endswith(suffix):
            return name
    if _BEDROCK_HOST.fullmatch(host):
        return "aws.bedrock"
    return None


def mapped_provider(base_url: str, host: str, mapping: Mapping[str, str]) -> str | None:
    """The user's name for this endpoint: the longest key that prefixes the URL, else the host's key."""
    url = normalise_url(base_url)
    best: tuple[int, str] | None = None
    for key, name in mapping.items():
        if "://" in key:
            prefix = normalise_url(key)
            if (url == prefix or url.startswith(prefix + "/")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
        elif best is None and key.lower() == host:
            best = (0, name)
    return best[1] if best is not None else None


def normalise_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def price_provider_id(provider: str) -> str | None:
    """genai-prices' id for a provider name; None when it has no such provider (price by model name)."""
    known = PRICE_PROVIDER_IDS.get(provider)
    if known is not None:
        return known
    return provider if provider in _genai_prices_ids() else None


def _genai_prices_ids() -> frozenset[str]:
    global _PRICE_IDS
    if _PRICE_IDS is None:
        if "genai_prices" not in sys.modules:
            return frozenset()
        from genai_prices import data

        _PRICE_IDS = frozenset(p.id for p in data.providers)
    return _PRICE_IDS


_PRICE_IDS: frozenset[str] | None = None


def _genai_prices_provider(base_url: str) -> str | None:
    from genai_prices import data

    for provider in data.providers:
        pattern = getattr(provider, "api_pattern", None)
        if pattern and re.match(pattern, base_url):
            return str(provider.id)
    return None
