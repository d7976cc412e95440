"""Fixtures for the fault tests: production error handling, SDK-side recording, clients of both SDKs."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import llmwatch
from faults._support import Clients, SdkRecorder
from llmwatch import _health
from llmwatch._demo._server import FakeLLMServer


@pytest.fixture()
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    """llmwatch's production behaviour: internal errors are swallowed and counted, not re-raised."""
    monkeypatch.setattr(_health, "raise_internal_errors", False)


@pytest.fixture(scope="package")
def recorder() -> Iterator[SdkRecorder]:
    """Installed once, before any client of this package makes its resources (they bind ``post`` then)."""
    with pytest.MonkeyPatch.context() as patch:
        sdk = SdkRecorder()
        sdk.install(patch)
        yield sdk


@pytest.fixture(scope="package")
def _sync_clients(server: FakeLLMServer, recorder: SdkRecorder) -> Iterator[Clients]:
    made = Clients(server.openai_base_url, server.anthropic_base_url, llmwatch.instrument)
    yield made
    made.close_sync()


@pytest.fixture()
async def clients(_sync_clients: Clients, server: FakeLLMServer, recorder: SdkRecorder) -> AsyncIterator[Clients]:
    """Sync clients shared by the package; async ones per test (they belong to the test's event loop)."""
    made = Clients(server.openai_base_url, server.anthropic_base_url, llmwatch.instrument)
    made.made.update({key: client for key, client in _sync_clients.made.items() if not key[1]})
    recorder.clear()
    yield made
    _sync_clients.made.update({key: client for key, client in made.made.items() if not key[1]})
    await made.close_async()


_KEPT_A_TRACEBACK = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and not report.passed:  # failed, or an expected failure (xfail)
        item.stash[_KEPT_A_TRACEBACK] = True
    return report


@pytest.fixture(autouse=True)
def _collect_abandoned_streams(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed or xfailed test, collect what its kept traceback held in reference cycles.

    A stream proxy referenced from a traceback ends its span when it is finally collected; left to the
    garbage collector's timing, that happens during some later test and upsets that test's span counts.
    (Only after failures: a full collection per test would double this package's run time.)
    """
    yield
    if request.node.stash.get(_KEPT_A_TRACEBACK, False):
        gc.collect()
