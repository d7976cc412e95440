"""The completion index: response id -> span context of the LLM span that produced it.

Filled as LLM spans end (a pipeline hook), read by ``llmwatch.score`` to link a score to its
completion, even much later. Bounded: the most recent ``MAX_REMEMBERED`` ids, oldest forgotten first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from opentelemetry.trace import SpanContext

MAX_REMEMBERED = 10_000


class _Completions:
    """response id -> span context of the completion, bounded (oldest forgotten first)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._map: OrderedDict[str, SpanContext] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, response_id: str, context: SpanContext) -> None:
        with self._lock:
            self._map[response_id] = context
            if len(self._map) > self._limit:
                self._map.popitem(last=False)

    def find(self, response_id: str) -> SpanContext | None:
        with self._lock:
            return self._map.get(response_id)


COMPLETIONS = _Completions(MAX_REMEMBERED)


def remember_completion(call: Any, attrs: dict[str, Any]) -> None:
    """Pipeline hook: index each ended LLM span by its response id."""
    if call.response_id:
        COMPLETIONS.remember(str(call.response_id), call.span.get_span_context())
