"""The per-call record: one LLM call, one span, ended exactly once.

``start_call`` opens the record with every attribute a sampler may read (operation, provider, request
model, server address, attribution) before the provider call. Then exactly one of
``finish(response)``, ``record_chunk`` ... ``end_stream(completed)``, or ``fail(exc)`` ends it; later
calls are no-ops, so the many exit paths of a stream (exhausted, closed, ``with`` exit, error,
garbage collection) can all say "end" without ending twice.

Everything here is llmwatch's own code and runs under the internal-error guard. The provider call and
the user's result never pass through it (see the wrappers in ``_instrument``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.trace import Link, Span, SpanKind, Tracer

from llmwatch import _attribution
from llmwatch import _semconv as sc
from llmwatch._health import HEALTH, record_internal_error
from llmwatch._text import clean

if TYPE_CHECKING:
    from llmwatch._core._messages import RequestContent
    from llmwatch._policy._breakers import Admission
    from llmwatch._policy._budget import Budget, Refusal
    from llmwatch._policy._content import ContentPolicy
    from llmwatch._policy._rollouts import Mark


class Handler(Protocol):
    """What a provider module supplies for one kind of call (see ``_instrument/_base.py``)."""

    provider: str
    operation: str

    def on_response(self, call: LLMCall, response: Any) -> None: ...
    def on_chunk(self, call: LLMCall, chunk: Any) -> bool: ...
    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]: ...
    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]: ...
    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None: ...


class Finisher(Protocol):
    """Ends a call's span: the pipeline (``_core/_pipeline.py``), as the record sees it."""

    def run(self, call: LLMCall, end_ns: int) -> None: ...


class CallRuntime(Protocol):
    """What a call keeps of the runtime it started under (``_core/_runtime.Runtime``): a call in flight
    during ``configure()`` ends with its own pipeline and content policy, never the new ones."""

    @property
    def pipeline(self) -> Finisher: ...

    @property
    def content(self) -> ContentPolicy | None: ...

    @property
    def tracer(self) -> Tracer: ...

    @property
    def emit_deprecated_system(self) -> bool: ...


class Choice:
    """Output of one choice, accumulated from a response or from stream deltas."""

    __slots__ = ("finish_reason", "index", "reasoning", "role", "text", "tool_calls")

    def __init__(self, index: int) -> None:
        self.index = index
        self.role = "assistant"
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None


class LLMCall:
    """State of one LLM call between request and end. Slots: this object is made per call."""

    __slots__ = (
        "admission",
        "attribution",
        "budget_exceeded",
        "budget_keys",
        "cache_read_tokens",
        "cache_write_1h_tokens",
        "cache_write_tokens",
        "choices",
        "chunks",
        "ended",
        "error",
        "fallback_cost",
        "first_chunk_ns",
        "first_received_ns",
        "handler",
        "hide_usage_chunk",
        "input_tokens",
        "modalities",
        "output_tokens",
        "provider",
        "reasoning_tokens",
        "refusal",
        "refused",
        "reported_cost_usd",
        "request",
        "request_model",
        "response_attributes",
        "response_id",
        "response_model",
        "rollout",
        "runtime",
        "service_tier",
        "span",
        "start_ns",
        "stream",
        "stream_completed",
        "unpriced_reason",
        "usage_extra",
        "usage_source",
        "usage_unknown",
    )

    def __init__(
        self,
        runtime: CallRuntime,
        handler: Handler,
        request: Mapping[str, Any],
        request_model: str,
        span: Span,
        stream: bool,
        attribution: _attribution.Attribution,
        provider: str,
    ) -> None:
        self.runtime = runtime
        self.handler = handler
        self.provider = provider
        self.request = request
        self.request_model = request_model
        self.span = span
        self.stream = stream
        self.attribution = attribution
        self.start_ns = time.perf_counter_ns()
        self.first_chunk_ns: int | None = None  # the first output (text, reasoning, tool call): llmwatch's TTFT
        self.first_received_ns: int | None = None  # the first chunk of any kind: the spec's time to first chunk
        self.chunks = 0
        self.ended = False
        self.error: BaseException | None = None
        self.hide_usage_chunk = False
        self.budget_exceeded = False
        self.budget_keys: Sequence[tuple[Budget, str]] = ()
        self.refusal: Refusal | None = None
        self.admission: Admission | None = None  # the circuits it went through (circuit breakers)
        self.rollout: Mark | None = None  # the rollout it was sent in, its arm, a shadow to send
        self.refused = False
        self.stream_completed: bool | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.choices: dict[int, Choice] = {}
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.cache_write_1h_tokens = 0
        self.reasoning_tokens = 0
        self.usage_source = sc.USAGE_SOURCE_PROVIDER
        # The tier the provider says it served the call at (OpenAI ``service_tier``, Anthropic
        # ``usage.service_tier``, "batch" for Batch API results): the call is priced at that rate.
        self.service_tier: str | None = None
        # What the provider itself says the call cost (OpenRouter's ``usage.cost``): wins over our price.
        self.reported_cost_usd: float | None = None
        # A cost another layer computed (LiteLLM's ``response_cost``), with its source: used only when
        # llmwatch has no price for the call, so the span says who priced it.
        self.fallback_cost: tuple[float, str] | None = None
        # Provider-specific response attributes an adapter read (``openai.response.service_tier``).
        self.response_attributes: dict[str, Any] | None = None
        # True when nothing was sent or received that tokens could be counted from (an empty
        # ``llm_call`` block): the span then records no usage and no cost rather than an estimate.
        self.usage_unknown = False
        # Billed units besides tokens (``_policy/_pricing.EXTRA_USAGE_KEYS``: audio and image tokens,
        # characters, seconds), as (key, count) pairs: priced with the tokens.
        self.usage_extra: tuple[tuple[str, float], ...] = ()
        # Why a call that was billed cannot be priced (the reply did not say what it billed, e.g. a
        # transcription asked for as plain text): the span says unpriced, and the call is counted so.
        self.unpriced_reason: str | None = None
        # The provider's token breakdown by modality, when it reports one (Gemini's
        # ``prompt_tokens_details``): ((modality, count), ...) for input, then output.
        self.modalities: tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]] | None = None

    # --- accumulation (called by provider handlers) ------------------------------------------------
    def choice(self, index: int) -> Choice:
        found = self.choices.get(index)
        if found is None:
            found = self.choices[index] = Choice(index)
        return found

    def mark_first_output(self) -> None:
        if self.first_chunk_ns is None:
            self.first_chunk_ns = time.perf_counter_ns()

    @property
    def model(self) -> str:
        """The model to price and count by: the response's (a dated snapshot) or the requested."""
        return self.response_model or self.request_model

    # --- endings -------------------------------------------------------------------------------------
    def finish(self, response: Any) -> None:
        """A non-streamed response arrived."""
        if self.ended:
            return
        try:
            self.handler.on_response(self, response)
        except Exception as exc:
            record_internal_error(f"{self.provider} response parsing", exc)
        self._end()

    def record_chunk(self, chunk: Any) -> bool:
        """One stream chunk; True when llmwatch asked for it and the user must not see it."""
        if self.ended:
            return False
        self.chunks += 1
        if self.first_received_ns is None:
            self.first_received_ns = time.perf_counter_ns()
        try:
            return self.handler.on_chunk(self, chunk)
        except Exception as exc:
            record_internal_error(f"{self.provider} chunk parsing", exc)
            return self.hide_usage_chunk and is_requested_usage_chunk(chunk)

    def end_stream(self, completed: bool) -> None:
        if self.ended:
            return
        self.stream_completed = completed
        self._end()

    def fail(self, exc: BaseException) -> None:
        if self.ended:
            return
        self.error = exc
        if self.stream:
            self.stream_completed = False
        self._end()

    def abandon(self) -> None:
        """End a call nobody will finish (its proxy could not be made, or was collected unparsed)."""
        if self.stream:
            self.end_stream(False)
        else:
            self.finish(None)

    def refuse(self, exc: BaseException | None) -> None:
        """The call never reached the provider (budget or kill switch): end the span saying so.

        ``exc`` is what the caller gets (``BudgetExceeded``, ``FeatureDisabled``, or the exception of
        their ``on_exceed`` callable); None when a fallback answer was returned instead.
        """
        if self.ended:
            return
        self.refused = True
        self.error = exc
        self._end()

    def _end(self) -> None:
        self.ended = True
        end_ns = time.perf_counter_ns()
        try:
            self.runtime.pipeline.run(self, end_ns)
        except Exception as exc:
            record_internal_error("span end", exc)
            _end_span_plainly(self.span)


def is_requested_usage_chunk(chunk: Any) -> bool:
    """The usage-only chunk (no choices) of an OpenAI chat stream, read without the handler."""
    try:
        return not getattr(chunk, "choices", True) and getattr(chunk, "usage", None) is not None
    except Exception:
        return False


def _end_span_plainly(span: Span) -> None:
    try:
        if span.is_recording():
            span.end()
            HEALTH.spans_ended.add()
    except Exception as exc:
        record_internal_error("span end fallback", exc)


def start_call(
    runtime: CallRuntime,
    handler: Handler,
    request: Mapping[str, Any],
    request_attributes: dict[str, Any],
    *,
    stream: bool,
    links: Sequence[Link] | None = None,
) -> LLMCall:
    """Open the span and the record for one call (raises only on an llmwatch bug; callers guard).

    The provider is the handler's unless the adapter put ``gen_ai.provider.name`` in the request
    attributes: it knows better when one SDK talks to many providers (the OpenAI SDK's base URL)."""
    attribution = _attribution.current()
    attrs = request_attributes
    # ``model`` names the model in most SDKs; an adapter whose SDK calls it otherwise (Bedrock's
    # ``modelId``) puts it in the request attributes.
    request_model = clean(str(attrs.get(sc.GEN_AI_REQUEST_MODEL) or request.get("model") or "unknown"))
    attrs[sc.GEN_AI_OPERATION_NAME] = handler.operation
    provider = attrs.setdefault(sc.GEN_AI_PROVIDER_NAME, handler.provider)
    attrs[sc.GEN_AI_REQUEST_MODEL] = request_model
    if runtime.emit_deprecated_system:
        attrs[sc.GEN_AI_SYSTEM_DEPRECATED] = provider
    attrs.update(attribution.span_attributes)
    span = runtime.tracer.start_span(
        f"{handler.operation} {request_model}", kind=SpanKind.CLIENT, attributes=attrs, links=links
    )
    HEALTH.spans_started.add()
    return LLMCall(runtime, handler, request, request_model, span, stream, attribution, provider)
