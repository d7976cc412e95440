"""The one semconv message renderer: neutral message data in, GenAI content attributes out.

Why it exists: each provider module used to render its own semconv JSON, and one of them read the
global content policy at span end, so a call opened with ``capture_content="redacted"`` whose span
ended after ``configure(capture_content=False)`` exported its tool-call arguments raw (issue 13).
Now the adapters only turn SDK objects into the neutral data below, raw strings that nothing has
redacted yet, and this module alone renders it, under the :class:`ContentPolicy` the pipeline passes
in: the one fixed when the call started. Every text goes through ``policy.text``, every parsed
tool-call argument value through ``policy.any_value``; ids, names and part types are not texts.

Runs only when content capture is on (the pipeline has no content step otherwise), so none of this
is on the capture-off hot path. The output side renders the choices accumulated in the call record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from llmwatch import _semconv as sc

if TYPE_CHECKING:
    from llmwatch._policy._content import ContentPolicy


# Provider finish reasons -> the semconv enum of an output message's ``finish_reason``.
FINISH_REASONS_ENUM = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "completed": "stop",
    "pause_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_context_window_exceeded": "length",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "guardrail_intervened": "content_filter",  # Bedrock Converse
    "content_filtered": "content_filter",
    "FINISH": "stop",  # Amazon Titan's completionReason
    "STOP_CRITERIA_MET": "stop",
    "LENGTH": "length",
    "CONTENT_FILTERED": "content_filter",
    "tool_calls": "tool_call",
    "function_call": "tool_call",
    "tool_use": "tool_call",
    # Gemini (google-genai's FinishReason, lower-cased)
    "safety": "content_filter",
    "recitation": "content_filter",
    "blocklist": "content_filter",
    "prohibited_content": "content_filter",
    "spii": "content_filter",
    "image_safety": "content_filter",
    "image_prohibited_content": "content_filter",
    "image_recitation": "content_filter",
    "finish_reason_unspecified": "error",
    "other": "error",
    "malformed_function_call": "error",
    "unexpected_tool_call": "error",
    "too_many_tool_calls": "error",
}


def semconv_finish_reason(provider_reason: str | None, failed: bool) -> str:
    if provider_reason is None:
        return "error" if failed else "stop"
    return FINISH_REASONS_ENUM.get(provider_reason, "error" if failed else "stop")


def text_part(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def parse_arguments(arguments: Any) -> Any:
    """Tool-call arguments as an object when they are JSON, else as given."""
    if isinstance(arguments, str):
        import json

        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def render_arguments(arguments: Any, policy: ContentPolicy) -> Any:
    """Tool-call arguments, parsed when JSON, with every string inside them through the policy."""
    return policy.any_value(parse_arguments(arguments))


# --- neutral message parts (what adapters produce) ------------------------------------------------
# Plain slotted classes, not dataclasses: these are defined at ``import llmwatch``, where ten
# dataclasses would cost several milliseconds of code generation.
class Text:
    __slots__ = ("content",)

    def __init__(self, content: str) -> None:
        self.content = content

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        return text_part(policy.text(self.content))


class Reasoning:
    __slots__ = ("content",)

    def __init__(self, content: str) -> None:
        self.content = content

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        return {"type": "reasoning", "content": policy.text(self.content)}


class ToolCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, id: Any, name: Any, arguments: Any) -> None:
        self.id = id
        self.name = name
        self.arguments = arguments  # as the provider sent them: JSON text, or an already parsed value

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        return {
            "type": "tool_call",
            "id": self.id,
            "name": self.name,
            "arguments": render_arguments(self.arguments, policy),
        }


class ServerToolCall:
    """A tool the provider ran itself (Anthropic's ``server_tool_use``: web search, code execution).

    The semconv ``server_tool_call`` part; its ``server_tool_call`` detail is the generic shape: the
    tool's type (its name) and its arguments, which go through the policy like a tool call's.
    """

    __slots__ = ("arguments", "id", "name")

    def __init__(self, id: Any, name: Any, arguments: Any) -> None:
        self.id = id
        self.name = name
        self.arguments = arguments

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        detail = {"type": self.name, "arguments": render_arguments(self.arguments, policy)}
        return {"type": "server_tool_call", "id": self.id, "name": self.name, "server_tool_call": detail}


class ToolCallResponse:
    __slots__ = ("id", "response")

    def __init__(self, id: Any, response: Any) -> None:
        self.id = id
        self.response = response  # a text, or the structured result the provider took

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        return {"type": "tool_call_response", "id": self.id, "response": policy.any_value(self.response)}


class Blob:
    """Inline binary content: the semconv blob part's type, modality, MIME type and size, its bytes never.

    The schema's ``content`` would be the payload in base64; llmwatch sends no payload at all (a
    span is no place for an image, and a placeholder string would read as one), only ``byte_size``
    when the request said how big it is.
    """

    __slots__ = ("byte_size", "mime_type", "modality")

    def __init__(self, modality: str, mime_type: str | None = None, byte_size: int | None = None) -> None:
        self.modality = modality
        self.mime_type = mime_type
        self.byte_size = byte_size

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        part: dict[str, Any] = {"type": "blob", "modality": self.modality}
        if self.mime_type is not None:
            part["mime_type"] = self.mime_type
        if self.byte_size is not None:
            part["byte_size"] = self.byte_size
        return part


def size_of(data: Any) -> int | None:
    """The decoded size of inline data: bytes as given, base64 text by its length (nothing decoded)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    if isinstance(data, str):
        data = data.rstrip("=")
        return len(data) * 3 // 4
    return None


def data_url_blob(modality: str, url: str) -> Blob:
    """A ``data:<mime>;base64,<payload>`` URL as a blob part: its MIME type and decoded size."""
    header, _, payload = url[5:].partition(",")
    mime = header.split(";", 1)[0] or None
    return Blob(modality, mime_type=mime, byte_size=size_of(payload) if header.endswith(";base64") else None)


class Uri:
    __slots__ = ("modality", "uri")

    def __init__(self, modality: str, uri: Any) -> None:
        self.modality = modality
        self.uri = uri  # a text (a URL can carry personal data: it goes through the policy), or absent

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        uri = policy.text(self.uri) if isinstance(self.uri, str) else self.uri
        return {"type": "uri", "modality": self.modality, "uri": uri}


class File:
    """A file the provider already holds, named by its id."""

    __slots__ = ("file_id",)

    def __init__(self, file_id: Any) -> None:
        self.file_id = file_id

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        return {"type": "file", "modality": "file", "file_id": self.file_id}


class Unknown:
    """A part of a kind llmwatch does not know: its type only, nothing of its content."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        return {"type": self.kind}


Part = Text | Reasoning | ToolCall | ServerToolCall | ToolCallResponse | Blob | Uri | File | Unknown


class Message:
    __slots__ = ("name", "parts", "role")

    def __init__(self, role: str, parts: list[Part], name: Any = None) -> None:
        self.role = role
        self.parts = parts
        self.name = name  # the participant's name, when the request gave one

    def render(self, policy: ContentPolicy) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "parts": [part.render(policy) for part in self.parts]}
        if self.name:
            message["name"] = self.name
        return message


class RequestContent:
    """The content of one request, as an adapter read it from the SDK call's arguments."""

    __slots__ = ("messages", "system", "tools")

    def __init__(
        self, messages: list[Message] | None = None, system: list[Part] | None = None, tools: list[Any] | None = None
    ) -> None:
        self.messages = messages if messages is not None else []
        self.system = system  # None: the request has no system instructions
        self.tools = tools  # tool definitions as plain JSON-like values; None: none declared


# --- the output side: the choices the call record accumulated -------------------------------------
class Choice(Protocol):
    """What the renderer reads of a choice in the call record (``_core._call.Choice``)."""

    @property
    def role(self) -> str: ...
    @property
    def text(self) -> list[str]: ...
    @property
    def reasoning(self) -> list[str]: ...
    @property
    def tool_calls(self) -> dict[int, dict[str, Any]]: ...
    @property
    def finish_reason(self) -> str | None: ...


def output_messages(choices: Mapping[int, Choice], failed: bool, policy: ContentPolicy) -> list[dict[str, Any]]:
    """One semconv output message per choice, partial for an unfinished stream."""
    messages = []
    for index in sorted(choices):
        choice = choices[index]
        parts: list[dict[str, Any]] = []
        if choice.reasoning:
            parts.append(Reasoning("".join(choice.reasoning)).render(policy))
        if choice.text:
            parts.append(Text("".join(choice.text)).render(policy))
        for position in sorted(choice.tool_calls):
            tool = choice.tool_calls[position]
            kind = ServerToolCall if tool.get("server") else ToolCall  # "server": the provider ran it
            parts.append(kind(tool.get("id"), tool.get("name"), tool.get("arguments")).render(policy))
        messages.append(
            {"role": choice.role, "parts": parts, "finish_reason": semconv_finish_reason(choice.finish_reason, failed)}
        )
    return messages


def content_attributes(
    request: RequestContent, choices: Mapping[int, Choice], failed: bool, policy: ContentPolicy
) -> dict[str, Any]:
    """System instructions, input messages, tool definitions and output messages as span attributes."""
    attrs: dict[str, Any] = {}
    if request.system is not None:
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = policy.json([part.render(policy) for part in request.system])
    attrs[sc.GEN_AI_INPUT_MESSAGES] = policy.json([message.render(policy) for message in request.messages])
    if request.tools is not None:
        attrs[sc.GEN_AI_TOOL_DEFINITIONS] = policy.json(policy.any_value(request.tools))
    attrs[sc.GEN_AI_OUTPUT_MESSAGES] = policy.json(output_messages(choices, failed, policy))
    return attrs
