"""What a call used and what it cost: the token, cost and budget steps of the pipeline.

Tokens come from the provider's usage when it reports them, else tiktoken, else an estimate (the span
says which). Cost is priced by ``_policy/_pricing.py`` at the tier the provider served, unless the
provider reported the cost itself; the budget step then charges it to the scopes the call was checked
against before it started. Under ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` the cost
is also written with the proposed ``gen_ai.usage.cost.*`` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmwatch import _semconv as sc
from llmwatch._policy._budget import charge
from llmwatch._policy._pricing import UNPRICED, Usage

if TYPE_CHECKING:
    from llmwatch._core._call import LLMCall
    from llmwatch._policy._pricing import Price, PriceBook


class UsageStep:
    """Provider usage when reported; else tiktoken, else an estimate (and say which).

    Cache writes go by the names the semconv opt-in asks for: v1.41's
    ``gen_ai.usage.cache_creation.input_tokens`` by default, the GenAI repo's
    ``gen_ai.usage.cache_write.input_tokens`` under ``gen_ai_latest_experimental``, both under ``/dup``.
    Never both by default: backends that sum every ``gen_ai.usage.*`` count (Langfuse) would count
    the cache writes twice."""

    def __init__(self, naming: sc.Naming) -> None:
        self._cache_write_names = tuple(
            name
            for name, on in (
                (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, naming.v141),
                (sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, naming.latest),
            )
            if on
        )

    def __call__(self, call: LLMCall, attrs: dict[str, Any]) -> None:
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
            for name in self._cache_write_names:
                attrs[name] = call.cache_write_tokens
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

    def __init__(self, prices: PriceBook, *, cost_attributes: bool = False) -> None:
        self._prices = prices
        self._cost_attributes = cost_attributes  # also gen_ai.usage.cost.* (gen_ai_latest_experimental)

    def __call__(self, call: LLMCall, attrs: dict[str, Any]) -> None:
        self._price(call, attrs)
        if self._cost_attributes and sc.LLMWATCH_COST_USD in attrs:
            attrs[sc.GEN_AI_USAGE_COST_AMOUNT] = attrs[sc.LLMWATCH_COST_USD]
            attrs[sc.GEN_AI_USAGE_COST_CURRENCY] = sc.COST_CURRENCY_USD
            provider_reported = attrs.get(sc.LLMWATCH_COST_SOURCE) == sc.COST_SOURCE_PROVIDER
            attrs[sc.GEN_AI_USAGE_COST_SOURCE] = sc.COST_SOURCE_PROVIDER if provider_reported else sc.COST_SOURCE_LOCAL

    def _price(self, call: LLMCall, attrs: dict[str, Any]) -> None:
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
