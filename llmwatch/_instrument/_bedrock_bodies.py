"""Bedrock's InvokeModel bodies: one handler per model family (the reply body's reader: ``_bedrock_reader``).

InvokeModel's request and reply are the model's own JSON, as bytes: the one place in llmwatch where a
call's JSON is parsed whatever the content policy, since those bytes are the only place its usage and
parameters live (the request body once at the start, the reply once it has been read, each stream
chunk as it passes). Imported on the first InvokeModel call, not with llmwatch.

Families, by model id (region prefixes such as ``us.`` / ``global.`` and ARNs allowed; an opaque
ARN, an application inference profile say, by the body's shape):

- **Anthropic** (``anthropic.*``, ``anthropic_version: bedrock-2023-05-31``): the Messages body; the
  reply is an Anthropic message, stream chunks are Anthropic events, read by the Anthropic adapter.
  The reply's ``model`` is Anthropic's name for the model: not recorded, as Bedrock prices by the
  model id (a ``global.`` profile costs less than a regional one).
- **Meta Llama** (``meta.*``): ``prompt``, ``max_gen_len``, ``temperature``, ``top_p``; reply
  ``generation``, ``prompt_token_count``, ``generation_token_count``, ``stop_reason`` (``text_completion``).
- **Amazon Titan text** (``amazon.titan-text-*``): ``inputText``, ``textGenerationConfig``; reply
  ``inputTextTokenCount``, ``results[].outputText`` / ``tokenCount`` / ``completionReason``
  (``text_completion``). **Titan embeddings** (``amazon.titan-embed-*``): ``inputTextTokenCount``.
- **Amazon Nova** (``amazon.nova-*``): Converse-shaped ``messages`` / ``system`` / ``toolConfig`` and an
  ``inferenceConfig`` of ``max_new_tokens``, ``temperature``, ``topP``, ``topK``, ``stopSequences``.
- Any other model: the span, with the usage of the headers (below); ``embeddings`` for an ``*embed*`` model,
  ``chat`` for a ``messages`` body, ``text_completion`` for a ``prompt``, else ``generate_content``.

Usage fallbacks: the reply headers ``x-amzn-bedrock-input-token-count`` / ``-output-token-count`` /
``-cache-read-input-token-count`` / ``-cache-write-input-token-count`` (input excludes the cache counts);
for streams, ``amazon-bedrock-invocationMetrics`` on the model's last chunk (the span ends there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._core._call import LLMCall
from llmwatch._core._messages import Message, RequestContent, Text
from llmwatch._instrument import _anthropic, _bedrock_converse
from llmwatch._instrument._fields import put_numbers, put_stop_sequences

_REGION_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "au.", "ca.", "jp.", "global.")
_METRICS = "amazon-bedrock-invocationMetrics"


def base_model(model_id: str) -> str:
    """``arn:...:inference-profile/us.anthropic.claude-...`` -> ``anthropic.claude-...``."""
    model = model_id.rsplit("/", 1)[-1]
    for prefix in _REGION_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def parse_body(body: Any, content_type: Any) -> dict[str, Any] | None:
    """The request body as JSON, when it is JSON bytes (a file object is the caller's to read)."""
    if not isinstance(body, (bytes, bytearray, str)):
        return None
    if isinstance(content_type, str) and "json" not in content_type:
        return None
    return _json(body)


def _json(data: Any) -> dict[str, Any] | None:
    try:
        parsed = json.loads(data)
    except ValueError:  # not JSON (UnicodeDecodeError included): a body of another kind, not our error
        return None
    return parsed if type(parsed) is dict else None


def as_int(value: Any) -> int | None:
    """An int, or the int a header's text spells; None otherwise."""
    if type(value) is int:
        return value
    try:
        return int(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _record_counts(call: LLMCall, uncached: Any, output: Any, read: Any, write: Any) -> None:
    """Bedrock's own counts (headers, invocation metrics): input excludes cache reads and writes."""
    uncached = as_int(uncached)
    if uncached is None:
        return
    call.cache_read_tokens = as_int(read) or 0
    call.cache_write_tokens = as_int(write) or 0
    call.input_tokens = uncached + call.cache_read_tokens + call.cache_write_tokens
    output = as_int(output)
    if output is not None:
        call.output_tokens = output


def header_usage(call: LLMCall, headers: Mapping[str, Any]) -> None:
    prefix = "x-amzn-bedrock-"
    _record_counts(
        call,
        headers.get(prefix + "input-token-count"),
        headers.get(prefix + "output-token-count"),
        headers.get(prefix + "cache-read-input-token-count"),
        headers.get(prefix + "cache-write-input-token-count"),
    )


class Body:
    """A body family's handler, one per call (it holds the parsed request body and the reply headers)."""

    provider = _bedrock_converse.PROVIDER
    operation = sc.OP_CHAT
    headers_suffice = False  # True: the reply headers say all there is (embeddings): no need to read the body

    def __init__(self, body: dict[str, Any] | None) -> None:
        self.body: dict[str, Any] = body or {}
        self.headers: Mapping[str, Any] = {}

    def put_attributes(self, attrs: dict[str, Any]) -> None:
        """The request parameters this family's body carries."""

    def read(self, call: LLMCall, reply: dict[str, Any]) -> None:
        """The parsed reply body."""

    def read_event(self, call: LLMCall, event: dict[str, Any]) -> None:
        """One parsed stream chunk."""

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return []

    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None:
        return None

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_tokens

        return count_tokens(call.model, "".join(self.prompt_parts(call.request)))

    def on_response(self, call: LLMCall, data: Any) -> None:
        """``data``: the reply body's bytes once read whole; None when it never was (closed, collected)."""
        reply = _json(data) if data else None
        if reply is not None:
            self.read(call, reply)
        if call.input_tokens is None:
            header_usage(call, self.headers)

    def on_chunk(self, call: LLMCall, event: Any) -> bool:
        chunk = event.get("chunk")
        if chunk is None:
            return False
        payload = json.loads(chunk.get("bytes") or b"{}")
        if type(payload) is dict:
            self.read_event(call, payload)
            metrics = payload.get(_METRICS)
            if type(metrics) is dict:  # the model's last chunk
                if call.input_tokens is None:
                    _record_counts(
                        call,
                        metrics.get("inputTokenCount"),
                        metrics.get("outputTokenCount"),
                        metrics.get("cacheReadInputTokenCount"),
                        metrics.get("cacheWriteInputTokenCount"),
                    )
                call.end_stream(True)
        return False


_ANTHROPIC_NUMBERS = (
    ("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K),
)


class AnthropicBody(Body):
    def put_attributes(self, attrs: dict[str, Any]) -> None:
        put_numbers(attrs, self.body, _ANTHROPIC_NUMBERS)
        put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, self.body.get("stop_sequences"))

    def read(self, call: LLMCall, reply: dict[str, Any]) -> None:
        _anthropic.MESSAGES.on_response(call, reply)
        call.response_model = None  # Anthropic's name: Bedrock prices by the model id (see above)

    def read_event(self, call: LLMCall, event: dict[str, Any]) -> None:
        _anthropic.MESSAGES.on_chunk(call, event)
        call.response_model = None

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return _anthropic.MESSAGES.prompt_parts(self.body)

    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None:
        return _anthropic.MESSAGES.request_content(self.body)


class _PromptBody(Body):
    """A body whose prompt is one string (Llama's ``prompt``, Titan's ``inputText``)."""

    operation = sc.OP_TEXT_COMPLETION
    prompt_key = "prompt"

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        prompt = self.body.get(self.prompt_key)
        return [prompt] if isinstance(prompt, str) else []

    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None:
        return RequestContent(messages=[Message("user", [Text(text)]) for text in self.prompt_parts(request)])


_LLAMA_NUMBERS = (
    ("max_gen_len", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
)


class LlamaBody(_PromptBody):
    def put_attributes(self, attrs: dict[str, Any]) -> None:
        put_numbers(attrs, self.body, _LLAMA_NUMBERS)

    def read(self, call: LLMCall, reply: dict[str, Any]) -> None:
        self.read_event(call, reply)  # the reply has the fields of a chunk, whole

    def read_event(self, call: LLMCall, event: dict[str, Any]) -> None:
        text = event.get("generation")
        choice = call.choice(0)
        if text:
            call.mark_first_output()
            choice.text.append(str(text))
        if event.get("stop_reason") is not None:
            choice.finish_reason = event["stop_reason"]
        prompt = event.get("prompt_token_count")
        if type(prompt) is int:
            call.input_tokens = prompt
        generated = event.get("generation_token_count")  # cumulative in a stream
        if type(generated) is int:
            call.output_tokens = generated


_TITAN_NUMBERS = (
    ("maxTokenCount", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("topP", sc.GEN_AI_REQUEST_TOP_P),
)


class TitanTextBody(_PromptBody):
    prompt_key = "inputText"

    def put_attributes(self, attrs: dict[str, Any]) -> None:
        config = self.body.get("textGenerationConfig")
        if type(config) is dict:
            put_numbers(attrs, config, _TITAN_NUMBERS)
            put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, config.get("stopSequences"))

    def read(self, call: LLMCall, reply: dict[str, Any]) -> None:
        prompt = reply.get("inputTextTokenCount")
        if type(prompt) is int:
            call.input_tokens = prompt
        results = reply.get("results")
        output = 0
        for index, result in enumerate(results if type(results) is list else ()):
            if type(result) is not dict:
                continue
            choice = call.choice(index)
            choice.text.append(str(result.get("outputText") or ""))
            choice.finish_reason = result.get("completionReason")
            output += as_int(result.get("tokenCount")) or 0
            if "tokenCount" in result:
                call.output_tokens = output

    def read_event(self, call: LLMCall, event: dict[str, Any]) -> None:
        choice = call.choice(as_int(event.get("index")) or 0)
        text = event.get("outputText")
        if text:
            call.mark_first_output()
            choice.text.append(str(text))
        if event.get("completionReason") is not None:
            choice.finish_reason = event["completionReason"]
        prompt = event.get("inputTextTokenCount")
        if type(prompt) is int:
            call.input_tokens = prompt
        generated = event.get("totalOutputTextTokenCount")  # cumulative
        if type(generated) is int:
            call.output_tokens = generated


class TitanEmbeddingsBody(_PromptBody):
    operation = sc.OP_EMBEDDINGS
    prompt_key = "inputText"
    headers_suffice = True

    def read(self, call: LLMCall, reply: dict[str, Any]) -> None:
        prompt = reply.get("inputTextTokenCount")
        if type(prompt) is int:
            call.input_tokens = prompt
            call.output_tokens = 0

    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None:
        return None  # an embedding's input is not a message

    def on_response(self, call: LLMCall, data: Any) -> None:
        super().on_response(call, data)
        if call.input_tokens is not None:
            call.output_tokens = 0


_NOVA_NUMBERS = (
    ("max_new_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("maxTokens", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("topP", sc.GEN_AI_REQUEST_TOP_P),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("topK", sc.GEN_AI_REQUEST_TOP_K),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K),
)


class NovaBody(Body):
    def put_attributes(self, attrs: dict[str, Any]) -> None:
        config = self.body.get("inferenceConfig")
        if type(config) is dict:
            put_numbers(attrs, config, _NOVA_NUMBERS)
            put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, config.get("stopSequences"))

    def read(self, call: LLMCall, reply: dict[str, Any]) -> None:
        _bedrock_converse.read_reply(call, reply)

    def read_event(self, call: LLMCall, event: dict[str, Any]) -> None:
        _bedrock_converse.read_event(call, event)

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return _bedrock_converse.prompt_parts(self.body)

    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None:
        return _bedrock_converse.request_content(self.body)


class OtherBody(Body):
    """A family llmwatch does not read: the span, its model, and the usage of the reply headers."""

    def __init__(self, body: dict[str, Any] | None, operation: str) -> None:
        super().__init__(body)
        self.operation = operation


def handler_for(model_id: Any, body: dict[str, Any] | None) -> Body:
    base = base_model(model_id) if isinstance(model_id, str) else ""
    shape = body or {}
    if base.startswith("anthropic.") or "anthropic_version" in shape:
        return AnthropicBody(body)
    if base.startswith("meta.") or "max_gen_len" in shape:
        return LlamaBody(body)
    if base.startswith("amazon.titan-embed"):
        return TitanEmbeddingsBody(body)
    if base.startswith(("amazon.titan-text", "amazon.titan-tg1")) or "textGenerationConfig" in shape:
        return TitanTextBody(body)
    if "embed" in base:
        return OtherBody(body, sc.OP_EMBEDDINGS)
    if base.startswith("amazon.nova") or "schemaVersion" in shape:
        return NovaBody(body)
    if "inputText" in shape:
        return TitanEmbeddingsBody(body)
    if "messages" in shape:
        return OtherBody(body, sc.OP_CHAT)
    return OtherBody(body, sc.OP_TEXT_COMPLETION if "prompt" in shape else sc.OP_GENERATE_CONTENT)
