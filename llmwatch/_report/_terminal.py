"""The terminal rendering: a totals line and rich tables by feature, user and model.

Every label in the tables comes from the user's data, so it is passed to rich as ``Text`` (never as
markup: a feature named ``[bold red]`` must print as typed) after :func:`_format.clean` has replaced
control characters (an ANSI escape in a user id must not repaint the terminal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmwatch._report import _format as fmt
from llmwatch._report._aggregate import OTHERS_LABEL, GroupStats, Report

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

UNKNOWN_COST_MARK = " +?"
NO_CALLS = "no LLM calls"
KEY_WIDTH = 40
KEY_MIN_WIDTH = 12  # below this a narrow terminal crops the last figures instead


def render_terminal(report: Report, console: Console) -> None:
    """Print the report to a rich ``Console``."""
    from rich.text import Text

    for line in notes(report):
        console.print(Text(line, style="yellow"))
    if not report.totals.calls:
        console.print(NO_CALLS)
        return
    console.print(Text(totals_line(report), style="bold"))
    console.print(Text(period_line(report), style="dim"))
    console.print(_table("By feature", "feature", report.by_feature))
    console.print(_table(user_table_title(report), "user", report.by_user, other_users=report.other_users))
    console.print(_table("By model", "provider/model", report.by_model))
    console.print(Text(LEGEND, style="dim"))
    if report.totals.unknown_cost_calls:
        console.print(
            Text(
                f"cost {UNKNOWN_COST_MARK.strip()}: some of the group's calls have no known price and are not in the "
                "sum; unknown: none has (configure(prices=...) adds prices)",
                style="yellow",
            )
        )


def totals_line(report: Report) -> str:
    """One line: calls, errors, cost and tokens."""
    totals = report.totals
    return " | ".join(
        [
            f"{fmt.count(totals.calls)} calls",
            f"{fmt.count(totals.errors)} errors ({fmt.percent(totals.error_rate)})",
            f"{cost_cell(totals)} USD",
            f"{fmt.count(totals.input_tokens)} input / {fmt.count(totals.output_tokens)} output tokens",
        ]
    )


def period_line(report: Report) -> str:
    """The time covered, from the first call's start to the last call's end (UTC)."""
    if report.first_start_ns is None or report.last_end_ns is None:
        return ""
    seconds = (report.last_end_ns - report.first_start_ns) / 1e9
    return (
        f"from {fmt.timestamp(report.first_start_ns)} to {fmt.timestamp(report.last_end_ns)} ({fmt.duration(seconds)})"
    )


def user_table_title(report: Report) -> str:
    """Says how many users are listed out of how many."""
    return f"By user (top {report.users - report.other_users} of {report.users} by cost)"


def notes(report: Report) -> list[str]:
    """Warnings about the input: lines skipped, calls whose cost is unknown."""
    lines = []
    if report.skipped_lines:
        lines.append(f"skipped {fmt.count(report.skipped_lines)} unreadable line(s) (not JSON, or cut short mid-write)")
    if report.totals.unknown_cost_calls:
        lines.append(
            f"{fmt.count(report.totals.unknown_cost_calls)} call(s) to models with no known price: "
            "cost unknown, not counted"
        )
    return lines


def cost_cell(group: GroupStats) -> str:
    """The cost, flagged when some calls in the group have no known price."""
    if group.unknown_cost_calls and not group.priced_calls:
        return "unknown"
    return fmt.usd(group.cost_usd) + (UNKNOWN_COST_MARK if group.unknown_cost_calls else "")


def row_cells(group: GroupStats) -> list[str]:
    """The figures of one table row, formatted (without the key)."""
    return [
        fmt.count(group.calls),
        fmt.count(group.errors),
        fmt.percent(group.error_rate),
        cost_cell(group),
        fmt.count(group.input_tokens),
        fmt.count(group.output_tokens),
        fmt.ms(group.latency_p50_ms),
        fmt.ms(group.latency_p95_ms),
        fmt.ms(group.latency_p99_ms),
        fmt.ms(group.ttft_p50_ms),
        fmt.ms(group.ttft_p95_ms),
        fmt.usd(group.avg_cost_usd),
    ]


# Table headers: long ones for the HTML page; short ones for the terminal, where every column counts
# (the units are in LEGEND).
COLUMNS = (
    "calls", "errors", "error %", "cost", "input tok", "output tok",
    "p50 ms", "p95 ms", "p99 ms", "TTFT p50", "TTFT p95", "avg cost/call",
)  # fmt: skip
SHORT_COLUMNS = (
    "calls",
    "errors",
    "err %",
    "cost",
    "in tok",
    "out tok",
    "p50",
    "p95",
    "p99",
    "ttft50",
    "ttft95",
    "avg",
)
LEGEND = (
    "latency p50/p95/p99 and ttft (time to first token, streams only) in ms, nearest-rank; "
    "avg = cost per call with a known price"
)


def _table(title: str, key_name: str, groups: list[GroupStats], other_users: int = 0) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    labels = []
    for group in groups:
        is_others = bool(other_users) and group.key == OTHERS_LABEL and group is groups[-1]
        labels.append(
            Text(f"{OTHERS_LABEL} {other_users} more", style="italic") if is_others else Text(fmt.clean(group.key))
        )
    widest = max((label.cell_len for label in labels), default=0)
    # A light box (no vertical rules) leaves 13 more columns to the figures on a 120-column terminal.
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column(key_name, overflow="fold", min_width=min(KEY_MIN_WIDTH, widest), max_width=KEY_WIDTH)
    for column in SHORT_COLUMNS:
        # Figures never wrap or shrink: when the terminal is narrow, the label column folds instead.
        table.add_column(column, justify="right", no_wrap=True)
    for label, group in zip(labels, groups, strict=True):
        table.add_row(label, *row_cells(group))
    return table
