"""``mcp_weather_server.py`` for mcp 1.x (``FastMCP``), for tests/frameworks/test_mcp_v1.py."""

from __future__ import annotations

import os

if os.environ.get("MCP_TEST_LLMWATCH") == "1":
    import llmwatch

    llmwatch.configure(
        exporter="file", file_path=os.environ["MCP_TEST_SPANS"], service_name="mcp-weather-v1", instrument=True
    )

import openai
from mcp.server.fastmcp import FastMCP

app = FastMCP("weather")
client = openai.AsyncOpenAI(api_key="sk-test-key-0123456789", base_url=os.environ["MCP_TEST_OPENAI_URL"], max_retries=0)


@app.tool()
async def get_weather(city: str) -> str:
    """The weather in a city, as the model says it."""
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"Weather in {city}?"}]
    )
    return f"{city}: {reply.choices[0].message.content}"


if __name__ == "__main__":
    app.run()
    if os.environ.get("MCP_TEST_LLMWATCH") == "1":
        llmwatch.shutdown()
