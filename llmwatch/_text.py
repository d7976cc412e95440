"""Strings llmwatch puts on spans and metrics must be valid Unicode: lone surrogates repaired.

Python strings may hold lone surrogates (``"\\udcff"``: from ``surrogateescape`` decoding, or a JSON
body with an unpaired ``\\ud800`` escape). OTLP's protobuf encoding refuses them, and OTel then drops
the attribute holding one (HTTP and gRPC alike) with a traceback and no count. So every string that
llmwatch takes from the user or the provider is passed through :func:`clean` before it is set: each
lone surrogate becomes U+FFFD, and every repair is counted (``stats()["strings_repaired"]``).

Cheap on the hot path: an ASCII string (almost all ids, models and user names) costs one
``str.isascii()``; only other strings are encoded to find out.
"""

from __future__ import annotations

import re
from typing import Any

from llmwatch._health import HEALTH

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value: str) -> str:
    """``value`` itself when it is valid Unicode; else a copy with each lone surrogate as U+FFFD."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        HEALTH.strings_repaired.add()
        return _SURROGATE.sub(REPLACEMENT, value)
    return value


def clean_value(value: Any) -> Any:
    """:func:`clean` for an attribute value: a str, or a list/tuple of them; other values as given."""
    if type(value) is str:
        return clean(value)
    if isinstance(value, (list, tuple)):
        return [clean(v) if type(v) is str else v for v in value]
    return value


def error_description(error: BaseException) -> str:
    """The span status description for ``error``: its message, cleaned, at most 512 characters."""
    return clean(str(error)[:512])


def exception_event_overrides(error: BaseException) -> dict[str, str] | None:
    """Attributes for ``span.record_exception`` when OTel's own ``str(error)`` would be invalid.

    OTel puts ``str(error)`` and the traceback on the exception event as they are; a lone surrogate
    in either would drop the attribute at export. None (the usual case) leaves OTel's values."""
    message = str(error)
    if message.isascii() or clean(message) is message:
        return None
    import traceback

    stacktrace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {"exception.message": clean(message), "exception.stacktrace": clean(stacktrace)}
