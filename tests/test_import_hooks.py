"""configure() instruments an SDK when the application imports it, never by importing it itself.

Importing ``anthropic`` takes 1-2 s; configure() used to import it (and openai's stream helpers)
even in an app that only uses openai. The first tests run in a fresh interpreter, where nothing is
imported yet; the hook mechanism itself is tested here, on throwaway modules.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import llmwatch
from llmwatch import _health, _instrument
from llmwatch._demo._server import FakeLLMServer
from llmwatch._instrument import _import_hooks


def run_fresh(server: FakeLLMServer, tmp_path: Path, *parts: str) -> str:
    """Run the code ``parts`` in a new interpreter (nothing imported yet); its stdout."""
    package_root = str(Path(llmwatch.__file__).resolve().parents[1])
    environ = {
        **os.environ,
        "PYTHONPATH": package_root,
        "OPENAI_BASE": server.openai_base_url,
        "ANTHROPIC_BASE": server.anthropic_base_url,
        "SPANS": str(tmp_path / "spans.jsonl"),
    }
    done = subprocess.run(
        [sys.executable, "-c", "".join(textwrap.dedent(part) for part in parts)],
        capture_output=True,
        text=True,
        timeout=180,
        env=environ,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


CALL_ANTHROPIC = """
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=os.environ["ANTHROPIC_BASE"], max_retries=0)
    client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    llmwatch.force_flush(timeout_s=10)
    lines = open(os.environ["SPANS"]).read().splitlines() if os.path.exists(os.environ["SPANS"]) else []
    names = [json.loads(line)["name"] for line in lines]
    print("SPANS", json.dumps(names))
"""


def spans_printed(stdout: str) -> list[str]:
    import json

    line = next(line for line in stdout.splitlines() if line.startswith("SPANS "))
    return list(json.loads(line[6:]))


def test_configure_imports_no_sdk_module_the_app_has_not_imported(server: FakeLLMServer, tmp_path: Path) -> None:
    stdout = run_fresh(
        server,
        tmp_path,
        """
        import os, sys
        import openai
        import llmwatch

        before = {m for m in sys.modules if m.startswith(("openai", "anthropic"))}
        llmwatch.configure(exporter="file", file_path=os.environ["SPANS"])
        added = sorted(m for m in sys.modules if m.startswith(("openai", "anthropic")) and m not in before)
        print("ADDED", added)
        client = openai.OpenAI(api_key="sk-test", base_url=os.environ["OPENAI_BASE"], max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        llmwatch.force_flush(timeout_s=10)
        print("LINES", len(open(os.environ["SPANS"]).read().splitlines()))
        """,
    )
    assert "ADDED []" in stdout  # not anthropic (1-2 s), not openai's lazily loaded resources either
    assert "LINES 1" in stdout  # openai, whose resources loaded after configure(), is traced


def test_an_sdk_imported_after_configure_is_instrumented(server: FakeLLMServer, tmp_path: Path) -> None:
    stdout = run_fresh(
        server,
        tmp_path,
        """
        import json, os, sys
        import llmwatch

        llmwatch.configure(exporter="file", file_path=os.environ["SPANS"])
        assert "anthropic" not in sys.modules
        import anthropic
        """,
        CALL_ANTHROPIC,
        """
        llmwatch.uninstrument()  # hooked on import, released like any other
        from anthropic.resources.messages import Messages
        print("WRAPPED", type(Messages.__dict__["create"]).__module__.startswith("wrapt"))
        """,
        CALL_ANTHROPIC,
    )
    first, second = [line for line in stdout.splitlines() if line.startswith("SPANS ")]
    assert spans_printed(first) == ["chat claude-haiku-4-5"]  # llmwatch's span, and not the SDK's own too
    assert "WRAPPED False" in stdout  # released
    # Then no new span: the only provider is the one llmwatch created, which the SDK's own spans would
    # not have had without llmwatch (tests/test_uninstrument.py, tests/test_anthropic_sdk_tracing.py).
    assert spans_printed(second) == ["chat claude-haiku-4-5"]


def test_uninstrument_cancels_the_pending_hook(server: FakeLLMServer, tmp_path: Path) -> None:
    stdout = run_fresh(
        server,
        tmp_path,
        """
        import json, os, sys
        import llmwatch

        llmwatch.configure(exporter="file", file_path=os.environ["SPANS"])
        llmwatch.uninstrument()
        import anthropic
        from anthropic.resources.messages import Messages
        print("WRAPPED", type(Messages.__dict__["create"]).__module__.startswith("wrapt"))
        """,
        CALL_ANTHROPIC,
    )
    assert "WRAPPED False" in stdout
    # No llmwatch span, and no SDK span poured into the provider llmwatch created.
    assert spans_printed(stdout) == []


def test_instrument_client_still_works_without_global_instrumentation(server: FakeLLMServer, tmp_path: Path) -> None:
    stdout = run_fresh(
        server,
        tmp_path,
        """
        import json, os, sys
        import llmwatch

        llmwatch.configure(exporter="file", file_path=os.environ["SPANS"], instrument=False)
        import anthropic
        client = llmwatch.instrument(
            anthropic.Anthropic(api_key="sk-ant-test", base_url=os.environ["ANTHROPIC_BASE"], max_retries=0)
        )
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        llmwatch.force_flush(timeout_s=10)
        print("SPANS", json.dumps([json.loads(line)["name"] for line in open(os.environ["SPANS"])]))
        """,
    )
    assert spans_printed(stdout) == ["chat claude-haiku-4-5"]


# --- the hook mechanism, on throwaway modules --------------------------------------------------------
@pytest.fixture()
def fake_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for throwaway modules; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("llmwatch_fake_")]:
        del sys.modules[name]
    _import_hooks.cancel("test")


def test_a_hook_runs_once_after_the_module_and_the_module_keeps_its_loader(fake_modules: Path) -> None:
    (fake_modules / "llmwatch_fake_sdk.py").write_text("VALUE = 42\n")
    seen: list[int] = []
    _import_hooks.when_imported("llmwatch_fake_sdk", "test", lambda module: seen.append(module.VALUE))
    assert seen == []
    module = importlib.import_module("llmwatch_fake_sdk")
    assert seen == [42]  # after the module's own code, before the import returned
    assert type(module.__loader__).__name__ == "SourceFileLoader"  # never our wrapper
    assert type(module.__spec__.loader).__name__ == "SourceFileLoader"
    importlib.reload(module)
    assert seen == [42]
    assert "llmwatch_fake_sdk" not in _import_hooks.pending()


@pytest.mark.usefixtures("production")
def test_a_hook_that_raises_is_counted_and_the_import_succeeds(fake_modules: Path) -> None:
    (fake_modules / "llmwatch_fake_broken.py").write_text("VALUE = 1\n")

    def broken(module: object) -> None:
        raise RuntimeError("hook bug")

    _import_hooks.when_imported("llmwatch_fake_broken", "test", broken)
    before = llmwatch.stats()["internal_errors"]
    module = importlib.import_module("llmwatch_fake_broken")  # no exception here
    assert module.VALUE == 1
    assert llmwatch.stats()["internal_errors"] == before + 1
    assert "hook bug" in (llmwatch.stats()["last_internal_error"] or "")


def test_a_cancelled_hook_never_runs(fake_modules: Path) -> None:
    (fake_modules / "llmwatch_fake_cancelled.py").write_text("VALUE = 1\n")
    seen: list[object] = []
    _import_hooks.when_imported("llmwatch_fake_cancelled", "test", seen.append)
    _import_hooks.cancel("test")
    importlib.import_module("llmwatch_fake_cancelled")
    assert seen == []


def test_a_module_already_imported_is_hooked_at_once(fake_modules: Path) -> None:
    (fake_modules / "llmwatch_fake_early.py").write_text("VALUE = 7\n")
    module = importlib.import_module("llmwatch_fake_early")
    seen: list[object] = []
    _import_hooks.when_imported("llmwatch_fake_early", "test", seen.append)
    assert seen == [module]


@pytest.mark.usefixtures("production")
def test_a_failure_while_hooking_leaves_no_method_half_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    from anthropic.resources.messages import Messages

    original = Messages.__dict__["create"]
    calls = []

    def broken_wrapper(handler: object, is_async: bool) -> object:
        calls.append(handler)
        if len(calls) == 2:  # the first method is wrapped by then
            raise RuntimeError("wrapper bug")
        return _instrument._anthropic.make_wrapper(handler, is_async)

    monkeypatch.setattr(_instrument._anthropic, "make_wrapper", broken_wrapper)
    _instrument.uninstall_all()
    assert _instrument.install(_instrument._anthropic) is True
    assert Messages.__dict__["create"] is original  # rolled back: all of that module or nothing
    assert llmwatch.stats()["internal_errors"] >= 1


@pytest.fixture()
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_health, "raise_internal_errors", False)
