"""Real OTLP receivers on loopback for export tests: gRPC and HTTP/protobuf, traces, metrics and logs.

The exporters under test talk to these over real sockets, so a test sees what a collector (or
Datadog's Agent, or New Relic's intake) would receive: decoded protobufs, headers, and whether the
body was gzipped. Each receiver has a ``mode``, switchable at any time:

- ``Mode.HEALTHY``: accept and answer like a collector;
- ``Mode.UNAVAILABLE``: refuse (HTTP 503, gRPC UNAVAILABLE);
- ``Mode.HANG``: accept the request and never answer until the receiver stops.

:class:`DeadPort` is the fourth failure mode: a port with nothing listening (connections refused).
Everything binds 127.0.0.1 on a free port; nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import enum
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

_MESSAGES: dict[str, Any] = {
    "traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
    "logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}


class Mode(enum.Enum):
    HEALTHY = "healthy"
    UNAVAILABLE = "unavailable"
    HANG = "hang"


@dataclasses.dataclass(frozen=True)
class Received:
    """One export request as it arrived."""

    transport: str  # "grpc" | "http"
    signal: str  # "traces" | "metrics" | "logs"
    path: str  # the HTTP path or the gRPC method
    headers: Mapping[str, str]  # lower-case names
    gzip: bool | None  # None where the transport does not tell us (gRPC decompresses before us)
    message: Any  # ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest
    mode: Mode  # how the receiver answered
    peer: str  # the client's address and port: tells connections apart


@dataclasses.dataclass(frozen=True)
class ReceivedSpan:
    name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    proto: SpanProto
    request: Received


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as a plain Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


class _Receiver:
    """What both transports share: the mode, the record of requests, and waiting on it."""

    transport = ""

    def __init__(self) -> None:
        self.mode = Mode.HEALTHY
        self._records: list[Received] = []
        self._changed = threading.Condition()
        self._release = threading.Event()  # set when stopping: hung requests return

    def _record(self, received: Received) -> None:
        with self._changed:
            self._records.append(received)
            self._changed.notify_all()

    def requests(self, signal: str | None = None, *, accepted_only: bool = False) -> list[Received]:
        with self._changed:
            records = list(self._records)
        return [
            r
            for r in records
            if (signal is None or r.signal == signal) and (not accepted_only or r.mode is Mode.HEALTHY)
        ]

    def spans(self) -> list[ReceivedSpan]:
        """Every span accepted so far, flattened with its resource attributes."""
        found = []
        for request in self.requests("traces", accepted_only=True):
            for resource_spans in request.message.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(ReceivedSpan(span.name, attributes(span.attributes), resource, span, request))
        return found

    def metrics(self) -> dict[str, Any]:
        """Metric name -> the last accepted Metric proto of that name."""
        found: dict[str, Any] = {}
        for request in self.requests("metrics", accepted_only=True):
            for resource_metrics in request.message.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        found[metric.name] = metric
        return found

    def log_records(self) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
        """Every accepted log record: (the LogRecord proto, its attributes, its resource's attributes)."""
        found = []
        for request in self.requests("logs", accepted_only=True):
            for resource_logs in request.message.resource_logs:
                resource = attributes(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        found.append((record, attributes(record.attributes), resource))
        return found

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.05))
        return True

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        self.wait_for(lambda: len(self._spans_unlocked()) >= count, timeout)
        return self.spans()

    def _spans_unlocked(self) -> list[Any]:
        return [
            span
            for r in self._records
            if r.signal == "traces" and r.mode is Mode.HEALTHY
            for rs in r.message.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def wait_for_requests(self, count: int, signal: str | None = None, timeout: float = 10.0) -> list[Received]:
        self.wait_for(lambda: len([r for r in self._records if signal in (None, r.signal)]) >= count, timeout)
        return self.requests(signal)

    def _hang(self) -> None:
        self._release.wait()


# --- HTTP -------------------------------------------------------------------------------------------
class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real collector
    server: _HttpServer

    def do_POST(self) -> None:
        receiver = self.server.receiver
        signal = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}.get(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if signal is None or signal not in receiver.signals:
            self._answer(404, b"")
            return
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request_type, response_type = _MESSAGES[signal]
        message = request_type.FromString(body)
        mode = receiver.mode
        headers = {key.lower(): value for key, value in self.headers.items()}
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        receiver._record(Received("http", signal, self.path, headers, encoding == "gzip", message, mode, peer))
        if mode is Mode.HANG:
            receiver._hang()
            self.close_connection = True  # never answered: the client sees the connection close
            return
        if mode is Mode.UNAVAILABLE:
            self._answer(503, b"receiver is in UNAVAILABLE mode")
            return
        self._answer(200, response_type().SerializeToString(), "application/x-protobuf")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # keep test output quiet


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HttpReceiver


class HttpReceiver(_Receiver):
    """OTLP/HTTP (protobuf) receiver: POST /v1/traces, /v1/metrics and /v1/logs, gzip-aware."""

    transport = "http"

    def __init__(self, signals: tuple[str, ...] = ("traces", "metrics", "logs")) -> None:
        super().__init__()
        self.signals = signals  # the others are answered 404, as by a traces-only endpoint
        self._server = _HttpServer(("127.0.0.1", 0), _HttpHandler)
        self._server.receiver = self
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"  # a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


# --- gRPC -------------------------------------------------------------------------------------------
class GrpcReceiver(_Receiver):
    """OTLP/gRPC receiver: the trace, metrics and logs collector services."""

    transport = "grpc"

    def __init__(self) -> None:
        super().__init__()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="otlp-receiver"))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_GrpcTraces(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_GrpcMetrics(self), self._server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_GrpcLogs(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"  # http:// = plaintext for OTel's gRPC exporter

    def __enter__(self) -> GrpcReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._release.set()
        self._server.stop(grace=0).wait(5)

    def handle(self, signal: str, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        headers = {key.lower(): value for key, value in context.invocation_metadata()}
        mode = self.mode
        self._record(Received("grpc", signal, method, headers, None, request, mode, context.peer()))
        if mode is Mode.HANG:
            self._hang()
        if mode is not Mode.HEALTHY:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"receiver is in {mode.value} mode")
        return _MESSAGES[signal][1]()


class _GrpcTraces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: GrpcReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._receiver.handle("traces", "TraceService/Export", request, context)


class _GrpcMetrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: GrpcReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._receiver.handle("metrics", "MetricsService/Export", request, context)


class _GrpcLogs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: GrpcReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._receiver.handle("logs", "LogsService/Export", request, context)


# --- nothing listening ------------------------------------------------------------------------------
class DeadPort:
    """A loopback port with nothing listening: a socket bound but never ``listen()``-ing.

    Connections are refused (RST), and holding the bind keeps any other process off the port.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DeadPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


def running(receiver_type: type[_Receiver]) -> Iterator[Any]:
    """Fixture body: a started receiver, stopped afterwards."""
    receiver: Any = receiver_type()
    with receiver:
        yield receiver
