"""The report's rollouts section: arms side by side (calls, shadow, errors, latency, cost, scores), the
challenger against the champion, and the rollback/promotion decisions read from span events."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from test_report import T0, span, write_spans

import llmwatch
from llmwatch._report import build_report, load_spans, render_terminal, report_to_dict, write_html

EVIDENCE = {
    "arms": {
        "champion": {"calls": 20, "error_rate": 0.05, "p50_s": 0.19, "p95_s": 0.28, "scores": {}},
        "challenger": {"calls": 10, "error_rate": 0.4, "p50_s": 0.38, "p95_s": 0.48, "scores": {}},
    },
    "evidence": {
        "error_rate": {
            "verdict": "worse",
            "difference": 0.35,
            "bound": 0.02,
            "log_likelihood_ratio": 41.2,
            "threshold": 3.0,
        },
        "p95_latency_ratio": {
            "verdict": "undecided",
            "difference": 0.7,
            "bound": 0.405465,
            "log_likelihood_ratio": 1.1,
            "threshold": 3.0,
        },
        "cost_per_call_ratio": {
            "verdict": "not_worse",
            "difference": -0.1,
            "bound": 0.0,
            "log_likelihood_ratio": 5.0,
            "threshold": 3.0,
        },
    },
}
ROLLBACK_AT = T0 + 9_000_000_000


def rollout_span(
    arm: str,
    span_id: str,
    *,
    rollout: str = "checkout",
    start_ms: float = 0.0,
    latency_ms: float = 100.0,
    cost: float | None = 0.001,
    error: str | None = None,
    shadow: bool = False,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An LLM span sent in a rollout, as llmwatch/_instrument/_base.py marks one."""
    record = span(start_ms=start_ms, latency_ms=latency_ms, cost=None if error else cost, error=error)
    record["span_id"] = span_id
    record["attributes"].update({"llmwatch.rollout.name": rollout, "llmwatch.rollout.arm": arm})
    if shadow:
        record["attributes"]["llmwatch.rollout.shadow"] = True
    record["events"].extend(events or [])
    return record


def decision_event(kind: str, evidence: object, *, rollout: str = "checkout", at: int | None = None) -> dict[str, Any]:
    """The event on the call that decided (llmwatch/_core/_rollout_step.py); ``evidence`` as written."""
    attrs: dict[str, Any] = {"llmwatch.rollout.name": rollout}
    if evidence is not None:
        attrs["llmwatch.rollout.evidence"] = evidence if isinstance(evidence, str) else json.dumps(evidence)
    return {"name": f"llmwatch.rollout.{kind}", "time_unix_nano": at or ROLLBACK_AT, "attributes": attrs}


def score_span(parent: str, name: str, value: object, index: int) -> dict[str, Any]:
    """``llmwatch.score()``'s ``evaluate {name}`` span: a child of the call it scores (llmwatch/_scores.py)."""
    attrs: dict[str, Any] = {"gen_ai.evaluation.name": name}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        attrs["gen_ai.evaluation.score.value"] = value
    else:
        attrs["gen_ai.evaluation.score.label"] = str(value)
    return {
        "name": f"evaluate {name}",
        "kind": "INTERNAL",
        "trace_id": "0" * 31 + "1",
        "span_id": f"{0xE000 + index:016x}",
        "parent_span_id": parent,
        "start_time_unix_nano": T0 + 60_000_000_000,
        "end_time_unix_nano": T0 + 60_000_000_001,
        "status": {"code": "UNSET", "description": None},
        "attributes": attrs,
        "events": [{"name": "gen_ai.evaluation.result", "time_unix_nano": T0, "attributes": attrs}],
        "links": [],
        "resource": {},
        "scope": {"name": "llmwatch", "version": "0.1.0"},
    }


def two_arm_records() -> list[dict[str, Any]]:
    """Champion: 20 calls, 1 failed, 100..290 ms, $0.001 each; challenger: 10 calls (2 shadow), 4 failed,
    300..480 ms, $0.003 each, rolled back on its last call. Scores: champion 0.9 and 0.7, challenger
    0.4, 0.6, 0.5; and scores that must not count (a label, a call outside the rollout, an unknown span)."""
    champion = [
        rollout_span("champion", f"{0xA000 + i:016x}", start_ms=i * 100, latency_ms=100 + 10 * i, error=err)
        for i, err in enumerate(["RateLimitError", *[None] * 19])
    ]
    challenger = [
        rollout_span(
            "challenger",
            f"{0xB000 + i:016x}",
            start_ms=i * 100 + 50,
            latency_ms=300 + 20 * i,
            cost=0.003,
            error="InternalServerError" if i in (1, 3, 5, 7) else None,
            shadow=i >= 8,
            events=[decision_event("rollback", EVIDENCE)] if i == 9 else None,
        )
        for i in range(10)
    ]
    outside = span(start_ms=5, latency_ms=999, feature="other", cost=0.5)
    outside["span_id"] = f"{0xC000:016x}"
    scores = [
        score_span(champion[2]["span_id"], "helpful", 0.9, 0),
        score_span(champion[3]["span_id"], "helpful", 0.7, 1),
        score_span(challenger[0]["span_id"], "helpful", 0.4, 2),
        score_span(challenger[2]["span_id"], "helpful", 0.6, 3),
        score_span(challenger[4]["span_id"], "helpful", 0.5, 4),
        score_span(challenger[4]["span_id"], "helpful", "bad", 5),  # a label: no value to average
        score_span(outside["span_id"], "helpful", 0.0, 6),  # a call outside any rollout
        score_span(f"{0xDEAD:016x}", "helpful", 0.0, 7),  # a call in no file read
    ]
    return [*champion, outside, *challenger, *scores]


@pytest.fixture()
def two_arms(tmp_path: Path) -> Any:
    return build_report(load_spans([write_spans(tmp_path / "s.jsonl", two_arm_records())]))


def terminal(report: Any, width: int = 140) -> str:
    console = Console(record=True, width=width)
    render_terminal(report, console)
    return console.export_text()


def line_with(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(label))


# --- figures ----------------------------------------------------------------------------------------


def test_each_arms_figures_and_the_comparison_in_the_json(two_arms: Any) -> None:
    doc = report_to_dict(two_arms)
    json.dumps(doc, allow_nan=False)  # strict JSON
    (rollout,) = doc["rollouts"]
    assert (rollout["name"], rollout["calls"], rollout["decision"]) == ("checkout", 30, "rolled_back")
    assert list(rollout["arms"]) == ["champion", "challenger"]
    champion, challenger = rollout["arms"]["champion"], rollout["arms"]["challenger"]
    assert (champion["calls"], champion["shadow_calls"], champion["errors"]) == (20, 0, 1)
    assert champion["error_rate"] == pytest.approx(0.05)
    assert champion["latency_ms"]["p50"] == pytest.approx(190) and champion["latency_ms"]["p95"] == pytest.approx(280)
    assert champion["avg_cost_usd"] == pytest.approx(0.001) and champion["cost_usd"] == pytest.approx(0.019)
    assert champion["scores"] == {"helpful": {"mean": pytest.approx(0.8), "count": 2}}
    assert (challenger["calls"], challenger["shadow_calls"], challenger["errors"]) == (10, 2, 4)
    assert challenger["error_rate"] == pytest.approx(0.4)
    assert challenger["latency_ms"]["p50"] == pytest.approx(380) and challenger["latency_ms"]["p95"] == pytest.approx(
        480
    )
    assert challenger["avg_cost_usd"] == pytest.approx(0.003) and challenger["cost_usd"] == pytest.approx(0.018)
    assert challenger["scores"] == {"helpful": {"mean": pytest.approx(0.5), "count": 3}}
    compared = rollout["challenger_vs_champion"]
    assert compared["error_rate_difference"] == pytest.approx(0.35)
    assert compared["latency_p50_ratio"] == pytest.approx(2.0)
    assert compared["latency_p95_ratio"] == pytest.approx(480 / 280)
    assert compared["cost_per_call_ratio"] == pytest.approx(3.0)
    assert compared["score_differences"] == {"helpful": pytest.approx(-0.3)}
    assert doc["totals"]["calls"] == 31  # the rollout's calls are in the other tables too


def test_the_rollback_decision_and_its_evidence(two_arms: Any) -> None:
    (decision,) = report_to_dict(two_arms)["rollouts"][0]["decisions"]
    assert decision["action"] == "rolled_back" and decision["time_unix_nano"] == ROLLBACK_AT
    assert decision["evidence_readable"] is True and decision["worse"] == ["error_rate"]
    assert decision["guards"]["error_rate"] == EVIDENCE["evidence"]["error_rate"]
    assert decision["guards"]["p95_latency_ratio"]["verdict"] == "undecided"
    assert decision["arms_at_decision"] == EVIDENCE["arms"]


def test_the_terminal_shows_the_arms_side_by_side(two_arms: Any) -> None:
    text = terminal(two_arms)
    section = text[text.index("Rollouts") :]
    assert "Rollout checkout (rolled back)" in section
    header = line_with(section, "champion")
    assert re.search(r"champion\s+challenger\s+difference", header), header
    assert re.search(r"^\s*calls\s+20\s+10\s*$", line_with(section, "calls"))
    assert re.search(r"shadow\s+0\s+2\s*$", line_with(section, "shadow"))
    assert re.search(r"error %\s+5\.0%\s+40\.0%\s+\+35\.0 pp\s*$", line_with(section, "error %"))
    assert re.search(r"p50 ms\s+190\s+380\s+\N{MULTIPLICATION SIGN}2\.00\s*$", line_with(section, "p50 ms"))
    assert re.search(r"p95 ms\s+280\s+480\s+\N{MULTIPLICATION SIGN}1\.71\s*$", line_with(section, "p95 ms"))
    assert re.search(
        r"cost/call\s+\$0\.001000\s+\$0\.003000\s+\N{MULTIPLICATION SIGN}3\.00\s*$", line_with(section, "cost/call")
    )
    score = line_with(section, "score helpful")
    assert re.search(r"0\.800 \(n=2\)\s+0\.500 \(n=3\)\s+-0\.300\s*$", score), score
    assert (
        "rolled back at 2026-05-28 20:26:49 UTC: challenger worse on error_rate; undecided: p95_latency_ratio; "
        "not worse: cost_per_call_ratio"
    ) in " ".join(section.split())
    assert "refused" not in section  # no refused call in the rollout: no such line


def test_a_promotion_and_a_rollout_without_decision(tmp_path: Path) -> None:
    promoted = {
        "arms": {},
        "evidence": {name: {"verdict": "not_worse"} for name in ("error_rate", "p95_latency_ratio")},
    }
    records = [
        rollout_span("champion", f"{0xA0 + i:016x}", rollout="prompt-v2", latency_ms=200, start_ms=i) for i in range(4)
    ]
    records += [
        rollout_span("challenger", "00000000000000b0", rollout="prompt-v2", latency_ms=100),
        rollout_span(
            "challenger",
            "00000000000000b1",
            rollout="prompt-v2",
            latency_ms=100,
            events=[decision_event("promote", promoted, rollout="prompt-v2")],
        ),
        rollout_span("challenger", "00000000000000c0", rollout="new-model", cost=None),
    ]
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", records)]))
    by_name = {rollout["name"]: rollout for rollout in report_to_dict(report)["rollouts"]}
    assert list(by_name) == ["new-model", "prompt-v2"]
    (decision,) = by_name["prompt-v2"]["decisions"]
    assert (decision["action"], decision["worse"], decision["evidence_readable"]) == ("promoted", [], True)
    assert by_name["prompt-v2"]["challenger_vs_champion"]["latency_p50_ratio"] == pytest.approx(0.5)
    fresh = by_name["new-model"]
    assert fresh["decision"] is None and fresh["decisions"] == []
    assert fresh["arms"]["champion"]["calls"] == 0 and fresh["arms"]["champion"]["error_rate"] is None
    assert fresh["challenger_vs_champion"]["error_rate_difference"] is None
    text = " ".join(terminal(report).split())
    assert "Rollout prompt-v2 (promoted)" in text
    assert "challenger not worse on error_rate, p95_latency_ratio" in text
    assert "Rollout new-model (no decision)" in text
    assert "no rollback or promotion in these spans" in text
    assert "shadow" not in text  # no shadow call anywhere: no such line


@pytest.mark.parametrize(
    "evidence",
    [
        "{not json",
        '{"arms": {"champion": {"calls": 3}}, "evid',  # cut short by an attribute length limit
        '"just a string"',
        "[1, 2]",
        '{"arms": {}}',  # no evidence
        '{"evidence": {"error_rate": "worse", "cost": null}}',  # no guard an object with a verdict
        "[" * 100_000 + "]" * 100_000,  # nested past the parser's recursion limit
        None,  # no evidence attribute at all
        12,  # not a string
    ],
)
def test_unreadable_evidence_is_said_never_fatal(tmp_path: Path, evidence: object) -> None:
    event = decision_event("rollback", "placeholder")
    event["attributes"]["llmwatch.rollout.evidence"] = evidence
    records = [
        rollout_span("champion", "00000000000000a1"),
        rollout_span("challenger", "00000000000000b1", events=[event]),
    ]
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", records)]))
    (decision,) = report_to_dict(report)["rollouts"][0]["decisions"]
    assert decision["action"] == "rolled_back" and decision["evidence_readable"] is False
    assert decision["guards"] == {} and decision["worse"] == [] and decision["arms_at_decision"] is None
    assert "rolled back at 2026-05-28 20:26:49 UTC: evidence unreadable" in terminal(report)


def test_odd_evidence_values_and_events_do_not_crash(tmp_path: Path) -> None:
    evidence = (
        '{"arms": {"challenger": {"p95_s": Infinity, "calls": 7}}, "evidence": {'
        '"error_rate": {"verdict": "worse", "difference": NaN, "bound": "0.02"}, "junk": [1], "cost": {"verdict": 3}}}'
    )
    events: list[Any] = [
        "not an event",
        {"name": ["unhashable"]},
        {"name": "llmwatch.rollout.rollback", "attributes": "not a dict"},  # no time, no evidence
        {"name": "llmwatch.rollout.rollback", "time_unix_nano": ROLLBACK_AT, "attributes": {
            "llmwatch.rollout.evidence": evidence}},
        decision_event("promote", {"evidence": {"error_rate": {"verdict": "not_worse"}}}, rollout="elsewhere"),
    ]  # fmt: skip
    records = [rollout_span("challenger", "00000000000000b1", latency_ms=250, events=events)]
    records[0]["attributes"]["llmwatch.rollout.arm"] = 5  # not a string: still an arm
    report = build_report(load_spans([write_spans(tmp_path / "s.jsonl", records)]))
    doc = report_to_dict(report)
    json.dumps(doc, allow_nan=False)  # NaN and Infinity from the evidence are not passed on
    rollout, elsewhere = doc["rollouts"]
    assert list(rollout["arms"]) == ["champion", "challenger", "5"]
    # the event names another rollout than its span: that rollout is listed, with no call of its own
    assert (elsewhere["name"], elsewhere["calls"], elsewhere["decision"]) == ("elsewhere", 0, "promoted")
    first, second = rollout["decisions"]
    assert first["evidence_readable"] is False and first["time_unix_nano"] == T0 + 250_000_000  # the call's end
    assert second["worse"] == ["error_rate"]
    assert second["guards"]["error_rate"] == {
        "verdict": "worse",
        "difference": None,
        "bound": None,
        "log_likelihood_ratio": None,
        "threshold": None,
    }
    assert second["arms_at_decision"] == {"challenger": {"p95_s": None, "calls": 7}}
    text = terminal(report)
    assert "Rollout checkout (rolled back)" in text and "Rollout elsewhere (promoted)" in text
    assert "no calls of this rollout in these files" in text


def test_no_rollouts_no_section(tmp_path: Path) -> None:
    loaded = load_spans([write_spans(tmp_path / "s.jsonl", [span(), span(error="RateLimitError")])])
    report = build_report(loaded)
    assert report.rollouts == [] and report_to_dict(report)["rollouts"] == []
    assert "Rollout" not in terminal(report)
    pytest.importorskip("plotly")
    page = write_html(report, loaded, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h2>Rollouts</h2>" not in page


@pytest.mark.parametrize("width", [140, 80, 60, 40, 30])
def test_rollout_figures_are_whole_at_any_width(two_arms: Any, width: int) -> None:
    text = terminal(two_arms, width)
    assert "\N{HORIZONTAL ELLIPSIS}" not in text
    assert all(len(line) <= width for line in text.splitlines())
    flat = text.replace(" ", "")  # a narrow terminal prints the figures as "arm=value" words
    for figure in ("40.0%", "+35.0pp", "\N{MULTIPLICATION SIGN}2.00", "$0.003000", "0.500(n=3)", "-0.300"):
        assert figure in flat, (width, figure)


def test_html_has_a_rollouts_section(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    records = [*two_arm_records(), rollout_span("champion", "00000000000000f1", rollout="<script>x</script>")]
    loaded = load_spans([write_spans(tmp_path / "s.jsonl", records)])
    page = write_html(build_report(loaded), loaded, tmp_path / "r.html").read_text(encoding="utf-8")
    section = page[page.index("<h2>Rollouts</h2>") :]
    assert "<h3>Rollout checkout (rolled back)</h3>" in section
    assert "<th>champion</th><th>challenger</th><th>difference</th>" in section
    assert '<td class="num">40.0%</td><td class="num">+35.0 pp</td>' in section
    assert "challenger worse on error_rate" in section
    assert "<script>x</script>" not in page and "Rollout &lt;script&gt;x&lt;/script&gt;" in section


# --- the real path: rollout(), the SDK, the file exporter, score() -----------------------------------


@pytest.fixture()
def fake() -> Iterator[Any]:
    from llmwatch._demo._server import FakeLLMServer

    with FakeLLMServer() as server:
        yield server


def test_a_real_rollback_reads_back_from_the_span_file(tmp_path: Path, fake: Any) -> None:
    import openai

    path = tmp_path / "s.jsonl"
    challenger = f"gpt-4o-{uuid.uuid4().hex[:6]}"
    llmwatch.configure(exporter="file", file_path=str(path), service_name="t", instrument=False)
    client = llmwatch.instrument(
        openai.OpenAI(api_key="sk-test-key-0123456789", base_url=fake.openai_base_url, max_retries=0),
        provider="openai",
    )
    try:
        rollout = llmwatch.rollout("real", challenger={"model": challenger}, share=0.5, feature="chat", min_calls=40)
        fake.behave(challenger, "error-500", share=0.5, seed=3)
        for i in range(400):
            with llmwatch.attributes(user=f"u{i}", feature="chat"):
                try:
                    reply = client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                    )
                    llmwatch.score(reply, "helpful", 0.4 if reply.model.startswith(challenger) else 0.8)
                except openai.InternalServerError:
                    pass
            if rollout.state != "running":
                break
        assert rollout.state == "rolled_back", rollout.report()
        live = rollout.report()
        assert llmwatch.force_flush(timeout_s=10)
    finally:
        llmwatch.shutdown(timeout_s=5)

    records = [json.loads(line) for line in path.read_text().splitlines()]
    arms = [r["attributes"].get("llmwatch.rollout.arm") for r in records if "gen_ai.operation.name" in r["attributes"]]
    doc = report_to_dict(build_report(load_spans([path])))
    (found,) = doc["rollouts"]
    assert found["name"] == "real" and found["decision"] == "rolled_back"
    for arm in ("champion", "challenger"):
        figures = found["arms"][arm]
        assert figures["calls"] == arms.count(arm) == live["arms"][arm]["calls"]
        assert figures["error_rate"] == pytest.approx(live["arms"][arm]["error_rate"], abs=1e-6)
        assert figures["scores"]["helpful"]["mean"] == pytest.approx(0.4 if arm == "challenger" else 0.8)
    assert found["arms"]["champion"]["errors"] == 0 and found["arms"]["challenger"]["errors"] > 0
    (decision,) = found["decisions"]
    assert decision["evidence_readable"] and "error_rate" in decision["worse"]
    assert {arm: decision["arms_at_decision"][arm]["calls"] for arm in ("champion", "challenger")} == {
        arm: live["arms"][arm]["calls"] for arm in ("champion", "challenger")
    }  # the deciding call was the last one
