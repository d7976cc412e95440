"""InvokeModel's reply body: watched as the caller reads it, never read for them.

``response["body"]`` is a botocore ``StreamingBody`` the caller reads when it likes. It stays the very
object botocore made (its type, its methods, ``set_socket_timeout`` included); only its raw stream, the
urllib3 response it reads from (``StreamingBody._raw_stream``), is wrapped, in a transparent proxy that
keeps the bytes as they pass. Every way a ``StreamingBody`` reads goes through that raw stream:
``read()``, ``read(n)`` (``iter_chunks``, ``iter_lines``, iteration), ``readinto``, ``readlines``, and
``with body as raw`` hands the caller the proxy itself. Imported on the first InvokeModel call (with wrapt,
which instrumentation has loaded by then).
"""

from __future__ import annotations

import sys
from typing import Any

import wrapt

from llmwatch._core._call import LLMCall
from llmwatch._health import record_internal_error
from llmwatch._instrument._bedrock_bodies import Body, as_int


def watch_body(call: LLMCall, response: dict[str, Any]) -> None:
    """InvokeModel's hand-off: end the call once the caller has read the body, never reading it for them.

    The caller's ``StreamingBody`` stays the very object it was; only its raw stream (the urllib3
    response it reads from) is wrapped, in a transparent reader that keeps what passes."""
    handler = call.handler
    assert isinstance(handler, Body)
    metadata = response.get("ResponseMetadata")
    if type(metadata) is dict:
        call.response_id = metadata.get("RequestId")
        headers = metadata.get("HTTPHeaders")
        if type(headers) is dict:
            handler.headers = headers
    body = response.get("body")
    raw = getattr(body, "_raw_stream", None)
    if raw is None or (handler.headers_suffice and "x-amzn-bedrock-input-token-count" in handler.headers):
        call.finish(None)
        return
    expected = as_int(handler.headers.get("content-length"))
    body._raw_stream = BodyReader(raw, call, expected)  # type: ignore[union-attr]


class BodyReader(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """The raw stream under a ``StreamingBody``: every read passes through unchanged, and is kept.

    The call ends with the bytes once they are all read (``read()``, ``read(n)`` up to the content
    length or to EOF, ``readinto``, ``readlines``); without them when the body is closed or collected
    first (the reply headers' usage then). A read that fails fails the call, and raises as before."""

    _self_call: LLMCall
    _self_chunks: list[bytes]
    _self_size: int
    _self_expected: int | None

    def __init__(self, raw: Any, call: LLMCall, expected: int | None) -> None:
        super().__init__(raw)
        self._self_call = call
        self._self_chunks = []
        self._self_size = 0
        self._self_expected = expected

    def read(self, *args: Any, **kwargs: Any) -> Any:
        try:
            data = self.__wrapped__.read(*args, **kwargs)
        except BaseException as exc:
            self._self_fail(exc)
            raise
        amount = args[0] if args else kwargs.get("amt")
        if amount != 0:  # read(0) reads nothing and says nothing of the end
            self._self_seen(data, amount is None)
        return data

    def readinto(self, buffer: Any) -> Any:
        try:
            count = self.__wrapped__.readinto(buffer)
        except BaseException as exc:
            self._self_fail(exc)
            raise
        try:
            data = bytes(memoryview(buffer)[:count]) if type(count) is int and not self._self_call.ended else b""
        except Exception as exc:
            record_internal_error("bedrock body", exc)
            data = b""
        self._self_seen(data, False, eof=count == 0)
        return count

    def readlines(self, *args: Any, **kwargs: Any) -> Any:
        try:
            lines = self.__wrapped__.readlines(*args, **kwargs)
        except BaseException as exc:
            self._self_fail(exc)
            raise
        self._self_seen(b"".join(lines) if not args and not kwargs else b"", not args and not kwargs)
        return lines

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            try:
                self._self_done(None)
            except Exception as exc:
                record_internal_error("bedrock body", exc)

    def _self_seen(self, data: Any, whole: bool, eof: bool | None = None) -> None:
        call = self._self_call
        if call.ended:
            return
        try:
            if isinstance(data, bytes) and data:
                self._self_chunks.append(data)
                self._self_size += len(data)
            at_end = not data if eof is None else eof
            expected = self._self_expected
            if whole or at_end or (expected is not None and self._self_size >= expected):
                self._self_done(b"".join(self._self_chunks))
        except Exception as exc:
            record_internal_error("bedrock body", exc)

    def _self_done(self, data: bytes | None) -> None:
        call = self._self_call
        self._self_chunks = []
        if not call.ended:
            call.finish(data)

    def _self_fail(self, exc: BaseException) -> None:
        self._self_chunks = []
        try:
            self._self_call.fail(exc)
        except Exception as internal:  # pragma: no cover - fail guards itself
            record_internal_error("bedrock body", internal)

    def __del__(self) -> None:
        if sys.is_finalizing():
            return
        call = getattr(self, "_self_call", None)
        if call is not None and not call.ended:
            try:
                call.finish(None)
            except Exception as exc:  # pragma: no cover - finish guards itself
                record_internal_error("bedrock body", exc)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)
