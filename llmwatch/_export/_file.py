"""``exporter="file"``: spans as JSON Lines, the file ``llmwatch report`` reads.

The JSON Lines file
-------------------
One finished span per line, UTF-8, appended; created private (mode 0600) since it may hold prompts
and user ids. When the file reaches ``max_bytes`` (50 MiB) it is renamed to ``<file>.1`` (the
previous ``.1`` is replaced) and a new file is started. Each line is one JSON object::

    {"name": "chat gpt-4o-mini", "kind": "CLIENT",
     "trace_id": "<32 lower-case hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex>" | null,
     "start_time_unix_nano": 1718000000000000000, "end_time_unix_nano": 1718000000250000000,
     "status": {"code": "UNSET" | "OK" | "ERROR", "description": null | "..."},
     "attributes": {"gen_ai.operation.name": "chat", "llmwatch.cost.usd": 0.00042, ...},
     "events": [{"name": "...", "time_unix_nano": 1718000000100000000, "attributes": {...}}],
     "links": [{"trace_id": "<32 hex>", "span_id": "<16 hex>", "attributes": {...}}],
     "resource": {"service.name": "svc", ...},
     "scope": {"name": "llmwatch", "version": "0.1.0" | null}}

Attribute values are JSON strings, numbers, booleans or arrays of one of those; non-finite floats
are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (as protobuf's JSON mapping does).
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link
from opentelemetry.util.types import Attributes

from llmwatch._export._forksafe import call_weak

SPAN_FILE_DEFAULT = "llmwatch-spans.jsonl"
FILE_ROTATE_BYTES = 50 * 1024 * 1024


class JsonLinesSpanExporter(SpanExporter):
    """exporter='file': one JSON object per finished span per line (format in the module docstring).

    It runs on the export worker, never on the request thread; the lock serialises writers in this
    process (and is re-made in a forked child, where a lock held at fork time would never be
    released). Each batch is one ``write()`` in append mode, so processes sharing the file do not
    interleave lines. An ``OSError`` (disk full, ...) propagates so the processor records the reason.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = FILE_ROTATE_BYTES) -> None:
        self.path = Path(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        weak = weakref.WeakMethod(self._renew_lock)
        os.register_at_fork(after_in_child=functools.partial(call_weak, weak))

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = b"".join(_json_line(span_to_dict(span)) for span in spans)
        with self._lock:
            self._rotate_if_needed()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def _rotate_if_needed(self) -> None:
        try:
            if self.path.stat().st_size >= self._max_bytes:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except FileNotFoundError:
            pass  # nothing written yet, or another process rotated it first


def _json_line(record: dict[str, Any]) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape everything rather than lose the span
        return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("ascii")


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """One span as the JSON Lines record described in the module docstring."""
    context = span.context
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "attributes": _plain(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": _plain(e.attributes)} for e in span.events
        ],
        "links": [_link_dict(link) for link in span.links],
        "resource": _plain(span.resource.attributes),
        "scope": {"name": scope.name if scope else None, "version": scope.version if scope else None},
    }


def _link_dict(link: Link) -> dict[str, Any]:
    return {
        "trace_id": f"{link.context.trace_id:032x}",
        "span_id": f"{link.context.span_id:016x}",
        "attributes": _plain(link.attributes),
    }


def _plain(attributes: Attributes) -> dict[str, Any]:
    return {key: _plain_value(value) for key, value in (attributes or {}).items()}


def _plain_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (tuple, list)):
        return [_plain_value(item) for item in value]
    return value
