"""``llmwatch.health_app()``: ``llmwatch.health()`` as JSON at ``/healthz``, for WSGI and ASGI servers.

One object serves both interfaces, told apart by how it is called: ``app(environ, start_response)``
is WSGI, ``app(scope, receive, send)`` is ASGI 3. Standard library only, so it mounts in FastAPI,
Starlette, Flask, Django or a bare uvicorn/gunicorn without pulling a framework into llmwatch.

HTTP 200 when the result is ``ok`` or ``degraded``, 503 when ``failing`` (``?strict=1`` makes
``degraded`` 503 too). It never raises into the server: a check that raises is a 503 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, overload
from urllib.parse import parse_qs

from llmwatch import _health

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
StartResponse = Callable[..., Any]  # (status, headers[, exc_info]) -> write; its type lives in typeshed only
Response = tuple[int, list[tuple[str, str]], bytes]

ALLOW = "GET, HEAD"
HEALTH_METHODS = frozenset({"GET", "HEAD"})
TRUE_VALUES = frozenset({"1", "true", "yes"})
# A probe must see the live state: no proxy or client may answer it from a cache.
COMMON_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))


def http_status(result: Mapping[str, Any], strict: bool = False) -> int:
    """The HTTP status for a ``health()`` result: 200 for ok (and degraded unless strict), else 503.

    A status this function does not know counts as failing: an endpoint that cannot tell is not healthy.
    """
    status = result.get("status") if isinstance(result, Mapping) else None
    if status == "ok" or (status == "degraded" and not strict):
        return 200
    return 503


def is_strict(query: str) -> bool:
    """Whether the query string asks for ``strict`` (``1``, ``true`` or ``yes``, any case; the last one wins)."""
    values = parse_qs(query).get("strict", [])
    return bool(values) and values[-1].strip().lower() in TRUE_VALUES


def json_response(status: int, payload: Any, extra: Iterable[tuple[str, str]] = ()) -> Response:
    """A JSON response; ``default=str`` so a datetime (or any odd value) in a check never breaks it."""
    body = json.dumps(payload, default=str).encode("utf-8")
    headers = [*COMMON_HEADERS, *extra, ("Content-Length", str(len(body)))]
    return status, headers, body


def failure_response(exc: Exception) -> Response:
    """The 503 answered when the check itself raised (or returned something that is not JSON)."""
    reason = f"health check raised {type(exc).__name__}: {exc}"
    # llmwatch's own test-suite makes record_internal_error re-raise; the endpoint must answer anyway.
    with contextlib.suppress(Exception):
        _health.record_internal_error("health endpoint", exc)
    return json_response(503, {"status": "failing", "checks": {"health": {"status": "failing", "reason": reason}}})


class HealthApp:
    """A WSGI and ASGI 3 app answering ``GET``/``HEAD`` at ``path`` with ``check()`` as JSON.

    Mounted under a prefix (Starlette/FastAPI ``Mount``, werkzeug's ``DispatcherMiddleware``), it
    answers at the mount root as well, so ``app.mount("/healthz", health_app())`` serves ``/healthz/``
    rather than ``/healthz/healthz``. Other paths are 404; other methods on the path are 405.
    """

    def __init__(self, check: Callable[[], Mapping[str, Any]], path: str = "/healthz") -> None:
        if not path.startswith("/"):
            raise ValueError(f"health_app path must start with '/', got {path!r}")
        self.check = check
        self.path = path
        # Compared without trailing slashes: a probe configured as /healthz/ should not get a 404.
        self._target = path.rstrip("/")

    @overload
    def __call__(self, environ: dict[str, Any], start_response: StartResponse, /) -> Iterable[bytes]: ...

    @overload
    def __call__(self, scope: Scope, receive: Receive, send: Send, /) -> Coroutine[Any, Any, None]: ...

    def __call__(self, *args: Any) -> Any:
        """WSGI with two arguments, ASGI 3 (a coroutine to await) with three."""
        if len(args) == 2:
            return self._wsgi(*args)
        if len(args) == 3:
            return self._asgi(*args)
        raise TypeError(f"HealthApp takes (environ, start_response) or (scope, receive, send), got {len(args)} args")

    def _route(self, method: str, path: str, mounted: bool) -> Response | None:
        """The 404 or 405 answer, or ``None`` when the request is for the health check."""
        relative = path.rstrip("/")
        if relative != self._target and not (mounted and relative == ""):
            return json_response(404, {"error": "not found"})
        if method not in HEALTH_METHODS:
            return json_response(405, {"error": "method not allowed"}, [("Allow", ALLOW)])
        return None

    def _answer(self, strict: bool) -> Response:
        """Run the check and turn its result into the response; never raises."""
        try:
            result = self.check()
            return json_response(http_status(result, strict), result)
        except Exception as exc:  # the endpoint must answer whatever the check (or its JSON) does
            return failure_response(exc)

    def _wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        # PATH_INFO is already relative to the mount; SCRIPT_NAME holds the prefix when there is one.
        mounted = bool(environ.get("SCRIPT_NAME", "").rstrip("/"))
        routed = self._route(method, environ.get("PATH_INFO", "") or "", mounted)
        status, headers, body = routed or self._answer(is_strict(environ.get("QUERY_STRING", "") or ""))
        start_response(f"{status} {http.HTTPStatus(status).phrase}", headers)
        return [] if method == "HEAD" else [body]

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http":
            await self._asgi_http(scope, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            # Closing before accepting rejects the handshake (the server answers 403): no websocket here.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1000})

    async def _asgi_http(self, scope: Scope, send: Send) -> None:
        method = str(scope.get("method", "GET")).upper()
        path, mounted = asgi_route_path(scope)
        routed = self._route(method, path, mounted)
        if routed is None:
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            routed = await _off_the_loop(self._answer, is_strict(query))
        status, headers, body = routed
        raw_headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def asgi_route_path(scope: Scope) -> tuple[str, bool]:
    """The request path relative to the mount, and whether the app is mounted under a prefix.

    ASGI says ``path`` is the full path and ``root_path`` the prefix (current Starlette ``Mount``,
    uvicorn ``--root-path``); older Starlette stripped the prefix from ``path``: both are handled.
    """
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "")).rstrip("/")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path, bool(root)


async def _off_the_loop(answer: Callable[[bool], Response], strict: bool) -> Response:
    """Run the (synchronous, maybe store-pinging) check in a worker thread, so it never stalls the loop.

    Under a loop that is not asyncio's (trio through hypercorn), run it inline instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return answer(strict)
    return await asyncio.to_thread(answer, strict)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown, so the app can be a server's top-level app with lifespan on."""
    while True:
        message = await receive()
        if message.get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message.get("type") == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# uvicorn (and hypercorn) pick ASGI 3 over ASGI 2 only when ``__call__`` is a coroutine function;
# ours is not (it also serves WSGI), so mark it as one: ``uvicorn module:app`` then works unflagged.
if sys.version_info >= (3, 12):
    inspect.markcoroutinefunction(HealthApp.__call__)
else:
    HealthApp.__call__._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
