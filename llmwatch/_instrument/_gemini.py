"""Google Gen AI SDK (``google-genai``): ``models.generate_content``, ``generate_content_stream`` and
``embed_content``, sync (``client.models``) and async (``client.aio.models``), for the Gemini Developer
API (``gcp.gemini``) and Vertex AI (``gcp.vertex_ai``, a client made with ``vertexai=True``).

Where the hooks sit, and why there: one CLIENT span per model request. The public
``generate_content`` may send several requests: automatic function calling (AFC: Python functions
in ``config.tools`` are called and their results sent back, up to 10 rounds by default) and, in
3.x, automatic continuation (a reply ending with a continuation token is resumed by a new request).
Each of those requests goes through the private ``Models._generate_content`` (streams:
``_generate_content_stream``), which builds and sends exactly one HTTP request, in every release
since 1.0.0; so those are hooked, and a chat's ``send_message`` / ``send_message_stream`` (which call
``generate_content`` / ``generate_content_stream``) get one span per request too. Hooking the public
method would give one span for several billed requests, with the usage of the last one only.
``embed_content`` sends one request whatever the API (``batchEmbedContents``, Vertex's
``embedContent`` or ``predict``): the public method is hooked. Budgets and kill switches are checked
per request, before it is sent: an AFC round refused halfway raises to the caller then.

The sync stream method is a generator function: calling it sends nothing, so the span opens when the
caller's iteration asks for the first chunk (where the SDK itself sends the request and raises its
errors); the async one sends the request, then returns an async generator. Either way the span
follows the SDK's own iterator (``_core/_streaming.py``): ended when it is exhausted, fails, or is
dropped unfinished. The caller holds the SDK's outer generator, not ours: its ``close()`` or a
``break`` drops ours at once (sync); ``aclose()`` leaves the SDK's inner async generators to the
event loop, which finalizes them (and so ends the span) on its next iterations.

``instrument(client)`` marks the client's ``_api_client`` (a ``genai.Client``'s ``models``,
``aio.models`` and chats all share it), so exactly that client's calls are traced.

Wire facts (the SDK's ``types``, and the REST API behind them):

- ``usage_metadata.prompt_token_count`` includes ``cached_content_token_count`` (a cache read);
  ``candidates_token_count`` excludes ``thoughts_token_count``, which are billed as output: llmwatch's
  output tokens are candidates + thoughts, its reasoning tokens the thoughts; input tokens are
  ``prompt_token_count`` + ``tool_use_prompt_token_count`` (tool results fed back, billed as input),
  so input + output is ``total_token_count``.
- In a stream every chunk may carry ``usage_metadata``, the running totals so far (the last chunk's
  are complete): the latest value of each count wins, never a sum.
- ``response_id`` is the response id, ``model_version`` the model that answered; the finish reason
  is an upper-case enum (``STOP``, ``MAX_TOKENS``, ``SAFETY``...): ``gen_ai.response.finish_reasons``
  has it lower-cased, as OTel's google-genai instrumentation records it, and the output messages the
  semconv value (``_core/_messages.FINISH_REASONS_ENUM``). A function call ends with ``STOP``.
- Reasoning is a part with ``thought=True``; a function call is a ``function_call`` part
  (``name``, ``args`` as an object, an ``id`` only on some APIs).
- The Gemini API's ``batchEmbedContents`` reports no usage (tokens are then counted, marked
  ``estimate``); Vertex AI's embeddings do (``usage_metadata.prompt_token_count``, or
  ``statistics.token_count`` per embedding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import LLMCall
from llmwatch._core._messages import RequestContent
from llmwatch._instrument import _gemini_content as content
from llmwatch._instrument._base import REGISTRY, async_wrapper, sync_wrapper
from llmwatch._instrument._fields import field, fields_of, put_numbers, put_stop_sequences
from llmwatch._policy._providers import host_of, mapped_provider

GEMINI = "gcp.gemini"
VERTEX_AI = "gcp.vertex_ai"
# Numeric request parameters, in ``config``: (field, attribute), and the camelCase a dict may use.
_NUMBER_PARAMS = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("top_k", sc.GEN_AI_REQUEST_TOP_K),
    ("max_output_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS),
    ("seed", sc.GEN_AI_REQUEST_SEED),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
)
_CAMEL_NUMBER_PARAMS = tuple(
    ("".join(w.capitalize() if i else w for i, w in enumerate(name.split("_"))), attribute)
    for name, attribute in _NUMBER_PARAMS
)
_JSON_MIME_TYPES = frozenset({"application/json", "text/x.enum"})


# --- per client: provider and server, once per (base URL, Vertex?) and settings -----------------
_CLIENTS: dict[tuple[Any, bool], tuple[Settings, dict[str, Any]]] = {}


def client_attributes(api_client: Any, settings: Settings) -> dict[str, Any]:
    """``gen_ai.provider.name`` and ``server.address``/``port`` of an SDK API client (cached).

    The provider is the API the client speaks (``vertexai=True``: Vertex AI), unless the user named
    one: ``instrument(client, provider=...)``, or ``configure(providers=...)`` for its base URL or host."""
    base_url = field(getattr(api_client, "_http_options", None), "base_url")  # a model (or a dict in 1.x)
    key = (base_url, getattr(api_client, "vertexai", None) is True)
    cached = _CLIENTS.get(key)
    if cached is None or cached[0] is not settings:
        attributes = {sc.GEN_AI_PROVIDER_NAME: VERTEX_AI if key[1] else GEMINI}
        if isinstance(base_url, str):
            attributes.update(_server(base_url))
            mapped = mapped_provider(base_url, host_of(base_url), settings.providers) if settings.providers else None
            if mapped is not None:
                attributes[sc.GEN_AI_PROVIDER_NAME] = mapped
        if len(_CLIENTS) > 256:
            _CLIENTS.clear()
        cached = _CLIENTS[key] = (settings, attributes)
    if REGISTRY.has_provider_names:
        named = REGISTRY.provider_name(api_client)
        if named is not None:
            return {**cached[1], sc.GEN_AI_PROVIDER_NAME: named}
    return cached[1]


def _server(base_url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(base_url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return {}
    if not host:
        return {}
    return {sc.SERVER_ADDRESS: host, sc.SERVER_PORT: port or (80 if parts.scheme == "http" else 443)}


def _request_attributes(config: Any, attrs: dict[str, Any]) -> None:
    view = fields_of(config)
    put_numbers(attrs, view, _NUMBER_PARAMS)
    if type(config) is dict:
        put_numbers(attrs, config, _CAMEL_NUMBER_PARAMS)
    count = content.get(config, "candidate_count")
    if type(count) is int and count != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = count
    put_stop_sequences(attrs, sc.GEN_AI_REQUEST_STOP_SEQUENCES, content.get(config, "stop_sequences"))
    mime = content.get(config, "response_mime_type")
    structured = mime in _JSON_MIME_TYPES or content.get(config, "response_schema") is not None
    structured = structured or content.get(config, "response_json_schema") is not None
    attrs[sc.GEN_AI_OUTPUT_TYPE] = sc.OUTPUT_JSON if structured else sc.OUTPUT_TEXT


# --- the reply ---------------------------------------------------------------------------------------
def finish_reason(value: Any) -> str | None:
    """Gemini's finish reason (an enum, or its name in a dict) lower-cased: ``STOP`` -> ``stop``."""
    name = getattr(value, "value", value)
    return name.lower() if isinstance(name, str) else None


def record_usage(call: LLMCall, usage: Any) -> None:
    """Gemini usage; in a stream each chunk's counts are running totals: the latest value wins."""
    if usage is None:
        return
    counts = fields_of(usage)
    prompt = counts.get("prompt_token_count")
    if prompt is not None:
        call.input_tokens = prompt + (counts.get("tool_use_prompt_token_count") or 0)
    cached = counts.get("cached_content_token_count")
    if cached is not None:
        call.cache_read_tokens = cached
    candidates = counts.get("candidates_token_count")
    thoughts = counts.get("thoughts_token_count")
    if candidates is None and thoughts is None and call.input_tokens is None:
        return  # no count at all yet
    if candidates is None:  # not in this chunk: the last one reported stands
        candidates = (call.output_tokens or 0) - call.reasoning_tokens
    if thoughts is not None:
        call.reasoning_tokens = thoughts
    call.output_tokens = candidates + call.reasoning_tokens  # thoughts are billed as output
    _record_modalities(call, counts)


def _record_modalities(call: LLMCall, counts: Any) -> None:
    """Gemini's own per-modality breakdown (``prompt_tokens_details``, ``candidates_tokens_details``:
    ``[{modality: TEXT, token_count: 12}, ...]``), kept only where it adds up to the totals (thoughts
    and tool-use prompts carry no modality of their own: then that side stays ``unknown``)."""
    inputs = _modality_counts(counts.get("prompt_tokens_details")) + _modality_counts(
        counts.get("tool_use_prompt_tokens_details")
    )
    outputs = _modality_counts(counts.get("candidates_tokens_details"))
    inputs = inputs if sum(n for _, n in inputs) == call.input_tokens else ()
    outputs = outputs if sum(n for _, n in outputs) == call.output_tokens else ()
    if inputs or outputs:
        call.modalities = (inputs, outputs)


def _modality_counts(details: Any) -> tuple[tuple[str, int], ...]:
    pairs = []
    for entry in details or ():
        modality = field(entry, "modality")
        modality = getattr(modality, "value", modality)
        count = field(entry, "token_count")
        if not isinstance(modality, str) or type(count) is not int:
            return ()  # a breakdown we cannot read whole is no breakdown
        name = modality.lower()
        pairs.append((name if name in sc.TOKEN_MODALITIES else sc.TOKEN_MODALITY_UNKNOWN, count))
    return tuple(pairs)


def record_candidates(call: LLMCall, response: Any) -> bool:
    """Text, thoughts, function calls and finish reason of each candidate; True if any output came."""
    output = False
    for position, candidate in enumerate(field(response, "candidates") or ()):
        index = field(candidate, "index")
        choice = call.choice(index if type(index) is int else position)
        for part in field(field(candidate, "content"), "parts") or ():
            values = fields_of(part)
            text = values.get("text")
            if isinstance(text, str):
                (choice.reasoning if values.get("thought") else choice.text).append(text)
                output = output or bool(text)
                continue
            function_call = values.get("function_call")
            if function_call is not None:
                choice.tool_calls[len(choice.tool_calls)] = {
                    "id": field(function_call, "id"),
                    "name": field(function_call, "name"),
                    "arguments": field(function_call, "args"),
                }
                output = True
        reason = finish_reason(field(candidate, "finish_reason"))
        if reason is not None:
            choice.finish_reason = reason
    return output


class GenerateContent:
    """One ``generateContent`` or ``streamGenerateContent`` request."""

    provider = GEMINI
    operation = sc.OP_GENERATE_CONTENT
    takes_rollouts = True  # a text generation: a rollout's overrides apply (see _base._rollout_request)
    parses = False

    def __init__(self, *, stream: bool) -> None:
        self.stream = stream

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[GenerateContent, dict[str, Any], dict[str, Any], bool, bool]:
        attrs = dict(client_attributes(getattr(instance, "_api_client", None), settings))
        config = kwargs.get("config")
        if config is None:
            attrs[sc.GEN_AI_OUTPUT_TYPE] = sc.OUTPUT_TEXT
        else:
            _request_attributes(config, attrs)
        if self.stream:  # the spec: set iff streaming (llmwatch.stream says both ways)
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        attrs[sc.LLMWATCH_STREAM] = self.stream
        return self, attrs, dict(kwargs), self.stream, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return content.prompt_parts(request)

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_tokens

        return count_tokens(call.model, "".join(self.prompt_parts(call.request)))

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        call.response_id = field(response, "response_id")
        call.response_model = field(response, "model_version")
        record_candidates(call, response)
        record_usage(call, field(response, "usage_metadata"))

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        if call.response_id is None:
            call.response_id = field(chunk, "response_id")
            call.response_model = field(chunk, "model_version")
        if record_candidates(call, chunk):
            call.mark_first_output()
        record_usage(call, field(chunk, "usage_metadata"))
        return False

    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        return content.request_content(request)


class EmbedContent:
    """``embed_content``: input tokens only (when the API reports them), no message content."""

    provider = GEMINI
    operation = sc.OP_EMBEDDINGS
    parses = False

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[EmbedContent, dict[str, Any], dict[str, Any], bool, bool]:
        attrs = dict(client_attributes(getattr(instance, "_api_client", None), settings))
        dimensions = content.get(kwargs.get("config"), "output_dimensionality")
        if type(dimensions) is int:
            attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimensions
        return self, attrs, dict(kwargs), False, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return content.embedded_texts(request.get("contents"))

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_texts_tokens

        return count_texts_tokens(call.model, self.prompt_parts(call.request))

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        prompt = field(field(response, "usage_metadata"), "prompt_token_count")
        if prompt is None:  # Vertex's predict API: a count per embedding
            counts = [field(field(e, "statistics"), "token_count") for e in field(response, "embeddings") or ()]
            if counts and all(isinstance(c, (int, float)) for c in counts):
                prompt = int(sum(counts))
        if isinstance(prompt, int):
            call.input_tokens = prompt

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        return False

    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None:
        return None  # vectors out, inputs in: neither is recorded as messages


GENERATE = GenerateContent(stream=False)
GENERATE_STREAM = GenerateContent(stream=True)
EMBED = EmbedContent()

_MODELS = "google.genai.models"
TARGETS = (
    (_MODELS, "Models", "_generate_content", GENERATE, False),
    (_MODELS, "Models", "_generate_content_stream", GENERATE_STREAM, False),
    (_MODELS, "Models", "embed_content", EMBED, False),
    (_MODELS, "AsyncModels", "_generate_content", GENERATE, True),
    (_MODELS, "AsyncModels", "_generate_content_stream", GENERATE_STREAM, True),
    (_MODELS, "AsyncModels", "embed_content", EMBED, True),
)
CLIENT_CLASSES = (("google.genai.client", "Client"), ("google.genai.client", "AsyncClient"))
SDK_MODULE = "google.genai"
KNOWN_MAJOR_VERSIONS = (1, 2, 3)


def make_wrapper(handler: Any, is_async: bool) -> Any:
    wrap = async_wrapper if is_async else sync_wrapper
    return wrap(handler.prepare, client_attribute="_api_client")


def client_to_mark(client: Any) -> Any:
    """What ``instrument(client)`` marks: the API client a ``genai.Client`` (or its ``aio``) shares
    with its ``models``, ``aio.models`` and chats. Anything else is refused."""
    from google.genai.client import AsyncClient, Client

    if isinstance(client, (Client, AsyncClient)):
        return client._api_client
    kind = f"{type(client).__module__}.{type(client).__qualname__}"
    hint = ""
    if getattr(client, "_api_client", None) is not None:
        hint = " Pass the client itself, e.g. llmwatch.instrument(client), not llmwatch.instrument(client.models)."
    raise TypeError(f"llmwatch.instrument(): {kind} is not a client (expected google.genai.Client).{hint}")
