"""The openai SDK's other inference endpoints against the loopback server, sync and async: legacy
completions (streamed and not), images, audio transcriptions, translations and speech, moderations.

Each call gives exactly one CLIENT span with the tokens the server reported and the cost genai-prices
itself computes for them (with the audio, image, character and second units these endpoints bill),
or is visibly unpriced with the reason; errors and refusals (before any I/O) behave as for chat; the
user gets what an uninstrumented client gets.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Iterator
from typing import Any

import genai_prices
import openai
import pytest

import llmwatch
from llmwatch._demo._openai_legacy_wire import AUDIO_BYTES_PER_SECOND, AUDIO_BYTES_PER_TOKEN, IMAGE_TOKENS
from llmwatch._demo._server import FakeLLMServer
from llmwatch.testing import Captured

INSTRUCT = "gpt-3.5-turbo-instruct"
AUDIO = b"\x00\x01" * 16_000  # 32 kB: 2 s, 320 audio tokens by the server's formulas
KEY = {"api_key": "sk-test-key-0123456789", "max_retries": 0}


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Api:
    """An instrumented client and an uninstrumented twin, sync or async, behind one awaitable call."""

    def __init__(self, server: FakeLLMServer, flavour: str) -> None:
        cls: Any = openai.AsyncOpenAI if flavour == "async" else openai.OpenAI
        self.is_async = flavour == "async"
        self.client = llmwatch.instrument(cls(base_url=server.openai_base_url, **KEY), provider="openai")
        self.plain = cls(base_url=server.openai_base_url, **KEY)

    async def call(self, path: str, *, plain: bool = False, **kwargs: Any) -> Any:
        return await resolve(operator.attrgetter(path)(self.plain if plain else self.client)(**kwargs))

    async def drain(self, stream: Any) -> list[Any]:
        return [item async for item in stream] if self.is_async else list(stream)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, server: FakeLLMServer) -> Api:
    return Api(server, request.param)


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    yield
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 0
    assert stats["spans_started"] == stats["spans_ended"]


def only_span(captured: Captured) -> dict[str, Any]:
    (span,) = captured.llm_spans()
    assert span.kind.name == "CLIENT"
    return {"name": span.name, **dict(span.attributes or {})}


def price(model: str, **usage: Any) -> float:
    """genai-prices' own figure for these units at OpenAI."""
    return float(genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id="openai").total_price)


def assert_unpriced(attrs: dict[str, Any], model: str, reason: str) -> None:
    assert attrs["llmwatch.cost.unknown_model"] is True
    assert reason in attrs["llmwatch.cost.unpriced_reason"]
    assert "llmwatch.cost.usd" not in attrs
    assert "gen_ai.usage.input_tokens" not in attrs  # nothing made up
    assert {"provider": "openai", "model": model, "calls": 1} in llmwatch.stats()["prices"]["unpriced"]


# --- legacy completions ----------------------------------------------------------------------------
async def test_a_text_completion_is_one_priced_span(api: Api, captured: Captured) -> None:
    request = {"model": INSTRUCT, "prompt": "Say something kind", "max_tokens": 40, "temperature": 0.3, "n": 2}
    reply = await api.call("completions.create", **request)
    plain = await api.call("completions.create", plain=True, **request)
    assert reply.model_dump(exclude={"id", "created"}) == plain.model_dump(exclude={"id", "created"})
    attrs = only_span(captured)
    assert attrs["name"] == f"text_completion {INSTRUCT}"
    assert attrs["gen_ai.operation.name"] == "text_completion"
    assert attrs["gen_ai.request.max_tokens"] == 40 and attrs["gen_ai.request.temperature"] == 0.3
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.response.id"] == reply.id
    assert attrs["gen_ai.response.finish_reasons"] == ("stop", "stop")
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    expected = price(INSTRUCT, input_tokens=reply.usage.prompt_tokens, output_tokens=reply.usage.completion_tokens)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected, rel=1e-9) and expected > 0


async def test_a_streamed_completion_has_exact_usage_and_the_user_sees_the_same_chunks(
    api: Api, captured: Captured, server: FakeLLMServer
) -> None:
    request = {"model": INSTRUCT, "prompt": "Tell me a story", "stream": True}
    chunks = await api.drain(await api.call("completions.create", **request))
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}  # asked for usage
    plain = await api.drain(await api.call("completions.create", plain=True, **request))
    assert [c.choices[0].text for c in chunks] == [c.choices[0].text for c in plain]  # its usage chunk hidden
    attrs = only_span(captured)
    assert attrs["llmwatch.stream"] is True and attrs["llmwatch.stream.completed"] is True
    assert attrs["llmwatch.usage.source"] == "provider"
    text = "".join(c.choices[0].text for c in chunks)
    assert attrs["gen_ai.usage.output_tokens"] == len(text.split())
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    expected = price(INSTRUCT, input_tokens=attrs["gen_ai.usage.input_tokens"], output_tokens=len(text.split()))
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected, rel=1e-9)


async def test_a_cut_completion_stream_ends_its_span_unfinished(api: Api, captured: Captured) -> None:
    stream = await api.call(
        "completions.create", model=INSTRUCT, prompt="Hi", stream=True, extra_headers={"x-fake-scenario": "cut-stream"}
    )
    with pytest.raises(openai.APIConnectionError):  # the SDK's own error for a cut connection
        await api.drain(stream)
    attrs = only_span(captured)
    assert attrs["llmwatch.stream.completed"] is False and attrs["error.type"] == "APIConnectionError"
    assert attrs["gen_ai.usage.output_tokens"] > 0  # the part that arrived (counted: its usage never came)


# --- images ----------------------------------------------------------------------------------------
async def test_gpt_image_generation_is_priced_with_its_image_tokens(api: Api, captured: Captured) -> None:
    reply = await api.call("images.generate", model="gpt-image-1", prompt="a lighthouse at dawn", n=2)
    assert reply.data and reply.data[0].b64_json
    attrs = only_span(captured)
    assert attrs["name"] == "generate_content gpt-image-1"
    assert attrs["gen_ai.operation.name"] == "generate_content" and attrs["gen_ai.output.type"] == "image"
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.usage.output_tokens"] == 2 * IMAGE_TOKENS == attrs["llmwatch.usage.output_image_tokens"]
    units = {"input_tokens": reply.usage.input_tokens, "output_tokens": 2 * IMAGE_TOKENS}
    assert attrs["llmwatch.cost.usd"] == pytest.approx(price("gpt-image-1", **units, output_image_tokens=544), rel=1e-9)


def test_image_tokens_are_priced_at_the_image_rate_where_genai_prices_has_one(server: FakeLLMServer) -> None:
    client = llmwatch.instrument(openai.OpenAI(base_url=server.openai_base_url, **KEY), provider="openai")
    with llmwatch.testing.capture() as captured:
        reply = client.images.generate(model="gpt-image-1.5", prompt="a lighthouse")
    attrs = only_span(captured)
    text_rate = price("gpt-image-1.5", input_tokens=reply.usage.input_tokens, output_tokens=IMAGE_TOKENS)
    image_rate = price(
        "gpt-image-1.5", input_tokens=reply.usage.input_tokens, output_tokens=IMAGE_TOKENS, output_image_tokens=272
    )
    assert image_rate > text_rate  # the case the image units are for: priced as text, it would be too low
    assert attrs["llmwatch.cost.usd"] == pytest.approx(image_rate, rel=1e-9)


async def test_a_streamed_image_generation_takes_its_usage_from_the_completed_event(
    api: Api, captured: Captured
) -> None:
    events = await api.drain(await api.call("images.generate", model="gpt-image-1", prompt="a cat", stream=True))
    assert [e.type for e in events] == ["image_generation.partial_image", "image_generation.completed"]
    attrs = only_span(captured)
    assert attrs["llmwatch.stream.completed"] is True
    assert attrs["gen_ai.usage.output_tokens"] == IMAGE_TOKENS and attrs["llmwatch.cost.usd"] > 0


async def test_dall_e_images_are_visibly_unpriced(api: Api, captured: Captured) -> None:
    await api.call("images.generate", model="dall-e-3", prompt="a lighthouse")
    assert_unpriced(only_span(captured), "dall-e-3", "bill per image")


# --- audio -----------------------------------------------------------------------------------------
async def test_a_gpt_4o_transcription_prices_its_audio_tokens(api: Api, captured: Captured) -> None:
    reply = await api.call("audio.transcriptions.create", model="gpt-4o-transcribe", file=("talk.wav", AUDIO))
    plain = await api.call("audio.transcriptions.create", plain=True, model="gpt-4o-transcribe", file=("t.wav", AUDIO))
    assert reply.model_dump() == plain.model_dump()
    attrs = only_span(captured)
    assert attrs["name"] == "generate_content gpt-4o-transcribe" and attrs["gen_ai.output.type"] == "text"
    audio_tokens = len(AUDIO) // AUDIO_BYTES_PER_TOKEN
    assert attrs["llmwatch.usage.input_audio_tokens"] == audio_tokens == attrs["gen_ai.usage.input_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.output_tokens
    units = {
        "input_tokens": audio_tokens,
        "input_audio_tokens": audio_tokens,
        "output_tokens": reply.usage.output_tokens,
    }
    expected = price("gpt-4o-transcribe", **units)
    assert expected > price("gpt-4o-transcribe", input_tokens=audio_tokens, output_tokens=reply.usage.output_tokens)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected, rel=1e-9)


async def test_a_whisper_transcription_is_priced_by_the_second(api: Api, captured: Captured) -> None:
    await api.call("audio.transcriptions.create", model="whisper-1", file=("talk.wav", AUDIO), language="en")
    attrs = only_span(captured)
    seconds = len(AUDIO) / AUDIO_BYTES_PER_SECOND
    assert attrs["llmwatch.usage.input_audio_seconds"] == seconds
    assert attrs["llmwatch.audio.language"] == "en"
    assert attrs["gen_ai.usage.input_tokens"] == attrs["gen_ai.usage.output_tokens"] == 0
    expected = price("whisper-1", audio_seconds=seconds, input_audio_seconds=seconds)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected, rel=1e-9) and expected > 0


async def test_a_streamed_transcription_takes_its_usage_from_the_done_event(api: Api, captured: Captured) -> None:
    stream = await api.call(
        "audio.transcriptions.create", model="gpt-4o-transcribe", file=("a.wav", AUDIO), stream=True
    )
    events = await api.drain(stream)
    assert events[-1].type == "transcript.text.done"
    attrs = only_span(captured)
    assert attrs["llmwatch.stream.completed"] is True
    assert attrs["gen_ai.usage.output_tokens"] == events[-1].usage.output_tokens and attrs["llmwatch.cost.usd"] > 0


async def test_a_plain_text_transcription_says_why_it_has_no_cost(api: Api, captured: Captured) -> None:
    text = await api.call(
        "audio.transcriptions.create", model="whisper-1", file=("a.wav", AUDIO), response_format="text"
    )
    assert isinstance(text, str) and text.startswith("Transcribed:")
    assert_unpriced(only_span(captured), "whisper-1", "response_format=text")


async def test_a_translation_is_priced_by_its_duration_when_the_reply_has_one(api: Api, captured: Captured) -> None:
    verbose = await api.call(
        "audio.translations.create", model="whisper-1", file=("a.wav", AUDIO), response_format="verbose_json"
    )
    attrs = only_span(captured)
    assert attrs["llmwatch.usage.input_audio_seconds"] == verbose.duration
    expected = price("whisper-1", audio_seconds=verbose.duration, input_audio_seconds=verbose.duration)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(expected, rel=1e-9)
    captured.clear()
    await api.call("audio.translations.create", model="whisper-1", file=("a.wav", AUDIO))
    assert_unpriced(only_span(captured), "whisper-1", "verbose_json reports the duration")


async def test_speech_is_priced_by_its_characters_and_its_audio_is_the_users(api: Api, captured: Captured) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    audio = await api.call("audio.speech.create", model="tts-1", voice="alloy", input=text)
    plain = await api.call("audio.speech.create", plain=True, model="tts-1", voice="alloy", input=text)
    assert type(audio) is type(plain) and audio.content == plain.content
    attrs = only_span(captured)
    assert attrs["gen_ai.output.type"] == "speech" and attrs["llmwatch.usage.input_characters"] == len(text)
    assert attrs["llmwatch.cost.usd"] == pytest.approx(price("tts-1", input_characters=len(text)), rel=1e-9)


async def test_token_billed_speech_is_visibly_unpriced(api: Api, captured: Captured) -> None:
    await api.call("audio.speech.create", model="gpt-4o-mini-tts", voice="alloy", input="Hello")
    assert_unpriced(only_span(captured), "gpt-4o-mini-tts", "speech replies carry no usage")


# --- moderations -----------------------------------------------------------------------------------
async def test_moderations_cost_nothing_and_say_so(api: Api, captured: Captured) -> None:
    reply = await api.call("moderations.create", model="omni-moderation-latest", input=["fine", "bad [[flag]]"])
    assert [r.flagged for r in reply.results] == [False, True]
    attrs = only_span(captured)
    assert attrs["name"] == "moderation omni-moderation-latest" and attrs["gen_ai.operation.name"] == "moderation"
    assert attrs["gen_ai.response.model"] == reply.model and attrs["llmwatch.moderation.flagged"] is True
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] == 0
    assert attrs["llmwatch.cost.usd"] == 0.0  # genai-prices prices the moderation models at 0
    assert attrs["llmwatch.cost.source"].startswith("genai-prices")


# --- errors, refusals, untraced clients ------------------------------------------------------------
CALLS: dict[str, dict[str, Any]] = {
    "completions.create": {"model": INSTRUCT, "prompt": "Hello"},
    "images.generate": {"model": "gpt-image-1", "prompt": "a cat"},
    "audio.transcriptions.create": {"model": "gpt-4o-transcribe", "file": ("a.wav", AUDIO)},
    "audio.translations.create": {"model": "whisper-1", "file": ("a.wav", AUDIO), "response_format": "verbose_json"},
    "audio.speech.create": {"model": "tts-1", "voice": "alloy", "input": "Hello"},
    "moderations.create": {"model": "omni-moderation-latest", "input": "Hello"},
}


@pytest.mark.parametrize("path", sorted(CALLS))
async def test_an_error_is_the_users_and_the_span_says_so(api: Api, captured: Captured, path: str) -> None:
    bad = {**CALLS[path], "extra_headers": {"x-fake-scenario": "error-400"}}
    with pytest.raises(openai.BadRequestError) as raised:
        await api.call(path, **bad)
    with pytest.raises(openai.BadRequestError) as plain:
        await api.call(path, plain=True, **bad)
    assert raised.value.body == plain.value.body
    (span,) = captured.llm_spans()
    assert span.status.status_code.name == "ERROR"
    assert (span.attributes or {})["error.type"] == "BadRequestError"
    assert "llmwatch.cost.usd" not in (span.attributes or {})


@pytest.mark.parametrize("path", sorted(CALLS))
async def test_kill_switches_and_budgets_refuse_before_any_io(
    api: Api, captured: Captured, server: FakeLLMServer, path: str
) -> None:
    model = CALLS[path]["model"]
    llmwatch.kill_switch(model=model)
    sent = len(server.requests)
    with pytest.raises(llmwatch.FeatureDisabled):
        await api.call(path, **CALLS[path])
    llmwatch.kill_switch(model=model, enabled=False)
    llmwatch.budget(1e-12, feature="legacy")
    with llmwatch.attributes(feature="legacy"):
        await api.call(path, **CALLS[path])  # goes ahead, and spends past the tiny limit (moderations: 0)
        sent = len(server.requests)
        if path != "moderations.create":
            with pytest.raises(llmwatch.BudgetExceeded):
                await api.call(path, **CALLS[path])
    assert len(server.requests) == sent  # neither refused call reached the server
    refused = [s for s in captured.llm_spans() if any(e.name == "llmwatch.call.refused" for e in s.events)]
    assert len(refused) == (1 if path == "moderations.create" else 2)


async def test_an_uninstrumented_client_gives_no_span(api: Api, captured: Captured) -> None:
    for path, request in CALLS.items():
        await api.call(path, plain=True, **request)
    assert captured.spans == []


async def test_a_failure_reading_a_reply_leaves_the_users_result_alone(
    api: Api, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmwatch import _health
    from llmwatch._instrument import _openai_media

    def broken(*args: Any) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(_health, "raise_internal_errors", False)
    monkeypatch.setattr(_openai_media.Images, "_usage", broken)
    reply = await api.call("images.generate", model="gpt-image-1", prompt="a cat")
    plain = await api.call("images.generate", plain=True, model="gpt-image-1", prompt="a cat")
    assert reply.model_dump(exclude={"created"}) == plain.model_dump(exclude={"created"})
    (span,) = captured.llm_spans()  # still one span, ended: its usage counted, as the reply could not be read
    assert (span.attributes or {})["llmwatch.usage.source"] in ("tiktoken", "estimate")
    stats = llmwatch.stats()
    assert stats["internal_errors"] == 1 and "injected" in stats["last_internal_error"]
    _health.HEALTH.reset()  # the one error this test caused (the health check runs after it)
