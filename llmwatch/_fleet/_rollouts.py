"""Rollouts shared by the fleet: a share changed, a rollout stopped, rolled back or promoted anywhere
holds everywhere within a worker tick (or the 1 s sweep).

Each process keeps its own figures and judges its own arms (the hot path never waits on the store);
what the store holds is each rollout's state and share with the time it last changed, newest wins:
one process rolling a challenger back rolls it back for the whole fleet. (Each process looks at its
own data, so with N processes judging, the fleet's chance of a false rollback is at most N x alpha:
docs/rollouts.md.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from llmwatch._fleet._redis import RedisStore


class SharedRollout(Protocol):
    name: str

    def apply_remote(self, state: str, share: float, changed_at: float) -> None: ...


RolloutSource = Callable[[], Iterable[SharedRollout]]


class RolloutSync:
    """The queue of this process's rollout changes, and the sync the worker runs."""

    def __init__(self, source: RolloutSource) -> None:
        self._source = source
        self._pending: list[tuple[str, str, float, float]] = []
        self._lock = threading.Lock()

    def changed(self, name: str, state: str, share: float, changed_at: float) -> None:
        with self._lock:
            self._pending.append((name, state, share, changed_at))

    def push(self, store: RedisStore) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            store.set_rollout_states(pending)
        except Exception:
            with self._lock:
                self._pending[:0] = pending
            raise

    def refresh(self, store: RedisStore) -> None:
        states = store.rollout_states()
        if not states:
            return
        for rollout in self._source():
            found = states.get(rollout.name)
            if found is not None:
                rollout.apply_remote(*found)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pending = []
