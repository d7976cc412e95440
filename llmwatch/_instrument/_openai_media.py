"""OpenAI images and audio: ``images.generate``, ``audio.transcriptions.create``,
``audio.translations.create`` and ``audio.speech.create``, one CLIENT span each, priced by what the
API bills where it says so.

Operation: ``generate_content`` for all four (GenAI semconv: "multimodal content generation"; each
generates content, of another modality than its input), told apart by ``gen_ai.output.type``
(``image``, ``text``, ``speech``) and the model.

Wire facts, and how each is priced:

- ``images.generate``: gpt-image models report ``usage`` (``input_tokens``, ``output_tokens``, and
  ``output_tokens_details.image_tokens``, priced at genai-prices' image-output rate where it has one);
  dall-e models report none (they bill per image, which genai-prices does not price): unpriced, with
  the reason. No model in the reply: the requested one prices the call. Streams (``stream=True``,
  partial images) carry usage in ``image_generation.completed``.
- Transcriptions: ``usage`` is ``{"type": "tokens", input_tokens, input_token_details.audio_tokens,
  output_tokens}`` (gpt-4o-*-transcribe: audio tokens have their own rate) or ``{"type": "duration",
  "seconds"}`` (whisper-1, billed by the second). Streams (gpt-4o-*-transcribe) carry it in
  ``transcript.text.done``. ``response_format="text"``/``"srt"``/``"vtt"`` returns a bare string
  without usage: unpriced, with the reason.
- Translations (whisper-1): ``json`` says nothing of what was billed; ``verbose_json`` has the
  ``duration``, which prices it.
- Speech: the reply is the audio itself, no usage. tts-1 and tts-1-hd bill the input's characters:
  counted from the request. Token-billed voices (gpt-4o-mini-tts) do not report their audio tokens:
  unpriced, with the reason.

Nothing here reads the audio the caller uploads or the bytes the API returns. Audio and images are not
captured as content; the text prompt of an image or speech request is, under the content policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import LLMCall
from llmwatch._core._messages import Blob, Message, Part, RequestContent, Text
from llmwatch._instrument._fields import field, fields_of
from llmwatch._instrument._openai_legacy import put_output_count
from llmwatch._instrument._openai_request import PROVIDER, endpoint_and_tier

# Speech voices that bill the characters of their input (genai-prices' tts-1 price is per character).
_CHARACTER_BILLED = ("tts-1", "tts-1-hd")
_NO_USAGE = "the reply does not say what was billed"


class _Media:
    """What the four share: no stream usage to ask for, no content of their own to count."""

    provider = PROVIDER
    operation = sc.OP_GENERATE_CONTENT
    parses = False
    output_type = sc.OUTPUT_TEXT
    prompt_key = "prompt"

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[_Media, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        endpoint_and_tier(instance, kwargs, attrs, settings)
        attrs[sc.GEN_AI_OUTPUT_TYPE] = self.output_type
        temperature: Any = kwargs.get("temperature")
        if type(temperature) in (int, float):
            attrs[sc.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)  # a double in the registry
        self.request_attributes(kwargs, attrs)
        stream = kwargs.get("stream") is True
        if stream:
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        attrs[sc.LLMWATCH_STREAM] = stream
        return self, attrs, dict(kwargs), stream, False

    def request_attributes(self, kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
        return None

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        text = request.get(self.prompt_key)
        return [text] if isinstance(text, str) else []

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_tokens

        return count_tokens(call.model, "".join(self.prompt_parts(call.request)))

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        return False

    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        return RequestContent(messages=[Message("user", [Text(text) for text in self.prompt_parts(request)])])

    @staticmethod
    def unpriced(call: LLMCall, reason: str) -> None:
        """Billed, but nothing says for what: no usage is made up, and the span says why it has no cost."""
        call.usage_unknown = True
        call.unpriced_reason = reason


class Images(_Media):
    """``images.generate``: gpt-image models report token usage; dall-e models bill per image."""

    output_type = sc.OUTPUT_IMAGE

    def request_attributes(self, kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
        put_output_count(attrs, kwargs)

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        self._usage(call, field(response, "usage"))

    def on_chunk(self, call: LLMCall, event: Any) -> bool:
        kind = field(event, "type")
        if kind == "image_generation.partial_image":
            call.mark_first_output()
        elif kind == "image_generation.completed":
            call.mark_first_output()
            self._usage(call, field(event, "usage"))
        return False

    def _usage(self, call: LLMCall, usage: Any) -> None:
        if usage is None:
            self.unpriced(call, f"{_NO_USAGE} (dall-e models bill per image)")
            return
        fields = fields_of(usage)
        call.input_tokens = fields.get("input_tokens") or 0
        call.output_tokens = fields.get("output_tokens") or 0
        images = fields_of(fields.get("output_tokens_details")).get("image_tokens")
        if isinstance(images, int) and images > 0:
            call.usage_extra = (("output_image_tokens", images),)
            call.response_attributes = {sc.LLMWATCH_USAGE_OUTPUT_IMAGE_TOKENS: images}


class Transcriptions(_Media):
    """``audio.transcriptions.create`` and ``audio.translations.create`` (the same reply shapes)."""

    def request_attributes(self, kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
        language = kwargs.get("language")
        if isinstance(language, str):
            attrs[sc.LLMWATCH_AUDIO_LANGUAGE] = language

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        if isinstance(response, str):  # response_format text, srt or vtt: the transcript alone
            self.unpriced(call, f"{_NO_USAGE} (response_format={call.request.get('response_format')})")
            return
        usage = field(response, "usage")
        if usage is not None:
            self.record_usage(call, usage)
            return
        duration = field(response, "duration")  # verbose_json
        if type(duration) in (int, float) and duration >= 0:
            record_seconds(call, float(duration))
        else:
            self.unpriced(call, f"{_NO_USAGE} (response_format=json; verbose_json reports the duration)")

    def on_chunk(self, call: LLMCall, event: Any) -> bool:
        kind = field(event, "type")
        if kind == "transcript.text.delta":
            call.mark_first_output()
        elif kind == "transcript.text.done":
            usage = field(event, "usage")
            if usage is not None:
                self.record_usage(call, usage)
        return False

    @staticmethod
    def record_usage(call: LLMCall, usage: Any) -> None:
        fields = fields_of(usage)
        if fields.get("type") == "duration" or (fields.get("seconds") is not None and "input_tokens" not in fields):
            seconds = fields.get("seconds")
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
                record_seconds(call, float(seconds))
            return
        call.input_tokens = fields.get("input_tokens") or 0
        call.output_tokens = fields.get("output_tokens") or 0
        audio = fields_of(fields.get("input_token_details")).get("audio_tokens")
        if isinstance(audio, int) and audio > 0:
            call.usage_extra = (("input_audio_tokens", audio),)
            call.response_attributes = {sc.LLMWATCH_USAGE_INPUT_AUDIO_TOKENS: audio}

    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        parts: list[Part] = [Blob("audio")]  # the upload itself is never read
        parts += [Text(text) for text in self.prompt_parts(request)]
        return RequestContent(messages=[Message("user", parts)])


def record_seconds(call: LLMCall, seconds: float) -> None:
    """Billed by the second of input audio (whisper-1): no tokens either way."""
    call.input_tokens = 0
    call.output_tokens = 0
    call.usage_extra = (("input_audio_seconds", seconds),)
    call.response_attributes = {sc.LLMWATCH_USAGE_INPUT_AUDIO_SECONDS: seconds}


class Speech(_Media):
    """``audio.speech.create``: the reply is audio bytes, never read; priced from the request."""

    output_type = sc.OUTPUT_SPEECH
    prompt_key = "input"

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        call.output_tokens = 0  # audio out: what a token-billed voice made of it is not reported
        model = str(call.request.get("model") or "")
        text = call.request.get("input")
        if model in _CHARACTER_BILLED and isinstance(text, str):
            call.usage_extra = (("input_characters", len(text)),)
            call.response_attributes = {sc.LLMWATCH_USAGE_INPUT_CHARACTERS: len(text)}
        else:
            call.output_tokens = None
            self.unpriced(call, f"{_NO_USAGE} (speech replies carry no usage)")
