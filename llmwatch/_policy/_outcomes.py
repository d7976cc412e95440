"""What a finished call says about its provider's health: the input of circuit breakers and ``health()``.

Three answers:

- ``OK``: the provider answered (a whole response, or a stream that ran to its end);
- ``FAILURE``: the provider failed the caller: a 5xx or 529, a 429 or 408, a timeout, a connection
  refused or reset, a stream cut in the middle, an error event inside a stream (Anthropic's
  ``overloaded_error``, Bedrock's ``modelStreamErrorException``);
- ``IGNORED``: says nothing about the provider: a caller error (400, 401, 403, 404, 409, 413, 422:
  the request was wrong, and sending it again elsewhere would fail the same way), a cancelled call,
  a stream the caller closed early, or an exception llmwatch cannot place (raised by user code inside
  an ``llm_call`` block, say).

Read from the exception only, never by importing an SDK: status codes where the SDK keeps them
(openai's and anthropic's ``status_code``, google-genai's ``code``, botocore's response metadata and
error code, LiteLLM's ``status_code``), else the names of the exception's classes (httpx's
``TransportError`` family, ``APIConnectionError``, the builtin ``TimeoutError``/``ConnectionError``).
"""

from __future__ import annotations

from typing import Any, Final

OK: Final = "ok"
FAILURE: Final = "failure"
IGNORED: Final = "ignored"

# Statuses that are the provider's fault (or its capacity's): the rest of 4xx are the caller's.
_FAILURE_STATUSES: Final = frozenset({408, 425, 429})

# Exception classes (anywhere in the MRO) that mean the provider could not be reached or did not answer.
_FAILURE_CLASSES: Final = frozenset(
    {
        # openai, anthropic (and every Stainless SDK), LiteLLM
        "APIConnectionError",
        "APITimeoutError",
        "InternalServerError",
        "RateLimitError",
        "ServiceUnavailableError",
        "OverloadedError",
        "Timeout",
        # httpx: every transport failure, cut streams included (RemoteProtocolError, ReadError)
        "TransportError",
        "TimeoutException",
        # botocore / urllib3 / aiohttp
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "IncompleteReadError",
        "ResponseStreamingError",
        "ProtocolError",
        "ClientConnectionError",
        "ServerTimeoutError",
        # the standard library
        "TimeoutError",
        "ConnectionError",
        "IncompleteRead",
    }
)

# Errors that say nothing about the provider, whatever else they are.
_IGNORED_CLASSES: Final = frozenset({"CancelledError", "KeyboardInterrupt", "GeneratorExit", "SystemExit"})

# Bedrock's error codes (``response["Error"]["Code"]``, also in event-stream exception messages).
_FAILURE_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
        "modelStreamErrorException",
        "internalServerException",
        "throttlingException",
        "serviceUnavailableException",
    }
)

# Error types inside an otherwise successful (200) response: Anthropic's stream ``event: error``.
_FAILURE_BODY_TYPES: Final = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})


def outcome(error: BaseException | None, stream_completed: bool | None = None) -> str:
    """``OK``, ``FAILURE`` or ``IGNORED`` for a call that ended with ``error`` (None: no exception).

    ``stream_completed`` False with no error: the caller stopped reading early; not the provider's doing."""
    if error is None:
        return IGNORED if stream_completed is False else OK
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & _IGNORED_CLASSES:
        return IGNORED
    status = _status_of(error)
    if status is not None and status >= 400:
        return FAILURE if status >= 500 or status in _FAILURE_STATUSES else IGNORED
    if _error_code(error) in _FAILURE_CODES or _body_type(error) in _FAILURE_BODY_TYPES:
        return FAILURE
    if names & _FAILURE_CLASSES:
        return FAILURE
    return IGNORED


def _status_of(error: BaseException) -> int | None:
    for name in ("status_code", "code", "status"):
        value = getattr(error, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value if value >= 400 else None  # a 200 carrying an error event: read its body
    response = getattr(error, "response", None)
    if isinstance(response, dict):  # botocore's ClientError
        metadata = response.get("ResponseMetadata")
        status = metadata.get("HTTPStatusCode") if isinstance(metadata, dict) else None
        if isinstance(status, int) and 400 <= status <= 599:
            return status
    return None


def _error_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error")
        code = details.get("Code") if isinstance(details, dict) else None
        if isinstance(code, str):
            return code
    return None


def _body_type(error: BaseException) -> str | None:
    body: Any = getattr(error, "body", None)
    if not isinstance(body, dict):
        return None
    inner = body.get("error")
    kind = inner.get("type") if isinstance(inner, dict) else body.get("type")
    return kind if isinstance(kind, str) else None
