"""Small statistics helpers: medians with min/max, percentiles, and formatting."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``values`` (NaN for an empty list)."""
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank on the sorted values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(q / 100.0 * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN unless the denominator is positive (a noisy run can make a
    small overhead come out negative, and a ratio to that means nothing)."""
    return numerator / denominator if denominator > 0 else math.nan


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for the table: NaN and None as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[ok]


def fmt_range(summary_: dict[str, float], digits: int = 1) -> str:
    """``min..max`` of a :func:`summary`."""
    return f"{fmt(summary_['min'], digits)}..{fmt(summary_['max'], digits)}"
