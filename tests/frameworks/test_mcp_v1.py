"""The MCP bridge with mcp 1.x (``FastMCP``; skipped with mcp 2.x, which CI installs): a stdio server
subprocess instrumented by llmwatch continues the client's trace and attribution."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp.server.fastmcp")  # mcp 2.x: the module raises ModuleNotFoundError

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

import llmwatch
from llmwatch import _instrument as instrument
from llmwatch._demo._server import FakeLLMServer
from llmwatch.testing import Captured

SCRIPT = Path(__file__).with_name("mcp_weather_server_v1.py")


def _params(server: FakeLLMServer, spans: Path, *, traced: bool) -> StdioServerParameters:
    env = {
        "MCP_TEST_OPENAI_URL": server.openai_base_url,
        "MCP_TEST_LLMWATCH": "1" if traced else "0",
        "MCP_TEST_SPANS": str(spans),
        "TIKTOKEN_CACHE_DIR": os.environ["TIKTOKEN_CACHE_DIR"],
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    return StdioServerParameters(command=sys.executable, args=[str(SCRIPT)], env=env)


async def _calls(params: StdioServerParameters, metas: list[Any]) -> list[Any]:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()
        return [(await session.call_tool("get_weather", {"city": "Paris"}, meta=meta)).model_dump() for meta in metas]


def _server_spans(path: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15.0
    while True:
        spans = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if len([s for s in spans if s["name"] == "tools/call get_weather"]) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


async def test_v1_server_continues_the_trace_and_attribution(
    tmp_path: Path, server: FakeLLMServer, captured: Captured
) -> None:
    malformed = {"traceparent": "junk", "baggage": "=;,"}
    plain = await _calls(_params(server, tmp_path / "plain.jsonl", traced=False), [None, malformed])
    instrument.instrument_all()
    try:
        with llmwatch.attributes(user="u-v1", feature="f-v1"):
            traced = await _calls(_params(server, tmp_path / "s.jsonl", traced=True), [None, malformed])
    finally:
        llmwatch.uninstrument()
    assert traced == plain
    client = [s for s in captured.spans if s.name == "tools/call get_weather"]
    assert len(client) == 2 and {s.name for s in captured.spans} >= {"tools/list"}
    spans = _server_spans(tmp_path / "s.jsonl", 2)
    served = [s for s in spans if s["name"] == "tools/call get_weather"]
    llm = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(served) == 2 and len(llm) == 2
    for span, call in zip(served, client, strict=True):  # a malformed meta of the caller's is replaced by ours
        assert span["kind"] == "SERVER"
        assert span["trace_id"] == format(call.context.trace_id, "032x")
        assert span["parent_span_id"] == format(call.context.span_id, "016x")
        assert span["attributes"]["llmwatch.user"] == "u-v1"
    for call in llm:
        assert call["parent_span_id"] in {s["span_id"] for s in served}
        assert call["attributes"]["llmwatch.user"] == "u-v1" and call["attributes"]["llmwatch.feature"] == "f-v1"
    (listed,) = [s for s in spans if s["name"] == "tools/list"]
    assert listed["parent_span_id"] is not None
