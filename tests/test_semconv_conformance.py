"""Every attribute llmwatch emits, checked against the OTel semantic-conventions registry v1.41.0.

The registry YAML (and the GenAI message JSON schemas) are vendored under ``tests/semconv/`` (see its
README): no network. Each call kind llmwatch traces runs once, against the loopback server, with
content capture on, and every span's attributes are checked for:

- names: in the registry, or under ``llmwatch.*``, or in :data:`EXTRA_NAMES` (each with its reason);
- value types: a ``double`` is a float (never an int), an ``int`` an int (never a bool), arrays tuples;
- enum values: a member of the registry's enum (closed here: llmwatch picks known values);
- requirement levels: the span's ``required`` attributes present, the conditional ones the spec spells
  (``server.port`` with ``server.address``, ``gen_ai.request.stream`` iff streaming, ``error.type`` on
  failures, ``gen_ai.request.choice.count`` only when not 1);
- that ``gen_ai.*`` and ``openai.*`` attributes are ones the span's convention (with what it extends)
  lists; span names ``{gen_ai.operation.name} {gen_ai.request.model}``;
- the content attributes' message shape (roles, part types, finish reasons) against the JSON schemas.

A new attribute, a renamed one, an int where a double belongs: this test fails.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

import llmwatch
import llmwatch.testing
from llmwatch._demo._server import FakeLLMServer

HERE = Path(__file__).resolve().parent / "semconv"

# Names outside the v1.41.0 registry that llmwatch emits on purpose (and llmwatch.* is its own).
EXTRA_NAMES: dict[str, str] = {}

# Registry attributes the inference span conventions do not list, emitted on purpose.
EXTRA_ON_SPANS = {
    # a prompt template's name (llmwatch.prompt): the registry's attribute, listed so far only by MCP
    "gen_ai.prompt.name",
}

# Span convention per (operation, provider): the group in spans.yaml whose attributes apply.
SPAN_GROUPS = {
    ("embeddings", None): "span.gen_ai.embeddings.client",
    (None, "openai"): "span.openai.inference.client",
    (None, "anthropic"): "span.anthropic.inference.client",
    (None, None): "span.gen_ai.inference.client",
}


# --- the registry -----------------------------------------------------------------------------------
class Registry:
    def __init__(self) -> None:
        self.attributes: dict[str, dict[str, Any]] = {}
        self.deprecated: set[str] = set()
        self.groups: dict[str, dict[str, Any]] = {}
        for path in sorted(HERE.glob("*.yaml")):
            for group in yaml.safe_load(path.read_text())["groups"]:
                self.groups[group["id"]] = group
                for attribute in group.get("attributes", ()):
                    if "id" in attribute:
                        self.attributes[attribute["id"]] = attribute
                        if "deprecated" in attribute:
                            self.deprecated.add(attribute["id"])

    def type_of(self, name: str) -> Any:
        if name in EXTRA_NAMES:
            return EXTRA_NAMES[name]
        return self.attributes[name]["type"]

    def span_attributes(self, group_id: str) -> dict[str, Any]:
        """ref -> requirement level over the group and what it extends (the nearest wins)."""
        group = self.groups[group_id]
        levels = self.span_attributes(group["extends"]) if "extends" in group else {}
        for attribute in group.get("attributes", ()):
            ref = attribute.get("ref") or attribute.get("id")
            if "requirement_level" in attribute or ref not in levels:
                levels[ref] = attribute.get("requirement_level", "recommended")
        return levels


REGISTRY = Registry()


def schema_part_types(file: str) -> tuple[set[str], set[str], set[str]]:
    """(part type consts, role enum, finish reason enum) from a GenAI message JSON schema."""
    defs = json.loads((HERE / file).read_text())["$defs"]
    types = {
        d["properties"]["type"]["const"] for d in defs.values() if "const" in d.get("properties", {}).get("type", {})
    }
    roles = set(defs["Role"]["enum"])
    finish = set(defs.get("FinishReason", {}).get("enum", ()))
    return types, roles, finish


INPUT_PART_TYPES, ROLES, _ = schema_part_types("gen-ai_gen-ai-input-messages.json")
OUTPUT_PART_TYPES, _, FINISH_REASONS = schema_part_types("gen-ai_gen-ai-output-messages.json")


# --- the checks -------------------------------------------------------------------------------------
def type_problem(name: str, value: Any, kind: Any) -> str | None:
    if isinstance(kind, dict):  # an enum: members with values
        members = {m["value"] for m in kind["members"]}
        if members == {"_OTHER"}:  # error.type: open by design (the error's own name)
            return None if type(value) is str else f"{name}={value!r}: not a string"
        return None if value in members else f"{name}={value!r}: not in its enum {sorted(members)}"
    scalar = {"string": (str,), "int": (int,), "double": (float,), "boolean": (bool,), "any": (str,)}
    if kind in scalar:
        ok = type(value) in scalar[kind]
    elif kind.endswith("[]"):
        element = scalar[kind[:-2]]
        ok = isinstance(value, tuple) and all(type(v) in element for v in value)
    else:
        raise AssertionError(f"unknown registry type {kind}")
    return None if ok else f"{name}={value!r}: {type(value).__name__}, the registry says {kind}"


def level_is_required(level: Any) -> bool:
    return level == "required"


def problems_of(span: Any, *, streamed: bool, failed: bool = False) -> list[str]:
    attrs = dict(span.attributes)
    found: list[str] = []
    for name, value in attrs.items():
        if name.startswith("llmwatch."):
            continue
        if name not in REGISTRY.attributes and name not in EXTRA_NAMES:
            found.append(f"{name}: not in the registry")
            continue
        if name in REGISTRY.deprecated:
            found.append(f"{name}: deprecated in the registry")
        problem = type_problem(name, value, REGISTRY.type_of(name))
        if problem:
            found.append(problem)
    operation = attrs.get("gen_ai.operation.name")
    if operation is None:  # an observe span: names and types only
        return found
    provider = attrs.get("gen_ai.provider.name")
    group = SPAN_GROUPS.get((operation, None)) or SPAN_GROUPS.get((None, provider)) or SPAN_GROUPS[(None, None)]
    levels = REGISTRY.span_attributes(group)
    levels["gen_ai.provider.name"] = "required"  # every provider's convention: MUST be set (its note)
    for ref, level in levels.items():
        if level_is_required(level) and ref not in attrs:
            found.append(f"{ref}: required on {group}, missing")
    for name in attrs:
        extra = name in EXTRA_NAMES or name in EXTRA_ON_SPANS
        if name.startswith(("gen_ai.", "openai.")) and name not in levels and not extra:
            found.append(f"{name}: not an attribute of {group}")
    if "server.address" in attrs and "server.port" not in attrs:
        found.append("server.port: conditionally required with server.address")
    if streamed and attrs.get("gen_ai.request.stream") is not True and "gen_ai.request.stream" in levels:
        found.append("gen_ai.request.stream: required (true) on a streaming request")
    if not streamed and "gen_ai.request.stream" in attrs:
        found.append("gen_ai.request.stream: set on a non-streaming request (the spec: iff streaming)")
    if failed and "error.type" not in attrs:
        found.append("error.type: required when the operation failed")
    if attrs.get("gen_ai.request.choice.count") == 1:
        found.append("gen_ai.request.choice.count: only when != 1")
    if "gen_ai.request.model" in attrs and span.name != f"{operation} {attrs['gen_ai.request.model']}":
        found.append(f"span name {span.name!r}: not '{{operation}} {{model}}'")
    if provider == "openai" and operation == "chat" and "openai.api.type" not in attrs:
        found.append("openai.api.type: recommended on an OpenAI span, and llmwatch knows it")
    found += content_problems(attrs)
    return found


def content_problems(attrs: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def check_parts(where: str, parts: list[Any], allowed: set[str]) -> None:
        for part in parts:
            if part.get("type") not in allowed:
                found.append(f"{where}: part type {part.get('type')!r} not in the schema")
            if part.get("type") == "blob" and "modality" not in part:
                found.append(f"{where}: a blob part without its modality (the schema requires it)")
            if part.get("type") == "blob" and "content" in part:
                found.append(f"{where}: a blob part carries content {part['content']!r} (llmwatch never sends bytes)")

    if "gen_ai.system_instructions" in attrs:
        check_parts("gen_ai.system_instructions", json.loads(attrs["gen_ai.system_instructions"]), INPUT_PART_TYPES)
    for message in json.loads(attrs.get("gen_ai.input.messages", "[]")):
        if message["role"] not in ROLES:
            found.append(f"gen_ai.input.messages: role {message['role']!r}")
        if message["role"] == "system" and "gen_ai.system_instructions" in attrs:
            found.append("gen_ai.input.messages: a system message also in gen_ai.system_instructions")
        check_parts("gen_ai.input.messages", message["parts"], INPUT_PART_TYPES)
    for message in json.loads(attrs.get("gen_ai.output.messages", "[]")):
        if message.get("finish_reason") not in FINISH_REASONS:
            found.append(f"gen_ai.output.messages: finish_reason {message.get('finish_reason')!r}")
        check_parts("gen_ai.output.messages", message["parts"], OUTPUT_PART_TYPES)
    return found


# --- the calls ----------------------------------------------------------------------------------------
IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"


def openai_client(server: FakeLLMServer) -> Any:
    import openai

    client = openai.OpenAI(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0)
    return llmwatch.instrument(client, provider="openai")


def anthropic_client(server: FakeLLMServer) -> Any:
    import anthropic

    client = anthropic.Anthropic(api_key="sk-ant-test-0123456789", base_url=server.anthropic_base_url, max_retries=0)
    return llmwatch.instrument(client)


def gemini_client(server: FakeLLMServer) -> Any:
    from google import genai
    from google.genai import types

    return llmwatch.instrument(
        genai.Client(api_key="fake-gemini-key", http_options=types.HttpOptions(base_url=server.base_url))
    )


def bedrock_client(server: FakeLLMServer) -> Any:
    import boto3
    import botocore.config

    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.base_url,
        aws_access_key_id="AKIAFAKE",
        aws_secret_access_key="fake-secret-key-0123456789",
        config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    return llmwatch.instrument(client)


CHAT = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": IMAGE}},
        ],
    },
]
SAMPLING = {"temperature": 1, "top_p": 1}


def openai_chat(server: FakeLLMServer) -> None:
    openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=CHAT, seed=3, **SAMPLING)


def openai_chat_stream(server: FakeLLMServer) -> None:
    list(openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True, **SAMPLING))


def openai_responses(server: FakeLLMServer) -> None:
    openai_client(server).responses.create(model="gpt-4o-mini", input="Hello", instructions="Be brief.", **SAMPLING)


def openai_responses_stream(server: FakeLLMServer) -> None:
    list(openai_client(server).responses.create(model="gpt-4o-mini", input="Hello", stream=True, **SAMPLING))


def openai_embeddings(server: FakeLLMServer) -> None:
    openai_client(server).embeddings.create(model="text-embedding-3-small", input="Hello")


# anthropic 2.x takes no sampling parameters (temperature, top_k): the unit tests cover their types.
ANTHROPIC = {"model": "claude-haiku-4-5", "max_tokens": 64, "system": "Be brief."}


ANTHROPIC_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE[22:]}}


def anthropic_messages(server: FakeLLMServer) -> None:
    content = [{"type": "text", "text": "Hi"}, ANTHROPIC_IMAGE]
    anthropic_client(server).messages.create(messages=[{"role": "user", "content": content}], **ANTHROPIC)


def anthropic_stream(server: FakeLLMServer) -> None:
    stream = anthropic_client(server).messages.create(
        messages=[{"role": "user", "content": "Hi"}], stream=True, **ANTHROPIC
    )
    list(stream)


def gemini_generate(server: FakeLLMServer) -> None:
    config = {"temperature": 1, "top_p": 1, "top_k": 20, "system_instruction": "Be brief."}
    client = gemini_client(server)  # held: a collected client closes its HTTP client
    client.models.generate_content(model="gemini-2.5-flash", contents="Hi", config=config)


def gemini_stream(server: FakeLLMServer) -> None:
    config = {"temperature": 1, "top_k": 20}
    client = gemini_client(server)
    list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi", config=config))


BEDROCK = {
    "modelId": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
    "system": [{"text": "Be brief."}],
    "inferenceConfig": {"maxTokens": 64, "temperature": 1, "topP": 1},
}


def bedrock_converse(server: FakeLLMServer) -> None:
    bedrock_client(server).converse(**BEDROCK)


def bedrock_converse_stream(server: FakeLLMServer) -> None:
    list(bedrock_client(server).converse_stream(**BEDROCK)["stream"])


def manual_call(server: FakeLLMServer) -> None:
    with llmwatch.llm_call(provider="mistral_ai", model="mistral-small-latest") as call:
        call.set_input([{"role": "user", "content": "Hi"}])
        call.set_output("Hello.", input_tokens=3, output_tokens=2)


def manual_call_stream(server: FakeLLMServer) -> None:
    with llmwatch.llm_call(provider="mistral_ai", model="mistral-small-latest", stream=True) as call:
        call.set_input([{"role": "user", "content": "Hi"}])
        call.record_first_token()
        call.set_output("Hello.", input_tokens=3, output_tokens=2)


def observed(server: FakeLLMServer) -> None:
    @llmwatch.observe
    def answer(question: str) -> str:
        with llmwatch.prompt(name="answer", version="2", variables={"q": question}):
            reply = openai_client(server).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
            )
        return str(reply.choices[0].message.content)

    with llmwatch.attributes(user="u1", session="s1"):
        answer("Hi")


CALLS: dict[str, tuple[Callable[[FakeLLMServer], None], bool]] = {
    "openai.responses": (openai_responses, False),
    "openai.responses.stream": (openai_responses_stream, True),
    "openai.embeddings": (openai_embeddings, False),
    "anthropic.messages": (anthropic_messages, False),
    "anthropic.messages.stream": (anthropic_stream, True),
    "gemini.generate_content": (gemini_generate, False),
    "gemini.generate_content.stream": (gemini_stream, True),
    "bedrock.converse": (bedrock_converse, False),
    "bedrock.converse_stream": (bedrock_converse_stream, True),
    "llm_call": (manual_call, False),
    "llm_call.stream": (manual_call_stream, True),
    "observe": (observed, False),
}

# Violations not fixed yet: call kind -> reason (removed as each is fixed; never for a fixable one).
KNOWN: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture()
def spans(server: FakeLLMServer, request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    call, _ = CALLS[request.param]
    with llmwatch.testing.capture(capture_content=True) as captured:
        result = call(server)
        assert not inspect.isawaitable(result)
        yield captured.spans


@pytest.mark.parametrize("spans", list(CALLS), indirect=True)
def test_every_attribute_is_the_registrys(spans: list[Any], request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["spans"]
    if kind in KNOWN:
        request.applymarker(pytest.mark.xfail(reason=KNOWN[kind], strict=True))
    assert spans
    _, streamed = CALLS[kind]
    problems = [f"{span.name}: {p}" for span in spans for p in problems_of(span, streamed=streamed)]
    assert not problems, "\n".join(problems)
    if kind == "observe":  # the prompt template's name, under the registry's name too
        assert [s.attributes.get("gen_ai.prompt.name") for s in spans if "gen_ai.operation.name" in s.attributes] == [
            "answer"
        ]


def test_a_failed_call_carries_error_type(server: FakeLLMServer) -> None:
    import openai

    with llmwatch.testing.capture() as captured:
        client = openai_client(server)
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=CHAT, extra_headers={"x-fake-scenario": "server_error"}
            )
    (span,) = captured.llm_spans()
    assert problems_of(span, streamed=False, failed=True) == []


def test_the_checker_catches_drift() -> None:
    """The checks themselves: an int double, an unknown name, a bad enum value, a missing required."""

    class Span:
        name = "chat m"
        attributes: ClassVar[dict[str, Any]] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "m",
            "gen_ai.request.temperature": 1,
            "gen_ai.request.colour": "blue",
            "gen_ai.output.type": "telepathy",
        }

    problems = "\n".join(problems_of(Span(), streamed=False))
    assert "gen_ai.request.temperature=1: int" in problems
    assert "gen_ai.request.colour: not in the registry" in problems
    assert "gen_ai.output.type='telepathy': not in its enum" in problems
    assert "gen_ai.provider.name: required" in problems


def test_double_request_attributes_are_floats_even_when_given_as_ints() -> None:
    from llmwatch import _semconv as sc
    from llmwatch._instrument._fields import put_number, put_numbers

    attrs: dict[str, Any] = {}
    params = (("temperature", sc.GEN_AI_REQUEST_TEMPERATURE), ("top_k", sc.GEN_AI_REQUEST_TOP_K))
    put_numbers(attrs, {"temperature": 1, "top_k": 5, "seed": 3}, (*params, ("seed", sc.GEN_AI_REQUEST_SEED)))
    put_number(attrs, sc.GEN_AI_REQUEST_TOP_P, 1)
    put_number(attrs, sc.GEN_AI_REQUEST_MAX_TOKENS, 64)
    assert attrs == {
        sc.GEN_AI_REQUEST_TEMPERATURE: 1.0,
        sc.GEN_AI_REQUEST_TOP_K: 5.0,
        sc.GEN_AI_REQUEST_SEED: 3,
        sc.GEN_AI_REQUEST_TOP_P: 1.0,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 64,
    }
    assert [type(v) for v in attrs.values()] == [float, float, int, float, int]


def test_finish_reasons_keep_the_position_of_a_choice_cut_before_its_reason() -> None:
    from types import SimpleNamespace

    from llmwatch._core._call import Choice
    from llmwatch._core._pipeline import response_step

    def reasons(finish: dict[int, str | None], **ending: Any) -> Any:
        choices = {}
        for index, reason in finish.items():
            choices[index] = Choice(index)
            choices[index].finish_reason = reason
        call = SimpleNamespace(response_id=None, response_model=None, response_attributes=None, choices=choices)
        call.error, call.stream_completed = ending.get("error"), ending.get("stream_completed")
        attrs: dict[str, Any] = {}
        response_step(call, attrs)  # type: ignore[arg-type]
        return attrs.get("gen_ai.response.finish_reasons")

    assert reasons({0: "stop", 1: None}, stream_completed=False) == ["stop", "error"]
    assert reasons({0: None, 1: "length"}) == ["error", "length"]
    assert reasons({0: "stop", 2: "stop"}) == ["stop", "error", "stop"]  # choice 1 never arrived
    assert reasons({0: None}, error=RuntimeError("cut")) == ["error"]
    assert reasons({0: "stop", 10**9: "length"}) == ["stop", "length"]  # a bogus index makes no huge list
    assert reasons({0: None}) is None  # finished, the provider said nothing: nothing to report
    assert reasons({}, stream_completed=False) is None


def test_anthropic_server_tool_use_is_a_server_tool_call(server: FakeLLMServer) -> None:
    """A tool Anthropic ran itself (web search) is the spec's server_tool_call, not a tool_call."""
    import anthropic

    try:
        import httpx2 as httpx  # the HTTP client of the SDK versions this suite runs
    except ImportError:
        import httpx  # type: ignore[no-redef]

    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "paris"}},
            {"type": "text", "text": "Paris."},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=reply))
    client = anthropic.Anthropic(api_key="sk-ant-test-0123456789", http_client=httpx.Client(transport=transport))
    history = [
        {"role": "user", "content": "Where?"},
        {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s0", "name": "web_search", "input": {}}]},
        {"role": "user", "content": "And?"},
    ]
    with llmwatch.testing.capture(capture_content=True) as captured:
        llmwatch.instrument(client).messages.create(model="claude-haiku-4-5", max_tokens=64, messages=history)
    (span,) = captured.llm_spans()
    (output,) = json.loads(span.attributes["gen_ai.output.messages"])
    assert output["parts"][1] == {  # after the text: the renderer's order (reasoning, text, tool calls)
        "type": "server_tool_call",
        "id": "srvtoolu_1",
        "name": "web_search",
        "server_tool_call": {"type": "web_search", "arguments": {"query": "paris"}},
    }
    assert json.loads(span.attributes["gen_ai.input.messages"])[1]["parts"][0]["type"] == "server_tool_call"
    assert problems_of(span, streamed=False) == []
