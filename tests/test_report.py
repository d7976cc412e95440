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
) -> dict[str, Any]:
    """One LLM-call span in the exporter's JSON Lines shape (llmwatch/_export.py)."""
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
        "events": [],
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
    assert [g.key for g in report.by_model] == ["openai/gpt-4-0613", "openai/gpt-4o-mini", "anthropic/claude-x"]
    assert report.totals.cost_usd == pytest.approx(1.1)
    assert sum(g.cost_usd for g in report.by_model) == pytest.approx(report.totals.cost_usd)


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
    "key", "calls", "errors", "error_rate", "cost_usd", "priced_calls", "unknown_cost_calls", "avg_cost_usd",
    "input_tokens", "output_tokens", "cache_read_input_tokens", "reasoning_output_tokens", "streams",
    "latency_ms", "ttft_ms",
}  # fmt: skip


def test_json_schema(tmp_path: Path) -> None:
    records = [span(user=f"u{i}", stream=True, ttft_ms=12.5) for i in range(3)]
    path = write_spans(tmp_path / "s.jsonl", records)
    doc = report_to_dict(build_report(load_spans([path]), top_users=2))
    assert set(doc) == {
        "schema_version", "file", "files", "skipped_lines", "other_spans", "totals",
        "by_feature", "by_user", "other_users", "by_model",
    }  # fmt: skip
    assert doc["schema_version"] == 1 and doc["file"] == str(path) and doc["files"] == [str(path)]
    assert set(doc["totals"]) == GROUP_KEYS | {
        "users", "features", "models", "first_start_unix_nano", "last_end_unix_nano", "duration_s",
    }  # fmt: skip
    for row in doc["by_feature"] + doc["by_user"]:
        assert set(row) == GROUP_KEYS
        assert set(row["latency_ms"]) == {"p50", "p95", "p99"} and set(row["ttft_ms"]) == {"p50", "p95"}
    assert set(doc["by_model"][0]) == GROUP_KEYS | {"provider", "model"}
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
    assert "2 calls | 0 errors (0.0%)" in text


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
    return subprocess.run([browser, *flags, *args], capture_output=True, timeout=60, check=False)


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
