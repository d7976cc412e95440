"""Scenario 7: cold start. The wall time of ``import llmwatch; llmwatch.configure()`` in a fresh
interpreter where the app has already imported ``openai`` (and not ``anthropic``), against the OTel
SDK's own setup of the same export: a TracerProvider with a batch processor and an OTLP/HTTP span
exporter, a MeterProvider with a periodic reader and an OTLP/HTTP metric exporter, both installed
as the globals, imports included. Serverless functions pay this on every cold start.

Variants, interleaved round by round, each in its own interpreter:

- ``otel``: the SDK setup above (what any OTel user pays);
- ``llmwatch``: ``configure(exporter="otlp", endpoint=...)`` with the default ``instrument=True``;
- ``llmwatch instrument=False``: the same without instrumenting the SDKs.

Each run also reports whether ``anthropic`` was imported (configure() must never import an SDK the
app has not imported) and the ``configure()`` call alone, after ``import llmwatch``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from benchmarks import _stats
from benchmarks._report import Result, table

NAME = "configure_time"
TITLE = "Cold start: import + configure()"
TARGET_MS = 100.0
ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = "http://127.0.0.1:4318"  # nothing is sent during setup; no collector needed

_PRELUDE = """
import json, sys, time
import openai  # the application's own import: not measured
t0 = time.perf_counter()
"""
_REPORT = """
t2 = time.perf_counter()
print(json.dumps({"total_ms": (t2 - t0) * 1000, "configure_ms": (t2 - t1) * 1000,
                  "anthropic_imported": "anthropic" in sys.modules}))
"""
VARIANTS = {
    "otel": f"""
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
t1 = time.perf_counter()
resource = Resource.create({{"service.name": "bench"}})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint="{ENDPOINT}/v1/traces")))
trace.set_tracer_provider(tracer_provider)
reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint="{ENDPOINT}/v1/metrics"))
metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
""",
    "llmwatch": f"""
import llmwatch
t1 = time.perf_counter()
llmwatch.configure(exporter="otlp", endpoint="{ENDPOINT}", service_name="bench")
""",
    "llmwatch instrument=False": f"""
import llmwatch
t1 = time.perf_counter()
llmwatch.configure(exporter="otlp", endpoint="{ENDPOINT}", service_name="bench", instrument=False)
""",
}


# A deployed app has its bytecode cached: write it (PYTHONDONTWRITEBYTECODE would make every run
# compile llmwatch's sources, and only llmwatch's: site-packages are compiled at install).
_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _run_once(body: str) -> dict[str, Any]:
    code = textwrap.dedent(_PRELUDE) + textwrap.dedent(body) + textwrap.dedent(_REPORT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=_ENV)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(rounds: int) -> dict[str, dict[str, list[Any]]]:
    raw: dict[str, dict[str, list[Any]]] = {
        name: {"total_ms": [], "configure_ms": [], "anthropic_imported": []} for name in VARIANTS
    }
    names = list(VARIANTS)
    for name in names:  # warm-up, not counted: bytecode written, files in the page cache
        _run_once(VARIANTS[name])
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # rotate the order
            figures = _run_once(VARIANTS[name])
            for key, values in raw[name].items():
                values.append(figures[key])
    return raw


def run(quick: bool) -> Result:
    rounds = 2 if quick else 7
    raw = measure(rounds)
    figures: dict[str, Any] = {
        name: {
            "raw": values,
            "total_ms": _stats.summary(values["total_ms"]),
            "configure_ms": _stats.summary(values["configure_ms"]),
            "anthropic_imported": any(values["anthropic_imported"]),
        }
        for name, values in raw.items()
    }
    extra = figures["llmwatch"]["total_ms"]["median"] - figures["otel"]["total_ms"]["median"]
    figures |= {"llmwatch_minus_otel_ms": extra, "rounds": rounds}
    rows = [
        [
            name,
            _stats.fmt(f["total_ms"]["median"]),
            _stats.fmt_range(f["total_ms"]),
            _stats.fmt(f["configure_ms"]["median"]),
            "yes" if f["anthropic_imported"] else "no",
        ]
        for name, f in figures.items()
        if isinstance(f, dict)
    ]
    header = ["variant", "import + setup ms", "min..max", "setup call alone ms", "imports anthropic"]
    notes = [
        f"median of {rounds} fresh interpreters each, openai already imported; llmwatch - otel = {extra:+.1f} ms",
        "setup call alone: configure() (or the OTel provider construction) after its imports",
    ]
    targets: dict[str, bool | None] = {
        f"import llmwatch + configure() < OTel SDK setup + {TARGET_MS:g} ms": extra < TARGET_MS,
        "configure() does not import anthropic when the app has not": not figures["llmwatch"]["anthropic_imported"],
    }
    return Result(NAME, TITLE, figures, table(header, rows), targets, notes)
