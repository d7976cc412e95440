"""Request-side pieces the OpenAI APIs share (chat, responses): output type and tool definitions.

Apart from the per-API modules so that ``_openai_chat.py`` and ``_openai_responses.py`` do not import
each other. Like every adapter module, these only read the caller's arguments into data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import LLMCall
from llmwatch._instrument._endpoints import endpoint_attributes
from llmwatch._instrument._fields import field, given
from llmwatch._policy._providers import AZURE_OPENAI
from llmwatch._text import clean

PROVIDER = "openai"  # the handlers' default; the base URL decides per client (``_endpoints.py``)


def endpoint_and_tier(instance: Any, kwargs: Mapping[str, Any], attrs: dict[str, Any], settings: Settings) -> None:
    """Where the call goes (server, provider; the deployment on Azure, whose ``model`` names one) and
    the service tier asked for."""
    client = getattr(instance, "_client", None)
    if endpoint_attributes(client, attrs, settings, None) == AZURE_OPENAI:
        deployment = getattr(client, "_azure_deployment", None) or kwargs.get("model")
        if isinstance(deployment, str):
            attrs[sc.LLMWATCH_AZURE_DEPLOYMENT] = clean(deployment)
    tier = kwargs.get("service_tier")
    if isinstance(tier, str):
        attrs[sc.OPENAI_REQUEST_SERVICE_TIER] = clean(tier)


def record_service_tier(call: LLMCall, tier: Any, fingerprint: Any = None) -> None:
    """The tier the reply says it was served at: it prices the call (flex is half the standard rate);
    and the reply's ``system_fingerprint`` (Chat Completions), when it has one."""
    attributes: dict[str, Any] | None = None
    if isinstance(tier, str) and tier:
        call.service_tier = tier
        attributes = {sc.OPENAI_RESPONSE_SERVICE_TIER: tier}
    if isinstance(fingerprint, str) and fingerprint:
        attributes = attributes or {}
        attributes[sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = fingerprint
    if attributes is not None:
        call.response_attributes = attributes


def output_type(response_format: Any) -> str:
    """``gen_ai.output.type`` from a ``response_format`` (or a Responses ``text.format``)."""
    kind = field(response_format, "type") if given(response_format) else None
    if kind in ("json_object", "json_schema"):
        return sc.OUTPUT_JSON
    if isinstance(response_format, type):  # a pydantic model passed to .parse()/.stream()
        return sc.OUTPUT_JSON
    return sc.OUTPUT_TEXT


def tool_definitions(request: Mapping[str, Any]) -> list[Any] | None:
    """The declared tools in the semconv shape (raw values: the renderer applies the policy)."""
    tools = request.get("tools")
    if not isinstance(tools, (list, tuple)) or not tools:
        return None
    return [_tool_definition(tool) for tool in tools]


def _tool_definition(tool: Any) -> Any:
    function = field(tool, "function")
    if function is not None:  # chat: {"type": "function", "function": {...}}
        return {
            "type": "function",
            "name": field(function, "name"),
            "description": field(function, "description"),
            "parameters": field(function, "parameters"),
        }
    if isinstance(tool, Mapping):  # responses: already flat
        return dict(tool)
    return str(tool)
