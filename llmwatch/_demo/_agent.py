"""The demo's agent: a trip planner that calls tools in a loop, traced with plain ``@observe(kind=...)``.

No agent framework: an ``invoke_agent`` span around a loop of OpenAI chat calls that ask for tools
(the loopback server's ``agent`` scenario answers with a tool call until a tool result is in, then
with the final answer), each tool an ``execute_tool`` span. Its runs show in ``llmwatch report``'s
by-run and by-agent tables, each run's cost rolled up on its root span. One "research" agent is a
runaway that would loop forever: a ``budget(per="run")`` stops each of its runs at its ceiling.
"""

from __future__ import annotations

import json
from typing import Any

import llmwatch

AGENT_MODEL = "gpt-4o-mini"
RUNAWAY_BUDGET_USD = 0.00005  # per run: stops the research agent after about five calls
AGENT_USERS = ("u-alice", "u-bob", "u-carol")
_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    for name, description in (("get_weather", "The forecast for a city"), ("find_hotels", "Hotels in a city"))
]


@llmwatch.observe(kind="tool", name="get_weather")
def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "forecast": "sunny", "high_c": 24}


@llmwatch.observe(kind="tool", name="find_hotels")
def find_hotels(city: str) -> list[dict[str, Any]]:
    return [{"name": f"Hotel {city} Centre", "usd_per_night": 180}]


TOOLS = {"get_weather": get_weather, "find_hotels": find_hotels}


@llmwatch.observe(kind="agent", name="trip-planner")
def plan_trip(client: Any, city: str, max_turns: int = 4) -> str:
    """Ask the model, run the tools it asks for, until it answers (at most ``max_turns`` model calls)."""
    messages: list[Any] = [{"role": "user", "content": f"Plan a weekend in {city}"}]
    for _ in range(max_turns):
        reply = client.chat.completions.create(
            model=AGENT_MODEL, messages=messages, tools=_TOOLS, extra_headers={"x-fake-scenario": "agent"}
        )
        message = reply.choices[0].message
        if not message.tool_calls:
            return str(message.content)
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            result = TOOLS[call.function.name](**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    return "(no answer within the turn limit)"


@llmwatch.observe(kind="agent", name="researcher")
def research(client: Any, topic: str) -> int:
    """A runaway agent: it never decides it is done. The per-run budget is what stops it."""
    calls = 0
    try:
        while calls < 50:
            client.chat.completions.create(
                model=AGENT_MODEL, messages=[{"role": "user", "content": f"More on {topic}"}]
            )
            calls += 1
    except llmwatch.BudgetExceeded:
        pass  # the run reached its ceiling: the next call was refused before it was sent
    return calls


def run_agents(client: Any) -> int:
    """Three trip-planner runs and two capped research runs; returns the model calls the research runs made."""
    budget = llmwatch.budget(RUNAWAY_BUDGET_USD, per="run", feature="research")
    try:
        for user, city in zip(AGENT_USERS, ("Lisbon", "Kyoto", "Oslo"), strict=True):
            with llmwatch.attributes(user=user, feature="trip-agent", session=f"s-{user}-trip"):
                plan_trip(client, city)
        made = 0
        for topic in ("batteries", "tides"):
            with llmwatch.attributes(user="u-dave", feature="research"):
                made += research(client, topic)
        return made
    finally:
        budget.remove()
