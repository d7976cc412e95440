"""Settings: one table, resolved and validated once in ``configure()``."""

from __future__ import annotations


class ConfigurationError(ValueError):
    """A wrong ``configure()`` argument or environment variable; the message says how to fix it."""
