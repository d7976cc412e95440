"""OpenAI Responses (``responses.create``/``.parse``, operation ``chat`` as DESIGN.md fixes): request
attributes, reply and event parsing into the call record, and the request's content as neutral data.

Wire fact: the Responses API reports usage only in ``response.completed`` (or ``.incomplete``/
``.failed``), unasked; nothing is added to the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import Choice, LLMCall
from llmwatch._core._messages import Message, RequestContent, Text
from llmwatch._instrument._fields import field, given, put_numbers
from llmwatch._instrument._openai_request import (
    PROVIDER,
    endpoint_and_tier,
    output_type,
    record_service_tier,
    tool_definitions,
)

# Numeric request parameters: (keyword, attribute).
_NUMBER_PARAMS = (
    ("max_output_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
)


class Responses:
    """``responses.create`` and ``.parse`` (``parses``: the SDK parses the reply after it arrived)."""

    provider = PROVIDER
    operation = sc.OP_CHAT

    def __init__(self, *, parses: bool = False) -> None:
        self.parses = parses

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[Responses, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        endpoint_and_tier(instance, kwargs, attrs, settings)
        attrs[sc.OPENAI_API_TYPE] = sc.OPENAI_API_RESPONSES
        put_numbers(attrs, kwargs, _NUMBER_PARAMS)
        if given(kwargs.get("text_format")):  # .parse(text_format=Model): the SDK asks for its JSON schema
            attrs[sc.GEN_AI_OUTPUT_TYPE] = sc.OUTPUT_JSON
        else:
            text = kwargs.get("text")
            attrs[sc.GEN_AI_OUTPUT_TYPE] = output_type(field(text, "format") if given(text) else None)
        stream = kwargs.get("stream") is True
        if stream:  # the spec: set iff streaming (llmwatch.stream says both ways)
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        attrs[sc.LLMWATCH_STREAM] = stream
        return self, attrs, dict(kwargs), stream, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        parts: list[str] = []
        instructions = request.get("instructions")
        if isinstance(instructions, str):
            parts += ["instructions", instructions]
        for item in _response_input(request):
            parts.append(str(field(item, "role") or field(item, "type") or ""))
            parts.append(_item_text(item))
        return parts

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_tokens

        return count_tokens(call.model, "".join(self.prompt_parts(call.request)))

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        call.response_id = field(response, "id")
        call.response_model = field(response, "model")
        record_service_tier(call, field(response, "service_tier"))
        choice = call.choice(0)
        choice.text.clear()
        choice.reasoning.clear()
        choice.tool_calls.clear()
        for item in field(response, "output") or ():
            _record_output_item(choice, item)
        status = field(response, "status")
        reason = field(field(response, "incomplete_details"), "reason")
        choice.finish_reason = reason or status
        usage = field(response, "usage")
        if usage is not None:
            call.input_tokens = field(usage, "input_tokens") or 0
            call.output_tokens = field(usage, "output_tokens") or 0
            call.cache_read_tokens = field(field(usage, "input_tokens_details"), "cached_tokens") or 0
            call.reasoning_tokens = field(field(usage, "output_tokens_details"), "reasoning_tokens") or 0

    def on_chunk(self, call: LLMCall, event: Any) -> bool:
        kind = field(event, "type") or ""
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.on_response(call, field(event, "response"))
        elif kind == "response.output_text.delta":
            call.mark_first_output()
            call.choice(0).text.append(field(event, "delta") or "")
        elif kind.startswith("response.reasoning") and kind.endswith(".delta"):
            call.mark_first_output()
            call.choice(0).reasoning.append(str(field(event, "delta") or ""))
        elif kind == "response.function_call_arguments.delta":
            call.mark_first_output()
        elif kind == "response.created":
            response = field(event, "response")
            call.response_id = field(response, "id")
            call.response_model = field(response, "model")
        return False

    # --- content (opt-in: read only when the call's policy captures content) ---------------------
    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        instructions = request.get("instructions")
        return RequestContent(
            messages=[
                Message(str(field(item, "role") or "user"), [Text(_item_text(item))])
                for item in _response_input(request)
            ],
            system=[Text(instructions)] if isinstance(instructions, str) else None,
            tools=tool_definitions(request),
        )


def _response_input(request: Mapping[str, Any]) -> list[Any]:
    value = request.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value) if isinstance(value, (list, tuple)) else []


def _item_text(item: Any) -> str:
    content = field(item, "content")
    if isinstance(content, (list, tuple)):
        return "".join(str(field(part, "text") or "") for part in content)
    if content is not None:
        return str(content)
    return str(field(item, "output") or field(item, "arguments") or "")


def _record_output_item(choice: Choice, item: Any) -> None:
    kind = field(item, "type")
    if kind == "message":
        for part in field(item, "content") or ():
            text = field(part, "text") or field(part, "refusal")
            if text:
                choice.text.append(text)
    elif kind == "function_call":
        choice.tool_calls[len(choice.tool_calls)] = {
            "id": field(item, "call_id"),
            "name": field(item, "name"),
            "arguments": field(item, "arguments") or "",
        }
    elif kind == "reasoning":
        for part in field(item, "summary") or ():
            text = field(part, "text")
            if text:
                choice.reasoning.append(text)
