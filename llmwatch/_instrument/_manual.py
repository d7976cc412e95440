"""``llmwatch.llm_call``: the same span, tokens, cost and metrics for a provider we do not wrap.

For a local vLLM, a raw HTTP call, Bedrock through boto3...::

    with llmwatch.llm_call(provider="vllm", model="llama-3-8b") as call:
        call.set_input(messages)
        reply = my_client.generate(messages)
        call.set_output(reply.text, input_tokens=reply.usage.prompt, output_tokens=reply.usage.completion)

Tokens the caller does not give are counted (tiktoken for known OpenAI models, else estimated, and
the span says which). An exception inside the block marks the span failed and propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._core import _lifecycle, _runtime
from llmwatch._core._call import LLMCall, start_call
from llmwatch._core._messages import Message, RequestContent, Text
from llmwatch._health import record_internal_error
from llmwatch._instrument._fields import field, text_of
from llmwatch._policy._budget import RULES
from llmwatch._text import clean

Messages = str | Sequence[Mapping[str, Any]]


class ManualHandler:
    """Handler for one ``llm_call``: messages in the common ``{"role", "content"}`` shape."""

    def __init__(self, provider: str, operation: str) -> None:
        self.provider = clean(provider)
        self.operation = clean(operation)

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        parts: list[str] = []
        for message in request.get("messages") or ():
            parts.append(str(field(message, "role") or ""))
            parts.append(text_of(field(message, "content")))
        return parts

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_message_tokens

        return count_message_tokens(call.model, list(call.request.get("messages") or ()))

    def on_response(self, call: LLMCall, response: Any) -> None:
        return None

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        return False

    def request_content(self, request: Mapping[str, Any]) -> RequestContent:
        return RequestContent(
            messages=[
                Message(str(field(m, "role") or "user"), [Text(text_of(field(m, "content")))])
                for m in request.get("messages") or ()
            ]
        )


def _as_messages(value: Messages) -> list[Mapping[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value)


class ManualCall:
    """The handle ``llm_call`` gives: record input, output, usage and the first token.

    Budgets and kill switches apply on entering the block: ``BudgetExceeded``/``FeatureDisabled`` is
    raised by the ``with`` statement itself, before your call is made. When a budget's ``on_exceed``
    callable answered instead, ``call.fallback`` holds that answer: use it and skip your call.
    """

    def __init__(self, provider: str, model: str, operation: str, stream: bool, server_address: str | None) -> None:
        self._request: dict[str, Any] = {"model": model, "messages": []}
        self._handler = ManualHandler(provider, operation)
        self._stream = stream
        self._server_address = server_address
        self._call: LLMCall | None = None
        # What a budget's on_exceed callable answered instead of the call (None: make the call).
        self.fallback: Any = None

    def _open(self) -> None:
        try:
            attrs: dict[str, Any] = {sc.LLMWATCH_STREAM: self._stream}
            if self._stream:  # the spec: set iff streaming
                attrs[sc.GEN_AI_REQUEST_STREAM] = True
            if self._server_address:
                attrs[sc.SERVER_ADDRESS] = self._server_address
            self._call = start_call(_runtime.CURRENT, self._handler, self._request, attrs, stream=self._stream)
        except Exception as exc:
            record_internal_error("llm_call start", exc)
            return
        if RULES.active:
            _lifecycle.check(self._call)

    def _refusal(self) -> LLMCall | None:
        call = self._call
        return call if call is not None and call.refusal is not None else None

    def _keep_fallback(self, outcome: Any) -> None:
        if outcome is not _lifecycle.PROCEED:
            self.fallback = outcome

    def set_input(self, messages: Messages) -> None:
        """The prompt: a string, or a list of ``{"role": ..., "content": ...}`` messages."""
        try:
            self._request["messages"] = _as_messages(messages)
        except Exception as exc:
            record_internal_error("llm_call set_input", exc)

    def record_first_token(self) -> None:
        """Mark now as the arrival of the first output (time to first token)."""
        if self._call is not None:
            self._call.mark_first_output()

    def set_output(
        self,
        output: str | Sequence[Mapping[str, Any]] | None = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        response_model: str | None = None,
        response_id: str | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """The completion and, when the provider reported them, its token counts."""
        call = self._call
        if call is None:
            return
        try:
            choice = call.choice(0)
            for message in _as_messages(output) if output is not None else ():
                choice.text.append(text_of(field(message, "content")))
            choice.finish_reason = finish_reason or choice.finish_reason
            call.response_model = response_model or call.response_model
            call.response_id = response_id or call.response_id
            if input_tokens is not None:
                call.input_tokens = input_tokens
            if output_tokens is not None:
                call.output_tokens = output_tokens
            call.cache_read_tokens = cache_read_tokens or 0
            call.cache_write_tokens = cache_write_tokens or 0
            call.reasoning_tokens = reasoning_tokens or 0
        except Exception as exc:
            record_internal_error("llm_call set_output", exc)

    def _close(self, exc: BaseException | None) -> None:
        call = self._call
        if call is None:
            return
        if not self._request["messages"] and not call.choices and call.input_tokens is None:
            call.usage_unknown = True  # nothing recorded: no estimate of nothing, no cost
        if exc is not None:
            call.fail(exc)
        elif call.stream:
            call.end_stream(True)
        else:
            call.finish(None)

    def __enter__(self) -> ManualCall:
        self._open()
        refused = self._refusal()
        if refused is not None:  # budget or kill switch: raises here, or leaves the fallback answer
            self._keep_fallback(_lifecycle.accept(refused, _lifecycle.settle(refused)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close(exc)

    async def __aenter__(self) -> ManualCall:
        self._open()
        refused = self._refusal()
        if refused is not None:
            self._keep_fallback(_lifecycle.accept(refused, await _lifecycle.settle_async(refused)))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close(exc)


def llm_call(
    *,
    provider: str,
    model: str,
    operation: str = sc.OP_CHAT,
    stream: bool = False,
    server_address: str | None = None,
) -> ManualCall:
    """Record one LLM call made by code llmwatch does not wrap (``with`` or ``async with``)."""
    if not provider or not model:
        raise ValueError("llmwatch.llm_call(): provider and model are required")
    return ManualCall(provider, model, operation, stream, server_address)
