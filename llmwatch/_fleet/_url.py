"""The store's URL: checked at ``configure()``, and never shown with its password.

``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) and ``unix:///path.sock`` are
accepted, as redis-py reads them. What reaches ``stats()``, a log line or an error message is
:attr:`StoreURL.redacted`: the password (and a ``password=`` query value) replaced by ``***``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Final

from llmwatch._errors import ConfigurationError

SCHEMES: Final = ("redis", "rediss", "unix")
_HIDDEN: Final = "***"


class StoreURL:
    """A validated store URL. ``str()`` and ``repr()`` are the redacted form."""

    __slots__ = ("redacted", "url")

    def __init__(self, url: str) -> None:
        self.url = url  # with its password: handed to redis-py only
        self.redacted = redact(url)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"StoreURL({self.redacted!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreURL) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def redact(url: str) -> str:
    """``url`` with its password (userinfo or ``password=`` query value) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    netloc = parts.netloc
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    hidden_query = any(key.lower() == "password" for key, _ in query)
    if "@" not in netloc and not hidden_query:
        return url  # nothing secret in it: shown exactly as given
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        # user:password, or a bare word, which older clients read as the password: hide it too
        netloc = f"{userinfo.split(':', 1)[0]}:{_HIDDEN}@{host}" if ":" in userinfo else f"{_HIDDEN}@{host}"
    query_text = parts.query
    if hidden_query:
        hidden = [(key, _HIDDEN if key.lower() == "password" else value) for key, value in query]
        query_text = urllib.parse.urlencode(hidden, safe="*")
    shown = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query_text, parts.fragment))
    if not netloc and url.startswith(f"{parts.scheme}://"):  # unix:///path: urlunsplit drops the //
        shown = f"{parts.scheme}://{shown[len(parts.scheme) + 1 :]}"
    return shown


def parse_store(name: str, value: Any) -> StoreURL | None:
    """``store=`` / ``LLMWATCH_STORE``: a Redis URL, or None/"" for no store (budgets per process)."""
    if value is None:
        return None
    if isinstance(value, StoreURL):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{name} must be a URL string such as 'redis://localhost:6379/0', got {type(value).__name__}."
        )
    text = value.strip()
    if not text:
        return None
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigurationError(f"{name}={redact(text)!r} is not a valid URL: use redis://host:6379/0.") from None
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(
            f"{name}={redact(text)!r}: the scheme must be redis://, rediss:// (TLS) or unix://, "
            "e.g. redis://localhost:6379/0."
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError(
                f"{name}={redact(text)!r}: a unix:// URL needs a socket path, unix:///run/redis.sock."
            )
    elif not parts.hostname:
        raise ConfigurationError(f"{name}={redact(text)!r} has no host: use redis://host:6379/0.")
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigurationError(f"{name}={redact(text)!r}: the path is the database number, e.g. /0.")
    del port
    return StoreURL(text)


def parse_store_failure(name: str, value: Any) -> str:
    """``store_failure=``: what budgeted calls do while the store is unreachable."""
    text = str(value).strip().lower()
    if text not in ("open", "closed"):
        raise ConfigurationError(
            f"{name}={value!r}: use 'open' (keep enforcing from the last known state, the default) or "
            "'closed' (refuse calls under a shared budget while the store is unreachable)."
        )
    return text


def parse_lease_usd(name: str, value: Any) -> float | None:
    """``lease_usd=``: the slice of a shared budget one process holds; None: 1 % of each limit."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        lease = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={value!r} is not a number of US dollars, e.g. 0.5.") from None
    if isinstance(value, bool) or not lease > 0 or lease != lease or lease == float("inf"):
        raise ConfigurationError(f"{name}={value!r} must be a positive number of US dollars, e.g. 0.5.")
    return lease
