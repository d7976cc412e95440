"""The loopback server against the real openai and anthropic SDKs, with no llmwatch involved.

Every other test trusts this server to speak the providers' wire formats the way the SDKs expect, so
here the SDKs themselves are the judges: parsed objects, stream helpers, raw responses, exception
classes. Wire details the SDKs hide (pings, ``[DONE]``, absent keys) are checked on the raw bytes.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import statistics
import struct
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from llmwatch._demo._server import SCENARIOS, FakeLLMServer

MODEL = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"  # not deprecated: no SDK warning
PROMPT = "Tell me about the weather in Paris"
USER: Any = [{"role": "user", "content": PROMPT}]
# input tokens: (7 words + 3) for the message; output: "Echo:" + 6 echoed words + "-" + 9 filler words
INPUT_TOKENS = 10
REPLY = "Echo: Tell me about the weather in - this is a deterministic reply from the loopback server."
OUTPUT_TOKENS = 17


def scenario(*names: str) -> dict[str, str]:
    return {"x-fake-scenario": ",".join(names)}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture()
def oai(fake: FakeLLMServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=fake.openai_base_url, max_retries=0)


@pytest.fixture()
def aoai(fake: FakeLLMServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test", base_url=fake.openai_base_url, max_retries=0)


@pytest.fixture()
def claude(fake: FakeLLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", base_url=fake.anthropic_base_url, max_retries=0)


@pytest.fixture()
def aclaude(fake: FakeLLMServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="test", base_url=fake.anthropic_base_url, max_retries=0)


def raw_post(
    server: FakeLLMServer, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, str]:
    """POST with the standard library, to see the wire as sent: (status, headers, body text)."""
    connection = http.client.HTTPConnection("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]), timeout=5)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", path, data, {"content-type": "application/json", **(headers or {})})
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, response.headers, text


def sse(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) for each server-sent event in a body."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines.get("event"), lines["data"]))
    return events


# --- OpenAI chat completions -----------------------------------------------------------------------


def test_chat_completion_fields_and_usage(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model=MODEL, messages=USER)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    assert reply.model == "gpt-4o-mini-2024-07-18" and reply.created > 0
    assert reply.system_fingerprint and reply.service_tier == "default"
    (choice,) = reply.choices
    assert choice.index == 0 and choice.finish_reason == "stop" and choice.logprobs is None
    assert choice.message.role == "assistant" and choice.message.refusal is None
    assert choice.message.content == REPLY and choice.message.tool_calls is None
    usage = reply.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        INPUT_TOKENS,
        OUTPUT_TOKENS,
        INPUT_TOKENS + OUTPUT_TOKENS,
    )
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details and usage.completion_tokens_details.reasoning_tokens == 0
    assert oai.chat.completions.create(model=MODEL, messages=USER).id != reply.id


def test_chat_counts_every_message_and_snapshots_models(oai: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    reply = oai.chat.completions.create(model="o3-mini", messages=messages)
    assert reply.usage and reply.usage.prompt_tokens == (2 + 3) + INPUT_TOKENS
    assert reply.model == "o3-mini-2025-01-01"
    assert oai.chat.completions.create(model="gpt-4o-2024-11-20", messages=USER).model == "gpt-4o-2024-11-20"


def test_chat_n_choices(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model=MODEL, messages=USER, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    texts = [c.message.content or "" for c in reply.choices]
    assert len(set(texts)) == 3
    assert reply.usage and reply.usage.completion_tokens == sum(len(t.split()) for t in texts)


def test_chat_cached_and_reasoning_are_included_in_the_totals(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model=MODEL, messages=USER, extra_headers=scenario("cached", "reasoning"))
    usage = reply.usage
    assert usage and usage.prompt_tokens_details and usage.completion_tokens_details
    assert usage.prompt_tokens == INPUT_TOKENS and usage.prompt_tokens_details.cached_tokens == INPUT_TOKENS // 2
    assert usage.completion_tokens_details.reasoning_tokens == 10
    assert usage.completion_tokens == OUTPUT_TOKENS + 10
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_length_and_no_usage(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model=MODEL, messages=USER, extra_headers=scenario("length", "no-usage"))
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is None


def test_chat_tool_call(oai: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    reply = oai.chat.completions.create(model=MODEL, messages=USER, tools=tools, extra_headers=scenario("tool-call"))
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id == "call_0"
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert reply.usage and reply.usage.completion_tokens == 3  # "lookup {"city": "Paris"}"


def test_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True})
    )
    first, *content, finish, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert len(content) == 5
    assert "".join(c.choices[0].delta.content or "" for c in content) == REPLY
    assert finish.choices[0].finish_reason == "stop"
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.total_tokens == INPUT_TOKENS + OUTPUT_TOKENS
    assert all(c.usage is None and "usage" in c.model_fields_set for c in chunks[:-1])  # explicit nulls
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_without_usage_asked_has_none(fake: FakeLLMServer) -> None:
    status, headers, text = raw_post(fake, "/v1/chat/completions", {"model": MODEL, "messages": USER, "stream": True})
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    events = sse(text)
    assert events[-1] == (None, "[DONE]")
    assert all("usage" not in json.loads(data) for _, data in events[:-1])


def test_chat_stream_chunk_count_marker(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "hello [[chunks:12]]"}]
    chunks = list(oai.chat.completions.create(model=MODEL, messages=messages, stream=True))
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 12
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert text.startswith("Echo: hello -") and "[[" not in text


def test_chat_stream_interleaves_choices(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model=MODEL, messages=USER, stream=True, n=2))
    order = [c.choices[0].index for c in chunks]
    assert order[:4] == [0, 1, 0, 1]
    finishes = [(c.choices[0].index, c.choices[0].finish_reason) for c in chunks if c.choices[0].finish_reason]
    assert finishes == [(0, "stop"), (1, "stop")]


def test_chat_stream_usage_on_last_content_chunk(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model=MODEL, messages=USER, stream=True, extra_headers=scenario("usage-on-last-chunk")
        )
    )
    last = chunks[-1]
    assert last.choices and last.choices[0].delta.content and last.choices[0].finish_reason == "stop"
    assert last.usage and last.usage.completion_tokens == OUTPUT_TOKENS
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks[:-1])


def test_chat_stream_no_usage_even_when_asked(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=scenario("no-usage"),
    )
    chunks = list(stream)
    assert all(c.usage is None and c.choices for c in chunks)


def test_chat_stream_tool_call_deltas(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(model=MODEL, messages=USER, stream=True, extra_headers=scenario("tool-call"))
    )
    calls = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices[0].delta.tool_calls]
    assert calls[0].id == "call_0" and calls[0].function and calls[0].function.name == "get_weather"
    assert json.loads("".join((c.function and c.function.arguments) or "" for c in calls)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_chat_stream_helper_accumulates(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(model=MODEL, messages=USER, stream_options={"include_usage": True}) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == final.choices[0].message.content == REPLY
    assert final.usage and final.usage.completion_tokens == OUTPUT_TOKENS
    with oai.chat.completions.stream(model=MODEL, messages=USER, extra_headers=scenario("tool-call")) as stream:
        call = (stream.get_final_completion().choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_weather" and call.function.parsed_arguments is None


def test_chat_raw_and_streaming_response(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=USER)
    assert raw.headers["content-type"] == "application/json" and raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.parse()._request_id == raw.headers["x-request-id"]
    with oai.chat.completions.with_streaming_response.create(model=MODEL, messages=USER, stream=True) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert sum(1 for _ in response.parse()) == 7


def test_chat_cut_stream_raises_mid_iteration(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model=MODEL, messages=USER, stream=True, extra_headers=scenario("cut-stream"))
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            seen.append(chunk)
    assert any(c.choices[0].delta.content for c in seen)  # some content arrived before the cut


async def test_async_chat_create_stream_and_cut(aoai: openai.AsyncOpenAI) -> None:
    reply = await aoai.chat.completions.create(model=MODEL, messages=USER)
    stream = await aoai.chat.completions.create(
        model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    text = ""
    async for chunk in stream:
        text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == reply.choices[0].message.content
    cut = await aoai.chat.completions.create(
        model=MODEL, messages=USER, stream=True, extra_headers=scenario("cut-stream")
    )
    with pytest.raises(openai.APIConnectionError):
        async for _ in cut:
            pass


@pytest.mark.parametrize(
    ("name", "error", "status"),
    [
        ("error-400", openai.BadRequestError, 400),
        ("error-429", openai.RateLimitError, 429),
        ("error-500", openai.InternalServerError, 500),
    ],
)
def test_openai_errors(oai: openai.OpenAI, name: str, error: type[openai.APIStatusError], status: int) -> None:
    with pytest.raises(error) as caught:
        oai.chat.completions.create(model=MODEL, messages=USER, extra_headers=scenario(name))
    assert type(caught.value) is error and caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    if status == 429:
        assert caught.value.code == "rate_limit_exceeded"
        assert caught.value.response.headers["retry-after-ms"] == "1"


def test_errors_are_retried_instantly_by_the_sdk(fake: FakeLLMServer) -> None:
    client = openai.OpenAI(api_key="test", base_url=fake.openai_base_url, max_retries=2)
    started = time.perf_counter()
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=USER, extra_headers=scenario("error-429"))
    # The SDK's own backoff would sleep 0.375-0.5 s, then 0.75-1 s: 1.1 s at least, for two retries.
    assert time.perf_counter() - started < 0.9


def test_error_429_once_lets_the_retry_succeed(fake: FakeLLMServer) -> None:
    client = openai.OpenAI(api_key="test", base_url=fake.openai_base_url, max_retries=1)
    key = {"x-fake-retry-key": f"k-{time.monotonic_ns()}", **scenario("error-429-once")}
    before = len(fake.requests)
    reply = client.chat.completions.with_raw_response.create(model=MODEL, messages=USER, extra_headers=key)
    assert reply.retries_taken == 1 and reply.parse().choices[0].message.content == REPLY
    assert len(fake.requests) - before == 2
    # Without a key the body is the key: the same call succeeds once it has been refused once.
    messages: Any = [{"role": "user", "content": f"once {time.monotonic_ns()} [[scenario:error-429-once]]"}]
    strict = openai.OpenAI(api_key="test", base_url=fake.openai_base_url, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        strict.chat.completions.create(model=MODEL, messages=messages)
    assert strict.chat.completions.create(model=MODEL, messages=messages).choices


# --- OpenAI responses ------------------------------------------------------------------------------


def test_responses_create(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model=MODEL, input=PROMPT, instructions="Be kind")
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == "gpt-4o-mini-2024-07-18" and response.instructions == "Be kind"
    assert response.output_text == REPLY
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == INPUT_TOKENS + 2 and usage.output_tokens == OUTPUT_TOKENS
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0


def test_responses_scenarios(oai: openai.OpenAI) -> None:
    usage = oai.responses.create(model=MODEL, input=PROMPT, extra_headers=scenario("cached", "reasoning")).usage
    assert usage and usage.input_tokens_details.cached_tokens == INPUT_TOKENS // 2
    assert usage.output_tokens == OUTPUT_TOKENS + usage.output_tokens_details.reasoning_tokens > OUTPUT_TOKENS
    call = oai.responses.create(model=MODEL, input=PROMPT, extra_headers=scenario("tool-call")).output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_0"
    assert json.loads(call.arguments) == {"city": "Paris"}
    truncated = oai.responses.create(model=MODEL, input=PROMPT, extra_headers=scenario("length"))
    assert truncated.status == "incomplete" and truncated.incomplete_details
    assert truncated.incomplete_details.reason == "max_output_tokens"
    assert oai.responses.create(model=MODEL, input=PROMPT, extra_headers=scenario("no-usage")).usage is None


def test_responses_stream_events(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model=MODEL, input=PROMPT, stream=True))
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    with_usage = [e for e in events if getattr(getattr(e, "response", None), "usage", None) is not None]
    assert [e.type for e in with_usage] == ["response.completed"]
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1


def test_responses_stream_helper_and_tool_call(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model=MODEL, input=PROMPT) as stream:
        final = stream.get_final_response()
    assert final.output_text == REPLY and final.usage and final.usage.output_tokens == OUTPUT_TOKENS
    with oai.responses.stream(model=MODEL, input=PROMPT, extra_headers=scenario("tool-call")) as stream:
        kinds = [e.type for e in stream]
        call = stream.get_final_response().output[0]
    assert "response.function_call_arguments.delta" in kinds
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


def test_responses_stream_length_ends_incomplete(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model=MODEL, input=PROMPT, stream=True, extra_headers=scenario("length")))
    assert events[-1].type == "response.incomplete" and events[-1].response.usage is not None


async def test_async_responses_stream_cut(aoai: openai.AsyncOpenAI) -> None:
    stream = await aoai.responses.create(model=MODEL, input=PROMPT, stream=True, extra_headers=scenario("cut-stream"))
    kinds = []
    with pytest.raises(openai.APIConnectionError):
        async for event in stream:
            kinds.append(event.type)
    assert "response.output_text.delta" in kinds and "response.completed" not in kinds


# --- OpenAI embeddings -----------------------------------------------------------------------------


def test_embeddings_base64_by_default_and_float(fake: FakeLLMServer, oai: openai.OpenAI) -> None:
    default = oai.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    assert fake.requests[-1].body["encoding_format"] == "base64"  # the SDK asks for base64 itself
    floats = oai.embeddings.create(model="text-embedding-3-small", input=["one two", "three"], encoding_format="float")
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert [d.index for d in default.data] == [0, 1] and len(default.data[0].embedding) == 8
    assert default.data[0].embedding != default.data[1].embedding
    assert default.model == "text-embedding-3-small"
    assert default.usage.model_dump() == {"prompt_tokens": 3, "total_tokens": 3}


def test_embeddings_dimensions_and_wire_encoding(fake: FakeLLMServer, oai: openai.OpenAI) -> None:
    one = oai.embeddings.create(model="text-embedding-3-small", input="hello world", dimensions=4)
    assert len(one.data) == 1 and len(one.data[0].embedding) == 4
    _, _, text = raw_post(
        fake, "/v1/embeddings", {"model": "m", "input": "hello world", "dimensions": 4, "encoding_format": "base64"}
    )
    packed = base64.b64decode(json.loads(text)["data"][0]["embedding"])
    assert list(struct.unpack("<4f", packed)) == one.data[0].embedding


# --- Anthropic messages ----------------------------------------------------------------------------


def test_messages_create(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER, system="Be kind")
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == CLAUDE and message.stop_reason == "end_turn" and message.stop_sequence is None
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == REPLY
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (INPUT_TOKENS + 2, OUTPUT_TOKENS)
    assert usage.cache_read_input_tokens == usage.cache_creation_input_tokens == 0
    assert usage.service_tier == "standard"
    assert message._request_id and message._request_id.startswith("req_")


def test_messages_cached_tokens_are_outside_input_tokens(claude: anthropic.Anthropic) -> None:
    usage = claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER, extra_headers=scenario("cached")).usage
    assert usage.input_tokens == INPUT_TOKENS
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 50)
    assert usage.cache_creation and usage.cache_creation.ephemeral_5m_input_tokens == 30
    assert usage.cache_creation.ephemeral_1h_input_tokens == 20


def test_messages_tool_use_and_length(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER, extra_headers=scenario("tool-call"))
    assert message.stop_reason == "tool_use"
    tool = message.content[-1]
    assert tool.type == "tool_use" and tool.id == "toolu_0" and tool.name == "get_weather"
    assert tool.input == {"city": "Paris"}
    assert message.usage.output_tokens == OUTPUT_TOKENS + 3
    truncated = claude.messages.create(model=CLAUDE, max_tokens=5, messages=USER, extra_headers=scenario("length"))
    assert truncated.stop_reason == "max_tokens"


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    assert claude.messages.count_tokens(model=CLAUDE, messages=USER).input_tokens == INPUT_TOKENS


def test_messages_stream_events_and_cumulative_usage(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(
            model=CLAUDE, max_tokens=100, messages=USER, stream=True, extra_headers=scenario("cached")
        )
    )
    kinds = [e.type for e in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.usage.input_tokens == INPUT_TOKENS and start.message.usage.output_tokens == 1
    assert start.message.usage.cache_read_input_tokens == 100
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == OUTPUT_TOKENS  # the final, cumulative count, not an increment
    assert (delta.usage.input_tokens, delta.usage.cache_read_input_tokens) == (INPUT_TOKENS, 100)


def test_messages_stream_wire_has_a_ping(fake: FakeLLMServer) -> None:
    body = {"model": CLAUDE, "max_tokens": 10, "messages": USER, "stream": True}
    _, _, text = raw_post(fake, "/v1/messages", body)
    names = [name for name, _ in sse(text)]
    assert names[:3] == ["message_start", "content_block_start", "ping"] and names[-1] == "message_stop"


def test_messages_stream_helper_and_tool_use(claude: anthropic.Anthropic) -> None:
    created = claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER)
    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY and final.usage.output_tokens == created.usage.output_tokens
    with claude.messages.stream(
        model=CLAUDE, max_tokens=100, messages=USER, extra_headers=scenario("tool-call")
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].input == {"city": "Paris"}


def test_messages_raw_response(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(model=CLAUDE, max_tokens=10, messages=USER)
    assert raw.headers["request-id"] == raw.parse()._request_id
    assert raw.parse().content[0].text == REPLY


@pytest.mark.parametrize(
    ("name", "error", "kind"),
    [
        ("error-400", anthropic.BadRequestError, "invalid_request_error"),
        ("error-429", anthropic.RateLimitError, "rate_limit_error"),
        ("error-500", anthropic.InternalServerError, "api_error"),
        ("error-529", anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_errors(
    claude: anthropic.Anthropic, name: str, error: type[anthropic.APIStatusError], kind: str
) -> None:
    with pytest.raises(error) as caught:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=USER, extra_headers=scenario(name))
    assert type(caught.value) is error
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == kind
    assert body["request_id"] == caught.value.request_id == caught.value.response.headers["request-id"]


def test_anthropic_stream_error_event(claude: anthropic.Anthropic) -> None:
    stream = claude.messages.create(
        model=CLAUDE, max_tokens=10, messages=USER, stream=True, extra_headers=scenario("stream-error-event")
    )
    kinds = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in stream:
            kinds.append(event.type)
    # The SDK picks the class by HTTP status, and a stream's status is 200: the base class, not OverloadedError.
    assert type(caught.value) is anthropic.APIStatusError and caught.value.status_code == 200
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "overloaded_error"
    assert "content_block_delta" in kinds and "message_stop" not in kinds


def test_anthropic_cut_stream_raises_the_transport_error(claude: anthropic.Anthropic) -> None:
    stream = claude.messages.create(
        model=CLAUDE, max_tokens=10, messages=USER, stream=True, extra_headers=scenario("cut-stream")
    )
    kinds = []
    # Unlike openai, the anthropic SDK does not wrap httpx2's error in its APIConnectionError.
    with pytest.raises(httpx2.RemoteProtocolError):
        for event in stream:
            kinds.append(event.type)
    assert "content_block_delta" in kinds


async def test_async_anthropic(aclaude: anthropic.AsyncAnthropic) -> None:
    message = await aclaude.messages.create(model=CLAUDE, max_tokens=10, messages=USER)
    async with aclaude.messages.stream(model=CLAUDE, max_tokens=10, messages=USER) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == message.content[0].text
    with pytest.raises(anthropic.OverloadedError):
        await aclaude.messages.create(model=CLAUDE, max_tokens=10, messages=USER, extra_headers=scenario("error-529"))
    cut = await aclaude.messages.create(
        model=CLAUDE, max_tokens=10, messages=USER, stream=True, extra_headers=scenario("cut-stream")
    )
    with pytest.raises(httpx2.RemoteProtocolError):
        async for _ in cut:
            pass


# --- the server itself -----------------------------------------------------------------------------


def test_request_log_and_clear(oai: openai.OpenAI) -> None:
    with FakeLLMServer() as server:
        client = openai.OpenAI(api_key="test", base_url=server.openai_base_url, max_retries=0)
        client.chat.completions.create(model=MODEL, messages=USER, extra_headers={"X-Custom": "yes"})
        (request,) = server.requests
        assert (request.method, request.path) == ("POST", "/v1/chat/completions")
        assert request.headers["x-custom"] == "yes" and request.headers["authorization"] == "Bearer test"
        assert request.body == {"model": MODEL, "messages": USER}
        server.clear()
        assert server.requests == []


def test_unknown_route_bad_json_and_unknown_scenario(fake: FakeLLMServer, oai: openai.OpenAI) -> None:
    status, _, text = raw_post(fake, "/v1/nowhere", {})
    assert status == 404 and json.loads(text)["error"]["type"] == "invalid_request_error"
    status, _, text = raw_post(fake, "/v1/chat/completions", b"{not json")
    assert status == 400 and "error" in json.loads(text)
    status, _, text = raw_post(fake, "/v1/messages", b"[]")
    assert status == 400 and json.loads(text)["type"] == "error"
    with pytest.raises(openai.BadRequestError, match="no-such-thing"):
        oai.chat.completions.create(model=MODEL, messages=USER, extra_headers=scenario("no-such-thing"))
    with pytest.raises(openai.NotFoundError):
        oai.models.list()


def test_every_scenario_is_known() -> None:
    assert {"error-429-once", "cut-stream", "usage-on-last-chunk", "stream-error-event"} <= SCENARIOS


def test_delays() -> None:
    with FakeLLMServer(latency_s=0.1, ttft_s=0.6, chunk_delay_s=0.01) as server:
        client = openai.OpenAI(api_key="test", base_url=server.openai_base_url, max_retries=0)
        started = time.perf_counter()
        client.chat.completions.create(model=MODEL, messages=USER)
        assert time.perf_counter() - started >= 0.1
        started = time.perf_counter()
        stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        first = next(stream)  # the role chunk is not content: it comes at once
        before_content = time.perf_counter() - started
        second = next(stream)
        ttft = time.perf_counter() - started
        rest = list(stream)
        total = time.perf_counter() - started
    assert first.choices[0].delta.role == "assistant" and second.choices[0].delta.content
    assert before_content < 0.5 <= 0.6 <= ttft  # the role chunk at once (a loaded machine's slack), content after ttft
    assert total - ttft >= 0.01 * len(rest)


def test_stop_closes_kept_alive_connections() -> None:
    server = FakeLLMServer().start()
    client = openai.OpenAI(api_key="test", base_url=server.openai_base_url, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=USER)  # leaves a pooled keep-alive connection
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 4  # leaving the connections open, it would wait its 5 s join
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]))):
        pass
    server.stop()  # idempotent


def test_small_responses_are_not_held_back(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    # Headers and body are separate writes: without TCP_NODELAY each response waited ~40 ms for a delayed ACK.
    oai.chat.completions.create(model=MODEL, messages=USER)
    durations = []
    for _ in range(10):
        for call in (
            lambda: oai.chat.completions.create(model=MODEL, messages=USER),
            lambda: claude.messages.create(model=CLAUDE, max_tokens=10, messages=USER),
        ):
            started = time.perf_counter()
            call()
            durations.append(time.perf_counter() - started)
    # Each call held back would take 40 ms or more; the median is what a loaded machine cannot move.
    assert statistics.median(durations) < 0.02, durations


def test_a_malformed_request_is_a_400_not_a_dropped_connection(fake: FakeLLMServer) -> None:
    status, _, text = raw_post(fake, "/v1/chat/completions", {"model": MODEL, "messages": USER, "n": "two"})
    assert status == 400 and "two" in json.loads(text)["error"]["message"]


# --- the agent scenario: a tool call, then a final answer once the tool's result is in -----------------
AGENT = {"x-fake-scenario": "agent"}
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
            "required": ["query", "limit", "unit"],
        },
    },
}


def test_agent_scenario_chat_calls_the_tool_then_answers(oai: openai.OpenAI) -> None:
    ask: list[Any] = [{"role": "user", "content": "look it up"}]
    first = oai.chat.completions.create(model="gpt-4o-mini", messages=ask, tools=[LOOKUP], extra_headers=AGENT)
    (call,) = first.choices[0].message.tool_calls or []
    assert call.function.name == "lookup" and first.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"query": "Paris", "limit": 2, "unit": "c"}  # fits the schema
    ask += [first.choices[0].message.model_dump(), {"role": "tool", "tool_call_id": call.id, "content": "42"}]
    second = oai.chat.completions.create(model="gpt-4o-mini", messages=ask, tools=[LOOKUP], extra_headers=AGENT)
    assert second.choices[0].message.tool_calls is None and second.choices[0].message.content
    assert second.choices[0].finish_reason == "stop"


def test_agent_scenario_responses_calls_the_tool_then_answers(oai: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "lookup", "parameters": LOOKUP["function"]["parameters"]}
    first = oai.responses.create(model="gpt-4o-mini", input="look it up", tools=[tool], extra_headers=AGENT)  # type: ignore[arg-type]
    (item,) = first.output
    assert item.type == "function_call" and json.loads(item.arguments)["limit"] == 2
    follow_up = [
        {"role": "user", "content": "look it up"},
        {"type": "function_call", "call_id": item.call_id, "name": item.name, "arguments": item.arguments},
        {"type": "function_call_output", "call_id": item.call_id, "output": "42"},
    ]
    second = oai.responses.create(model="gpt-4o-mini", input=follow_up, tools=[tool], extra_headers=AGENT)  # type: ignore[arg-type]
    assert second.output[0].type == "message" and second.output_text


def test_agent_scenario_anthropic_calls_the_tool_then_answers(server: FakeLLMServer) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=server.base_url, max_retries=0)
    tool = {"name": "lookup", "input_schema": LOOKUP["function"]["parameters"]}
    ask: list[Any] = [{"role": "user", "content": "look it up"}]
    first = client.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=50,
        messages=ask,
        tools=[tool],
        extra_headers=AGENT,  # type: ignore[list-item]
    )
    use = next(block for block in first.content if block.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.input == {"query": "Paris", "limit": 2, "unit": "c"}
    ask += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "42"}]},
    ]
    second = client.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=50,
        messages=ask,
        tools=[tool],
        extra_headers=AGENT,  # type: ignore[list-item]
    )
    assert second.stop_reason == "end_turn" and all(block.type == "text" for block in second.content)


def test_agent_scenario_without_tools_just_answers(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers=AGENT
    )
    assert reply.choices[0].message.content and not reply.choices[0].message.tool_calls
