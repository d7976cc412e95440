"""Budgets, fallbacks and the kill switch, through the real SDKs against the loopback server.

Every way of calling (OpenAI create and stream, Anthropic create, stream and the stream helper,
``llm_call``), sync and async: a refused call raises before any request reaches the server, the call
that crosses the limit completes, costs are counted when calls (and streams) end, and a fallback
answer replaces the provider call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import threading
import time
from typing import Any

import pytest

import llmwatch
from llmwatch._demo._server import FakeLLMServer
from llmwatch._policy import _budget
from llmwatch.testing import Captured

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"
KINDS = ["openai", "openai-stream", "anthropic", "anthropic-stream", "anthropic-helper", "llm_call"]
TINY = 1e-9  # any real call crosses it


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Caller:
    """One way of calling, sync or async, returning what the user got (streams drained)."""

    def __init__(self, kind: str, flavour: str, clients: dict[str, Any]) -> None:
        self.kind = kind
        self.is_async = flavour == "async"
        self.clients = clients

    @property
    def model(self) -> str:
        return ANTHROPIC_MODEL if self.kind.startswith("anthropic") else OPENAI_MODEL

    async def __call__(self) -> Any:
        client = self.clients[("async_" if self.is_async else "") + self.kind.split("-")[0]]
        if self.kind == "llm_call":
            return await self._manual()
        if self.kind.startswith("openai"):
            stream = self.kind.endswith("stream")
            result = await resolve(
                client.chat.completions.create(
                    model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], stream=stream
                )
            )
            return await self._drain(result) if stream and self._is_stream(result) else result
        kwargs = {"model": ANTHROPIC_MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
        if self.kind == "anthropic-helper":
            return await self._helper(client, kwargs)
        stream = self.kind.endswith("stream")
        result = await resolve(client.messages.create(stream=stream, **kwargs))
        return await self._drain(result) if stream and self._is_stream(result) else result

    def _is_stream(self, result: Any) -> bool:  # a fallback answer replaces the stream
        return hasattr(result, "__aiter__" if self.is_async else "__next__")

    async def _drain(self, stream: Any) -> list[Any]:
        return [item async for item in stream] if self.is_async else list(stream)

    async def _helper(self, client: Any, kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            async with client.messages.stream(**kwargs) as stream:
                return await stream.get_final_message()
        with client.messages.stream(**kwargs) as stream:
            return stream.get_final_message()

    async def _manual(self) -> Any:
        def record(call: Any) -> Any:
            if call.fallback is not None:
                return call.fallback
            call.set_input("hi")
            call.set_output("hello", input_tokens=1000, output_tokens=500)
            return "made"

        manual = llmwatch.llm_call(provider="openai", model=OPENAI_MODEL)
        if self.is_async:
            async with manual as call:
                return record(call)
        with manual as call:
            return record(call)


@pytest.fixture()
def clients(
    openai_client: Any, async_openai_client: Any, anthropic_client: Any, async_anthropic_client: Any
) -> dict[str, Any]:
    return {
        "openai": openai_client,
        "async_openai": async_openai_client,
        "anthropic": anthropic_client,
        "async_anthropic": async_anthropic_client,
        "llm_call": None,
        "async_llm_call": None,
    }


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def caller(request: pytest.FixtureRequest, kind: str, clients: dict[str, Any]) -> Caller:
    return Caller(kind, request.param, clients)


def sent(server: FakeLLMServer) -> int:
    return len(server.requests)


def costs(captured: Captured) -> list[float]:
    return [s.attributes.get("llmwatch.cost.usd", 0.0) for s in captured.llm_spans()]


# --- raise ------------------------------------------------------------------------------------------
async def test_the_crossing_call_completes_and_the_next_is_refused_before_any_request(
    caller: Caller, server: FakeLLMServer, captured: Captured
) -> None:
    llmwatch.budget(TINY, per="day", feature="search")
    with llmwatch.attributes(feature="search"):
        await caller()  # spent 0 < limit: goes ahead and crosses the limit
        before = sent(server)
        with pytest.raises(llmwatch.BudgetExceeded) as refused:
            await caller()
    assert sent(server) == before  # nothing reached the provider
    error = refused.value
    assert error.scope == "feature=search" and error.window == "day"
    assert error.limit_usd == TINY and error.spent_usd == pytest.approx(costs(captured)[0], abs=1e-12)
    assert error.resets_at == dt.datetime.fromtimestamp(_budget.window_end("day", _now()), tz=dt.UTC)
    crossing, refused_span = captured.llm_spans()
    assert crossing.attributes["llmwatch.budget.exceeded"] is True  # the call that took it to the limit
    assert refused_span.attributes["error.type"] == "BudgetExceeded"
    assert refused_span.attributes["llmwatch.budget.exceeded"] is True
    assert "llmwatch.cost.usd" not in refused_span.attributes
    (event,) = [e for e in refused_span.events if e.name == "llmwatch.call.refused"]
    assert event.attributes == {"llmwatch.refusal.reason": "budget", "llmwatch.budget.scope": "feature=search"}
    assert llmwatch.stats()["calls_refused"] == 1


async def test_calls_outside_the_scope_are_not_counted_or_refused(caller: Caller, captured: Captured) -> None:
    llmwatch.budget(TINY, feature="search")
    with llmwatch.attributes(feature="other"):
        await caller()
        await caller()
    assert llmwatch.stats()["budgets"]["feature=search/day"]["spent_usd"] == 0


async def test_stream_costs_count_when_the_stream_ends(server: FakeLLMServer, openai_client: Any) -> None:
    budget = llmwatch.budget(1.0, per="hour")
    stream = openai_client.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert llmwatch.stats()["budgets"]["global/hour"]["spent_usd"] == 0  # not yet: nothing ended
    list(stream)
    assert llmwatch.stats()["budgets"]["global/hour"]["spent_usd"] > 0
    budget.remove()
    assert llmwatch.stats()["budgets"] == {}


# --- warn -------------------------------------------------------------------------------------------
async def test_warn_lets_calls_through_marks_them_and_logs_once_per_window(
    caller: Caller, captured: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    llmwatch.budget(TINY, user="u1", on_exceed="warn")
    with caplog.at_level(logging.WARNING, logger="llmwatch"), llmwatch.attributes(user="u1"):
        for _ in range(3):
            await caller()
    spans = captured.llm_spans()
    assert [s.attributes.get("llmwatch.budget.exceeded", False) for s in spans] == [True, True, True]
    assert all("error.type" not in s.attributes for s in spans)
    assert len([r for r in caplog.records if "budget exceeded for user=u1" in r.getMessage()]) == 1


# --- fallbacks --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "anthropic-helper"])
async def test_a_fallback_answer_replaces_the_provider_call(
    caller: Caller, server: FakeLLMServer, captured: Captured
) -> None:
    answer = object()
    seen: list[llmwatch.BudgetExceeded] = []

    def cheaper(exc: llmwatch.BudgetExceeded) -> object:
        seen.append(exc)
        return answer

    llmwatch.budget(TINY, model=caller.model, on_exceed=cheaper)
    await caller()
    before = sent(server)
    assert await caller() is answer
    assert sent(server) == before
    assert seen[0].scope == f"model={caller.model}"
    assert (seen[0].provider, seen[0].model) == (caller.kind.split("-")[0].replace("llm_call", "openai"), caller.model)
    if caller.kind != "llm_call":  # the SDK call's own arguments: enough to ask a cheaper model instead
        assert seen[0].request["messages"] == [{"role": "user", "content": "hi"}]
    fallback_span = captured.llm_spans()[-1]
    assert fallback_span.attributes["llmwatch.budget.fallback"] is True
    assert "error.type" not in fallback_span.attributes


async def test_an_async_fallback_is_awaited_for_async_callers(async_openai_client: Any) -> None:
    async def cheaper(exc: llmwatch.BudgetExceeded) -> str:
        await asyncio.sleep(0)
        return "cheap answer"

    llmwatch.budget(TINY, on_exceed=cheaper)
    ask = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    await async_openai_client.chat.completions.create(**ask)
    assert await async_openai_client.chat.completions.create(**ask) == "cheap answer"


async def test_a_fallback_returning_none_lets_the_call_go_ahead_marked(caller: Caller, captured: Captured) -> None:
    llmwatch.budget(TINY, on_exceed=lambda exc: None)
    await caller()
    result = await caller()
    assert result is not None
    span = captured.llm_spans()[-1]
    assert span.attributes["llmwatch.budget.exceeded"] is True
    assert "error.type" not in span.attributes


async def test_an_exception_from_the_fallback_reaches_the_caller(caller: Caller, captured: Captured) -> None:
    class Nope(Exception):
        pass

    def refuse(exc: llmwatch.BudgetExceeded) -> None:
        raise Nope("no budget left")

    llmwatch.budget(TINY, on_exceed=refuse)
    await caller()
    with pytest.raises(Nope, match="no budget left"):
        await caller()
    assert captured.llm_spans()[-1].attributes["error.type"] == "Nope"


# --- scopes and windows -----------------------------------------------------------------------------
def manual_call(user: str | None = None, feature: str | None = None, cost_tokens: int = 1000) -> None:
    with llmwatch.attributes(user=user, feature=feature), llmwatch.llm_call(provider="openai", model=OPENAI_MODEL) as c:
        c.set_output("x", input_tokens=cost_tokens, output_tokens=0)


def test_each_user_has_their_own_ceiling(captured: Captured) -> None:
    llmwatch.budget(TINY, user="*")
    manual_call(user="a")
    manual_call(user="b")  # b's own window: not refused because a spent
    with pytest.raises(llmwatch.BudgetExceeded) as refused:
        manual_call(user="a")
    assert refused.value.scope == "user=a"
    manual_call()  # no user: a per-user budget does not apply
    assert set(llmwatch.stats()["budgets"]) == {"user=a/day", "user=b/day"}


def test_setting_the_same_scope_again_raises_the_limit_and_keeps_the_spending(captured: Captured) -> None:
    llmwatch.budget(TINY, feature="f")
    manual_call(feature="f")
    with pytest.raises(llmwatch.BudgetExceeded):
        manual_call(feature="f")
    llmwatch.budget(10.0, feature="f")  # the runbook's "raise the budget"
    manual_call(feature="f")
    state = llmwatch.stats()["budgets"]["feature=f/day"]
    assert state["limit_usd"] == 10.0 and state["spent_usd"] == pytest.approx(2 * 1000 * 0.15 / 1e6)


def test_the_window_rolls_over_at_the_utc_boundary(monkeypatch: pytest.MonkeyPatch, captured: Captured) -> None:
    start = dt.datetime(2026, 12, 1, 10, 59, 59, tzinfo=dt.UTC).timestamp()
    monkeypatch.setattr(_budget.time, "time", lambda: start)
    llmwatch.budget(TINY, per="hour")
    manual_call()
    with pytest.raises(llmwatch.BudgetExceeded) as refused:
        manual_call()
    assert refused.value.resets_at == dt.datetime(2026, 12, 1, 11, 0, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(_budget.time, "time", lambda: start + 1)
    manual_call()  # a new hour: spent starts again from zero


@pytest.mark.parametrize(
    ("per", "now", "expected"),
    [
        ("hour", dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)),
        ("day", dt.datetime(2026, 2, 28, 5, 0, tzinfo=dt.UTC), dt.datetime(2026, 3, 1, tzinfo=dt.UTC)),
        ("month", dt.datetime(2026, 12, 15, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)),
        ("month", dt.datetime(2026, 1, 31, 23, 59, tzinfo=dt.UTC), dt.datetime(2026, 2, 1, tzinfo=dt.UTC)),
    ],
)
def test_window_ends(per: str, now: dt.datetime, expected: dt.datetime) -> None:
    assert _budget.window_end(per, now.timestamp()) == expected.timestamp()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit_usd": -1}, "limit_usd must be >= 0"),
        ({"limit_usd": float("nan")}, "finite number"),
        ({"limit_usd": "5"}, "finite number"),
        ({"limit_usd": 5, "per": "week"}, "per must be one of"),
        ({"limit_usd": 5, "on_exceed": "explode"}, "on_exceed must be"),
        ({"limit_usd": 5, "user": ""}, "user must be a non-empty string"),
    ],
)
def test_bad_budget_arguments_fail_fast(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        llmwatch.budget(**kwargs)


def test_eight_threads_sum_exactly(captured: Captured) -> None:
    calls_per_thread = 10_000
    llmwatch.budget(1_000.0, per="month", feature="load")
    manual_call(feature="probe")  # one call's cost, to compute the exact expected total
    one = captured.llm_spans()[0].attributes["llmwatch.cost.usd"]
    captured.clear()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(calls_per_thread):
            manual_call(feature="load")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = llmwatch.stats()["budgets"]["feature=load/month"]["spent_usd"]
    assert spent == round(one * 1e12) * 8 * calls_per_thread / 1e12  # exact: integer picodollars
    assert len(captured.llm_spans()) == 8 * calls_per_thread


# --- kill switch ------------------------------------------------------------------------------------
async def test_kill_switch_refuses_a_feature_before_any_request(
    caller: Caller, server: FakeLLMServer, captured: Captured
) -> None:
    llmwatch.kill_switch(feature="search")
    before = sent(server)
    with llmwatch.attributes(feature="search"), pytest.raises(llmwatch.FeatureDisabled) as refused:
        await caller()
    assert sent(server) == before
    assert refused.value.scope == "feature=search" and refused.value.feature == "search"
    span = captured.llm_spans()[0]
    assert span.attributes["error.type"] == "FeatureDisabled"
    (event,) = span.events
    assert event.attributes == {"llmwatch.refusal.reason": "kill_switch", "llmwatch.budget.scope": "feature=search"}
    points = captured.metrics()["llmwatch.calls.refused"]
    assert [(p.value, p.attributes["llmwatch.refusal.reason"]) for p in points] == [(1, "kill_switch")]
    assert "gen_ai.client.operation.duration" not in captured.metrics()  # nothing was sent: no duration
    llmwatch.kill_switch(feature="search", enabled=False)
    with llmwatch.attributes(feature="search"):
        await caller()


def test_kill_switch_by_model_with_a_prefix(captured: Captured) -> None:
    llmwatch.kill_switch(model="gpt-4o*")
    with pytest.raises(llmwatch.FeatureDisabled, match="model=gpt-4o-mini"):
        manual_call()
    with llmwatch.llm_call(provider="openai", model="gpt-3.5-turbo"):
        pass
    assert llmwatch.stats()["kill_switches"] == {"features": [], "models": ["gpt-4o*"]}


def test_kill_switch_from_the_environment(monkeypatch: pytest.MonkeyPatch, captured: Captured) -> None:
    monkeypatch.setenv("LLMWATCH_DISABLED_FEATURES", "search, chat")
    manual_call(feature="search")  # not read yet: set after configure/import
    llmwatch.kill_switch()  # re-reads the environment
    with pytest.raises(llmwatch.FeatureDisabled):
        manual_call(feature="chat")
    llmwatch.kill_switch(feature="chat", enabled=False)  # lifting wins over the environment
    manual_call(feature="chat")
    with pytest.raises(llmwatch.FeatureDisabled):
        manual_call(feature="search")


def test_configure_reads_the_disabled_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMWATCH_DISABLED_MODELS", OPENAI_MODEL)
    llmwatch.configure(exporter="none", instrument=False)
    try:
        with pytest.raises(llmwatch.FeatureDisabled):
            manual_call()
    finally:
        llmwatch.shutdown(timeout_s=5)


# --- metrics ----------------------------------------------------------------------------------------
def test_budget_gauges_and_error_counter(captured: Captured) -> None:
    llmwatch.budget(0.5, per="day", feature="f")
    manual_call(feature="f")
    with pytest.raises(RuntimeError), llmwatch.llm_call(provider="openai", model=OPENAI_MODEL):
        raise RuntimeError("provider down")
    metrics = captured.metrics()
    (spent,) = metrics["llmwatch.budget.spent"]
    (limit,) = metrics["llmwatch.budget.limit"]
    scope = {"llmwatch.budget.scope": "feature=f", "llmwatch.budget.window": "day"}
    assert dict(spent.attributes) == dict(limit.attributes) == scope
    assert spent.value == pytest.approx(1000 * 0.15 / 1e6) and limit.value == 0.5
    (errors,) = metrics["llmwatch.errors"]
    assert errors.value == 1 and errors.attributes["error.type"] == "RuntimeError"


def _now() -> float:
    return _budget.time.time()


def test_metrics_are_recorded_off_the_callers_thread_and_none_are_lost(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmwatch._export import _metrics

    for _ in range(_metrics._DRAIN_AT + 10):  # past the threshold: the background drainer records them
        manual_call(feature="bulk")
    deadline = time.monotonic() + 10
    while _metrics._PENDING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _metrics._PENDING
    (duration,) = captured.metrics()["gen_ai.client.operation.duration"]
    assert duration.count == _metrics._DRAIN_AT + 10

    monkeypatch.setattr(_metrics, "_MAX_PENDING", 0)  # a drainer that cannot keep up: drop and count
    manual_call(feature="bulk")
    assert llmwatch.stats()["metrics_dropped"] == 1
