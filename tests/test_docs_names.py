"""The alert, runbook, dashboard, collector and backend docs only name metrics and attributes llmwatch emits.

Every ``gen_ai.*`` / ``llmwatch.*`` name in those files must be a string constant of
``llmwatch._semconv`` (where every emitted name lives), so a rename there that is not carried into
the docs fails here instead of silently emptying a customer's dashboard or muting an alert.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmwatch import _semconv

DOCS = Path(__file__).resolve().parent.parent / "docs"

# A name as written in a query, a YAML value, a JSON string or prose. Not preceded by a word character
# or a dot, so "foo.gen_ai.x" and "my_llmwatch.x" are not taken for ours.
NAME = re.compile(r"(?<![\w.])((?:gen_ai|llmwatch)\.[a-z0-9_.]+)(\()?")

# Datadog's forms of an OTLP metric: histogram aggregation metrics (send_aggregation_metrics) and the
# classic Agent histogram suffixes. "p95:name{...}" and NR's percentile(name, 95) need no mapping.
METRIC_SUFFIXES = (".count", ".sum", ".avg", ".min", ".max", ".median")
PERCENTILE_SUFFIX = re.compile(r"\.\d+percentile$")  # Agent histograms: name.95percentile


def _emitted() -> tuple[set[str], tuple[str, ...]]:
    values = {value for name, value in vars(_semconv).items() if not name.startswith("_") and isinstance(value, str)}
    ours = {value for value in values if value.startswith(("gen_ai.", "llmwatch."))}
    prefixes = tuple(value for value in ours if value.endswith("."))  # e.g. llmwatch.tag.<key>
    return {value for value in ours if not value.endswith(".")}, prefixes


def _checked_files() -> list[Path]:
    files = [DOCS / name for name in ("alerts.md", "runbook.md", "datadog.md", "newrelic.md", "collector.md")]
    files += sorted((DOCS / "dashboards").glob("*.json"))
    files += sorted(path for path in (DOCS / "alerts").glob("*") if path.is_file())
    files += sorted((DOCS / "collector").glob("*.yaml"))
    return [path for path in files if path.exists()]


def names_in(text: str) -> set[str]:
    """The metric and attribute names in ``text``, leaving out Python calls and module paths."""
    found = set()
    for match in NAME.finditer(text):
        name, call = match.group(1).rstrip("."), match.group(2)
        if call:  # llmwatch.budget(...), llmwatch.stats(), llmwatch.kill_switch(...)
            continue
        if "." not in name or any(part.startswith("_") or not part for part in name.split(".")):
            continue  # "llmwatch." ending a sentence, llmwatch._policy._budget, llmwatch..x
        found.add(name)
    return found


def _known(name: str, emitted: set[str], prefixes: tuple[str, ...]) -> bool:
    if name in emitted or name.startswith(prefixes):
        return True
    for suffix in METRIC_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in emitted:
            return True
    return PERCENTILE_SUFFIX.sub("", name) in emitted


def test_the_checked_files_exist() -> None:
    names = {path.name for path in _checked_files()}
    assert {"alerts.md", "runbook.md", "datadog-dashboard.json", "newrelic-dashboard.json"} <= names
    assert any(path.suffix == ".yaml" for path in _checked_files())


def test_docs_name_only_what_llmwatch_emits() -> None:
    emitted, prefixes = _emitted()
    unknown: dict[str, set[str]] = {}
    for path in _checked_files():
        for name in names_in(path.read_text(encoding="utf-8")):
            if not _known(name, emitted, prefixes):
                unknown.setdefault(name, set()).add(str(path.relative_to(DOCS.parent)))
    report = "\n".join(f"  {name}  (in {', '.join(sorted(files))})" for name, files in sorted(unknown.items()))
    assert not unknown, f"names not emitted by llmwatch (no such constant in llmwatch/_semconv.py):\n{report}"


def test_the_extractor_skips_api_calls_and_maps_backend_forms() -> None:
    text = (
        "llmwatch.budget(10, per='day'); llmwatch.stats()['budgets']; llmwatch.kill_switch(feature='x'); "
        "from llmwatch._policy._budget import x; see llmwatch. Also llmwatch.BudgetExceeded; "
        "sum:llmwatch.cost{*} by {llmwatch.feature}.as_count(); {{[gen_ai.request.model].name}}; "
        "percentile(gen_ai.client.operation.duration, 95); gen_ai.client.operation.duration.count"
    )
    assert names_in(text) == {
        "llmwatch.cost",
        "llmwatch.feature",
        "gen_ai.request.model",
        "gen_ai.client.operation.duration",
        "gen_ai.client.operation.duration.count",
    }
    emitted, prefixes = _emitted()
    assert _known("gen_ai.client.operation.duration.count", emitted, prefixes)
    assert _known("gen_ai.client.operation.duration.95percentile", emitted, prefixes)
    assert not _known("gen_ai.client.operation.latency", emitted, prefixes)


@pytest.mark.parametrize(
    "path",
    sorted((DOCS / "dashboards").glob("*.json")) + sorted((DOCS / "alerts").glob("*.json")),
    ids=lambda path: path.name,
)
def test_json_files_parse(path: Path) -> None:
    json.loads(path.read_text(encoding="utf-8"))


def test_datadog_monitor_thresholds_match_their_queries() -> None:
    path = DOCS / "alerts" / "datadog-monitors.json"
    if not path.exists():
        pytest.skip("no Datadog monitor file")
    for monitor in json.loads(path.read_text(encoding="utf-8")):
        critical = monitor["options"]["thresholds"]["critical"]
        # The API refuses a monitor whose query threshold differs from options.thresholds.critical.
        assert monitor["query"].endswith(f"> {critical}"), monitor["name"]
        assert "runbook.md#" in monitor["message"], monitor["name"]


def test_newrelic_conditions_link_the_runbook() -> None:
    path = DOCS / "alerts" / "newrelic-conditions.json"
    if not path.exists():
        pytest.skip("no New Relic condition file")
    for condition in json.loads(path.read_text(encoding="utf-8")):
        assert condition["nrql"]["query"].startswith("FROM "), condition["name"]
        assert "runbook.md#" in condition["runbookUrl"], condition["name"]


def test_runbook_anchors_linked_from_alerts_exist() -> None:
    runbook = re.sub(r"^```.*?^```", "", (DOCS / "runbook.md").read_text(encoding="utf-8"), flags=re.M | re.S)
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", runbook, flags=re.MULTILINE)
    }
    linked: set[str] = set()
    for path in _checked_files():
        linked |= set(re.findall(r"runbook\.md#([a-z0-9\-]+)", path.read_text(encoding="utf-8")))
    assert linked, "no alert links the runbook"
    assert linked <= anchors, f"runbook sections missing: {sorted(linked - anchors)}"


def test_collector_config_parses() -> None:
    yaml = pytest.importorskip("yaml")  # PyYAML is not a dependency; the check runs where it is installed
    for path in sorted((DOCS / "collector").glob("*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        pipelines = config["service"]["pipelines"]
        assert any(name.startswith("traces") for name in pipelines)
        assert any(name.startswith("metrics") for name in pipelines)
        for name, pipeline in pipelines.items():
            if name.startswith("metrics"):
                assert "tail_sampling" not in pipeline.get("processors", []), "metrics must never be sampled"
