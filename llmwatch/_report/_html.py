"""The ``--html`` page: one self-contained file with the report's tables and plotly charts.

Self-contained means no network at all: plotly.js is inlined (``include_plotlyjs=True`` on the first
chart, never the CDN) and a Content-Security-Policy with ``default-src 'none'`` makes the browser
refuse any fetch the page might still attempt. Every string from the user's data (users, features,
models) is HTML-escaped: in the tables by :func:`html.escape`, in the charts too (plotly renders a
subset of HTML in labels and decodes entities, so escaped labels display as typed); plotly itself
escapes ``<``, ``>`` and ``/`` in the JSON it embeds in ``<script>``.

plotly is an optional extra (``llmwatch[html]``), imported only here and only when a page is written.
"""

from __future__ import annotations

import datetime
import html
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmwatch._report import _format as fmt
from llmwatch._report import _rollout_view as rv
from llmwatch._report._aggregate import OTHERS_LABEL, Report
from llmwatch._report._groups import GroupStats
from llmwatch._report._load import CallSpan, LoadResult
from llmwatch._report._rollouts import RolloutStats
from llmwatch._report._terminal import (
    COLUMNS,
    NO_CALLS,
    notes,
    period_line,
    row_cells,
    run_table_title,
    snapshot_lines,
    totals_line,
    user_table_title,
)

INSTALL_HINT = "the HTML report needs plotly: pip install 'llmwatch[html]'"
MAX_SERIES = 8  # stacked features / histogram models beyond this are folded into "(others)"
# Bucket widths for the cost-over-time chart; the smallest giving at most MAX_BUCKETS bars wins.
BUCKET_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)
MAX_BUCKETS = 60
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:"


class MissingExtraError(RuntimeError):
    """An optional dependency of the requested output is not installed."""


def write_html(report: Report, spans: LoadResult | Sequence[CallSpan], out_path: str | os.PathLike[str]) -> Path:
    """Write the report and its charts as one self-contained HTML page; returns the path written.

    ``spans`` are the calls the report was built from (the charts need each call's time and latency).
    Raises :class:`MissingExtraError` when plotly is not installed.
    """
    calls = spans.spans if isinstance(spans, LoadResult) else spans
    charts = _charts(calls) if calls else []
    page = _page(report, charts)
    path = Path(out_path)
    path.write_text(page, encoding="utf-8")
    return path


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingExtraError(INSTALL_HINT) from exc
    return go


def _charts(calls: Sequence[CallSpan]) -> list[str]:
    go = _plotly()
    figures = [_cost_over_time(go, calls), _latency_histogram(go, calls), _tokens_by_model(go, calls)]
    config = {"displaylogo": False, "responsive": True}
    # plotly.js (about 4.5 MB) is inlined once, with the first chart; the others reuse it.
    return [
        figure.to_html(full_html=False, include_plotlyjs=index == 0, config=config)
        for index, figure in enumerate(figures)
    ]


def _label(text: str) -> str:
    # quote=False: plotly.js decodes &amp; &lt; &gt; in labels but would show &quot; as typed.
    return html.escape(fmt.clean(text, limit=60), quote=False)


def _top_keys(
    calls: Sequence[CallSpan], key: Callable[[CallSpan], str], weight: Callable[[CallSpan], float]
) -> list[str]:
    """The MAX_SERIES keys with the largest total weight (ties by name)."""
    totals: dict[str, float] = defaultdict(float)
    for call in calls:
        totals[key(call)] += weight(call)
    return [name for name, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0]))][:MAX_SERIES]


def bucket_seconds(first_ns: int, last_ns: int) -> int:
    """The bucket width for the cost-over-time chart: at most MAX_BUCKETS buckets over the range."""
    span_s = (last_ns - first_ns) / 1e9
    return next((width for width in BUCKET_SECONDS if span_s / width <= MAX_BUCKETS), BUCKET_SECONDS[-1])


def _cost_over_time(go: Any, calls: Sequence[CallSpan]) -> Any:
    width = bucket_seconds(min(c.start_ns for c in calls), max(c.start_ns for c in calls))
    top = set(_top_keys(calls, lambda c: c.feature, lambda c: c.cost_usd or 0.0))
    series: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for call in calls:
        bucket = int(call.start_ns // 1_000_000_000 // width * width)
        series[call.feature if call.feature in top else OTHERS_LABEL][bucket] += call.cost_usd or 0.0
    figure = go.Figure()
    for name in sorted(series, key=lambda n: (n == OTHERS_LABEL, -sum(series[n].values()), n)):
        buckets = sorted(series[name])
        figure.add_trace(
            go.Bar(
                name=_label(name),
                x=[datetime.datetime.fromtimestamp(b, tz=datetime.UTC) for b in buckets],
                y=[series[name][b] for b in buckets],
            )
        )
    figure.update_layout(
        title=f"Cost by feature over time (USD per {fmt.duration(width)} bucket, UTC)",
        barmode="stack",
        yaxis_title="USD",
        legend_title="feature",
    )
    return _styled(figure)


def _latency_histogram(go: Any, calls: Sequence[CallSpan]) -> Any:
    calls = [c for c in calls if not c.refused]  # a refusal's microseconds are not a provider's latency
    top = _top_keys(calls, lambda c: c.model_key, lambda c: 1.0)
    figure = go.Figure()
    for name in top:
        latencies = [c.latency_ms for c in calls if c.model_key == name]
        figure.add_trace(go.Histogram(name=_label(name), x=latencies, opacity=0.65))
    figure.update_layout(
        title="Latency distribution by model (ms)",
        barmode="overlay",
        xaxis_title="latency (ms)",
        yaxis_title="calls",
        legend_title="provider/model",
    )
    return _styled(figure)


def _tokens_by_model(go: Any, calls: Sequence[CallSpan]) -> Any:
    inputs: dict[str, int] = defaultdict(int)
    outputs: dict[str, int] = defaultdict(int)
    for call in calls:
        inputs[call.model_key] += call.input_tokens
        outputs[call.model_key] += call.output_tokens
    models = sorted(inputs, key=lambda m: (-(inputs[m] + outputs[m]), m))
    labels = [_label(m) for m in models]
    figure = go.Figure(
        [
            go.Bar(name="input", x=labels, y=[inputs[m] for m in models]),
            go.Bar(name="output", x=labels, y=[outputs[m] for m in models]),
        ]
    )
    figure.update_layout(title="Tokens by model", barmode="group", yaxis_title="tokens", legend_title="tokens")
    return _styled(figure)


def _styled(figure: Any) -> Any:
    figure.update_layout(template="plotly_white", height=420, margin={"l": 60, "r": 20, "t": 60, "b": 60})
    return figure


def _page(report: Report, charts: list[str]) -> str:
    body = [f'<h1>llmwatch report</h1><p class="meta">{_meta(report)}</p>']
    body += [f'<p class="note">{html.escape(line)}</p>' for line in notes(report)]
    if not report.totals.calls:
        body.append(f"<p>{NO_CALLS}</p>")
    else:
        body.append(f'<p class="totals">{html.escape(totals_line(report))}</p>')
        body.append(f'<p class="meta">{html.escape(period_line(report))}</p>')
        body += [f'<div class="chart">{chart}</div>' for chart in charts]
        body.append(_table("By feature", "feature", report.by_feature, 0))
        body.append(_table(user_table_title(report), "user", report.by_user, report.other_users))
        body.append(_table("By provider", "provider", report.by_provider, 0))
        body.append(_table("By model", "provider/model", report.by_model, 0))
        if report.by_run:
            body.append(_table(run_table_title(report), "run", report.by_run, 0))
        if report.by_agent:
            body.append(_table("By agent", "agent", report.by_agent, 0))
        if report.rollouts:
            body.append(_rollouts(report.rollouts))
    return _TEMPLATE.format(csp=_CSP, style=_STYLE, body="\n".join(body))


def _meta(report: Report) -> str:
    files = ", ".join(html.escape(name) for name in report.files) or "(spans given directly)"
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"from {files}; generated {generated}"


def _table(title: str, key_name: str, groups: list[GroupStats], other_users: int) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in (key_name, *(column.header for column in COLUMNS)))
    rows = []
    for group in groups:
        is_others = bool(other_users) and group.key == OTHERS_LABEL and group is groups[-1]
        label = html.escape(fmt.clean(f"{OTHERS_LABEL} {other_users} more" if is_others else group.key, limit=120))
        label += "".join(
            f'<br><span class="snap">{html.escape(fmt.clean(line))}</span>' for line in snapshot_lines(group)
        )
        cells = "".join(f'<td class="num">{html.escape(cell)}</td>' for cell in row_cells(group))
        rows.append(f'<tr><td class="key">{label}</td>{cells}</tr>')
    return f"<h2>{html.escape(title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _rollouts(rollouts: list[RolloutStats]) -> str:
    """The rollouts section: per rollout, its arms side by side, then its decisions."""
    parts = [f"<h2>{rv.SECTION_TITLE}</h2>"]
    for rollout in rollouts:
        head = "".join(f"<th>{html.escape(name)}</th>" for name in ("", *rv.headers(rollout)))
        body = "".join(
            f'<tr><td class="key">{html.escape(line.label.strip())}</td>'
            + "".join(f'<td class="num">{html.escape(cell)}</td>' for cell in [*line.cells, line.difference])
            + "</tr>"
            for line in rv.rows(rollout)
        )
        decisions = "".join(f"<li>{html.escape(line)}</li>" for line in rv.decision_lines(rollout))
        parts.append(
            f"<h3>{html.escape(rv.title(rollout))}</h3>"
            f'<p class="meta">{html.escape(rv.period_line(rollout))}</p>'
            f'<table class="rollout"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<ul class="decisions">{decisions}</ul>'
        )
    parts.append(f'<p class="meta">{html.escape(rv.LEGEND)}</p>')
    return "\n".join(parts)


_STYLE = """
html { overflow-y: scroll; }  /* a scrollbar appearing after plotly sized the charts would clip them */
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; padding: 0 24px;
       max-width: 1280px; color: #1f2933; }
h1 { margin-bottom: 4px; } .meta { color: #6b7280; margin-top: 0; }
.totals { font-size: 1.05em; font-weight: 600; } .note { color: #92400e; }
.chart { margin: 12px 0 24px; border: 1px solid #e5e7eb; border-radius: 6px; overflow: hidden; }
table { border-collapse: collapse; margin-bottom: 24px; font-size: 0.9em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e7eb; } th { background: #f3f4f6; text-align: right; }
th { white-space: nowrap; } th:first-child { text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.key { min-width: 14em; max-width: 28em; overflow-wrap: anywhere; }
.snap { color: #6b7280; font-size: 0.9em; padding-left: 1em; }
table.rollout { margin-bottom: 8px; } table.rollout td.key { min-width: 8em; } .decisions { margin-top: 0; }
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>llmwatch report</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""
