"""OpenAI's legacy Completions API (``completions.create``, streamed or not) and ``moderations.create``:
one CLIENT span each, through the same life as every call (budgets and kill switches before I/O).

Operation names (GenAI semconv: a listed value must be used when one applies, else a custom one):
``text_completion`` for the Completions API (the value's own example), ``moderation`` for moderations,
which classify and generate nothing (no listed value applies).

Wire facts: a completion's ``usage`` is the chat shape (``prompt_tokens``, ``completion_tokens``);
its streams report usage only when asked (``stream_options.include_usage``, which the legacy endpoint
accepts): llmwatch asks, as for chat, and hides that one usage chunk (``choices == []``). Moderation
replies carry no usage and OpenAI does not bill them: input tokens are counted (tiktoken), output
is 0, and genai-prices prices the moderation models at 0, so the span's cost is 0 with genai-prices
as its source. Moderation inputs are texts or multimodal parts (``{"type": "text"}``,
``{"type": "image_url"}``): only texts are counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import LLMCall
from llmwatch._core._messages import Message, Part, RequestContent, Text, Uri, data_url_blob
from llmwatch._instrument._fields import field, fields_of, given, put_number, put_numbers, put_stop_sequences
from llmwatch._instrument._openai_chat import record_chat_usage
from llmwatch._instrument._openai_request import PROVIDER, endpoint_and_tier, record_service_tier
from llmwatch._instrument._stream_usage import with_stream_usage

_NUMBER_PARAMS = (
    ("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("seed", sc.GEN_AI_REQUEST_SEED),
)


def texts_of(value: Any) -> list[str]:
    """The texts of a ``prompt``/``input``: a string, a list of strings, or token arrays (as text)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, int) for item in value):
            return [" ".join(map(str, value))]  # one token array: nothing to read, its size still counts
        return [text for item in value for text in texts_of(item)]
    text = field(value, "text") if isinstance(value, Mapping) else None
    return [text] if isinstance(text, str) else []


class TextCompletions:
    """``completions.create``: prompt in, text choices out (``n``, ``best_of``), streamed or not."""

    provider = PROVIDER
    operation = sc.OP_TEXT_COMPLETION
    parses = False

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[TextCompletions, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        endpoint_and_tier(instance, kwargs, attrs, settings)
        put_numbers(attrs, kwargs, _NUMBER_PARAMS)
        stop = kwargs.get("stop")
        if stop is not None:
            put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, stop)
        n = kwargs.get("n")
        if isinstance(n, int) and not isinstance(n, bool) and n != 1:
            attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
        attrs[sc.GEN_AI_OUTPUT_TYPE] = sc.OUTPUT_TEXT
        stream = kwargs.get("stream") is True
        if stream:  # the spec: set iff streaming (llmwatch.stream says both ways)
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        attrs[sc.LLMWATCH_STREAM] = stream
        if stream:
            client = getattr(instance, "_client", None)
            send_kwargs, hide_usage = with_stream_usage(client, kwargs, settings.request_stream_usage)
            return self, attrs, send_kwargs, True, hide_usage
        return self, attrs, dict(kwargs), False, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return texts_of(request.get("prompt")) + texts_of(request.get("suffix"))

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_texts_tokens

        return count_texts_tokens(call.model, self.prompt_parts(call.request))

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        fields = fields_of(response)
        call.response_id = fields.get("id")
        call.response_model = fields.get("model")
        record_service_tier(call, fields.get("service_tier"), fields.get("system_fingerprint"))
        for raw in fields.get("choices") or ():
            _record_choice(call, raw)
        record_chat_usage(call, fields.get("usage"))

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        fields = fields_of(chunk)
        if call.response_id is None:
            call.response_id = fields.get("id")
        if call.response_model is None:
            call.response_model = fields.get("model") or None
        choices = fields.get("choices")
        usage = fields.get("usage")
        for raw in choices or ():
            _record_choice(call, raw)
        if usage is not None:
            record_chat_usage(call, usage)
            return call.hide_usage_chunk and not choices  # only the usage-only chunk llmwatch asked for
        return False

    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        return RequestContent(messages=[Message("user", [Text(text)]) for text in texts_of(request.get("prompt"))])


def _record_choice(call: LLMCall, raw: Any) -> None:
    fields = fields_of(raw)
    choice = call.choice(fields.get("index") or 0)
    text = fields.get("text")
    if text:
        call.mark_first_output()
        choice.text.append(text)
    reason = fields.get("finish_reason")
    if reason:
        choice.finish_reason = reason


class Moderations:
    """``moderations.create``: free, so priced at 0 (genai-prices' own price for the models)."""

    provider = PROVIDER
    operation = sc.OP_MODERATION
    parses = False

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[Moderations, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        endpoint_and_tier(instance, kwargs, attrs, settings)
        return self, attrs, dict(kwargs), False, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return texts_of(request.get("input"))

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_tokens

        return count_tokens(call.model, "\n".join(self.prompt_parts(call.request)))

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        call.response_id = field(response, "id")
        call.response_model = field(response, "model")
        call.output_tokens = 0  # a verdict, not generated text
        flagged = [bool(field(result, "flagged")) for result in field(response, "results") or ()]
        if flagged:
            call.response_attributes = {sc.LLMWATCH_MODERATION_FLAGGED: any(flagged)}

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        return False

    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        parts: list[Part] = []
        value = request.get("input")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str):
                parts.append(Text(item))
            elif given(item) and field(item, "type") == "image_url":
                url = str(field(field(item, "image_url"), "url") or "")
                parts.append(data_url_blob("image", url) if url.startswith("data:") else Uri("image", url))
            elif given(item) and isinstance(field(item, "text"), str):
                parts.append(Text(field(item, "text")))
        return RequestContent(messages=[Message("user", parts)])


def put_output_count(attrs: dict[str, Any], kwargs: Mapping[str, Any]) -> None:
    """``gen_ai.request.choice.count`` from ``n`` when it is not 1 (images)."""
    n = kwargs.get("n")
    if given(n) and n != 1:
        put_number(attrs, sc.GEN_AI_REQUEST_CHOICE_COUNT, n)
