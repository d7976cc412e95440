"""The Batch API with the real openai SDK against the loopback server, sync and async: a batch's output
file read with ``files.content`` gives one priced span per result at genai-prices' batch rate, linked
to the ``batches.create`` span; results read where the batch is unknown (another process) are still
recorded, unlinked; the bytes the user reads never change; damaged lines, failed requests and
llmwatch's own failures are counted, never felt.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import genai_prices
import openai
import pytest
from opentelemetry import trace

import llmwatch
from llmwatch._demo._server import FakeLLMServer
from llmwatch._instrument import _openai_batch, _openai_batch_results
from llmwatch.testing import Captured

MODEL = "gpt-4o-mini"
KEY = {"api_key": "sk-test-key-0123456789", "max_retries": 0}


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def requests_file(count: int, *, url: str = "/v1/chat/completions", failing: int = 0) -> bytes:
    lines = []
    for i in range(count):
        text = f"question number {i} about batches" + (" [[scenario:error-400]]" if i < failing else "")
        if url == "/v1/embeddings":
            body: dict[str, Any] = {"model": "text-embedding-3-small", "input": text}
        else:
            body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
        lines.append(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": url, "body": body}))
    return "\n".join(lines).encode()


class Api:
    """An instrumented client and an uninstrumented twin, sync or async, and the batch flow."""

    def __init__(self, server: FakeLLMServer, flavour: str) -> None:
        cls: Any = openai.AsyncOpenAI if flavour == "async" else openai.OpenAI
        self.is_async = flavour == "async"
        self.client = llmwatch.instrument(cls(base_url=server.openai_base_url, **KEY), provider="openai")
        self.plain = cls(base_url=server.openai_base_url, **KEY)

    async def submit(self, data: bytes, *, endpoint: str = "/v1/chat/completions", scenario: str = "") -> Any:
        uploaded = await resolve(self.client.files.create(file=("requests.jsonl", data), purpose="batch"))
        headers = {"x-fake-scenario": scenario} if scenario else None
        return await resolve(
            self.client.batches.create(
                input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h", extra_headers=headers
            )
        )

    async def retrieve(self, batch_id: str) -> Any:
        return await resolve(self.client.batches.retrieve(batch_id))

    async def content(self, file_id: str, *, plain: bool = False) -> Any:
        return await resolve((self.plain if plain else self.client).files.content(file_id))

    async def output_text(self, file_id: str, *, plain: bool = False) -> str:
        """What a user reads of the file (``.read()``/``.text`` both: the same buffer)."""
        content = await self.content(file_id, plain=plain)
        data = (await content.aread()) if self.is_async else content.read()
        assert data.decode() == content.text
        return str(content.text)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, server: FakeLLMServer) -> Api:
    return Api(server, request.param)


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    assert _openai_batch_results.wait_idle(10.0)
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]


def batch_price(model: str, attrs: dict[str, Any]) -> float:
    usage = genai_prices.Usage(  # an embeddings span has no output tokens (its span convention)
        input_tokens=attrs["gen_ai.usage.input_tokens"], output_tokens=attrs.get("gen_ai.usage.output_tokens", 0)
    )
    calc = genai_prices.calc_price(usage, model, provider_id="openai", price_context={"processing": "batch"})
    return float(calc.total_price)


def results(captured: Captured) -> list[dict[str, Any]]:
    return [dict(s.attributes or {}) for s in captured.llm_spans()]


def create_span(captured: Captured) -> Any:
    (span,) = [s for s in captured.spans if s.name == "batches.create"]
    return span


# --- the whole flow --------------------------------------------------------------------------------
async def test_each_result_is_one_span_at_the_batch_rate_linked_to_its_submission(api: Api, captured: Captured) -> None:
    with llmwatch.attributes(user="u1", feature="nightly-summaries"):
        batch = await api.submit(requests_file(3))
    assert batch.status == "validating" and batch.output_file_id is None  # as OpenAI answers a new batch
    done = await api.retrieve(batch.id)
    assert done.status == "completed"
    tracer = captured.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("fetch results") as fetching:  # a job, hours later, without attribution
        text = await api.output_text(done.output_file_id)
    assert text == await api.output_text(done.output_file_id, plain=True)  # the user's bytes, unchanged

    submitted = create_span(captured)
    assert submitted.kind == trace.SpanKind.CLIENT
    attrs = dict(submitted.attributes or {})
    assert "gen_ai.operation.name" not in attrs and "llmwatch.cost.usd" not in attrs  # not an LLM call
    assert attrs["llmwatch.batch.id"] == batch.id and attrs["llmwatch.batch.endpoint"] == "/v1/chat/completions"
    assert attrs["llmwatch.batch.input_file_id"] == batch.input_file_id
    assert attrs["llmwatch.batch.requests.total"] == 3 and attrs["llmwatch.user"] == "u1"

    spans = captured.llm_spans()
    assert len(spans) == 3
    lines = [json.loads(line) for line in text.splitlines()]
    ordered = sorted(spans, key=lambda s: (s.attributes or {})["llmwatch.batch.custom_id"])
    for span, line in zip(ordered, lines, strict=True):
        body = line["response"]["body"]
        result = dict(span.attributes or {})
        assert span.kind == trace.SpanKind.CLIENT and span.name == f"chat {MODEL}"
        assert result["llmwatch.batch.custom_id"] == line["custom_id"] and result["llmwatch.batch.id"] == batch.id
        assert result["gen_ai.operation.name"] == "chat" and result["gen_ai.response.id"] == body["id"]
        assert result["gen_ai.response.model"] == body["model"] and result["gen_ai.request.model"] == MODEL
        assert result["gen_ai.usage.input_tokens"] == body["usage"]["prompt_tokens"]
        assert result["gen_ai.usage.output_tokens"] == body["usage"]["completion_tokens"]
        assert result["gen_ai.response.finish_reasons"] == ("stop",)
        expected = batch_price(body["model"], result)
        assert result["llmwatch.cost.usd"] == pytest.approx(expected, rel=1e-9) and expected > 0
        assert result["llmwatch.cost.source"].endswith(", batch tier")
        assert result["llmwatch.user"] == "u1" and result["llmwatch.feature"] == "nightly-summaries"  # submitter's
        assert [link.context for link in span.links] == [submitted.context]
        assert span.parent is not None and span.parent.span_id == fetching.get_span_context().span_id
    assert llmwatch.stats()["batch_results"]["recorded"] == 3


async def test_batch_results_cost_half_the_live_price_and_count_against_budgets(api: Api, captured: Captured) -> None:
    budget = llmwatch.budget(100.0, per="day", feature="nightly")
    with llmwatch.attributes(feature="nightly"):
        batch = await api.submit(requests_file(2))
    await api.output_text((await api.retrieve(batch.id)).output_file_id)
    spent = [r["llmwatch.cost.usd"] for r in results(captured)]
    assert llmwatch.stats()["budgets"]["feature=nightly/day"]["spent_usd"] == pytest.approx(sum(spent))
    live = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=results(captured)[0]["gen_ai.usage.input_tokens"],
            output_tokens=results(captured)[0]["gen_ai.usage.output_tokens"],
        ),
        "gpt-4o-mini-2024-07-18",
        provider_id="openai",
    )
    assert spent[0] == pytest.approx(float(live.total_price) / 2, rel=1e-6)
    budget.remove()


async def test_results_are_recorded_even_past_a_budget_they_already_spent(api: Api, captured: Captured) -> None:
    llmwatch.budget(1e-12, per="day")  # the first result takes it past its limit
    batch = await api.submit(requests_file(3))
    await api.output_text((await api.retrieve(batch.id)).output_file_id)
    assert len(results(captured)) == 3  # no refusal: these calls already ran
    assert all("llmwatch.cost.usd" in r for r in results(captured))
    assert llmwatch.stats()["calls_refused"] == 0


async def test_results_are_not_latency_samples(api: Api, captured: Captured) -> None:
    batch = await api.submit(requests_file(2))
    await api.output_text((await api.retrieve(batch.id)).output_file_id)
    assert len(results(captured)) == 2
    metrics = captured.metrics()
    assert "gen_ai.client.operation.duration" not in metrics  # they ran hours ago, on OpenAI's side
    assert sum(point.value for point in metrics["llmwatch.cost"]) == pytest.approx(
        sum(r["llmwatch.cost.usd"] for r in results(captured))
    )


async def test_embedding_batches_are_priced_too(api: Api, captured: Captured) -> None:
    batch = await api.submit(requests_file(2, url="/v1/embeddings"), endpoint="/v1/embeddings")
    await api.output_text((await api.retrieve(batch.id)).output_file_id)
    found = results(captured)
    assert [r["gen_ai.operation.name"] for r in found] == ["embeddings", "embeddings"]
    for result in found:
        assert result["llmwatch.cost.usd"] == pytest.approx(batch_price("text-embedding-3-small", result), rel=1e-9)


# --- another process -------------------------------------------------------------------------------
async def test_results_fetched_in_another_process_are_recorded_unlinked(api: Api, captured: Captured) -> None:
    batch = await api.submit(requests_file(2))
    _openai_batch.MEMORY.clear()  # a new process: it never saw the batch submitted
    done = await api.retrieve(batch.id)  # ... but it polls the batch: the output file is then known
    with llmwatch.attributes(feature="fetcher"):
        await api.output_text(done.output_file_id)
    found = captured.llm_spans()
    assert len(found) == 2 and all(span.links == () for span in found)
    for span in found:
        attrs = dict(span.attributes or {})
        assert attrs["llmwatch.batch.id"] == batch.id and attrs["llmwatch.feature"] == "fetcher"
        assert attrs["llmwatch.cost.usd"] == pytest.approx(batch_price(attrs["gen_ai.response.model"], attrs))


async def test_a_file_read_with_nothing_known_of_its_batch_is_still_recorded(api: Api, captured: Captured) -> None:
    batch = await api.submit(requests_file(2))
    output_file_id = (await api.retrieve(batch.id)).output_file_id
    _openai_batch.MEMORY.clear()  # a new process that got the file id from its own database
    await api.output_text(output_file_id)
    found = results(captured)
    assert len(found) == 2
    assert all("llmwatch.batch.id" not in r and "llmwatch.batch.custom_id" in r for r in found)
    assert all(r["llmwatch.cost.source"].endswith(", batch tier") for r in found)


# --- what is not a result --------------------------------------------------------------------------
async def test_damaged_lines_and_failed_requests_are_counted_and_skipped(api: Api, captured: Captured) -> None:
    batch = await api.submit(requests_file(3, failing=1), scenario="batch-bad-lines")
    done = await api.retrieve(batch.id)
    text = await api.output_text(done.output_file_id)
    assert text == await api.output_text(done.output_file_id, plain=True)
    assert text.count("\n") == 4  # two results, a line that is not JSON, a result whose request failed
    errors = await api.output_text(done.error_file_id)  # the failed request's own line
    assert "error" in errors
    assert len(results(captured)) == 2
    counts = llmwatch.stats()["batch_results"]
    assert counts["malformed"] == 1 and counts["failed_requests"] == 2 and counts["recorded"] == 2
    assert counts["files"] == 2


async def test_other_files_are_left_alone(api: Api, captured: Captured) -> None:
    batch = await api.submit(requests_file(2))
    await api.output_text(batch.input_file_id)  # the requests themselves: JSON Lines, but no results
    assert results(captured) == []
    assert llmwatch.stats()["batch_results"]["files"] == 0


async def test_a_file_read_twice_is_recorded_once(api: Api, captured: Captured) -> None:
    batch = await api.submit(requests_file(2))
    output_file_id = (await api.retrieve(batch.id)).output_file_id
    await api.output_text(output_file_id)
    await api.output_text(output_file_id)
    assert len(results(captured)) == 2
    assert llmwatch.stats()["batch_results"]["files_read_again"] == 1


async def test_spans_per_file_are_capped_and_the_rest_counted(
    api: Api, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_openai_batch_results, "MAX_SPANS_PER_FILE", 2)
    batch = await api.submit(requests_file(5))
    await api.output_text((await api.retrieve(batch.id)).output_file_id)
    assert len(results(captured)) == 2
    assert llmwatch.stats()["batch_results"]["over_cap"] == 3


async def test_a_failure_inside_llmwatch_leaves_the_users_bytes_alone(
    api: Api, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llmwatch._health, "raise_internal_errors", False)

    def broken(*args: Any) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(_openai_batch_results, "record_result", broken)
    batch = await api.submit(requests_file(2))
    output_file_id = (await api.retrieve(batch.id)).output_file_id
    text = await api.output_text(output_file_id)
    assert text == await api.output_text(output_file_id, plain=True)
    assert _openai_batch_results.wait_idle(10.0)
    stats = llmwatch.stats()
    assert stats["batch_results"]["files_failed"] == 1 and stats["internal_errors"] == 1
    assert "injected" in stats["last_internal_error"]
    assert results(captured) == []
    llmwatch._health.HEALTH.reset()  # the one error this test caused (the health check runs after it)


async def test_raw_responses_are_recorded_and_streamed_ones_are_not(api: Api, captured: Captured) -> None:
    batch = await api.submit(requests_file(2))
    output_file_id = (await api.retrieve(batch.id)).output_file_id
    raw = await resolve(api.client.files.with_raw_response.content(output_file_id))
    parsed = raw.parse()
    assert parsed.content.count(b"\n") == 2
    assert len(results(captured)) == 2
    _openai_batch.MEMORY.clear()
    if api.is_async:
        async with api.client.files.with_streaming_response.content(output_file_id) as streamed:
            assert (await streamed.read()).count(b"\n") == 2
    else:
        with api.client.files.with_streaming_response.content(output_file_id) as streamed:
            assert streamed.read().count(b"\n") == 2
    assert len(results(captured)) == 2  # a streamed body is never read by llmwatch: not recorded


async def test_a_refused_batch_creation_is_an_error_span(api: Api, captured: Captured) -> None:
    uploaded = await resolve(api.client.files.create(file=("r.jsonl", requests_file(1)), purpose="batch"))
    with pytest.raises(openai.BadRequestError):
        await resolve(
            api.client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                extra_headers={"x-fake-scenario": "error-400"},
            )
        )
    span = create_span(captured)
    assert span.status.status_code.name == "ERROR"
    assert (span.attributes or {})["error.type"] == "BadRequestError"


async def test_an_uninstrumented_client_records_nothing(api: Api, captured: Captured) -> None:
    uploaded = await resolve(api.plain.files.create(file=("r.jsonl", requests_file(2)), purpose="batch"))
    batch = await resolve(
        api.plain.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    )
    done = await resolve(api.plain.batches.retrieve(batch.id))
    await api.output_text(done.output_file_id, plain=True)
    assert captured.spans == []


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = _openai_batch.BatchMemory()
    monkeypatch.setattr(_openai_batch.BatchMemory, "MAX", 3)
    for i in range(5):
        memory.update({"id": f"batch_{i}", "output_file_id": f"file-{i}"})
    assert memory.for_file("file-0") is None and memory.for_file("file-1") is None
    record = memory.for_file("file-4")
    assert record is not None and record.batch_id == "batch_4"


async def test_a_batch_created_through_with_raw_response_is_remembered_too(api: Api, captured: Captured) -> None:
    uploaded = await resolve(api.client.files.create(file=("r.jsonl", requests_file(2)), purpose="batch"))
    raw = await resolve(
        api.client.batches.with_raw_response.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    )
    batch = raw.parse()
    done = await resolve(api.client.batches.with_raw_response.retrieve(batch.id))
    await api.output_text(done.parse().output_file_id)
    submitted = create_span(captured)
    assert (submitted.attributes or {})["llmwatch.batch.id"] == batch.id
    assert [[link.context for link in span.links] for span in captured.llm_spans()] == [[submitted.context]] * 2
