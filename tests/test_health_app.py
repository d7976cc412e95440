"""``HealthApp`` (``llmwatch.health_app()``) behind real servers: wsgiref, uvicorn, and Starlette mounts.

Each server runs in a thread on a loopback port for the whole module; the check is a plain function
whose answer each test sets (a result dict, or an exception to raise). Every request crosses a real
socket, so what is checked is what a load balancer or a kubelet would see.
"""

from __future__ import annotations

import datetime
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from llmwatch import _health
from llmwatch._recovery._health_app import HealthApp, asgi_route_path, http_status

OK = {"status": "ok", "checks": {"exporter": {"status": "ok", "reason": "exported 3 batches"}}}
DEGRADED = {"status": "degraded", "checks": {"store": {"status": "degraded", "reason": "store unreachable"}}}
FAILING = {"status": "failing", "checks": {"circuits": {"status": "failing", "reason": "openai circuit open"}}}
START_TIMEOUT_S = 10.0


class Check:
    """The check every server calls: returns ``result`` (a copy), or raises ``error`` when set."""

    def __init__(self) -> None:
        self.result: Mapping[str, Any] = OK
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> Mapping[str, Any]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return dict(self.result)


CHECK = Check()


@pytest.fixture(autouse=True)
def _fresh_check() -> Iterator[Check]:
    CHECK.result, CHECK.error, CHECK.calls = OK, None, 0
    yield CHECK
    CHECK.result, CHECK.error = OK, None


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on the test output


def mounted_at(prefix: str, app: Callable[..., Any]) -> Callable[..., Any]:
    """What werkzeug's ``DispatcherMiddleware`` does for one mount: the prefix moves to SCRIPT_NAME."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path != prefix and not path.startswith(prefix + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "3")])
            return [b"app"]  # "the rest of the application"
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        environ["PATH_INFO"] = path[len(prefix) :]
        return app(environ, start_response)

    return dispatch


@dataclass
class Served:
    """A server running in a thread, and the URL it answers at."""

    url: str
    stop: Callable[[], None]


def serve_wsgi(app: Callable[..., Any]) -> Served:
    server = make_server("127.0.0.1", 0, app, server_class=WSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(START_TIMEOUT_S)

    return Served(f"http://127.0.0.1:{server.server_port}", stop)


def serve_asgi(app: Any) -> tuple[Served, uvicorn.Server]:
    """uvicorn with lifespan on and the interface left to its own detection, on a socket bound here."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive(), "uvicorn exited before it started (lifespan startup failed?)"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()

    return Served(f"http://127.0.0.1:{port}", stop), server


@pytest.fixture(scope="module")
def wsgi() -> Iterator[str]:
    served = serve_wsgi(HealthApp(CHECK))
    yield served.url
    served.stop()


@pytest.fixture(scope="module")
def wsgi_mounted() -> Iterator[str]:
    served = serve_wsgi(mounted_at("/ops", HealthApp(CHECK)))
    yield served.url
    served.stop()


@pytest.fixture(scope="module")
def uvicorn_app() -> Iterator[tuple[str, uvicorn.Server]]:
    served, server = serve_asgi(HealthApp(CHECK))
    yield served.url, server
    served.stop()


@pytest.fixture(scope="module")
def starlette() -> Iterator[str]:
    routes = [
        Mount("/healthz", app=HealthApp(CHECK)),
        Mount("/ops", app=HealthApp(CHECK)),
        Route("/ready", HealthApp(CHECK, path="/ready")),  # not a function: Starlette calls it as an ASGI app
    ]
    app = Starlette(routes=routes)
    served, _ = serve_asgi(app)
    yield served.url
    served.stop()


# Every way the endpoint is reached: (server fixture, the health URL's path on it).
WAYS = [
    ("wsgi", "/healthz"),
    ("wsgi_mounted", "/ops"),  # DispatcherMiddleware: SCRIPT_NAME=/ops, PATH_INFO=""
    ("wsgi_mounted", "/ops/"),
    ("wsgi_mounted", "/ops/healthz"),
    ("uvicorn_app", "/healthz"),
    ("starlette", "/healthz/"),  # app.mount("/healthz", health_app()): the mount root
    ("starlette", "/ops/healthz"),  # app.mount("/ops", health_app()): the path under the mount
    ("starlette", "/ready"),  # Route("/ready", health_app(path="/ready")): the exact path, no redirect
]


@pytest.fixture(params=WAYS, ids=[f"{name}:{path}" for name, path in WAYS])
def url(request: pytest.FixtureRequest) -> str:
    name, path = request.param
    base = request.getfixturevalue(name)
    base = base[0] if isinstance(base, tuple) else base
    return f"{base}{path}"


def get(url: str, method: str = "GET", **params: str) -> httpx.Response:
    return httpx.request(method, url, params=params, timeout=START_TIMEOUT_S)


def test_ok_is_200_with_the_check_result_as_json(url: str) -> None:
    response = get(url)
    assert response.status_code == 200
    assert response.json() == OK
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["content-length"]) == len(response.content)


def test_degraded_is_200_unless_strict(url: str) -> None:
    CHECK.result = DEGRADED
    assert get(url).status_code == 200
    assert get(url).json() == DEGRADED
    for value in ("1", "true", "TRUE", "yes"):
        strict = get(url, strict=value)
        assert strict.status_code == 503, value
        assert strict.json() == DEGRADED
    assert get(url, strict="0").status_code == 200
    assert get(url, strict="no").status_code == 200


def test_failing_is_503_strict_or_not(url: str) -> None:
    CHECK.result = FAILING
    assert get(url).status_code == 503
    assert get(url).json() == FAILING
    assert get(url, strict="1").status_code == 503


def test_the_status_follows_the_check_between_requests(url: str) -> None:
    for result, status in ((OK, 200), (FAILING, 503), (DEGRADED, 200), (OK, 200)):
        CHECK.result = result
        assert get(url).status_code == status


def test_head_has_the_status_and_headers_but_no_body(url: str) -> None:
    CHECK.result = FAILING
    head, full = get(url, "HEAD"), get(url)
    assert head.status_code == 503
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["content-length"] == full.headers["content-length"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405(url: str, method: str) -> None:
    response = get(url, method)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json() == {"error": "method not allowed"}
    assert CHECK.calls == 0


def test_a_check_that_raises_is_a_503_with_the_reason(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_health, "raise_internal_errors", False)  # production: counted, not re-raised
    CHECK.error = RuntimeError("store lookup blew up")
    before = _health.HEALTH.internal_errors.value
    response = get(url)
    assert response.status_code == 503
    assert response.json() == {
        "status": "failing",
        "checks": {"health": {"status": "failing", "reason": "health check raised RuntimeError: store lookup blew up"}},
    }
    assert response.headers["content-type"] == "application/json"
    assert _health.HEALTH.internal_errors.value == before + 1
    CHECK.error = None
    assert get(url).status_code == 200  # the server is still serving


def test_a_raising_check_is_answered_under_our_test_suites_re_raise_too(wsgi: str) -> None:
    assert _health.raise_internal_errors  # tests/conftest.py: record_internal_error re-raises here
    CHECK.error = ValueError("boom")
    response = get(f"{wsgi}/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["health"]["reason"] == "health check raised ValueError: boom"


def test_values_json_cannot_hold_are_written_as_strings(url: str) -> None:
    when = datetime.datetime(2026, 5, 1, 12, 30, tzinfo=datetime.UTC)
    CHECK.result = {"status": "ok", "checks": {"exporter": {"status": "ok", "reason": "", "last_export": when}}}
    response = get(url)
    assert response.status_code == 200
    assert response.json()["checks"]["exporter"]["last_export"] == str(when)


@pytest.mark.parametrize("path", ["/", "/health", "/healthz/x", "/healthzz", "/metrics"])
def test_other_paths_are_404(wsgi: str, uvicorn_app: tuple[str, uvicorn.Server], path: str) -> None:
    for base in (wsgi, uvicorn_app[0]):
        for method in ("GET", "POST"):
            response = get(f"{base}{path}", method)
            assert response.status_code == 404, (base, path, method)
            assert response.json() == {"error": "not found"}
    assert CHECK.calls == 0


@pytest.mark.parametrize("path", ["/ops/x", "/ops/healthz/x", "/opsx"])
def test_other_paths_under_a_mount_are_404(wsgi_mounted: str, starlette: str, path: str) -> None:
    assert get(f"{wsgi_mounted}{path}").status_code == 404
    assert get(f"{starlette}{path}").status_code == 404
    assert CHECK.calls == 0


def test_starlette_redirects_the_bare_mount_path_to_the_mount_root(starlette: str) -> None:
    # Starlette's Mount("/healthz") matches "/healthz/..." only; its router redirects "/healthz".
    bare = get(f"{starlette}/healthz")
    assert bare.status_code in (307, 308)
    assert bare.headers["location"].endswith("/healthz/")
    followed = httpx.get(f"{starlette}/healthz", follow_redirects=True, timeout=START_TIMEOUT_S)
    assert followed.status_code == 200
    assert followed.json() == OK


def test_a_custom_path() -> None:
    served = serve_wsgi(HealthApp(CHECK, path="/ready"))
    try:
        assert get(f"{served.url}/ready").status_code == 200
        assert get(f"{served.url}/ready/").status_code == 200
        assert get(f"{served.url}/healthz").status_code == 404
    finally:
        served.stop()


def test_uvicorn_runs_it_as_asgi3_with_lifespan(uvicorn_app: tuple[str, uvicorn.Server]) -> None:
    _, server = uvicorn_app
    assert server.config.interface == "asgi3"  # detected, not forced: __call__ is marked a coroutine function
    assert not server.lifespan.startup_failed
    assert not server.lifespan.error_occurred


def test_lifespan_shutdown_completes() -> None:
    served, server = serve_asgi(HealthApp(CHECK))
    assert get(f"{served.url}/healthz").status_code == 200
    served.stop()
    assert not server.lifespan.shutdown_failed
    assert not server.lifespan.error_occurred


def test_websockets_are_refused(uvicorn_app: tuple[str, uvicorn.Server]) -> None:
    websockets = pytest.importorskip("websockets.sync.client")
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        websockets.connect(uvicorn_app[0].replace("http", "ws") + "/healthz", open_timeout=START_TIMEOUT_S)
    assert refused.value.response.status_code == 403
    assert get(f"{uvicorn_app[0]}/healthz").status_code == 200  # the server is unharmed


@pytest.mark.parametrize(
    ("result", "strict", "code"),
    [
        ({"status": "ok"}, False, 200),
        ({"status": "ok"}, True, 200),
        ({"status": "degraded"}, False, 200),
        ({"status": "degraded"}, True, 503),
        ({"status": "failing"}, False, 503),
        ({"status": "unknown"}, False, 503),  # a status we do not know counts as failing
        ({"status": "OK"}, False, 503),
        ({}, False, 503),
    ],
)
def test_http_status(result: Mapping[str, Any], strict: bool, code: int) -> None:
    assert http_status(result, strict) == code


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"path": "/healthz", "root_path": ""}, ("/healthz", False)),  # top level
        ({"path": "/healthz/", "root_path": "/healthz"}, ("/", True)),  # current Starlette: the full path
        ({"path": "/", "root_path": "/healthz"}, ("/", True)),  # older Starlette: the prefix stripped
        ({"path": "/api/healthz", "root_path": "/api"}, ("/healthz", True)),  # uvicorn --root-path /api
        ({"path": "/apix/healthz", "root_path": "/api"}, ("/apix/healthz", True)),  # not under the prefix
        ({"path": "/healthz"}, ("/healthz", False)),  # no root_path key
    ],
)
def test_asgi_route_path(scope: dict[str, str], expected: tuple[str, bool]) -> None:
    assert asgi_route_path(scope) == expected


def test_a_path_must_start_with_a_slash() -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        HealthApp(CHECK, path="healthz")
