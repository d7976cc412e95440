"""The MCP bridge with the real SDK: a real stdio server subprocess and a streamable HTTP server.

The stdio server (``mcp_weather_server.py``) is instrumented by llmwatch in its own process and
exports its spans to a JSON Lines file the test reads back; its tool asks the loopback LLM server.
The HTTP server runs in this process (uvicorn in a thread), its spans captured with the client's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

mcp = pytest.importorskip("mcp")
pytest.importorskip("mcp.server.mcpserver")  # mcp 2.x (1.x: test_mcp_v1.py)

from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

import llmwatch  # noqa: E402
import llmwatch.testing  # noqa: E402
from llmwatch import _health  # noqa: E402
from llmwatch import _instrument as instrument  # noqa: E402
from llmwatch._demo._server import FakeLLMServer  # noqa: E402
from llmwatch._instrument import _frameworks, _mcp, _mcp_client, _mcp_context, _mcp_server  # noqa: E402
from llmwatch.testing import Captured  # noqa: E402

SCRIPT = Path(__file__).with_name("mcp_weather_server.py")
Session = Callable[[Any], Awaitable[Any]]


@pytest.fixture()
def bridge() -> Iterator[None]:
    """Global instrumentation as ``configure(instrument=True)`` turns it on: the SDKs and the bridges."""
    instrument.instrument_all()
    assert "_mcp" in _frameworks._installed
    yield
    llmwatch.uninstrument()


def _params(server: FakeLLMServer, spans: Path, *, traced: bool) -> StdioServerParameters:
    env = {
        "MCP_TEST_OPENAI_URL": server.openai_base_url,
        "MCP_TEST_LLMWATCH": "1" if traced else "0",
        "MCP_TEST_SPANS": str(spans),
        "TIKTOKEN_CACHE_DIR": os.environ["TIKTOKEN_CACHE_DIR"],
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        # The llmwatch under test, not whichever one the interpreter would find (an editable install elsewhere).
        "PYTHONPATH": str(Path(llmwatch.__file__).resolve().parents[1]),
    }
    return StdioServerParameters(command=sys.executable, args=[str(SCRIPT)], env=env)


async def _over_stdio(params: StdioServerParameters, work: Session) -> Any:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await work(session)


def _server_spans(path: Path, name: str, count: int = 1) -> list[dict[str, Any]]:
    """The subprocess's spans, once ``count`` spans named ``name`` are in (exported every 50 ms)."""
    deadline = time.monotonic() + 15.0
    while True:
        spans = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if len(_by_name(spans, name)) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def _by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


async def _weather(session: Any) -> Any:
    return await session.call_tool("get_weather", {"city": "Paris"})


def _hex(value: int) -> str:
    return format(value, "016x")


# --- stdio: a real server subprocess ------------------------------------------------------------


async def test_stdio_call_tool_continues_trace_and_attribution(
    tmp_path: Path, server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    server.clear()
    spans_file = tmp_path / "server.jsonl"
    with llmwatch.attributes(user="u-42", feature="forecast", session="s-7"):
        result = await _over_stdio(_params(server, spans_file, traced=True), _weather)
    assert result.is_error is False and result.content[0].text.startswith("Paris: ")

    (client,) = [s for s in captured.spans if s.name == "tools/call get_weather"]
    attrs = dict(client.attributes or {})
    assert client.kind.name == "CLIENT"
    assert attrs["mcp.method.name"] == "tools/call"
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["gen_ai.tool.name"] == "get_weather"
    assert attrs["mcp.protocol.version"]
    assert attrs["llmwatch.user"] == "u-42" and attrs["llmwatch.feature"] == "forecast"
    assert "gen_ai.tool.call.arguments" not in attrs and "gen_ai.tool.call.result" not in attrs  # content off

    spans = _server_spans(spans_file, "tools/call get_weather")
    (served,) = _by_name(spans, "tools/call get_weather")
    llm = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    # one trace; the server span's parent is the client span (mcp's own send span does not record
    # here: this process has no global tracer provider)
    assert served["kind"] == "SERVER"
    assert served["trace_id"] == format(client.context.trace_id, "032x")
    assert served["parent_span_id"] == _hex(client.context.span_id)
    assert served["attributes"]["gen_ai.tool.name"] == "get_weather"
    assert served["attributes"]["llmwatch.user"] == "u-42"
    assert served["attributes"]["llmwatch.feature"] == "forecast"
    assert served["attributes"]["llmwatch.session"] == "s-7"
    # the tool's LLM call: under the server span, the caller's user and feature, counted in the rollups
    assert len(llm) == 1 == len([r for r in server.requests if r.path.endswith("/chat/completions")])
    (call,) = llm
    assert call["parent_span_id"] == served["span_id"] and call["trace_id"] == served["trace_id"]
    assert call["attributes"]["llmwatch.user"] == "u-42"
    assert call["attributes"]["llmwatch.feature"] == "forecast"
    assert served["attributes"]["llmwatch.rollup.llm_calls"] == 1
    assert served["attributes"]["llmwatch.rollup.cost_usd"] == pytest.approx(call["attributes"]["llmwatch.cost.usd"])
    assert served["attributes"]["llmwatch.rollup.input_tokens"] == call["attributes"]["gen_ai.usage.input_tokens"]
    assert served["attributes"]["llmwatch.rollup.output_tokens"] == call["attributes"]["gen_ai.usage.output_tokens"]
    assert captured.llm_spans() == []  # the model call is the server's: no LLM span on this side


async def test_result_and_arguments_identical_with_and_without_llmwatch(
    tmp_path: Path, server: FakeLLMServer, captured: Captured
) -> None:
    payload = {"city": "Oslo", "nested": {"list": [1, 2.5, None, "x"], "flag": True}}
    sent = json.loads(json.dumps(payload))

    async def work(session: Any) -> Any:
        weather = await session.call_tool("get_weather", {"city": "Paris"})
        echoed = await session.call_tool("echo", {"payload": sent})
        return weather.model_dump(), echoed.model_dump()

    plain = await _over_stdio(_params(server, tmp_path / "a.jsonl", traced=False), work)
    instrument.instrument_all()
    try:
        traced = await _over_stdio(_params(server, tmp_path / "b.jsonl", traced=True), work)
    finally:
        llmwatch.uninstrument()
    assert traced == plain
    assert json.loads(traced[1]["content"][0]["text"]) == payload  # the tool got the arguments as sent
    assert sent == payload  # and the caller's dict was not touched


async def test_meta_carries_trace_context_and_attribution_beside_the_callers_own(
    tmp_path: Path, server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    async def work(session: Any) -> Any:
        mine = {"baggage": "app=1", "x-app": "keep"}
        result = await session.call_tool("request_meta", {}, meta=mine)
        assert mine == {"baggage": "app=1", "x-app": "keep"}  # the caller's dict is not modified
        return json.loads(result.content[0].text)

    with llmwatch.attributes(user="u 5", feature="maps", session="s-1"):
        meta = await _over_stdio(_params(server, tmp_path / "s.jsonl", traced=False), work)
    (client,) = [s for s in captured.spans if s.name == "tools/call request_meta"]
    assert meta["x-app"] == "keep"
    assert meta["traceparent"].startswith(f"00-{client.context.trace_id:032x}-{client.context.span_id:016x}-")
    entries = dict(item.split("=", 1) for item in meta["baggage"].split(","))
    assert entries == {"app": "1", "llmwatch.user": "u+5", "llmwatch.feature": "maps", "llmwatch.session": "s-1"}


async def test_uninstrumented_server_with_instrumented_client(
    tmp_path: Path, server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    with llmwatch.attributes(user="u-1"):
        result = await _over_stdio(_params(server, tmp_path / "none.jsonl", traced=False), _weather)
    assert result.is_error is False and result.content[0].text.startswith("Paris: ")
    # the SDK lists the tools itself to validate the result: that request is traced too, inside the call
    spans = {s.name: s for s in captured.spans}
    assert set(spans) == {"tools/call get_weather", "tools/list"}
    assert spans["tools/list"].parent.span_id == spans["tools/call get_weather"].context.span_id
    assert not (tmp_path / "none.jsonl").exists()


async def test_instrumented_server_with_uninstrumented_client(
    tmp_path: Path, server: FakeLLMServer, captured: Captured
) -> None:
    spans_file = tmp_path / "server.jsonl"
    with llmwatch.attributes(user="u-1"):
        result = await _over_stdio(_params(server, spans_file, traced=True), _weather)
    assert result.is_error is False
    assert captured.spans == []
    (served,) = _by_name(_server_spans(spans_file, "tools/call get_weather"), "tools/call get_weather")
    assert served["parent_span_id"] is None  # a trace of its own
    assert "llmwatch.user" not in served["attributes"]


MALFORMED: list[dict[str, Any]] = [
    {"traceparent": "00-not-a-trace-01", "baggage": "=;;,,llmwatch.user,llmwatch.feature=%"},
    {"traceparent": 7, "tracestate": ["x"], "baggage": {"llmwatch.user": "u"}},
    {"baggage": "llmwatch.user=" + "u" * 1000},
]


async def test_malformed_meta_is_ignored(tmp_path: Path, server: FakeLLMServer, captured: Captured) -> None:
    spans_file = tmp_path / "server.jsonl"

    async def work(session: Any) -> Any:
        return [await session.call_tool("get_weather", {"city": "Paris"}, meta=meta) for meta in MALFORMED]

    results = await _over_stdio(_params(server, spans_file, traced=True), work)
    for result in results:
        assert result.is_error is False and result.content[0].text.startswith("Paris: ")
    served = _by_name(_server_spans(spans_file, "tools/call get_weather", 3), "tools/call get_weather")
    assert len(served) == len(MALFORMED)
    for span in served:
        assert span["parent_span_id"] is None
    assert [len(s["attributes"].get("llmwatch.user", "")) for s in served] == [0, 0, 256]  # a peer's value is capped


async def test_list_tools_read_resource_and_a_failing_tool(
    tmp_path: Path, server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    spans_file = tmp_path / "server.jsonl"

    async def work(session: Any) -> Any:
        tools = await session.list_tools()
        resource = await session.read_resource("weather://cities")
        failed = await session.call_tool("broken", {"city": "Atlantis"})
        return tools, resource, failed

    tools, resource, failed = await _over_stdio(_params(server, spans_file, traced=True), work)
    assert {t.name for t in tools.tools} == {"get_weather", "echo", "broken", "request_meta"}
    assert resource.contents[0].text == "Paris,Oslo"
    assert failed.is_error is True
    client = {s.name: s for s in captured.spans}
    assert set(client) == {"tools/list", "resources/read", "tools/call broken"}
    assert client["tools/list"].attributes["mcp.method.name"] == "tools/list"
    assert "gen_ai.operation.name" not in client["tools/list"].attributes
    assert client["resources/read"].attributes["mcp.resource.uri"] == "weather://cities"
    assert client["tools/call broken"].attributes["error.type"] == "tool_error"
    assert client["tools/call broken"].status.status_code.name == "ERROR"
    served = {s["name"]: s for s in _server_spans(spans_file, "tools/call broken")}
    for name, span in client.items():
        assert served[name]["parent_span_id"] == _hex(span.context.span_id)
    assert served["tools/call broken"]["attributes"]["error.type"] == "tool_error"


# --- streamable HTTP: the server in this process ------------------------------------------------


class _HttpServer:
    """``MCPServer`` over streamable HTTP on a free port, run by uvicorn in a thread."""

    def __init__(self, llm: FakeLLMServer, middleware: Any = None) -> None:
        import openai
        import uvicorn
        from mcp.server.mcpserver import MCPServer

        app = MCPServer("weather-http")
        if middleware is not None:
            app.middleware.append(middleware)
        client = openai.AsyncOpenAI(api_key="sk-test-key-0123456789", base_url=llm.openai_base_url, max_retries=0)
        sync_client = openai.OpenAI(api_key="sk-test-key-0123456789", base_url=llm.openai_base_url, max_retries=0)

        @app.tool()
        def get_weather_sync(city: str) -> str:  # a sync tool: the SDK runs it in a worker thread
            reply = sync_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"Weather in {city}?"}]
            )
            return f"{city}: {reply.choices[0].message.content}"

        @app.tool()
        async def get_weather(city: str) -> str:
            reply = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"Weather in {city}?"}]
            )
            return f"{city}: {reply.choices[0].message.content}"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(app.streamable_http_app(), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> _HttpServer:
        self.thread.start()
        deadline = time.monotonic() + 10.0
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10.0)


async def _over_http(url: str, work: Session) -> Any:
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await work(session)


async def test_streamable_http_client_and_server_share_the_trace(
    server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    server.clear()
    with _HttpServer(server) as http, llmwatch.attributes(user="u-http", feature="forecast-http"):
        result = await _over_http(http.url, _weather)
        # the attribution came through _meta, not through this thread's context: the server runs in
        # uvicorn's thread, whose context never saw llmwatch.attributes
    assert result.content[0].text.startswith("Paris: ")
    spans = captured.spans
    (client,) = [s for s in spans if s.name == "tools/call get_weather" and s.kind.name == "CLIENT"]
    (served,) = [s for s in spans if s.name == "tools/call get_weather" and s.kind.name == "SERVER"]
    (llm,) = captured.llm_spans()
    assert len([r for r in server.requests if r.path.endswith("/chat/completions")]) == 1
    assert served.context.trace_id == client.context.trace_id == llm.context.trace_id
    assert served.parent is not None and served.parent.span_id == client.context.span_id
    assert llm.parent is not None and llm.parent.span_id == served.context.span_id
    assert served.attributes["network.transport"] == "tcp"
    assert served.attributes["mcp.session.id"] and served.attributes["mcp.protocol.version"]
    assert served.attributes["gen_ai.operation.name"] == "execute_tool"
    assert served.attributes["jsonrpc.request.id"]
    for span in (served, llm):
        assert span.attributes["llmwatch.user"] == "u-http"
        assert span.attributes["llmwatch.feature"] == "forecast-http"
    assert served.attributes["llmwatch.rollup.llm_calls"] == 1
    assert served.attributes["llmwatch.rollup.cost_usd"] == pytest.approx(llm.attributes["llmwatch.cost.usd"])


async def test_streamable_http_sync_tool_is_attributed_too(
    server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    async def work(session: Any) -> Any:
        return await session.call_tool("get_weather_sync", {"city": "Oslo"})

    with _HttpServer(server) as http, llmwatch.attributes(user="u-sync", feature="f-sync"):
        result = await _over_http(http.url, work)
    assert result.content[0].text.startswith("Oslo: ")
    (served,) = [s for s in captured.spans if s.kind.name == "SERVER" and s.name == "tools/call get_weather_sync"]
    (llm,) = captured.llm_spans()
    assert llm.parent is not None and llm.parent.span_id == served.context.span_id
    assert llm.attributes["llmwatch.user"] == "u-sync" and llm.attributes["llmwatch.feature"] == "f-sync"


async def drop_caller_attribution(ctx: Any, call_next: Any) -> Any:
    """docs/mcp.md's "Trust" example, verbatim."""
    meta = (ctx.params or {}).get("_meta")
    if isinstance(meta, dict) and "baggage" in meta:
        params = {**ctx.params, "_meta": {k: v for k, v in meta.items() if k != "baggage"}}
        ctx = dataclasses.replace(ctx, params=params)
    return await call_next(ctx)


async def test_a_middleware_can_drop_the_callers_attribution(
    server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    with _HttpServer(server, middleware=drop_caller_attribution) as http, llmwatch.attributes(user="claimed"):
        await _over_http(http.url, _weather)
    (served,) = [s for s in captured.spans if s.kind.name == "SERVER" and s.name == "tools/call get_weather"]
    (llm,) = captured.llm_spans()
    assert "llmwatch.user" not in served.attributes and "llmwatch.user" not in llm.attributes
    assert llm.context.trace_id == served.context.trace_id  # the trace context still came through


async def test_inside_an_observed_tool_span_no_second_span(
    server: FakeLLMServer, captured: Captured, bridge: None
) -> None:
    @llmwatch.observe(kind="tool", name="get_weather")
    async def tool(session: Any) -> Any:
        return await _weather(session)

    with _HttpServer(server) as http:
        await _over_http(http.url, tool)
    client = [s for s in captured.spans if s.kind.name == "CLIENT" and s.name.startswith("tools/call")]
    assert client == []  # no tools/call span of ours: the MCP attributes are on the app's tool span
    (outer,) = [s for s in captured.spans if s.name == "execute_tool get_weather"]
    assert outer.attributes["mcp.method.name"] == "tools/call"
    (served,) = [s for s in captured.spans if s.kind.name == "SERVER" and s.name == "tools/call get_weather"]
    assert served.parent is not None and served.parent.span_id == outer.context.span_id


async def test_content_capture_records_arguments_and_result(
    server: FakeLLMServer, captured_content: Captured, bridge: None
) -> None:
    with _HttpServer(server) as http:
        result = await _over_http(http.url, _weather)
    for kind in ("CLIENT", "SERVER"):
        (span,) = [s for s in captured_content.spans if s.kind.name == kind and s.name == "tools/call get_weather"]
        assert json.loads(span.attributes["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
        recorded = json.loads(span.attributes["gen_ai.tool.call.result"])
        assert recorded["content"][0]["text"] == result.content[0].text


async def test_openinference_kinds(server: FakeLLMServer, bridge: None) -> None:
    with llmwatch.testing.capture(backend_compat=["openinference"], capture_content=True) as cap:
        with _HttpServer(server) as http:
            await _over_http(http.url, _weather)
        spans = {(s.kind.name, s.name): s for s in cap.spans}
    for kind in ("CLIENT", "SERVER"):
        attrs = spans[(kind, "tools/call get_weather")].attributes
        assert attrs["openinference.span.kind"] == "TOOL" and attrs["tool.name"] == "get_weather"
        assert json.loads(attrs["input.value"]) == {"city": "Paris"} and "output.value" in attrs
    assert spans[("CLIENT", "tools/list")].attributes["openinference.span.kind"] == "CHAIN"


async def test_client_fault_is_counted_and_the_call_unchanged(
    server: FakeLLMServer, captured: Captured, bridge: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    with _HttpServer(server) as http:
        expected = (await _over_http(http.url, _weather)).model_dump()
        monkeypatch.setattr(_health, "raise_internal_errors", False)
        monkeypatch.setattr(_mcp_context, "outgoing_meta", boom)  # after the span: traced, sent as written
        before = llmwatch.stats()["internal_errors"]
        assert (await _over_http(http.url, _weather)).model_dump() == expected
        middle = llmwatch.stats()["internal_errors"]
        assert middle > before  # the call, and the SDK's own tools/list inside it
        monkeypatch.setattr(_mcp_client, "_arguments", boom)  # before the span: the call goes untraced
        assert (await _over_http(http.url, _weather)).model_dump() == expected
        assert llmwatch.stats()["internal_errors"] > middle


async def test_streamable_http_server_fault_is_counted_and_the_call_unchanged(
    server: FakeLLMServer, captured: Captured, bridge: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _HttpServer(server) as http:
        expected = (await _over_http(http.url, _weather)).model_dump()
        monkeypatch.setattr(_health, "raise_internal_errors", False)

        def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("injected")

        monkeypatch.setattr(_mcp_server, "_attributes", boom)
        before = llmwatch.stats()["internal_errors"]
        result = await _over_http(http.url, _weather)
    assert result.model_dump() == expected
    assert llmwatch.stats()["internal_errors"] > before  # each inbound request of the session counted


# --- the parts ----------------------------------------------------------------------------------


def test_meta_round_trip_and_garbage() -> None:
    from opentelemetry import context as otel_context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    from llmwatch._attribution import Attribution

    span = NonRecordingSpan(SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(1)))
    context = _mcp_context.with_attribution(set_span_in_context(span), Attribution(user="ü ser,=", feature="f"))
    mine = {"progressToken": 3, "baggage": "app=1"}
    meta = _mcp_context.outgoing_meta(mine, _mcp_context.with_meta_baggage(context, mine))
    assert meta["progressToken"] == 3 and "app=1" in meta["baggage"].split(",")
    carrier = _mcp_context.raw_meta({"_meta": meta})
    assert _mcp_context.caller_fields(carrier) == {"user": "ü ser,=", "feature": "f"}
    remote = _mcp_context.incoming_context(carrier)
    assert remote is not None
    from opentelemetry.trace import get_current_span

    assert get_current_span(remote).get_span_context().span_id == 0x5678
    for garbage in (None, [], {"_meta": "x"}, {"_meta": {"traceparent": "junk", 1: 2}}):
        carrier = _mcp_context.raw_meta(garbage)
        assert _mcp_context.incoming_context(carrier) is None
        assert _mcp_context.caller_fields(carrier) == {}
    assert otel_context.get_current() is not None


def test_install_is_idempotent_and_uninstall_restores() -> None:
    from mcp.client.session import ClientSession as Session
    from mcp.server.runner import ServerRunner

    originals = {name: Session.__dict__[name] for name in _mcp_client.METHODS}
    compose = ServerRunner.__dict__["_compose_server_middleware"]
    _mcp.install(mcp)
    _mcp.install(mcp)
    assert Session.__dict__["call_tool"].__llmwatch_original__ is originals["call_tool"]
    assert ServerRunner.__dict__["_compose_server_middleware"].__llmwatch_original__ is compose
    _mcp.uninstall()
    assert {name: Session.__dict__[name] for name in _mcp_client.METHODS} == originals
    assert ServerRunner.__dict__["_compose_server_middleware"] is compose
