"""Metrics end to end: real SDK calls, llmwatch's own instruments, a real OTLP receiver on loopback.

``configure()`` as a user calls it (gRPC and HTTP), calls through the real openai and anthropic SDKs
against the loopback server (streamed, failed, refused by a kill switch, over a budget), then the
protobufs that arrive are checked for the semconv names, units, bucket boundaries and attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from otlp_receiver import GrpcReceiver, HttpReceiver, attributes

import llmwatch
from llmwatch import _semconv as sc
from llmwatch._demo._server import FakeLLMServer

ASK = [{"role": "user", "content": "hello"}]


@pytest.fixture(params=["grpc", "http/protobuf"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Any]:
    with GrpcReceiver() if request.param == "grpc" else HttpReceiver() as started:
        started.protocol = request.param
        yield started


def run_workload(server: FakeLLMServer) -> None:
    oa = openai.OpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
    llmwatch.instrument(oa, provider="openai")  # the loopback host alone would say openai_compatible
    an = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.anthropic_base_url, max_retries=0)
    with llmwatch.attributes(user="u-1", feature="search"):
        oa.chat.completions.create(model="gpt-4o-mini", messages=ASK)
        list(oa.chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True))
        with pytest.raises(openai.InternalServerError):
            oa.chat.completions.create(
                model="gpt-4o-mini", messages=ASK, extra_headers={"x-fake-scenario": "error-500"}
            )
    with llmwatch.attributes(user="u-2", feature="chat"):
        an.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=ASK)
    llmwatch.kill_switch(feature="beta")
    with llmwatch.attributes(feature="beta"), pytest.raises(llmwatch.FeatureDisabled):
        oa.chat.completions.create(model="gpt-4o-mini", messages=ASK)


def points(metric: Any) -> list[Any]:
    data = getattr(metric, metric.WhichOneof("data"))
    return list(data.data_points)


def test_metrics_arrive_with_semconv_names_units_buckets_and_attributes(receiver: Any, server: FakeLLMServer) -> None:
    llmwatch.configure(
        service_name="metrics-e2e", exporter="otlp", endpoint=receiver.endpoint, protocol=receiver.protocol
    )
    llmwatch.budget(5.0, per="day", feature="search")
    try:
        run_workload(server)
        assert llmwatch.force_flush(timeout_s=10)
        assert receiver.wait_for(lambda: sc.METRIC_BUDGET_SPENT in receiver.metrics())
        metrics = receiver.metrics()
    finally:
        llmwatch.shutdown(timeout_s=5)

    assert {m.name: m.unit for m in metrics.values()} == {
        "gen_ai.client.token.usage": "{token}",
        "gen_ai.client.operation.duration": "s",
        "gen_ai.client.operation.time_to_first_chunk": "s",
        "llmwatch.cost": "USD",
        "llmwatch.errors": "{error}",
        "llmwatch.calls.refused": "{call}",
        "llmwatch.budget.spent": "USD",
        "llmwatch.budget.limit": "USD",
    }
    tokens = metrics["gen_ai.client.token.usage"]
    assert list(points(tokens)[0].explicit_bounds) == list(sc.TOKEN_BUCKETS)
    assert list(points(metrics["gen_ai.client.operation.duration"])[0].explicit_bounds) == list(sc.DURATION_BUCKETS)
    token_types = {(p.attributes["gen_ai.provider.name"], p.attributes["gen_ai.token.type"]) for p in _flat(tokens)}
    assert token_types == {("openai", "input"), ("openai", "output"), ("anthropic", "input"), ("anthropic", "output")}

    durations = _flat(metrics["gen_ai.client.operation.duration"])
    search_ok = [
        p for p in durations if p.attributes.get("llmwatch.feature") == "search" and "error.type" not in p.attributes
    ]
    assert sum(p.proto.count for p in search_ok) == 2
    (failed,) = [p for p in durations if "error.type" in p.attributes]
    assert failed.attributes["error.type"] == "InternalServerError"
    assert failed.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    for point in durations:
        assert "llmwatch.user" not in point.attributes  # users only with metrics_user_dimension=True
        assert point.attributes["gen_ai.operation.name"] == "chat"
    assert {p.attributes["gen_ai.response.model"] for p in durations if "error.type" not in p.attributes} == {
        "gpt-4o-mini-2024-07-18",
        "claude-haiku-4-5",
    }

    (ttft,) = _flat(metrics["gen_ai.client.operation.time_to_first_chunk"])
    assert ttft.proto.count == 1 and ttft.attributes["llmwatch.feature"] == "search"

    cost = {p.attributes["llmwatch.feature"]: p.proto.as_double for p in _flat(metrics["llmwatch.cost"])}
    assert set(cost) == {"search", "chat"} and all(v > 0 for v in cost.values())

    (errors,) = _flat(metrics["llmwatch.errors"])
    assert errors.proto.as_int == 1 and errors.attributes["error.type"] == "InternalServerError"
    (refused,) = _flat(metrics["llmwatch.calls.refused"])
    assert refused.proto.as_int == 1
    assert refused.attributes["llmwatch.refusal.reason"] == "kill_switch"
    assert refused.attributes["llmwatch.feature"] == "beta"

    (spent,) = _flat(metrics["llmwatch.budget.spent"])
    (limit,) = _flat(metrics["llmwatch.budget.limit"])
    scope = {"llmwatch.budget.scope": "feature=search", "llmwatch.budget.window": "day"}
    assert spent.attributes == limit.attributes == scope
    assert spent.proto.as_double == pytest.approx(cost["search"]) and limit.proto.as_double == 5.0


def test_the_user_dimension_is_opt_in(server: FakeLLMServer) -> None:
    with HttpReceiver() as receiver:
        llmwatch.configure(exporter="otlp", endpoint=receiver.endpoint, metrics_user_dimension=True)
        try:
            run_workload(server)
            assert llmwatch.force_flush(timeout_s=10)
            assert receiver.wait_for(lambda: "llmwatch.cost" in receiver.metrics())
            cost = _flat(receiver.metrics()["llmwatch.cost"])
        finally:
            llmwatch.shutdown(timeout_s=5)
    assert {p.attributes["llmwatch.user"] for p in cost} == {"u-1", "u-2"}


class _Point:
    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.attributes = attributes(proto.attributes)


def _flat(metric: Any) -> list[_Point]:
    return [_Point(p) for p in points(metric)]


def test_a_rejected_metric_export_is_counted_and_logged(
    server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A traces-only endpoint answers 404 for /v1/metrics: every metric point is lost, and stats() says so."""
    with HttpReceiver(signals=("traces",)) as traces_only:
        llmwatch.configure(service_name="metrics-rejected", exporter="otlp", endpoint=traces_only.endpoint)
        try:
            run_workload(server)
            with caplog.at_level("WARNING", logger="llmwatch"):
                llmwatch.force_flush(timeout_s=10)
            stats = llmwatch.stats()
        finally:
            llmwatch.shutdown(timeout_s=5)
        assert traces_only.requests("traces", accepted_only=True)  # the spans still arrived
    assert stats["metric_exports_failed"] >= 1
    assert stats["exports_failed"] >= stats["metric_exports_failed"]
    assert stats["last_export_error"].startswith("metrics: exporter returned FAILURE")
    assert any("metric export failed" in record.getMessage() for record in caplog.records)
