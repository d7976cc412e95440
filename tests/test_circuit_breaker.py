"""Circuit breakers through the real SDKs against the loopback server, whose models can be made to fail.

A model returning 500s opens its circuit after ``min_calls``; the calls that follow reach no server
(counted at the server) and get ``CircuitOpen`` or the fallback's answer; after ``open_s`` a probe
against a healthy server closes it. Caller errors never open it; 429s, cut streams and timeouts do.
Half-open admits one probe at a time, across threads and asyncio tasks.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import llmwatch
from llmwatch import _health
from llmwatch._demo._server import FakeLLMServer
from llmwatch._policy import _budget, _outcomes
from llmwatch.testing import Captured

MESSAGES = [{"role": "user", "content": "hi"}]
OPEN_S = 0.4  # short enough for a test, long enough that a loaded machine cannot outrun it


@pytest.fixture()
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture()
def model() -> str:
    return f"gpt-4o-mini-{uuid.uuid4().hex[:6]}"  # a circuit of its own per test


def openai_client(server: FakeLLMServer, *, timeout: float = 10.0, is_async: bool = False) -> Any:
    import openai

    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    client = cls(api_key="sk-test-key-0123456789", base_url=server.openai_base_url, max_retries=0, timeout=timeout)
    return llmwatch.instrument(client, provider="openai")


def anthropic_client(server: FakeLLMServer) -> Any:
    import anthropic

    return llmwatch.instrument(
        anthropic.Anthropic(api_key="sk-ant-test-0123456789", base_url=server.anthropic_base_url, max_retries=0)
    )


def chat(client: Any, model: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=model, messages=MESSAGES, **kwargs)


def fail_n(client: Any, model: str, n: int, expected: type[BaseException] | tuple[type[BaseException], ...]) -> None:
    for _ in range(n):
        with pytest.raises(expected):
            chat(client, model)


def test_a_failing_model_opens_after_min_calls_then_calls_reach_no_server(
    fake: FakeLLMServer, model: str, captured: Captured
) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=5, failure_rate=0.5, window_s=30, open_s=30)
    client = openai_client(fake)
    fake.behave(model, "error-500")
    fail_n(client, model, 5, openai.InternalServerError)
    assert len(fake.requests_for(model)) == 5
    for _ in range(10):
        with pytest.raises(llmwatch.CircuitOpen) as refused:
            chat(client, model)
    assert len(fake.requests_for(model)) == 5  # refused before any I/O
    exc = refused.value
    assert exc.state == "open" and exc.model == model and exc.provider == "openai"
    assert exc.scope == f"model={model}" and exc.reopens_at is not None
    assert exc.request["model"] == model and exc.failure_rate == 1.0
    refused_span = captured.spans[-1]
    assert refused_span.attributes["llmwatch.circuit.state"] == "open"
    assert [e.attributes["llmwatch.refusal.reason"] for e in refused_span.events] == ["circuit_open"]
    assert "llmwatch.circuit.state" not in captured.spans[0].attributes  # closed: said by its absence
    state = llmwatch.stats()["circuits"][f"model={model}"]
    assert state["state"] == "open" and state["opened"] == 1 and state["model"] == model


def test_the_fallback_answers_and_its_own_call_to_another_model_is_traced(
    fake: FakeLLMServer, model: str, captured: Captured
) -> None:
    import openai

    client = openai_client(fake)
    backup = "gpt-4o"
    llmwatch.circuit_breaker(
        model=model,
        min_calls=3,
        open_s=30,
        fallback=lambda exc: client.chat.completions.create(**{**exc.request, "model": backup}),
    )
    fake.behave(model, "error-500")
    fail_n(client, model, 3, openai.InternalServerError)
    answer = chat(client, model)
    assert answer.model.startswith(backup)
    assert len(fake.requests_for(model)) == 3 and len(fake.requests_for(backup)) == 1
    refused, fallback = captured.spans[-1], captured.spans[-2]  # the fallback's call ends first
    assert refused.attributes["llmwatch.circuit.fallback"] is True
    assert fallback.attributes["gen_ai.request.model"] == backup
    assert fallback.attributes["llmwatch.cost.usd"] > 0  # traced and priced as usual


def test_a_fallback_to_another_provider_is_one_line_and_priced_as_that_provider(
    fake: FakeLLMServer, model: str, captured: Captured
) -> None:
    import openai

    client = openai_client(fake)
    groq = llmwatch.instrument(
        openai.OpenAI(api_key="gsk-test", base_url=fake.openai_base_url, max_retries=0), provider="groq"
    )
    llmwatch.circuit_breaker(
        provider="openai",
        min_calls=2,
        fallback=lambda exc: groq.chat.completions.create(**{**exc.request, "model": "llama-3.3-70b-versatile"}),
    )
    fake.behave(model, "error-500")
    fail_n(client, model, 2, openai.InternalServerError)
    answer = chat(client, model)
    assert answer.choices and len(fake.requests_for("llama-3.3-70b-versatile")) == 1
    fallback = captured.spans[-2]
    assert fallback.attributes["gen_ai.provider.name"] == "groq"
    assert fallback.attributes["llmwatch.cost.usd"] > 0


def test_an_async_fallback_is_awaited(fake: FakeLLMServer, model: str) -> None:
    import openai

    async def fallback(exc: llmwatch.CircuitOpen) -> str:
        await asyncio.sleep(0)
        return f"queued: {exc.scope}"

    llmwatch.circuit_breaker(model=model, min_calls=2, open_s=30, fallback=fallback)
    client = openai_client(fake, is_async=True)
    fake.behave(model, "error-500")

    async def run() -> Any:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model=model, messages=MESSAGES)
        return await client.chat.completions.create(model=model, messages=MESSAGES)

    assert asyncio.run(run()) == f"queued: model={model}"
    assert len(fake.requests_for(model)) == 2


def test_after_open_s_a_healthy_probe_closes_the_circuit(fake: FakeLLMServer, model: str, captured: Captured) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=3, open_s=OPEN_S)
    client = openai_client(fake)
    fake.behave(model, "error-500")
    fail_n(client, model, 3, openai.InternalServerError)
    with pytest.raises(llmwatch.CircuitOpen):
        chat(client, model)
    fake.behave(model)  # healthy again
    time.sleep(OPEN_S + 0.05)
    assert chat(client, model).choices  # the probe
    assert captured.spans[-1].attributes["llmwatch.circuit.state"] == "half_open"
    for _ in range(5):
        chat(client, model)
    assert len(fake.requests_for(model)) == 3 + 1 + 5
    assert llmwatch.stats()["circuits"][f"model={model}"]["state"] == "closed"


def test_a_failed_probe_opens_it_again_for_open_s(fake: FakeLLMServer, model: str) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=2, open_s=OPEN_S)
    client = openai_client(fake)
    fake.behave(model, "error-500")
    fail_n(client, model, 2, openai.InternalServerError)
    time.sleep(OPEN_S + 0.05)
    with pytest.raises(openai.InternalServerError):
        chat(client, model)  # the probe, still failing
    with pytest.raises(llmwatch.CircuitOpen) as refused:
        chat(client, model)
    assert refused.value.state == "open"
    assert len(fake.requests_for(model)) == 3
    assert llmwatch.stats()["circuits"][f"model={model}"]["transitions"] == {"open": 2, "half_open": 1}


@pytest.mark.parametrize("scenario", ["error-400"])
def test_caller_errors_never_open_it(fake: FakeLLMServer, model: str, scenario: str) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=3, failure_rate=0.1)
    client = openai_client(fake)
    fake.behave(model, scenario)
    fail_n(client, model, 30, openai.BadRequestError)
    assert len(fake.requests_for(model)) == 30
    assert llmwatch.stats()["circuits"][f"model={model}"]["calls"] == 0


def test_rate_limits_count_as_failures(fake: FakeLLMServer, model: str) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=4, failure_rate=0.5)
    client = openai_client(fake)
    fake.behave(model, "error-429")
    fail_n(client, model, 4, openai.RateLimitError)
    with pytest.raises(llmwatch.CircuitOpen):
        chat(client, model)


def test_below_the_failure_rate_it_stays_closed(fake: FakeLLMServer, model: str) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=4, failure_rate=0.5)
    client = openai_client(fake)
    for _ in range(10):
        chat(client, model)
    fake.behave(model, "error-500")
    fail_n(client, model, 9, openai.InternalServerError)  # 9 of 19: 47 %, closed
    assert llmwatch.stats()["circuits"][f"model={model}"]["state"] == "closed"
    fail_n(client, model, 1, openai.InternalServerError)  # 10 of 20: 50 %, opens
    with pytest.raises(llmwatch.CircuitOpen):
        chat(client, model)
    assert len(fake.requests_for(model)) == 20


def test_cut_streams_count_and_a_stream_closed_early_does_not(fake: FakeLLMServer, model: str) -> None:
    llmwatch.circuit_breaker(model=model, min_calls=3, failure_rate=0.5)
    client = openai_client(fake)
    for _ in range(5):  # the caller stops reading: the provider did nothing wrong
        stream = chat(client, model, stream=True)
        next(iter(stream))
        stream.close()
    assert llmwatch.stats()["circuits"][f"model={model}"]["calls"] == 0
    fake.behave(model, "cut-stream")
    for _ in range(3):
        with pytest.raises(Exception) as cut:  # httpx's RemoteProtocolError, as the SDK raises it
            for _chunk in chat(client, model, stream=True):
                pass
        assert _outcomes.outcome(cut.value) == _outcomes.FAILURE
    with pytest.raises(llmwatch.CircuitOpen):
        chat(client, model, stream=True)


def test_timeouts_of_a_slow_model_count(fake: FakeLLMServer, model: str) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=2)
    client = openai_client(fake, timeout=0.2)
    fake.behave(model, delay_s=1.0)
    fail_n(client, model, 2, openai.APITimeoutError)
    with pytest.raises(llmwatch.CircuitOpen):
        chat(client, model)


def test_anthropic_overloaded_errors_open_a_provider_breaker(fake: FakeLLMServer) -> None:
    import anthropic

    llmwatch.circuit_breaker(provider="anthropic", min_calls=3)
    client = anthropic_client(fake)
    model = "claude-haiku-4-5"
    fake.behave(model, "error-529")
    for _ in range(3):
        with pytest.raises(anthropic.APIStatusError):
            client.messages.create(model=model, max_tokens=10, messages=MESSAGES)
    with pytest.raises(llmwatch.CircuitOpen) as refused:
        client.messages.create(model=model, max_tokens=10, messages=MESSAGES)
    assert refused.value.scope == "provider=anthropic"
    assert len(fake.requests_for(model)) == 3


def test_per_value_breakers_keep_one_circuit_per_model(fake: FakeLLMServer, model: str) -> None:
    import openai

    healthy = model + "-healthy"
    llmwatch.circuit_breaker(model="*", min_calls=3)
    client = openai_client(fake)
    fake.behave(model, "error-500")
    fail_n(client, model, 3, openai.InternalServerError)
    with pytest.raises(llmwatch.CircuitOpen):
        chat(client, model)
    assert chat(client, healthy).choices
    circuits = llmwatch.stats()["circuits"]
    assert circuits[f"model={model}"]["state"] == "open"
    assert circuits[f"model={healthy}"]["state"] == "closed"


def test_half_open_lets_one_probe_through_at_a_time_across_threads(fake: FakeLLMServer, model: str) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=2, open_s=OPEN_S)
    client = openai_client(fake)
    fake.behave(model, "error-500")
    fail_n(client, model, 2, openai.InternalServerError)
    fake.behave(model, delay_s=0.5)  # healthy but slow: the probe is still in flight while the others try
    time.sleep(OPEN_S + 0.05)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        try:
            chat(client, model)
            result = "ok"
        except llmwatch.CircuitOpen as exc:
            result = exc.state
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["half_open"] * 7 + ["ok"]
    assert len(fake.requests_for(model)) == 3


def test_half_open_lets_one_probe_through_at_a_time_across_tasks(fake: FakeLLMServer, model: str) -> None:
    import openai

    llmwatch.circuit_breaker(model=model, min_calls=2, open_s=OPEN_S)
    client = openai_client(fake, is_async=True)
    fake.behave(model, "error-500")

    async def one() -> str:
        try:
            await client.chat.completions.create(model=model, messages=MESSAGES)
            return "ok"
        except llmwatch.CircuitOpen as exc:
            return exc.state
        except openai.InternalServerError:
            return "failed"

    async def run() -> list[str]:
        assert [await one(), await one()] == ["failed", "failed"]
        fake.behave(model, delay_s=0.5)
        await asyncio.sleep(OPEN_S + 0.05)
        return list(await asyncio.gather(*(one() for _ in range(8))))

    assert sorted(asyncio.run(run())) == ["half_open"] * 7 + ["ok"]
    assert len(fake.requests_for(model)) == 3


def test_a_breaker_set_again_keeps_its_state_and_remove_lifts_it(fake: FakeLLMServer, model: str) -> None:
    import openai

    first = llmwatch.circuit_breaker(model=model, min_calls=2, open_s=30)
    client = openai_client(fake)
    fake.behave(model, "error-500")
    fail_n(client, model, 2, openai.InternalServerError)
    again = llmwatch.circuit_breaker(model=model, min_calls=5, open_s=30)
    assert again is first
    with pytest.raises(llmwatch.CircuitOpen):
        chat(client, model)
    first.remove()
    fake.behave(model)
    assert chat(client, model).choices
    assert llmwatch.stats()["circuits"] == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_rate": 0}, "failure_rate must be a fraction"),
        ({"failure_rate": 1.5}, "failure_rate must be a fraction"),
        ({"min_calls": 0}, "min_calls must be a whole number"),
        ({"window_s": -1}, "window_s must be a number of seconds > 0"),
        ({"open_s": float("nan")}, "open_s must be a number of seconds > 0"),
        ({"model": ""}, "model must be a non-empty string"),
        ({"fallback": "gpt-4o"}, "fallback must be a callable"),
        ({"half_open_probes": 0}, "half_open_probes must be a whole number"),
    ],
)
def test_wrong_arguments_fail_fast_with_how_to_fix(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(llmwatch.ConfigurationError, match=message):
        llmwatch.circuit_breaker(**kwargs)


def test_a_fault_inside_the_breaker_never_reaches_the_call(
    fake: FakeLLMServer, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_health, "raise_internal_errors", False)
    breaker = llmwatch.circuit_breaker(model=model, min_calls=2)

    def broken(*args: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(type(breaker), "circuit_for", broken)
    client = openai_client(fake)
    before = llmwatch.stats()["internal_errors"]
    result = chat(client, model)
    assert result.choices and len(fake.requests_for(model)) == 1
    assert llmwatch.stats()["internal_errors"] == before + 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        *((status, "failure") for status in (500, 503, 529, 429, 408)),
        *((status, "ignored") for status in (400, 401, 403, 404, 422)),
    ],
)
def test_outcomes_by_status(status: int, expected: str) -> None:
    class StatusError(Exception):
        status_code = status

    assert _outcomes.outcome(StatusError()) == expected


def test_outcomes_by_kind() -> None:
    class ClientError(Exception):  # botocore's shape
        def __init__(self, code: str, status: int) -> None:
            self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}

    class APIStatusError(Exception):  # an Anthropic stream's error event: status 200, the type in the body
        status_code = 200

        def __init__(self) -> None:
            self.body = {"type": "error", "error": {"type": "overloaded_error"}}

    assert _outcomes.outcome(None) == "ok"
    assert _outcomes.outcome(None, stream_completed=False) == "ignored"
    assert _outcomes.outcome(TimeoutError()) == "failure"
    assert _outcomes.outcome(ConnectionResetError()) == "failure"
    assert _outcomes.outcome(asyncio.CancelledError()) == "ignored"
    assert _outcomes.outcome(ValueError("user code")) == "ignored"
    assert _outcomes.outcome(ClientError("ThrottlingException", 429)) == "failure"
    assert _outcomes.outcome(ClientError("ValidationException", 400)) == "ignored"
    assert _outcomes.outcome(ClientError("modelStreamErrorException", 200)) == "failure"
    assert _outcomes.outcome(APIStatusError()) == "failure"


def test_a_forked_child_gets_fresh_circuit_locks_and_keeps_the_parents_state(fake: FakeLLMServer, model: str) -> None:
    import os

    import openai

    llmwatch.circuit_breaker(model=model, min_calls=2, open_s=30)
    client = openai_client(fake)
    fake.behave(model, "error-500")
    fail_n(client, model, 2, openai.InternalServerError)
    circuit = _budget.RULES.breakers[0].circuits()[0]
    with circuit._lock:  # as if a thread of the parent held it at the fork
        pid = os.fork()
        if pid == 0:  # the child: the lock it inherited held is replaced, the open state kept
            try:
                refused = circuit.admit() is False
                circuit.record(_outcomes.OK, True, time.time())
                os._exit(0 if refused and circuit.state == "open" else 1)
            except BaseException:
                os._exit(2)
    deadline = time.monotonic() + 10
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the child deadlocked on the circuit's lock")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(waited[1]) == 0
