"""The real boto3 ``bedrock-runtime`` client against the loopback server's Bedrock routes.

``converse``, ``converse_stream``, ``invoke_model`` (Anthropic, Llama, Titan text and embeddings, Nova
bodies) and ``invoke_model_with_response_stream``: exactly one CLIENT span per call, provider
``aws.bedrock``, tokens as Bedrock reports them (cache reads and writes added to the input), cost equal
to genai-prices' own figure, errors and broken streams passed through unchanged, budgets and kill
switches refusing before any request, other AWS clients untouched. The caller's objects are compared
with what an uninstrumented client returns and with what botocore produced below llmwatch's wrapper
(an ``after-call`` handler sees the very response dict).
"""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import botocore.config
import botocore.eventstream
import botocore.exceptions
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from genai_prices import Usage as PricesUsage
from genai_prices import calc_price

import llmwatch
from llmwatch import _instrument
from llmwatch._demo import _bedrock_wire
from llmwatch._demo._server import FakeLLMServer
from llmwatch._demo._wire import Event
from llmwatch._instrument import _bedrock, _bedrock_bodies, _bedrock_converse, _bedrock_reader
from llmwatch.testing import Captured

CLAUDE = "anthropic.claude-haiku-4-5-20251001-v1:0"
CLAUDE_PROFILE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # a cross-region inference profile
CLAUDE_GLOBAL = "global.anthropic.claude-haiku-4-5-20251001-v1:0"  # priced apart from the regional one
LLAMA = "meta.llama3-1-8b-instruct-v1:0"
NOVA = "amazon.nova-micro-v1:0"
TITAN = "amazon.titan-text-express-v1"
TITAN_EMBED = "amazon.titan-embed-text-v2:0"
PROMPT = "Hello there"
SECRET = "fake-secret-key-0123456789"
CONFIG = botocore.config.Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=10
)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "bedrock.md"

_SCENARIO: ContextVar[str] = ContextVar("bedrock_scenario", default="")


def _send_scenario(request: Any, **_: Any) -> None:
    if _SCENARIO.get():
        request.headers["x-fake-scenario"] = _SCENARIO.get()


@contextmanager
def scenario(name: str) -> Iterator[None]:
    """Ask the loopback server for a scenario (header ``x-fake-scenario``) for the calls in the block."""
    token = _SCENARIO.set(name)
    try:
        yield
    finally:
        _SCENARIO.reset(token)


def make_client(endpoint: str, service: str = "bedrock-runtime") -> Any:
    client = boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="AKIAFAKE",
        aws_secret_access_key=SECRET,
        config=CONFIG,
    )
    client.meta.events.register("before-sign.*.*", _send_scenario)
    return client


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing may reach the network or read this machine's AWS setup: no IMDS, no profiles."""
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_BEARER_TOKEN_BEDROCK", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture(autouse=True)
def _healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    gc.collect()  # an abandoned body or stream ends its span when collected
    stats = llmwatch.stats()
    if "production" not in request.fixturenames:  # the fault tests count the errors they cause
        assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]


class Seen:
    """What botocore returned below llmwatch's wrapper (an ``after-call`` handler on the client)."""

    def __init__(self) -> None:
        self.responses: list[Any] = []

    def __call__(self, parsed: Any, **_: Any) -> None:
        self.responses.append(parsed)


@pytest.fixture()
def seen() -> Seen:
    return Seen()


@pytest.fixture()
def client(server: FakeLLMServer, seen: Seen) -> Any:
    traced = make_client(server.base_url)
    traced.meta.events.register("after-call.bedrock-runtime.*", seen)
    assert llmwatch.instrument(traced) is traced
    return traced


@pytest.fixture()
def plain(server: FakeLLMServer) -> Any:
    """Never instrumented: what the caller gets without llmwatch."""
    return make_client(server.base_url)


def knows(client: Any, shape: str, member: str) -> bool:
    """Whether this botocore's model has ``member`` (1.34.116, the oldest supported, predates caching)."""
    return member in client.meta.service_model.shape_for(shape).members


def only_span(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def ask(text: str = PROMPT) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


def aws_cost(
    model: str, input_tokens: int, output_tokens: int, read: int = 0, write: int = 0, write_1h: int = 0
) -> float:
    usage = PricesUsage(
        input_tokens=input_tokens,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
        output_tokens=output_tokens,
    )
    return float(calc_price(usage, model, provider_id="aws").total_price)


def converse_cost(model: str, usage: dict[str, Any]) -> tuple[int, float]:
    """(llmwatch's input count, genai-prices' cost) for a Converse ``usage``: input excludes the cache."""
    read, write = usage.get("cacheReadInputTokens", 0), usage.get("cacheWriteInputTokens", 0)
    write_1h = sum(d["inputTokens"] for d in usage.get("cacheDetails", ()) if d["ttl"] == "1h")
    total = usage["inputTokens"] + read + write
    return total, aws_cost(model, total, usage["outputTokens"], read, write, write_1h)


def assert_priced(attrs: Any, cost: float) -> None:
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.cost.usd"] == pytest.approx(cost, rel=1e-9, abs=1e-12)
    assert attrs["llmwatch.cost.usd"] > 0


# --- converse ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "name"),
    [(CLAUDE, ""), (CLAUDE, "cached"), (CLAUDE_PROFILE, "cached"), (CLAUDE_GLOBAL, ""), (LLAMA, ""), (NOVA, "")],
)
def test_converse_gives_one_priced_span(
    client: Any, plain: Any, seen: Seen, captured: Captured, server: FakeLLMServer, model: str, name: str
) -> None:
    if name == "cached" and not knows(client, "TokenUsage", "cacheReadInputTokens"):
        pytest.skip("this botocore's model has no cache counts: it drops them from the reply")
    kwargs: dict[str, Any] = {
        "modelId": model,
        "messages": ask(),
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
    }
    with scenario(name), llmwatch.attributes(user="u1", feature="search"):
        response = client.converse(**kwargs)
        expected = plain.converse(**kwargs)
    assert response is seen.responses[0]  # the very dict botocore built
    assert without_metadata(response) == without_metadata(expected)
    usage = response["usage"]
    assert ("cacheReadInputTokens" in usage) is (name == "cached")
    span = only_span(captured)
    attrs = span.attributes
    assert span.name == f"chat {model}" and span.kind.name == "CLIENT"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == model  # a profile id as given
    assert "gen_ai.response.model" not in attrs
    assert attrs["gen_ai.response.id"] == response["ResponseMetadata"]["RequestId"]
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == int(server.base_url.rsplit(":", 1)[1])
    assert attrs["gen_ai.request.max_tokens"] == 100
    assert attrs["gen_ai.request.temperature"] == 0.5 and attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    total, cost = converse_cost(model, usage)
    assert attrs["gen_ai.usage.input_tokens"] == total == usage["inputTokens"] + (150 if name else 0)
    assert attrs["gen_ai.usage.output_tokens"] == usage["outputTokens"]
    if name == "cached":
        assert attrs["gen_ai.usage.cache_read.input_tokens"] == 100
        assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 50
        assert "gen_ai.usage.cache_write.input_tokens" not in attrs  # the newer name only when opted in
    assert_priced(attrs, cost)
    assert attrs["llmwatch.user"] == "u1" and attrs["llmwatch.feature"] == "search"
    assert attrs["llmwatch.stream"] is False


def test_global_and_regional_profiles_are_priced_apart(client: Any, captured: Captured) -> None:
    for model in (CLAUDE, CLAUDE_GLOBAL):
        client.converse(modelId=model, messages=ask())
    regional, global_ = (s.attributes["llmwatch.cost.usd"] for s in captured.llm_spans())
    assert global_ < regional  # the reply names no model: each is priced by its own id


@pytest.mark.parametrize(("name", "reason"), [("length", "max_tokens"), ("tool-call", "tool_use")])
def test_converse_finish_reasons_and_tool_calls(
    client: Any, captured_content: Captured, name: str, reason: str
) -> None:
    tools = {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather now",
                    "inputSchema": {"json": {"type": "object"}},
                }
            }
        ]
    }
    with scenario(name):
        response = client.converse(modelId=CLAUDE, messages=ask(), system=[{"text": "Be kind"}], toolConfig=tools)
    assert response["stopReason"] == reason
    attrs = only_span(captured_content).attributes
    assert attrs["gen_ai.response.finish_reasons"] == (reason,)
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be kind"}]
    assert json.loads(attrs["gen_ai.tool.definitions"]) == [
        {"type": "function", "name": "get_weather", "description": "Weather now", "parameters": {"type": "object"}}
    ]
    parts: list[dict[str, Any]] = [{"type": "text", "content": response["output"]["message"]["content"][0]["text"]}]
    if name == "tool-call":
        parts.append({"type": "tool_call", "id": "tooluse_0", "name": "get_weather", "arguments": {"city": "Paris"}})
    semconv = "tool_call" if name == "tool-call" else "length"
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": parts, "finish_reason": semconv}
    ]


def test_converse_content_in_semconv_shape(client: Any, captured_content: Captured) -> None:
    messages = [
        {
            "role": "user",
            "content": [{"text": "Weather?"}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}],
        },
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"json": {"temp": 21}}]}},
                *([{"cachePoint": {"type": "default"}}] if knows(client, "ContentBlock", "cachePoint") else []),
            ],
        },
    ]
    client.converse(modelId=CLAUDE, messages=messages)
    attrs = only_span(captured_content).attributes
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "Weather?"},
                {"type": "blob", "modality": "image", "mime_type": "image/png", "byte_size": 4},
            ],
        },
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "t1", "name": "get_weather", "arguments": {"city": "Paris"}}],
        },
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "t1", "response": {"temp": 21}}]},
    ]
    assert "gen_ai.system_instructions" not in attrs


def test_no_content_attributes_when_capture_is_off(client: Any, captured: Captured) -> None:
    client.converse(modelId=CLAUDE, messages=ask(), system=[{"text": "Be kind"}])
    body = json.dumps(
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    )
    json.loads(client.invoke_model(modelId=CLAUDE, body=body)["body"].read())
    for span in captured.llm_spans():
        assert not [
            k
            for k in span.attributes
            if k.startswith(("gen_ai.input", "gen_ai.output.messages", "gen_ai.system_instr"))
        ]
        assert "llmwatch.prompt.fingerprint" in span.attributes


# --- converse_stream ---------------------------------------------------------------------------------
def test_converse_stream_events_unchanged_and_span_ends_on_metadata(
    client: Any, plain: Any, seen: Seen, captured: Captured
) -> None:
    with scenario("cached"):
        response = client.converse_stream(modelId=CLAUDE_PROFILE, messages=ask(), inferenceConfig={"maxTokens": 50})
        expected = list(plain.converse_stream(modelId=CLAUDE_PROFILE, messages=ask())["stream"])
    assert response is seen.responses[0]
    assert isinstance(response["stream"], botocore.eventstream.EventStream)
    events = []
    for event in response["stream"]:
        events.append(event)
        if "metadata" in event:
            assert len(captured.llm_spans()) == 1  # ended on the metadata event, before the stream is drained
    assert events == expected
    span = only_span(captured)
    attrs = span.attributes
    usage = events[-1]["metadata"]["usage"]
    total, cost = converse_cost(CLAUDE_PROFILE, usage)
    assert attrs["gen_ai.usage.input_tokens"] == total and attrs["gen_ai.usage.output_tokens"] == usage["outputTokens"]
    assert_priced(attrs, cost)
    assert attrs["llmwatch.stream"] is True and attrs["gen_ai.request.stream"] is True
    assert attrs["llmwatch.stream.completed"] is True
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["gen_ai.response.id"] == response["ResponseMetadata"]["RequestId"]
    assert 0 <= attrs["llmwatch.time_to_first_token_ms"] <= (span.end_time - span.start_time) / 1e6


def test_converse_stream_tool_call_is_assembled(client: Any, captured_content: Captured) -> None:
    with scenario("tool-call"):
        events = list(client.converse_stream(modelId=NOVA, messages=ask())["stream"])
    arguments = "".join(
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
    )
    assert json.loads(arguments) == {"city": "Paris"}
    attrs = only_span(captured_content).attributes
    (message,) = json.loads(attrs["gen_ai.output.messages"])
    assert message["finish_reason"] == "tool_call"
    assert message["parts"][-1] == {
        "type": "tool_call",
        "id": "tooluse_0",
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }


def test_converse_stream_ttft_counts_to_the_first_delta(captured: Captured) -> None:
    with FakeLLMServer(ttft_s=0.05) as slow:  # messageStart goes out at once, the text later
        list(llmwatch.instrument(make_client(slow.base_url)).converse_stream(modelId=CLAUDE, messages=ask())["stream"])
    span = only_span(captured)
    ttft_ms = span.attributes["llmwatch.time_to_first_token_ms"]
    assert 50 <= ttft_ms <= (span.end_time - span.start_time) / 1e6
    # the spec's time to first chunk counts to the first chunk received: messageStart, before the text
    assert 0 < span.attributes["gen_ai.response.time_to_first_chunk"] * 1000 < ttft_ms


@pytest.mark.parametrize("how", ["close", "abandon"])
@pytest.mark.parametrize("operation", ["converse_stream", "invoke_model_with_response_stream"])
def test_stream_left_early_ends_its_span_once(
    client: Any, seen: Seen, captured: Captured, how: str, operation: str
) -> None:
    if operation == "converse_stream":
        response = client.converse_stream(modelId=CLAUDE, messages=ask("[[chunks:8]]"))
        stream = response["stream"]
    else:
        response = client.invoke_model_with_response_stream(modelId=CLAUDE, body=anthropic_body())
        stream = response["body"]
    iterator = iter(stream)
    for _ in range(3):
        next(iterator)
    assert captured.llm_spans() == []
    if how == "close":
        stream.close()
        stream.close()
    else:
        seen.responses.clear()
        del response, stream, iterator
        gc.collect()
    span = only_span(captured)
    assert span.attributes["llmwatch.stream.completed"] is False
    assert span.status.status_code.name == "UNSET"


# --- invoke_model ------------------------------------------------------------------------------------
def anthropic_body(text: str = PROMPT, **extra: Any) -> str:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
    }
    return json.dumps({**body, **extra})


BODIES: dict[str, tuple[str, str, str]] = {
    # family: (model id, request body, operation)
    "anthropic": (CLAUDE_PROFILE, anthropic_body(temperature=0.2, top_k=5, stop_sequences=["END"]), "chat"),
    "llama": (LLAMA, json.dumps({"prompt": PROMPT, "max_gen_len": 100, "temperature": 0.2}), "text_completion"),
    "titan": (
        TITAN,
        json.dumps(
            {
                "inputText": PROMPT,
                "textGenerationConfig": {"maxTokenCount": 100, "temperature": 0.2, "stopSequences": ["END"]},
            }
        ),
        "text_completion",
    ),
    "nova": (
        NOVA,
        json.dumps(
            {
                "schemaVersion": "messages-v1",
                "messages": ask(),
                "inferenceConfig": {"max_new_tokens": 100, "temperature": 0.2},
            }
        ),
        "chat",
    ),
}


def body_usage(family: str, reply: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """(input counting the cache, output, cache read, cache write, 1-hour cache write) as each family's
    reply states them."""
    if family == "anthropic":
        u = reply["usage"]
        read, write = u["cache_read_input_tokens"], u["cache_creation_input_tokens"]
        return (
            u["input_tokens"] + read + write,
            u["output_tokens"],
            read,
            write,
            u["cache_creation"]["ephemeral_1h_input_tokens"],
        )
    if family == "llama":
        return reply["prompt_token_count"], reply["generation_token_count"], 0, 0, 0
    if family == "titan":
        return reply["inputTextTokenCount"], sum(r["tokenCount"] for r in reply["results"]), 0, 0, 0
    u = reply["usage"]
    read, write = u["cacheReadInputTokenCount"], u["cacheWriteInputTokenCount"]
    return u["inputTokens"] + read + write, u["outputTokens"], read, write, 0


@pytest.mark.parametrize("name", ["", "cached"])
@pytest.mark.parametrize("family", list(BODIES))
def test_invoke_model_gives_one_priced_span_per_body_family(
    client: Any, plain: Any, seen: Seen, captured: Captured, family: str, name: str
) -> None:
    if name == "cached" and family in ("llama", "titan"):
        pytest.skip("no prompt caching for this family")
    model, body, operation = BODIES[family]
    with scenario(name):
        response = client.invoke_model(
            modelId=model, body=body, contentType="application/json", accept="application/json"
        )
        expected = plain.invoke_model(modelId=model, body=body)
    assert response is seen.responses[0]
    assert type(response["body"]) is StreamingBody  # the very object botocore made
    assert captured.llm_spans() == []  # not read yet: the call is not over
    data = response["body"].read()
    reply = json.loads(data)
    assert reply.keys() == json.loads(expected["body"].read()).keys()
    span = only_span(captured)
    attrs = span.attributes
    assert span.name == f"{operation} {model}"
    assert attrs["gen_ai.operation.name"] == operation and attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == model
    assert attrs["gen_ai.request.max_tokens"] == 100 and attrs["gen_ai.request.temperature"] == 0.2
    total, output, read, write, write_1h = body_usage(family, reply)
    assert attrs["gen_ai.usage.input_tokens"] == total and attrs["gen_ai.usage.output_tokens"] == output
    assert attrs.get("gen_ai.usage.cache_read.input_tokens", 0) == read == (100 if name else 0)
    assert_priced(attrs, aws_cost(model, total, output, read, write, write_1h))
    assert len(attrs["gen_ai.response.finish_reasons"]) == 1
    if family == "anthropic":
        assert attrs["gen_ai.response.id"] == reply["id"]
        assert attrs["gen_ai.request.top_k"] == 5 and attrs["gen_ai.request.stop_sequences"] == ("END",)
        assert "gen_ai.response.model" not in attrs  # the reply's Anthropic name would misprice profiles
    else:
        assert attrs["gen_ai.response.id"] == response["ResponseMetadata"]["RequestId"]


def test_invoke_model_titan_embeddings(client: Any, captured: Captured) -> None:
    response = client.invoke_model(modelId=TITAN_EMBED, body=json.dumps({"inputText": PROMPT, "dimensions": 256}))
    span = only_span(captured)  # the headers carry all of its usage: ended before the body is read
    reply = json.loads(response["body"].read())
    attrs = span.attributes
    assert span.name == f"embeddings {TITAN_EMBED}"
    assert (
        attrs["gen_ai.usage.input_tokens"] == reply["inputTextTokenCount"] and "gen_ai.usage.output_tokens" not in attrs
    )
    assert_priced(attrs, aws_cost(TITAN_EMBED, reply["inputTextTokenCount"], 0))


def _read_whole(body: Any) -> bytes:
    return bytes(body.read())


def _read_in_pieces(body: Any) -> bytes:
    pieces = []
    while piece := body.read(7):
        pieces.append(piece)
    return b"".join(pieces)


def _iter_chunks(body: Any) -> bytes:
    return b"".join(body.iter_chunks(chunk_size=16))


def _iter_lines(body: Any) -> bytes:
    return b"".join(body.iter_lines())


def _readinto(body: Any) -> bytes:
    buffer = bytearray(1 << 16)
    count = body.readinto(buffer)
    return bytes(buffer[:count]) + (b"" if body.readinto(bytearray(16)) == 0 else b"?")


def _readlines(body: Any) -> bytes:
    return b"".join(body.readlines())


def _with_raw(body: Any) -> bytes:
    with body as raw:  # StreamingBody.__enter__ hands over its raw stream
        return bytes(raw.read())


@pytest.mark.parametrize(
    "read", [_read_whole, _read_in_pieces, _iter_chunks, _iter_lines, _readinto, _readlines, _with_raw]
)
def test_every_way_of_reading_the_body_gets_the_same_bytes(
    client: Any, plain: Any, captured: Captured, read: Any
) -> None:
    if read is _readinto and not hasattr(StreamingBody, "readinto"):
        pytest.skip("this botocore's StreamingBody has no readinto()")  # added in botocore 1.36
    model, body, _ = BODIES["anthropic"]
    expected = plain.invoke_model(modelId=model, body=body)["body"].read()
    data = read(client.invoke_model(modelId=model, body=body)["body"])
    strip = {"id": None}
    assert {**json.loads(data), **strip} == {**json.loads(expected), **strip}
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.usage.output_tokens"] == json.loads(data)["usage"]["output_tokens"]
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)


@pytest.mark.parametrize("how", ["close", "abandon"])
def test_a_body_never_read_ends_its_span_with_the_header_usage(
    client: Any, seen: Seen, captured: Captured, how: str
) -> None:
    model, body, _ = BODIES["llama"]
    response = client.invoke_model(modelId=model, body=body)
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    if how == "close":
        response["body"].close()
    else:
        seen.responses.clear()
        del response
        gc.collect()
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.usage.input_tokens"] == int(headers["x-amzn-bedrock-input-token-count"])
    assert attrs["gen_ai.usage.output_tokens"] == int(headers["x-amzn-bedrock-output-token-count"])
    assert "gen_ai.response.finish_reasons" not in attrs  # only the body says it
    assert attrs["llmwatch.cost.usd"] > 0


@pytest.mark.parametrize("family", list(BODIES))
def test_usage_falls_back_to_the_headers(client: Any, captured: Captured, family: str) -> None:
    model, body, _ = BODIES[family]
    with scenario("no-usage,cached" if family == "anthropic" else "no-usage"):
        response = client.invoke_model(modelId=model, body=body)
    reply = json.loads(response["body"].read())
    assert "usage" not in reply and "prompt_token_count" not in reply and "inputTextTokenCount" not in reply
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    read = int(headers.get("x-amzn-bedrock-cache-read-input-token-count", 0))
    write = int(headers.get("x-amzn-bedrock-cache-write-input-token-count", 0))
    total = int(headers["x-amzn-bedrock-input-token-count"]) + read + write
    output = int(headers["x-amzn-bedrock-output-token-count"])
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.usage.input_tokens"] == total and attrs["gen_ai.usage.output_tokens"] == output
    assert_priced(attrs, aws_cost(model, total, output, read, write))


def test_invoke_model_content_of_the_anthropic_and_nova_bodies(client: Any, captured_content: Captured) -> None:
    json.loads(client.invoke_model(modelId=CLAUDE, body=anthropic_body(system="Be kind"))["body"].read())
    _, nova_body, _ = BODIES["nova"]
    json.loads(client.invoke_model(modelId=NOVA, body=nova_body)["body"].read())
    claude, nova = captured_content.llm_spans()
    assert json.loads(claude.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be kind"}]
    for span in (claude, nova):
        assert json.loads(span.attributes["gen_ai.input.messages"]) == [
            {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
        ]
        (message,) = json.loads(span.attributes["gen_ai.output.messages"])
        assert message["finish_reason"] == "stop" and message["parts"][0]["content"].startswith("Echo: Hello there")


# --- invoke_model_with_response_stream -----------------------------------------------------------------
def stream_usage(family: str, payloads: list[dict[str, Any]]) -> tuple[int, int, int, int, int]:
    """The invocation metrics of the last chunk; the 1-hour cache writes of Anthropic's message_start."""
    metrics = payloads[-1]["amazon-bedrock-invocationMetrics"]
    read, write = metrics["cacheReadInputTokenCount"], metrics["cacheWriteInputTokenCount"]
    write_1h = (
        payloads[0]["message"]["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] if family == "anthropic" else 0
    )
    return metrics["inputTokenCount"] + read + write, metrics["outputTokenCount"], read, write, write_1h


@pytest.mark.parametrize("family", list(BODIES))
def test_invoke_model_with_response_stream_per_body_family(
    client: Any, plain: Any, seen: Seen, captured: Captured, family: str
) -> None:
    model, body, operation = BODIES[family]
    with scenario("cached" if family in ("anthropic", "nova") else ""):
        response = client.invoke_model_with_response_stream(modelId=model, body=body)
        expected = [
            json.loads(e["chunk"]["bytes"])
            for e in plain.invoke_model_with_response_stream(modelId=model, body=body)["body"]
        ]
    assert response is seen.responses[0]
    payloads = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    strip = {"message": None} if family == "anthropic" else {}  # the message id differs
    assert [{**p, **strip} for p in payloads] == [{**p, **strip} for p in expected]
    span = only_span(captured)
    attrs = span.attributes
    assert span.name == f"{operation} {model}"
    total, output, read, write, write_1h = stream_usage(family, payloads)
    assert attrs["gen_ai.usage.input_tokens"] == total and attrs["gen_ai.usage.output_tokens"] == output
    assert_priced(attrs, aws_cost(model, total, output, read, write, write_1h))
    assert attrs["llmwatch.stream.completed"] is True
    assert attrs["llmwatch.stream.chunks"] == len(payloads)
    assert len(attrs["gen_ai.response.finish_reasons"]) == 1
    assert attrs["llmwatch.time_to_first_token_ms"] > 0


# --- errors and broken streams --------------------------------------------------------------------------
def call(client: Any, operation: str) -> Any:
    """Make a call of ``operation`` and consume what it returns, as a caller would."""
    if operation == "converse":
        return client.converse(modelId=CLAUDE, messages=ask())
    if operation == "converse_stream":
        return list(client.converse_stream(modelId=CLAUDE, messages=ask())["stream"])
    if operation == "invoke_model":
        return json.loads(client.invoke_model(modelId=CLAUDE, body=anthropic_body())["body"].read())
    return list(client.invoke_model_with_response_stream(modelId=CLAUDE, body=anthropic_body())["body"])


OPERATIONS = ["converse", "converse_stream", "invoke_model", "invoke_model_with_response_stream"]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("error-400", "ValidationException"),
        ("error-429", "ThrottlingException"),
        ("error-500", "InternalServerException"),
    ],
)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_errors_reach_the_caller_unchanged(
    client: Any, plain: Any, captured: Captured, operation: str, name: str, code: str
) -> None:
    with scenario(name):
        with pytest.raises(botocore.exceptions.ClientError) as expected:
            call(plain, operation)
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            call(client, operation)
    error = caught.value
    assert type(error) is type(expected.value) and type(error).__name__ == code
    assert error.response["Error"] == expected.value.response["Error"] == {"Code": code, "Message": f"simulated {code}"}
    assert error.__context__ is None  # not chained to anything of llmwatch's
    span = only_span(captured)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == code
    assert [e.name for e in span.events] == ["exception"]


@pytest.mark.parametrize("name", ["cut-stream", "stream-error-event"])
@pytest.mark.parametrize("operation", ["converse_stream", "invoke_model_with_response_stream"])
def test_broken_streams_raise_what_botocore_raises(
    client: Any, plain: Any, captured: Captured, operation: str, name: str
) -> None:
    with scenario(name):
        with pytest.raises(Exception) as expected:
            call(plain, operation)
        with pytest.raises(type(expected.value)) as caught:
            call(client, operation)
    assert type(caught.value) is type(expected.value)
    if name == "stream-error-event":
        assert caught.value.response["Error"]["Code"] == "modelStreamErrorException"
    span = only_span(captured)
    assert span.status.status_code.name == "ERROR"
    code = getattr(caught.value, "response", {}).get("Error", {}).get("Code")  # botocore's own code, if any
    assert span.attributes["error.type"] == (code or type(caught.value).__name__)
    assert span.attributes["llmwatch.stream.completed"] is False


# --- budgets and kill switches: refused before any request ----------------------------------------------
@pytest.mark.parametrize("operation", OPERATIONS)
def test_budget_refuses_before_any_request(
    client: Any, server: FakeLLMServer, captured: Captured, operation: str
) -> None:
    llmwatch.budget(1e-9, per="day", feature="bedrock")
    with llmwatch.attributes(feature="bedrock"):
        call(client, operation)  # spent 0 < limit: goes ahead and crosses it
        sent = len(server.requests)
        with pytest.raises(llmwatch.BudgetExceeded) as refused:
            call(client, operation)
    assert len(server.requests) == sent
    assert refused.value.request["modelId"] == CLAUDE  # the caller's own arguments
    crossing, refused_span = captured.llm_spans()
    assert crossing.attributes["llmwatch.budget.exceeded"] is True
    assert refused_span.attributes["error.type"] == "BudgetExceeded"
    assert refused_span.attributes["gen_ai.provider.name"] == "aws.bedrock"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_kill_switch_refuses_before_any_request(
    client: Any, server: FakeLLMServer, captured: Captured, operation: str
) -> None:
    llmwatch.kill_switch(model=CLAUDE)
    sent = len(server.requests)
    with pytest.raises(llmwatch.FeatureDisabled):
        call(client, operation)
    assert len(server.requests) == sent
    assert only_span(captured).attributes["error.type"] == "FeatureDisabled"


def test_a_fallback_answer_replaces_the_call(client: Any, server: FakeLLMServer, captured: Captured) -> None:
    answer = {"output": {"message": {"role": "assistant", "content": [{"text": "cached answer"}]}}}
    llmwatch.budget(1e-9, model=CLAUDE, on_exceed=lambda exc: answer)
    client.converse(modelId=CLAUDE, messages=ask())
    sent = len(server.requests)
    assert client.converse(modelId=CLAUDE, messages=ask()) is answer
    assert len(server.requests) == sent


# --- which clients are traced -------------------------------------------------------------------------
def test_instrument_traces_exactly_that_client(client: Any, plain: Any, captured: Captured) -> None:
    plain.converse(modelId=CLAUDE, messages=ask())
    client.converse(modelId=CLAUDE, messages=ask())
    assert len(captured.llm_spans()) == 1
    _instrument.instrument_all()  # global instrumentation: every client, once each
    plain.converse(modelId=CLAUDE, messages=ask())
    client.converse(modelId=CLAUDE, messages=ask())
    assert len(captured.llm_spans()) == 3


def test_instrument_refuses_what_is_not_a_bedrock_runtime_client(server: FakeLLMServer) -> None:
    with pytest.raises(TypeError, match=r"'sts' client.*bedrock-runtime"):
        llmwatch.instrument(make_client(server.base_url, "sts"))
    with pytest.raises(TypeError, match="not a boto3 client"):
        llmwatch.instrument(boto3.session.Session(region_name="us-east-1")._session)
    with pytest.raises(TypeError, match="not supported"):
        llmwatch.instrument(boto3.session.Session(region_name="us-east-1"))


def test_other_aws_clients_and_operations_are_untouched(client: Any, captured: Captured) -> None:
    _instrument.instrument_all()
    sts = make_client("https://sts.example.invalid", "sts")
    s3 = make_client("https://s3.example.invalid", "s3")
    with Stubber(sts) as sts_stub, Stubber(s3) as s3_stub, Stubber(client) as bedrock_stub:
        identity = {"UserId": "AIDAFAKE", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/fake"}
        sts_stub.add_response("get_caller_identity", identity)
        s3_stub.add_client_error("list_buckets", "AccessDenied", "denied", 403)
        counts = "CountTokens" in client.meta.service_model.operation_names  # botocore >= 1.40
        if counts:
            bedrock_stub.add_response("count_tokens", {"inputTokens": 3})  # not an operation llmwatch traces
        assert sts.get_caller_identity()["Account"] == "123456789012"
        with pytest.raises(botocore.exceptions.ClientError) as denied:
            s3.list_buckets()
        if counts:
            assert client.count_tokens(modelId=CLAUDE, input={"converse": {"messages": ask()}})["inputTokens"] == 3
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert denied.value.__context__ is None
    assert captured.spans == []


def test_a_stubbed_bedrock_client_is_traced(client: Any, captured: Captured) -> None:
    reply = {
        "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
        "metrics": {"latencyMs": 1},
    }
    data = json.dumps({"generation": "hi", "prompt_token_count": 2, "generation_token_count": 1, "stop_reason": "stop"})
    body = StreamingBody(io.BytesIO(data.encode()), len(data))  # how tests build an InvokeModel reply
    with Stubber(client) as stub:
        stub.add_response("converse", reply)
        stub.add_response("invoke_model", {"body": body, "contentType": "application/json"})
        assert client.converse(modelId=NOVA, messages=ask()) == reply
        response = client.invoke_model(modelId=LLAMA, body=json.dumps({"prompt": "hi"}))
    assert response["body"] is body and body.read() == data.encode()
    converse, invoke = (span.attributes for span in captured.llm_spans())
    assert converse["gen_ai.usage.input_tokens"] == 3 and "server.address" in converse
    assert invoke["gen_ai.usage.input_tokens"] == 2 and invoke["gen_ai.usage.output_tokens"] == 1


def test_uninstall_restores_botocore(client: Any) -> None:
    assert botocore.client.BaseClient.__dict__["_make_api_call"] is not ORIGINAL_MAKE_API_CALL
    _instrument.uninstall_all()
    assert botocore.client.BaseClient.__dict__["_make_api_call"] is ORIGINAL_MAKE_API_CALL


ORIGINAL_MAKE_API_CALL = botocore.client.BaseClient.__dict__["_make_api_call"]


def test_credentials_never_reach_a_span(client: Any, captured_content: Captured) -> None:
    for operation in OPERATIONS:
        call(client, operation)
    dumped = json.dumps([dict(span.attributes) for span in captured_content.spans], default=str)
    for secret in (SECRET, "AKIAFAKE", "Signature", "AWS4-HMAC-SHA256", "authorization"):
        assert secret not in dumped


# --- llmwatch's own failures stay llmwatch's ------------------------------------------------------------
class InjectedFault(Exception):
    pass


def boom(*args: Any, **kwargs: Any) -> Any:
    raise InjectedFault("fault injected by tests/test_bedrock.py")


@pytest.fixture()
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmwatch import _health

    monkeypatch.setattr(_health, "raise_internal_errors", False)


FAULTS = [
    # (operation, where, what, spans): a fault while the call opens leaves it untraced (no span)
    ("converse", _bedrock_converse, "request_attributes", 0),
    ("converse", _bedrock_converse, "read_reply", 1),
    ("converse_stream", _bedrock_converse, "read_event", 1),
    ("invoke_model", _bedrock_bodies, "parse_body", 0),
    ("invoke_model", _bedrock_bodies.AnthropicBody, "read", 1),
    ("invoke_model", _bedrock_reader, "watch_body", 1),
    ("invoke_model", _bedrock_reader.BodyReader, "_self_done", 1),
    ("invoke_model_with_response_stream", _bedrock_bodies.AnthropicBody, "read_event", 1),
]


@pytest.mark.parametrize(("operation", "owner", "name", "spans"), FAULTS, ids=[f"{f[0]}-{f[2]}" for f in FAULTS])
def test_a_fault_in_llmwatch_leaves_the_call_as_it_was(
    production: None,
    client: Any,
    plain: Any,
    seen: Seen,
    captured: Captured,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    owner: Any,
    name: str,
    spans: int,
) -> None:
    monkeypatch.setattr(owner, name, boom)
    got = call(client, operation)
    expected = call(plain, operation)
    monkeypatch.undo()
    assert normalize(got) == normalize(expected)  # the response dict, the body's bytes, the events
    assert llmwatch.stats()["internal_errors"] >= 1
    for response in seen.responses:  # a body whose reader failed ends when closed (or collected)
        if isinstance(response.get("body"), StreamingBody):
            response["body"].close()
    assert len(captured.llm_spans()) == spans


def normalize(value: Any) -> Any:
    """A comparable form without the per-request ids (AWS request ids, message ids, dates)."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if k not in ("ResponseMetadata", "id", "message")}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, bytes):
        try:
            return normalize(json.loads(value))
        except ValueError:
            return value
    return value


# --- the wire: AWS event-stream framing ---------------------------------------------------------------
def test_event_stream_frames_decode_with_botocore() -> None:
    events = [
        Event({"contentBlockIndex": 0, "delta": {"text": "Héllo"}}, "contentBlockDelta"),
        Event({"message": "interrupted"}, "modelStreamErrorException"),
    ]
    data = b"".join(_bedrock_wire.encode_event(e) for e in events)
    buffer = botocore.eventstream.EventStreamBuffer()
    for position in range(0, len(data), 5):  # arrives in pieces, as over a socket
        buffer.add_data(data[position : position + 5])
    messages = list(buffer)
    assert [m.headers for m in messages] == [
        {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"},
        {
            ":exception-type": "modelStreamErrorException",
            ":content-type": "application/json",
            ":message-type": "exception",
        },
    ]
    assert [json.loads(m.payload) for m in messages] == [e.data for e in events]
    corrupted = bytearray(_bedrock_wire.encode_event(events[0]))
    corrupted[-6] ^= 0xFF
    buffer = botocore.eventstream.EventStreamBuffer()
    buffer.add_data(bytes(corrupted))
    with pytest.raises(botocore.eventstream.ChecksumMismatch):
        list(buffer)


def test_model_ids_are_url_encoded_in_the_path(client: Any, server: FakeLLMServer) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0"
    client.converse(modelId=arn, messages=ask())
    assert server.requests[-1].path.startswith(
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
    )


def test_an_inference_profile_arn_is_recorded_as_given_and_priced(client: Any, captured: Captured) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0"
    response = client.converse(modelId=arn, messages=ask())
    attrs = only_span(captured).attributes
    assert attrs["gen_ai.request.model"] == arn
    _, cost = converse_cost(CLAUDE_PROFILE, response["usage"])
    assert_priced(attrs, cost)


# --- imports and docs ------------------------------------------------------------------------------------
def test_configure_does_not_import_botocore_and_hooks_it_when_the_app_does(tmp_path: Path) -> None:
    script = f"""
import sys
import llmwatch
llmwatch.configure(exporter="none")
assert "botocore" not in sys.modules and "boto3" not in sys.modules, "imported by llmwatch"
import boto3
from botocore.stub import Stubber
client = boto3.client(
    "bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIAFAKE", aws_secret_access_key="x"
)
reply = {{"output": {{"message": {{"role": "assistant", "content": [{{"text": "hi"}}]}}}}, "stopReason": "end_turn",
         "usage": {{"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}}, "metrics": {{"latencyMs": 1}}}}
with Stubber(client) as stub:
    stub.add_response("converse", reply)
    client.converse(modelId="{NOVA}", messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}])
stats = llmwatch.stats()
assert stats["spans_started"] == stats["spans_ended"] == 1, stats
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_docs_list_every_operation_traced() -> None:
    text = DOCS.read_text(encoding="utf-8")
    covered = text.split("## Methods covered", 1)[1].split("\n## ", 1)[0]
    for operation in _bedrock.OPERATIONS:
        method = botocore.xform_name(operation)
        assert f"`client.{method}`" in covered, method


def test_a_rollout_sends_its_arms_model_id_to_converse(client: Any, server: FakeLLMServer, captured: Captured) -> None:
    challenger = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    llmwatch.rollout("bedrock-canary", challenger={"modelId": challenger}, share=1.0, feature="search")
    with llmwatch.attributes(user="u1", feature="search"):
        client.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", messages=ask())
    assert server.requests_for(challenger), [r.path for r in server.requests[-2:]]
    span = captured.spans[-1]
    assert span.attributes["gen_ai.request.model"] == challenger
    assert span.attributes["llmwatch.rollout.arm"] == "challenger"
