"""The OpenAI Files and Batch APIs of the loopback server: upload a JSON Lines file of requests, make a
batch of it, retrieve the batch, read its output file.

A batch runs at once, when it is created: each input line's request goes through the live route it
names (``/v1/chat/completions``, ``/v1/embeddings``, ...), with the same token formulas and scenarios
(``[[scenario:error-400]]`` in a request's message fails that request: its line goes to the error
file). ``batches.create`` answers ``validating``, as OpenAI does; the first ``retrieve`` shows it
``completed`` with its ``output_file_id`` (and ``error_file_id`` when a request failed). The scenario
``batch-bad-lines`` on the ``batches.create`` request adds to the output file a line that is not JSON
and a result whose request failed (``"error": {...}``), as a damaged or mixed file would have.
"""

from __future__ import annotations

import json
import re
import threading
import time

from llmwatch._demo import _openai_legacy_wire, _openai_wire
from llmwatch._demo._openai_wire import openai_error_body
from llmwatch._demo._wire import (
    ERROR_STATUS,
    JSON,
    Json,
    Raw,
    Reply,
    Request,
    Route,
    Upload,
    error,
    new_id,
    read_request,
)

_LIVE = {route.path: route for route in (*_openai_wire.ROUTES, *_openai_legacy_wire.ROUTES)}
_MAX_FILES = 1000  # the server's store stays bounded over a long test session
_LOCK = threading.Lock()


def _files(request: Request) -> dict[str, tuple[JSON, bytes]]:
    with _LOCK:
        files: dict[str, tuple[JSON, bytes]] = request.store.setdefault("files", {})
        while len(files) >= _MAX_FILES:
            del files[next(iter(files))]
        return files


def _batches(request: Request) -> dict[str, JSON]:
    with _LOCK:
        batches: dict[str, JSON] = request.store.setdefault("batches", {})
        while len(batches) >= _MAX_FILES:
            del batches[next(iter(batches))]
        return batches


def _store_file(request: Request, data: bytes, filename: str, purpose: str) -> JSON:
    file_id = new_id("file-")
    meta: JSON = {
        "id": file_id,
        "object": "file",
        "bytes": len(data),
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }
    _files(request)[file_id] = (meta, data)
    return meta


def upload_file(request: Request) -> Reply:
    upload = request.body.get("file")
    if not isinstance(upload, Upload):
        return error(openai_error_body, 400, "'file' is a required property")
    meta = _store_file(request, upload.data, upload.filename or "upload.jsonl", str(request.body.get("purpose")))
    return Json(200, meta)


def _path_id(request: Request, pattern: str) -> str:
    match = re.fullmatch(pattern, request.path.split("?", 1)[0])
    return match.group(1) if match else ""


def retrieve_file(request: Request) -> Reply:
    found = _files(request).get(_path_id(request, r"/v1/files/([^/]+)"))
    return Json(200, found[0]) if found else error(openai_error_body, 404, "No such File object")


def file_content(request: Request) -> Reply:
    found = _files(request).get(_path_id(request, r"/v1/files/([^/]+)/content"))
    return Raw(200, found[1]) if found else error(openai_error_body, 404, "No such File object")


# --- batches ---------------------------------------------------------------------------------------


def _run_request(line: JSON, endpoint: str) -> tuple[int, JSON]:
    """One input line's request through its live route: (status, body)."""
    url = str(line.get("url") or endpoint)
    route = _LIVE.get(url)
    body = line.get("body")
    if route is None or not isinstance(body, dict) or body.get("stream"):
        reason = "a batch request must name a supported url and a body, not a stream"
        return 400, openai_error_body(400, reason, "")
    request = read_request(url, {}, body)
    status = next((code for name, code in ERROR_STATUS.items() if request.has(name)), 0)
    if status:
        return status, error(openai_error_body, status).body
    reply = route.build(request)
    if not isinstance(reply, Json):
        return 400, openai_error_body(400, "this request has no JSON reply", "")
    return reply.status, reply.body


def _usage_of(body: JSON) -> tuple[int, int]:
    usage = body.get("usage") or {}
    return (
        int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
        int(usage.get("completion_tokens") or usage.get("output_tokens") or 0),
    )


def create_batch(request: Request) -> Reply:
    found = _files(request).get(str(request.body.get("input_file_id")))
    if found is None:
        return error(openai_error_body, 400, "No such File object: the input file was never uploaded")
    endpoint = str(request.body.get("endpoint") or "/v1/chat/completions")
    outputs: list[bytes] = []
    errors: list[bytes] = []
    model: str | None = None
    tokens_in = tokens_out = 0
    lines = [json.loads(raw) for raw in found[1].splitlines() if raw.strip()]
    for line in lines:
        status, body = _run_request(line, endpoint)
        model = model or (line.get("body") or {}).get("model")
        result = {
            "id": new_id("batch_req_"),
            "custom_id": line.get("custom_id"),
            "response": {"status_code": status, "request_id": new_id("req_"), "body": body},
            "error": None,
        }
        (outputs if status < 400 else errors).append(json.dumps(result).encode())
        if status < 400:
            used = _usage_of(body)
            tokens_in, tokens_out = tokens_in + used[0], tokens_out + used[1]
    if request.has("batch-bad-lines"):
        outputs.append(b'{"id": "batch_req_damaged", "custom_id": "damaged", "response": {"status_')
        failed = {"code": "server_error", "message": "The request could not be processed."}
        outputs.append(
            json.dumps({"id": new_id("batch_req_"), "custom_id": "failed", "response": None, "error": failed}).encode()
        )
    batch_id = new_id("batch_")
    now = int(time.time())
    batch: JSON = {
        "id": batch_id,
        "object": "batch",
        "endpoint": endpoint,
        "model": model,
        "errors": None,
        "input_file_id": request.body.get("input_file_id"),
        "completion_window": request.body.get("completion_window") or "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": None,
        "expires_at": now + 86_400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": len(lines), "completed": len(lines) - len(errors), "failed": len(errors)},
        "metadata": request.body.get("metadata"),
    }
    done = dict(batch, status="completed", in_progress_at=now, finalizing_at=now, completed_at=now)
    done["usage"] = {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens_in + tokens_out,
    }
    done["output_file_id"] = _store_file(request, _jsonl(outputs), f"{batch_id}_output.jsonl", "batch_output")["id"]
    if errors:
        done["error_file_id"] = _store_file(request, _jsonl(errors), f"{batch_id}_error.jsonl", "batch_output")["id"]
    _batches(request)[batch_id] = done
    return Json(200, batch)


def _jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def retrieve_batch(request: Request) -> Reply:
    found = _batches(request).get(_path_id(request, r"/v1/batches/([^/]+)"))
    return Json(200, found) if found else error(openai_error_body, 404, "No such Batch object")


ROUTES = (
    Route("/v1/files", upload_file, openai_error_body),
    Route(r"/v1/files/[^/]+", retrieve_file, openai_error_body, method="GET"),
    Route(r"/v1/files/[^/]+/content", file_content, openai_error_body, method="GET"),
    Route("/v1/batches", create_batch, openai_error_body),
    Route(r"/v1/batches/[^/]+", retrieve_batch, openai_error_body, method="GET"),
)
