"""A small MCP server for tests/frameworks/test_mcp.py, run as a real subprocess (stdio or HTTP).

Its ``get_weather`` tool asks the loopback LLM server (an OpenAI chat completion) and answers with
the reply. Environment: ``MCP_TEST_OPENAI_URL`` (the loopback server's OpenAI base URL),
``MCP_TEST_LLMWATCH=1`` to instrument it with llmwatch, spans then exported to the JSON Lines file
``MCP_TEST_SPANS``. ``python mcp_weather_server.py [stdio | http PORT]``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

if os.environ.get("MCP_TEST_LLMWATCH") == "1":
    import llmwatch

    llmwatch.configure(
        exporter="file", file_path=os.environ["MCP_TEST_SPANS"], service_name="mcp-weather", instrument=True
    )

import openai
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("weather")
client = openai.AsyncOpenAI(api_key="sk-test-key-0123456789", base_url=os.environ["MCP_TEST_OPENAI_URL"], max_retries=0)


@app.tool()
async def get_weather(city: str, days: int = 1) -> str:
    """The weather in a city, as the model says it."""
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"Weather in {city} for {days} days?"}]
    )
    return f"{city}: {reply.choices[0].message.content}"


@app.tool()
def echo(payload: dict[str, Any]) -> str:
    """The arguments as the tool received them (a sync tool: it runs in a worker thread)."""
    return json.dumps(payload, sort_keys=True)


@app.tool()
def broken(city: str) -> str:
    """Always fails (the SDK answers with a CallToolResult whose isError is true)."""
    raise ValueError(f"no station in {city}")


@app.tool()
def request_meta(ctx: Context) -> str:
    """The request's ``params._meta`` as this server received it."""
    meta = (ctx.request_context.params or {}).get("_meta") or {}
    return json.dumps(dict(meta), sort_keys=True)


@app.resource("weather://cities")
def cities() -> str:
    return "Paris,Oslo"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
    if os.environ.get("MCP_TEST_LLMWATCH") == "1":
        llmwatch.shutdown()
