"""Reading a google-genai request's arguments: the texts its prompt fingerprint hashes, and (content
capture only) its contents, system instruction and tools as neutral message data.

Why apart from the hook table (``_gemini.py``): the SDK takes almost anything as ``contents`` and
the reading is long. What it accepts (and how it groups it, as its ``t_contents`` does): a string,
a ``Part``/part dict, a ``Content``/content dict (``{"role", "parts"}``), or a list of those, where
each content stands alone and consecutive loose parts (strings, parts) make one user content. Part
fields come from the SDK's models (snake_case) or from dicts, which pydantic accepts in snake_case
and camelCase alike (``function_call`` / ``functionCall``). Roles: ``model`` is the assistant; a
content made only of function responses is the tool's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmwatch._core._messages import (
    Blob,
    Message,
    Part,
    Reasoning,
    RequestContent,
    Text,
    ToolCall,
    ToolCallResponse,
    Unknown,
    Uri,
    size_of,
)
from llmwatch._instrument._fields import field

# Part fields and their camelCase spelling (dicts may use either).
_CAMEL = {
    "function_call": "functionCall",
    "function_response": "functionResponse",
    "inline_data": "inlineData",
    "file_data": "fileData",
    "mime_type": "mimeType",
    "file_uri": "fileUri",
    "system_instruction": "systemInstruction",
    "function_declarations": "functionDeclarations",
    "parameters_json_schema": "parametersJsonSchema",
    "candidate_count": "candidateCount",
    "stop_sequences": "stopSequences",
    "response_mime_type": "responseMimeType",
    "response_schema": "responseSchema",
    "response_json_schema": "responseJsonSchema",
    "output_dimensionality": "outputDimensionality",
}
_ROLES = {"model": "assistant", "user": "user", None: "user", "": "user"}


def get(obj: Any, name: str) -> Any:
    """A field of an SDK model or a dict, in snake_case or (dicts) camelCase."""
    value = field(obj, name)
    if value is None and type(obj) is dict and name in _CAMEL:
        value = obj.get(_CAMEL[name])
    return value


def _is_content(item: Any) -> bool:
    if isinstance(item, Mapping):
        return "parts" in item or "role" in item
    fields = getattr(type(item), "model_fields", None)
    return isinstance(fields, Mapping) and "parts" in fields and "text" not in fields


def contents_of(value: Any) -> list[tuple[Any, list[Any]]]:
    """(role, raw parts) for each content of ``contents``, grouped as the SDK groups them."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    grouped: list[tuple[Any, list[Any]]] = []
    loose: list[Any] = []
    for item in items:
        if _is_content(item):
            if loose:
                grouped.append(("user", loose))
                loose = []
            grouped.append((get(item, "role"), list(get(item, "parts") or ())))
        else:
            loose.append(item)
    if loose:
        grouped.append(("user", loose))
    return grouped


def _text_of_part(part: Any) -> str:
    if isinstance(part, str):
        return part
    text = get(part, "text")
    return text if isinstance(text, str) else ""


def texts(value: Any) -> list[str]:
    """The text of each content of ``contents`` (or of a system instruction), no markup."""
    return ["".join(_text_of_part(part) for part in parts) for _, parts in contents_of(value)]


def embedded_texts(value: Any) -> list[str]:
    """The text of each input of ``embed_content``: there every item of a list is embedded on its own."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return ["".join(texts(item)) for item in items if item is not None]


def prompt_parts(request: Mapping[str, Any]) -> list[str]:
    """Role and text of each content, system instruction first: what the fingerprint hashes."""
    system = get(request.get("config"), "system_instruction")
    parts = ["system", "".join(texts(system))]
    for role, raw in contents_of(request.get("contents")):
        parts.append(str(role or "user"))
        parts.append("".join(_text_of_part(part) for part in raw))
    return parts


# --- content capture (opt-in) ----------------------------------------------------------------------
def request_content(request: Mapping[str, Any]) -> RequestContent:
    config = request.get("config")
    system = get(config, "system_instruction")
    tools = get(config, "tools")
    system_parts = [_part(p) for _, parts in contents_of(system) for p in parts] if system else None
    return RequestContent(
        messages=[_message(role, parts) for role, parts in contents_of(request.get("contents"))],
        system=system_parts or None,
        tools=[definition for tool in tools for definition in _tool_definitions(tool)] if tools else None,
    )


def _message(role: Any, raw: list[Any]) -> Message:
    parts = [_part(p) for p in raw]
    if parts and all(isinstance(p, ToolCallResponse) for p in parts):
        return Message("tool", parts)
    return Message(_ROLES.get(role, str(role)), parts)


def _part(part: Any) -> Part:
    if isinstance(part, str):
        return Text(part)
    text = get(part, "text")
    if isinstance(text, str):
        return Reasoning(text) if get(part, "thought") else Text(text)
    call = get(part, "function_call")
    if call is not None:
        return ToolCall(get(call, "id"), get(call, "name"), _plain(get(call, "args")))
    response = get(part, "function_response")
    if response is not None:
        return ToolCallResponse(get(response, "id") or get(response, "name"), _plain(get(response, "response")))
    inline = get(part, "inline_data")
    if inline is not None:
        mime = get(inline, "mime_type")
        return Blob(_modality(mime), mime if isinstance(mime, str) else None, size_of(get(inline, "data")))
    data = get(part, "file_data")
    if data is not None:
        return Uri(_modality(get(data, "mime_type")), get(data, "file_uri"))
    uri = getattr(part, "uri", None)  # an uploaded types.File passed as a part
    if isinstance(uri, str):
        return Uri(_modality(getattr(part, "mime_type", None)), uri)
    if type(part).__module__.startswith("PIL."):
        return Blob("image")
    kinds = [name for name, value in _items(part) if value is not None and name != "video_metadata"]
    return Unknown(kinds[0] if kinds else type(part).__name__.lower())


def _is_model(obj: Any) -> bool:
    return isinstance(obj, Mapping) or isinstance(getattr(type(obj), "model_fields", None), Mapping)


def _items(obj: Any) -> list[tuple[str, Any]]:
    """The fields of a dict or an SDK model (nothing of other objects: no attribute is a field there)."""
    if isinstance(obj, Mapping):
        return [(str(k), v) for k, v in obj.items()]
    return list(vars(obj).items()) if _is_model(obj) else []


def _modality(mime: Any) -> str:
    kind = mime.split("/", 1)[0] if isinstance(mime, str) else ""
    return kind if kind in ("image", "audio", "video") else "file"


def _tool_definitions(tool: Any) -> list[dict[str, Any]]:
    """One semconv tool definition per function a tool declares; built-in tools by their kind."""
    if not _is_model(tool):  # a Python function (automatic function calling), an MCP session, ...
        if not callable(tool):
            return [{"type": type(tool).__name__}]
        doc = (getattr(tool, "__doc__", None) or "").strip()
        return [{"type": "function", "name": getattr(tool, "__name__", type(tool).__name__), "description": doc}]
    definitions = []
    for declaration in get(tool, "function_declarations") or ():
        parameters = get(declaration, "parameters") or get(declaration, "parameters_json_schema")
        definition = {
            "type": "function",
            "name": get(declaration, "name"),
            "description": get(declaration, "description"),
        }
        definitions.append({**definition, "parameters": _plain(parameters)})
    for name, value in _items(tool):
        if value is not None and name not in ("function_declarations", "functionDeclarations"):
            definitions.append({"type": name})  # google_search, code_execution, url_context, ...
    return definitions


def _plain(value: Any) -> Any:
    """A JSON-like copy of an SDK model (schemas, args), for the renderer."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
