"""A billed response the SDK then rejects keeps its usage, model and cost (issue 12, item 2).

``chat.completions.parse`` / ``responses.parse`` (openai) and ``messages.parse`` /
``beta.messages.parse`` (anthropic) raise after the provider answered: ``LengthFinishReasonError``
when the reply was cut, pydantic's ``ValidationError`` when it is not the JSON asked for (the loopback
server's replies are plain text, so asking for a model always fails validation). The caller gets the
SDK's own exception; the span says ERROR and ``error.type``, and still carries what was billed, and
the budget is charged. Real SDKs, sync and async, against the loopback server.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
import pytest

import llmwatch
from llmwatch._core import _post_response
from llmwatch._demo._server import FakeLLMServer
from llmwatch.testing import Captured

OPENAI_MODEL = "gpt-4o-mini"
SNAPSHOT = "gpt-4o-mini-2024-07-18"
ANTHROPIC_MODEL = "claude-haiku-4-5"
FLAVOURS = ["sync", "async"]


class Answer(pydantic.BaseModel):
    city: str


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def openai_clients(server: FakeLLMServer, flavour: str) -> tuple[Any, Any]:
    cls = openai.AsyncOpenAI if flavour == "async" else openai.OpenAI
    options = {"api_key": "sk-test-key-0123456789", "base_url": server.openai_base_url, "max_retries": 0}
    # named openai: the loopback host alone would say openai_compatible
    return llmwatch.instrument(cls(**options), provider="openai"), cls(**options)


def anthropic_clients(server: FakeLLMServer, flavour: str) -> tuple[Any, Any]:
    cls = anthropic.AsyncAnthropic if flavour == "async" else anthropic.Anthropic
    options = {"api_key": "sk-ant-test-0123456789", "base_url": server.anthropic_base_url, "max_retries": 0}
    return llmwatch.instrument(cls(**options)), cls(**options)


async def failure(client: Any, path: str, **kwargs: Any) -> BaseException:
    try:
        await resolve(operator.attrgetter(path)(client)(**kwargs))
    except Exception as exc:
        return exc
    raise AssertionError(f"{path} did not raise")


def only_span(captured: Captured) -> Any:
    spans = captured.llm_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def budget_spent() -> float:
    return float(sum(entry["spent_usd"] for entry in llmwatch.stats()["budgets"].values()))


def assert_same_failure(caught: BaseException, plain: BaseException) -> None:
    """What the SDK raises without llmwatch: same class, message, and nothing chained by us."""
    assert type(caught) is type(plain)
    assert str(caught) == str(plain).replace(_id_of(plain), _id_of(caught))
    assert type(caught.__cause__) is type(plain.__cause__)
    assert type(caught.__context__) is type(plain.__context__)


def _id_of(exc: BaseException) -> str:
    completion = getattr(exc, "completion", None)
    return str(getattr(completion, "id", "")) or "\0"


def assert_billed_error_span(span: Any, exc: BaseException, *, input_tokens: int, output_tokens: int | None) -> None:
    attrs = span.attributes
    assert span.status.status_code.name == "ERROR"
    assert attrs["error.type"] == type(exc).__name__
    assert [e.name for e in span.events] == ["exception"]
    assert attrs["gen_ai.usage.input_tokens"] == input_tokens
    assert attrs.get("gen_ai.usage.output_tokens") == output_tokens  # None: an embeddings span has none
    assert attrs["llmwatch.usage.source"] == "provider"
    assert attrs["llmwatch.cost.usd"] > 0
    parts = attrs["llmwatch.cost.input_usd"] + attrs["llmwatch.cost.output_usd"]
    assert attrs["llmwatch.cost.usd"] == pytest.approx(parts)
    assert _post_response._SEEN.get() is None  # the watch is gone with the call


# --- openai ---------------------------------------------------------------------------------------------
OPENAI_CASES = {
    # case: (method, request, expected exception, how the billed reply is created without parsing)
    "chat-invalid-json": (
        "chat.completions.parse",
        {"messages": [{"role": "user", "content": "Where is the Louvre?"}], "response_format": Answer},
        pydantic.ValidationError,
        "chat.completions.create",
    ),
    "chat-length": (
        "chat.completions.parse",
        {"messages": [{"role": "user", "content": "Where? [[scenario:length]]"}], "response_format": Answer},
        openai.LengthFinishReasonError,
        "chat.completions.create",
    ),
    "responses-invalid-json": (
        "responses.parse",
        {"input": "Where is the Louvre?", "text_format": Answer},
        pydantic.ValidationError,
        "responses.create",
    ),
}


def openai_usage(reply: Any) -> tuple[int, int]:
    usage = reply.usage
    if hasattr(usage, "prompt_tokens"):
        return usage.prompt_tokens, usage.completion_tokens
    return usage.input_tokens, usage.output_tokens


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", list(OPENAI_CASES))
async def test_openai_parse_rejected_reply_keeps_usage_model_and_cost(
    server: FakeLLMServer, captured: Captured, flavour: str, case: str
) -> None:
    method, request, error, plain_method = OPENAI_CASES[case]
    client, plain = openai_clients(server, flavour)
    plain_failure = await failure(plain, method, model=OPENAI_MODEL, **request)
    unparsed = {k: v for k, v in request.items() if k not in ("response_format", "text_format")}
    billed = await resolve(operator.attrgetter(plain_method)(plain)(model=OPENAI_MODEL, **unparsed))
    llmwatch.budget(100.0)

    caught = await failure(client, method, model=OPENAI_MODEL, **request)

    assert type(caught) is error
    assert_same_failure(caught, plain_failure)
    span = only_span(captured)
    input_tokens, output_tokens = openai_usage(billed)
    assert_billed_error_span(span, caught, input_tokens=input_tokens, output_tokens=output_tokens)
    assert span.attributes["gen_ai.response.model"] == SNAPSHOT
    assert span.attributes["gen_ai.response.id"].startswith("chatcmpl-" if method.startswith("chat") else "resp_")
    assert span.attributes["gen_ai.output.type"] == "json"
    if isinstance(caught, openai.LengthFinishReasonError):
        assert span.attributes["gen_ai.response.id"] == caught.completion.id
        assert span.attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert budget_spent() == pytest.approx(span.attributes["llmwatch.cost.usd"])


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("how", ["with_raw_response", "with_streaming_response"])
async def test_openai_raw_response_parse_that_raises_ends_the_span_with_the_usage(
    server: FakeLLMServer, captured: Captured, flavour: str, how: str
) -> None:
    client, _ = openai_clients(server, flavour)
    request = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "Hi"}], "response_format": Answer}
    parse = getattr(client.chat.completions, how).parse
    with pytest.raises(pydantic.ValidationError) as caught:
        if how == "with_raw_response":
            raw = await resolve(parse(**request))
            raw.parse()  # synchronous even on the async client
        elif flavour == "async":
            async with parse(**request) as response:
                await response.parse()
        else:
            with parse(**request) as response:
                response.parse()
    span = only_span(captured)  # ended at once, not when the raw response is collected
    assert_billed_error_span(span, caught.value, input_tokens=4, output_tokens=12)


def test_response_of_reads_the_errors_that_carry_their_response() -> None:
    """The fallback when the SDK's parser could not be hooked (an SDK that moved it)."""
    completion = openai.types.chat.ChatCompletion.model_validate(
        {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": SNAPSHOT, "choices": []}
    )
    assert _post_response.response_of(openai.LengthFinishReasonError(completion=completion), None) is completion
    assert _post_response.response_of(openai.ContentFilterFinishReasonError(), None) is None
    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    body = {"id": "chatcmpl-2", "model": SNAPSHOT, "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    invalid = openai.APIResponseValidationError(httpx2.Response(200, request=request), body)
    assert _post_response.response_of(invalid, None) is body
    status_error = openai.BadRequestError("bad", response=httpx2.Response(400, request=request), body=body)
    assert _post_response.response_of(status_error, None) is None  # an error body is not a response
    assert _post_response.response_of(ValueError("x"), None) is None


def test_strict_response_validation_failure_keeps_the_usage(server: FakeLLMServer, captured: Captured) -> None:
    """Any method, on a client with ``_strict_response_validation``: the billed body is on the exception.

    The SDK asks for base64 embeddings by default, and its strict validation then rejects the string
    vectors before it would decode them: a real post-response error of ``embeddings.create``.
    """
    options = {"api_key": "sk-test", "base_url": server.openai_base_url, "max_retries": 0}
    client = llmwatch.instrument(openai.OpenAI(**options, _strict_response_validation=True), provider="openai")
    billed = openai.OpenAI(**options).embeddings.create(model="text-embedding-3-small", input="one two three")
    with pytest.raises(openai.APIResponseValidationError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="one two three")
    span = only_span(captured)
    assert_billed_error_span(span, caught.value, input_tokens=billed.usage.prompt_tokens, output_tokens=None)
    assert span.attributes["gen_ai.response.model"] == "text-embedding-3-small"


# --- anthropic ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("method", ["messages.parse", "beta.messages.parse"])
async def test_anthropic_parse_rejected_reply_keeps_usage_model_and_cost(
    server: FakeLLMServer, captured: Captured, flavour: str, method: str
) -> None:
    client, plain = anthropic_clients(server, flavour)
    request = {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Where is the Louvre?"}],
        "output_format": Answer,
    }
    plain_failure = await failure(plain, method, **request)
    billed = await resolve(plain.messages.create(**{k: v for k, v in request.items() if k != "output_format"}))
    llmwatch.budget(100.0)

    caught = await failure(client, method, **request)

    assert type(caught) is pydantic.ValidationError
    assert_same_failure(caught, plain_failure)
    span = only_span(captured)
    assert_billed_error_span(
        span, caught, input_tokens=billed.usage.input_tokens, output_tokens=billed.usage.output_tokens
    )
    assert span.attributes["gen_ai.response.model"] == ANTHROPIC_MODEL
    assert span.attributes["gen_ai.response.id"].startswith("msg_")
    assert span.attributes["gen_ai.output.type"] == "json"
    assert budget_spent() == pytest.approx(span.attributes["llmwatch.cost.usd"])
