"""The terminal rendering: a totals line, rich tables by feature, user and model, then the rollouts
(:mod:`._rollout_view`).

Every label in the tables comes from the user's data, so it is passed to rich as ``Text`` (never as
markup: a feature named ``[bold red]`` must print as typed) after :func:`_format.clean` has replaced
control characters (an ANSI escape in a user id must not repaint the terminal).

A figure is never cut. Left to itself, rich fits a table that is too wide by shrinking every column,
numbers included (``$0.000041`` printed as ``$0``, with no marker). So the layout is decided here,
from rich's own measurement of the table: figures keep their full width; the label column folds
(down to ``KEY_MIN_WIDTH``); then the least important columns are left out, one at a time, and a
line says which (``--json`` has them all). On a terminal too narrow even for the essential columns,
each group is printed as a block of ``name=value`` words, which wrap between figures.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from llmwatch._report import _format as fmt
from llmwatch._report._aggregate import OTHERS_LABEL, Report
from llmwatch._report._format import UNKNOWN_COST_MARK, cost_cell, error_rate_cell
from llmwatch._report._groups import GroupStats
from llmwatch._report._rollout_view import print_rollouts

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

NO_CALLS = "no LLM calls"
KEY_WIDTH = 40
KEY_MIN_WIDTH = 16  # the label column folds down to this before a column is left out
KEY_LAST_WIDTH = 8  # ... and down to this, with only the essential columns left, before blocks instead
_MEASURE_WIDTH = 10_000  # "unlimited", to measure a table's natural width


def render_terminal(report: Report, console: Console) -> None:
    """Print the report to a rich ``Console``, fitted to its width."""
    from rich.text import Text

    for line in notes(report):
        console.print(Text(line, style="yellow"))
    if not report.totals.calls:
        console.print(NO_CALLS)
        return
    console.print(Text(totals_line(report), style="bold"))
    console.print(Text(period_line(report), style="dim"))
    left_out: list[str] = []
    tables = [
        ("By feature", "feature", report.by_feature, 0),
        (user_table_title(report), "user", report.by_user, report.other_users),
        ("By provider", "provider", report.by_provider, 0),
        ("By model", "provider/model", report.by_model, 0),
    ]
    if report.by_run:
        tables.append((run_table_title(report), "run", report.by_run, 0))
    if report.by_agent:
        tables.append(("By agent", "agent", report.by_agent, 0))
    for title, key_name, groups, other_users in tables:
        for name in _print_groups(console, title, key_name, groups, other_users):
            if name not in left_out:
                left_out.append(name)
    console.print(Text(LEGEND, style="dim"))
    if left_out:
        console.print(
            Text(f"left out at this width: {', '.join(left_out)} (a wider terminal or --json shows them)", style="dim")
        )
    if report.totals.unknown_cost_calls:
        console.print(
            Text(
                f"cost {UNKNOWN_COST_MARK.strip()}: some of the group's calls have no known price and are not in the "
                "sum; unknown: none has (configure(prices=...) adds prices)",
                style="yellow",
            )
        )
    print_rollouts(console, report.rollouts)  # after the tables' legend: it has its own


def totals_line(report: Report) -> str:
    """One line: calls, refusals, errors, cost and tokens."""
    totals = report.totals
    return " | ".join(
        [
            f"{fmt.count(totals.calls)} calls",
            f"{fmt.count(totals.refused)} refused",
            f"{fmt.count(totals.errors)} errors ({error_rate_cell(totals)} of {fmt.count(totals.sent)} sent)",
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


def run_table_title(report: Report) -> str:
    """Says how many runs (outermost observe spans) are listed out of how many."""
    listed = len(report.by_run) - (1 if report.by_run and report.by_run[-1].key == OTHERS_LABEL else 0)
    return f"By run (top {listed} of {report.runs} by cost)"


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


def snapshot_lines(group: GroupStats) -> list[str]:
    """The response models inside a by-model row (``gpt-4o-2024-08-06`` and its call count, after a
    multiplication sign), when they say more than the row's own model name does."""
    model = group.key.partition("/")[2]
    if all(snap.model == model for snap in group.snapshots):
        return []
    return [f"{snap.model} \N{MULTIPLICATION SIGN}{fmt.count(snap.calls)}" for snap in group.snapshots]


@dataclasses.dataclass(frozen=True)
class Column:
    """One figure column: its HTML header, its short terminal header, and how to fill it."""

    header: str
    short: str
    cell: Callable[[GroupStats], str]
    drop_rank: int | None = None  # narrow terminal: lowest rank is left out first; None is never left out


COLUMNS = (
    Column("calls", "calls", lambda g: fmt.count(g.calls)),
    Column("refused", "refused", lambda g: fmt.count(g.refused)),
    Column("errors", "errors", lambda g: fmt.count(g.errors)),
    Column("error %", "err %", error_rate_cell),
    Column("cost", "cost", cost_cell),
    Column("input tok", "in tok", lambda g: fmt.count(g.input_tokens), drop_rank=6),
    Column("output tok", "out tok", lambda g: fmt.count(g.output_tokens), drop_rank=5),
    Column("p50 ms", "p50", lambda g: fmt.ms(g.latency_p50_ms), drop_rank=8),
    Column("p95 ms", "p95", lambda g: fmt.ms(g.latency_p95_ms), drop_rank=7),
    Column("p99 ms", "p99", lambda g: fmt.ms(g.latency_p99_ms), drop_rank=3),
    Column("TTFT p50", "ttft50", lambda g: fmt.ms(g.ttft_p50_ms), drop_rank=4),
    Column("TTFT p95", "ttft95", lambda g: fmt.ms(g.ttft_p95_ms), drop_rank=2),
    Column("avg cost/call", "avg", lambda g: fmt.usd(g.avg_cost_usd), drop_rank=1),
)
LEGEND = (
    "refused: never sent (budget or kill switch); errors, err % and latency are over the calls sent. "
    "latency p50/p95/p99 and ttft (time to first token, streams only) in ms, nearest-rank; "
    "avg = cost per call with a known price"
)


def row_cells(group: GroupStats) -> list[str]:
    """The figures of one table row, formatted (without the key), in ``COLUMNS`` order."""
    return [column.cell(group) for column in COLUMNS]


def _label_lines(group: GroupStats, is_others: bool, other_users: int) -> list[tuple[str, str]]:
    """A row's label as (text, style) lines: the key, then its snapshots (by-model rows)."""
    if is_others:
        return [(f"{OTHERS_LABEL} {other_users} more", "italic")]
    return [(fmt.clean(group.key), ""), *(("  " + fmt.clean(line), "dim") for line in snapshot_lines(group))]


def _labels(groups: list[GroupStats], other_users: int, width: int | None = None) -> list[Text]:
    """The label cells; with ``width``, each line broken to fit it, preferably after ``/ - _ .``."""
    from rich.text import Text

    labels = []
    for group in groups:
        is_others = bool(other_users) and group.key == OTHERS_LABEL and group is groups[-1]
        label = Text()
        for text, style in _label_lines(group, is_others, other_users):
            indent = len(text) - len(text.lstrip(" "))
            for piece in [text] if width is None else wrap_label(text, width, indent):
                label.append(("\n" if label.plain else "") + piece, style=style)
        labels.append(label)
    return labels


_BREAK_AFTER = re.compile(r"[^/\-_. ]*[/\-_. ]?")


def wrap_label(text: str, width: int, indent: int = 0) -> list[str]:
    """``text`` in lines of at most ``width`` cells, broken after a separator where one is near; the
    continuation lines indented by ``indent`` + 2 (as far as the width allows)."""
    from rich.cells import cell_len

    pad = " " * min(indent + 2, max(width // 2, 0))
    lines: list[str] = []
    line = ""
    for token in filter(None, _BREAK_AFTER.findall(text)):
        while token:
            room = width - cell_len(line)
            if cell_len(token) <= room:
                line, token = line + token, ""
            elif line.strip():
                lines.append(line.rstrip())
                line = pad
            else:  # a token wider than a whole line: cut it
                head = _head(token, max(room, 1))
                line, token = line + head, token[len(head) :]
    if line.strip():
        lines.append(line.rstrip())
    return lines or [""]


def _head(text: str, cells: int) -> str:
    from rich.cells import cell_len

    out = ""
    for ch in text:
        if cell_len(out + ch) > cells:
            break
        out += ch
    return out or text[:1]


def _print_groups(console: Console, title: str, key_name: str, groups: list[GroupStats], other_users: int) -> list[str]:
    """Print one table fitted to the console; returns the short names of the columns left out."""
    labels = _labels(groups, other_users)
    fitted = _fit(console, title, key_name, labels, groups)
    if fitted is None:
        _print_blocks(console, title, labels, groups)
        return []
    key_width, columns = fitted
    console.print(_table(title, key_name, _labels(groups, other_users, key_width), groups, columns, key_width))
    return [column.short for column in COLUMNS if column not in columns]


def _fit(
    console: Console, title: str, key_name: str, labels: list[Text], groups: list[GroupStats]
) -> tuple[int, Sequence[Column]] | None:
    """The label width and columns of the widest table that fits the console whole; None when even
    the essential columns do not fit."""
    from rich.measure import Measurement

    widest = max([len(key_name), *(line.cell_len for label in labels for line in label.split("\n"))])
    natural = min(widest, KEY_WIDTH)
    columns = list(COLUMNS)
    droppable = sorted((c for c in COLUMNS if c.drop_rank is not None), key=lambda c: c.drop_rank or 0)
    measure = console.options.update_width(_MEASURE_WIDTH)
    while True:
        table = _table(title, key_name, labels, groups, columns, natural)
        room = console.width - (Measurement.get(console, measure, table).maximum - natural)
        # Fold the labels down to KEY_MIN_WIDTH before leaving a column out; with only the essential
        # columns left, fold them further (to KEY_LAST_WIDTH) before giving up on a table.
        if room >= min(natural, KEY_MIN_WIDTH if droppable else KEY_LAST_WIDTH):
            return min(natural, room), columns
        if not droppable:
            return None
        columns.remove(droppable.pop(0))


def _table(
    title: str, key_name: str, labels: list[Text], groups: list[GroupStats], columns: Sequence[Column], key_width: int
) -> Table:
    from rich import box
    from rich.table import Table

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
    table.add_column(key_name, overflow="fold", width=key_width)
    for column in columns:
        table.add_column(column.short, justify="right", no_wrap=True)
    for label, group in zip(labels, groups, strict=True):
        table.add_row(label, *(column.cell(group) for column in columns))
    return table


def _print_blocks(console: Console, title: str, labels: list[Text], groups: list[GroupStats]) -> None:
    """The narrowest layout: per group, its label, then ``name=value`` words that wrap between figures."""
    from rich.padding import Padding
    from rich.text import Text

    console.print(Text(title, style="bold"))
    for label, group in zip(labels, groups, strict=True):
        console.print(label, overflow="fold")
        words = [f"{column.short.replace(' ', '')}={column.cell(group).replace(' ', '')}" for column in COLUMNS]
        console.print(Padding(Text(" ".join(words), overflow="fold"), (0, 0, 0, 2)))
