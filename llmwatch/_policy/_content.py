"""Message content capture: off by default, redacted and bounded when on.

Prompts and completions are the most sensitive data an LLM app has, so nothing here runs unless the
user opted in (``capture_content=True`` or ``"redacted"``). Every captured text goes through
:meth:`ContentPolicy.text` before it is put on a span: the built-in redactor (``"redacted"`` mode),
then the user's ``redact`` hook, then the size limit. A hook that raises drops that text (replaced by
``[redaction failed]``), never the span.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from llmwatch._health import record_internal_error
from llmwatch._text import clean

REDACTION_FAILED = "[redaction failed]"

# Shapes of secrets and personal data the built-in redactor replaces. Ordered: keys and tokens first,
# so a card-number pattern never eats part of a key.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\bbearer\s+[a-z0-9._~+/=-]{8,}"), "Bearer [REDACTED_TOKEN]"),
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"), "[REDACTED_API_KEY]"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "[REDACTED_API_KEY]"),
    (re.compile(r"\b(?:ghp|gho|ghs|github_pat|xox[abpr])_?[A-Za-z0-9_-]{16,}"), "[REDACTED_API_KEY]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "[REDACTED_TOKEN]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[REDACTED_EMAIL]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[REDACTED_CARD]"),
    (re.compile(r"(?<!\w)\+?\d{1,3}?[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\w)"), "[REDACTED_PHONE]"),
)


def builtin_redact(text: str) -> str:
    """Replace e-mail addresses, phone and card numbers, API keys and bearer tokens."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def truncate(text: str, limit: int) -> str:
    """Keep head and tail of an over-long text with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    marker = f"...[truncated {cut} chars]..."
    keep = max(limit - len(marker), 0)
    head = keep - keep // 2
    return text[:head] + marker + text[len(text) - keep // 2 :]


class ContentPolicy:
    """What happens to a text before it may leave the process."""

    __slots__ = ("_hook", "_mode", "_steps", "max_chars", "max_span_chars")

    def __init__(
        self, mode: bool | str, hook: Callable[[str], str] | None, max_chars: int, max_span_chars: int = 131072
    ) -> None:
        self._hook = hook
        self._mode = mode
        self.max_chars = max_chars
        self.max_span_chars = max_span_chars
        steps: list[Callable[[str], str]] = []
        if mode == "redacted":
            steps.append(builtin_redact)
        if hook is not None:
            steps.append(hook)
        self._steps = tuple(steps)

    def text(self, value: str) -> str:
        for step in self._steps:
            try:
                value = step(value)
            except Exception as exc:
                record_internal_error("redact hook", exc, private=True)
                return REDACTION_FAILED
            if not isinstance(value, str):
                record_internal_error("redact hook", TypeError("redact hook must return a str"))
                return REDACTION_FAILED
        return truncate(clean(value), self.max_chars)

    def with_max_chars(self, max_chars: int) -> ContentPolicy:
        """The same policy with a smaller per-text limit (to fit a span's content budget)."""
        return type(self)(self._mode, self._hook, max_chars, self.max_span_chars)

    def structured(self) -> ContentPolicy:
        """The same policy, whose :meth:`json` keeps the structure (for log events, which carry
        structured values); the caller serialises it for span attributes with :meth:`json` of this one."""
        return StructuredContentPolicy(self._mode, self._hook, self.max_chars, self.max_span_chars)

    def json(self, value: Any) -> str:
        """Serialise a structure whose texts already went through :meth:`text`."""
        # Keys and non-text values (tool names, argument keys) did not go through text(): clean all.
        return clean(json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")))

    def any_value(self, value: Any) -> Any:
        """Apply :meth:`text` to every string inside an arbitrary JSON-like value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {str(k): self.any_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.any_value(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self.text(repr(value))


class StructuredContentPolicy(ContentPolicy):
    """A :class:`ContentPolicy` that renders structures, not JSON text: every text still goes
    through :meth:`ContentPolicy.text`; keys and other strings are cleaned."""

    __slots__ = ()

    def json(self, value: Any) -> Any:
        return clean_tree(value)


def clean_tree(value: Any) -> Any:
    """Every string in a JSON-like value made encodable (a lone surrogate in a tool name would fail
    the whole OTLP export); the values :meth:`ContentPolicy.json` would have written as text."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(k)): clean_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_tree(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return clean(str(value))


def fingerprint(parts: list[str]) -> str:
    """A stable, content-free hash of a rendered prompt (role and text of each message, in order)."""
    # One join and one update: the same bytes as hashing part + separator one by one, in fewer calls.
    joined = "\x1f".join(parts) + "\x1f"
    return hashlib.blake2b(joined.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
