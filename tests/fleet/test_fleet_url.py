"""The store URL: checked at configure(), never shown with its password (unit tests, no Redis)."""

from __future__ import annotations

import pytest

from llmwatch._errors import ConfigurationError
from llmwatch._fleet._url import parse_lease_usd, parse_store, redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://app:pw@host:6380/2", "rediss://app:***@host:6380/2"),
        ("redis://pw@host/0", "redis://***@host/0"),
        ("redis://host:6379/0?password=pw&ssl_cert_reqs=none", "redis://host:6379/0?password=***&ssl_cert_reqs=none"),
        ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
        ("unix:///run/redis.sock?password=pw", "unix:///run/redis.sock?password=***"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_redaction_hides_every_password(url: str, shown: str) -> None:
    parsed = parse_store("store", url)
    assert parsed is not None and str(parsed) == repr(parsed)[10:-2] == shown == redact(url)
    assert parsed.url == url  # what redis-py gets


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://host:6379", "redis://"),
        ("redis://:pw@host:notaport/0", "valid URL"),
        ("redis:///0", "no host"),
        ("redis://host/zero", "database number"),
        ("unix://", "socket path"),
    ],
)
def test_a_wrong_url_fails_with_a_fix_and_no_password(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as error:
        parse_store("store", url)
    assert "pw" not in str(error.value)


def test_no_store_and_the_lease() -> None:
    assert parse_store("store", "") is None and parse_store("store", None) is None
    assert parse_lease_usd("lease_usd", "0.5") == 0.5 and parse_lease_usd("lease_usd", None) is None
    for bad in ("0", "-1", "nan", "inf", True, "x"):
        with pytest.raises(ConfigurationError):
            parse_lease_usd("lease_usd", bad)
