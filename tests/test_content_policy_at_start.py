"""A span's content is rendered under the content policy its call started with, never a later one.

Regression tests for the privacy bug of issue 13: a call opened with ``capture_content="redacted"``
whose span ended after ``configure(capture_content=False)`` exported its JSON tool-call arguments raw
(the renderer read the *global* policy at span end, found none, and skipped redaction), so an e-mail
address in ``arguments`` left the process. The real SDKs run against the loopback server; the policy
is changed while the call is in flight (mid-stream, or from the HTTP response hook of a plain call).

The loopback server's tool call always asks for ``{"city": "Paris"}``: a user ``redact`` hook that
hides "Paris" shows whether the reply's arguments went through the policy; the e-mail address sits in
the arguments of the request's own earlier tool call, where the built-in redactor must catch it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch._demo._server import FakeLLMServer

EMAIL = "jane.doe@example.com"
CONTENT_KEYS = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
MESSAGES = [
    {"role": "user", "content": "Mail the forecast to me."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "send_mail", "arguments": json.dumps({"to": EMAIL, "city": "Oslo"})},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_9", "content": f"sent to {EMAIL}"},
    {"role": "user", "content": "And the weather in Paris?"},
]
REDACTED_INPUT = [
    {"role": "user", "parts": [{"type": "text", "content": "Mail the forecast to me."}]},
    {
        "role": "assistant",
        "parts": [
            {
                "type": "tool_call",
                "id": "call_9",
                "name": "send_mail",
                "arguments": {"to": "[REDACTED_EMAIL]", "city": "Oslo"},
            }
        ],
    },
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_9", "response": "sent to [REDACTED_EMAIL]"}]},
    {"role": "user", "parts": [{"type": "text", "content": "And the weather in [CITY]?"}]},
]
REDACTED_OUTPUT = [
    {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": "call_0", "name": "get_weather", "arguments": {"city": "[CITY]"}}],
        "finish_reason": "tool_call",
    }
]


def hide_city(text: str) -> str:
    return text.replace("Paris", "[CITY]")


class Exported:
    """An in-memory span exporter behind a tracer provider we own (``configure()`` never shuts it down)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def configure(self, capture_content: bool | str, **settings: Any) -> None:
        llmwatch.configure(
            exporter="none",
            tracer_provider=self.provider,
            capture_content=capture_content,
            instrument=False,
            **settings,
        )

    def only_llm_span(self) -> ReadableSpan:
        spans = [s for s in self.exporter.get_finished_spans() if "gen_ai.operation.name" in (s.attributes or {})]
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]


@pytest.fixture()
def exported() -> Iterator[Exported]:
    out = Exported()
    try:
        yield out
    finally:
        llmwatch.shutdown(timeout_s=2)
        out.provider.shutdown()


def assert_nothing_raw(span: ReadableSpan) -> None:
    for key, value in (span.attributes or {}).items():
        assert EMAIL not in str(value), key


def openai_client(server: FakeLLMServer, flavour: str, **options: Any) -> Any:
    cls = openai.AsyncOpenAI if flavour == "async" else openai.OpenAI
    return llmwatch.instrument(
        cls(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0, **options)
    )


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_a_stream_keeps_the_redaction_it_started_with(
    flavour: str, server: FakeLLMServer, exported: Exported
) -> None:
    exported.configure("redacted", redact=hide_city)
    client = openai_client(server, flavour)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        tools=TOOLS,
        stream=True,
        extra_headers={"x-fake-scenario": "tool-call"},
    )
    if flavour == "async":
        stream = await stream
        first = await anext(stream)
        exported.configure(False)  # capture off, mid-stream: this span was opened under "redacted"
        rest = [chunk async for chunk in stream]
    else:
        first = next(stream)
        exported.configure(False)
        rest = list(stream)
    assert first.choices and rest  # the reconfiguration happened between two chunks

    span = exported.only_llm_span()
    attrs = span.attributes or {}
    assert attrs["llmwatch.stream.completed"] is True
    assert json.loads(attrs["gen_ai.input.messages"]) == REDACTED_INPUT
    assert json.loads(attrs["gen_ai.output.messages"]) == REDACTED_OUTPUT
    assert_nothing_raw(span)


def test_a_plain_call_keeps_the_redaction_it_started_with(server: FakeLLMServer, exported: Exported) -> None:
    def capture_off(response: httpx2.Response) -> None:
        exported.configure(False)  # the reply has arrived; the SDK has not parsed it, the span is open

    exported.configure("redacted", redact=hide_city)
    client = openai_client(server, "sync", http_client=httpx2.Client(event_hooks={"response": [capture_off]}))
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, extra_headers={"x-fake-scenario": "tool-call"}
    )

    span = exported.only_llm_span()
    attrs = span.attributes or {}
    assert json.loads(attrs["gen_ai.input.messages"]) == REDACTED_INPUT
    assert json.loads(attrs["gen_ai.output.messages"]) == REDACTED_OUTPUT
    assert_nothing_raw(span)


def test_a_responses_call_keeps_the_redaction_it_started_with(server: FakeLLMServer, exported: Exported) -> None:
    exported.configure("redacted", redact=hide_city)
    client = openai_client(server, "sync")
    stream = client.responses.create(
        model="gpt-4o-mini",
        input=f"Weather in Paris? Mail {EMAIL}",
        tools=[{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        stream=True,
        extra_headers={"x-fake-scenario": "tool-call"},
    )
    next(iter(stream))
    exported.configure(False)
    list(stream)

    span = exported.only_llm_span()
    attrs = span.attributes or {}
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in [CITY]? Mail [REDACTED_EMAIL]"}]}
    ]
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output[0]["parts"][-1]["arguments"] == {"city": "[CITY]"}
    assert_nothing_raw(span)


def test_an_anthropic_stream_keeps_the_redaction_it_started_with(server: FakeLLMServer, exported: Exported) -> None:
    exported.configure("redacted", redact=hide_city)
    client = llmwatch.instrument(
        anthropic.Anthropic(api_key="sk-ant-test-0123456789", base_url=server.anthropic_base_url, max_retries=0)
    )
    messages = [
        {"role": "user", "content": "Mail the forecast to me."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "send_mail", "input": {"to": EMAIL}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": f"sent to {EMAIL}"}]},
    ]
    stream = client.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=100,
        messages=messages,
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        stream=True,
        extra_headers={"x-fake-scenario": "tool-call"},
    )
    next(iter(stream))
    exported.configure(False)
    list(stream)

    span = exported.only_llm_span()
    attrs = span.attributes or {}
    inputs = json.loads(attrs["gen_ai.input.messages"])
    assert inputs[1]["parts"] == [
        {"type": "tool_call", "id": "toolu_9", "name": "send_mail", "arguments": {"to": "[REDACTED_EMAIL]"}}
    ]
    assert inputs[2]["parts"] == [
        {"type": "tool_call_response", "id": "toolu_9", "response": "sent to [REDACTED_EMAIL]"}
    ]
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output[0]["parts"][-1]["arguments"] == {"city": "[CITY]"}
    assert_nothing_raw(span)


def test_a_call_started_without_capture_records_no_content_after_capture_is_turned_on(
    server: FakeLLMServer, exported: Exported
) -> None:
    exported.configure(False)
    client = openai_client(server, "sync")
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(stream))
    exported.configure(True)
    list(stream)

    attrs = exported.only_llm_span().attributes or {}
    assert not [key for key in attrs if key in CONTENT_KEYS]


def test_an_observed_function_keeps_the_redaction_it_started_with(exported: Exported) -> None:
    @llmwatch.observe(capture_args=True)
    def send(to: str) -> dict[str, str]:
        exported.configure(False)  # while the workflow span is open
        return {"sent_to": to}

    exported.configure("redacted")
    assert send(EMAIL) == {"sent_to": EMAIL}  # the caller's own value is untouched

    (span,) = exported.exporter.get_finished_spans()
    attrs = span.attributes or {}
    assert json.loads(attrs["llmwatch.input"]) == {"args": ["[REDACTED_EMAIL]"], "kwargs": {}}
    assert json.loads(attrs["llmwatch.output"]) == {"sent_to": "[REDACTED_EMAIL]"}
    assert_nothing_raw(span)
