"""The local report: loading span files, aggregation, percentiles, terminal/JSON/HTML renderings."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import llmwatch
from llmwatch._report import (
    NONE_LABEL,
    OTHERS_LABEL,
    MissingExtraError,
    build_report,
    load_spans,
    percentile,
    render_terminal,
    report_to_dict,
    write_html,
)

T0 = 1_780_000_000_000_000_000  # 2026-05-28, in ns


def span(
    *,
    start_ms: float = 0.0,
    latency_ms: float = 100.0,
    user: str | None = "u-1",
    feature: str | None = "search",
    provider: str = "openai",
    model: str = "gpt-4o-mini",
    response_model: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    cost: float | None = 0.001,
    unknown_model: bool = False,
    error: str | None = None,
    stream: bool = False,
    ttft_ms: float | None = None,
    refused: str | None = None,
) -> dict[str, Any]:
    """One LLM-call span in the exporter's JSON Lines shape (llmwatch/_export/).

    ``refused`` ("budget" or "kill_switch") makes it a refused call as llmwatch/_core/_pipeline.py writes
    one: the refusal event, ``error.type`` and an ERROR status, no response model, tokens or cost.
    """
    events: list[dict[str, Any]] = []
    if refused is not None:
        error = "BudgetExceeded" if refused == "budget" else "FeatureDisabled"
        response_model, cost, input_tokens, output_tokens = None, None, 0, 0
        reason = {"llmwatch.refusal.reason": refused, "llmwatch.budget.scope": f"feature={feature}"}
        events.append({"name": "llmwatch.call.refused", "time_unix_nano": T0, "attributes": reason})
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "llmwatch.stream": stream,
    }
    optional = {
        "gen_ai.response.model": response_model,
        "llmwatch.user": user,
        "llmwatch.feature": feature,
        "llmwatch.cost.usd": cost,
        "llmwatch.time_to_first_token_ms": ttft_ms,
        "error.type": error,
    }
    attrs.update({key: value for key, value in optional.items() if value is not None})
    if unknown_model:
        attrs["llmwatch.cost.unknown_model"] = True
    start = T0 + int(start_ms * 1e6)
    return {
        "name": f"chat {model}",
        "kind": "CLIENT",
        "trace_id": "0" * 31 + "1",
        "span_id": "0" * 15 + "1",
        "parent_span_id": None,
        "start_time_unix_nano": start,
        "end_time_unix_nano": start + int(latency_ms * 1e6),
        "status": {"code": "ERROR" if error else "UNSET", "description": None},
        "attributes": attrs,
        "events": events,
        "links": [],
        "resource": {"service.name": "svc"},
        "scope": {"name": "llmwatch", "version": "0.1.0"},
    }


def write_spans(path: Path, records: Iterable[dict[str, Any]], tail: bytes = b"") -> Path:
    """Write records as JSON Lines, then ``tail`` raw (junk, a truncated line...)."""
    with path.open("wb") as out:
        for record in records:
            out.write(json.dumps(record).encode() + b"\n")
        out.write(tail)
    return path


# --- percentiles ----------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 20.0  # rank ceil(2.0) = 2
    assert percentile([10.0, 20.0, 30.0, 40.0], 95) == 40.0  # rank ceil(3.8) = 4
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_latency_and_ttft_percentiles_from_spans() -> None:
    latencies = [100.0 * i for i in range(1, 11)]  # 100 .. 1000 ms, shuffled order below
    records = [span(start_ms=i, latency_ms=lat) for i, lat in enumerate(reversed(latencies))]
    records += [span(start_ms=20, latency_ms=50, stream=True, ttft_ms=t) for t in (30.0, 10.0, 20.0)]
    records.append(span(start_ms=30, latency_ms=50, stream=False, ttft_ms=999.0))  # not a stream: ignored
    report = build_report(records_to_calls(records))
    all_latencies = sorted([*latencies, 50.0, 50.0, 50.0, 50.0])
    assert report.totals.latency_p50_ms == pytest.approx(all_latencies[6])  # rank ceil(7.0) = 7
    assert report.totals.latency_p95_ms == pytest.approx(1000.0)
    assert report.totals.latency_p99_ms == pytest.approx(1000.0)
    assert report.totals.ttft_p50_ms == 20.0
    assert report.totals.ttft_p95_ms == 30.0
    assert report.totals.streams == 3


def test_no_streams_means_no_ttft(tmp_path: Path) -> None:
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", [span(), span()])]))
    assert report.by_model[0].ttft_p50_ms is None and report.by_model[0].ttft_p95_ms is None
    console = Console(record=True, width=200)
    render_terminal(report, console)
    row = next(line for line in console.export_text().splitlines() if "openai/gpt-4o-mini" in line)
    assert row.split()[-3:-1] == ["-", "-"]  # ttft50, ttft95 (then avg)


# --- grouping -------------------------------------------------------------------------------------


def test_groups_none_labels_and_model_grouping(tmp_path: Path) -> None:
    records = [
        span(user=None, feature=None, cost=0.5),
        span(user="u-2", feature="chat", model="gpt-4", response_model="gpt-4-0613", cost=0.25),
        span(user="u-2", feature="chat", model="gpt-4", response_model="gpt-4-0613", cost=0.25),
        span(user="u-3", feature="chat", provider="anthropic", model="claude-x", cost=0.1),
    ]
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", records)]))
    assert [(g.key, g.calls) for g in report.by_feature] == [("chat", 3), (NONE_LABEL, 1)]
    # by cost, then by calls on a tie
    assert [(g.key, g.calls) for g in report.by_user] == [("u-2", 2), (NONE_LABEL, 1), ("u-3", 1)]
    # grouped by the request model; the response model (a dated snapshot) is listed inside its row
    assert [g.key for g in report.by_model] == ["openai/gpt-4", "openai/gpt-4o-mini", "anthropic/claude-x"]
    assert [(snap.model, snap.calls) for snap in report.by_model[0].snapshots] == [("gpt-4-0613", 2)]
    assert report.by_model[1].snapshots == () and report.by_feature[0].snapshots == ()
    assert report.totals.cost_usd == pytest.approx(1.1)
    assert sum(g.cost_usd for g in report.by_model) == pytest.approx(report.totals.cost_usd)
    # by provider: what each provider cost, the highest first
    assert [g.key for g in report.by_provider] == ["openai", "anthropic"]
    assert sum(g.cost_usd for g in report.by_provider) == pytest.approx(report.totals.cost_usd)


def test_top_users_and_others_row(tmp_path: Path) -> None:
    records = [span(user=f"user-{i:02d}", cost=float(i), input_tokens=i) for i in range(1, 16)]
    records.append(span(user="user-01", cost=0.5, input_tokens=100))
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", records)]), top_users=10)
    keys = [g.key for g in report.by_user]
    assert keys == [f"user-{i:02d}" for i in range(15, 5, -1)] + [OTHERS_LABEL]
    others = report.by_user[-1]
    assert report.other_users == 5 and report.users == 15
    assert others.calls == 6  # users 01..05, user-01 twice
    assert others.cost_usd == pytest.approx(1 + 2 + 3 + 4 + 5 + 0.5)
    assert others.input_tokens == 1 + 2 + 3 + 4 + 5 + 100
    assert sum(g.cost_usd for g in report.by_user) == pytest.approx(report.totals.cost_usd)
    assert sum(g.calls for g in report.by_user) == report.totals.calls
    assert [g.key for g in build_report(records_to_calls(records), top_users=20).by_user][-1] != OTHERS_LABEL


def records_to_calls(records: list[dict[str, Any]]) -> list[Any]:
    from llmwatch._report._load import call_from_record

    return [call for call in map(call_from_record, records) if call is not None]


def test_errors_and_unknown_models(tmp_path: Path) -> None:
    records = [
        span(cost=0.01),
        span(cost=None, error="RateLimitError"),
        span(provider="vllm", model="llama-3-8b", cost=None, unknown_model=True, input_tokens=7),
    ]
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", records)]))
    totals = report.totals
    assert (totals.calls, totals.errors, totals.unknown_cost_calls, totals.priced_calls) == (3, 1, 1, 1)
    assert totals.error_rate == pytest.approx(1 / 3)
    assert totals.avg_cost_usd == pytest.approx(0.01)  # over calls that carry a cost
    vllm = next(g for g in report.by_model if g.key == "vllm/llama-3-8b")
    assert vllm.avg_cost_usd is None and vllm.input_tokens == 7
    console = Console(record=True, width=220)
    render_terminal(report, console)
    text = console.export_text()
    assert "unknown" in text and "+?" in text
    assert "1 call(s) to models with no known price" in text


# --- refusals and request models (issue 12, item 5) ------------------------------------------------


def _refusal_records() -> list[dict[str, Any]]:
    sent = dict(user="u-1", feature="summarize", model="gpt-4o", stream=True)
    records = [
        span(start_ms=i, latency_ms=lat, response_model="gpt-4o-2024-08-06", cost=0.003, ttft_ms=100.0 + i, **sent)
        for i, lat in enumerate((800.0, 900.0, 1000.0))
    ]
    records.append(span(start_ms=5, latency_ms=200.0, cost=None, error="RateLimitError", **sent))
    # Refused before any I/O: a few microseconds each, more of them than sent calls.
    records += [span(start_ms=10 + i, latency_ms=0.01, refused="budget", **sent) for i in range(5)]
    records.append(
        span(start_ms=20, latency_ms=0.01, user="u-2", feature="beta", model="gpt-4o", refused="kill_switch")
    )
    return records


def test_refusals_are_counted_apart_and_left_out_of_errors_and_latency(tmp_path: Path) -> None:
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", _refusal_records())]))
    feature = {g.key: g for g in report.by_feature}
    user = {g.key: g for g in report.by_user}
    model = {g.key: g for g in report.by_model}
    # one row per request model: the failed and refused calls are not a row of their own
    assert list(model) == ["openai/gpt-4o"]
    for group in (report.totals, feature["summarize"], user["u-1"], model["openai/gpt-4o"]):
        extra = 1 if group in (report.totals, model["openai/gpt-4o"]) else 0  # the kill-switched call
        assert (group.calls, group.refused, group.sent, group.errors) == (9 + extra, 5 + extra, 4, 1), group.key
        assert group.error_rate == pytest.approx(1 / 4)  # over the 4 calls sent
        # nearest rank over the sent latencies 200, 800, 900, 1000: no refusal's 0.01 ms
        assert (group.latency_p50_ms, group.latency_p95_ms, group.latency_p99_ms) == (800.0, 1000.0, 1000.0)
        assert group.streams == 4 and group.ttft_p50_ms == 101.0
        assert group.cost_usd == pytest.approx(0.009) and group.avg_cost_usd == pytest.approx(0.003)
    beta = feature["beta"]
    assert (beta.calls, beta.refused, beta.sent, beta.errors, beta.latency_p50_ms) == (1, 1, 0, 0, None)


def test_refusals_and_snapshots_in_the_json(tmp_path: Path) -> None:
    doc = report_to_dict(build_report(load_spans([write_spans(tmp_path / "s.jsonl", _refusal_records())])))
    (row,) = doc["by_model"]
    assert (row["key"], row["provider"], row["model"]) == ("openai/gpt-4o", "openai", "gpt-4o")
    assert (row["calls"], row["sent"], row["refused"], row["errors"]) == (10, 4, 6, 1)
    assert row["error_rate"] == pytest.approx(0.25)
    assert row["latency_ms"] == {"p50": 800.0, "p95": 1000.0, "p99": 1000.0}
    assert row["snapshots"] == [{"model": "gpt-4o-2024-08-06", "calls": 3, "cost_usd": pytest.approx(0.009)}]
    totals = doc["totals"]
    assert (totals["calls"], totals["sent"], totals["refused"], totals["errors"]) == (10, 4, 6, 1)
    beta = next(group for group in doc["by_feature"] if group["key"] == "beta")
    assert (beta["refused"], beta["sent"], beta["error_rate"], beta["latency_ms"]["p50"]) == (1, 0, None, None)
    for table in ("by_feature", "by_user", "by_provider", "by_model"):
        assert sum(group["refused"] for group in doc[table]) == totals["refused"]
    json.dumps(doc, allow_nan=False)


def test_a_refusal_whose_event_was_dropped_still_counts(tmp_path: Path) -> None:
    fallback = span(cost=None)  # a budget fallback answered instead of the provider
    fallback["attributes"]["llmwatch.budget.fallback"] = True
    limited = {**span(refused="budget"), "events": []}  # events lost to an attribute-limited exporter
    limited["attributes"]["llmwatch.refusal.reason"] = "budget"
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", [span(), fallback, limited])]))
    assert (report.totals.calls, report.totals.refused, report.totals.errors) == (3, 2, 0)


def test_real_refusals_failures_and_snapshots(tmp_path: Path, openai_client: Any) -> None:
    """Real SDK calls on the loopback server, real refusals, the real exporter's file."""
    import openai

    path = tmp_path / "s.jsonl"
    llmwatch.configure(exporter="file", file_path=str(path), service_name="t", instrument=False)
    messages = [{"role": "user", "content": "hello there"}]
    try:
        llmwatch.budget(1e-9, per="day", feature="summarize")  # the first call crosses it; the rest are refused
        llmwatch.kill_switch(feature="beta")
        with llmwatch.attributes(user="u-1", feature="summarize"):
            openai_client.chat.completions.create(model="gpt-4o", messages=messages)
            for _ in range(4):
                with pytest.raises(llmwatch.BudgetExceeded):
                    openai_client.chat.completions.create(model="gpt-4o", messages=messages)
        with llmwatch.attributes(user="u-1", feature="search"):
            for _ in range(2):
                openai_client.chat.completions.create(model="gpt-4o", messages=messages)
            with pytest.raises(openai.InternalServerError):
                openai_client.chat.completions.create(
                    model="gpt-4o", messages=messages, extra_headers={"x-fake-scenario": "error-500"}
                )
        with llmwatch.attributes(user="u-2", feature="beta"), pytest.raises(llmwatch.FeatureDisabled):
            openai_client.chat.completions.create(model="gpt-4o", messages=messages)
        assert llmwatch.force_flush(timeout_s=10)
    finally:
        llmwatch.shutdown(timeout_s=5)

    records = [json.loads(line) for line in path.read_text().splitlines()]
    sent = [r for r in records if not any(e["name"] == "llmwatch.call.refused" for e in r["events"])]
    assert len(records) == 9 and len(sent) == 4
    sent_latencies = sorted((r["end_time_unix_nano"] - r["start_time_unix_nano"]) / 1e6 for r in sent)
    report = build_report(load_spans([path]))
    (row,) = report.by_model
    assert row.key == "openai/gpt-4o"
    assert [(snap.model, snap.calls) for snap in row.snapshots] == [("gpt-4o-2024-08-06", 3)]
    assert (row.calls, row.refused, row.sent, row.errors) == (9, 5, 4, 1)
    assert row.error_rate == pytest.approx(0.25)
    assert row.latency_p50_ms == pytest.approx(percentile(sent_latencies, 50))
    assert row.latency_p99_ms == pytest.approx(sent_latencies[-1])
    by_feature = {g.key: g for g in report.by_feature}
    assert (by_feature["summarize"].refused, by_feature["summarize"].errors) == (4, 0)
    assert (by_feature["search"].refused, by_feature["search"].errors) == (0, 1)
    assert (by_feature["beta"].refused, by_feature["beta"].sent) == (1, 0)
    console = Console(record=True, width=200)
    render_terminal(report, console)
    text = console.export_text()
    assert "gpt-4o-2024-08-06 \N{MULTIPLICATION SIGN}3" in text
    assert "9 calls | 5 refused | 1 errors (25.0% of 4 sent)" in text


# --- the terminal at any width: numbers whole ------------------------------------------------------


def _wide_figures_report(tmp_path: Path) -> Any:
    records = _refusal_records()
    for i, (model, response_model) in enumerate(
        [
            ("claude-sonnet-4-6-20250929-with-a-long-name", None),
            ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
            ("meta-llama/Llama-3.1-405B-Instruct-Turbo", None),
        ]
    ):
        for j in range(3):
            records.append(
                span(
                    start_ms=100 + 10 * i + j,
                    latency_ms=1234.5 + j,
                    user=f"user-with-a-rather-long-identifier-{i}",
                    feature=f"feature-{i}",
                    provider="anthropic" if i == 0 else "together" if i == 2 else "openai",
                    model=model,
                    response_model=response_model,
                    cost=[1234.56789, 0.0000413, 0.0123456][i] * (j + 1),
                    input_tokens=1_234_567,
                    output_tokens=98_765,
                    stream=True,
                    ttft_ms=4321.0,
                    unknown_model=i == 2 and j == 0,
                )
            )
    return build_report(load_spans([write_spans(tmp_path / "s.jsonl", records)]))


def _whole(figure: str, text: str) -> bool:
    return re.search(rf"(?<!\S){re.escape(figure)}(?!\S)", text) is not None


@pytest.mark.parametrize("width", [200, 100, 80, 60, 40])
def test_every_figure_is_printed_whole_at_any_width(tmp_path: Path, width: int) -> None:
    from llmwatch._report._terminal import COLUMNS, cost_cell

    report = _wide_figures_report(tmp_path)
    console = Console(record=True, width=width)
    render_terminal(report, console)
    text = console.export_text()
    assert "\N{HORIZONTAL ELLIPSIS}" not in text
    assert all(len(line) <= width for line in text.splitlines())
    left_out = re.search(r"left out at this width: (.*?) \(", " ".join(text.split()))
    dropped = set(left_out.group(1).split(", ")) if left_out else set()
    groups = [*report.by_feature, *report.by_user, *report.by_model]
    assert _whole(cost_cell(report.totals).split()[0], text)
    for group in groups:
        cost = cost_cell(group)  # every time, in full: "$7,407.41", "$0.0741 +?" (in a block: "cost=$0.0741+?")
        assert _whole(cost, text) or _whole("cost=" + cost.replace(" ", ""), text), (width, group.key, cost)
        for column in COLUMNS:
            if column.short in dropped:
                continue
            cell = column.cell(group).replace(" ", "")
            block = f"{column.short.replace(' ', '')}={cell}"  # the narrowest layout's word
            assert any(_whole(candidate, text.replace(" +?", "+?")) for candidate in (cell, block)), (
                width,
                group.key,
                column.short,
            )
    if width >= 200:
        assert not dropped
    if width <= 100:
        assert "avg" in dropped or width <= 40  # the least important column goes first
    assert ("calls=" in text) == (width <= 40)  # the narrowest: a block per group instead of a table


def test_wrapped_labels_keep_every_character() -> None:
    from llmwatch._report._terminal import wrap_label

    label = "meta-llama/Llama-3.1-405B-Instruct-Turbo"
    for width in (4, 8, 12, 16, 40):
        lines = wrap_label(label, width)
        assert all(len(line) <= width for line in lines)
        assert "".join(line.strip() for line in lines) == label
    assert wrap_label("anthropic/claude-sonnet-4-6", 16) == ["anthropic/", "  claude-sonnet-", "  4-6"]


def test_html_shows_refusals_and_snapshots(tmp_path: Path) -> None:
    loaded = load_spans([write_spans(tmp_path / "s.jsonl", _refusal_records())])
    page = write_html(build_report(loaded), loaded, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<th>refused</th>" in page
    assert '<span class="snap">gpt-4o-2024-08-06 \N{MULTIPLICATION SIGN}3</span>' in page
    assert "10 calls | 6 refused | 1 errors (25.0% of 4 sent)" in page


# --- bad input ------------------------------------------------------------------------------------


def test_junk_and_truncated_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    good = [span(cost=0.25), span(cost=0.75)]
    workflow = {**span(), "attributes": {"llmwatch.span.kind": "workflow"}}
    no_times = {**span(), "start_time_unix_nano": None}
    tail = b"".join(
        [
            b"\n",  # blank lines are not counted
            b"not json at all\n",
            b"\xff\xfe\x00 binary junk\n",
            b"[1, 2, 3]\n",
            b'{"name": "no attributes"}\n',
            json.dumps(no_times).encode() + b"\n",
            json.dumps(workflow).encode() + b"\n",
            json.dumps(span())[:40].encode(),  # the last line, cut short by a killed process
        ]
    )
    loaded = load_spans([write_spans(tmp_path / "s.jsonl", good, tail)])
    assert len(loaded.spans) == 2
    assert loaded.skipped_lines == 6
    assert loaded.other_spans == 1
    report = build_report(loaded)
    assert report.totals.cost_usd == pytest.approx(1.0)
    assert report_to_dict(report)["skipped_lines"] == 6
    console = Console(record=True, width=200)
    render_terminal(report, console)
    assert "skipped 6 unreadable line(s)" in console.export_text()


def test_odd_attribute_values_do_not_crash(tmp_path: Path) -> None:
    record = span()
    record["attributes"].update(
        {
            "gen_ai.usage.input_tokens": "many",
            "gen_ai.usage.output_tokens": None,
            "llmwatch.cost.usd": "NaN",  # how the exporter writes a non-finite float
            "llmwatch.user": 12345,
            "llmwatch.feature": ["a", "list"],
        }
    )
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", [record])]))
    assert report.totals.calls == 1 and report.totals.input_tokens == 0 and report.totals.priced_calls == 0
    assert report.by_user[0].key == "12345" and report.by_feature[0].key == NONE_LABEL


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    report = build_report(load_spans([path]))
    console = Console(record=True, width=120)
    render_terminal(report, console)
    assert "no LLM calls" in console.export_text()
    assert report_to_dict(report)["totals"]["calls"] == 0


# --- the acceptance criterion: the report's totals are the sums over the spans in the file ---------


def test_report_totals_equal_sums_over_a_real_span_file(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    llmwatch.configure(exporter="file", file_path=str(path), service_name="t", instrument=False)
    try:
        plan = [("u-1", "search", "gpt-4o-mini", 10, 5), ("u-2", "search", "gpt-4o", 200, 50)]
        plan += [("u-1", "chat", "gpt-4o-mini", 1234, 321), ("u-3", "summarize", "gpt-4o", 40, 7)] * 3
        for user, feature, model, tokens_in, tokens_out in plan:
            with (
                llmwatch.attributes(user=user, feature=feature),
                llmwatch.llm_call(provider="openai", model=model) as call,
            ):
                call.set_output("hi", input_tokens=tokens_in, output_tokens=tokens_out)
        with (
            pytest.raises(RuntimeError),
            llmwatch.attributes(user="u-1", feature="chat"),
            llmwatch.llm_call(provider="openai", model="gpt-4o-mini"),
        ):
            raise RuntimeError("provider down")

        @llmwatch.observe
        def workflow() -> None:  # a span that is not an LLM call
            with llmwatch.llm_call(provider="vllm", model="no-such-model-xyz") as call:
                call.set_output("hi", input_tokens=3, output_tokens=2)

        workflow()
        assert llmwatch.force_flush(timeout_s=10)
    finally:
        llmwatch.shutdown(timeout_s=5)

    records = [json.loads(line) for line in path.read_text().splitlines()]
    calls = [r["attributes"] for r in records if "gen_ai.operation.name" in r["attributes"]]
    assert len(calls) == len(plan) + 2 and len(records) == len(calls) + 1
    report = build_report(load_spans([path]))
    totals = report.totals
    assert totals.calls == len(calls)
    assert totals.cost_usd == pytest.approx(math.fsum(a.get("llmwatch.cost.usd", 0.0) for a in calls), rel=1e-12)
    assert totals.cost_usd > 0
    assert totals.input_tokens == sum(a.get("gen_ai.usage.input_tokens", 0) for a in calls)
    assert totals.output_tokens == sum(a.get("gen_ai.usage.output_tokens", 0) for a in calls)
    assert totals.errors == sum("error.type" in a for a in calls) == 1
    assert totals.unknown_cost_calls == 1
    assert report.other_spans == 1 and report.skipped_lines == 0
    # every table partitions the same calls
    for table in (report.by_feature, report.by_user, report.by_model):
        assert sum(g.calls for g in table) == totals.calls
        assert sum(g.input_tokens for g in table) == totals.input_tokens
        assert sum(g.cost_usd for g in table) == pytest.approx(totals.cost_usd, rel=1e-12)
    by_user = {g.key: g for g in report.by_user}
    assert (by_user["u-1"].calls, by_user["u-1"].errors, by_user["u-1"].input_tokens) == (5, 1, 10 + 3 * 1234)
    assert by_user[NONE_LABEL].calls == 1  # the workflow's call ran outside attributes()


# --- JSON -----------------------------------------------------------------------------------------

GROUP_KEYS = {
    "key", "calls", "sent", "refused", "errors", "error_rate", "cost_usd", "priced_calls", "unknown_cost_calls",
    "avg_cost_usd", "input_tokens", "output_tokens", "cache_read_input_tokens", "reasoning_output_tokens", "streams",
    "latency_ms", "ttft_ms",
}  # fmt: skip


def test_json_schema(tmp_path: Path) -> None:
    records = [span(user=f"u{i}", stream=True, ttft_ms=12.5) for i in range(3)]
    path = write_spans(tmp_path / "s.jsonl", records)
    doc = report_to_dict(build_report(load_spans([path]), top_users=2))
    assert set(doc) == {
        "schema_version", "file", "files", "skipped_lines", "other_spans", "totals",
        "by_feature", "by_user", "other_users", "by_provider", "by_model", "by_run", "runs", "by_agent",
        "rollouts",
    }  # fmt: skip
    assert doc["rollouts"] == []  # no call was sent in a rollout: the key is there, empty
    assert doc["schema_version"] == 2 and doc["file"] == str(path) and doc["files"] == [str(path)]
    assert set(doc["totals"]) == GROUP_KEYS | {
        "users", "features", "models", "first_start_unix_nano", "last_end_unix_nano", "duration_s",
    }  # fmt: skip
    for row in doc["by_feature"] + doc["by_user"]:
        assert set(row) == GROUP_KEYS
        assert set(row["latency_ms"]) == {"p50", "p95", "p99"} and set(row["ttft_ms"]) == {"p50", "p95"}
    assert set(doc["by_model"][0]) == GROUP_KEYS | {"provider", "model", "snapshots"}
    assert set(doc["by_provider"][0]) == GROUP_KEYS and doc["by_provider"][0]["key"] == "openai"
    assert (doc["by_model"][0]["provider"], doc["by_model"][0]["model"]) == ("openai", "gpt-4o-mini")
    assert [row["key"] for row in doc["by_user"]][-1] == OTHERS_LABEL and doc["other_users"] == 1
    assert doc["totals"]["ttft_ms"] == {"p50": 12.5, "p95": 12.5}
    json.dumps(doc, allow_nan=False)  # strict JSON


# --- terminal -------------------------------------------------------------------------------------


def test_terminal_prints_user_strings_as_typed(tmp_path: Path) -> None:
    records = [span(user="[bold red]mallory[/]", feature="evil\x1b[2Jfeature"), span(user="bob")]
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", records)]), top_users=1)
    console = Console(record=True, width=200)
    render_terminal(report, console)
    text = console.export_text()
    assert "[bold red]mallory[/]" in text  # rich markup not interpreted
    assert "\x1b" not in text and "evil\N{REPLACEMENT CHARACTER}[2Jfeature" in text
    assert f"{OTHERS_LABEL} 1 more" in text
    assert "By feature" in text and "By user" in text and "By model" in text
    assert "2 calls | 0 refused | 0 errors (0.0% of 2 sent)" in text


# --- HTML -----------------------------------------------------------------------------------------

EVIL = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'


def _html_fixture(tmp_path: Path) -> tuple[Path, Any, Any]:
    records = []
    for i in range(120):
        records.append(
            span(
                start_ms=i * 5_000,
                latency_ms=100 + (i * 37) % 900,
                user=f"user-{i % 7}" if i % 5 else EVIL,
                feature=["search", "chat", "summarize", EVIL][i % 4],
                model=["gpt-4o-mini", "gpt-4o"][i % 2],
                cost=0.001 * (1 + i % 3),
                input_tokens=100 + i,
                output_tokens=20 + i,
                stream=i % 3 == 0,
                ttft_ms=50.0 + i if i % 3 == 0 else None,
                error="RateLimitError" if i % 17 == 0 else None,
            )
        )
    loaded = load_spans([write_spans(tmp_path / "s.jsonl", records)])
    report = build_report(loaded, top_users=5)
    out = write_html(report, loaded, tmp_path / "report.html")
    return out, report, loaded


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    out, _, _ = _html_fixture(tmp_path)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in page  # the browser may fetch nothing
    assert not re.search(r"<script[^>]+src=", page)
    assert len(page) > 1_000_000  # plotly.js inlined
    assert EVIL not in page and "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(&quot;x&quot;)" in page  # the table cell, escaped
    assert page.count('class="chart"') == 3


def test_html_without_plotly_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)  # import now raises ImportError
    loaded = load_spans([write_spans(tmp_path / "s.jsonl", [span()])])
    with pytest.raises(MissingExtraError, match=r"pip install 'llmwatch\[html\]'"):
        write_html(build_report(loaded), loaded, tmp_path / "r.html")


def _chromium() -> str | None:
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}",
    ]  # fmt: skip
    return subprocess.run([browser, *flags, *args], capture_output=True, timeout=180, check=False)


def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium: install it (apt-get install -y chromium) to check the HTML page renders")
    out, _, _ = _html_fixture(tmp_path)
    url = out.resolve().as_uri()

    dom = _run_chromium(browser, tmp_path / "profile-dom", "--dump-dom", "--virtual-time-budget=5000", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html_after_js = dom.stdout.decode("utf-8", "replace")
    # plotly draws each chart into a "plot-container" holding its <svg class="main-svg"> layers
    assert html_after_js.count('class="plot-container plotly"') == 3
    assert html_after_js.count('<svg class="main-svg"') >= 3
    visible = re.sub(r"(?s)<script.*?</script>|<style.*?</style>", "", html_after_js)
    assert "Error" not in visible  # no plotly error message
    assert not re.search(r"<img\b|<script>alert", visible)  # the hostile labels stayed text
    assert 'alert("x")' in visible  # ... and are shown as typed, in the legend and the tables
    assert "Cost by feature over time" in visible and "Tokens by model" in visible

    png = tmp_path / "report.png"
    shot = _run_chromium(
        browser, tmp_path / "profile-shot", f"--screenshot={png}", "--window-size=1280,2000",
        "--virtual-time-budget=5000", url,
    )  # fmt: skip
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a blank page compresses to a few KB
    assert len(set(_png_pixels(data))) > 16  # not a single colour


def _png_pixels(data: bytes) -> bytes:
    """The decompressed image bytes of a PNG (rows with their filter bytes): enough to see variety."""
    idat, offset = b"", 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return zlib.decompress(idat)


# --- runs -----------------------------------------------------------------------------------------
def observe_span(name: str, span_id: str, parent: str | None, start_ms: float, run: str) -> dict[str, Any]:
    """An observe span of run ``run`` in the exporter's shape (no gen_ai.operation.name: a workflow)."""
    record = span(start_ms=start_ms)
    record.update(name=name, kind="INTERNAL", span_id=span_id, parent_span_id=parent)
    record["attributes"] = {"llmwatch.span.kind": "task", "llmwatch.run.id": run, "llmwatch.rollup.llm_calls": 0}
    return record


@pytest.mark.parametrize("tie", [False, True])
def test_a_run_is_named_after_its_root_whatever_the_order_spans_were_written(tmp_path: Path, tie: bool) -> None:
    # Children end, so are written, before their parent; a coarse clock can give parent and child one start.
    root = observe_span("trip", "a" * 16, "f" * 16, 0.0, run="1234abcd1234abcd")  # parented by a server span
    child = observe_span("lookup", "b" * 16, "a" * 16, 0.0 if tie else 1.0, run="1234abcd1234abcd")
    grandchild = observe_span("fetch", "c" * 16, "b" * 16, 0.0 if tie else 2.0, run="1234abcd1234abcd")
    other = observe_span("other", "d" * 16, None, 5.0, run="99999999aaaaaaaa")
    for order in ([grandchild, child, root, other], [root, other, child, grandchild], [child, root, grandchild]):
        loaded = load_spans([write_spans(tmp_path / "s.jsonl", order)])
        assert loaded.run_names["1234abcd1234abcd"] == "trip"
        assert loaded.run_names.get("99999999aaaaaaaa", "other") == "other"
