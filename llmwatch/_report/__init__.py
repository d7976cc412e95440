"""The local report (``llmwatch report``): figures from a JSON Lines span file, for the terminal,
for machines (``--json``) and as a self-contained HTML page with charts (``--html``).

Pipeline: :func:`load_spans` (file -> compact call records, junk lines counted) ->
:func:`build_report` (totals and groups) -> :func:`render_terminal` / :func:`report_to_dict` /
:func:`write_html`.
"""

from llmwatch._report._aggregate import OTHERS_LABEL, GroupStats, Report, build_report, percentile
from llmwatch._report._html import MissingExtraError, write_html
from llmwatch._report._json import report_to_dict
from llmwatch._report._load import NONE_LABEL, CallSpan, LoadResult, load_spans
from llmwatch._report._terminal import render_terminal

__all__ = [
    "NONE_LABEL",
    "OTHERS_LABEL",
    "CallSpan",
    "GroupStats",
    "LoadResult",
    "MissingExtraError",
    "Report",
    "build_report",
    "load_spans",
    "percentile",
    "render_terminal",
    "report_to_dict",
    "write_html",
]
