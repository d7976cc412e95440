"""``configure(content_hook=fn)``: each call's structured content handed to your code, off the caller's thread.

Why it exists: teams that must keep prompts and completions in their own store (a bucket, a database
with its own retention and access rules) want the content there and only a pointer in the trace. The
GenAI conventions' design for it ("uploading content to external storage"; OTel util-genai's upload
completion hook): references are decided when the call ends (cheap: a path built from the span's ids
or a uuid), the span carries them as ``gen_ai.input.messages_ref``, ``gen_ai.output.messages_ref``,
``gen_ai.system_instructions_ref``, ``gen_ai.tool.definitions_ref`` instead of the content, and the
upload happens later, elsewhere.

So a hook is a callable ``fn(record)`` run on one llmwatch worker thread, fed by a bounded queue:
when the queue is full the record is dropped and counted (``stats()["content_hook_dropped"]``); an
exception in the hook is counted as an internal error, never raised. A hook may also have a
``references(span_context) -> Mapping[str, str]`` method: called when the call ends, on the caller's
thread (so it must do no I/O), its ``*_ref`` entries go on the span (and the content event) in place
of the content they name, and the record carries them so the hook writes exactly there.
The record holds the content after the content policy (``redacted`` mode, your ``redact`` hook, the
size limits), as the structured semconv values.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from llmwatch import _semconv as sc
from llmwatch._health import HEALTH, Counter, record_internal_error

logger = logging.getLogger("llmwatch")

MAX_QUEUE: Final = 1000
# The content attributes a reference may stand in for, by the reference's name.
REFERENCES: Final = {
    sc.GEN_AI_INPUT_MESSAGES_REF: sc.GEN_AI_INPUT_MESSAGES,
    sc.GEN_AI_OUTPUT_MESSAGES_REF: sc.GEN_AI_OUTPUT_MESSAGES,
    sc.GEN_AI_SYSTEM_INSTRUCTIONS_REF: sc.GEN_AI_SYSTEM_INSTRUCTIONS,
    sc.GEN_AI_TOOL_DEFINITIONS_REF: sc.GEN_AI_TOOL_DEFINITIONS,
}
_STOP: Final = object()


class ContentRecord:
    """What a content hook receives: one call's content, its span's context and its references."""

    __slots__ = ("content", "references", "span_context")

    def __init__(self, span_context: Any, content: dict[str, Any], references: dict[str, str]) -> None:
        self.span_context = span_context  # trace_id, span_id: where the content belongs
        self.content = content  # semconv attribute name -> structured value (gen_ai.input.messages, ...)
        self.references = references  # reference attribute -> the reference put on the span

    @property
    def input_messages(self) -> Any:
        return self.content.get(sc.GEN_AI_INPUT_MESSAGES)

    @property
    def output_messages(self) -> Any:
        return self.content.get(sc.GEN_AI_OUTPUT_MESSAGES)

    @property
    def system_instructions(self) -> Any:
        return self.content.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS)

    @property
    def tool_definitions(self) -> Any:
        return self.content.get(sc.GEN_AI_TOOL_DEFINITIONS)


class ContentHook:
    """The worker that runs one hook; ``force_flush``/``shutdown`` like an exporter (the runtime owns it)."""

    def __init__(self, fn: Callable[[ContentRecord], Any], max_queue: int = MAX_QUEUE) -> None:
        self.fn = fn
        self.references_fn: Callable[[Any], Any] | None = getattr(fn, "references", None)
        self.max_queue = max_queue
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submitted = Counter()  # lock-free counters: flushing waits for done to catch up
        self._done = Counter()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def references(self, span_context: Any) -> dict[str, str]:
        """The hook's references for this span (on the caller's thread). A failing or invalid
        ``references()`` is counted and gives none: the content then stays where it was going."""
        if self.references_fn is None:
            return {}
        try:
            given = self.references_fn(span_context)
            if not isinstance(given, Mapping) or not all(
                key in REFERENCES and isinstance(value, str) for key, value in given.items()
            ):
                raise TypeError(f"content_hook.references() must return a mapping of {sorted(REFERENCES)} to str")
            return dict(given)
        except Exception as exc:
            record_internal_error("content hook references", exc, private=True)
            return {}

    def submit(self, record: ContentRecord) -> None:
        if self._queue.qsize() >= self.max_queue:
            HEALTH.content_hook_dropped.add()
            return
        self._submitted.add()
        self._ensure_thread()
        self._queue.put(record)

    def _ensure_thread(self) -> None:
        if self._thread is None or self._pid != os.getpid():  # a forked child starts its own
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="llmwatch-content-hook", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is _STOP:
                return
            try:
                self.fn(record)
            except Exception as exc:
                record_internal_error("content hook", exc, private=True)
            finally:
                self._done.add()

    def force_flush(self, timeout_millis: float = 30000) -> bool:
        """Wait until every record queued so far went through the hook (or the timeout)."""
        target, deadline = self._submitted.value, time.monotonic() + timeout_millis / 1000
        while self._done.value < target:
            if time.monotonic() >= deadline or self._thread is None or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return True

    def shutdown(self) -> None:
        self.force_flush(5000)
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(1.0)
