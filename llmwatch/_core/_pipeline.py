"""The steps that turn an ended call record into span attributes, metrics and budget totals.

Fixed at ``configure()``: response -> usage -> cost -> budget (``_usage_cost.py``) -> stream timing
-> fingerprint -> content (only when capture is on) -> backend compatibility (only when asked); then the
span ends and the metrics record. Each step is guarded on its own, so a failing step costs its own
attributes (and is counted in ``llmwatch.stats()``), never the span.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Status, StatusCode

from llmwatch import _semconv as sc
from llmwatch._core import _rollout_step
from llmwatch._core._messages import content_attributes
from llmwatch._core._provider_stats import PROVIDERS
from llmwatch._health import HEALTH, record_internal_error
from llmwatch._policy._budget import REASON_BUDGET, REASON_CIRCUIT
from llmwatch._policy._outcomes import IGNORED, outcome
from llmwatch._text import clean, clean_value, error_description, exception_event_overrides

if TYPE_CHECKING:
    from opentelemetry._logs import Logger

    from llmwatch._core._call import LLMCall
    from llmwatch._core._content_hook import ContentHook
    from llmwatch._core._messages import RequestContent
    from llmwatch._export._metrics import Metrics, TokenDetails
    from llmwatch._policy._content import ContentPolicy

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
        admission = call.admission
        if admission is not None and admission.probes is not None:
            # Only a probe says so: "closed" on every call would cost each span an attribute (~1.5 us
            # in the SDK) to say what the absence already says.
            attrs[sc.LLMWATCH_CIRCUIT_STATE] = admission.state
        span = call.span
        error = call.error
        if error is not None:
            attrs[sc.ERROR_TYPE] = error_type(error)
        duration_s = (end_ns - call.start_ns) / 1e9
        result = _outcome(error, call.stream_completed)  # what the call says of its provider
        decided = _record_rollout(call, attrs, result, duration_s) if call.rollout is not None else None
        span.set_attributes(attrs)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error_description(error)))
            span.record_exception(error, attributes=exception_event_overrides(error))
        span.end()
        HEALTH.spans_ended.add()
        try:
            if admission is not None:
                admission.record(result)
            if call.service_tier != "batch":  # a batch result ran hours ago, on the provider's clock
                PROVIDERS.record(call.provider, result, duration_s)
            if decided is not None:
                _rollout_step.announce(call, decided)
        except Exception as exc:
            record_internal_error("call outcome", exc)
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
        circuit = refusal is not None and refusal.reason == REASON_CIRCUIT
        if refusal is not None:
            if refusal.reason == REASON_BUDGET:
                attrs[sc.LLMWATCH_BUDGET_EXCEEDED] = True
            elif circuit:
                attrs[sc.LLMWATCH_CIRCUIT_STATE] = getattr(refusal.error, "state", sc.CIRCUIT_OPEN)
                attrs[sc.LLMWATCH_CIRCUIT_SCOPE] = refusal.scope
            scope_key = sc.LLMWATCH_CIRCUIT_SCOPE if circuit else sc.LLMWATCH_BUDGET_SCOPE
            span.add_event(
                sc.LLMWATCH_REFUSED_EVENT, {sc.LLMWATCH_REFUSAL_REASON: refusal.reason, scope_key: refusal.scope}
            )
        if call.error is None:
            attrs[sc.LLMWATCH_CIRCUIT_FALLBACK if circuit else sc.LLMWATCH_BUDGET_FALLBACK] = True
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
        if call.rollout is not None:  # dashboards compare the arms by these two
            metric_attrs[sc.LLMWATCH_ROLLOUT_NAME] = call.rollout.rollout.name
            metric_attrs[sc.LLMWATCH_ROLLOUT_ARM] = call.rollout.arm
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
                details=_token_details(call) if self.metrics.inference_tokens is not None else None,
            )
        except Exception as exc:
            record_internal_error("metrics", exc)


def _token_details(call: LLMCall) -> TokenDetails:
    from llmwatch._export._metrics import TokenDetails

    inputs, outputs = call.modalities or ((), ())
    return TokenDetails(call.cache_read_tokens, call.cache_write_tokens, call.reasoning_tokens, inputs, outputs)


def _outcome(error: BaseException | None, stream_completed: bool | None) -> str:
    try:
        return outcome(error, stream_completed)
    except Exception as exc:
        record_internal_error("call outcome", exc)
        return IGNORED


def _record_rollout(call: LLMCall, attrs: dict[str, Any], result: str, duration_s: float) -> dict[str, Any] | None:
    try:
        return _rollout_step.record(call, attrs, result, duration_s)
    except Exception as exc:
        record_internal_error("rollout", exc)
        return None


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
