"""Price lookup and cost arithmetic.

Prices come from the ``genai-prices`` package (maintained data: cached and reasoning tokens, tiers),
overridden by the user's ``prices=``. Importing genai-prices costs a few hundred milliseconds, so it
is imported in the background at ``configure()`` and never at ``import llmwatch``.

Each (provider, model) is resolved once into a :class:`Price`: a few float coefficients, one per
usage count we report. genai-prices prices a call as a sum over its priced units, each a linear
function of the usage counts, so we *measure* the coefficients once by asking genai-prices to price
small probe usages; after that a call costs a handful of float multiplications and matches
``genai_prices.calc_price`` exactly (to float rounding). Tiered prices (e.g. above 200k input tokens)
are only linear within a tier: calls past the first tier threshold are priced by genai-prices itself.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from llmwatch import _forking
from llmwatch._policy._providers import price_provider_id

logger = logging.getLogger("llmwatch")

# The usage counts llmwatch reports, in genai-prices' vocabulary. ``input_tokens`` counts every
# input token (cached ones included); ``cache_write_tokens`` every cache write (1h ones included);
# ``output_tokens`` every output token (reasoning included).
USAGE_KEYS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "output_reasoning_tokens",
)
# A base usage whose every leaf stays non-negative when one count is raised by one.
_PROBE_BASE: dict[str, Any] = {
    "input_tokens": 8,
    "cache_read_tokens": 2,
    "cache_write_tokens": 2,
    "cache_write_1h_tokens": 1,
    "output_tokens": 4,
    "output_reasoning_tokens": 1,
}
# Tier-free in any real price list: low enough to stay in the base tier while probing.

# Units a few APIs bill besides plain tokens (audio and image tokens, characters, seconds), rare enough
# to stay off the per-call arithmetic: a call that has some carries them in ``Usage.extra``, and their
# coefficients are measured the first time one is priced. Ours -> genai-prices' keys (a transcription's
# seconds are both genai-prices' ``audio_seconds`` and its ``input_audio_seconds``). Audio and image
# tokens are part of ``input_tokens``/``output_tokens``, as the APIs count them: their coefficient is
# what such a token costs over a text token.
EXTRA_USAGE_KEYS: dict[str, tuple[str, ...]] = {
    "input_audio_tokens": ("input_audio_tokens",),
    "output_audio_tokens": ("output_audio_tokens",),
    "output_image_tokens": ("output_image_tokens",),
    "input_characters": ("input_characters",),
    "input_audio_seconds": ("audio_seconds", "input_audio_seconds"),
}
_EXTRA_PROBE_BASE = (8, 4)  # input and output tokens, no cache counts (they overlap the modalities)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call (see ``USAGE_KEYS`` for what each includes)."""

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    output_reasoning_tokens: int = 0
    extra: tuple[tuple[str, float], ...] = ()  # (an ``EXTRA_USAGE_KEYS`` key, count), rare


@dataclass(frozen=True, slots=True)
class Cost:
    total_usd: float
    input_usd: float
    output_usd: float


class Price:
    """A resolved price: per-token coefficients (USD) for the input and the output side."""

    __slots__ = ("exact", "extra_coefficients", "input_coefficients", "output_coefficients", "source", "tier_threshold")

    def __init__(
        self,
        input_coefficients: tuple[float, ...],
        output_coefficients: tuple[float, ...],
        source: str,
        tier_threshold: int | None = None,
        exact: Any = None,
    ) -> None:
        self.input_coefficients = input_coefficients
        self.output_coefficients = output_coefficients
        self.source = source
        self.tier_threshold = tier_threshold
        self.exact = exact  # genai-prices ModelPrice, for calls beyond the first tier
        self.extra_coefficients: dict[str, tuple[float, float]] = {}  # measured on first use

    def cost(self, usage: Usage) -> Cost:
        if self.tier_threshold is not None and usage.input_tokens > self.tier_threshold:
            return _exact_cost(self.exact, usage)
        # Spelled out rather than zip/sum over generators: this runs on every call.
        i0, i1, i2, i3, i4, i5 = self.input_coefficients
        o0, o1, o2, o3, o4, o5 = self.output_coefficients
        n0, n1, n2 = usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens
        n3, n4, n5 = usage.cache_write_1h_tokens, usage.output_tokens, usage.output_reasoning_tokens
        input_usd = i0 * n0 + i1 * n1 + i2 * n2 + i3 * n3 + i4 * n4 + i5 * n5
        output_usd = o0 * n0 + o1 * n1 + o2 * n2 + o3 * n3 + o4 * n4 + o5 * n5
        if usage.extra:
            for key, count in usage.extra:
                input_rate, output_rate = self._extra_coefficient(key)
                input_usd += input_rate * count
                output_usd += output_rate * count
        return Cost(input_usd + output_usd, input_usd, output_usd)

    def _extra_coefficient(self, key: str) -> tuple[float, float]:
        known = self.extra_coefficients.get(key)
        if known is None:  # a race measures twice, to the same numbers
            known = self.extra_coefficients[key] = _probe_extra(self.exact, key)
        return known


def override_price(rates: Mapping[str, float], source: str) -> Price:
    """A user's ``{"input", "output", "cache_read", ...}`` (USD per million tokens) as coefficients."""
    per_token = {key: value / 1_000_000 for key, value in rates.items()}
    input_rate = per_token["input"]
    output_rate = per_token["output"]
    cache_read = per_token.get("cache_read", input_rate)
    cache_write = per_token.get("cache_write", input_rate)
    cache_write_1h = per_token.get("cache_write_1h", cache_write)
    reasoning = per_token.get("reasoning", output_rate)
    # Each coefficient is the extra a token of that kind costs over its parent count.
    input_side = (input_rate, cache_read - input_rate, cache_write - input_rate, cache_write_1h - cache_write, 0, 0)
    output_side = (0.0, 0.0, 0.0, 0.0, output_rate, reasoning - output_rate)
    return Price(tuple(input_side), output_side, source)


class PriceBook:
    """Prices by (provider, model, service tier): user overrides first, then genai-prices; resolved
    once, cached."""

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self._overrides = {key: override_price(rates, "override") for key, rates in (overrides or {}).items()}
        self._cache: dict[tuple[str, str, str | None], Price | None] = {}
        self._lock = threading.Lock()

    def lookup(self, provider: str, model: str, tier: str | None = None) -> Price | None:
        """The price of ``model`` at ``provider`` (at ``tier``: "flex", "batch", ...), or None."""
        if tier in STANDARD_TIERS:
            tier = None
        key = (provider, model, tier)
        try:
            return self._cache[key]
        except KeyError:
            pass
        price = self._resolve(provider, model, tier)
        with self._lock:  # only on a cache miss: once per (provider, model, tier) per process
            self._cache[key] = price
        return price

    def _resolve(self, provider: str, model: str, tier: str | None) -> Price | None:
        override = self._overrides.get(f"{provider}/{model}") or self._overrides.get(model)
        if override is not None:
            return override
        return resolve_from_genai_prices(provider, model, tier)


class UnpricedCalls:
    """The (provider, model) pairs of calls nobody could price, with their call counts: process-wide,
    whatever ``configure()`` did since, so ``stats()["prices"]["unpriced"]`` shows all of them."""

    _MAX_PAIRS = 1000  # model names come from callers and servers: bounded, the rest counted together

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, provider: str, model: str) -> None:
        key = (provider, model)
        with self._lock:  # a counter's lock: taken only by calls that could not be priced
            if key not in self._calls and len(self._calls) >= self._MAX_PAIRS:
                key = ("(other)", "(other)")
            self._calls[key] = self._calls.get(key, 0) + 1

    def pairs(self) -> list[dict[str, Any]]:
        """Most calls first."""
        with self._lock:
            ranked = sorted(self._calls.items(), key=lambda item: (-item[1], item[0]))
        return [{"provider": provider, "model": model, "calls": calls} for (provider, model), calls in ranked]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


UNPRICED = UnpricedCalls()


_import_thread: threading.Thread | None = None
FORK_WAIT_S = 5.0  # at most this long, a fork waits for the background import to finish


def start_background_import() -> None:
    """Import genai-prices off the caller's thread so the first priced call does not pay for it."""
    global _import_thread
    if "genai_prices" in sys.modules:
        return
    _import_thread = threading.Thread(target=_import_genai_prices, name="llmwatch-prices", daemon=True)
    _import_thread.start()


def _finish_import_before_fork() -> None:
    """A fork in the middle of that import would leave the child its module locks, held by a thread
    that does not exist there: the child's first priced call would wait for them forever. So a fork
    (a multiprocessing Pool started right after configure(), say) waits for the import to finish."""
    thread = _import_thread
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join(FORK_WAIT_S)


_forking.before_fork(_finish_import_before_fork)


_import_error: str | None = None  # why genai-prices could not be imported (``health()`` says so)


def genai_prices_error() -> str | None:
    return _import_error


def _import_genai_prices() -> None:
    global _import_error
    try:
        import genai_prices  # noqa: F401
    except Exception as exc:
        _import_error = f"{type(exc).__name__}: {exc}"
        logger.warning("llmwatch: genai-prices could not be imported; calls get no cost: %s", exc)


def genai_prices_version() -> str | None:
    """The installed genai-prices version (read from metadata: does not import it)."""
    try:
        from importlib.metadata import version

        return version("genai-prices")
    except Exception:
        return None


@functools.cache
def _price_change_dates() -> tuple[str, ...]:
    from genai_prices import data

    dates = set()
    for provider in data.providers:
        for model in provider.models:
            for conditional in model.prices if isinstance(model.prices, list) else ():
                start = getattr(conditional.constraint, "start_date", None)
                if start is not None:
                    dates.add(start.isoformat())
    return tuple(sorted(dates))


def genai_prices_freshness(today: str) -> dict[str, Any]:
    """How current the bundled price table is: its latest price change on or before ``today``
    (ISO date) and the changes it already knows are coming. Empty until genai-prices is loaded
    (in the background after ``configure()``): ``stats()`` must not pay its import."""
    if not genai_prices_loaded():
        return {}
    try:
        dates = _price_change_dates()
    except Exception:
        return {}
    past = [d for d in dates if d <= today]
    return {"latest_price_change": past[-1] if past else None, "scheduled_price_changes": len(dates) - len(past)}


def genai_prices_loading() -> bool:
    """The background import started by ``configure()`` is still running."""
    thread = _import_thread
    return thread is not None and thread.is_alive()


def genai_prices_loaded() -> bool:
    import sys

    return "genai_prices" in sys.modules


def resolve_from_genai_prices(provider: str, model: str, tier: str | None = None) -> Price | None:
    """Measure the coefficients of genai-prices' price for this model (None when unknown).

    A provider genai-prices does not know (an unrecognised host, a user's own name) is priced by the
    model name alone when genai-prices' own matching finds it (``gpt-*`` names, say): the source
    then says which provider's price was taken."""
    try:
        from datetime import datetime

        import genai_prices
        from genai_prices import data_snapshot
    except Exception:
        return None
    provider_id = price_provider_id(provider)
    try:
        found, model_info = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
        model_price = model_info.get_prices(datetime.now(UTC), _price_context(found.id, tier))
    except LookupError:
        return None
    source = f"genai-prices {genai_prices.__version__}"
    if provider_id is None:
        source += f", by model name ({found.id})"
    if tier is not None:
        source += f", {tier} tier"
    input_side, output_side = _probe_coefficients(model_price)
    return Price(input_side, output_side, source, _first_tier_threshold(model_price), model_price)


# Batch results are priced through genai-prices' ``processing`` variant; the other tiers through
# ``service_tier`` (OpenAI flex/priority/scale/default, Gemini flex/priority). A tier genai-prices has
# no variant for (Anthropic "standard", OpenAI "auto") is the standard price.
_BATCH_TIERS = frozenset({"batch"})
# The names providers give their standard rate: priced (and cached) as no tier at all.
STANDARD_TIERS = frozenset({"default", "standard", "auto", "on_demand"})


def _price_context(provider_id: str, tier: str | None) -> dict[str, str] | None:
    if tier is None:
        return None
    if tier in _BATCH_TIERS:
        return {"processing": "batch"}
    return {"service_tier": tier}


def _probe_coefficients(model_price: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    base = _exact_cost(model_price, Usage(**_PROBE_BASE))
    input_side: list[float] = []
    output_side: list[float] = []
    for key in USAGE_KEYS:
        probe = Usage(**{**_PROBE_BASE, key: _PROBE_BASE[key] + 1})
        cost = _exact_cost(model_price, probe)
        input_side.append(cost.input_usd - base.input_usd)
        output_side.append(cost.output_usd - base.output_usd)
    return tuple(input_side), tuple(output_side)


def _probe_extra(model_price: Any, key: str) -> tuple[float, float]:
    """What one more unit of ``key`` adds (input and output side); nothing for an override's price,
    which names no such unit (the unit is then priced as the count it is part of, if any)."""
    if model_price is None:
        return 0.0, 0.0
    tokens_in, tokens_out = _EXTRA_PROBE_BASE
    base = _exact_cost(model_price, Usage(input_tokens=tokens_in, output_tokens=tokens_out))
    probe = _exact_cost(model_price, Usage(input_tokens=tokens_in, output_tokens=tokens_out, extra=((key, 1),)))
    return probe.input_usd - base.input_usd, probe.output_usd - base.output_usd


def _exact_cost(model_price: Any, usage: Usage) -> Cost:
    from genai_prices import Usage as PricesUsage

    calc = model_price.calc_price(PricesUsage(**_nonzero(usage)))
    return Cost(float(calc["total_price"]), float(calc["input_price"]), float(calc["output_price"]))


def _nonzero(usage: Usage) -> dict[str, float]:
    values: dict[str, float] = {key: getattr(usage, key) for key in USAGE_KEYS if getattr(usage, key)}
    for key, count in usage.extra:
        for prices_key in EXTRA_USAGE_KEYS[key]:
            values[prices_key] = values.get(prices_key, 0) + count
    return values


def _first_tier_threshold(model_price: Any) -> int | None:
    from genai_prices.types import TieredPrices

    starts = [
        tier.start for value in vars(model_price).values() if isinstance(value, TieredPrices) for tier in value.tiers
    ]
    return min(starts) if starts else None
