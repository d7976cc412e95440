"""Reading SDK objects: the field helpers every adapter uses to turn requests and replies into data.

Why apart from the wrappers (``_base.py``): an adapter needs these and nothing of the call shell. The
SDKs hand over pydantic models (sometimes built with ``construct()``, with undeclared extra fields from
compatible servers), plain dicts (raw JSON, streamed events) and, rarely, other objects: ``field`` and
``fields_of`` read all three the same way, at per-chunk cost (decided once per type, no exception
paths). The request-side ``put_*`` helpers copy only the values a caller actually gave (not the SDKs'
``NOT_GIVEN``/``omit`` sentinels, not bools posing as numbers), typed as the registry types the
attribute: a double attribute gets a float even when the caller wrote ``temperature=1``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llmwatch import _semconv as sc

_MISSING = object()
_NUMBER_TYPES = frozenset({int, float})
_EMPTY: Mapping[str, Any] = {}
_DOUBLES = sc.DOUBLE_REQUEST_ATTRIBUTES


def given(value: Any) -> bool:
    """False for None and the SDKs' ``NOT_GIVEN``/``omit`` sentinels."""
    return value is not None and type(value).__name__ not in {"NotGiven", "Omit"}


def put_number(attrs: dict[str, Any], key: str, value: Any) -> None:
    if type(value) in _NUMBER_TYPES:  # int or float, not bool (nor the SDKs' NOT_GIVEN sentinels)
        attrs[key] = float(value) if key in _DOUBLES else value


def put_numbers(attrs: dict[str, Any], kwargs: Mapping[str, Any], params: tuple[tuple[str, str], ...]) -> None:
    """``attrs[attribute] = kwargs[param]`` for each numeric request parameter the caller gave."""
    for param, attribute in params:
        value: Any = kwargs.get(param)
        if type(value) in _NUMBER_TYPES:
            attrs[attribute] = float(value) if attribute in _DOUBLES else value


def put_stop_sequences(attrs: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, str):
        attrs[key] = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        attrs[key] = list(value)


def server_attributes(client: Any, attrs: dict[str, Any]) -> None:
    """``server.address``/``server.port`` from the client's base URL (no secrets: host and port only)."""
    url = getattr(client, "base_url", None)
    if url is None:
        return
    cached = _SERVER_ATTRIBUTES.get(id(url))
    if cached is None or cached[0] is not url:  # parsing a URL's host and port costs µs: once per URL
        cached = (url, server_attributes_of_url(url))
        if len(_SERVER_ATTRIBUTES) > 1024:
            _SERVER_ATTRIBUTES.clear()
        _SERVER_ATTRIBUTES[id(url)] = cached
    attrs.update(cached[1])


def server_attributes_of_url(url: Any) -> dict[str, Any]:
    host = getattr(url, "host", None)
    if not host:
        return {}
    port = getattr(url, "port", None)
    return {"server.address": host, "server.port": port or (443 if getattr(url, "scheme", "https") == "https" else 80)}


# id(url) -> (url, attributes); holding the URL keeps its id from being reused for another one.
_SERVER_ATTRIBUTES: dict[int, tuple[Any, dict[str, Any]]] = {}


def field(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field from an SDK model or a plain dict (streams and raw JSON both occur)."""
    if obj is None:
        return default
    if type(obj) is dict:
        return obj.get(name, default)
    if _is_pydantic(type(obj)):
        value = obj.__dict__.get(name, _MISSING)
        if value is not _MISSING:
            return value
        # Undeclared fields (compatible servers' extras) live apart; rare, so the slower read is fine.
        extra = getattr(obj, "__pydantic_extra__", None)
        return extra.get(name, default) if extra else default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def fields_of(obj: Any) -> Mapping[str, Any]:
    """The declared fields of an SDK model, or a plain dict, as a mapping to ``.get`` from.

    For the per-chunk paths: one call per object, then plain dict lookups. A pydantic model's extra
    (undeclared) fields are not in it: read those with :func:`field`."""
    if obj is None:
        return _EMPTY
    if type(obj) is dict:
        return obj
    if _is_pydantic(type(obj)):
        return obj.__dict__  # type: ignore[no-any-return]
    if isinstance(obj, Mapping):
        return obj
    return _AttributeView(obj)


def _is_pydantic(cls: type) -> bool:
    # Decided once per type. Asking the object instead (hasattr(obj, "__pydantic_extra__")) raises
    # inside pydantic's __getattr__ for models the SDKs build with construct(), ~1.5 µs a time.
    known = _PYDANTIC_TYPES.get(cls)
    if known is None:
        known = hasattr(cls, "__pydantic_fields__") and hasattr(cls, "model_fields")
        known = _PYDANTIC_TYPES[cls] = known and not cls.__module__.startswith(_READ_BY_ATTRIBUTE)
    return known


# Pydantic models that keep their fields elsewhere than ``__dict__``: LiteLLM's ``ModelResponse``,
# ``Delta``, ``Usage``... hold ``usage``, ``content`` and more as extras or set them in their own
# ``__init__``; they are read through their attributes (still decided once per type).
_READ_BY_ATTRIBUTE = ("litellm.",)


_PYDANTIC_TYPES: dict[type, bool] = {}


class _AttributeView(Mapping[str, Any]):
    """``.get`` over any object's attributes (the rare shapes that are neither dicts nor pydantic)."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self._obj, name)
        except AttributeError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def text_of(content: Any) -> str:
    """The text of a message content: a str, or a list of parts with text."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(str(field(part, "text") or "") for part in content)
    return ""
