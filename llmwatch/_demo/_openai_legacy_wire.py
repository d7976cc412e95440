"""The rest of the OpenAI wire format the loopback server speaks: legacy completions, images, audio
(transcriptions, translations, speech) and moderations (scenarios and token formulas: ``_server.py``).

Multipart requests (audio uploads) arrive as form fields, the file as an ``Upload``; nothing here
decodes audio: its "length" is its size in bytes.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from llmwatch._demo._openai_wire import openai_error_body
from llmwatch._demo._wire import (
    JSON,
    Event,
    Json,
    Raw,
    Reply,
    Request,
    Route,
    Stream,
    Upload,
    input_tokens,
    new_id,
    reply_text,
    split_words,
    words,
)

AUDIO_BYTES_PER_SECOND = 16_000  # an upload's duration: its size at 16 kB/s (8 kHz, 16-bit mono)
AUDIO_BYTES_PER_TOKEN = 100  # and its audio tokens
IMAGE_TOKENS = 272  # output tokens per image (gpt-image-1, 1024x1024, low quality)
# The smallest valid PNG (1x1, transparent): what every generated image is.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _finish(request: Request) -> str:
    return "length" if request.has("length") else "stop"


# --- completions (legacy) --------------------------------------------------------------------------


def completions(request: Request) -> Reply:
    n = min(max(int(request.body.get("n") or 1), 1), 16)
    texts = [reply_text(request, i) for i in range(n)]
    prompt = input_tokens(request.body)  # the prompt counts as one user message
    usage = {"prompt_tokens": prompt, "completion_tokens": sum(map(words, texts))}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    head = {"id": new_id("cmpl-"), "object": "text_completion", "created": int(time.time()), "model": request.model}
    if not request.stream:
        choices = [
            {"text": text, "index": i, "logprobs": None, "finish_reason": _finish(request)}
            for i, text in enumerate(texts)
        ]
        body = {**head, "choices": choices, "system_fingerprint": "fp_llmwatch"}
        if not request.has("no-usage"):
            body["usage"] = usage
        return Json(200, body)
    events = []
    for index, text in enumerate(texts):
        for piece in split_words(text, request.chunks):
            choice = {"text": piece, "index": index, "logprobs": None, "finish_reason": None}
            events.append(Event({**head, "choices": [choice]}, content=True))
        finish = {"text": "", "index": index, "logprobs": None, "finish_reason": _finish(request)}
        events.append(Event({**head, "choices": [finish]}))
    asked = bool((request.body.get("stream_options") or {}).get("include_usage"))
    if asked and not request.has("no-usage"):
        events.append(Event({**head, "choices": [], "usage": usage}))
    events.append(Event("[DONE]"))
    return Stream(events, cut=request.has("cut-stream"))


# --- images ----------------------------------------------------------------------------------------


def images(request: Request) -> Reply:
    model = str(request.body.get("model") or "dall-e-2")
    n = min(max(int(request.body.get("n") or 1), 1), 10)
    token_billed = model.startswith("gpt-image")
    b64 = token_billed or request.body.get("response_format") == "b64_json"
    image = {"b64_json": base64.b64encode(PNG).decode()} if b64 else {"url": "https://loopback.invalid/image.png"}
    prompt = input_tokens(request.body)
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"text_tokens": prompt, "image_tokens": 0},
        "output_tokens": IMAGE_TOKENS * n,
        "output_tokens_details": {"image_tokens": IMAGE_TOKENS * n, "text_tokens": 0},
        "total_tokens": prompt + IMAGE_TOKENS * n,
    }
    body: JSON = {"created": int(time.time()), "data": [dict(image) for _ in range(n)]}
    if token_billed:
        body.update(background="opaque", output_format="png", quality="low", size="1024x1024", usage=usage)
    if not request.stream:
        return Json(200, body)
    common = {"created_at": body["created"], "size": "1024x1024", "quality": "low", "background": "opaque"}
    common["output_format"] = "png"
    b64_png = base64.b64encode(PNG).decode()
    partial = {"type": "image_generation.partial_image", "b64_json": b64_png, "partial_image_index": 0, **common}
    completed = {"type": "image_generation.completed", "b64_json": b64_png, **common, "usage": usage}
    events = [Event(partial, partial["type"], content=True), Event(completed, completed["type"])]
    return Stream(events, cut=request.has("cut-stream"))


# --- audio -----------------------------------------------------------------------------------------


def _upload(request: Request) -> bytes:
    upload = request.body.get("file")
    if not isinstance(upload, Upload):
        raise ValueError("`file` must be a file upload")
    return upload.data


def _transcript(request: Request) -> str:
    return reply_text(request).replace("Echo:", "Transcribed:", 1)


def _audio_reply(request: Request, task: str) -> Reply:
    audio = _upload(request)
    seconds = round(len(audio) / AUDIO_BYTES_PER_SECOND, 3)
    text = _transcript(request)
    model = request.model
    prompt = request.body.get("prompt")
    prompt_tokens = words(prompt) if isinstance(prompt, str) else 0
    audio_tokens = max(1, len(audio) // AUDIO_BYTES_PER_TOKEN)
    usage: JSON | None = None
    if task == "transcribe" and not model.startswith("whisper"):  # gpt-4o-*-transcribe: tokens
        usage = {
            "type": "tokens",
            "input_tokens": audio_tokens + prompt_tokens,
            "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": prompt_tokens},
            "output_tokens": words(text),
            "total_tokens": audio_tokens + prompt_tokens + words(text),
        }
    elif task == "transcribe":  # whisper-1 transcriptions: the duration billed
        usage = {"type": "duration", "seconds": seconds}
    if request.has("no-usage"):
        usage = None
    if request.stream:
        deltas = [
            Event({"type": "transcript.text.delta", "delta": piece}, content=True) for piece in split_words(text, 3)
        ]
        done: JSON = {"type": "transcript.text.done", "text": text}
        if usage is not None:
            done["usage"] = usage
        return Stream([*deltas, Event(done)])
    response_format = request.body.get("response_format") or "json"
    if response_format in ("text", "srt", "vtt"):
        return Raw(200, text.encode(), "text/plain; charset=utf-8")
    body: JSON = {"text": text}
    if response_format == "verbose_json":
        body = {"task": task, "language": "english", "duration": seconds, "text": text, "segments": []}
    if usage is not None and task == "transcribe":
        body["usage"] = usage
    return Json(200, body)


def transcriptions(request: Request) -> Reply:
    return _audio_reply(request, "transcribe")


def translations(request: Request) -> Reply:
    return _audio_reply(request, "translate")


def speech(request: Request) -> Reply:
    """Audio bytes, no usage: a deterministic fake of ~1 kB per 10 input characters."""
    text = str(request.body.get("input") or "")
    seed = hashlib.sha256(text.encode()).digest()
    data = b"ID3\x04\x00\x00" + seed * max(1, len(text) * 100 // len(seed) // 10)
    kinds = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav"}
    return Raw(200, data, kinds.get(str(request.body.get("response_format") or "mp3"), "application/octet-stream"))


# --- moderations -----------------------------------------------------------------------------------

_CATEGORIES = ("harassment", "hate", "self-harm", "sexual", "violence")


def _moderation_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return [" ".join(str(item.get("text") or "") for item in value)]  # one multimodal input
    return [str(item) for item in value] if isinstance(value, list) else []


def moderations(request: Request) -> Reply:
    results = []
    for text in _moderation_inputs(request.body.get("input")):
        flagged = "[[flag]]" in text
        results.append(
            {
                "flagged": flagged,
                "categories": {name: flagged and name == "violence" for name in _CATEGORIES},
                "category_scores": {name: 0.9 if flagged and name == "violence" else 0.001 for name in _CATEGORIES},
                "category_applied_input_types": {name: ["text"] for name in _CATEGORIES},
            }
        )
    model = str(request.body.get("model") or "omni-moderation-latest")
    model = "omni-moderation-2024-09-26" if model == "omni-moderation-latest" else model
    return Json(200, {"id": new_id("modr-"), "model": model, "results": results})


ROUTES = (
    Route("/v1/completions", completions, openai_error_body),
    Route("/v1/images/generations", images, openai_error_body),
    Route("/v1/audio/transcriptions", transcriptions, openai_error_body),
    Route("/v1/audio/translations", translations, openai_error_body),
    Route("/v1/audio/speech", speech, openai_error_body),
    Route("/v1/moderations", moderations, openai_error_body),
)
