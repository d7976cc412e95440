"""A Batch API output file, line by line: one priced CLIENT span per result, at batch rates.

Wire facts: an output file is JSON Lines, one result per request, ``{"id": "batch_req_...",
"custom_id": ..., "response": {"status_code", "request_id", "body"}, "error": null}``; ``body`` is what
the live endpoint would have answered (a chat completion, a response, embeddings, a text completion, a
moderation, an images response). A request that failed has ``error`` set or a ``status_code`` >= 400
(the error file holds those): counted, no span. A line that is not such JSON is counted and skipped.
Bodies name no batch: ``llmwatch.batch.id`` comes from what this process saw (``_openai_batch.py``).

Each result span is what the live call's would be (the same handler reads the body: response model,
usage, finish reasons), priced at genai-prices' batch rate (``call.service_tier = "batch"``), with
``llmwatch.batch.custom_id``, ``llmwatch.batch.id`` when known, a span link to the ``batches.create``
span when it was made in this process, and that submission's attribution (else the attribution in
force where the results were fetched). Its parent is the context that called ``files.content``. The
request itself is in the input file, which llmwatch does not read: ``gen_ai.request.model`` is the
batch's model (or the body's), and no prompt is recorded.

The work is off the caller's thread (an output file is up to 200 MB): one daemon worker, a bounded
queue of files (``MAX_PENDING_FILES``; more are dropped and counted), at most ``MAX_SPANS_PER_FILE``
spans per file (the rest counted), paced so a 50,000-line file does not flood the span exporter's
queue. ``llmwatch.force_flush()`` and ``shutdown()`` wait for it. Counts: ``stats()["batch_results"]``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Link, SpanContext, SpanKind

from llmwatch import _forking
from llmwatch import _semconv as sc
from llmwatch._core._call import LLMCall
from llmwatch._health import HEALTH, Counter, record_internal_error
from llmwatch._instrument._openai_chat import ChatCompletions
from llmwatch._instrument._openai_embeddings import Embeddings
from llmwatch._instrument._openai_legacy import Moderations, TextCompletions
from llmwatch._instrument._openai_media import Images
from llmwatch._instrument._openai_responses import Responses
from llmwatch._policy._budget import RULES
from llmwatch._text import clean

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from llmwatch._attribution import Attribution
    from llmwatch._core._call import Handler
    from llmwatch._core._messages import RequestContent
    from llmwatch._core._runtime import Runtime

MAX_SPANS_PER_FILE = 50_000  # the most requests one batch may hold
MAX_PENDING_FILES = 16
PACE_EVERY = 256  # spans, then a short pause: the exporter's queue (2048 by default) drains meanwhile
PACE_S = 0.02
BATCH_TIER = "batch"

_CHAT, _RESPONSES, _EMBEDDINGS = ChatCompletions(), Responses(), Embeddings()
_TEXT, _MODERATIONS, _IMAGES = TextCompletions(), Moderations(), Images()
_BY_OBJECT: dict[str, Any] = {
    "chat.completion": _CHAT,
    "response": _RESPONSES,
    "text_completion": _TEXT,
    "list": _EMBEDDINGS,
}
_BY_ENDPOINT: dict[str, Any] = {
    "/v1/chat/completions": _CHAT,
    "/v1/responses": _RESPONSES,
    "/v1/embeddings": _EMBEDDINGS,
    "/v1/completions": _TEXT,
    "/v1/moderations": _MODERATIONS,
    "/v1/images/generations": _IMAGES,
    "/v1/images/edits": _IMAGES,
}


class ResultStats:
    """``stats()["batch_results"]``."""

    def __init__(self) -> None:
        self.files = Counter()  # output files whose results were read
        self.recorded = Counter()  # result spans
        self.malformed = Counter()  # lines that are not a result
        self.failed_requests = Counter()  # results of requests that failed (no span)
        self.unsupported = Counter()  # results of an endpoint llmwatch does not know
        self.over_cap = Counter()  # results past MAX_SPANS_PER_FILE
        self.files_dropped = Counter()  # more than MAX_PENDING_FILES waiting
        self.files_failed = Counter()  # llmwatch failed in the middle of a file
        self.files_read_again = Counter()  # read once more in this process: recorded once

    def snapshot(self) -> dict[str, int]:
        return {name: counter.value for name, counter in vars(self).items() if isinstance(counter, Counter)}

    def reset(self) -> None:
        for counter in vars(self).values():
            if isinstance(counter, Counter):
                counter.reset()


STATS = ResultStats()


@dataclass(slots=True)
class Job:
    """One output file, as read where ``files.content`` returned it."""

    data: bytes  # the SDK's own buffer (never copied, never changed)
    file_id: str
    batch: BatchRecord | None
    parent: Context  # where files.content was called
    attribution: Attribution  # in force there
    runtime: Runtime
    base_attributes: dict[str, Any]  # server.*, provider
    provider: str


class BatchRecord:
    """What this process knows of one batch."""

    __slots__ = ("attribution", "batch_id", "endpoint", "error_file_id", "model", "output_file_id", "span_context")

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self.span_context: SpanContext | None = None  # the batches.create span, when made here
        self.attribution: Attribution | None = None
        self.endpoint: str | None = None
        self.model: str | None = None
        self.output_file_id: str | None = None
        self.error_file_id: str | None = None


# --- the worker ------------------------------------------------------------------------------------
class _Worker:
    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()
        self._ready = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> None:
        with self._ready:
            if self._busy >= MAX_PENDING_FILES:
                STATS.files_dropped.add()
                return
            self._jobs.append(job)
            self._busy += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="llmwatch-batch-results", daemon=True)
                self._thread.start()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._jobs:
                    self._ready.wait()
                job = self._jobs.popleft()
            try:
                record_file(job)
            except Exception as exc:
                STATS.files_failed.add()
                with contextlib.suppress(Exception):  # (our own tests make it raise: never in this thread)
                    record_internal_error("batch results", exc)
            finally:
                job = None  # type: ignore[assignment]  # let the buffer go before waiting again
                with self._ready:
                    self._busy -= 1
                    self._ready.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._ready:
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._ready.wait(remaining)
        return True

    def renew(self) -> None:
        """In a forked child: the parent's thread is not here, nor are its files to read."""
        self.__init__()  # type: ignore[misc]


_WORKER = _Worker()
_forking.after_fork_in_child(_WORKER.renew)


def submit(job: Job) -> None:
    _WORKER.submit(job)


def wait_idle(timeout_s: float) -> bool:
    """Wait (at most ``timeout_s``) until every output file handed over so far is recorded."""
    return _WORKER.wait_idle(timeout_s)


# --- one file --------------------------------------------------------------------------------------
def record_file(job: Job) -> None:
    """Every result of one output file (the worker's; raises only on an llmwatch bug)."""
    known = job.batch is not None and job.file_id in (job.batch.output_file_id, job.batch.error_file_id)
    spans = 0
    first = True
    for line in _lines(job.data):
        result = _parse(line)
        if first:
            first = False
            if result is None and not known:
                return  # not a batch's output file: some other JSON Lines the caller reads
            STATS.files.add()
        if result is None:
            STATS.malformed.add()
            continue
        body = _succeeded(result)
        if body is None:
            STATS.failed_requests.add()
            continue
        handler = _handler_for(body, job.batch.endpoint if job.batch is not None else None)
        if handler is None:
            STATS.unsupported.add()
            continue
        if spans >= MAX_SPANS_PER_FILE:
            STATS.over_cap.add()
            continue
        record_result(job, result, body, handler)
        spans += 1
        STATS.recorded.add()
        if spans % PACE_EVERY == 0:
            time.sleep(PACE_S)


def _lines(data: bytes) -> Iterator[bytes]:
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", start)
        if end < 0:
            end = size
        line = data[start:end].strip()
        start = end + 1
        if line:
            yield line


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        result = json.loads(line)
    except ValueError:
        return None
    if not isinstance(result, dict) or "custom_id" not in result or not ("response" in result or "error" in result):
        return None
    return result


def _succeeded(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The body of a result whose request succeeded, else None."""
    response = result.get("response")
    if result.get("error") or not isinstance(response, dict):
        return None
    status = response.get("status_code")
    body = response.get("body")
    if not isinstance(status, int) or status >= 400 or not isinstance(body, dict):
        return None
    return body


def _handler_for(body: Mapping[str, Any], endpoint: str | None) -> Any:
    by_object = _BY_OBJECT.get(str(body.get("object")))
    if by_object is not None:
        return by_object
    if endpoint is not None:
        return _BY_ENDPOINT.get(endpoint)
    if isinstance(body.get("results"), list):
        return _MODERATIONS
    if "created" in body and "data" in body:
        return _IMAGES
    return None


def record_result(job: Job, result: Mapping[str, Any], body: Mapping[str, Any], handler: Any) -> None:
    """One result's span, ended at once through the runtime's pipeline (cost, budgets, metrics)."""
    rt, batch = job.runtime, job.batch
    attribution = batch.attribution if batch is not None and batch.attribution is not None else job.attribution
    model = clean(str((batch.model if batch is not None else None) or body.get("model") or "unknown"))
    attrs = dict(job.base_attributes)
    attrs[sc.GEN_AI_OPERATION_NAME] = handler.operation
    attrs[sc.GEN_AI_REQUEST_MODEL] = model
    if rt.emit_deprecated_system:
        attrs[sc.GEN_AI_SYSTEM_DEPRECATED] = job.provider
    attrs[sc.LLMWATCH_BATCH_CUSTOM_ID] = clean(str(result.get("custom_id")))
    if batch is not None:
        attrs[sc.LLMWATCH_BATCH_ID] = batch.batch_id
    attrs.update(attribution.span_attributes)
    links = [Link(batch.span_context)] if batch is not None and batch.span_context is not None else None
    span = rt.tracer.start_span(
        f"{handler.operation} {model}", context=job.parent, kind=SpanKind.CLIENT, attributes=attrs, links=links
    )
    HEALTH.spans_started.add()
    call = LLMCall(rt, AtBatchRate(handler), {"model": model}, model, span, False, attribution, job.provider)
    if RULES.budgets:  # spend counts; a refusal cannot apply to what already ran
        keys = ((budget, budget.key_for(attribution, model)) for budget in RULES.budgets)
        call.budget_keys = tuple((budget, key) for budget, key in keys if key is not None)
    call.finish(body)


class AtBatchRate:
    """The live endpoint's handler, reading a result's body; the call is then priced at the batch rate."""

    __slots__ = ("inner", "operation", "provider")

    def __init__(self, inner: Handler) -> None:
        self.inner = inner
        self.operation = inner.operation
        self.provider = inner.provider

    def on_response(self, call: LLMCall, response: Any) -> None:
        self.inner.on_response(call, response)
        call.service_tier = BATCH_TIER  # after the body's own service_tier ("default"): it ran as a batch

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        return False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        return []  # the prompt is in the input file, never read

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        return self.inner.count_input_tokens(call)

    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None:
        return self.inner.request_content(request)


def reset() -> None:
    """Forget the counts (tests); a file being read goes on."""
    STATS.reset()
