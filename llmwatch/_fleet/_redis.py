"""The store's wire: Redis keys, the lease script, the kill-switch hash and its channel.

Keys are namespaced by service (``llmwatch:{service}:...``), so services sharing one Redis keep their
own budgets and switches:

- ``llmwatch:{service}:budget:{scope}/{per}:{window end}``: a hash of ``allocated`` and ``spent``,
  integers of picodollars changed only by ``HINCRBY`` (exact), expiring a day after the window ends;
- ``llmwatch:{service}:switches``: a hash ``feature:{name}`` / ``model:{name}`` -> when it was set;
  every change is published on the channel of the same name;
- ``llmwatch:{service}:circuits``: a hash circuit id -> ``state|reopens_at|changed_at`` (the last
  transition anywhere in the fleet), each change also published on the switches channel;
- ``llmwatch:{service}:rollouts``: a hash rollout name -> ``state|share|changed_at``, each change
  also published on the switches channel;
- ``llmwatch:{service}:circuit:{id}``: a circuit's outcomes, a hash ``{bucket}:c`` / ``{bucket}:f`` of
  calls and failures per time bucket, pruned and summed by :data:`OUTCOME_SCRIPT`.

One lease sync is one ``EVALSHA`` of :data:`LEASE_SCRIPT` per share, pipelined: it reports spend,
covers an overdraft, takes up to a lease of what is left, and answers with the fleet's totals, atomically
(one key per script call, so Redis Cluster places each on its key's node). redis-py is imported here
only, when a store is configured (extra ``llmwatch[redis]``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from llmwatch._errors import ConfigurationError
from llmwatch._fleet._shares import SyncRequest
from llmwatch._fleet._url import StoreURL

if TYPE_CHECKING:
    import redis

# KEYS[1]: the window's hash. ARGV: limit, want, cover, report, give_back, ttl seconds (integers).
# Lua numbers are doubles: exact to 2^53 picodollars ($9,007), which only the "what is left" comparison
# uses; every stored change goes through HINCRBY with the integers as sent, so totals stay exact.
LEASE_SCRIPT: Final = """
local key = KEYS[1]
if ARGV[5] ~= '0' then redis.call('HINCRBY', key, 'allocated', '-' .. ARGV[5]) end
if ARGV[4] ~= '0' then redis.call('HINCRBY', key, 'spent', ARGV[4]) end
if ARGV[3] ~= '0' then redis.call('HINCRBY', key, 'allocated', ARGV[3]) end
local allocated = tonumber(redis.call('HGET', key, 'allocated') or '0')
local limit = tonumber(ARGV[1])
local grant = 0
if ARGV[2] ~= '0' and allocated < limit then
  grant = math.floor(math.min(tonumber(ARGV[2]), limit - allocated))
  if grant > 0 then
    allocated = redis.call('HINCRBY', key, 'allocated', string.format('%.0f', grant))
  end
end
redis.call('EXPIRE', key, ARGV[6])
return {string.format('%.0f', grant), tostring(redis.call('HGET', key, 'allocated') or '0'),
        tostring(redis.call('HGET', key, 'spent') or '0')}
"""
# KEYS[1]: a circuit's outcome hash. ARGV: the current bucket, buckets in a window, calls, failures, ttl.
# Adds this process's outcomes, drops buckets older than the window, answers the window's totals.
OUTCOME_SCRIPT: Final = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
if ARGV[3] ~= '0' then redis.call('HINCRBY', key, ARGV[1] .. ':c', ARGV[3]) end
if ARGV[4] ~= '0' then redis.call('HINCRBY', key, ARGV[1] .. ':f', ARGV[4]) end
local calls, failures = 0, 0
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local name = fields[i]
  local sep = string.find(name, ':', 1, true)
  local bucket = tonumber(string.sub(name, 1, sep - 1))
  if bucket == nil or now - bucket >= width then
    redis.call('HDEL', key, name)
  elseif string.sub(name, sep + 1) == 'c' then
    calls = calls + tonumber(fields[i + 1])
  else
    failures = failures + tonumber(fields[i + 1])
  end
end
redis.call('EXPIRE', key, ARGV[5])
return {calls, failures}
"""
_KEEP_AFTER_WINDOW_S: Final = 86_400  # a window's totals stay readable a day after it ends
OUTCOME_BUCKETS: Final = 10  # as the circuits' own sliding windows
FEATURE: Final = "feature"
MODEL: Final = "model"


def _named(fields: Iterable[str], kind: str) -> frozenset[str]:
    prefix = kind + ":"
    return frozenset(field[len(prefix) :] for field in fields if field.startswith(prefix))


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            "store= needs redis-py: pip install 'llmwatch[redis]' (or pip install redis)."
        ) from None
    return redis


class RedisStore:
    """One service's keys in one Redis. Every method may raise (redis-py's errors): the caller
    (the worker, the CLI) handles them; nothing here is ever called on a user's request."""

    def __init__(self, url: StoreURL, service: str, timeout_s: float = 0.5) -> None:
        self.url = url
        self.prefix = f"llmwatch:{service}:"
        self.switches_key = self.prefix + "switches"
        self.circuits_key = self.prefix + "circuits"
        self.rollouts_key = self.prefix + "rollouts"
        self._timeout_s = timeout_s
        self._redis_module = _import_redis()
        self._client: redis.Redis | None = None
        self._lease_sha: str | None = None
        self._outcome_sha: str | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = self._redis_module.Redis.from_url(
                self.url.url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                health_check_interval=0,
                retry_on_timeout=False,
                decode_responses=True,
            )
        return self._client

    def close(self) -> None:
        client, self._client, self._lease_sha, self._outcome_sha = self._client, None, None, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail: it is gone anyway
                client.close()

    def forget_connection(self) -> None:
        """In a forked child: drop the parent's sockets without touching them (they are the parent's)."""
        self._client, self._lease_sha, self._outcome_sha = None, None, None

    # --- leases -------------------------------------------------------------------------------------
    def window_key(self, name: str, resets_at: float) -> str:
        return f"{self.prefix}budget:{name}:{int(resets_at)}"

    def sync(
        self, requests: Sequence[SyncRequest], give_back: Sequence[int] | None = None
    ) -> list[tuple[int, int, int]]:
        """Run the lease script for each request (one pipelined round trip): (grant, allocated, spent)."""
        if not requests:
            return []
        try:
            return self._run_lease_scripts(requests, give_back)
        except self._redis_module.exceptions.NoScriptError:  # a restarted Redis forgot it: none ran
            self._lease_sha = None
            return self._run_lease_scripts(requests, give_back)

    def _run_lease_scripts(
        self, requests: Sequence[SyncRequest], give_back: Sequence[int] | None
    ) -> list[tuple[int, int, int]]:
        client = self.client
        if self._lease_sha is None:
            self._lease_sha = str(client.script_load(LEASE_SCRIPT))
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for index, request in enumerate(requests):
            share = request.share
            ttl = max(int(share.resets_at - now), 0) + _KEEP_AFTER_WINDOW_S
            returned = give_back[index] if give_back is not None else 0
            pipe.evalsha(
                self._lease_sha,
                1,
                self.window_key(share.name, share.resets_at),
                str(share.limit_pico),
                str(request.want),
                str(request.cover),
                str(request.report),
                str(returned),
                str(ttl),
            )
        answers = pipe.execute()
        return [(int(grant), int(allocated), int(spent)) for grant, allocated, spent in answers]

    # --- kill switches ------------------------------------------------------------------------------
    def switches(self) -> tuple[frozenset[str], frozenset[str]]:
        """(features, models) switched off fleet-wide."""
        fields = [str(field) for field in self.client.hkeys(self.switches_key)]
        return _named(fields, FEATURE), _named(fields, MODEL)

    def set_switch(self, kind: str, name: str, engaged: bool) -> None:
        """Engage or clear one switch, and tell every subscribed process."""
        field = f"{kind}:{name}"
        pipe = self.client.pipeline(transaction=True)
        if engaged:
            pipe.hset(self.switches_key, field, str(time.time()))
        else:
            pipe.hdel(self.switches_key, field)
        pipe.publish(self.switches_key, field)
        pipe.execute()

    def subscribe(self) -> Any:
        """A pub/sub on the switches channel (its own connection), or raise."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(self.switches_key)
        return pubsub

    # --- circuit breakers ---------------------------------------------------------------------------
    def circuit_states(self) -> dict[str, tuple[str, float, float]]:
        """Every circuit's last transition in the fleet: id -> (state, reopens_at, changed_at)."""
        states: dict[str, tuple[str, float, float]] = {}
        for field, value in self.client.hgetall(self.circuits_key).items():
            state, _, rest = str(value).partition("|")
            reopens, _, changed = rest.partition("|")
            with contextlib.suppress(ValueError):  # a value written by something else: not ours to read
                states[str(field)] = (state, float(reopens), float(changed))
        return states

    def set_circuit_states(self, changes: Sequence[tuple[str, str, float, float]]) -> None:
        """Write transitions (id, state, reopens_at, changed_at) and tell every subscribed process."""
        pipe = self.client.pipeline(transaction=True)
        for circuit_id, state, reopens_at, changed_at in changes:
            pipe.hset(self.circuits_key, circuit_id, f"{state}|{reopens_at!r}|{changed_at!r}")
            pipe.publish(self.switches_key, f"circuit:{circuit_id}")
        pipe.execute()

    def circuit_outcomes(self, reports: Sequence[tuple[str, float, int, int]]) -> list[tuple[int, int]]:
        """Add (id, window_s, calls, failures) to each circuit's fleet window: its (calls, failures)."""
        if not reports:
            return []
        try:
            return self._run_outcome_scripts(reports)
        except self._redis_module.exceptions.NoScriptError:  # a restarted Redis forgot it: none ran
            self._outcome_sha = None
            return self._run_outcome_scripts(reports)

    def _run_outcome_scripts(self, reports: Sequence[tuple[str, float, int, int]]) -> list[tuple[int, int]]:
        client = self.client
        if self._outcome_sha is None:
            self._outcome_sha = str(client.script_load(OUTCOME_SCRIPT))
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for circuit_id, window_s, calls, failures in reports:
            bucket_s = window_s / OUTCOME_BUCKETS
            key = f"{self.prefix}circuit:{circuit_id}"
            ttl = int(window_s) + 60
            pipe.evalsha(
                self._outcome_sha,
                1,
                key,
                str(int(now / bucket_s)),
                str(OUTCOME_BUCKETS),
                str(calls),
                str(failures),
                str(ttl),
            )
        return [(int(calls), int(failures)) for calls, failures in pipe.execute()]

    # --- rollouts -----------------------------------------------------------------------------------
    def rollout_states(self) -> dict[str, tuple[str, float, float]]:
        """Every rollout's last change in the fleet: name -> (state, share, changed_at)."""
        states: dict[str, tuple[str, float, float]] = {}
        for field, value in self.client.hgetall(self.rollouts_key).items():
            state, _, rest = str(value).partition("|")
            share, _, changed = rest.partition("|")
            with contextlib.suppress(ValueError):
                states[str(field)] = (state, float(share), float(changed))
        return states

    def set_rollout_states(self, changes: Sequence[tuple[str, str, float, float]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for name, state, share, changed_at in changes:
            pipe.hset(self.rollouts_key, name, f"{state}|{share!r}|{changed_at!r}")
            pipe.publish(self.switches_key, f"rollout:{name}")
        pipe.execute()
