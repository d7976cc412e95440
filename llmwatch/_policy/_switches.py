"""The kill switches in force: exact names plus ``prefix*`` patterns, checked before every call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

EACH: Final = "*"


class Switches:
    """Engaged kill switches: exact names plus ``prefix*`` patterns. Immutable; replaced whole."""

    __slots__ = ("engaged", "feature_prefixes", "features", "model_prefixes", "models")

    def __init__(self, features: Iterable[str] = (), models: Iterable[str] = ()) -> None:
        self.features = frozenset(f for f in features if not f.endswith(EACH))
        self.feature_prefixes = tuple(sorted(f[:-1] for f in features if f.endswith(EACH)))
        self.models = frozenset(m for m in models if not m.endswith(EACH))
        self.model_prefixes = tuple(sorted(m[:-1] for m in models if m.endswith(EACH)))
        # Read before every call: an attribute, not a __bool__ call.
        self.engaged = bool(self.features or self.feature_prefixes or self.models or self.model_prefixes)

    def __bool__(self) -> bool:
        return bool(self.features or self.feature_prefixes or self.models or self.model_prefixes)

    def refusal_scope(self, feature: str | None, model: str) -> str | None:
        # str.startswith(()) is False: no prefix patterns, no match.
        if feature is not None and (feature in self.features or feature.startswith(self.feature_prefixes)):
            return f"feature={feature}"
        if model in self.models or model.startswith(self.model_prefixes):
            return f"model={model}"
        return None

    def names(self) -> dict[str, list[str]]:
        return {
            "features": sorted([*self.features, *(p + EACH for p in self.feature_prefixes)]),
            "models": sorted([*self.models, *(p + EACH for p in self.model_prefixes)]),
        }
