"""The ``stream_options.include_usage`` llmwatch adds to OpenAI chat streams (issue 12, item 9).

A compatible server that does not know the field answers 400: llmwatch then sends the call once more
exactly as the caller wrote it (the caller sees the server's stream, nothing else), remembers that
base URL, and counts it in ``stats()``. ``request_stream_usage=False`` adds nothing. The caller's own
``stream_options`` are never touched. Real openai SDK, sync and async, against loopback servers whose
``reject-stream-options`` scenario answers what such servers answer.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

import llmwatch
import llmwatch.testing
from llmwatch import _config, _health
from llmwatch._demo._server import FakeLLMServer
from llmwatch.testing import Captured

MODEL = "gpt-4o-mini"
USER = [{"role": "user", "content": "What is the capital of France?"}]
REJECTS = {"x-fake-scenario": "reject-stream-options"}
FLAVOURS = ["sync", "async"]


@pytest.fixture(scope="module")
def first() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def second() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(first: FakeLLMServer, second: FakeLLMServer) -> Iterator[None]:
    first.clear()
    second.clear()
    yield
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]


class Client:
    """An instrumented client and a plain one (never instrumented) of one flavour, for one base URL."""

    def __init__(self, base_url: str, flavour: str) -> None:
        cls = openai.AsyncOpenAI if flavour == "async" else openai.OpenAI
        options = {"api_key": "sk-test-key-0123456789", "base_url": base_url, "max_retries": 0}
        self.client = llmwatch.instrument(cls(**options))
        self.plain = cls(**options)
        self.is_async = flavour == "async"

    async def stream(self, *, plain: bool = False, **kwargs: Any) -> tuple[Any, list[Any]]:
        """A chat stream and its chunks, read to the end."""
        client = self.plain if plain else self.client
        stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True, **kwargs)
        if self.is_async:
            stream = await stream
            return stream, [chunk async for chunk in stream]
        return stream, list(stream)

    async def failure(self, *, plain: bool = False, **kwargs: Any) -> BaseException:
        try:
            await self.stream(plain=plain, **kwargs)
        except openai.APIError as exc:
            return exc
        raise AssertionError("the stream did not fail")


def as_sent(chunks: list[Any]) -> list[dict[str, Any]]:
    """The chunks as the server sent them (``to_dict`` keeps only the fields that arrived), minus ids."""
    return [{**chunk.to_dict(), "id": "", "created": 0} for chunk in chunks]


def sent_options(server: FakeLLMServer) -> list[Any]:
    return [request.body.get("stream_options", "absent") for request in server.requests]


def rejected() -> dict[str, Any]:
    return dict(llmwatch.stats()["stream_usage_rejected"])


def only_span(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def assert_estimated_usage(span: Any, chunks: list[Any]) -> None:
    attrs = span.attributes
    assert span.status.status_code.name == "UNSET"
    assert attrs["llmwatch.stream.completed"] is True
    assert attrs["llmwatch.usage.source"] == "tiktoken"  # no usage chunk: counted, and said so
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["gen_ai.response.id"] == chunks[0].id


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_refused_stream_options_are_dropped_once_and_remembered_per_base_url(
    first: FakeLLMServer, second: FakeLLMServer, captured: Captured, flavour: str
) -> None:
    api = Client(first.openai_base_url, flavour)
    _, expected = await api.stream(plain=True, extra_headers=REJECTS)
    first.clear()

    stream, seen = await api.stream(extra_headers=REJECTS)

    assert sent_options(first) == [{"include_usage": True}, "absent"]  # refused, then as the caller wrote it
    assert isinstance(stream, openai.AsyncStream if api.is_async else openai.Stream)
    assert as_sent(seen) == as_sent(expected)
    assert_estimated_usage(only_span(captured), seen)
    assert rejected() == {"retries": 1, "base_urls": [str(api.client.base_url)]}

    first.clear()
    captured.clear()
    _, again = await api.stream(extra_headers=REJECTS)
    assert sent_options(first) == ["absent"]  # remembered: one request, unchanged
    assert as_sent(again) == as_sent(expected)
    assert_estimated_usage(only_span(captured), again)
    assert rejected()["retries"] == 1

    other = Client(second.openai_base_url, flavour)
    await other.stream(extra_headers=REJECTS)
    assert sent_options(second) == [{"include_usage": True}, "absent"]  # another base URL: asked again
    assert rejected() == {"retries": 2, "base_urls": [str(api.client.base_url), str(other.client.base_url)]}


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_failing_retry_is_what_the_caller_gets(first: FakeLLMServer, captured: Captured, flavour: str) -> None:
    api = Client(first.openai_base_url, flavour)
    headers = {"x-fake-scenario": "reject-stream-options,error-500"}
    plain = await api.failure(plain=True, extra_headers=headers)
    first.clear()

    caught = await api.failure(extra_headers=headers)

    assert sent_options(first) == [{"include_usage": True}, "absent"]
    assert type(caught) is type(plain) is openai.InternalServerError
    assert caught.body == plain.body  # type: ignore[attr-defined]
    assert type(caught.__context__) is type(plain.__context__)  # our 400 is not chained onto it
    span = only_span(captured)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "InternalServerError"
    assert rejected()["retries"] == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_the_callers_own_stream_options_are_never_overridden(
    first: FakeLLMServer, captured: Captured, flavour: str
) -> None:
    api = Client(first.openai_base_url, flavour)
    mine = {"include_usage": True}
    caught = await api.failure(extra_headers=REJECTS, stream_options=mine)
    assert sent_options(first) == [mine]  # no retry: the refusal is of the caller's own field
    assert type(caught) is openai.BadRequestError
    assert caught.body["param"] == "stream_options"  # type: ignore[attr-defined]
    assert rejected() == {"retries": 0, "base_urls": []}

    await api.stream(extra_headers=REJECTS)  # llmwatch's own field: refused, remembered
    first.clear()
    await api.failure(extra_headers=REJECTS, stream_options=mine)
    assert sent_options(first) == [mine]  # remembered or not, the caller's request goes out as written


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_400_that_does_not_name_the_field_is_not_retried(
    first: FakeLLMServer, captured: Captured, flavour: str
) -> None:
    api = Client(first.openai_base_url, flavour)
    caught = await api.failure(extra_headers={"x-fake-scenario": "error-400"})
    assert type(caught) is openai.BadRequestError
    assert sent_options(first) == [{"include_usage": True}]
    assert rejected() == {"retries": 0, "base_urls": []}
    assert only_span(captured).attributes["error.type"] == "BadRequestError"


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_request_stream_usage_false_adds_nothing(
    first: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, flavour: str, how: str
) -> None:
    if how == "environment":
        monkeypatch.setenv("LLMWATCH_REQUEST_STREAM_USAGE", "false")
    settings = {"request_stream_usage": False} if how == "argument" else {}
    api = Client(first.openai_base_url, flavour)
    with llmwatch.testing.capture(**settings) as captured:
        _, seen = await api.stream()  # a server that would accept the field: still not sent
    assert sent_options(first) == ["absent"]
    assert all(chunk.choices for chunk in seen)
    assert_estimated_usage(only_span(captured), seen)
    assert rejected() == {"retries": 0, "base_urls": []}


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_stream_helper_and_raw_response_are_retried_too(
    first: FakeLLMServer, captured: Captured, flavour: str
) -> None:
    api = Client(first.openai_base_url, flavour)
    client = api.client
    if api.is_async:
        async with client.chat.completions.stream(model=MODEL, messages=USER, extra_headers=REJECTS) as helper:
            final = await helper.get_final_completion()
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=USER, stream=True, extra_headers=REJECTS
        )
        chunks = [chunk async for chunk in raw.parse()]
    else:
        with client.chat.completions.stream(model=MODEL, messages=USER, extra_headers=REJECTS) as helper:
            final = helper.get_final_completion()
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=USER, stream=True, extra_headers=REJECTS
        )
        chunks = list(raw.parse())
    assert final.choices[0].message.content.startswith("Echo:")
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == final.choices[0].message.content
    assert sent_options(first) == [{"include_usage": True}, "absent", "absent"]
    spans = captured.llm_spans()
    assert len(spans) == 2 and all(s.attributes["llmwatch.stream.completed"] is True for s in spans)


def test_remembered_base_urls_carry_no_secrets(first: FakeLLMServer, captured: Captured) -> None:
    port = first.base_url.rsplit(":", 1)[1]
    client = llmwatch.instrument(
        openai.OpenAI(api_key="sk-test", base_url=f"http://user:hunter2@127.0.0.1:{port}/v1", max_retries=0)
    )
    list(client.chat.completions.create(model=MODEL, messages=USER, stream=True, extra_headers=REJECTS))
    assert rejected()["base_urls"] == [f"http://127.0.0.1:{port}/v1/"]
    assert "hunter2" not in repr(llmwatch.stats())
    from llmwatch._instrument import _stream_usage

    assert _stream_usage.base_url_key(httpx2.URL("https://u:p@[::1]:8443/v1/?api-key=s#f")) == "https://[::1]:8443/v1/"


def test_remembered_base_urls_are_bounded() -> None:
    memory = _health.HEALTH.stream_usage_rejected
    for number in range(memory.MAX_URLS + 50):
        memory.remember(f"http://gpu-{number}:8000/v1/")
    urls = memory.snapshot()["base_urls"]
    assert len(urls) == memory.MAX_URLS
    assert urls[-1] == f"http://gpu-{memory.MAX_URLS + 49}:8000/v1/"  # the oldest were forgotten
    assert "http://gpu-0:8000/v1/" not in memory


async def test_responses_streams_get_nothing_added(first: FakeLLMServer, captured: Captured) -> None:
    client = Client(first.openai_base_url, "sync").client
    events = list(client.responses.create(model=MODEL, input="Hello there", stream=True))
    assert events[-1].type == "response.completed"
    assert sent_options(first) == ["absent"]  # its streams carry usage unasked
    assert only_span(captured).attributes["llmwatch.usage.source"] == "provider"


def test_request_stream_usage_is_a_setting() -> None:
    parameters = list(inspect.signature(llmwatch.configure).parameters)
    assert "request_stream_usage" in parameters
    assert _config.resolve({}, {}).request_stream_usage is True
    assert _config.resolve({}, {"LLMWATCH_REQUEST_STREAM_USAGE": "off"}).request_stream_usage is False
    assert _config.resolve({"request_stream_usage": True}, {"LLMWATCH_REQUEST_STREAM_USAGE": "0"}).request_stream_usage
    with pytest.raises(llmwatch.ConfigurationError, match="LLMWATCH_REQUEST_STREAM_USAGE"):
        _config.resolve({}, {"LLMWATCH_REQUEST_STREAM_USAGE": "sometimes"})
