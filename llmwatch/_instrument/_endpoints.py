"""The request attributes that say where a call goes: server address and port, and the provider.

An SDK client's base URL (and its class: ``AzureOpenAI``, ``AnthropicBedrock``) decides who answers,
so ``gen_ai.provider.name`` is resolved here per client base URL (``_policy/_providers.py`` has the
rules) and cached: per call this is a dict lookup and an identity check. The user's names win:
``instrument(client, provider=...)`` for one client, ``configure(providers=...)`` by URL or host.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._instrument._base import REGISTRY
from llmwatch._instrument._fields import server_attributes_of_url
from llmwatch._policy._providers import AZURE_OPENAI, resolve_endpoint

# Client classes whose provider is not their SDK's, whatever their base URL says.
_CLIENT_PROVIDERS: Final = {
    "AzureOpenAI": AZURE_OPENAI,
    "BedrockOpenAI": "aws.bedrock",
    "AnthropicBedrock": "aws.bedrock",
    "AnthropicBedrockMantle": "aws.bedrock",
    "AnthropicVertex": "gcp.vertex_ai",
    "AnthropicFoundry": "azure.ai.inference",
}
CLIENT_PROVIDERS: Final = {**_CLIENT_PROVIDERS, **{f"Async{name}": value for name, value in _CLIENT_PROVIDERS.items()}}


class _Resolved:
    __slots__ = ("attributes", "client_type", "final", "settings", "url")

    def __init__(self, url: Any, client_type: type, settings: Settings, attributes: dict[str, Any], final: bool):
        self.url = url  # held: keeps id(url) from being reused for another URL while cached
        self.client_type = client_type
        self.settings = settings
        self.attributes = attributes
        self.final = final


_CACHE: dict[int, _Resolved] = {}
_MAX_CACHED = 1024


def endpoint_attributes(client: Any, attrs: dict[str, Any], settings: Settings, sdk_provider: str | None) -> str:
    """Put ``server.*`` and ``gen_ai.provider.name`` (and ``llmwatch.provider.host`` for an unknown
    host) into ``attrs``; return the provider name.

    ``sdk_provider``: the provider this SDK's clients are whatever their host, unless the user's
    mapping or the client's class says otherwise (the Anthropic SDK speaks only Anthropic's API: a
    gateway in front of it is still Anthropic); None for an SDK many providers speak, whose host
    decides (the OpenAI SDK)."""
    url = getattr(client, "base_url", None)
    resolved = _CACHE.get(id(url))
    if (
        resolved is None
        or resolved.url is not url
        or resolved.settings is not settings
        or resolved.client_type is not type(client)
        or (not resolved.final and "genai_prices" in sys.modules)
    ):
        resolved = _resolve(client, url, settings, sdk_provider)
    attrs.update(resolved.attributes)
    if REGISTRY.has_provider_names:
        named = REGISTRY.provider_name(client)
        if named is not None:
            attrs.pop(sc.LLMWATCH_PROVIDER_HOST, None)
            attrs[sc.GEN_AI_PROVIDER_NAME] = named
            return named
    return resolved.attributes[sc.GEN_AI_PROVIDER_NAME]  # type: ignore[no-any-return]


def _resolve(client: Any, url: Any, settings: Settings, sdk_provider: str | None) -> _Resolved:
    attributes = server_attributes_of_url(url) if url is not None else {}
    endpoint = resolve_endpoint(
        str(url) if url is not None else "",
        mapping=settings.providers,
        client_provider=CLIENT_PROVIDERS.get(type(client).__name__) or sdk_provider,
    )
    if endpoint.host is not None:
        attributes[sc.LLMWATCH_PROVIDER_HOST] = endpoint.host
    attributes[sc.GEN_AI_PROVIDER_NAME] = endpoint.provider
    resolved = _Resolved(url, type(client), settings, attributes, endpoint.final)
    if len(_CACHE) >= _MAX_CACHED:
        _CACHE.clear()
    _CACHE[id(url)] = resolved
    return resolved


def forget() -> None:
    """Drop every cached resolution (tests)."""
    _CACHE.clear()
