"""``llmwatch.health()``'s store check against a real redis-server: connected, down, back."""

from __future__ import annotations

import time

import pytest

import llmwatch
from tests.fleet.redis_server import RedisServer


def store_check(status: str, timeout_s: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while (found := llmwatch.health()["checks"]["store"])["status"] != status:
        assert time.monotonic() < deadline, found
        time.sleep(0.02)
    return dict(found)


@pytest.mark.parametrize(("store_failure", "down"), [("open", "degraded"), ("closed", "failing")])
def test_the_store_check_follows_the_store(redis_server: RedisServer, store_failure: str, down: str) -> None:
    llmwatch.configure(
        service_name="fleet-test",
        exporter="none",
        store=redis_server.url,
        store_failure=store_failure,
        instrument=False,
    )
    assert "connected" in str(store_check("ok")["reason"])
    redis_server.kill()
    found = store_check(down)
    assert "unreachable" in str(found["reason"]) and found["state"] == "down"
    assert llmwatch.health()["status"] == down
    redis_server.start()
    store_check("ok")
