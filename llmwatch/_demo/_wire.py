"""What every wire format of the loopback server shares: the request as read, the scripted output,
reply shapes (JSON, or events a stream writes with the configured delays), errors and routes.

One module per wire format (``_openai_wire.py``, ``_anthropic_wire.py``, ...) turns a :class:`Request`
into a :class:`Reply`; ``_server.py`` serves them. The scenarios and token formulas are listed in
``_server.py``'s docstring.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCENARIOS = frozenset(
    {
        "error-400",
        "error-429",
        "error-500",
        "error-529",
        "error-429-once",
        "cut-stream",
        "no-usage",
        "reject-stream-options",
        "usage-on-last-chunk",
        "tool-call",
        "agent",
        "cached",
        "reasoning",
        "length",
        "stream-error-event",
        "provider-cost",
        "batch-bad-lines",
    }
)

DEFAULT_CHUNKS = 5
REASONING_TOKENS = 10
ANTHROPIC_CACHE_READ = 100
ANTHROPIC_CACHE_WRITE_5M = 30
ANTHROPIC_CACHE_WRITE_1H = 20
_SCENARIO_MARKER = re.compile(r"\[\[scenario:([\w,-]+)\]\]")
_CHUNKS_MARKER = re.compile(r"\[\[chunks:(\d+)\]\]")
FILLER = ["this", "is", "a", "deterministic", "reply", "from", "the", "loopback", "server."]
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4": "gpt-4-0613",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
}

JSON = dict[str, Any]


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


# --- what a request asks for -----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (``body`` is the parsed JSON, or None when it was not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request (``files.create``, audio uploads)."""

    filename: str | None
    content_type: str | None
    data: bytes

    def __str__(self) -> str:  # what a request log or a retry key shows of it
        return f"<upload {self.filename!r}, {len(self.data)} bytes>"


@dataclass(frozen=True)
class Request:
    path: str
    headers: Mapping[str, str]
    body: JSON  # the JSON body; a multipart form's fields (files as ``Upload``); {} for a GET
    scenarios: frozenset[str]
    chunks: int
    method: str = "POST"
    store: dict[str, Any] = field(default_factory=dict)  # the server's own (uploaded files, batches)

    def has(self, scenario: str) -> bool:
        return scenario in self.scenarios

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "unknown-model")


def text_of(value: Any) -> str:
    """All the text in a message or content value: a string, a list of parts, nested tool results."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(text_of(item) for item in value)
    if isinstance(value, dict):
        keys = ("text", "content", "output", "arguments", "parts")  # parts: Gemini contents
        return " ".join(text_of(value[key]) for key in keys if key in value)
    return ""


def messages_of(body: JSON) -> list[Any]:
    """Chat and Anthropic ``messages``, Gemini ``contents``, the Responses API ``input`` (a string or a
    list of items), or a ``prompt`` (legacy completions, images)."""
    for key in ("messages", "contents"):
        if isinstance(body.get(key), list):
            return list(body[key])
    value = body.get("input") if "input" in body else body.get("prompt")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def last_user_text(body: JSON) -> str:
    messages = messages_of(body)
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return text_of((users or messages or [""])[-1])


def words(text: str) -> int:
    return len(text.split())


def input_tokens(body: JSON) -> int:
    instructions = text_of(body.get("system")) + " " + text_of(body.get("instructions"))
    return sum(words(text_of(m)) + 3 for m in messages_of(body)) + words(instructions)


def read_request(
    path: str, headers: Mapping[str, str], body: JSON, method: str = "POST", store: dict[str, Any] | None = None
) -> Request:
    names = headers.get("x-fake-scenario", "").split(",")
    last = last_user_text(body)
    for marker in _SCENARIO_MARKER.findall(last):
        names.extend(marker.split(","))
    chunks = [int(n) for n in _CHUNKS_MARKER.findall(last)]
    scenarios = frozenset(n.strip() for n in names if n.strip())
    count = max(1, chunks[-1]) if chunks else DEFAULT_CHUNKS
    return Request(path, headers, body, scenarios, count, method, store if store is not None else {})


def parse_multipart(raw: bytes, content_type: str) -> JSON:
    """A ``multipart/form-data`` body as fields: text values (``"true"``/``"false"`` as bools, a
    repeated name as a list), file parts as :class:`Upload`."""
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.HTTP).parsebytes(b"content-type: " + content_type.encode() + b"\r\n\r\n" + raw)
    fields: JSON = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition") or "").removesuffix("[]")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        value: Any
        if part.get_filename() is not None:
            value = Upload(part.get_filename(), part.get_content_type(), data)
        else:
            text = data.decode("utf-8", "replace")
            value = {"true": True, "false": False}.get(text, text)
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields


# --- what the model "says" -------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the providers send it


@dataclass(frozen=True)
class Output:
    """One generated answer (one choice): text, a tool call, or (Anthropic) both."""

    text: str | None
    tool: ToolCall | None = None

    @property
    def tokens(self) -> int:
        tool = words(f"{self.tool.name} {self.tool.arguments}") if self.tool else 0
        return words(self.text or "") + tool


def reply_text(request: Request, choice: int = 0) -> str:
    # Echo the start of the prompt so a reply is recognisably "for" its request, then pad with filler
    # so a stream can be split into as many word-aligned chunks as [[chunks:N]] asks for.
    asked = _SCENARIO_MARKER.sub(" ", _CHUNKS_MARKER.sub(" ", last_user_text(request.body))).split()[:6]
    words = ([f"Choice {choice}:"] if choice else []) + ["Echo:", *asked, "-", *FILLER]
    while len(words) < request.chunks:
        words.append(FILLER[len(words) % len(FILLER)].rstrip("."))
    return " ".join(words)


def wants_tool_call(request: Request) -> bool:
    """``tool-call``: always a tool call. ``agent``: an agent loop's two turns, a tool call while the
    conversation has no tool result yet (and tools are offered), then a final answer."""
    if request.has("tool-call"):
        return True
    return request.has("agent") and bool(_offered_tools(request.body)) and not _has_tool_result(request.body)


def _offered_tools(body: JSON) -> list[Any]:
    tools = body.get("tools") or (body.get("toolConfig") or {}).get("tools") or []
    return tools if isinstance(tools, list) else []


_TOOL_RESULT_TYPES = frozenset({"function_call_output", "tool_result"})


def _has_tool_result(value: Any) -> bool:
    """A tool's result anywhere in the conversation, in any provider's shape (OpenAI chat ``role:
    tool``, Responses ``function_call_output``, Anthropic ``tool_result``, Gemini ``functionResponse``,
    Bedrock ``toolResult``)."""
    if isinstance(value, dict):
        if value.get("role") == "tool" or value.get("type") in _TOOL_RESULT_TYPES:
            return True
        if "functionResponse" in value or "toolResult" in value:
            return True
        return any(_has_tool_result(v) for k, v in value.items() if k not in ("tools", "toolConfig"))
    if isinstance(value, list):
        return any(_has_tool_result(v) for v in value)
    return False


def tool_call(request: Request, call_id: str) -> ToolCall:
    """A call of the first offered tool, with arguments that fit its JSON schema."""
    tools = _offered_tools(request.body)
    first = tools[0] if tools and isinstance(tools[0], dict) else {}
    function = first.get("function") or first.get("toolSpec") or first
    name = function.get("name") or "get_weather"
    schema = (
        function.get("parameters") or function.get("input_schema") or (function.get("inputSchema") or {}).get("json")
    )
    return ToolCall(call_id, str(name), json.dumps(arguments_for(schema)))


_SAMPLE_VALUES: dict[str, Any] = {"string": "Paris", "integer": 2, "number": 2.5, "boolean": True, "array": []}


def arguments_for(schema: Any) -> JSON:
    """Arguments a tool's JSON schema accepts: each required (else each) property, a sample of its type;
    ``{"city": "Paris"}`` when the tool declares no schema."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return {"city": "Paris"}
    properties: dict[str, Any] = schema["properties"]
    names = schema.get("required") or list(properties)
    values: JSON = {}
    for name in names:
        spec = properties.get(name) or {}
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, list):  # ["string", "null"]
            kind = next((k for k in kind if k != "null"), "string")
        enum = spec.get("enum") if isinstance(spec, dict) else None
        values[name] = enum[0] if enum else _SAMPLE_VALUES.get(str(kind), {} if kind == "object" else "Paris")
    return values


def split_words(text: str, count: int) -> list[str]:
    """``count`` word-aligned pieces whose concatenation is ``text`` (later pieces start with a space)."""
    words = text.split(" ")
    count = max(1, min(count, len(words)))
    size, extra = divmod(len(words), count)
    pieces: list[str] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append((" " if index else "") + " ".join(words[start:end]))
        start = end
    return pieces


def split_chars(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, count)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def snapshot(model: str) -> str:
    """The dated snapshot OpenAI or Anthropic reports for a requested alias (``gpt-4o-mini`` ->
    ``...-2024-07-18``); other families' names come back as sent, as OpenAI-compatible hosts do."""
    if model in SNAPSHOTS:
        return SNAPSHOTS[model]
    if not model.startswith(_DATED_FAMILIES):
        return model
    return model if _DATED.search(model) else f"{model}-2025-01-01"


_DATED_FAMILIES = ("gpt-", "chatgpt-", "o1", "o3", "o4", "claude-")


# --- replies: a JSON body, or a list of SSE events the handler writes with the configured delays -------


@dataclass(frozen=True)
class Json:
    status: int
    body: JSON
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Raw:
    """A body that is not JSON: a file's content, audio, plain text."""

    status: int
    data: bytes
    content_type: str = "application/octet-stream"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    data: JSON | str
    name: str | None = None  # the SSE ``event:`` line; OpenAI chat streams have none
    content: bool = False  # carries output (text, tool-call or reasoning delta): ttft_s applies before the first


@dataclass(frozen=True)
class Stream:
    events: list[Event]
    cut: bool = False
    content_type: str = "text/event-stream; charset=utf-8"
    encode: Callable[[Event], bytes] | None = None  # None: SSE (``sse_bytes``); Bedrock frames its own
    headers: Mapping[str, str] = field(default_factory=dict)


Reply = Json | Stream | Raw


# --- errors and routes ---------------------------------------------------------------------------

ERROR_STATUS = {"error-400": 400, "error-429": 429, "error-500": 500, "error-529": 529}

# (status, message or None for the provider's default, request id) -> the provider's error body.
ErrorBody = Callable[[int, str | None, str], JSON]
# status -> headers the provider's errors carry besides their body (Bedrock names the error in one).
ErrorHeaders = Callable[[int], Mapping[str, str]]


@dataclass(frozen=True)
class Route:
    """One endpoint of one wire format: ``path`` is a regular expression the whole path (without the
    query) must match; ``reject`` may refuse a request before the error scenarios apply."""

    path: str
    build: Callable[[Request], Reply]
    error_body: ErrorBody
    reject: Callable[[Request], Reply | None] | None = None
    error_headers: ErrorHeaders | None = None
    method: str = "POST"


def error(
    error_body: ErrorBody, status: int, message: str | None = None, error_headers: ErrorHeaders | None = None
) -> Json:
    """The provider's error reply, with the retry headers the SDKs read."""
    request_id = new_id("req_")
    body = error_body(status, message, request_id)
    retryable = status == 429 or status >= 500
    headers = {"x-request-id": request_id, "request-id": request_id, "x-should-retry": str(retryable).lower()}
    if error_headers is not None:
        headers.update(error_headers(status))
    if retryable:
        # The SDKs read retry-after-ms first; "retry-after: 0" alone would NOT be instant: they treat a
        # zero as unset and fall back to their exponential backoff (0.5 s and up).
        headers.update({"retry-after-ms": "1", "retry-after": "0"})
    return Json(status, body, headers)


def sse_bytes(event: Event) -> bytes:
    data = event.data if isinstance(event.data, str) else json.dumps(event.data)
    return (f"event: {event.name}\n" if event.name else "").encode() + f"data: {data}\n\n".encode()
