"""The MCP bridge (``mcp``, the official Python SDK): client requests and server handling traced, and
the trace and the caller's attribution carried across in ``params._meta``.

Client (``_mcp_client``): ``ClientSession.call_tool``, ``list_tools`` and ``read_resource``, wrapped
at class level, so every session (stdio, streamable HTTP, in-memory, ``mcp.client.Client``) is
covered. Server (``_mcp_server``): mcp 2.x, a step inside ``ServerRunner``'s middleware chain, for
every server (``MCPServer``, low-level ``Server``) and transport; mcp 1.x, around the low-level
``Server._handle_request`` (``FastMCP`` too). Neither changes what is sent to a
tool or returned from it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from llmwatch._instrument import _mcp_client, _mcp_server

FRAMEWORK_MODULE = "mcp"

# (class, attribute, original): what install replaced, for uninstall
_patched: list[tuple[Any, str, Any]] = []


def install(module: ModuleType) -> None:
    """Wrap the client methods and the server's middleware composition (idempotent)."""
    if _patched:
        return
    session_module = sys.modules.get("mcp.client.session")
    session_class = getattr(session_module, "ClientSession", None)
    if session_class is not None:
        for name in _mcp_client.METHODS:
            original = session_class.__dict__.get(name)
            if original is not None:
                _patch(session_class, name, _mcp_client.wrap(original, name))
    runner_module = sys.modules.get("mcp.server.runner")
    runner_class = getattr(runner_module, "ServerRunner", None)
    compose = runner_class.__dict__.get("_compose_server_middleware") if runner_class is not None else None
    if compose is not None:  # mcp 2.x
        _patch(runner_class, "_compose_server_middleware", _mcp_server.wrap_compose(compose))
        return
    server_module = sys.modules.get("mcp.server.lowlevel.server")
    server_class = getattr(server_module, "Server", None)
    handle = server_class.__dict__.get("_handle_request") if server_class is not None else None
    if handle is not None:  # mcp 1.x (FastMCP and the low-level Server)
        _patch(server_class, "_handle_request", _mcp_server.wrap_handle_request(handle))


def _patch(owner: Any, name: str, replacement: Any) -> None:
    original = owner.__dict__[name]
    setattr(owner, name, replacement)
    _patched.append((owner, name, original))


def uninstall() -> None:
    """Put the SDK's own methods back."""
    while _patched:
        owner, name, original = _patched.pop()
        setattr(owner, name, original)
