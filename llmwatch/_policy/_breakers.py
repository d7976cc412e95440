"""Circuit breakers: the rule ``llmwatch.circuit_breaker()`` returns, and the check before every call.

A breaker covers the calls of a provider, a model and/or a feature (``None``: any; ``"*"``: each value
on its own circuit, so ``circuit_breaker(model="*")`` trips per model). Each scope it covers is a
:class:`~llmwatch._policy._circuit.Circuit`. The rules (``_budget.Rules``) hold the breakers and call
:func:`check_circuits` after the budgets; the call's outcome comes back through
:meth:`Admission.record` when it ends (``_core/_pipeline``).

An open circuit refuses with :class:`~llmwatch._errors.CircuitOpen`, before any I/O; with a
``fallback``, ``fallback(exc)`` answers instead (sync or async, exactly as a budget's ``on_exceed``:
its return value is the caller's answer; None lets the call go ahead after all).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from llmwatch._errors import CircuitOpen, ConfigurationError
from llmwatch._policy._circuit import CLOSED, HALF_OPEN, Circuit, Thresholds, TransitionSink
from llmwatch._policy._outcomes import IGNORED
from llmwatch._policy._switches import EACH

Fallback = Callable[[CircuitOpen], Any]
MAX_CIRCUITS_PER_BREAKER: Final = 1_000  # "*" scopes past this share one overflow circuit


class CircuitBreaker:
    """One breaker rule. Returned by ``llmwatch.circuit_breaker()``; ``remove()`` lifts it."""

    def __init__(
        self,
        provider: str | None,
        model: str | None,
        feature: str | None,
        thresholds: Thresholds,
        fallback: Fallback | None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.feature = feature
        self.thresholds = thresholds
        self.fallback = fallback
        self.scope = circuit_scope(provider, model, feature)
        self._per_value = EACH in (provider, model, feature)
        # The values a call must have (None: any value, the breaker's own None or "*"), read per call.
        self._want_provider = None if provider in (None, EACH) else provider
        self._want_model = None if model in (None, EACH) else model
        self._want_feature = None if feature in (None, EACH) else feature
        self._needs_feature = feature is not None
        self._circuits: dict[str, Circuit] = {}
        self._by_values: dict[tuple[str, str, str | None], Circuit] = {}  # per-value circuits, by the call's values
        self._single: Circuit | None = None
        self._lock = threading.Lock()
        self._on_transition: TransitionSink | None = None
        self.rules: Any = None  # the rules holding this breaker: remove() asks them
        if not self._per_value:  # made now: a transition the fleet made applies before this process calls
            self._single = self._new_circuit(self.scope, provider or "", model or "", feature)

    @property
    def on_transition(self) -> TransitionSink | None:
        return self._on_transition

    @on_transition.setter
    def on_transition(self, sink: TransitionSink | None) -> None:
        """Where this breaker's circuits tell their transitions (set by the rules: the fleet's queue)."""
        self._on_transition = sink
        for circuit in self.circuits():
            circuit.on_transition = sink

    @property
    def rule(self) -> tuple[str | None, str | None, str | None]:
        return self.provider, self.model, self.feature

    def update(self, thresholds: Thresholds, fallback: Fallback | None) -> None:
        """New thresholds and fallback for this scope; the circuits keep their state."""
        self.thresholds = thresholds
        self.fallback = fallback
        for circuit in self.circuits():
            circuit.thresholds = thresholds

    def remove(self) -> None:
        """Lift this breaker: its circuits are forgotten and calls go ahead."""
        if self.rules is not None:
            self.rules.remove_breaker(self)

    def after_fork(self) -> None:
        """In a forked child: fresh locks for this breaker and its circuits."""
        self._lock = threading.Lock()
        for circuit in self._circuits.values():
            circuit.after_fork()

    def circuits(self) -> list[Circuit]:
        with self._lock:
            return list(self._circuits.values())

    # --- hot path -------------------------------------------------------------------------------------
    def circuit_for(self, provider: str, model: str, feature: str | None) -> Circuit | None:
        """The circuit this call goes through, or None when the breaker does not cover it."""
        want = self._want_provider
        if want is not None and want != provider:
            return None
        want = self._want_model
        if want is not None and want != model:
            return None
        if self._needs_feature and (
            feature is None or (self._want_feature is not None and self._want_feature != feature)
        ):
            return None
        single = self._single
        if single is not None:
            return single
        circuit = self._by_values.get((provider, model, feature))
        if circuit is None:
            key = circuit_scope(
                provider if self.provider is not None else None,
                model if self.model is not None else None,
                feature if self.feature is not None else None,
            )
            circuit = self._new_circuit(key, provider, model, feature)
            if len(self._by_values) < 4 * MAX_CIRCUITS_PER_BREAKER:
                self._by_values[(provider, model, feature)] = circuit
        return circuit

    def _new_circuit(self, key: str, provider: str, model: str, feature: str | None) -> Circuit:
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is not None:
                return circuit
            labels = {
                name: value
                for name, wanted, value in (
                    ("provider", self.provider, provider),
                    ("model", self.model, model),
                    ("feature", self.feature, feature),
                )
                if wanted is not None and value is not None
            }
            if len(self._circuits) >= MAX_CIRCUITS_PER_BREAKER:  # unbounded values (models named by user input)
                key = self.scope + "|other"
                labels = {}  # one circuit for all the values past the cap: no single value to name
                circuit = self._circuits.get(key)
                if circuit is not None:
                    return circuit
            circuit = Circuit(self.scope, key, self.thresholds, self._on_transition, labels)
            self._circuits[key] = circuit
            return circuit

    def refusal(self, circuit: Circuit, provider: str, model: str, feature: str | None) -> CircuitOpen:
        reopens = dt.datetime.fromtimestamp(circuit.reopens_at, tz=dt.UTC) if circuit.reopens_at else None
        return CircuitOpen(circuit.key, circuit.state, reopens, provider, model, feature, circuit.last_failure_rate)

    def state(self) -> dict[str, Any]:
        return {circuit.key: circuit.snapshot() for circuit in self.circuits()}


class Admission:
    """A call that went through circuits: the outcome goes to each when the call ends.

    ``probes``: None when no circuit let it through as a probe (the usual case), else one flag per circuit."""

    __slots__ = ("circuits", "probes", "state")

    def __init__(self, circuits: Sequence[Circuit], probes: Sequence[bool] | None) -> None:
        self.circuits = circuits
        self.probes = probes
        self.state = CLOSED if probes is None else HALF_OPEN  # what the span says

    def record(self, result: str) -> None:
        probes = self.probes
        if probes is None:  # the usual case: closed circuits, each counts the outcome
            if result != IGNORED:  # a caller error, a cancel: nothing to count
                now = time.time()
                for circuit in self.circuits:
                    circuit.record(result, False, now)
            return
        now = time.time()
        for circuit, probe in zip(self.circuits, probes, strict=True):
            circuit.record(result, probe, now)

    def release(self) -> None:
        """The call was refused by another rule after all: free the probes it took."""
        if self.probes is not None:
            for circuit, probe in zip(self.circuits, self.probes, strict=True):
                if probe:
                    circuit.release_probe()


class Refused:
    """A call an open circuit refuses: which breaker, which circuit."""

    __slots__ = ("breaker", "circuit")

    def __init__(self, breaker: CircuitBreaker, circuit: Circuit) -> None:
        self.breaker = breaker
        self.circuit = circuit


def check_circuits(
    breakers: Sequence[CircuitBreaker], provider: str, model: str, feature: str | None
) -> Admission | Refused | None:
    """The circuits a call goes through (None: no breaker covers it), or the one that refuses it.

    Closed circuits (nearly always) cost a state read each; only an open or half-open one takes the
    slow path (its lock, the clock)."""
    if len(breakers) == 1:  # the common setup, without the lists
        circuit = breakers[0].circuit_for(provider, model, feature)
        if circuit is None:
            return None
        if circuit.state is CLOSED:
            return Admission((circuit,), None)
    circuits: list[Circuit] = []
    probes: list[bool] | None = None
    for breaker in breakers:
        circuit = breaker.circuit_for(provider, model, feature)
        if circuit is None:
            continue
        if circuit.state is not CLOSED:
            admitted = circuit.admit()
            if admitted is False:
                Admission(circuits, probes).release()
                return Refused(breaker, circuit)
            if admitted is True:
                probes = probes if probes is not None else [False] * len(circuits)
                circuits.append(circuit)
                probes.append(True)
                continue
        circuits.append(circuit)
        if probes is not None:
            probes.append(False)
    return Admission(circuits, probes) if circuits else None


def circuit_scope(provider: str | None, model: str | None, feature: str | None) -> str:
    """``provider=openai/model=gpt-4o``: the fields a breaker (or one of its circuits) pins."""
    parts = [f"{name}={value}" for name, value in (("provider", provider), ("model", model), ("feature", feature))]
    pinned = [part for part, value in zip(parts, (provider, model, feature), strict=True) if value is not None]
    return "/".join(pinned) or "all"


def breaker_from_args(
    provider: str | None,
    model: str | None,
    feature: str | None,
    failure_rate: float,
    min_calls: int,
    window_s: float,
    open_s: float,
    fallback: Fallback | None,
    half_open_probes: int,
) -> CircuitBreaker:
    """Validate ``circuit_breaker()``'s arguments (``ConfigurationError`` saying how to fix one)."""
    where = "llmwatch.circuit_breaker()"
    for name, value in (("provider", provider), ("model", model), ("feature", feature)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigurationError(f"{where}: {name} must be a non-empty string, '*' or None, got {value!r}")
    if isinstance(failure_rate, bool) or not isinstance(failure_rate, int | float) or not 0 < failure_rate <= 1:
        raise ConfigurationError(f"{where}: failure_rate must be a fraction in (0, 1], e.g. 0.5, got {failure_rate!r}")
    for name, count in (("min_calls", min_calls), ("half_open_probes", half_open_probes)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigurationError(f"{where}: {name} must be a whole number of calls >= 1, got {count!r}")
    for name, seconds in (("window_s", window_s), ("open_s", open_s)):
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ConfigurationError(f"{where}: {name} must be a number of seconds > 0, got {seconds!r}")
        if seconds <= 0:
            raise ConfigurationError(f"{where}: {name} must be a number of seconds > 0, got {seconds!r}")
    if fallback is not None and not callable(fallback):
        raise ConfigurationError(
            f"{where}: fallback must be a callable fn(exc) (sync or async) or None (raise CircuitOpen), "
            f"got {fallback!r}"
        )
    thresholds = Thresholds(float(failure_rate), min_calls, float(window_s), float(open_s), half_open_probes)
    return CircuitBreaker(provider, model, feature, thresholds, fallback)
