"""What a scenario hands back, and the markdown tables the suite prints."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass
class Result:
    """One scenario's outcome: raw and summarised figures, a table, and the targets it checks."""

    name: str
    title: str
    figures: dict[str, Any]
    table: list[str]
    targets: dict[str, bool | None] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "figures": self.figures,
            "targets": self.targets,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table padded to line up in a terminal; the first column left-aligned, others right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in pairs]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return [line(header), rule, *(line(row) for row in rows)]
