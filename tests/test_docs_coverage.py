"""The coverage tables of docs/openai.md and docs/anthropic.md say what really happens.

Each row names calls (``client.chat.completions.create(stream=True)``) and the clients they are made
on; this test makes every one with the real SDK against the loopback server and checks the row:

- "Methods covered": exactly one llmwatch span, with tokens and cost, and no span of the SDK's own
  (save what an endpoint does not have: output tokens of embeddings, moderations and speech, tokens
  of what is billed by the second, the cost of a moderation, which is 0);
- "Batch API" (openai): the spans each Batch API call gives, made in the order a user makes them;
- "Not covered": no span at all (the request still reaches the server, so "none" is not an accident);
- the platform-client tables (Azure, Bedrock, Vertex...): the number of spans and the provider name
  they state. Those clients reach the loopback server through :class:`PlatformRoutes`, a transport
  that maps their URL schemes onto its routes.

And every method llmwatch hooks (the providers' ``TARGETS``) must appear in its page's "Methods
covered" (or "Batch API") table, so a hook added without its documentation fails here too.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import json
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from anthropic._streaming import SSEDecoder
from hosted import AsyncRoutes, PlatformRoutes, SyncRoutes
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmwatch
from llmwatch._demo._server import FakeLLMServer
from llmwatch._instrument import _anthropic, _openai
from llmwatch.testing import Captured

try:
    import httpx2 as httpx  # the HTTP client of the SDK versions this suite runs
except ImportError:  # pragma: no cover - older SDKs
    import httpx  # type: ignore[no-redef]

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = {"openai": "openai.md", "anthropic": "anthropic.md"}
PLATFORM_TABLES = {"openai": "Other OpenAI clients", "anthropic": "Bedrock, Vertex and the other platform clients"}
BATCH_TABLES = {"openai": "Batch API"}  # calls that are not one LLM call each (spans: their own column)
CODE = re.compile(r"`([^`]+)`")
WRAPPERS = ("with_raw_response", "with_streaming_response")
ASK = [{"role": "user", "content": "Hello there"}]
CLAUDE = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": ASK}
# The smallest valid request per resource (the path without ``beta.`` and the raw-response wrappers),
# or per resource and method; a row's own arguments are added to it.
REQUESTS: dict[str, dict[str, Any]] = {
    "chat.completions": {"model": "gpt-4o-mini", "messages": ASK},
    "completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "Hello there"},
    "images": {"model": "gpt-image-1", "prompt": "Hello there"},
    "images.edit": {"model": "gpt-image-1", "prompt": "Hello there", "image": ("in.png", b"\x89PNG")},
    "audio.transcriptions": {"model": "gpt-4o-transcribe", "file": ("hello.wav", b"\x00" * 3200)},
    "audio.translations": {"model": "whisper-1", "file": ("hello.wav", b"\x00" * 3200)},
    "audio.speech": {"model": "tts-1", "voice": "alloy", "input": "Hello there"},
    "moderations": {"model": "omni-moderation-latest", "input": "Hello there"},
    "files.content": {"file_id": "file-not-a-batch-output"},
    "responses": {"model": "gpt-4o-mini", "input": "Hello there"},
    "embeddings": {"model": "text-embedding-3-small", "input": "Hello there"},
    "messages": CLAUDE,
    "messages.count_tokens": {"model": CLAUDE["model"], "messages": ASK},
    "messages.batches": {"requests": [{"custom_id": "one", "params": CLAUDE}]},
}
REPLACES_REQUEST = frozenset({"response_id"})  # resuming a stored response takes nothing else


# --- reading the docs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    text: str  # as the doc writes it
    path: str  # from the client: "chat.completions.with_raw_response.create"
    arguments: tuple[tuple[str, Any], ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.arguments)


def parse_call(text: str) -> Call:
    node = ast.parse(text, mode="eval").body
    arguments: tuple[tuple[str, Any], ...] = ()
    if isinstance(node, ast.Call):
        arguments = tuple((str(k.arg), ast.literal_eval(k.value)) for k in node.keywords)
        node = node.func
    path = ast.unparse(node)
    assert path.startswith("client."), f"a call in the docs must start with `client.`: {text}"
    return Call(text, path.removeprefix("client."), arguments)


def table(page: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``## heading``, as lists of cells."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    assert f"## {heading}" in lines, f"docs/{page} has no '## {heading}' section"
    rows: list[list[str]] = []
    for line in lines[lines.index(f"## {heading}") + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, f"docs/{page}, '## {heading}': no table"
    return rows[2:]  # past the header and the |---| line


def call_rows(sdk: str, heading: str) -> list[tuple[Call, str]]:
    """(call, "sync" | "async") for every row of a "Methods covered" / "Not covered" table."""
    rows = []
    for cells in table(PAGES[sdk], heading):
        calls = CODE.findall(cells[0])
        assert len(calls) == 1, f"docs/{PAGES[sdk]}, '{heading}': one `client....` call per row, not {cells[0]}"
        (text,) = calls
        rows += [(parse_call(text), flavour.strip()) for flavour in cells[1].split(",")]
    return rows


def batch_rows_of(sdk: str) -> list[tuple[Call, str, str]]:
    """(call, flavour, what its spans column says) for every row of the page's Batch API table."""
    if sdk not in BATCH_TABLES:
        return []
    rows = []
    for cells in table(PAGES[sdk], BATCH_TABLES[sdk]):
        (text,) = CODE.findall(cells[0])
        rows += [(parse_call(text), flavour.strip(), cells[2]) for flavour in cells[1].split(",")]
    return rows


def platform_rows(sdk: str) -> list[tuple[str, Call, int, str | None]]:
    """(client class, call, llmwatch spans, provider name) for every client and call of a row."""
    rows = []
    for cells in table(PAGES[sdk], PLATFORM_TABLES[sdk]):
        clients, calls, spans, provider = cells[:4]
        names = CODE.findall(provider)
        for client in CODE.findall(clients):
            rows += [
                (client, parse_call(text), int(spans), names[0] if names else None) for text in CODE.findall(calls)
            ]
    return rows


def params(rows: list[Any], sdk: str) -> list[Any]:
    return [
        pytest.param(sdk, *row, id=f"{sdk}:{'-'.join(str(v.text if isinstance(v, Call) else v) for v in row)}")
        for row in rows
    ]


# --- making the calls ------------------------------------------------------------------------------
async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def drain(stream: Any, is_async: bool) -> None:
    if is_async:
        async for _ in stream:
            pass
    else:
        for _ in stream:
            pass


async def make_call(client: Any, call: Call, is_async: bool) -> None:
    """Make the call as a user would, and read it to the end (parse the raw response, drain the stream)."""
    parts = call.path.split(".")
    method, wrapper = parts[-1], parts[-2] if parts[-2] in WRAPPERS else None
    resource = ".".join(p for p in parts[:-1] if p not in WRAPPERS).removeprefix("beta.")
    base = REQUESTS.get(f"{resource}.{method}", REQUESTS.get(resource))
    assert base is not None, f"no request known for `{call.text}`: add one to REQUESTS"
    request = call.kwargs if REPLACES_REQUEST & set(call.kwargs) else {**base, **call.kwargs}
    streamed = call.kwargs.get("stream") is True
    bound = operator.attrgetter(call.path)(client)
    if wrapper == "with_streaming_response":
        if is_async:
            async with bound(**request) as response:
                parsed = await response.parse()
                if streamed:
                    await drain(parsed, True)
        else:
            with bound(**request) as response:
                parsed = response.parse()
                if streamed:
                    await drain(parsed, False)
    elif method == "stream":  # the stream helpers: a context manager around the events
        if is_async:
            async with bound(**request) as events:
                await drain(events, True)
        else:
            with bound(**request) as events:
                await drain(events, False)
    else:
        result = raw = await resolve(bound(**request))
        if wrapper == "with_raw_response":
            # `raw` stays referenced until the stream is read: see test_raw_stream_outlives_its_raw_response.
            result = await resolve(raw.parse())
        if streamed:
            await drain(result, is_async)
        del raw


def first_party_client(sdk: str, flavour: str, server: FakeLLMServer, *, traced: bool = True) -> Any:
    if sdk == "openai":
        cls: Any = openai.AsyncOpenAI if flavour == "async" else openai.OpenAI
        client = cls(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0)
    else:
        cls = anthropic.AsyncAnthropic if flavour == "async" else anthropic.Anthropic
        client = cls(api_key="sk-ant-test-0123456789", base_url=server.anthropic_base_url, max_retries=0)
    # The loopback server speaks each SDK's first-party API: named so (its host alone would not say).
    return llmwatch.instrument(client, provider=sdk) if traced else client


# Per platform client (its name without "Async"): what it needs to start without credentials or a
# network, and the model name that platform uses in requests.
PLATFORM_CLIENTS: dict[str, tuple[dict[str, Any], str]] = {
    "AzureOpenAI": (
        {"api_key": "azure-test-key", "api_version": "2024-10-21", "azure_endpoint": "https://r.openai.azure.com"},
        "gpt-4o-mini",
    ),
    "BedrockOpenAI": ({"api_key": "bedrock-test-key", "aws_region": "us-east-1"}, "gpt-4o-mini"),
    "AnthropicBedrock": (
        {"api_key": "bedrock-test-key", "aws_region": "us-east-1"},
        "anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    "AnthropicVertex": (
        {"access_token": "vertex-test-token", "region": "us-east5", "project_id": "p"},
        "claude-haiku-4-5@20251001",
    ),
    "AnthropicAWS": ({"api_key": "aws-test-key", "aws_region": "us-east-1", "workspace_id": "w"}, "claude-haiku-4-5"),
    "AnthropicFoundry": ({"api_key": "foundry-test-key", "resource": "r"}, "claude-haiku-4-5"),
    "AnthropicGoogleCloud": (
        {"skip_auth": True, "project": "p", "location": "global", "workspace_id": "w"},
        "claude-haiku-4-5",
    ),
    "AnthropicBedrockMantle": ({"api_key": "mantle-test-key", "aws_region": "us-east-1"}, "claude-haiku-4-5"),
}


def platform_client(name: str, server: FakeLLMServer, models: dict[str, str] | None = None) -> tuple[Any, str, bool]:
    """(instrumented client, its model name, is it async) for ``openai.AzureOpenAI`` etc."""
    module_name, class_name = name.split(".")
    is_async = class_name.startswith("Async")
    known = PLATFORM_CLIENTS.get(class_name.removeprefix("Async"))
    assert known is not None, f"no way to start `{name}` in this test: add it to PLATFORM_CLIENTS"
    options, model = known
    routes = PlatformRoutes(server, models)
    http = httpx.AsyncClient(transport=AsyncRoutes(routes)) if is_async else httpx.Client(transport=SyncRoutes(routes))
    client = getattr(importlib.import_module(module_name), class_name)(**options, http_client=http, max_retries=0)
    if class_name.removeprefix("Async") == "AnthropicBedrock":
        # Bedrock frames stream events as an AWS event stream (decoded with botocore); the server sends
        # them as SSE. llmwatch sees the decoded events either way.
        # (anthropic >= 2.16 passes the request options; older versions pass nothing.)
        client._make_sse_decoder = lambda *_: SSEDecoder()
    return llmwatch.instrument(client), model, is_async


def with_model(call: Call, model: str) -> Call:
    return Call(call.text, call.path, (*call.arguments, ("model", model)))


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def sdk_spans(global_spans: InMemorySpanExporter) -> InMemorySpanExporter:
    """A real global TracerProvider: where an SDK puts spans of its own."""
    return global_spans


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]


def assert_one_priced_span(captured: Captured, where: str) -> dict[str, Any]:
    spans = captured.llm_spans()
    assert len(spans) == 1, f"{where}: {len(spans)} llmwatch spans, the docs say 1"
    attrs = dict(spans[0].attributes or {})
    operation = attrs["gen_ai.operation.name"]
    by_the_second = "llmwatch.usage.input_audio_seconds" in attrs  # whisper-1: billed by duration, no tokens
    if not by_the_second:
        assert attrs["gen_ai.usage.input_tokens"] > 0, where
    if operation not in ("embeddings", "moderation") and attrs.get("gen_ai.output.type") != "speech":
        assert by_the_second or attrs["gen_ai.usage.output_tokens"] > 0, where
    if operation == "moderation":  # free: priced at 0, by genai-prices
        assert attrs["llmwatch.cost.usd"] == 0 and attrs["llmwatch.cost.source"].startswith("genai-prices"), where
    else:
        assert attrs["llmwatch.cost.usd"] > 0, where
    if attrs.get("llmwatch.stream"):
        assert attrs["llmwatch.stream.completed"] is True, where
    return attrs


# --- the tables ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sdk", "call", "flavour"),
    params(call_rows("openai", "Methods covered"), "openai")
    + params(call_rows("anthropic", "Methods covered"), "anthropic"),
)
async def test_each_covered_call_gives_one_span_with_tokens_and_cost(
    server: FakeLLMServer, captured: Captured, sdk_spans: InMemorySpanExporter, sdk: str, call: Call, flavour: str
) -> None:
    await make_call(first_party_client(sdk, flavour, server), call, flavour == "async")
    assert_one_priced_span(captured, f"docs/{PAGES[sdk]}: `{call.text}` ({flavour})")
    assert sdk_spans.get_finished_spans() == ()  # nor a second one from the SDK itself


@pytest.mark.parametrize(
    ("sdk", "call", "flavour"),
    params(call_rows("openai", "Not covered"), "openai") + params(call_rows("anthropic", "Not covered"), "anthropic"),
)
async def test_each_call_not_covered_gives_no_span(
    server: FakeLLMServer, captured: Captured, sdk_spans: InMemorySpanExporter, sdk: str, call: Call, flavour: str
) -> None:
    sent = len(server.requests)
    # A route the loopback server lacks answers 404: a hooked method would still give an (error) span.
    with contextlib.suppress(openai.APIStatusError, anthropic.APIStatusError):
        await make_call(first_party_client(sdk, flavour, server), call, flavour == "async")
    assert len(server.requests) > sent, f"`{call.text}` never reached the server: the check would prove nothing"
    assert captured.llm_spans() == [], f"docs/{PAGES[sdk]} lists `{call.text}` ({flavour}) as not covered"
    assert sdk_spans.get_finished_spans() == ()


@pytest.mark.parametrize(
    ("sdk", "client", "call", "spans", "provider"),
    params(platform_rows("openai"), "openai") + params(platform_rows("anthropic"), "anthropic"),
)
async def test_platform_clients_give_the_spans_the_docs_say(
    server: FakeLLMServer,
    captured: Captured,
    sdk_spans: InMemorySpanExporter,
    sdk: str,
    client: str,
    call: Call,
    spans: int,
    provider: str | None,
) -> None:
    instance, model, is_async = platform_client(client, server)
    await make_call(instance, with_model(call, model), is_async)
    where = f"docs/{PAGES[sdk]}: `{call.text}` on `{client}`"
    found = captured.llm_spans()
    assert len(found) == spans, f"{where}: {len(found)} llmwatch spans, the docs say {spans}"
    for span in found:
        assert (span.attributes or {})["gen_ai.provider.name"] == provider, where
        assert (span.attributes or {})["gen_ai.usage.input_tokens"] > 0, where
    assert sdk_spans.get_finished_spans() == ()  # a traced client's own SDK spans are off, in every case


BATCH_INPUT = "\n".join(
    json.dumps(
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": REQUESTS["chat.completions"]}
    )
    for i in range(2)
).encode()


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_the_batch_api_table_says_what_each_call_gives(
    server: FakeLLMServer, captured: Captured, sdk_spans: InMemorySpanExporter, flavour: str
) -> None:
    """The rows in the table's order, as a user makes them: submit, poll, read the output file."""
    client = first_party_client("openai", flavour, server)
    uploaded = await resolve(client.files.create(file=("requests.jsonl", BATCH_INPUT), purpose="batch"))
    known: dict[str, Any] = {"input_file_id": uploaded.id}
    arguments = {
        "batches.create": lambda: {
            "input_file_id": uploaded.id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
        "batches.retrieve": lambda: {"batch_id": known["batch_id"]},
        "files.content": lambda: {"file_id": known["output_file_id"]},
    }
    for call, row_flavour, spans in batch_rows_of("openai"):
        if row_flavour != flavour:
            continue
        before = len(captured.spans)
        result = await resolve(operator.attrgetter(call.path)(client)(**arguments[call.path]()))
        if call.path == "batches.create":
            known["batch_id"] = result.id
        elif call.path == "batches.retrieve":
            known["output_file_id"] = result.output_file_id
        new = captured.spans[before:]
        where = f"docs/openai.md, Batch API: `{call.text}` ({flavour})"
        if spans.startswith("1 per result"):
            assert len(new) == BATCH_INPUT.count(b"\n") + 1, where
            assert all((s.attributes or {})["llmwatch.cost.source"].endswith(", batch tier") for s in new), where
        else:
            assert len(new) == int(spans), f"{where}: {len(new)} spans, the docs say {spans}"
            assert all("gen_ai.operation.name" not in (s.attributes or {}) for s in new), where  # not LLM calls
    assert "output_file_id" in known, "the Batch API table must list create, retrieve and content, in that order"
    assert sdk_spans.get_finished_spans() == ()


@pytest.mark.parametrize(("sdk", "module"), [("openai", _openai), ("anthropic", _anthropic)])
def test_every_hooked_method_is_in_its_methods_covered_table(server: FakeLLMServer, sdk: str, module: Any) -> None:
    documented: set[tuple[type, str]] = set()
    batch_rows = [(call, flavour) for call, flavour, _ in batch_rows_of(sdk)]
    for call, flavour in call_rows(sdk, "Methods covered") + batch_rows:
        if any(wrapper in call.path for wrapper in WRAPPERS):
            continue
        owner, _, method = call.path.rpartition(".")
        documented.add(
            (type(operator.attrgetter(owner)(first_party_client(sdk, flavour, server, traced=False))), method)
        )
    for client_name, call, spans, _ in platform_rows(sdk):  # platform clients' own resource classes
        owner, _, method = call.path.rpartition(".")
        if spans and not any(wrapper in call.path for wrapper in WRAPPERS):
            documented.add((type(operator.attrgetter(owner)(platform_client(client_name, server)[0])), method))
    missing = []
    for module_name, class_name, method, _, _ in module.TARGETS:
        cls = getattr(importlib.import_module(module_name), class_name, None)
        if not isinstance(cls, type) or method not in cls.__dict__:
            continue  # not in this SDK version: nothing is hooked
        if not any(issubclass(owner, cls) and name == method for owner, name in documented):
            missing.append(f"{module_name}.{class_name}.{method}")
    assert missing == [], f"llmwatch hooks these, docs/{PAGES[sdk]} 'Methods covered' does not list them: {missing}"


# --- what the prose around the tables says ---------------------------------------------------------
@pytest.mark.parametrize(
    ("sdk", "derive"),
    [
        ("openai", "with_options"),
        ("openai", "copy"),
        ("anthropic", "with_options"),
        ("anthropic", "copy"),
        ("anthropic", "with_middleware"),
    ],
)
def test_a_client_derived_from_a_traced_one_is_traced(
    server: FakeLLMServer, captured: Captured, sdk: str, derive: str
) -> None:
    derived = getattr(first_party_client(sdk, "sync", server), derive)()
    if sdk == "openai":
        derived.chat.completions.create(**REQUESTS["chat.completions"])
    else:
        derived.messages.create(**CLAUDE)
    assert_one_priced_span(captured, f"{sdk} client.{derive}()")


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_raw_stream_outlives_its_raw_response(server: FakeLLMServer, captured: Captured, sdk: str) -> None:
    """``with_raw_response.create(stream=True).parse()`` in one expression: the raw response is gone at
    once, and the stream it handed the call to still ends it, whole."""
    client = first_party_client(sdk, "sync", server)
    if sdk == "openai":
        chunks = list(
            client.chat.completions.with_raw_response.create(**REQUESTS["chat.completions"], stream=True).parse()
        )
        assert all(chunk.choices for chunk in chunks)  # the usage chunk llmwatch asked for stays hidden
    else:
        list(client.messages.with_raw_response.create(**CLAUDE, stream=True).parse())
    assert_one_priced_span(captured, f"{sdk}: with_raw_response.create(stream=True).parse()")


def genai_prices_cost(attrs: dict[str, Any], model: str, provider_id: str) -> float:
    """What genai-prices itself charges for the span's usage at that provider."""
    import genai_prices

    usage = genai_prices.Usage(
        input_tokens=attrs["gen_ai.usage.input_tokens"], output_tokens=attrs["gen_ai.usage.output_tokens"]
    )
    return float(genai_prices.calc_price(usage, model, provider_id=provider_id).total_price)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    "bedrock_id", ["anthropic.claude-haiku-4-5-20251001-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0"]
)
def test_bedrock_model_ids_and_inference_profiles_are_priced_as_their_model(
    server: FakeLLMServer, captured: Captured, bedrock_id: str, stream: bool
) -> None:
    client, _, _ = platform_client("anthropic.AnthropicBedrock", server)
    reply = client.messages.create(**{**CLAUDE, "model": bedrock_id}, stream=stream)  # answered with the id sent
    if stream:
        list(reply)
    (span,) = captured.llm_spans()
    attrs = dict(span.attributes or {})
    assert span.kind.name == "CLIENT"
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == bedrock_id
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["llmwatch.cost.usd"] == pytest.approx(genai_prices_cost(attrs, bedrock_id, "aws"), rel=1e-9)


@pytest.mark.parametrize(
    ("client_name", "model"),
    [
        ("openai.AzureOpenAI", "prod-chat"),
        ("anthropic.AnthropicBedrock", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("anthropic.AnthropicVertex", "claude-haiku-4-5@20251001"),
    ],
)
def test_platform_clients_are_refused_before_any_io(
    server: FakeLLMServer, captured: Captured, client_name: str, model: str
) -> None:
    client, _, _ = platform_client(client_name, server)
    llmwatch.kill_switch(model=model)
    sent = len(server.requests)
    with pytest.raises(llmwatch.FeatureDisabled):
        if client_name.startswith("openai"):
            client.chat.completions.create(**{**REQUESTS["chat.completions"], "model": model})
        else:
            client.messages.create(**{**CLAUDE, "model": model})
    assert len(server.requests) == sent  # nothing reached the provider
    (span,) = captured.llm_spans()
    assert (span.attributes or {})["error.type"] == "FeatureDisabled"


def test_vertex_model_ids_are_priced_at_vertex_rates(server: FakeLLMServer, captured: Captured) -> None:
    client, model, _ = platform_client("anthropic.AnthropicVertex", server)
    client.messages.create(**{**CLAUDE, "model": model})
    (span,) = captured.llm_spans()
    vertex = dict(span.attributes or {})
    assert vertex["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert vertex["gen_ai.response.model"] == model == "claude-haiku-4-5@20251001"
    assert vertex["llmwatch.cost.usd"] == pytest.approx(genai_prices_cost(vertex, model, "google"), rel=1e-9)


def test_azure_is_priced_by_the_model_its_response_names(server: FakeLLMServer, captured: Captured) -> None:
    for models in ({"prod-chat": "gpt-4o-mini"}, {}):  # the deployment's model, or a name the server echoes
        client, _, _ = platform_client("openai.AzureOpenAI", server, models=models)
        client.chat.completions.create(**{**REQUESTS["chat.completions"], "model": "prod-chat"})
    known, unknown = (dict(s.attributes or {}) for s in captured.llm_spans())
    assert known["gen_ai.provider.name"] == unknown["gen_ai.provider.name"] == "azure.ai.openai"
    assert known["gen_ai.request.model"] == unknown["gen_ai.request.model"] == "prod-chat"
    assert known["llmwatch.azure.deployment"] == unknown["llmwatch.azure.deployment"] == "prod-chat"
    model = known["gen_ai.response.model"]
    assert known["llmwatch.cost.usd"] == pytest.approx(genai_prices_cost(known, model, "azure"), rel=1e-9)
    assert known["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18" and known["llmwatch.cost.usd"] > 0
    assert unknown["llmwatch.cost.unknown_model"] is True and "llmwatch.cost.usd" not in unknown


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_llm_call_around_a_traced_call_counts_it_twice(server: FakeLLMServer, captured: Captured, sdk: str) -> None:
    """Why docs/manual.md says never to wrap a covered call in ``llm_call``: spans, cost, budget, all twice."""
    budget = llmwatch.budget(100, per="hour")
    client = first_party_client(sdk, "sync", server)
    with llmwatch.llm_call(provider=sdk, model="gpt-4o-mini" if sdk == "openai" else CLAUDE["model"]) as call:
        if sdk == "openai":
            reply = client.chat.completions.create(**REQUESTS["chat.completions"])
            text, usage = reply.choices[0].message.content, (reply.usage.prompt_tokens, reply.usage.completion_tokens)
        else:
            message = client.messages.create(**CLAUDE)
            text, usage = message.content[0].text, (message.usage.input_tokens, message.usage.output_tokens)
        call.set_output(text, input_tokens=usage[0], output_tokens=usage[1])
    inner, outer = (dict(s.attributes or {}) for s in captured.llm_spans())
    assert inner["llmwatch.cost.usd"] == outer["llmwatch.cost.usd"] > 0
    spent = 2 * inner["llmwatch.cost.usd"]
    assert llmwatch.stats()["budgets"]["global/hour"]["spent_usd"] == pytest.approx(spent)
    assert sum(point.value for point in captured.metrics()["llmwatch.cost"]) == pytest.approx(spent)
    budget.remove()
