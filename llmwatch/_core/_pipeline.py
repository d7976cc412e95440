"""The steps that turn an ended call record into span attributes, metrics and budget totals.

Fixed at ``configure()``: usage -> tokens -> cost -> stream timing -> budget -> content (only when
capture is on); then the span ends and the metrics record. Each step is guarded on its own, so a
failing step costs its own attributes (and is counted in ``llmwatch.stats()``), never the span.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Status, StatusCode

from llmwatch import _semconv as sc
from llmwatch._core._messages import content_attributes
from llmwatch._health import HEALTH, record_internal_error
from llmwatch._policy._budget import REASON_BUDGET, charge
from llmwatch._policy._pricing import UNPRICED, Usage
from llmwatch._text import clean, clean_value, error_description, exception_event_overrides

if TYPE_CHECKING:
    from opentelemetry._logs import Logger

    from llmwatch._core._call import LLMCall
    from llmwatch._core._content_hook import ContentHook
    from llmwatch._core._messages import RequestContent
    from llmwatch._export._metrics import Metrics
    from llmwatch._policy._content import ContentPolicy
    from llmwatch._policy._pricing import Price, PriceBook

Step = Callable[["LLMCall", dict[str, Any]], None]


def response_step(call: LLMCall, attrs: dict[str, Any]) -> None:
    # Strings the provider sent: cleaned, since a JSON body may carry a lone surrogate escape.
    if call.response_id is not None:
        attrs[sc.GEN_AI_RESPONSE_ID] = clean(str(call.response_id))
    if call.response_model is not None:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = clean(str(call.response_model))
    if call.choices:
        # One reason per choice, in position: a choice cut before its finish reason (a failed or
        # abandoned stream, a choice that never arrived) keeps its place as the spec's "error".
        choices = call.choices
        top = max(choices)
        positions = range(top + 1) if top < 2 * len(choices) + 8 else sorted(choices)  # a bogus index: no gaps
        reasons = [c.finish_reason if (c := choices.get(i)) is not None else None for i in positions]
        cut = call.error is not None or call.stream_completed is False
        if cut or any(r is not None for r in reasons):
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = clean_value([r if r is not None else "error" for r in reasons])
    if call.response_attributes is not None:  # provider-specific ones (openai.response.service_tier)
        for key, value in call.response_attributes.items():
            attrs[key] = clean_value(value)


def usage_step(call: LLMCall, attrs: dict[str, Any]) -> None:
    """Provider usage when reported; else tiktoken, else an estimate (and say which)."""
    if call.input_tokens is None and not call.choices and (call.error is not None or call.usage_unknown):
        return  # a failed or empty call with no output: nothing was generated and nothing is known
    if call.input_tokens is None:
        call.input_tokens, call.usage_source = call.handler.count_input_tokens(call)
    if call.output_tokens is None:
        call.output_tokens, source = _count_output_tokens(call)
        if call.usage_source == sc.USAGE_SOURCE_PROVIDER or source == sc.USAGE_SOURCE_ESTIMATE:
            call.usage_source = source
    attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = call.input_tokens
    if call.handler.operation != sc.OP_EMBEDDINGS:  # the embeddings span convention has input tokens only
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = call.output_tokens
    if call.cache_read_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = call.cache_read_tokens
    if call.cache_write_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = call.cache_write_tokens
        attrs[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = call.cache_write_tokens
    if call.reasoning_tokens:
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = call.reasoning_tokens
    attrs[sc.LLMWATCH_USAGE_SOURCE] = call.usage_source


def _count_output_tokens(call: LLMCall) -> tuple[int, str]:
    from llmwatch._policy._tokens import count_tokens

    text = "".join("".join(choice.text) for choice in call.choices.values())
    tool_args = "".join(
        str(tool.get("arguments") or "") for choice in call.choices.values() for tool in choice.tool_calls.values()
    )
    if call.handler.operation == sc.OP_EMBEDDINGS:
        return 0, sc.USAGE_SOURCE_PROVIDER
    return count_tokens(call.model, text + tool_args)


class CostStep:
    """Prices the call by the response model, falling back to the requested one, at the tier the
    provider served it at. A cost the provider reported itself wins; a call nobody can price says so
    on the span and is counted (``llmwatch.calls.unpriced``, ``stats()["prices"]``)."""

    def __init__(self, prices: PriceBook) -> None:
        self._prices = prices

    def __call__(self, call: LLMCall, attrs: dict[str, Any]) -> None:
        if call.unpriced_reason is not None:  # billed, but the reply did not say for what
            attrs[sc.LLMWATCH_COST_UNKNOWN_MODEL] = True
            attrs[sc.LLMWATCH_COST_UNPRICED_REASON] = call.unpriced_reason
            UNPRICED.add(call.provider, call.model)
            return
        if call.input_tokens is None:
            return
        provider = call.provider
        price = self._prices.lookup(provider, call.model, call.service_tier)
        if price is None and call.response_model is not None:
            price = self._prices.lookup(provider, call.request_model, call.service_tier)
        if call.reported_cost_usd is not None:
            self._reported(call.reported_cost_usd, price, call, attrs)
            return
        if price is None:
            attrs[sc.LLMWATCH_COST_UNKNOWN_MODEL] = True
            UNPRICED.add(provider, call.model)
            return
        cost = price.cost(_usage(call))
        attrs[sc.LLMWATCH_COST_USD] = cost.total_usd
        attrs[sc.LLMWATCH_COST_INPUT_USD] = cost.input_usd
        attrs[sc.LLMWATCH_COST_OUTPUT_USD] = cost.output_usd
        attrs[sc.LLMWATCH_COST_SOURCE] = price.source

    @staticmethod
    def _reported(total_usd: float, price: Price | None, call: LLMCall, attrs: dict[str, Any]) -> None:
        attrs[sc.LLMWATCH_COST_USD] = total_usd
        attrs[sc.LLMWATCH_COST_SOURCE] = sc.COST_SOURCE_PROVIDER
        if price is None:
            return
        ours = price.cost(_usage(call))  # only to split the provider's total into input and output
        if ours.total_usd > 0:
            attrs[sc.LLMWATCH_COST_INPUT_USD] = total_usd * ours.input_usd / ours.total_usd
            attrs[sc.LLMWATCH_COST_OUTPUT_USD] = total_usd * ours.output_usd / ours.total_usd


def _usage(call: LLMCall) -> Usage:
    return Usage(
        input_tokens=call.input_tokens or 0,
        cache_read_tokens=call.cache_read_tokens,
        cache_write_tokens=call.cache_write_tokens,
        cache_write_1h_tokens=call.cache_write_1h_tokens,
        output_tokens=call.output_tokens or 0,
        output_reasoning_tokens=call.reasoning_tokens,
        extra=call.usage_extra,
    )


def budget_step(call: LLMCall, attrs: dict[str, Any]) -> None:
    """Count the cost against the budgets the call was checked against (before it started)."""
    if not call.budget_keys:
        return
    cost = attrs.get(sc.LLMWATCH_COST_USD)
    if cost is not None and charge(call.budget_keys, cost):
        attrs[sc.LLMWATCH_BUDGET_EXCEEDED] = True  # this call took its scope to the limit


def stream_step(call: LLMCall, attrs: dict[str, Any]) -> None:
    if not call.stream:
        return
    attrs[sc.LLMWATCH_STREAM_COMPLETED] = bool(call.stream_completed)
    attrs[sc.LLMWATCH_STREAM_CHUNKS] = call.chunks
    # Two clocks: llmwatch's time to first token counts to the first output (what a user waits for);
    # the spec's time to first chunk to the first chunk received, whatever it carries (a preamble
    # event too). An llm_call stream has no chunks: its first token is its first chunk.
    if call.first_chunk_ns is not None:
        attrs[sc.LLMWATCH_TIME_TO_FIRST_TOKEN_MS] = (call.first_chunk_ns - call.start_ns) / 1e6
    first_received = call.first_received_ns if call.first_received_ns is not None else call.first_chunk_ns
    if first_received is not None:
        attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (first_received - call.start_ns) / 1e9


def fingerprint_step(call: LLMCall, attrs: dict[str, Any]) -> None:
    from llmwatch._policy._content import fingerprint

    parts = call.handler.prompt_parts(call.request)
    if any(parts):  # no prompt recorded (an llm_call without set_input): no fingerprint of nothing
        attrs[sc.LLMWATCH_PROMPT_FINGERPRINT] = fingerprint(parts)


class ContentStep:
    """Messages, system instructions and tool definitions, in the semconv shape (opt-in), put where
    the call's destination says: span attributes (JSON text), the
    ``gen_ai.client.inference.operation.details`` log event (structured values, ``_content_events``),
    or both, from one rendering.

    The adapter only reads the request into neutral data (``handler.request_content``); rendering
    (``_messages``) runs here, under this step's policy, never the global one."""

    def __init__(
        self,
        policy: ContentPolicy,
        destination: str = sc.CONTENT_SPAN,
        logger: Logger | None = None,
        hook: ContentHook | None = None,
    ) -> None:
        self.policy = policy
        self.hook = hook
        self.to_span = destination != sc.CONTENT_EVENT
        # No logger (events wanted but nowhere to send them): the event is not made at all.
        self.logger = logger if destination != sc.CONTENT_SPAN else None
        if self.logger is not None:  # imported only then: the Logs API costs `import llmwatch` ~8 ms
            from llmwatch._core import _content_events

            self.events = _content_events

    def __call__(self, call: LLMCall, attrs: dict[str, Any]) -> None:
        if self.logger is None and self.hook is None:
            if self.to_span:
                attrs.update(self._fitted(call, self.policy)[1])
            return
        structured, texts = self._fitted(call, self.policy.structured())
        if self.hook is not None:  # references stand in for the content they name, here and in the event
            structured, texts = self._hand_to_hook(call, structured, texts, attrs)
        if self.to_span:
            attrs.update(texts)
        if self.logger is not None:
            error = error_type(call.error) if call.error is not None else None
            self.events.emit(self.logger, call, self.events.event_attributes(call, attrs, structured, error))

    def _hand_to_hook(
        self, call: LLMCall, structured: dict[str, Any], texts: dict[str, Any], attrs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from llmwatch._core._content_hook import REFERENCES, ContentRecord

        assert self.hook is not None
        span_context = call.span.get_span_context()
        refs = self.hook.references(span_context)
        self.hook.submit(ContentRecord(span_context, structured, refs))
        if not refs:
            return structured, texts
        attrs.update(refs)  # on the span whatever the destination: pointers, not content
        replaced = {REFERENCES[ref] for ref in refs}
        kept = {key: value for key, value in structured.items() if key not in replaced}
        return {**kept, **refs}, {key: value for key, value in texts.items() if key not in replaced}

    def _fitted(self, call: LLMCall, policy: ContentPolicy) -> tuple[dict[str, Any], dict[str, Any]]:
        """The content rendered under ``policy`` (structured or JSON text) and as span attributes
        (JSON text), within the span's content budget (the event's too: one rendering for both)."""
        request = call.handler.request_content(call.request)  # neutral data, read once
        while True:
            content = self._content(call, request, policy)
            texts = {key: v if isinstance(v, str) else self.policy.json(v) for key, v in content.items()}
            # Over the span's content budget: halve the per-text limit until it fits, so every
            # attribute stays valid JSON (cutting the serialised JSON itself would not).
            if _size(texts) <= policy.max_span_chars or policy.max_chars <= _MIN_TEXT_CHARS:
                return content, texts
            policy = policy.with_max_chars(max(policy.max_chars // 2, _MIN_TEXT_CHARS))

    def _content(self, call: LLMCall, request: RequestContent | None, policy: ContentPolicy) -> dict[str, Any]:
        content: dict[str, Any] = {}
        if request is not None:  # None: a call with no message content (embeddings)
            failed = call.error is not None or call.stream_completed is False
            content = content_attributes(request, call.choices, failed, policy)
        prompt = call.attribution.prompt
        if prompt is not None and prompt.variables:
            content[sc.LLMWATCH_PROMPT_VARIABLES] = policy.json(policy.any_value(dict(prompt.variables)))
        return content


_MIN_TEXT_CHARS = 64


def _size(content: dict[str, Any]) -> int:
    return sum(len(value) for value in content.values() if isinstance(value, str))


class Pipeline:
    """The ordered steps; ``run`` ends the span and records metrics."""

    def __init__(
        self,
        steps: tuple[Step, ...],
        metrics: Metrics | None,
        after_end: tuple[Callable[[LLMCall, dict[str, Any]], None], ...] = (),
    ) -> None:
        self.steps = steps
        self.metrics = metrics
        self.after_end = after_end

    def run(self, call: LLMCall, end_ns: int) -> None:
        if call.refused:
            self._end_refused(call)
            return
        attrs: dict[str, Any] = {}
        for step in self.steps:
            try:
                step(call, attrs)
            except Exception as exc:
                record_internal_error(f"pipeline step {getattr(step, '__name__', type(step).__name__)}", exc)
        if call.budget_exceeded:
            attrs[sc.LLMWATCH_BUDGET_EXCEEDED] = True
        span = call.span
        error = call.error
        if error is not None:
            attrs[sc.ERROR_TYPE] = error_type(error)
        span.set_attributes(attrs)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error_description(error)))
            span.record_exception(error, attributes=exception_event_overrides(error))
        span.end()
        HEALTH.spans_ended.add()
        duration_s = (end_ns - call.start_ns) / 1e9
        if self.metrics is not None:
            self._record_metrics(call, attrs, duration_s)
        for hook in self.after_end:
            try:
                hook(call, attrs)
            except Exception as exc:
                record_internal_error("after-call hook", exc)

    def _end_refused(self, call: LLMCall) -> None:
        """A call refused before any I/O: a short span with the refusal event, and the refusal metric.

        No tokens, cost or duration metrics: nothing was sent. The prompt fingerprint still links it.
        """
        refusal = call.refusal
        attrs: dict[str, Any] = {}
        try:
            fingerprint_step(call, attrs)
        except Exception as exc:
            record_internal_error("pipeline step fingerprint_step", exc)
        span = call.span
        if refusal is not None:
            if refusal.reason == REASON_BUDGET:
                attrs[sc.LLMWATCH_BUDGET_EXCEEDED] = True
            span.add_event(
                sc.LLMWATCH_REFUSED_EVENT,
                {sc.LLMWATCH_REFUSAL_REASON: refusal.reason, sc.LLMWATCH_BUDGET_SCOPE: refusal.scope},
            )
        if call.error is None:
            attrs[sc.LLMWATCH_BUDGET_FALLBACK] = True
        else:
            attrs[sc.ERROR_TYPE] = error_type(call.error)
            span.set_status(Status(StatusCode.ERROR, error_description(call.error)))
        span.set_attributes(attrs)
        span.end()
        HEALTH.spans_ended.add()
        HEALTH.calls_refused.add()
        if self.metrics is not None and refusal is not None:
            try:
                self.metrics.record_refusal(self._metric_attributes(call), refusal.reason)
            except Exception as exc:
                record_internal_error("metrics", exc)

    def _metric_attributes(self, call: LLMCall) -> dict[str, Any]:
        metric_attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: call.handler.operation,
            sc.GEN_AI_PROVIDER_NAME: call.provider,
            sc.GEN_AI_REQUEST_MODEL: call.request_model,
        }
        if call.attribution.feature is not None:
            metric_attrs[sc.LLMWATCH_FEATURE] = call.attribution.feature
        return metric_attrs

    def _record_metrics(self, call: LLMCall, attrs: dict[str, Any], duration_s: float) -> None:
        assert self.metrics is not None
        metric_attrs = self._metric_attributes(call)
        if call.response_model is not None:
            metric_attrs[sc.GEN_AI_RESPONSE_MODEL] = call.response_model
        error = attrs.get(sc.ERROR_TYPE)
        if error is not None:
            metric_attrs[sc.ERROR_TYPE] = error
        ttfc = attrs.get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
        try:
            self.metrics.record_call(
                metric_attrs,
                user=call.attribution.user,
                # A batch result ran on the provider's side, hours before it was recorded: no latency sample.
                duration_s=None if call.service_tier == "batch" else duration_s,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cost_usd=attrs.get(sc.LLMWATCH_COST_USD),
                ttfc_s=ttfc,
                unpriced=sc.LLMWATCH_COST_UNKNOWN_MODEL in attrs,
            )
        except Exception as exc:
            record_internal_error("metrics", exc)


def error_type(error: BaseException) -> str:
    """The SDK exception's class name, unless the class is a generic one: then botocore's error code
    (``ThrottlingException``), else the HTTP status (openai's ``APIStatusError``, google-genai's
    ``ClientError`` for every 4xx)."""
    name = type(error).__name__
    if name not in _GENERIC_ERRORS:
        return name
    code = _botocore_error_code(error)
    if code is not None:
        return code
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        status = getattr(error, "code", None)
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        return str(status)
    return name


_GENERIC_ERRORS = frozenset({"APIStatusError", "APIError", "ClientError", "ServerError", "EventStreamError"})


def _botocore_error_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    details = response.get("Error")
    code = details.get("Code") if isinstance(details, dict) else None
    return clean(code) if isinstance(code, str) and code else None
