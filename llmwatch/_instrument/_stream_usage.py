"""The one field llmwatch adds to a request: ``stream_options.include_usage`` on OpenAI chat streams.

Chat streams report usage only when asked, so llmwatch asks when the caller did not (and hides that
extra usage chunk from them). That changes the wire: a compatible server that does not know the field
(older vLLM, some proxies and gateways) answers 400, and a call that works without llmwatch would fail
with it. So:

- ``configure(request_stream_usage=False)`` (``LLMWATCH_REQUEST_STREAM_USAGE=false``) never adds it;
  tokens then come from tiktoken or an estimate, and ``llmwatch.usage.source`` says which.
- When a server refuses a stream with a 400 (or a framework's 422) whose message or ``param`` names
  ``stream_options`` or ``include_usage``, and it was llmwatch that added the field, the call is sent
  once more exactly as the caller wrote it; the caller sees only the latency. The base URL (no user
  info, no query) is remembered, so later streams to it go out unchanged; ``stats()
  ["stream_usage_rejected"]`` shows the retries and the URLs.
- ``stream_options`` the caller set is never touched: their request goes out as written, and a
  refusal of it is theirs to see.

The Responses API streams carry usage in ``response.completed`` unasked: nothing is added there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmwatch._health import HEALTH, record_internal_error

if TYPE_CHECKING:
    from llmwatch._core._call import LLMCall

_REFUSAL_STATUSES = frozenset({400, 422})
_FIELD_NAMES = ("stream_options", "include_usage")
_MEMORY = HEALTH.stream_usage_rejected


def with_stream_usage(client: Any, kwargs: Mapping[str, Any], enabled: bool) -> tuple[dict[str, Any], bool]:
    """The kwargs to send for a chat stream, and whether llmwatch added ``include_usage``."""
    send = dict(kwargs)
    options = kwargs.get("stream_options")
    if isinstance(options, Mapping) and "include_usage" in options:
        return send, False  # the caller decided
    if not enabled:  # configure(request_stream_usage=False), for the runtime the call started under
        return send, False
    if _MEMORY and base_url_key(getattr(client, "base_url", None)) in _MEMORY:
        return send, False  # this server refused the field before
    send["stream_options"] = {**(options if isinstance(options, Mapping) else {}), "include_usage": True}
    return send, True


def refused(call: LLMCall, instance: Any, exc: BaseException) -> bool:
    """True when ``exc`` is the server refusing the field llmwatch added: remember it, count, retry.

    ``call`` is the call record; it then no longer hides a usage chunk (none will come).
    """
    try:
        if not _names_the_field(exc):
            return False
        _MEMORY.remember(base_url_key(getattr(getattr(instance, "_client", None), "base_url", None)))
        _MEMORY.retries.add()
        call.hide_usage_chunk = False
        return True
    except Exception as internal:
        record_internal_error("stream usage refusal", internal)
        return False


def _names_the_field(exc: BaseException) -> bool:
    if getattr(exc, "status_code", None) not in _REFUSAL_STATUSES:
        return False
    body = getattr(exc, "body", None)
    text = f"{getattr(exc, 'message', '')} {body!r}" if body is not None else str(getattr(exc, "message", exc))
    return any(name in text for name in _FIELD_NAMES)


def base_url_key(url: Any) -> str:
    """A base URL without secrets: scheme, host, port and path (no ``user:password@``, no query)."""
    if url is None:
        return ""
    cached = _KEYS.get(id(url))
    if cached is not None and cached[0] is url:
        return cached[1]
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    key = f"{parts.scheme}://{host}{port}{parts.path}"
    if len(_KEYS) > 1024:
        _KEYS.clear()
    _KEYS[id(url)] = (url, key)  # holding the URL keeps its id from being reused for another one
    return key


_KEYS: dict[int, tuple[Any, str]] = {}
