"""The Anthropic wire format of the loopback server: messages (JSON and SSE streams) and token
counting (the scenarios and token formulas: ``_server.py``).
"""

from __future__ import annotations

import json

from llmwatch._demo._wire import (
    ANTHROPIC_CACHE_READ,
    ANTHROPIC_CACHE_WRITE_1H,
    ANTHROPIC_CACHE_WRITE_5M,
    JSON,
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
    split_chars,
    split_words,
    tool_call,
    wants_tool_call,
)

# --- Anthropic messages ----------------------------------------------------------------------------


def _anthropic_usage(request: Request, output_tokens: int) -> JSON:
    cached = request.has("cached")
    write_5m = ANTHROPIC_CACHE_WRITE_5M if cached else 0
    write_1h = ANTHROPIC_CACHE_WRITE_1H if cached else 0
    return {
        "input_tokens": input_tokens(request.body),  # excludes the cache reads and writes below
        "cache_read_input_tokens": ANTHROPIC_CACHE_READ if cached else 0,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _anthropic_message(request: Request) -> JSON:
    # Claude usually says a sentence before it calls a tool: a text block, then the tool_use block.
    output = Output(reply_text(request), tool_call(request, "toolu_0") if wants_tool_call(request) else None)
    content: list[JSON] = [{"type": "text", "text": output.text}]
    stop_reason = "max_tokens" if request.has("length") else "end_turn"
    if output.tool:
        call = output.tool
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": json.loads(call.arguments)})
        stop_reason = "tool_use"
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(request, output.tokens),
    }


def messages_route(request: Request) -> Reply:
    message = _anthropic_message(request)
    if not request.stream:
        return Json(200, message)
    return Stream(_anthropic_events(request, message), cut=request.has("cut-stream"))


def _anthropic_events(request: Request, message: JSON) -> list[Event]:
    usage = message["usage"]
    # message_start already reports input tokens and a first output count; message_delta at the end
    # carries the final, cumulative output count and repeats the input and cache counts.
    started = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [Event({"type": "message_start", "message": started}, "message_start")]
    for index, block in enumerate(message["content"]):
        block_events = _block_events(request, index, block)
        if index == 0:  # the API interleaves pings; clients must skip them
            block_events.insert(1, Event({"type": "ping"}, "ping"))
        events += block_events
        if request.has("stream-error-event"):
            error = {"type": "overloaded_error", "message": "Overloaded"}
            events.append(Event({"type": "error", "error": error, "request_id": new_id("req_")}, "error"))
            return events
    counts = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    final = {"type": "message_delta", "delta": delta, "usage": {key: usage[key] for key in counts}}
    events.append(Event(final, "message_delta"))
    events.append(Event({"type": "message_stop"}, "message_stop"))
    return events


def _block_events(request: Request, index: int, block: JSON) -> list[Event]:
    if block["type"] == "text":
        opened: JSON = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in split_words(block["text"], request.chunks)]
    else:
        opened = {**block, "input": {}}
        partial = split_chars(json.dumps(block["input"]), request.chunks)
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in partial]
    start = {"type": "content_block_start", "index": index, "content_block": opened}
    events = [Event(start, "content_block_start")]
    for delta in deltas:
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        events.append(Event(event, "content_block_delta", content=True))
    events.append(Event({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return events


def count_tokens(request: Request) -> Reply:
    return Json(200, {"input_tokens": input_tokens(request.body)})


# --- errors and routes ---------------------------------------------------------------------------

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def anthropic_error_body(status: int, message: str | None, request_id: str) -> JSON:
    kind = _ANTHROPIC_ERRORS[status]
    return {
        "type": "error",
        "error": {"type": kind, "message": message or f"simulated {kind}"},
        "request_id": request_id,
    }


ROUTES = (
    Route("/v1/messages", messages_route, anthropic_error_body),
    Route("/v1/messages/count_tokens", count_tokens, anthropic_error_body),
)
