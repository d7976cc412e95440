"""The Gemini wire format of the loopback server: ``generateContent`` (JSON), ``streamGenerateContent``
(``alt=sse``) and embeddings, for the Gemini Developer API and for Vertex AI (the scenarios and token
formulas: ``_server.py``).

What the ``google-genai`` SDK sends and expects (checked against its 3.6.1 source):

- Gemini Developer API: ``POST {base_url}/v1/models/{model}:generateContent`` (``v1beta`` in older SDKs
  and with ``api_version="v1beta"``),
  ``...:streamGenerateContent?alt=sse`` and ``...:batchEmbedContents`` (``embed_content`` always
  posts the batch form, ``{"requests": [{"model", "content"}]}``).
- Vertex AI: ``POST {base_url}/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:...``
  (without ``projects/.../locations/...`` for an API-key client); Gemini embedding models use
  ``:embedContent`` (one content) or ``:batchEmbedContents``.
- A stream is SSE ``data:`` lines without event names, each a whole ``GenerateContentResponse``; every
  chunk carries ``usageMetadata`` with the counts so far, the last one the complete counts and the
  ``finishReason``.
- Usage: ``promptTokenCount`` includes ``cachedContentTokenCount``; ``candidatesTokenCount`` excludes
  ``thoughtsTokenCount``; ``totalTokenCount`` is their sum. A function call ends with ``STOP``.
- Errors: ``{"error": {"code", "message", "status"}}`` (the SDK raises ``ClientError`` for 4xx and
  ``ServerError`` for 5xx).
"""

from __future__ import annotations

import re

from llmwatch._demo._wire import (
    JSON,
    REASONING_TOKENS,
    Event,
    Json,
    Reply,
    Request,
    Route,
    Stream,
    input_tokens,
    new_id,
    reply_text,
    split_words,
    text_of,
    wants_tool_call,
    words,
)

THOUGHT_TEXT = "Let me think about this request step by step."
EMBEDDING_DIMENSIONS = 8
_MODEL = re.compile(r"/models/([^/:]+):")
_STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _model(request: Request) -> str:
    found = _MODEL.search(request.path)
    return found.group(1) if found else "unknown-model"


def prompt_tokens(body: JSON) -> int:
    """Each content's words + 3, plus the words of the system instruction."""
    return input_tokens(body) + words(text_of(body.get("systemInstruction")))


def _function_name(body: JSON) -> str:
    for tool in body.get("tools") or ():
        for declaration in (tool or {}).get("functionDeclarations") or ():
            if isinstance(declaration, dict) and declaration.get("name"):
                return str(declaration["name"])
    return "get_weather"


def _reply(request: Request) -> tuple[list[JSON], JSON, str]:
    """(the model's parts, the complete usage, the finish reason) for one request."""
    text = reply_text(request)
    parts: list[JSON] = []
    if request.has("reasoning"):
        parts.append({"text": THOUGHT_TEXT, "thought": True})
    parts.append({"text": text})
    output = words(text)
    if wants_tool_call(request):
        call = {"name": _function_name(request.body), "args": {"city": "Paris"}}
        parts.append({"functionCall": call})
        output += words(f"{call['name']} city Paris")
    prompt = prompt_tokens(request.body)
    thoughts = REASONING_TOKENS if request.has("reasoning") else 0
    usage: JSON = {
        "promptTokenCount": prompt,  # includes the cached part below
        "candidatesTokenCount": output,  # excludes the thoughts below
        "totalTokenCount": prompt + output + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if request.has("cached"):
        usage["cachedContentTokenCount"] = prompt // 2
    return parts, usage, "MAX_TOKENS" if request.has("length") else "STOP"


def _response(request: Request, parts: list[JSON], usage: JSON | None, finish: str | None, id: str) -> JSON:
    candidate: JSON = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    response: JSON = {"candidates": [candidate], "modelVersion": _model(request), "responseId": id}
    if usage is not None and not request.has("no-usage"):
        response["usageMetadata"] = usage
    return response


def generate_content(request: Request) -> Reply:
    parts, usage, finish = _reply(request)
    return Json(200, _response(request, parts, usage, finish, new_id("")))


def stream_generate_content(request: Request) -> Reply:
    parts, usage, finish = _reply(request)
    response_id = new_id("")
    chunks: list[list[JSON]] = []
    if request.has("reasoning"):
        chunks.append([parts.pop(0)])  # the thought comes first, in a chunk of its own
    texts = split_words(str(parts.pop(0)["text"]), request.chunks)
    chunks += [[{"text": piece}] for piece in texts]
    chunks[-1] += parts  # a function call rides with the last text
    events = []
    sent_words = 0
    for position, chunk_parts in enumerate(chunks):
        last = position == len(chunks) - 1
        sent_words += sum(words(str(p.get("text", ""))) for p in chunk_parts if not p.get("thought"))
        so_far = {"promptTokenCount": usage["promptTokenCount"], "candidatesTokenCount": sent_words}
        so_far["totalTokenCount"] = so_far["promptTokenCount"] + sent_words
        data = _response(request, chunk_parts, usage if last else so_far, finish if last else None, response_id)
        events.append(Event(data, content=True))
    return Stream(events, cut=request.has("cut-stream"))


# --- embeddings ----------------------------------------------------------------------------------


def _vector(text: str) -> list[float]:
    return [round(((len(text) + i) % 7) / 7, 4) for i in range(EMBEDDING_DIMENSIONS)]


def batch_embed_contents(request: Request) -> Reply:
    """The Gemini Developer API's documented reply: the embeddings only, no usage."""
    contents = [text_of(item.get("content")) for item in request.body.get("requests") or () if isinstance(item, dict)]
    return Json(200, {"embeddings": [{"values": _vector(text)} for text in contents]})


def vertex_embed_content(request: Request) -> Reply:
    """Vertex AI's ``embedContent``: one embedding and the input's token count."""
    text = text_of(request.body.get("content"))
    body: JSON = {"embedding": {"values": _vector(text)}, "truncated": False}
    if not request.has("no-usage"):
        body["usageMetadata"] = {"promptTokenCount": words(text), "totalTokenCount": words(text)}
    return Json(200, body)


# --- errors and routes ---------------------------------------------------------------------------


def gemini_error_body(status: int, message: str | None, request_id: str) -> JSON:
    name = _STATUS.get(status, "UNAVAILABLE" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message or f"simulated {name}", "status": name}}


# The SDK's default API versions: v1 (Gemini, since 3.x; v1beta before) and v1beta1 (Vertex AI).
_GEMINI = r"/v1(?:beta)?/models/[^/:]+"
_VERTEX = r"/v1(?:beta1)?/(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/[^/:]+"

ROUTES = (
    Route(_GEMINI + ":generateContent", generate_content, gemini_error_body),
    Route(_GEMINI + ":streamGenerateContent", stream_generate_content, gemini_error_body),
    Route(_GEMINI + ":batchEmbedContents", batch_embed_contents, gemini_error_body),
    Route(_VERTEX + ":generateContent", generate_content, gemini_error_body),
    Route(_VERTEX + ":streamGenerateContent", stream_generate_content, gemini_error_body),
    Route(_VERTEX + ":embedContent", vertex_embed_content, gemini_error_body),
)
