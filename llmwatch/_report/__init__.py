"""The local report (``llmwatch report``): figures from a JSON Lines span file, for the terminal,
for machines (``--json``) and as a self-contained HTML page with charts (``--html``).

Pipeline: :func:`load_spans` (file -> compact call records, junk lines counted) ->
:func:`build_report` (totals, groups and rollouts) -> :func:`render_terminal` / :func:`report_to_dict` /
:func:`write_html`.
"""

from llmwatch._report._aggregate import OTHERS_LABEL, Report, build_report
from llmwatch._report._decisions import Decision, GuardVerdict
from llmwatch._report._groups import GroupStats, percentile
from llmwatch._report._html import MissingExtraError, write_html
from llmwatch._report._json import report_to_dict
from llmwatch._report._load import NONE_LABEL, CallSpan, LoadResult, RolloutMark, ScoreRecord, load_spans
from llmwatch._report._rollouts import ArmStats, Comparison, RolloutStats, ScoreMean
from llmwatch._report._terminal import render_terminal

__all__ = [
    "NONE_LABEL",
    "OTHERS_LABEL",
    "ArmStats",
    "CallSpan",
    "Comparison",
    "Decision",
    "GroupStats",
    "GuardVerdict",
    "LoadResult",
    "MissingExtraError",
    "Report",
    "RolloutMark",
    "RolloutStats",
    "ScoreMean",
    "ScoreRecord",
    "build_report",
    "load_spans",
    "percentile",
    "render_terminal",
    "report_to_dict",
    "write_html",
]
