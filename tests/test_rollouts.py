"""Canary rollouts through the real SDKs against the loopback server, and the sequential test behind them.

A sticky share of users gets the challenger's overrides; a challenger failing 40 % of its calls or
5x slower is rolled back after ``min_calls``; an equally good one is not (its false alarms, over
many seeded runs, at most alpha); scores and cost count per arm; the arm shows on spans and metrics.
"""

from __future__ import annotations

import collections
import json
import math
import random
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import llmwatch
from llmwatch import _health
from llmwatch._demo._server import FakeLLMServer
from llmwatch._policy import _rollout_guard, _rollouts, _sequential
from llmwatch.testing import Captured

MESSAGES = [{"role": "user", "content": "hi"}]
CHAMPION = "gpt-4o-mini"


@pytest.fixture()
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture()
def client(fake: FakeLLMServer) -> Any:
    return llmwatch.instrument(
        openai.OpenAI(api_key="sk-test-key-0123456789", base_url=fake.openai_base_url, max_retries=0),
        provider="openai",
    )


@pytest.fixture()
def challenger() -> str:
    return f"gpt-4o-{uuid.uuid4().hex[:6]}"


def call_as(client: Any, user: str | None, feature: str = "chat") -> str:
    """One call as ``user``; what happened: ok or the error class."""
    with llmwatch.attributes(user=user, feature=feature):
        try:
            client.chat.completions.create(model=CHAMPION, messages=MESSAGES)
            return "ok"
        except openai.APIError as exc:
            return type(exc).__name__


def test_a_20_percent_canary_sends_a_sticky_20_percent_of_users(
    client: Any, fake: FakeLLMServer, challenger: str, captured: Captured
) -> None:
    llmwatch.rollout("canary-share", challenger={"model": challenger}, share=0.2, feature="chat")
    users = [f"user-{i}" for i in range(600)]
    for user in users:
        call_as(client, user)
    arm_of = {span.attributes["llmwatch.user"]: span.attributes["llmwatch.rollout.arm"] for span in captured.spans}
    share = sum(arm == "challenger" for arm in arm_of.values()) / len(users)
    assert abs(share - 0.2) < 4 * math.sqrt(0.2 * 0.8 / len(users)), share  # within 4 sigma
    assert len(fake.requests_for(challenger)) == sum(arm == "challenger" for arm in arm_of.values())
    captured.clear()
    for user in users[:100]:  # sticky: the same users land in the same arms again
        call_as(client, user)
    assert all(
        span.attributes["llmwatch.rollout.arm"] == arm_of[span.attributes["llmwatch.user"]] for span in captured.spans
    )
    span = next(s for s in captured.spans if s.attributes["llmwatch.rollout.arm"] == "challenger")
    assert span.attributes["gen_ai.request.model"] == challenger
    assert span.attributes["llmwatch.rollout.name"] == "canary-share"


def test_the_share_is_stable_across_processes_and_grows_without_moving_users() -> None:
    units = {user: _rollouts.unit_of("r", user) for user in ("a", "b", "c")}
    # blake2b of "r\\0a": the same in every process and release (no PYTHONHASHSEED dependence)
    assert units == {user: _rollouts.unit_of("r", user) for user in units}
    rollout = llmwatch.rollout("grow", challenger={"model": "x"}, share=0.05)
    users = [f"u{i}" for i in range(5000)]
    at_5 = {u for u in users if rollout.arm_for(u) == "challenger"}
    rollout.set_share(0.25)
    at_25 = {u for u in users if rollout.arm_for(u) == "challenger"}
    assert at_5 <= at_25 and abs(len(at_25) / len(users) - 0.25) < 0.03
    rollout.set_share(0)
    assert not any(rollout.arm_for(u) == "challenger" for u in users)


def test_calls_outside_the_feature_and_embeddings_are_not_in_the_rollout(
    client: Any, fake: FakeLLMServer, challenger: str, captured: Captured
) -> None:
    llmwatch.rollout("scoped", challenger={"model": challenger}, share=1.0, feature="chat")
    call_as(client, "u1", feature="search")
    with llmwatch.attributes(user="u1", feature="chat"):
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert not fake.requests_for(challenger)
    assert all("llmwatch.rollout.name" not in span.attributes for span in captured.spans)


def test_a_challenger_failing_40_percent_is_rolled_back_after_min_calls(
    client: Any, fake: FakeLLMServer, challenger: str, captured: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    reports: list[dict[str, Any]] = []
    rollout = llmwatch.rollout(
        "failing", challenger={"model": challenger}, share=0.5, feature="chat", min_calls=60, on_rollback=reports.append
    )
    fake.behave(challenger, "error-500", share=0.4, seed=1)
    for i in range(400):
        call_as(client, f"u{i}")
        if rollout.state != "running":
            break
    assert rollout.state == "rolled_back" and rollout.share == 0.0
    report = rollout.report()
    assert report["arms"]["challenger"]["calls"] >= 60 and report["arms"]["champion"]["calls"] >= 60
    assert report["evidence"]["error_rate"]["verdict"] == "worse"
    assert reports and reports[0]["state"] == "rolled_back"
    assert "rolled back" in caplog.text
    events = [e for span in captured.spans for e in span.events if e.name == "llmwatch.rollout.rollback"]
    assert len(events) == 1
    evidence = json.loads(str(events[0].attributes["llmwatch.rollout.evidence"]))
    assert evidence["evidence"]["error_rate"]["verdict"] == "worse"
    before = len(fake.requests_for(challenger))
    for i in range(50):  # rolled back: everybody gets the champion
        call_as(client, f"u{i}")
    assert len(fake.requests_for(challenger)) == before
    assert llmwatch.stats()["rollouts"]["failing"]["state"] == "rolled_back"


def test_a_5x_slower_challenger_is_rolled_back(client: Any, fake: FakeLLMServer, challenger: str) -> None:
    rollout = llmwatch.rollout(
        "slow",
        challenger={"model": challenger},
        share=0.5,
        feature="chat",
        min_calls=30,
        guard={"p95_latency_ratio": 1.5},
    )
    fake.behave(CHAMPION, delay_s=0.004)
    fake.behave(challenger, delay_s=0.02)
    for i in range(300):
        call_as(client, f"u{i}")
        if rollout.state != "running":
            break
    assert rollout.state == "rolled_back", rollout.report()
    figures = rollout.report()["arms"]
    assert figures["challenger"]["p95_s"] > 3 * figures["champion"]["p95_s"]


def test_an_equally_good_challenger_is_not_rolled_back(client: Any, fake: FakeLLMServer, challenger: str) -> None:
    rollout = llmwatch.rollout("equal", challenger={"model": challenger}, share=0.5, feature="chat", min_calls=50)
    fake.behave(CHAMPION, "error-500", share=0.05, seed=2)
    fake.behave(challenger, "error-500", share=0.05, seed=3)
    for i in range(400):
        call_as(client, f"u{i}")
    assert rollout.state == "running", rollout.report()


def test_equal_arms_raise_false_alarms_at_most_alpha_over_seeded_runs() -> None:
    """The sequential test is looked at after every call: its false alarms stay under alpha anyway."""
    alpha, runs, calls = 0.05, 200, 600
    alarms = 0
    for seed in range(runs):
        draw = random.Random(seed)
        arms = {arm: _rollout_guard.ArmStats() for arm in _rollout_guard.ARMS}
        for _ in range(calls):
            for stats in arms.values():  # both arms alike: 5 % errors, log-normal latency, noisy cost
                failed = draw.random() < 0.05
                stats.add_call(failed, math.exp(draw.gauss(0.0, 0.5)), 0.001 * draw.uniform(0.5, 1.5))
            challenger, champion = arms["challenger"], arms["champion"]
            if challenger.calls < 100:
                continue
            decisions = _rollout_guard.decide(
                challenger, champion, {"error_rate": 0.0, "p95_latency_ratio": 1.0, "cost_per_call_ratio": 1.0}, alpha
            )
            if _rollout_guard.verdict(decisions, {}) == _sequential.WORSE:
                alarms += 1
                break
    assert alarms / runs <= alpha, alarms / runs  # bounds of 0 and ratio 1: the strictest guard


def test_the_sequential_test_detects_what_a_guard_bounds() -> None:
    draw = random.Random(7)
    worse, base = _sequential.Moments(), _sequential.Moments()
    for _ in range(200):
        worse.add(1.0 if draw.random() < 0.4 else 0.0)
        base.add(1.0 if draw.random() < 0.02 else 0.0)
    assert _sequential.compare(worse, base, bound=0.02, alpha=0.05).verdict == _sequential.WORSE
    assert _sequential.compare(base, base, bound=0.02, alpha=0.05).verdict != _sequential.WORSE


def test_a_lower_score_rolls_the_challenger_back(client: Any, challenger: str) -> None:
    rollout = llmwatch.rollout(
        "scored",
        challenger={"model": challenger},
        share=0.5,
        feature="chat",
        min_calls=20,
        guard={"score:helpful": -0.1},
    )
    for i in range(200):
        with llmwatch.attributes(user=f"u{i}", feature="chat"):
            reply = client.chat.completions.create(model=CHAMPION, messages=MESSAGES)
        llmwatch.score(reply, "helpful", 0.3 if reply.model.startswith(challenger) else 0.9)
        if rollout.state != "running":
            break
    assert rollout.state == "rolled_back"
    assert rollout.report()["arms"]["challenger"]["scores"]["helpful"] == pytest.approx(0.3)


def test_auto_promote_makes_a_not_worse_challenger_every_calls(
    client: Any, fake: FakeLLMServer, challenger: str
) -> None:
    rollout = llmwatch.rollout(
        "promote",
        challenger={"model": challenger},
        share=0.5,
        feature="chat",
        min_calls=40,
        guard={"error_rate": 0.1},
        auto_promote=True,
    )
    for i in range(400):
        call_as(client, f"u{i}")
        if rollout.state != "running":
            break
    assert rollout.state == "promoted", rollout.report()
    before = len(fake.requests_for(challenger))
    for i in range(20):
        call_as(client, f"new-{i}")
    assert len(fake.requests_for(challenger)) == before + 20


def test_rollout_arm_tells_code_its_arm_and_calls_without_a_user_follow_it(
    client: Any, fake: FakeLLMServer, challenger: str
) -> None:
    llmwatch.rollout("prompt-v2", challenger={"model": challenger}, share=0.5, feature="chat")
    seen = collections.Counter()
    for _ in range(60):
        with llmwatch.attributes(feature="chat"):
            arm = llmwatch.rollout_arm("prompt-v2")
            before = len(fake.requests_for(challenger))
            client.chat.completions.create(model=CHAMPION, messages=MESSAGES)
            assert (len(fake.requests_for(challenger)) > before) == (arm == "challenger")
        seen[arm] += 1
    assert seen["challenger"] and seen["champion"]
    with llmwatch.attributes(user="u-7"):
        assert llmwatch.rollout_arm("prompt-v2") == llmwatch.rollout_arm("prompt-v2")
    assert llmwatch.rollout_arm("no-such-rollout") == "champion"


def test_anthropic_calls_take_the_overrides_too(fake: FakeLLMServer) -> None:
    import anthropic

    client = llmwatch.instrument(
        anthropic.Anthropic(api_key="sk-ant-test-0123456789", base_url=fake.anthropic_base_url, max_retries=0)
    )
    llmwatch.rollout("claude", challenger={"model": "claude-sonnet-4-5", "max_tokens": 77}, share=1.0)
    client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    body = fake.requests[-1].body
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == 77


def test_stop_ends_it_and_the_report_stays(client: Any, fake: FakeLLMServer, challenger: str) -> None:
    rollout = llmwatch.rollout("stopped", challenger={"model": challenger}, share=1.0, feature="chat")
    call_as(client, "u1")
    rollout.stop()
    call_as(client, "u1")
    assert len(fake.requests_for(challenger)) == 1
    assert llmwatch.stats()["rollouts"]["stopped"]["state"] == "stopped"
    assert llmwatch.rollout("stopped", challenger={"model": challenger}) is not rollout  # the name is free again


def test_the_arm_is_on_the_metrics(fake: FakeLLMServer, challenger: str) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    llmwatch.configure(exporter="none", meter_provider=MeterProvider(metric_readers=[reader]), instrument=False)
    try:
        client = llmwatch.instrument(openai.OpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0))
        llmwatch.rollout("metrics", challenger={"model": challenger}, share=0.5)
        for i in range(20):
            call_as(client, f"u{i}")
        data = reader.get_metrics_data()
        arms = {
            point.attributes.get("llmwatch.rollout.arm")
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "gen_ai.client.operation.duration"
            for point in metric.data.data_points
        }
        assert arms == {"champion", "challenger"}
        rollbacks = [
            (point.attributes, point.value)
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "llmwatch.rollout.rollbacks"
            for point in metric.data.data_points
        ]
        assert rollbacks == [({"llmwatch.rollout.name": "metrics"}, 0)]
    finally:
        llmwatch.shutdown(timeout_s=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "challenger": {"model": "x"}}, "name must be a non-empty string"),
        ({"name": "r", "challenger": ["model"]}, "challenger must be a dict"),
        ({"name": "r", "challenger": {"model": "x"}, "share": 1.5}, "share must be a fraction"),
        ({"name": "r", "challenger": {"model": "x"}, "mode": "blue-green"}, "mode must be 'canary' or 'shadow'"),
        ({"name": "r", "challenger": {"model": "x"}, "guard": {"latency": 2}}, "unknown bound 'latency'"),
        ({"name": "r", "challenger": {"model": "x"}, "guard": {"p95_latency_ratio": 0.5}}, "is a ratio >= 1"),
        ({"name": "r", "challenger": {"model": "x"}, "min_calls": 1}, "min_calls must be"),
        ({"name": "r", "challenger": {"model": "x"}, "alpha": 0.9}, "alpha must be"),
    ],
)
def test_wrong_arguments_fail_fast_with_how_to_fix(kwargs: dict[str, Any], message: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(llmwatch.ConfigurationError, match=message):
        llmwatch.rollout(name, **kwargs)


def test_a_fault_inside_the_rollout_never_reaches_the_call(
    client: Any, fake: FakeLLMServer, challenger: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_health, "raise_internal_errors", False)
    rollout = llmwatch.rollout("broken", challenger={"model": challenger}, share=1.0, feature="chat")

    def broken(*args: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(type(rollout), "arm_for", broken)
    assert call_as(client, "u1") == "ok"
    assert len(fake.requests_for(CHAMPION)) == 1  # sent as written
    monkeypatch.undo()
    monkeypatch.setattr(_health, "raise_internal_errors", False)
    monkeypatch.setattr(type(rollout), "record", broken)
    assert call_as(client, "u1") == "ok"


def wait_until(predicate: Any, timeout_s: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_shadow_mode_answers_from_the_champion_and_shadows_the_share(
    client: Any, fake: FakeLLMServer, captured: Captured
) -> None:
    challenger = "gpt-4o"  # priced, as the champion: both costs count
    llmwatch.budget(1000.0, feature="chat")
    llmwatch.rollout("shadow", challenger={"model": challenger}, share=1.0, feature="chat", mode="shadow")
    fake.behave(challenger, delay_s=0.3)  # a slow challenger: the caller must not wait for it
    import time

    started = time.monotonic()
    with llmwatch.attributes(user="u1", feature="chat"):
        reply = client.chat.completions.create(model=CHAMPION, messages=MESSAGES, stream=True)
        chunks = list(reply)
    assert time.monotonic() - started < 0.3  # answered before the shadow could have been
    assert chunks and all(chunk.model.startswith(CHAMPION) for chunk in chunks if chunk.model)
    wait_until(lambda: len(captured.spans) == 2)
    champion, shadow = sorted(captured.spans, key=lambda span: span.attributes.get("llmwatch.rollout.shadow", False))
    assert champion.attributes["llmwatch.rollout.arm"] == "champion" and champion.attributes["llmwatch.stream"]
    assert (
        shadow.attributes["llmwatch.rollout.shadow"] is True
        and shadow.attributes["llmwatch.rollout.arm"] == "challenger"
    )
    assert shadow.attributes["gen_ai.request.model"] == challenger and not shadow.attributes.get("llmwatch.stream")
    assert [link.context.span_id for link in shadow.links] == [champion.context.span_id]
    assert fake.requests_for(challenger)[0].body.get("stream") is None  # shadowed as non-streaming
    spent = llmwatch.stats()["budgets"]["feature=chat/day"]["spent_usd"]
    both = champion.attributes["llmwatch.cost.usd"] + shadow.attributes["llmwatch.cost.usd"]
    assert spent == pytest.approx(both)  # both arms' costs counted and budgeted
    figures = llmwatch.stats()["rollouts"]["shadow"]["arms"]
    assert figures["champion"]["calls"] == 1 and figures["challenger"]["calls"] == 1


def test_async_shadow_calls_run_on_the_callers_loop(fake: FakeLLMServer, challenger: str, captured: Captured) -> None:
    import asyncio

    client = llmwatch.instrument(
        openai.AsyncOpenAI(api_key="sk-test", base_url=fake.openai_base_url, max_retries=0), provider="openai"
    )
    llmwatch.rollout("async-shadow", challenger={"model": challenger}, share=1.0, mode="shadow")

    async def run() -> Any:
        with llmwatch.attributes(user="u1"):
            reply = await client.chat.completions.create(model=CHAMPION, messages=MESSAGES)
        for _ in range(500):  # let the shadow task finish on this loop
            if len(captured.spans) == 2:
                break
            await asyncio.sleep(0.01)
        return reply

    reply = asyncio.run(run())
    assert reply.model.startswith(CHAMPION)
    assert len(fake.requests_for(challenger)) == 1
    assert sum(bool(span.attributes.get("llmwatch.rollout.shadow")) for span in captured.spans) == 1


def test_shadow_calls_beyond_the_bound_are_dropped_and_counted(
    client: Any, fake: FakeLLMServer, challenger: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmwatch._instrument import _shadow

    monkeypatch.setattr(_shadow, "MAX_IN_FLIGHT", 2)
    llmwatch.rollout("bounded", challenger={"model": challenger}, share=1.0, mode="shadow")
    fake.behave(challenger, delay_s=0.5)
    for i in range(6):
        call_as(client, f"u{i}")
    assert llmwatch.stats()["rollouts"]["bounded"]["shadow_dropped"] == 4
    wait_until(lambda: _shadow.POOL.in_flight == 0)
    assert len(fake.requests_for(challenger)) == 2
