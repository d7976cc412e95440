"""Number and time formatting shared by the terminal and HTML renderings."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmwatch._report._groups import GroupStats

DASH = "-"
UNKNOWN_COST_MARK = " +?"


def usd(value: float | None) -> str:
    """Dollars with enough digits for sub-cent calls: $1,234.57, $0.0123, $0.000042."""
    if value is None:
        return DASH
    if value == 0:
        return "$0.00"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.6f}" if abs(value) < 0.01 else f"${value:.4f}"


def count(value: int) -> str:
    """An integer with thousands separators."""
    return f"{value:,}"


def ms(value: float | None) -> str:
    """Milliseconds, no decimals from 100 ms up; "-" when there is no value."""
    if value is None:
        return DASH
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def percent(fraction: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{fraction * 100:.1f}%"


def timestamp(unix_ns: int | None) -> str:
    """UTC time of a span timestamp, to the second."""
    if unix_ns is None:
        return DASH
    moment = datetime.datetime.fromtimestamp(unix_ns / 1e9, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """A human duration: 42s, 3m 12s, 5h 03m, 2d 04h."""
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{seconds:.1f}s" if seconds < 10 else f"{secs}s"


def clean(text: str, limit: int = 80) -> str:
    """A user-supplied label made safe to print: control characters (ANSI escapes...) replaced, long
    labels shortened in the middle so both ends stay recognisable."""
    printable = "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in text)
    if len(printable) <= limit:
        return printable
    half = (limit - 1) // 2
    return printable[:half] + "\N{HORIZONTAL ELLIPSIS}" + printable[-half:]


def cost_cell(group: GroupStats) -> str:
    """The cost, flagged when some calls in the group have no known price."""
    if group.unknown_cost_calls and not group.priced_calls:
        return "unknown"
    return usd(group.cost_usd) + (UNKNOWN_COST_MARK if group.unknown_cost_calls else "")


def error_rate_cell(group: GroupStats) -> str:
    """Errors over the calls sent; "-" when every call was refused."""
    return percent(group.error_rate) if group.sent else DASH
