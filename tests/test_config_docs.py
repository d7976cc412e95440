"""docs/configuration.md and the package agree with the settings table (``llmwatch._config.PARAMS``).

- Every ``configure()`` argument row has a row in the doc's argument table listing exactly its
  environment variables, in precedence order, and its default (when it is a plain value).
- Every environment-only row has its variables, in precedence order, in one row of the doc's
  environment tables, with who reads them ("read by") and its default.
- Every ``LLMWATCH_*``, ``OTEL_*``, ``DD_*``, ``NEW_RELIC_*`` (and tiktoken) variable the doc names is a
  row, so the doc cannot promise a variable nothing reads.
- No module but ``_config.py`` reads ``os.environ``/``os.getenv``: every read goes through
  ``_config.env()`` naming a row, and every row llmwatch reads is read somewhere.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmwatch import _config
from llmwatch._export import _otlp

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
PACKAGE = ROOT / "llmwatch"
CODE = re.compile(r"`([^`]+)`")
VARIABLE = re.compile(r"(?<![A-Z0-9_])((?:LLMWATCH|OTEL|DD|NEW_RELIC|TIKTOKEN|DATA_GYM)_[A-Z0-9_]*[A-Z0-9])\b")

# Modules allowed to touch os.environ / os.getenv themselves, each with the reason. None today: even
# the CLI and tiktoken's cache directory read through the table. A subprocess environment copy (e.g.
# for a demo child process) would belong here, since it passes the environment on without reading it.
ENVIRON_ALLOWED: dict[str, str] = {
    "llmwatch/_config.py": "the table's accessor: the one place that reads the environment",
}
# Rows read in a loop over names built from the table, not spelled out as string constants.
ROWS_READ_BY_NAME_LISTS = set(_otlp._CHECKED_ROWS)


@dataclass
class DocRow:
    table: str  # the first header cell: "argument" or "variable (in precedence order)"
    cells: list[str]

    def names(self, index: int) -> list[str]:
        return CODE.findall(self.cells[index])


def _doc_rows() -> list[DocRow]:
    rows: list[DocRow] = []
    header: list[str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: "):
            assert len(cells) == len(header), f"a cell holds a '|' or one is missing: {line}"
            rows.append(DocRow(header[0], cells))
    return rows


ROWS = _doc_rows()
ARGUMENT_ROWS = [row for row in ROWS if row.table == "argument"]
ENV_ROWS = [row for row in ROWS if row.table == "variable (in precedence order)"]


def _shown_default(default: Any) -> str | None:
    """How the doc writes a plain default (None when the row's default is not a plain value)."""
    if isinstance(default, bool | int | float) or (isinstance(default, str) and default):
        return f"`{default}`".lower()
    return None


def _in_order(names: list[str], wanted: tuple[str, ...]) -> bool:
    positions = [names.index(name) for name in wanted if name in names]
    return len(positions) == len(wanted) and positions == sorted(positions)


def test_the_doc_has_both_tables() -> None:
    assert len(ARGUMENT_ROWS) >= 10
    assert len(ENV_ROWS) >= 20
    assert all(len(row.cells) == 4 for row in ROWS)


@pytest.mark.parametrize("param", _config.ARGUMENTS, ids=lambda param: param.name)
def test_every_argument_is_documented_with_its_variables(param: _config.Param) -> None:
    matches = [row for row in ARGUMENT_ROWS if param.name in row.names(0)]
    assert len(matches) == 1, f"configure({param.name}=) needs exactly one row in {DOC.name}'s argument table"
    row = matches[0]
    assert tuple(row.names(1)) == param.env_vars, (
        f"{param.name}: the doc lists {row.names(1)}, the table reads {list(param.env_vars)} (in this order)"
    )
    shown = _shown_default(param.default)
    if shown is not None:
        assert shown in row.cells[2].lower(), f"{param.name}: default {param.default!r} not in {row.cells[2]!r}"


ENV_ONLY = [param for param in _config.PARAMS if not param.argument]


@pytest.mark.parametrize("param", ENV_ONLY, ids=lambda param: param.name)
def test_every_environment_row_is_documented(param: _config.Param) -> None:
    matches = [row for row in ENV_ROWS if set(param.env_vars) <= set(row.names(0))]
    assert len(matches) == 1, f"{param.env_vars} need exactly one row in {DOC.name}'s environment tables"
    row = matches[0]
    assert _in_order(row.names(0), param.env_vars), f"{param.env_vars}: not in precedence order in {row.cells[0]}"
    readers = {reader.strip() for reader in row.cells[1].split(",")}
    assert readers == set(param.read_by), f"{param.env_vars}: read by {param.read_by}, the doc says {row.cells[1]!r}"
    shown = _shown_default(param.default)
    if shown is not None:
        assert shown in row.cells[2].lower(), f"{param.name}: default {param.default!r} not in {row.cells[2]!r}"


def test_every_variable_the_doc_names_is_a_row() -> None:
    known = {env_var for param in _config.PARAMS for env_var in param.env_vars}
    named = set(VARIABLE.findall(DOC.read_text(encoding="utf-8")))
    assert named, "the pattern found no variable at all"
    assert named - known == set(), f"{DOC.name} names variables that are no row of _config.PARAMS"
    for row in ENV_ROWS:  # and an environment row names nothing but variables
        assert set(row.names(0)) <= known, row.cells[0]


def test_rows_are_unique_and_name_their_variables_once() -> None:
    names = [param.name for param in _config.PARAMS]
    assert len(names) == len(set(names))
    for param in _config.PARAMS:
        assert len(param.env_vars) == len(set(param.env_vars)), param.name
        assert param.read_by, param.name
        assert param.argument or param.env_vars, f"{param.name}: an environment-only row without a variable"


# --- who reads the environment ------------------------------------------------------------------------------
def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def environment_reads(tree: ast.Module) -> list[str]:
    """``os.environ``/``os.getenv`` (under any alias of ``os``) and ``from os import environ``, by line."""
    aliases = {"os"}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(alias.asname or alias.name for alias in node.names if alias.name == "os")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"line {node.lineno}: from os import {a.name}" for a in node.names if "env" in a.name]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr in ("environ", "environb", "getenv", "getenvb")
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_scan_finds_an_environment_read() -> None:
    assert environment_reads(ast.parse("import os as o\nx = o.environ.get('A')\n"))
    assert environment_reads(ast.parse("from os import getenv\n"))
    assert not environment_reads(ast.parse("import os\nos.path.join('a')\n"))
    assert environment_reads(ast.parse((PACKAGE / "_config.py").read_text(encoding="utf-8")))


def test_only_the_config_table_reads_the_environment() -> None:
    offenders = {
        module: reads
        for module, tree in _modules()
        if module not in ENVIRON_ALLOWED and (reads := environment_reads(tree))
    }
    assert offenders == {}, "read environment variables through _config.env(<row>), adding a row to PARAMS"


def test_every_row_llmwatch_reads_is_read_somewhere() -> None:
    constants = {
        node.value
        for module, tree in _modules()
        if module not in ("llmwatch/_config.py", "llmwatch/_config_parse.py")
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    unread = [
        param.name
        for param in ENV_ONLY
        if _config.LLMWATCH in param.read_by
        and param.name not in constants
        and param.name not in ROWS_READ_BY_NAME_LISTS
    ]
    assert unread == [], "environment rows llmwatch claims to read but no module names"
    assert ROWS_READ_BY_NAME_LISTS.issubset(param.name for param in ENV_ONLY)
