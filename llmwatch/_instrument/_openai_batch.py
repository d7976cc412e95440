"""The OpenAI Batch API: ``batches.create`` (a span of its own), ``batches.retrieve`` (no span: polled
for hours) and ``files.content`` of a batch's output file, whose result lines become one priced span
each (``_openai_batch_results.py``).

How a result finds the trace that submitted it, hours later: ``batches.create`` and
``batches.retrieve`` remember, in this process, ``batch id -> (span context of the create span,
attribution, endpoint, model, output/error file ids)`` and ``file id -> batch id`` once a retrieve names
the output file (bounded: the 10,000 latest of each). Nothing is added to what the caller sends (the
batch's ``metadata`` is theirs). Results fetched where the batch is unknown (another process, a
restart) are still recorded, unlinked, with ``llmwatch.batch.id`` when a ``retrieve`` there named the
file.

``batches.create`` is a CLIENT span (``batches.create``): it is a request to OpenAI's API, and the
HTTP spans of the SDK's transport nest under it. It carries no ``gen_ai.operation.name``: it is not an
inference, so it is not counted as an LLM call (no tokens, no cost, no budget check: what it will
cost is known only from its results). Budgets count the results' cost when they are recorded;
refusals never apply to them (they already ran).

``files.content(file_id)`` returns a binary response the caller reads. The SDK reads the whole body
before ``content()`` returns (not ``with_streaming_response``): the results are parsed from that same
buffer, on llmwatch's worker thread, never consuming or changing what the caller reads. A streamed
body (``with_streaming_response.content``) is not read by llmwatch: its results are not recorded.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from llmwatch import _attribution
from llmwatch import _semconv as sc
from llmwatch._attribution import Attribution
from llmwatch._core import _runtime
from llmwatch._core._pipeline import error_type
from llmwatch._health import HEALTH, record_internal_error
from llmwatch._instrument import _openai_batch_results as results
from llmwatch._instrument._base import traced
from llmwatch._instrument._endpoints import endpoint_attributes
from llmwatch._instrument._fields import field, given
from llmwatch._instrument._openai_batch_results import BatchRecord
from llmwatch._text import clean, error_description

_RAW_RESPONSES = frozenset({"LegacyAPIResponse", "APIResponse", "AsyncAPIResponse"})


class BatchMemory:
    """``batch id -> BatchRecord`` and ``file id -> batch id``, the latest ``MAX`` of each; a lock, taken
    only by the Batch API hooks (a handful of calls per batch)."""

    MAX = 10_000

    def __init__(self) -> None:
        self._batches: OrderedDict[str, BatchRecord] = OrderedDict()
        self._files: OrderedDict[str, str] = OrderedDict()
        self._recorded: OrderedDict[str, None] = OrderedDict()  # output files whose results were recorded
        self._lock = threading.Lock()

    def update(self, batch: Mapping[str, Any], created: tuple[SpanContext, Attribution] | None = None) -> None:
        batch_id = batch.get("id")
        if not isinstance(batch_id, str) or not batch_id:
            return
        with self._lock:
            record = self._batches.pop(batch_id, None) or BatchRecord(batch_id)
            self._batches[batch_id] = record
            if created is not None:
                record.span_context, record.attribution = created
            for key in ("endpoint", "model", "output_file_id", "error_file_id"):
                value = batch.get(key)
                if isinstance(value, str) and value:
                    setattr(record, key, value)
            for file_id in (record.output_file_id, record.error_file_id):
                if file_id is not None:
                    self._files.pop(file_id, None)
                    self._files[file_id] = batch_id
            _trim(self._batches, self.MAX)
            _trim(self._files, self.MAX)

    def for_file(self, file_id: str) -> BatchRecord | None:
        with self._lock:
            batch_id = self._files.get(file_id)
            return self._batches.get(batch_id) if batch_id is not None else None

    def first_reading(self, file_id: str) -> bool:
        """True the first time this process reads ``file_id``'s results (a second read records nothing)."""
        with self._lock:
            if file_id in self._recorded:
                return False
            self._recorded[file_id] = None
            _trim(self._recorded, self.MAX)
            return True

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()
            self._files.clear()
            self._recorded.clear()


def _trim(mapping: OrderedDict[str, Any], size: int) -> None:
    while len(mapping) > size:
        mapping.popitem(last=False)


MEMORY = BatchMemory()


# --- the hooks -------------------------------------------------------------------------------------
class BatchHook:
    """One Batch API method: ``make_wrapper`` gives its sync or async wrapt wrapper."""

    def __init__(self, before: Callable[[Any, dict[str, Any]], Any] | None, after: Callable[[Any, Any, Any], None]):
        self.before = before  # (resource, kwargs) -> state given to `after`; None: nothing before the call
        self.after = after  # (resource, state, result); also called with the exception as result

    def make_wrapper(self, is_async: bool) -> Any:
        hook = self

        def sync(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            state = hook.start(instance, args, kwargs)
            if state is _UNTRACED:
                return wrapped(*args, **kwargs)
            token = _attach(state)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                _detach(token)
                hook.finish(instance, state, exc)
                raise
            _detach(token)
            hook.finish(instance, state, result)
            return result

        async def run_async(
            wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            state = hook.start(instance, args, kwargs)
            if state is _UNTRACED:
                return await wrapped(*args, **kwargs)
            token = _attach(state)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                _detach(token)
                hook.finish(instance, state, exc)
                raise
            _detach(token)
            hook.finish(instance, state, result)
            return result

        return run_async if is_async else sync

    def start(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not traced(instance):
            return _UNTRACED
        try:
            call_kwargs = dict(kwargs)
            if args:  # retrieve(batch_id) / content(file_id): the one positional argument
                call_kwargs.setdefault("_id", args[0])
            return self.before(instance, call_kwargs) if self.before is not None else call_kwargs
        except Exception as exc:
            record_internal_error("batch api start", exc)
            return _UNTRACED

    def finish(self, instance: Any, state: Any, result: Any) -> None:
        try:
            self.after(instance, state, result)
        except Exception as exc:
            record_internal_error("batch api end", exc)


_UNTRACED = object()


def _attach(state: Any) -> object | None:
    span = state.get("_span") if isinstance(state, dict) else None
    if span is None:
        return None
    try:  # the HTTP spans of the SDK's transport nest under the batches.create span
        return otel_context.attach(trace.set_span_in_context(span))
    except Exception as exc:
        record_internal_error("context attach", exc)
        return None


def _detach(token: object | None) -> None:
    if token is not None:
        try:
            otel_context.detach(token)  # type: ignore[arg-type]
        except Exception as exc:
            record_internal_error("context detach", exc)


def _start_create(instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    rt = _runtime.CURRENT
    attribution = _attribution.current()
    attrs: dict[str, Any] = {}
    endpoint_attributes(getattr(instance, "_client", None), attrs, rt.settings, None)
    for param, key in (
        ("endpoint", sc.LLMWATCH_BATCH_ENDPOINT),
        ("input_file_id", sc.LLMWATCH_BATCH_INPUT_FILE_ID),
        ("completion_window", sc.LLMWATCH_BATCH_COMPLETION_WINDOW),
    ):
        value = kwargs.get(param)
        if isinstance(value, str):
            attrs[key] = clean(value)
    attrs.update(attribution.span_attributes)
    span = rt.tracer.start_span("batches.create", kind=SpanKind.CLIENT, attributes=attrs)
    HEALTH.spans_started.add()
    return {"_span": span, "_attribution": attribution}


def _end_create(instance: Any, state: dict[str, Any], result: Any) -> None:
    span = state["_span"]
    try:
        if isinstance(result, BaseException):
            span.set_attribute(sc.ERROR_TYPE, error_type(result))
            span.set_status(Status(StatusCode.ERROR, error_description(result)))
            span.record_exception(result)
            return
        batch = batch_fields(result)
        if batch is None:
            return
        span.set_attributes(_batch_attributes(batch))
        MEMORY.update(batch, created=(span.get_span_context(), state["_attribution"]))
    finally:
        span.end()
        HEALTH.spans_ended.add()


def _end_retrieve(instance: Any, state: dict[str, Any], result: Any) -> None:
    if isinstance(result, BaseException):
        return
    batch = batch_fields(result)
    if batch is not None:
        MEMORY.update(batch)


def _end_content(instance: Any, state: dict[str, Any], result: Any) -> None:
    if isinstance(result, BaseException):
        return
    file_id = state.get("file_id", state.get("_id"))
    data = _read_body(result)
    if not isinstance(file_id, str) or data is None or not data.startswith(b"{"):
        return  # streamed (not read by the SDK), or not JSON Lines of objects: not a batch's results
    batch = MEMORY.for_file(file_id)
    if not MEMORY.first_reading(file_id):
        results.STATS.files_read_again.add()
        return
    rt = _runtime.CURRENT
    attrs: dict[str, Any] = {}
    provider = endpoint_attributes(getattr(instance, "_client", None), attrs, rt.settings, None)
    results.submit(
        results.Job(
            data=data,
            file_id=file_id,
            batch=batch,
            parent=otel_context.get_current(),
            attribution=_attribution.current(),
            runtime=rt,
            base_attributes=attrs,
            provider=provider,
        )
    )


def batch_fields(result: Any) -> dict[str, Any] | None:
    """A ``Batch`` (or the raw response of one, when the SDK already read it) as a plain dict."""
    if type(result).__name__ in _RAW_RESPONSES:
        data = _read_body(result)
        if data is None:
            return None
        parsed = json.loads(data)
        return parsed if isinstance(parsed, dict) else None
    if not given(result) or field(result, "object") != "batch":
        return None
    return {
        key: field(result, key) for key in ("id", "endpoint", "model", "status", "output_file_id", "error_file_id")
    } | {"request_counts": field(result, "request_counts")}


def _read_body(result: Any) -> bytes | None:
    """The body the SDK already read into memory (``HttpxBinaryResponseContent.response``, a raw
    response's ``http_response``); None when it is still unread (a streamed response)."""
    response = getattr(result, "response", None) if type(result).__name__ == "HttpxBinaryResponseContent" else None
    if response is None and type(result).__name__ in _RAW_RESPONSES:
        response = getattr(result, "http_response", None)
    content = vars(response).get("_content") if response is not None and hasattr(response, "__dict__") else None
    return content if isinstance(content, bytes) else None


def _batch_attributes(batch: Mapping[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key, name in (("id", sc.LLMWATCH_BATCH_ID), ("status", sc.LLMWATCH_BATCH_STATUS)):
        value = batch.get(key)
        if isinstance(value, str):
            attrs[name] = clean(value)
    counts = batch.get("request_counts")
    for key, name in (
        ("total", sc.LLMWATCH_BATCH_REQUESTS_TOTAL),
        ("completed", sc.LLMWATCH_BATCH_REQUESTS_COMPLETED),
        ("failed", sc.LLMWATCH_BATCH_REQUESTS_FAILED),
    ):
        value = field(counts, key)
        if type(value) is int:
            attrs[name] = value
    return attrs


def _keep_file_id(instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"file_id": kwargs.get("file_id", kwargs.get("_id"))}


CREATE = BatchHook(_start_create, _end_create)
RETRIEVE = BatchHook(None, _end_retrieve)
CONTENT = BatchHook(_keep_file_id, _end_content)

TARGETS = (
    ("openai.resources.batches", "Batches", "create", CREATE, False),
    ("openai.resources.batches", "AsyncBatches", "create", CREATE, True),
    ("openai.resources.batches", "Batches", "retrieve", RETRIEVE, False),
    ("openai.resources.batches", "AsyncBatches", "retrieve", RETRIEVE, True),
    ("openai.resources.files", "Files", "content", CONTENT, False),
    ("openai.resources.files", "AsyncFiles", "content", CONTENT, True),
)
