"""OpenAI: the hook table for ``chat.completions.create``/``.parse``, ``responses.create``/``.parse``,
``embeddings.create``, the legacy ``completions.create``, ``images.generate``, ``audio.*``,
``moderations.create`` and the Batch API, sync and async, and the SDK's stream helpers.

Covers streaming, ``with_raw_response``/``with_streaming_response`` and the
``chat.completions.stream(...)`` helper (it calls ``create(stream=True)`` on ``__enter__``, so its span
opens there). The adapter proper is one module per API, each turning that API's requests, replies and
chunks into the call record's neutral data (rendering is ``_core/_messages.py``'s):
``_openai_chat.py``, ``_openai_responses.py``, ``_openai_embeddings.py``, ``_openai_legacy.py``
(completions, moderations) and ``_openai_media.py`` (images, audio); shared request pieces:
``_openai_request.py``. The Batch API records no call of its own but the results of one:
``_openai_batch.py`` (its hooks) and ``_openai_batch_results.py``. Their wire facts are in their
docstrings and in DESIGN.md ("Provider wire facts").
"""

from __future__ import annotations

from typing import Any

from llmwatch._core._post_response import hook_parsers
from llmwatch._instrument import _openai_batch
from llmwatch._instrument._base import async_wrapper, sync_wrapper
from llmwatch._instrument._openai_chat import ChatCompletions
from llmwatch._instrument._openai_embeddings import Embeddings
from llmwatch._instrument._openai_legacy import Moderations, TextCompletions
from llmwatch._instrument._openai_media import Images, Speech, Transcriptions
from llmwatch._instrument._openai_responses import Responses

CHAT = ChatCompletions()
CHAT_PARSE = ChatCompletions(parses=True)
RESPONSES = Responses()
RESPONSES_PARSE = Responses(parses=True)
EMBEDDINGS = Embeddings()
TEXT_COMPLETIONS = TextCompletions()
MODERATIONS = Moderations()
IMAGES = Images()
TRANSCRIPTIONS = Transcriptions()
TRANSLATIONS = Transcriptions()
SPEECH = Speech()

# (module, class, method, handler): what is wrapped. Async classes use the async wrapper.
TARGETS = (
    ("openai.resources.chat.completions", "Completions", "create", CHAT, False),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", CHAT, True),
    # .parse() (structured outputs) posts on its own instead of calling create(): hooked too.
    ("openai.resources.chat.completions", "Completions", "parse", CHAT_PARSE, False),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", CHAT_PARSE, True),
    ("openai.resources.responses", "Responses", "create", RESPONSES, False),
    ("openai.resources.responses", "AsyncResponses", "create", RESPONSES, True),
    ("openai.resources.responses", "Responses", "parse", RESPONSES_PARSE, False),
    ("openai.resources.responses", "AsyncResponses", "parse", RESPONSES_PARSE, True),
    ("openai.resources.embeddings", "Embeddings", "create", EMBEDDINGS, False),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", EMBEDDINGS, True),
    ("openai.resources.completions", "Completions", "create", TEXT_COMPLETIONS, False),
    ("openai.resources.completions", "AsyncCompletions", "create", TEXT_COMPLETIONS, True),
    ("openai.resources.images", "Images", "generate", IMAGES, False),
    ("openai.resources.images", "AsyncImages", "generate", IMAGES, True),
    ("openai.resources.audio.transcriptions", "Transcriptions", "create", TRANSCRIPTIONS, False),
    ("openai.resources.audio.transcriptions", "AsyncTranscriptions", "create", TRANSCRIPTIONS, True),
    ("openai.resources.audio.translations", "Translations", "create", TRANSLATIONS, False),
    ("openai.resources.audio.translations", "AsyncTranslations", "create", TRANSLATIONS, True),
    ("openai.resources.audio.speech", "Speech", "create", SPEECH, False),
    ("openai.resources.audio.speech", "AsyncSpeech", "create", SPEECH, True),
    ("openai.resources.moderations", "Moderations", "create", MODERATIONS, False),
    ("openai.resources.moderations", "AsyncModerations", "create", MODERATIONS, True),
    *_openai_batch.TARGETS,  # not calls: the submission, and the results it yields (own wrappers)
)
# The SDK's post-parsers of .parse() (module, function, keyword holding the raw response), newest layout
# first; every one found is hooked (see _post_response.py). Their callers look them up at call time.
PARSERS = (
    ("openai.lib._chat_completion_resources", "_parse_chat_completion", "chat_completion"),
    ("openai.resources.chat.completions.completions", "_parse_chat_completion", "chat_completion"),
    ("openai.lib._response_resources", "parse_response", "response"),
    ("openai.resources.responses.responses", "parse_response", "response"),
)
CLIENT_CLASSES = (("openai", "OpenAI"), ("openai", "AsyncOpenAI"))
SDK_MODULE = "openai"
KNOWN_MAJOR_VERSIONS = (1, 2, 3)


def make_wrapper(handler: Any, is_async: bool) -> Any:
    if isinstance(handler, _openai_batch.BatchHook):
        return handler.make_wrapper(is_async)
    wrap = async_wrapper if is_async else sync_wrapper
    return wrap(handler.prepare, watch_parsing=handler.parses)


# The SDK's stream helpers (``chat.completions.stream()``, ``responses.stream()``) wrap the stream
# that create() returned (our proxy) but their close() closes the HTTP response underneath it, so
# a helper left early would keep its span open until the proxy is garbage-collected.
_HELPER_STREAMS = (
    ("openai.lib.streaming.chat._completions", "ChatCompletionStream", False),
    ("openai.lib.streaming.chat._completions", "AsyncChatCompletionStream", True),
    ("openai.lib.streaming.responses._responses", "ResponseStream", False),
    ("openai.lib.streaming.responses._responses", "AsyncResponseStream", True),
)


# Patched as each is imported (by the SDK's own resources): importing them ourselves costs 0.1-0.2 s.
EXTRA_PATCH_MODULES = tuple(dict.fromkeys([*(module for module, _, _ in _HELPER_STREAMS), *(p[0] for p in PARSERS)]))


def extra_patches(only_module: str | None = None) -> list[tuple[Any, str, Any]]:
    """End our stream's span when a stream helper is closed (or its ``with`` block is left); let the
    ``.parse()`` methods see the response the SDK's parser rejects (``_post_response.py``).
    ``only_module``: patch what lives in that module alone (it was just imported)."""
    import importlib

    import wrapt

    patched = hook_parsers(tuple(p for p in PARSERS if only_module is None or p[0] == only_module))
    for module_name, class_name, is_async in _HELPER_STREAMS:
        if only_module is not None and module_name != only_module:
            continue
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        if "close" not in cls.__dict__:
            continue
        patched.append((cls, "close", cls.__dict__["close"]))
        wrapt.wrap_function_wrapper(cls, "close", _async_helper_close if is_async else _helper_close)
    return patched


def _helper_close(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        _end_helper_stream(instance)


async def _async_helper_close(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _end_helper_stream(instance)


def _end_helper_stream(helper: Any) -> None:
    from llmwatch._core._streaming import end_unfinished_stream  # (wrapt is loaded by now: see _lifecycle._streams)

    end_unfinished_stream(getattr(helper, "_raw_stream", None))
