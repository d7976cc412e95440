"""Cost arithmetic: the resolved float coefficients must agree with genai-prices' own calc_price."""

from __future__ import annotations

import datetime as dt

import pytest
from genai_prices import Usage as PricesUsage
from genai_prices import calc_price

import llmwatch
from llmwatch._policy._pricing import PriceBook, Usage, override_price

CASES = [
    ("openai", "gpt-4o-mini", Usage(input_tokens=1200, cache_read_tokens=400, output_tokens=300)),
    ("openai", "gpt-4o-mini-2024-07-18", Usage(input_tokens=10, output_tokens=3)),
    (
        "openai",
        "o3-mini",
        Usage(input_tokens=5000, cache_read_tokens=1000, output_tokens=900, output_reasoning_tokens=700),
    ),
    ("openai", "text-embedding-3-small", Usage(input_tokens=812)),
    (
        "anthropic",
        "claude-sonnet-4-5",
        Usage(
            input_tokens=1700,
            cache_read_tokens=1000,
            cache_write_tokens=500,
            cache_write_1h_tokens=200,
            output_tokens=70,
        ),
    ),
    ("anthropic", "claude-sonnet-4-5", Usage(input_tokens=250_000, output_tokens=1000)),  # past the 200k tier
    ("anthropic", "claude-3-5-haiku-latest", Usage(input_tokens=300, cache_write_tokens=100, output_tokens=50)),
]


def _reference(provider: str, model: str, usage: Usage) -> float:
    counts = {k: getattr(usage, k) for k in usage.__slots__ if getattr(usage, k)}
    return float(calc_price(PricesUsage(**counts), model, provider_id=provider).total_price)


@pytest.mark.parametrize(("provider", "model", "usage"), CASES)
def test_cost_matches_genai_prices(provider: str, model: str, usage: Usage) -> None:
    price = PriceBook().lookup(provider, model)
    assert price is not None
    cost = price.cost(usage)
    assert cost.total_usd == pytest.approx(_reference(provider, model, usage), abs=1e-9)
    assert cost.input_usd + cost.output_usd == pytest.approx(cost.total_usd, abs=1e-12)


def test_unknown_model_and_provider_have_no_price() -> None:
    book = PriceBook()
    assert book.lookup("openai", "no-such-model-xyz") is None
    assert book.lookup("vllm", "llama-3-8b") is None


def test_overrides_win_and_specific_key_beats_model_name() -> None:
    book = PriceBook(
        {"gpt-4o-mini": {"input": 1.0, "output": 2.0}, "openai/gpt-4o-mini": {"input": 3.0, "output": 4.0}}
    )
    price = book.lookup("openai", "gpt-4o-mini")
    assert price is not None and price.source == "override"
    assert price.cost(Usage(input_tokens=1_000_000, output_tokens=1_000_000)).total_usd == pytest.approx(7.0)
    other = book.lookup("azure.ai.openai", "gpt-4o-mini")
    assert other is not None
    assert other.cost(Usage(input_tokens=1_000_000)).total_usd == pytest.approx(1.0)


def test_override_cache_and_reasoning_rates() -> None:
    price = override_price({"input": 1.0, "output": 4.0, "cache_read": 0.5, "cache_write": 2.0, "reasoning": 8.0}, "x")
    cost = price.cost(
        Usage(
            input_tokens=1_000_000,
            cache_read_tokens=200_000,
            cache_write_tokens=100_000,
            output_tokens=1_000_000,
            output_reasoning_tokens=500_000,
        )
    )
    # input: 700k*1 + 200k*0.5 + 100k*2 = 1.0 ; output: 500k*4 + 500k*8 = 6.0
    assert cost.input_usd == pytest.approx(1.0)
    assert cost.output_usd == pytest.approx(6.0)


def test_lookup_is_cached() -> None:
    book = PriceBook()
    assert book.lookup("openai", "gpt-4o") is book.lookup("openai", "gpt-4o")


def test_stats_say_how_current_the_price_table_is() -> None:
    prices = llmwatch.stats()["prices"]
    assert prices["source"] == "genai-prices" and prices["loaded"] is True
    assert prices["latest_price_change"] <= dt.date.today().isoformat()
    assert prices["scheduled_price_changes"] >= 0
