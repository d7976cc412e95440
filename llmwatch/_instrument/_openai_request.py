"""Request-side pieces the OpenAI APIs share (chat, responses): output type and tool definitions.

Apart from the per-API modules so that ``_openai_chat.py`` and ``_openai_responses.py`` do not import
each other. Like every adapter module, these only read the caller's arguments into data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._instrument._fields import field, given

PROVIDER = "openai"


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
