"""The rollouts section as text: per rollout, its arms side by side and a line per decision.

Shared by the terminal (:func:`print_rollouts`) and the HTML page (:func:`rows`,
:func:`decision_lines`). Each rollout is a small table whose columns are the arms (champion,
challenger, then any other arm the spans name) and a ``difference`` column: the challenger against
the champion, as a difference for rates and scores (error % in percentage points) and as a ratio
(a multiplication sign and the factor: 1.50 is half again) for latency and cost, the way the
rollout's guards bound them.

Rollout, arm and score names come from the user's data: printed as ``Text`` after
:func:`_format.clean`, never as markup. As in the other tables, a figure is never cut: a table too
wide for the terminal is printed as ``name=value`` words instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from llmwatch._report import _format as fmt
from llmwatch._report._decisions import NOT_WORSE, PROMOTED, ROLLED_BACK, UNDECIDED, WORSE, Decision
from llmwatch._report._rollouts import ArmStats, RolloutStats

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

SECTION_TITLE: Final = "Rollouts"
DIFFERENCE: Final = "difference"
MAX_DECISION_LINES: Final = 5  # per rollout: the latest ones (each process decides its own rollout)
LABEL_WIDTH: Final = 28
LABEL_MIN_WIDTH: Final = 10
_MEASURE_WIDTH: Final = 10_000
LEGEND: Final = (
    "rollouts: difference = challenger minus champion (error % in percentage points, scores: their mean) "
    "or challenger / champion (\N{MULTIPLICATION SIGN}: latency, cost per call); p50/p95 ms over the calls sent, "
    "nearest-rank; cost/call over the calls with a known price; scores by the call they score"
)
_STATES: Final = {ROLLED_BACK: "rolled back", PROMOTED: "promoted"}
_VERDICTS: Final = {WORSE: "worse", NOT_WORSE: "not worse", UNDECIDED: "undecided"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a rollout's table: a label, a cell per arm, the challenger-vs-champion cell."""

    label: str
    cells: list[str]
    difference: str = ""


def title(rollout: RolloutStats) -> str:
    """``Rollout NAME (rolled back)``: the state is the latest decision's."""
    latest = rollout.decision
    state = _STATES.get(latest.action, latest.action) if latest is not None else "no decision"
    return f"Rollout {fmt.clean(rollout.name)} ({state})"


def period_line(rollout: RolloutStats) -> str:
    """How many calls, over what time (UTC)."""
    if rollout.first_start_ns is None or rollout.last_end_ns is None:
        return "no calls of this rollout in these files"
    seconds = (rollout.last_end_ns - rollout.first_start_ns) / 1e9
    return (
        f"{fmt.count(rollout.calls)} calls from {fmt.timestamp(rollout.first_start_ns)} "
        f"to {fmt.timestamp(rollout.last_end_ns)} ({fmt.duration(seconds)})"
    )


def headers(rollout: RolloutStats) -> list[str]:
    """The arm columns' headers, then ``difference``."""
    return [*(fmt.clean(arm.arm) for arm in rollout.arms), DIFFERENCE]


def rows(rollout: RolloutStats) -> list[Row]:
    """The table's lines; shadow and refused lines only when some arm has such calls."""
    arms, compared = rollout.arms, rollout.comparison
    lines = [Row("calls", _cells(arms, lambda arm: fmt.count(arm.stats.calls)))]
    if any(arm.shadow for arm in arms):
        lines.append(Row("  shadow", _cells(arms, lambda arm: fmt.count(arm.shadow))))
    if any(arm.stats.refused for arm in arms):
        lines.append(Row("  refused", _cells(arms, lambda arm: fmt.count(arm.stats.refused))))
    lines += [
        Row("errors", _cells(arms, lambda arm: fmt.count(arm.stats.errors))),
        Row(
            "error %", _cells(arms, lambda arm: fmt.error_rate_cell(arm.stats)), _points(compared.error_rate_difference)
        ),
        Row("p50 ms", _cells(arms, lambda arm: fmt.ms(arm.stats.latency_p50_ms)), _times(compared.latency_p50_ratio)),
        Row("p95 ms", _cells(arms, lambda arm: fmt.ms(arm.stats.latency_p95_ms)), _times(compared.latency_p95_ratio)),
        Row(
            "cost/call", _cells(arms, lambda arm: fmt.usd(arm.stats.avg_cost_usd)), _times(compared.cost_per_call_ratio)
        ),
        Row("cost", _cells(arms, lambda arm: fmt.cost_cell(arm.stats))),
    ]
    for name in sorted({name for arm in arms for name in arm.scores}):
        difference = compared.score_differences.get(name)
        lines.append(
            Row(
                f"score {fmt.clean(name)}",
                [_score_cell(arm, name) for arm in arms],
                fmt.DASH if difference is None else f"{difference:+.3f}",
            )
        )
    return lines


def decision_lines(rollout: RolloutStats) -> list[str]:
    """One line per decision, the latest ``MAX_DECISION_LINES``; a line saying when there is none."""
    if not rollout.decisions:
        return ["no rollback or promotion in these spans (still running, or stopped by hand)"]
    shown = rollout.decisions[-MAX_DECISION_LINES:]
    lines = [decision_line(item) for item in shown]
    if len(rollout.decisions) > len(shown):
        hidden = len(rollout.decisions) - len(shown)
        lines.insert(0, f"{fmt.count(hidden)} earlier decision(s) not shown (--json lists them all)")
    return lines


def decision_line(item: Decision) -> str:
    """``rolled back at <UTC time>: challenger worse on error_rate; undecided: p95_latency_ratio``."""
    head = f"{_STATES.get(item.action, item.action)} at {fmt.timestamp(item.time_ns)}"
    if not item.readable:
        return f"{head}: evidence unreadable"
    main = WORSE if item.action == ROLLED_BACK else NOT_WORSE
    named = item.with_verdict(main)
    parts = [f"challenger {_VERDICTS[main]} on {_names(named)}" if named else f"no guard recorded as {_VERDICTS[main]}"]
    others = [guard.verdict for guard in item.guards if guard.verdict != main]
    for verdict in dict.fromkeys(others):  # each verdict once, in the evidence's order
        parts.append(f"{fmt.clean(_VERDICTS.get(verdict, verdict))}: {_names(item.with_verdict(verdict))}")
    return f"{head}: {'; '.join(parts)}"


def _names(guards: list[str]) -> str:
    return ", ".join(fmt.clean(name) for name in guards)


def _cells(arms: list[ArmStats], cell: Callable[[ArmStats], str]) -> list[str]:
    return [cell(arm) for arm in arms]


def _score_cell(arm: ArmStats, name: str) -> str:
    mean = arm.scores.get(name)
    return fmt.DASH if mean is None else f"{mean.mean:.3f} (n={fmt.count(mean.count)})"


def _points(difference: float | None) -> str:
    return fmt.DASH if difference is None else f"{difference * 100:+.1f} pp"


def _times(ratio: float | None) -> str:
    return fmt.DASH if ratio is None else f"\N{MULTIPLICATION SIGN}{ratio:.2f}"


# --- the terminal -----------------------------------------------------------------------------------


def print_rollouts(console: Console, rollouts: list[RolloutStats]) -> None:
    """The section: a table per rollout, fitted to the console, each followed by its decisions."""
    from rich.text import Text

    if not rollouts:
        return
    console.print(Text(SECTION_TITLE, style="bold"))
    for rollout in rollouts:
        lines = rows(rollout)
        table = _fitted_table(console, rollout, lines)
        if table is None:
            _print_blocks(console, rollout, lines)
        else:
            console.print(table)
        console.print(Text(period_line(rollout), style="dim"))
        for line in decision_lines(rollout):
            style = "bold red" if line.startswith(_STATES[ROLLED_BACK]) else ""
            console.print(Text(line, style=style))
    console.print(Text(LEGEND, style="dim"))


def _fitted_table(console: Console, rollout: RolloutStats, lines: list[Row]) -> Table | None:
    """The table with its label column as wide as fits (folding long labels), or None when even a
    ``LABEL_MIN_WIDTH`` label leaves too little room for the figures."""
    from rich.measure import Measurement

    natural = min(max(len(line.label) for line in lines), LABEL_WIDTH)
    table = _table(rollout, lines, natural)
    figures = Measurement.get(console, console.options.update_width(_MEASURE_WIDTH), table).maximum - natural
    room = console.width - figures
    if room < min(natural, LABEL_MIN_WIDTH):
        return None
    return table if room >= natural else _table(rollout, lines, room)


def _table(rollout: RolloutStats, lines: list[Row], label_width: int) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=Text(title(rollout)),
        title_justify="left",
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("", overflow="fold", width=label_width)
    for header in headers(rollout):
        table.add_column(Text(header), justify="right", no_wrap=True)
    for line in lines:
        table.add_row(Text(line.label), *(Text(cell) for cell in [*line.cells, line.difference]))
    return table


def _print_blocks(console: Console, rollout: RolloutStats, lines: list[Row]) -> None:
    """The narrowest layout: a line of ``arm=value`` words per row, wrapping between figures."""
    from rich.padding import Padding
    from rich.text import Text

    console.print(Text(title(rollout), style="bold"), overflow="fold")
    names = headers(rollout)
    for line in lines:
        cells = [*line.cells, line.difference] if line.difference else line.cells
        words = [f"{name}={cell.replace(' ', '')}" for name, cell in zip(names, cells, strict=False)]
        console.print(Text(line.label.strip()), overflow="fold")
        console.print(Padding(Text(" ".join(words), overflow="fold"), (0, 0, 0, 2)))
