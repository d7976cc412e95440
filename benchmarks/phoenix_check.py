"""Send llmwatch's demo traffic to a real Arize Phoenix and check what Phoenix shows.

Run (Phoenix lives in its own venv: it is far too heavy for the project's)::

    python3 -m venv /work/phoenix-venv && /work/phoenix-venv/bin/pip install arize-phoenix
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.phoenix_check --phoenix /work/phoenix-venv/bin/phoenix

What it does, all on loopback:

1. starts ``phoenix serve`` on free ports in a temporary working dir (SQLite), with Phoenix's telemetry,
   external resources, agent assistant and MCP server off, and waits for ``/healthz``;
2. for each mode (``openinference``: ``configure(backend_compat=["openinference"])``; ``plain``: without
   it), runs llmwatch's demo traffic (the real openai, anthropic, google-genai and boto3 SDKs against the
   demo's loopback fake provider server), each request under an ``@llmwatch.observe`` workflow root and
   ``llmwatch.attributes(user=, session=, feature=)``, with content capture on, exported over OTLP
   HTTP to Phoenix (each mode into its own Phoenix project, named by the ``x-project-name`` header);
3. reads the spans back through Phoenix's GraphQL API (what its UI reads: span kind, ``userId``,
   token counts, ``input``/``output`` values, the trace's session, the stored attributes) and prints,
   per mode, which field Phoenix shows on every span it applies to;
4. optionally screenshots Phoenix's trace view of one trace with headless Chromium;
5. stops Phoenix and removes its working dir, whatever happened.

Exit code: 0 when every field shows in every enforced mode (``openinference``; ``plain`` alone when it
is the only mode asked for), 1 when a field is missing, 2 when Phoenix or the traffic could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import gzip
import http.server
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHOENIX_BIN_ENV = "LLMWATCH_PHOENIX_BIN"
MODES = ("plain", "openinference")
PROJECT_PREFIX = "llmwatch-demo"
START_TIMEOUT_S = 120.0
INGEST_TIMEOUT_S = 60.0
CHAT_OPERATIONS = {"chat", "generate_content", "text_completion"}
WORKFLOW_NAME = "handle_request"
# Phoenix's own switches for a quiet, offline server (phoenix/config.py of arize-phoenix 20.x).
PHOENIX_OFFLINE_ENV = {
    "PHOENIX_TELEMETRY_ENABLED": "false",  # FullStory / Scarf pixels in the UI
    "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",  # web fonts, telemetry, the WASM sandbox download
    "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
    "PHOENIX_AGENTS_DISABLE_BASH": "true",
    "PHOENIX_AGENTS_DISABLE_WEB_ACCESS": "true",
    "PHOENIX_ENABLE_MCP_SERVER": "false",
}

SPANS_QUERY = """
query Spans($project: String!) {
  getProjectByName(name: $project) {
    spans(first: 1000) {
      edges { node {
        id name spanKind statusCode parentId userId
        tokenCountPrompt tokenCountCompletion tokenCountTotal
        input { value } output { value }
        costSummary { total { cost } }
        attributes
        context { traceId spanId }
        trace { session { sessionId } }
      } }
    }
    sessions(first: 100) { edges { node { sessionId numTraces } } }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_phoenix(explicit: str | None = None) -> str | None:
    """The ``phoenix`` executable: ``explicit``, else ``$LLMWATCH_PHOENIX_BIN``, else the PATH."""
    candidate = explicit or os.environ.get(PHOENIX_BIN_ENV) or shutil.which("phoenix")
    if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
        return candidate
    return None


# --- Phoenix -------------------------------------------------------------------------------------------


@dataclass
class Phoenix:
    """A running ``phoenix serve`` on loopback."""

    port: int
    grpc_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_traces_url(self) -> str:
        return f"{self.url}/v1/traces"

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise RuntimeError(f"Phoenix GraphQL errors: {answer['errors']}")
        return dict(answer["data"])


@contextmanager
def running_phoenix(phoenix_bin: str, workdir: Path, *, quiet: bool = False) -> Iterator[Phoenix]:
    """Start ``phoenix serve`` in ``workdir`` on free ports; stop it (and its children) on the way out."""
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        **PHOENIX_OFFLINE_ENV,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_WORKING_DIR": str(workdir),
    }
    for name in ("PHOENIX_SQL_DATABASE_URL", "PHOENIX_COLLECTOR_ENDPOINT", "PHOENIX_PROJECT_NAME"):
        env.pop(name, None)  # a developer's own Phoenix settings must not leak into the check
    log_path = workdir / "phoenix-serve.log"
    log = log_path.open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [phoenix_bin, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
    )
    phoenix = Phoenix(port, grpc_port, process, log_path)
    try:
        _wait_healthy(phoenix)
        if not quiet:
            print(f"phoenix: up at {phoenix.url} in {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield phoenix
    finally:
        _stop(process)
        log.close()


def _wait_healthy(phoenix: Phoenix) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if phoenix.process.poll() is not None:
            tail = phoenix.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"phoenix serve exited with {phoenix.process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{phoenix.url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"phoenix serve did not answer /healthz within {START_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: this reaches only what it started
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


class OtlpTap:
    """A loopback OTLP/HTTP pass-through in front of Phoenix: keeps the attribute names of every span as
    llmwatch sent them (before Phoenix adds its own from ``gen_ai.*``), forwards each request unchanged."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.raw_keys: dict[str, frozenset[str]] = {}
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpTap:
        tap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/v1/traces"):
                    tap._keep(gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(tap.upstream + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, answer = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, answer = exc.code, exc.read()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _keep(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.raw_keys[span.span_id.hex()] = frozenset(kv.key for kv in span.attributes)


# --- traffic -------------------------------------------------------------------------------------------


def supports_backend_compat() -> bool:
    import llmwatch

    return "backend_compat" in inspect.signature(llmwatch.configure).parameters


def send_demo_traffic(
    endpoint: str, project: str, *, backend_compat: bool, requests: int, protocol: str = "http/protobuf"
) -> int:
    """The demo's calls, each under an ``@observe`` workflow root; returns the spans llmwatch ended."""
    import llmwatch
    from llmwatch._demo import _workload as demo
    from llmwatch._demo._server import FakeLLMServer

    os.environ["OTEL_METRICS_EXPORTER"] = "none"  # Phoenix takes traces only: /v1/metrics is not there
    # Over gRPC Phoenix reads the project from this resource attribute only (over HTTP the header wins).
    os.environ["OTEL_RESOURCE_ATTRIBUTES"] = f"openinference.project.name={project}"
    demo._seed_tokenizer()
    calls = plan_calls(requests)
    options: dict[str, Any] = {
        "service_name": "llmwatch-demo",
        "endpoint": endpoint,  # Phoenix's base URL (here the pass-through in front of it): /v1/traces is added
        "protocol": protocol,
        "headers": {"x-project-name": project},  # Phoenix's project; else openinference.project.name
        "capture_content": True,
    }
    if backend_compat:
        options["backend_compat"] = ["openinference"]
    latency = {"latency_s": 0.01, "ttft_s": 0.03, "chunk_delay_s": 0.001}
    with FakeLLMServer(**latency) as server:
        llmwatch.configure(**options)
        before = llmwatch.stats()["spans_ended"]
        clients = demo._clients(server)
        by_index = {call.index: call for call in calls}

        @llmwatch.observe(name=WORKFLOW_NAME, capture_args=True)
        def handle_request(request_id: int, feature: str) -> str:
            call = by_index[request_id]
            try:
                demo._send(call, clients[call.provider])
            except _provider_errors():
                return "failed"  # the demo's simulated provider errors: the span records them
            return "ok"

        def one(call: demo.DemoCall) -> str:
            # Phoenix keys a session by its id across projects: one set of ids per project (mode).
            session = f"s-{project.removeprefix(PROJECT_PREFIX + '-')}-{call.user}-{call.index // 10}"
            with llmwatch.attributes(user=call.user, feature=call.feature, session=session):
                return handle_request(request_id=call.index, feature=call.feature)

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(lambda c: contextvars.copy_context().run(one, c), calls))
        ended = llmwatch.stats()["spans_ended"] - before
        llmwatch.shutdown(timeout_s=15.0)
        stats = llmwatch.stats()
    if stats["exports_failed"] or stats["spans_dropped"]:
        raise RuntimeError(f"llmwatch could not export to Phoenix: {stats['last_export_error']}")
    print(f"llmwatch: {project}: {len(calls)} requests ({outcomes.count('ok')} ok), {ended} spans", file=sys.stderr)
    return int(ended)


def plan_calls(requests: int, seed: int = 7) -> list[Any]:
    """The demo's features round-robin, so every provider and call kind shows in a short run; the demo's
    two error scenarios (a 429 retried by the SDK, a 500) at requests 7 and 3 when there are that many."""
    import random

    from llmwatch._demo import _workload as demo

    rng = random.Random(seed)
    names = list(demo.FEATURES)
    calls = []
    for index in range(requests):
        scenario = {3: "error-500", 7: "error-429-once"}.get(index)
        feature = {3: "search", 7: "chat"}.get(index, names[index % len(names)])
        provider, model, operation, prompt_range, output_range = demo.FEATURES[feature]
        calls.append(
            demo.DemoCall(
                index=index,
                user=demo.USERS[index % len(demo.USERS)],
                feature=feature,
                provider=provider,
                model=model,
                operation=operation,
                prompt_words=rng.randint(*prompt_range),
                output_words=rng.randint(*output_range) if output_range[1] else 0,
                scenario=scenario,
            )
        )
    return calls


def _provider_errors() -> tuple[type[BaseException], ...]:
    import anthropic
    import botocore.exceptions
    import openai
    from google.genai import errors

    return (openai.APIStatusError, anthropic.APIStatusError, errors.APIError, botocore.exceptions.ClientError)


def read_spans(phoenix: Phoenix, project: str, expected: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Phoenix's spans of ``project`` once it has ingested ``expected`` of them (it inserts in batches)."""
    deadline = time.monotonic() + INGEST_TIMEOUT_S
    spans: list[dict[str, Any]] = []
    sessions: list[str] = []
    while time.monotonic() < deadline:
        data = phoenix.graphql(SPANS_QUERY, {"project": project})["getProjectByName"]
        if data is not None:
            spans = [edge["node"] for edge in data["spans"]["edges"]]
            sessions = [edge["node"]["sessionId"] for edge in data["sessions"]["edges"]]
            if len(spans) >= expected:
                break
        time.sleep(0.5)
    for span in spans:
        span["attributes"] = json.loads(span["attributes"] or "{}")
    return spans, sessions


# --- the check -----------------------------------------------------------------------------------------


@dataclass
class Field:
    """One thing a person looks for in Phoenix, where Phoenix reads it from, and whether llmwatch itself
    sent that attribute (``sends``: a key, or a prefix ending in ``.``) or Phoenix made it up from the
    ``gen_ai.*`` attributes at ingest (Phoenix 20.x does: other OpenInference readers do not)."""

    name: str
    reads: str
    sends: str | None = None
    required: bool = True  # False: reported, never a failure (Phoenix's own prices, say)
    found: int = 0
    total: int = 0
    sent: int = 0
    example: str = ""
    misses: list[str] = field(default_factory=list)

    def record(self, ok: bool, span: dict[str, Any], shown: Any, raw: frozenset[str] = frozenset()) -> None:
        self.total += 1
        if self.sends is not None and _sent(raw, self.sends):
            self.sent += 1
        if ok:
            self.found += 1
            if not self.example:
                self.example = _short(shown)
        elif len(self.misses) < 3:
            self.misses.append(f"{span['name']}: {_short(shown)}")

    @property
    def status(self) -> str:
        if self.total == 0:
            return "n/a"
        if self.found == self.total:
            return "found"
        return "MISSING" if self.required else "partly"


def _sent(raw: frozenset[str], key: str) -> bool:
    return any(name.startswith(key) for name in raw) if key.endswith(".") else key in raw


def _short(value: Any, width: int = 48) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _get(attributes: dict[str, Any], dotted: str) -> Any:
    """``llm.input_messages.0.message.content`` out of Phoenix's nested attribute JSON."""
    node: Any = attributes
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _message_text(attributes: dict[str, Any], prefix: str) -> str:
    """All text of the messages under ``prefix`` (``message.content`` or ``message.contents.N.*``)."""
    texts = []
    for item in _get(attributes, prefix) or []:
        message = item.get("message", {}) if isinstance(item, dict) else {}
        if isinstance(message.get("content"), str):
            texts.append(message["content"])
        for part in message.get("contents") or []:
            text = _get(part, "message_content.text")
            if isinstance(text, str):
                texts.append(text)
    return "\n".join(texts)


def check_spans(spans: list[dict[str, Any]], sessions: list[str], raw_keys: dict[str, frozenset[str]]) -> list[Field]:
    """Per field, on how many spans Phoenix shows it; ``raw_keys``: each span's attribute names as sent."""
    oi_kind, oi_in, oi_out = "openinference.span.kind", "llm.input_messages.", "llm.output_messages."
    fields = {
        "llm.kind": Field("LLM span kind", "openinference.span.kind", oi_kind),
        "llm.user": Field("LLM user", "user.id", "user.id"),
        "llm.session": Field("LLM session", "session.id -> trace.session", "session.id"),
        "llm.tokens.prompt": Field("LLM tokens prompt", "llm.token_count.prompt", "llm.token_count.prompt"),
        "llm.tokens.completion": Field(
            "LLM tokens completion", "llm.token_count.completion", "llm.token_count.completion"
        ),
        "llm.tokens.total": Field("LLM tokens total", "llm.token_count.total", "llm.token_count.total"),
        "llm.model": Field("LLM model", "llm.model_name", "llm.model_name"),
        # Phoenix prices spans itself (its model table, from llm.model_name, llm.provider and the tokens);
        # it does not read llm.cost.*. Reported beside llmwatch's cost, not required.
        "llm.cost": Field("LLM cost (Phoenix's prices)", "its price table; not llm.cost.*", required=False),
        "llm.input_messages": Field("LLM input messages", "llm.input_messages.N.message.*", oi_in),
        "llm.output_messages": Field("LLM output messages", "llm.output_messages.N.message.*", oi_out),
        "llm.input": Field("LLM input (the prompt)", "input.value", "input.value"),
        "llm.output": Field("LLM output (the reply)", "output.value", "output.value"),
        "emb.kind": Field("embeddings span kind", "openinference.span.kind", oi_kind),
        "emb.model": Field("embeddings model", "embedding.model_name", "embedding.model_name"),
        # Phoenix fills its token columns (and totals) on LLM spans only: here the stored attribute.
        "emb.tokens": Field("embeddings tokens prompt", "llm.token_count.prompt (attribute)", "llm.token_count.prompt"),
        "root.kind": Field("workflow root kind", "openinference.span.kind: CHAIN or AGENT", oi_kind),
        "root.user": Field("workflow root user", "user.id", "user.id"),
        "root.session": Field("workflow root session", "session.id -> trace.session", "session.id"),
        "root.input": Field("workflow root input", "input.value", "input.value"),
        "root.output": Field("workflow root output", "output.value", "output.value"),
        "sessions": Field("sessions listed", "project.sessions"),
    }
    if raw_keys is None:
        for item in fields.values():
            item.sends = None
    for span in spans:
        attrs = span["attributes"]
        raw = frozenset() if raw_keys is None else raw_keys.get(span["context"]["spanId"], frozenset())
        user = _get(attrs, "llmwatch.user")
        session = _get(attrs, "llmwatch.session")
        trace_session = (span["trace"].get("session") or {}).get("sessionId")
        operation = _get(attrs, "gen_ai.operation.name")
        ok = span["statusCode"] != "ERROR"
        if span["name"] == WORKFLOW_NAME and span["parentId"] is None:
            fields["root.kind"].record(span["spanKind"] in ("chain", "agent"), span, span["spanKind"], raw)
            fields["root.user"].record(span["userId"] == user and user is not None, span, span["userId"], raw)
            fields["root.session"].record(trace_session == session and session is not None, span, trace_session, raw)
            input_value = (span["input"] or {}).get("value")
            output_value = (span["output"] or {}).get("value")
            fields["root.input"].record(bool(input_value) and "request_id" in input_value, span, input_value, raw)
            fields["root.output"].record(bool(output_value), span, output_value, raw)
        elif operation == "embeddings" and ok:
            fields["emb.kind"].record(span["spanKind"] == "embedding", span, span["spanKind"], raw)
            model = _get(attrs, "embedding.model_name")
            fields["emb.model"].record(model == _get(attrs, "gen_ai.request.model"), span, model, raw)
            tokens = _get(attrs, "llm.token_count.prompt")
            fields["emb.tokens"].record(bool(tokens), span, tokens, raw)
        elif operation in CHAT_OPERATIONS and ok:
            _check_llm_span(fields, span, attrs, raw, (user, session, trace_session))
    fields["sessions"].record(bool(sessions), {"name": "project"}, sessions[:3])
    return list(fields.values())


def _check_llm_span(
    fields: dict[str, Field], span: dict[str, Any], attrs: dict[str, Any], raw: frozenset[str], who: tuple[Any, ...]
) -> None:
    user, session, trace_session = who
    fields["llm.kind"].record(span["spanKind"] == "llm", span, span["spanKind"], raw)
    fields["llm.user"].record(span["userId"] == user and user is not None, span, span["userId"], raw)
    same_session = trace_session == session and _get(attrs, "session.id") == session and session is not None
    fields["llm.session"].record(same_session, span, trace_session, raw)
    prompt, completion, total = span["tokenCountPrompt"], span["tokenCountCompletion"], span["tokenCountTotal"]
    fields["llm.tokens.prompt"].record(bool(prompt), span, prompt, raw)
    fields["llm.tokens.completion"].record(bool(completion), span, completion, raw)
    fields["llm.tokens.total"].record(bool(total) and total == (prompt or 0) + (completion or 0), span, total, raw)
    model = _get(attrs, "llm.model_name")
    fields["llm.model"].record(bool(model), span, model, raw)
    cost = ((span.get("costSummary") or {}).get("total") or {}).get("cost")
    ours = _get(attrs, "llmwatch.cost.usd")
    fields["llm.cost"].record(bool(cost), span, f"{model}: Phoenix {cost} USD, llmwatch {ours} USD", raw)
    asked = _message_text(attrs, "llm.input_messages")
    answered = _message_text(attrs, "llm.output_messages")
    fields["llm.input_messages"].record("request" in asked, span, asked, raw)
    fields["llm.output_messages"].record(bool(answered.strip()), span, answered, raw)
    # The demo's prompts start "<feature> request <n>:"; the reply is the fake server's words.
    input_value = (span["input"] or {}).get("value") or ""
    output_value = (span["output"] or {}).get("value") or ""
    prompt_head = asked.split("\n")[0][:24]
    reply_head = answered.strip()[:24]
    fields["llm.input"].record(bool(prompt_head) and prompt_head in input_value, span, input_value, raw)
    fields["llm.output"].record(bool(reply_head) and reply_head in output_value, span, output_value, raw)


def _by_provider(spans: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for span in spans:
        provider = _get(span["attributes"], "gen_ai.provider.name")
        if provider is not None:
            key = f"{provider} {_get(span['attributes'], 'gen_ai.operation.name')}"
            counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{key}: {count}" for key, count in sorted(counts.items()))


def print_table(results: dict[str, list[Field]]) -> None:
    """Markdown: per mode, on how many spans Phoenix shows the field, and on how many llmwatch sent it."""
    modes = list(results)
    rows = results[modes[0]]
    columns = [f"{mode} {what}" for mode in modes for what in ("shows", "sent")]
    print("| field | Phoenix reads | " + " | ".join(columns) + " | example (last mode) |")
    print("|" + "---|" * (3 + len(columns)))
    for index, row in enumerate(rows):
        cells = []
        for mode in modes:
            item = results[mode][index]
            cells.append(f"{item.status} {item.found}/{item.total}" if item.total else "n/a")
            cells.append(f"{item.sent}/{item.total}" if item.sends and item.total else "")
        example = results[modes[-1]][index].example.replace("|", "\\|")
        print(f"| {row.name} | `{row.reads}` | " + " | ".join(cells) + f" | {example} |")
    for mode in modes:
        for item in results[mode]:
            for miss in item.misses:
                print(f"  {mode}: {item.name} missing on {miss}", file=sys.stderr)


# --- screenshot ----------------------------------------------------------------------------------------


def screenshot(phoenix: Phoenix, project: str, spans: list[dict[str, Any]], out: Path, chromium: str) -> list[str]:
    """Headless Chromium: ``out`` is Phoenix's trace view of one chat trace, its LLM span selected;
    ``<out>-list.png`` beside it is the project's traces table. Returns the URLs shot."""
    project_id = _project_id(phoenix, project)
    chat = next(
        s
        for s in spans
        if _get(s["attributes"], "gen_ai.operation.name") == "chat"
        and s["statusCode"] != "ERROR"
        and _get(s["attributes"], "gen_ai.provider.name") == "openai"
    )
    traces = f"{phoenix.url}/projects/{project_id}/traces"
    # The UI selects a span by its GraphQL node id, not its OTel span id.
    trace = f"{traces}/{chat['context']['traceId']}?selectedSpanNodeId={chat['id']}"
    out.parent.mkdir(parents=True, exist_ok=True)
    _chromium_shot(chromium, trace, out)
    _chromium_shot(chromium, traces, out.with_name(f"{out.stem}-list{out.suffix}"))
    return [trace, traces]


def _chromium_shot(chromium: str, url: str, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="llmwatch-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1600,1000",
            # Phoenix's UI is a React app that loads over GraphQL and slides the trace panel in: give it
            # 30 s of virtual time, and draw only once every compositor stage ran (no half-faded panel).
            "--virtual-time-budget=30000",
            "--run-all-compositor-stages-before-draw",
            f"--screenshot={out.resolve()}",
            url,
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


def _project_id(phoenix: Phoenix, project: str) -> str:
    data = phoenix.graphql("query($n: String!) { getProjectByName(name: $n) { id } }", {"n": project})
    return str(data["getProjectByName"]["id"])


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phoenix_check", description=__doc__.split("\n")[0])
    parser.add_argument("--phoenix", help=f"the phoenix executable (default: ${PHOENIX_BIN_ENV}, else PATH)")
    parser.add_argument("--modes", default="plain,openinference", help="plain, openinference or both (default)")
    parser.add_argument("--requests", type=int, default=18, help="demo requests per mode (default 18)")
    parser.add_argument("--protocol", choices=("http/protobuf", "grpc"), default="http/protobuf")
    parser.add_argument("--screenshot", type=Path, help="PNG of Phoenix's trace view (last mode), and <name>-list.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--dump", type=Path, help="write the spans Phoenix returned (JSON, one file per mode)")
    parser.add_argument("--keep", action="store_true", help="leave Phoenix running until Enter (to look around)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: one or more of {', '.join(MODES)}")
    phoenix_bin = find_phoenix(args.phoenix)
    if phoenix_bin is None:
        print(f"phoenix_check: no phoenix executable (--phoenix, ${PHOENIX_BIN_ENV} or PATH)", file=sys.stderr)
        return 2
    if "openinference" in modes and not supports_backend_compat():
        print(
            "phoenix_check: this llmwatch has no configure(backend_compat=): openinference mode skipped",
            file=sys.stderr,
        )
        modes = [m for m in modes if m != "openinference"] or ["plain"]
    started = time.monotonic()
    results: dict[str, list[Field]] = {}
    with tempfile.TemporaryDirectory(prefix="llmwatch-phoenix-") as workdir:
        try:
            with running_phoenix(phoenix_bin, Path(workdir)) as phoenix, OtlpTap(phoenix.url) as tap:
                last_spans: list[dict[str, Any]] = []
                for mode in modes:
                    project = f"{PROJECT_PREFIX}-{mode}"
                    grpc = args.protocol == "grpc"  # straight to Phoenix: the pass-through speaks HTTP only
                    ended = send_demo_traffic(
                        f"http://127.0.0.1:{phoenix.grpc_port}" if grpc else tap.url,
                        project,
                        backend_compat=mode == "openinference",
                        requests=args.requests,
                        protocol=args.protocol,
                    )
                    last_spans, sessions = read_spans(phoenix, project, ended)
                    print(f"phoenix: {project}: {len(last_spans)} of {ended} spans stored", file=sys.stderr)
                    print(f"phoenix: {project}: LLM spans by provider: {_by_provider(last_spans)}", file=sys.stderr)
                    results[mode] = check_spans(last_spans, sessions, None if grpc else tap.raw_keys)
                    if args.dump:
                        args.dump.mkdir(parents=True, exist_ok=True)
                        (args.dump / f"{project}.json").write_text(json.dumps(last_spans, indent=1))
                if args.screenshot:
                    project = f"{PROJECT_PREFIX}-{modes[-1]}"
                    urls = screenshot(phoenix, project, last_spans, args.screenshot, args.chromium)
                    print(f"screenshots: {args.screenshot} (and -list) of {', '.join(urls)}", file=sys.stderr)
                if args.keep:
                    with contextlib.suppress(EOFError):
                        input(f"Phoenix at {phoenix.url}; Enter stops it. ")
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"phoenix_check: {exc}", file=sys.stderr)
            return 2
    print_table(results)
    print(f"\nwall time {time.monotonic() - started:.1f} s (Phoenix start included)", file=sys.stderr)
    enforced = [m for m in modes if m == "openinference"] or modes
    missing = [f"{m}: {f.name}" for m in enforced for f in results[m] if f.status == "MISSING"]
    if missing:
        print("missing in Phoenix: " + "; ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
