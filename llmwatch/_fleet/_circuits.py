"""Circuit breakers shared by the fleet: what the worker does with them on each tick.

Each process decides on its own window at once (the hot path never waits); the store makes the
fleet agree within a tick or a sweep:

- a transition made here (opened, half-open, closed) is queued by the circuit and written to the
  store's circuit hash with its time, and published; every other process applies it when it is newer
  than its own last transition (``Circuit.apply_remote``), so one process opening a circuit opens it
  for all, and a successful probe anywhere closes it everywhere;
- the outcomes counted here are added to the circuit's fleet window in the store, whose totals come
  back to the circuit: ten processes seeing 3 failures each open together at ``min_calls=20``.

With the store down, circuits decide on their own windows only; outcomes counted meanwhile stay
local. Half-open probing is per process: each process lets one probe through at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from llmwatch._fleet._redis import RedisStore


class SharedCircuit(Protocol):
    """What the fleet needs of a circuit (``_policy/_circuit.Circuit``)."""

    fleet_id: str

    @property
    def window_s(self) -> float: ...

    def take_deltas(self) -> tuple[int, int]: ...
    def fleet_totals(self, calls: int, failures: int) -> None: ...
    def apply_remote(self, state: str, reopens_at: float, changed_at: float) -> None: ...


CircuitSource = Callable[[], Iterable[SharedCircuit]]


class CircuitSync:
    """The queue of this process's transitions, and the two syncs the worker runs."""

    def __init__(self, source: CircuitSource) -> None:
        self._source = source
        self._pending: list[tuple[str, str, float, float]] = []
        self._lock = threading.Lock()

    def changed(self, circuit_id: str, state: str, reopens_at: float, changed_at: float) -> None:
        """A transition made in this process (on the caller's thread: memory only)."""
        with self._lock:
            self._pending.append((circuit_id, state, reopens_at, changed_at))

    def push_transitions(self, store: RedisStore) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            store.set_circuit_states(pending)
        except Exception:
            with self._lock:  # not written: kept for the next try, before anything newer
                self._pending[:0] = pending
            raise

    def report_outcomes(self, store: RedisStore) -> None:
        """Add the outcomes counted since the last report to each circuit's fleet window."""
        circuits = []
        reports = []
        for circuit in self._source():
            calls, failures = circuit.take_deltas()
            if calls:
                circuits.append(circuit)
                reports.append((circuit.fleet_id, circuit.window_s, calls, failures))
        for circuit, (calls, failures) in zip(circuits, store.circuit_outcomes(reports), strict=True):
            circuit.fleet_totals(calls, failures)

    def refresh(self, store: RedisStore) -> None:
        """Apply the fleet's transitions to this process's circuits."""
        states = store.circuit_states()
        if not states:
            return
        for circuit in self._source():
            found = states.get(circuit.fleet_id)
            if found is not None:
                circuit.apply_remote(*found)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pending = []
