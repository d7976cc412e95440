from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.resume() if server.process is not None else None
        server.kill()
