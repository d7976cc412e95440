from __future__ import annotations

from collections.abc import Iterator

import pytest

import llmwatch
from tests.fleet.redis_server import RedisServer


@pytest.fixture(autouse=True)
def _shut_down() -> Iterator[None]:
    """These tests configure llmwatch for real: shut it down after each, so no global provider of
    ours outlives the test (later tests would see a recording global TracerProvider)."""
    yield
    llmwatch.shutdown(timeout_s=2.0)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.resume()
        server.kill()
