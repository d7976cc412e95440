"""Attribute limits: spans cut to what a backend accepts before export, instead of dropped by it.

New Relic drops attribute values over 4095 characters, names over 255 and arrays over 64 items; a
captured prompt is often longer. :class:`AttributeLimitingSpanExporter` wraps the ``newrelic``
preset's exporter and cuts them first, keeping the head and tail of a long value and a hash of the
whole (:func:`truncate_value`), on the export worker, never on the request thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.types import Attributes, AttributeValue

NEW_RELIC_LIMITS = {"max_value_chars": 4095, "max_name_chars": 255, "max_array_items": 64}


class AttributeLimitingSpanExporter(SpanExporter):
    """Cuts attributes to a backend's limits before export (New Relic drops longer ones).

    Runs on the export worker, never on the request thread. Long strings keep their head and tail
    around a marker holding the number of characters removed and a hash of the whole value, so two
    long prompts stay distinguishable and the full text can be matched elsewhere.
    """

    def __init__(self, inner: SpanExporter, *, max_value_chars: int, max_name_chars: int, max_array_items: int) -> None:
        self._inner = inner
        self._max_value = max_value_chars
        self._max_name = max_name_chars
        self._max_items = max_array_items

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._limited(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def _limited(self, span: ReadableSpan) -> ReadableSpan:
        attributes = self._limit(span.attributes)
        events = [self._limited_event(event) for event in span.events]
        if attributes is span.attributes and all(new is old for new, old in zip(events, span.events, strict=True)):
            return span  # the common case: nothing too long, no copy
        return _LimitedSpan(span, attributes, events)

    def _limited_event(self, event: Event) -> Event:
        attributes = self._limit(event.attributes)
        return event if attributes is event.attributes else Event(event.name, attributes, event.timestamp)

    def _limit(self, attributes: Attributes) -> Attributes:
        if not attributes or not any(self._too_big(key, value) for key, value in attributes.items()):
            return attributes
        return {key[: self._max_name]: self._limit_value(value) for key, value in attributes.items()}

    def _too_big(self, key: str, value: AttributeValue) -> bool:
        if len(key) > self._max_name:
            return True
        if isinstance(value, str):
            return len(value) > self._max_value
        if isinstance(value, Sequence):
            return len(value) > self._max_items or any(isinstance(v, str) and len(v) > self._max_value for v in value)
        return False

    def _limit_value(self, value: AttributeValue) -> AttributeValue:
        if isinstance(value, str):
            return truncate_value(value, self._max_value)
        if isinstance(value, Sequence) and value and isinstance(value[0], str):
            return [truncate_value(str(v), self._max_value) for v in value[: self._max_items]]
        if isinstance(value, Sequence):
            return value[: self._max_items]
        return value


class _LimitedSpan(ReadableSpan):
    """A finished span with replaced attributes and events; everything else is the original's."""

    def __init__(self, original: ReadableSpan, attributes: Attributes, events: Sequence[Event]) -> None:
        super().__init__(
            name=original.name,
            context=original.context,
            parent=original.parent,
            resource=original.resource,
            attributes=attributes,
            events=events,
            links=original.links,
            kind=original.kind,
            status=original.status,
            start_time=original.start_time,
            end_time=original.end_time,
            instrumentation_scope=original.instrumentation_scope,
        )
        self._original = original

    # The exporters send these counts; keep the original span's (the rebuilt mappings count nothing).
    @property
    def dropped_attributes(self) -> int:
        return self._original.dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._original.dropped_events

    @property
    def dropped_links(self) -> int:
        return self._original.dropped_links


def truncate_value(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` chars: head + ``...[truncated N chars sha256:<12 hex>]...`` + tail.

    N is the number of characters removed; the hash is of the whole original value.
    """
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    removed = len(value) - limit
    for _ in range(3):  # the marker's own length depends on N's digits: settle in a step or two
        marker = f"...[truncated {removed} chars sha256:{digest}]..."
        keep = max(limit - len(marker), 0)
        if len(value) - keep == removed:
            break
        removed = len(value) - keep
    if keep == 0:
        return marker[:limit]
    head = keep - keep // 2
    return value[:head] + marker + value[len(value) - (keep - head) :]
