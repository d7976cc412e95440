"""Hosted providers on the loopback server: an httpx transport that lets an SDK believe it talks to
its provider's real host (Azure, Groq, OpenRouter, Bedrock, Vertex...) while every request goes, over
real HTTP, to the loopback server's routes. What llmwatch sees (the client's base URL, class and
the SDK's objects) is what it sees in production; nothing leaves the machine.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

try:
    import httpx2 as httpx  # the HTTP client of the SDK versions this suite runs
except ImportError:  # older SDKs: httpx itself
    import httpx  # type: ignore[no-redef]
from llmwatch._demo._server import FakeLLMServer

_OPENAI_APIS = ("/chat/completions", "/responses", "/embeddings")


class PlatformRoutes:
    """Sends a platform client's requests to the loopback server's routes, over real HTTP.

    Bedrock (``/model/{id}/invoke[-with-response-stream]``) and Vertex (``.../models/{id}:rawPredict``)
    carry the model in the URL: it goes back into the body, as the server reads it there. ``models``
    stands in for what a platform's own server does with a name (an Azure deployment's model).
    """

    def __init__(self, server: FakeLLMServer, models: dict[str, str] | None = None) -> None:
        self.origin = server.base_url
        self.models = models or {}

    def route(self, request: Any) -> Any:
        path = urllib.parse.unquote(request.url.path)
        body = json.loads(request.content or b"{}")
        bedrock = re.search(r"/model/(.+)/invoke(-with-response-stream)?$", path)
        vertex = re.search(r"/models/(.+):(?:stream)?[rR]awPredict$", path)
        if bedrock:
            body["model"], body["stream"] = bedrock.group(1), bool(bedrock.group(2))
        elif vertex:
            body["model"] = vertex.group(1)
        if isinstance(body.get("model"), str):
            body["model"] = self.models.get(body["model"], body["model"])
        if bedrock or vertex or path.endswith("/messages"):
            path = "/v1/messages"
        else:  # an OpenAI-compatible host's prefix (/openai/v1, /api/v1, /deployments/x): the OpenAI routes
            path = next((f"/v1{api}" for api in _OPENAI_APIS if path.endswith(api)), path)
        query = f"?{request.url.query.decode()}" if request.url.query else ""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        return httpx.Request(request.method, self.origin + path + query, headers=headers, content=json.dumps(body))


class SyncRoutes(httpx.BaseTransport):
    def __init__(self, routes: PlatformRoutes) -> None:
        self.routes, self.inner = routes, httpx.HTTPTransport()

    def handle_request(self, request: Any) -> Any:
        return self.inner.handle_request(self.routes.route(request))


class AsyncRoutes(httpx.AsyncBaseTransport):
    def __init__(self, routes: PlatformRoutes) -> None:
        self.routes, self.inner = routes, httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: Any) -> Any:
        return await self.inner.handle_async_request(self.routes.route(request))


def hosted_http_client(server: FakeLLMServer, *, is_async: bool = False, models: dict[str, str] | None = None) -> Any:
    """An httpx client for an SDK's ``http_client=``: any host, answered by ``server``."""
    routes = PlatformRoutes(server, models)
    return httpx.AsyncClient(transport=AsyncRoutes(routes)) if is_async else httpx.Client(transport=SyncRoutes(routes))
