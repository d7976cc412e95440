"""The OpenAI wire format of the loopback server: chat completions, responses and embeddings, JSON
and SSE streams (the scenarios and token formulas: ``_server.py``).
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from llmwatch._demo._wire import (
    JSON,
    REASONING_TOKENS,
    Event,
    Json,
    Output,
    Reply,
    Request,
    Route,
    Stream,
    input_tokens,
    new_id,
    reply_text,
    snapshot,
    split_chars,
    split_words,
    tool_call,
    wants_tool_call,
    words,
)

# --- OpenAI chat completions -----------------------------------------------------------------------


def _chat_outputs(request: Request) -> list[Output]:
    n = min(max(int(request.body.get("n") or 1), 1), 16)
    if wants_tool_call(request):
        return [Output(None, tool_call(request, f"call_{i}")) for i in range(n)]
    return [Output(reply_text(request, i)) for i in range(n)]


def _chat_finish(request: Request, output: Output) -> str:
    if output.tool:
        return "tool_calls"
    return "length" if request.has("length") else "stop"


def _served_tier(request: Request) -> str:
    """The tier OpenAI says it served: the one asked for (flex, priority, scale), else default."""
    asked = request.body.get("service_tier")
    return asked if isinstance(asked, str) and asked not in ("auto", "") else "default"


def _openai_usage(request: Request, outputs: list[Output]) -> JSON:
    prompt = input_tokens(request.body)
    reasoning = REASONING_TOKENS if request.has("reasoning") else 0
    completion = sum(o.tokens for o in outputs) + reasoning  # completion_tokens includes reasoning
    if request.has("provider-cost"):  # OpenRouter's own figure for the call, in USD
        return {
            **_openai_usage_counts(prompt, completion, reasoning, request),
            "cost": provider_cost(prompt, completion),
        }
    return _openai_usage_counts(prompt, completion, reasoning, request)


def provider_cost(prompt_tokens: int, completion_tokens: int) -> float:
    """What the ``provider-cost`` scenario reports as ``usage.cost``: $1 and $2 per million tokens."""
    return (prompt_tokens * 1.0 + completion_tokens * 2.0) / 1_000_000


def _openai_usage_counts(prompt: int, completion: int, reasoning: int, request: Request) -> JSON:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": prompt // 2 if request.has("cached") else 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_message(output: Output) -> JSON:
    message: JSON = {"role": "assistant", "content": output.text, "refusal": None, "annotations": []}
    if output.tool:
        message["tool_calls"] = [
            {
                "id": output.tool.id,
                "type": "function",
                "function": {"name": output.tool.name, "arguments": output.tool.arguments},
            }
        ]
    return message


def chat_completions(request: Request) -> Reply:
    outputs = _chat_outputs(request)
    usage = None if request.has("no-usage") else _openai_usage(request, outputs)
    head = {
        "id": new_id("chatcmpl-"),
        "created": int(time.time()),
        "model": snapshot(request.model),
        "system_fingerprint": "fp_llmwatch",
        "service_tier": _served_tier(request),
    }
    if request.stream:
        return Stream(_chat_chunks(request, head, outputs, usage), cut=request.has("cut-stream"))
    choices = [
        {"index": i, "message": _chat_message(o), "finish_reason": _chat_finish(request, o), "logprobs": None}
        for i, o in enumerate(outputs)
    ]
    body = {**head, "object": "chat.completion", "choices": choices}
    if usage is not None:  # servers without usage omit the key
        body["usage"] = usage
    return Json(200, body)


def _chat_deltas(request: Request, output: Output) -> list[tuple[JSON, bool]]:
    """One choice's deltas in order, each with whether it carries output (for ttft)."""
    if output.tool:
        call = output.tool
        opening = {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        deltas = [({"role": "assistant", "content": None, "refusal": None, "tool_calls": [opening]}, True)]
        for piece in split_chars(call.arguments, request.chunks):
            deltas.append(({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, True))
        return deltas
    deltas = [({"role": "assistant", "content": "", "refusal": None}, False)]
    deltas += [({"content": piece}, True) for piece in split_words(output.text or "", request.chunks)]
    return deltas


def _chat_chunks(request: Request, head: JSON, outputs: list[Output], usage: JSON | None) -> list[Event]:
    usage_on_last = request.has("usage-on-last-chunk") and usage is not None
    asked = bool((request.body.get("stream_options") or {}).get("include_usage"))
    usage_chunk = asked and usage is not None and not usage_on_last
    # Per choice: (delta, finish_reason, content?). Normally the finish reason comes in a chunk of its
    # own with an empty delta; the usage-on-last-chunk servers fold it into the last content chunk.
    lanes: list[list[tuple[JSON, str | None, bool]]] = []
    for output in outputs:
        lane: list[tuple[JSON, str | None, bool]] = [(d, None, c) for d, c in _chat_deltas(request, output)]
        finish = _chat_finish(request, output)
        if usage_on_last:
            delta, _, content = lane[-1]
            lane[-1] = (delta, finish, content)
        else:
            lane.append(({}, finish, False))
        lanes.append(lane)

    def chunk(choices: list[JSON]) -> JSON:
        body = {**head, "object": "chat.completion.chunk", "choices": choices}
        if usage_chunk:
            body["usage"] = None  # OpenAI marks every chunk but the usage chunk with an explicit null
        return body

    events: list[Event] = []
    for step in range(max(len(lane) for lane in lanes)):
        for index, lane in enumerate(lanes):  # choices interleave, as OpenAI's do with n > 1
            if step < len(lane):
                delta, finish_reason, content = lane[step]
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                events.append(Event(chunk([choice]), content=content))
    if usage_on_last:
        last = events[-1]
        assert isinstance(last.data, dict)
        events[-1] = Event({**last.data, "usage": usage}, content=last.content)
    if usage_chunk:
        events.append(Event({**chunk([]), "usage": usage}))
    events.append(Event("[DONE]"))
    return events


# --- OpenAI responses ------------------------------------------------------------------------------


def _response_item(request: Request) -> JSON:
    if wants_tool_call(request):
        call = tool_call(request, "call_0")
        return {
            "id": new_id("fc_"),
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
    text = {"type": "output_text", "text": reply_text(request), "annotations": [], "logprobs": []}
    return {"id": new_id("msg_"), "type": "message", "role": "assistant", "status": "completed", "content": [text]}


def _response_usage(request: Request, item: JSON) -> JSON:
    prompt = input_tokens(request.body)
    text = item["content"][0]["text"] if item["type"] == "message" else f"{item['name']} {item['arguments']}"
    reasoning = REASONING_TOKENS if request.has("reasoning") else 0
    output = words(text) + reasoning  # output_tokens includes reasoning
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": prompt // 2 if request.has("cached") else 0, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output,
    }


def _response_object(request: Request) -> JSON:
    item = _response_item(request)
    incomplete = request.has("length")
    now = int(time.time())
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": now,
        "completed_at": None if incomplete else now,
        "status": "incomplete" if incomplete else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": request.body.get("instructions"),
        "max_output_tokens": request.body.get("max_output_tokens"),
        "model": snapshot(request.model),
        "output": [item],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": _served_tier(request),
        "store": True,
        "temperature": request.body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": request.body.get("tool_choice", "auto"),
        "tools": request.body.get("tools") or [],
        "top_p": request.body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None if request.has("no-usage") else _response_usage(request, item),
        "user": None,
        "metadata": request.body.get("metadata") or {},
    }


def responses(request: Request) -> Reply:
    response = _response_object(request)
    if not request.stream:
        return Json(200, response)
    return Stream(_response_events(request, response), cut=request.has("cut-stream"))


def _response_events(request: Request, response: JSON) -> list[Event]:
    # Lifecycle events carry the response without output or usage: usage arrives only at the end.
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    pending.update(completed_at=None, incomplete_details=None)
    events = [
        Event({"type": "response.created", "response": pending}),
        Event({"type": "response.in_progress", "response": pending}),
    ]
    for index, item in enumerate(response["output"]):
        events += (
            _message_events(request, index, item) if item["type"] == "message" else _call_events(request, index, item)
        )
    terminal = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    events.append(Event({"type": terminal, "response": response}))
    # Every event names itself twice (the SSE event line and "type") and carries a running number.
    return [
        Event({**event.data, "sequence_number": number}, event.data["type"], event.content)
        for number, event in enumerate(events)
        if isinstance(event.data, dict)
    ]


def _message_events(request: Request, index: int, item: JSON) -> list[Event]:
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    opened = {**item, "status": "in_progress", "content": []}
    events = [
        Event({"type": "response.output_item.added", "output_index": index, "item": opened}),
        Event({"type": "response.content_part.added", **where, "part": {**part, "text": ""}}),
    ]
    for piece in split_words(part["text"], request.chunks):
        delta = {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
        events.append(Event(delta, content=True))
    events += [
        Event({"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []}),
        Event({"type": "response.content_part.done", **where, "part": part}),
        Event({"type": "response.output_item.done", "output_index": index, "item": item}),
    ]
    return events


def _call_events(request: Request, index: int, item: JSON) -> list[Event]:
    where = {"item_id": item["id"], "output_index": index}
    opened = {**item, "status": "in_progress", "arguments": ""}  # the SDK's helper appends the deltas to ""
    events = [Event({"type": "response.output_item.added", "output_index": index, "item": opened})]
    for piece in split_chars(item["arguments"], request.chunks):
        delta = {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        events.append(Event(delta, content=True))
    events += [
        Event({"type": "response.function_call_arguments.done", **where, "arguments": item["arguments"]}),
        Event({"type": "response.output_item.done", "output_index": index, "item": item}),
    ]
    return events


# --- OpenAI embeddings -----------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[str | list[int]]:
    """``input`` is a string, a token array, or a list of either."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [list(value)]
    if isinstance(value, list):
        return [v if isinstance(v, str) else [int(t) for t in v] for v in value]
    return []


def _vector(item: str | list[int], index: int, dimensions: int) -> list[float]:
    seed = sum(map(ord, item)) if isinstance(item, str) else sum(item)
    values = [((seed * 31 + index * 7 + d * 17) % 101) / 101.0 - 0.5 for d in range(dimensions)]
    # Round through float32 so the "float" and "base64" encodings decode to exactly the same numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *values)))


def embeddings(request: Request) -> Reply:
    inputs = _embedding_inputs(request.body.get("input"))
    dimensions = max(1, int(request.body.get("dimensions") or 8))
    base64_wanted = request.body.get("encoding_format") == "base64"  # the SDK's default when unset
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(item, index, dimensions)
        encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if base64_wanted else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(words(i) if isinstance(i, str) else len(i) for i in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}  # embeddings usage has nothing else
    return Json(200, {"object": "list", "data": data, "model": request.model, "usage": usage})


# --- errors and routes ---------------------------------------------------------------------------

_OPENAI_ERRORS = {  # status -> (type, code), as the API sends them
    400: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    529: ("server_error", None),
}


def openai_error_body(status: int, message: str | None, request_id: str) -> JSON:
    kind, code = _OPENAI_ERRORS[status]
    return {"error": {"message": message or f"simulated {status}", "type": kind, "param": None, "code": code}}


def unknown_argument(name: str) -> Json:
    """What OpenAI (and servers copying its errors) answer for a request field they do not accept."""
    message = f"Unrecognized request argument supplied: {name}"
    body = {"error": {"message": message, "type": "invalid_request_error", "param": name, "code": None}}
    request_id = new_id("req_")
    return Json(400, body, {"x-request-id": request_id, "request-id": request_id, "x-should-retry": "false"})


def _reject_stream_options(request: Request) -> Reply | None:
    if request.has("reject-stream-options") and "stream_options" in request.body:
        return unknown_argument("stream_options")
    return None


ROUTES = (
    Route("/v1/chat/completions", chat_completions, openai_error_body, reject=_reject_stream_options),
    Route("/v1/responses", responses, openai_error_body),
    Route("/v1/embeddings", embeddings, openai_error_body),
)
