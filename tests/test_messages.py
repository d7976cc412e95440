"""The one semconv message renderer (``_core/_messages.py``): neutral data in, content attributes out.

Adapters hand over raw strings; every text goes through the policy here (in tool definitions and
parsed tool arguments: every string value), while ids, tool-call names and part types do not. The
last test is a whole provider in a few lines: a handler that only reads its request into neutral data
gets the same content attributes, with no change to ``_core``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from llmwatch import testing
from llmwatch._core import _runtime
from llmwatch._core._call import Choice, LLMCall, start_call
from llmwatch._core._messages import (
    Blob,
    File,
    Message,
    Reasoning,
    RequestContent,
    Text,
    ToolCall,
    ToolCallResponse,
    Unknown,
    Uri,
    content_attributes,
    data_url_blob,
    output_messages,
    semconv_finish_reason,
    size_of,
)
from llmwatch._policy._content import ContentPolicy

SHOUT = ContentPolicy(True, str.upper, 1000)  # a visible redaction: every text that went through it is upper case


def rendered(request: RequestContent, choices: Mapping[int, Choice] | None = None, failed: bool = False) -> Any:
    attrs = content_attributes(request, choices or {}, failed, SHOUT)
    return {key: json.loads(value) for key, value in attrs.items()}


def test_every_text_goes_through_the_policy_ids_and_part_types_do_not() -> None:
    request = RequestContent(
        messages=[
            Message(
                "user",
                [Text("hi"), Uri("image", "https://x.test/a"), Blob("image", mime_type="image/png", byte_size=68)],
                name="jo",
            ),
            Message(
                "assistant",
                [Reasoning("think"), ToolCall("c1", "find", '{"q": "paris", "n": 2}'), ToolCall("c2", "f", "not json")],
            ),
            Message("tool", [ToolCallResponse("c1", "found"), ToolCallResponse("c2", {"rows": ["a"]})]),
            Message("user", [File("file-1"), Blob("audio"), Unknown("video")]),
        ],
        system=[Text("be brief")],
        tools=[{"type": "function", "name": "find", "description": "look up", "parameters": {"type": "object"}}],
    )
    assert rendered(request) == {
        "gen_ai.system_instructions": [{"type": "text", "content": "BE BRIEF"}],
        "gen_ai.input.messages": [
            {
                "role": "user",
                "parts": [
                    {"type": "text", "content": "HI"},
                    {"type": "uri", "modality": "image", "uri": "HTTPS://X.TEST/A"},
                    {"type": "blob", "modality": "image", "mime_type": "image/png", "byte_size": 68},  # no payload
                ],
                "name": "jo",
            },
            {
                "role": "assistant",
                "parts": [
                    {"type": "reasoning", "content": "THINK"},
                    {"type": "tool_call", "id": "c1", "name": "find", "arguments": {"q": "PARIS", "n": 2}},
                    {"type": "tool_call", "id": "c2", "name": "f", "arguments": "NOT JSON"},
                ],
            },
            {
                "role": "tool",
                "parts": [
                    {"type": "tool_call_response", "id": "c1", "response": "FOUND"},
                    {"type": "tool_call_response", "id": "c2", "response": {"rows": ["A"]}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"type": "file", "modality": "file", "file_id": "file-1"},
                    {"type": "blob", "modality": "audio"},
                    {"type": "video"},
                ],
            },
        ],
        "gen_ai.tool.definitions": [  # a user-written value throughout: every string in it is policed
            {"type": "FUNCTION", "name": "FIND", "description": "LOOK UP", "parameters": {"type": "OBJECT"}}
        ],
        "gen_ai.output.messages": [],
    }


def test_absent_system_and_tools_give_no_attribute() -> None:
    assert rendered(RequestContent()) == {"gen_ai.input.messages": [], "gen_ai.output.messages": []}


def test_output_messages_per_choice_in_index_order() -> None:
    first, second = Choice(0), Choice(1)
    first.text += ["Hel", "lo"]
    first.reasoning.append("hmm")
    first.finish_reason = "end_turn"
    second.tool_calls[1] = {"id": "b", "name": "g", "arguments": "{}"}
    second.tool_calls[0] = {"id": "a", "name": "f", "arguments": '{"x": "y"}'}
    assert output_messages({1: second, 0: first}, False, SHOUT) == [
        {
            "role": "assistant",
            "parts": [{"type": "reasoning", "content": "HMM"}, {"type": "text", "content": "HELLO"}],
            "finish_reason": "stop",
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "a", "name": "f", "arguments": {"x": "Y"}},
                {"type": "tool_call", "id": "b", "name": "g", "arguments": {}},
            ],
            "finish_reason": "stop",
        },
    ]


def test_finish_reasons_map_to_the_semconv_enum() -> None:
    assert semconv_finish_reason("tool_use", failed=False) == "tool_call"
    assert semconv_finish_reason("max_output_tokens", failed=False) == "length"
    assert semconv_finish_reason(None, failed=False) == "stop"
    assert semconv_finish_reason(None, failed=True) == "error"  # a cut stream or a failed call
    assert semconv_finish_reason("something-new", failed=True) == "error"


class EchoHandler:
    """A whole provider adapter for the core: it reads its request into neutral data, renders nothing."""

    provider = "echo"
    operation = "chat"

    def on_response(self, call: LLMCall, response: Any) -> None:
        call.choice(0).text.append(response["reply"])
        call.input_tokens, call.output_tokens = 1, 1

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        return False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return ["user", request["prompt"]]

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        return 1, "estimate"

    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        return RequestContent(messages=[Message("user", [Text(request["prompt"])])])


def test_a_new_provider_is_one_adapter_with_no_change_to_the_core() -> None:
    with testing.capture(capture_content="redacted") as captured:
        call = start_call(
            _runtime.CURRENT, EchoHandler(), {"model": "echo-1", "prompt": "mail a@b.io"}, {}, stream=False
        )
        call.finish({"reply": "sent to a@b.io"})
    (span,) = captured.llm_spans()
    attrs = span.attributes or {}
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "mail [REDACTED_EMAIL]"}]}
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "sent to [REDACTED_EMAIL]"}],
            "finish_reason": "stop",
        }
    ]


def test_a_blob_says_its_size_and_type_never_its_bytes() -> None:
    payload = base64.b64encode(b"\x89PNG" + bytes(100)).decode()
    blob = data_url_blob("image", f"data:image/png;base64,{payload}")
    assert blob.render(SHOUT) == {"type": "blob", "modality": "image", "mime_type": "image/png", "byte_size": 104}
    assert size_of(b"abc") == 3 and size_of(base64.b64encode(b"abcde").decode()) == 5 and size_of(None) is None
    assert data_url_blob("image", "data:image/svg+xml,%3Csvg%3E").render(SHOUT) == {
        "type": "blob",
        "modality": "image",
        "mime_type": "image/svg+xml",
    }
