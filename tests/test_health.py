"""``llmwatch.health()`` under each failure, and ``health_app()`` answering for it over WSGI and ASGI.

Real parts: the exporter fails against a real OTLP receiver answering 503, circuits open against the
loopback LLM server, budgets are spent by real calls; the endpoint runs in wsgiref and uvicorn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

import llmwatch
from llmwatch._demo._server import FakeLLMServer
from llmwatch._policy import _pricing, _tokens
from tests.otlp_receiver import HttpReceiver, Mode
from tests.test_health_app import Served, serve_asgi, serve_wsgi

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture()
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture()
def model() -> str:
    return f"gpt-4o-mini-{uuid.uuid4().hex[:6]}"


@pytest.fixture()
def client(fake: FakeLLMServer) -> Any:
    return llmwatch.instrument(
        openai.OpenAI(api_key="sk-test-key-0123456789", base_url=fake.openai_base_url, max_retries=0),
        provider="openai",
    )


@pytest.fixture(params=["wsgi", "asgi"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    app = llmwatch.health_app()
    served: Served = serve_wsgi(app) if request.param == "wsgi" else serve_asgi(app)[0]
    try:
        yield served.url + "/healthz"
    finally:
        served.stop()


def check(name: str) -> dict[str, Any]:
    result = llmwatch.health()
    return dict(result["checks"][name])


def test_a_fresh_process_is_ok_and_lists_every_check() -> None:
    result = llmwatch.health()
    assert result["status"] == "ok", result
    assert set(result["checks"]) == {"exporter", "store", "circuits", "budgets", "prices", "encodings", "providers"}
    assert all(entry["reason"] for entry in result["checks"].values())


def wait_for(name: str, status: str, timeout_s: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (found := check(name))["status"] != status:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def test_a_failing_exporter_is_503_with_the_reason_then_200_once_it_recovers(
    endpoint: str, client: Any, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # the exporter's retries give up within a second
    with HttpReceiver() as receiver:
        receiver.mode = Mode.UNAVAILABLE
        llmwatch.configure(exporter="otlp", endpoint=receiver.endpoint, protocol="http/protobuf", instrument=False)
        try:
            client.chat.completions.create(model=model, messages=MESSAGES)
            wait_for("exporter", "failing")
            answer = httpx.get(endpoint)
            assert answer.status_code == 503, answer.text
            exporter = answer.json()["checks"]["exporter"]
            assert exporter["status"] == "failing" and "span export is failing" in exporter["reason"]
            assert exporter["spans_dropped"] >= 1

            receiver.mode = Mode.HEALTHY
            client.chat.completions.create(model=model, messages=MESSAGES)
            wait_for("exporter", "degraded")
            answer = httpx.get(endpoint)
            assert answer.status_code == 200, answer.text  # degraded (a failure 5 min ago) is still 200
            assert answer.json()["checks"]["exporter"]["status"] == "degraded"
            assert httpx.get(endpoint, params={"strict": "1"}).status_code == 503
        finally:
            llmwatch.shutdown(timeout_s=2)


def test_an_open_circuit_is_503_with_the_reason_then_200_once_it_closes(
    endpoint: str, client: Any, fake: FakeLLMServer, model: str
) -> None:
    llmwatch.circuit_breaker(model=model, min_calls=2, open_s=0.4)
    fake.behave(model, "error-500")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model=model, messages=MESSAGES)
    answer = httpx.get(endpoint)
    assert answer.status_code == 503
    circuits = answer.json()["checks"]["circuits"]
    assert circuits["status"] == "failing" and f"model={model} open until" in circuits["reason"]
    fake.behave(model)
    time.sleep(0.45)
    assert httpx.get(endpoint).json()["checks"]["circuits"]["status"] == "degraded"  # half-open: probing
    client.chat.completions.create(model=model, messages=MESSAGES)  # the probe closes it
    answer = httpx.get(endpoint)
    assert answer.status_code == 200 and answer.json()["checks"]["circuits"]["status"] == "ok"


def test_an_open_circuit_with_a_fallback_is_degraded(client: Any, fake: FakeLLMServer, model: str) -> None:
    llmwatch.circuit_breaker(model=model, min_calls=2, fallback=lambda exc: "later")
    fake.behave(model, "error-500")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model=model, messages=MESSAGES)
    circuits = check("circuits")
    assert circuits["status"] == "degraded" and "a fallback answers" in circuits["reason"]


def test_budgets_near_their_limit_degrade_and_a_spent_shared_one_fails(client: Any) -> None:
    probe = llmwatch.budget(1.0, feature="search")
    with llmwatch.attributes(feature="search"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    spent = llmwatch.stats()["budgets"]["feature=search/day"]["spent_usd"]
    assert spent > 0
    assert probe is llmwatch.budget(spent / 0.95, feature="search")  # spent is kept: 95 % of the new limit
    assert check("budgets")["status"] == "degraded"
    llmwatch.budget(spent / 2, feature="search")
    budgets = check("budgets")
    assert budgets["status"] == "failing" and "refusing calls" in budgets["reason"]


def test_a_user_spending_their_own_cap_is_no_outage(client: Any) -> None:
    llmwatch.budget(1e-9, user="*")
    with llmwatch.attributes(user="u-1"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert check("budgets")["status"] == "degraded"


def test_a_provider_failing_a_quarter_of_its_calls_degrades(client: Any, fake: FakeLLMServer, model: str) -> None:
    for _ in range(3):
        client.chat.completions.create(model=model, messages=MESSAGES)
    fake.behave(model, "error-429")
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=model, messages=MESSAGES)
    fake.behave(model, "error-400")  # caller errors say nothing of the provider
    for _ in range(5):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=model, messages=MESSAGES)
    providers = check("providers")
    assert providers["status"] == "degraded" and "openai: 2 of 5 calls failed" in providers["reason"]
    entry = providers["providers"]["openai"]
    assert entry["last_success_at"] and entry["last_failure_at"] and entry["latency_p95_s"] is not None


def test_an_encoding_that_failed_to_load_degrades(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tokens, "encoding_errors", lambda: {"o200k_base": "no file"})
    encodings = check("encodings")
    assert encodings["status"] == "degraded" and "o200k_base" in encodings["reason"]


def test_prices_that_could_not_be_imported_degrade(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pricing, "_import_error", "ImportError: no module")
    prices = check("prices")
    assert prices["status"] == "degraded" and "unpriced" in prices["reason"]


def test_a_broken_check_says_so_and_the_others_still_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmwatch._recovery import _health

    def broken(now: float) -> dict[str, Any]:
        raise RuntimeError("injected")

    monkeypatch.setattr(_health, "CHECKS", (("broken", broken), *_health.CHECKS[1:]))
    result = llmwatch.health()
    assert result["checks"]["broken"]["status"] == "degraded"
    assert "RuntimeError: injected" in result["checks"]["broken"]["reason"]
    assert result["checks"]["circuits"]["status"] == "ok"
