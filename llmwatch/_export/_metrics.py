"""OTel metric instruments for dashboards and symptom alerts.

The GenAI client metrics (v1.41 names, units and bucket advice) plus ``llmwatch.cost``. Metric
attributes reuse the span attribute names. The user is a metric dimension only on request
(``metrics_user_dimension=True``) and then capped: users are unbounded, and one attribute value per
user would explode a backend's cardinality. :class:`UserCap` admits the 100 most active users of the
previous export interval (the first 100 seen, in the first interval) and folds the rest into
``other``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from llmwatch import _forking
from llmwatch import _semconv as sc
from llmwatch._health import HEALTH, record_internal_error

OTHER_USERS = "other"
_DRAIN_AT = 1024  # queued calls that wake the background drainer
_MAX_PENDING = 100_000  # past this the drainer is not keeping up: drop (and count) rather than grow


class UserCap:
    """Caps the user dimension at ``limit`` distinct values per interval."""

    def __init__(self, limit: int = 100, interval_s: float = 60.0) -> None:
        self._limit = limit
        self._interval_s = interval_s
        self._rotate_at = time.monotonic() + interval_s
        self._counts: dict[str, int] = {}
        self._admitted: set[str] = set()
        self._first_interval = True  # until the first rotation: first come, first admitted

    def label(self, user: str) -> str:
        now = time.monotonic()
        if now >= self._rotate_at:
            self._rotate(now)
        self._counts[user] = self._counts.get(user, 0) + 1
        admitted = self._admitted
        if self._first_interval and user not in admitted and len(admitted) < self._limit:
            admitted.add(user)
        return user if user in admitted else OTHER_USERS

    def _rotate(self, now: float) -> None:
        ranked = sorted(self._counts.items(), key=lambda item: item[1], reverse=True)
        self._admitted = {user for user, _ in ranked[: self._limit]}
        self._first_interval = False
        self._counts = {}
        self._rotate_at = now + self._interval_s


_DEFAULT_NAMING: Final = sc.Naming()


class Metrics:
    """The instruments, created once per ``configure()`` from its MeterProvider."""

    def __init__(
        self,
        meter: Meter,
        *,
        user_dimension: bool,
        budget_state: Callable[[], Mapping[str, Mapping[str, Any]]],
        naming: sc.Naming = _DEFAULT_NAMING,
        circuit_state: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        rollout_state: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
    ) -> None:
        self.token_usage = (
            meter.create_histogram(
                sc.METRIC_TOKEN_USAGE,
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
            )
            if naming.v141
            else None
        )
        # The GenAI conventions repo's token metrics, under OTEL_SEMCONV_STABILITY_OPT_IN.
        self.inference_tokens = InferenceTokenMetrics(meter) if naming.latest else None
        self.duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.time_to_first_chunk = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time from the request to the first output chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.cost = meter.create_counter(
            sc.METRIC_COST, unit="USD", description="Cost of GenAI operations in US dollars."
        )
        self.refusals = meter.create_counter(
            sc.METRIC_REFUSALS,
            unit="{call}",
            description="Calls refused by llmwatch before any I/O (budget exceeded or kill switch).",
        )
        self.errors = meter.create_counter(
            sc.METRIC_ERRORS, unit="{error}", description="Failed GenAI operations, by error.type."
        )
        self.unpriced = meter.create_counter(
            sc.METRIC_UNPRICED,
            unit="{call}",
            description="Calls llmwatch could not price (no price for provider and model): not in llmwatch.cost.",
        )
        spent = _budget_gauge(budget_state, spent=True)

        def drain_then_observe_spent(options: CallbackOptions) -> Iterable[Observation]:
            # Observable callbacks run first in every collection: record what is queued, so the
            # collection that follows sees it.
            drain()
            return spent(options)

        meter.create_observable_gauge(
            sc.METRIC_BUDGET_SPENT,
            callbacks=[drain_then_observe_spent],
            unit="USD",
            description="Spent in the current window of each llmwatch budget scope.",
        )
        meter.create_observable_gauge(
            sc.METRIC_BUDGET_LIMIT,
            callbacks=[_budget_gauge(budget_state, spent=False)],
            unit="USD",
            description="The limit of each llmwatch budget scope.",
        )
        if rollout_state is not None:
            meter.create_observable_counter(
                sc.METRIC_ROLLOUT_ROLLBACKS,
                callbacks=[_rollout_rollbacks(rollout_state)],
                unit="{rollback}",
                description="Rollouts rolled back automatically, by llmwatch.rollout.name.",
            )
        if circuit_state is not None:
            meter.create_observable_gauge(
                sc.METRIC_CIRCUIT_STATE,
                callbacks=[_circuit_gauge(circuit_state)],
                unit="1",
                description="State of each llmwatch circuit breaker scope: 0 closed, 1 half-open, 2 open.",
            )
            meter.create_observable_counter(
                sc.METRIC_CIRCUIT_TRANSITIONS,
                callbacks=[_circuit_transitions(circuit_state)],
                unit="{transition}",
                description="Transitions of llmwatch circuit breakers, by the state entered.",
            )
        self.user_cap = UserCap() if user_dimension else None

    def record_refusal(self, attributes: dict[str, Any], reason: str) -> None:
        self.refusals.add(1, {**attributes, sc.LLMWATCH_REFUSAL_REASON: reason})

    def record_call(
        self,
        attributes: dict[str, Any],
        *,
        user: str | None,
        duration_s: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cost_usd: float | None,
        ttfc_s: float | None,
        unpriced: bool = False,
        details: TokenDetails | None = None,
    ) -> None:
        """Queue one call's measurements; they are recorded off the caller's thread (see ``drain``).

        Recording into OTel's instruments costs ~4 µs per measurement and a call makes four or five:
        queued, the caller pays one ``deque.append``. The queue is drained when a metric reader
        collects (our gauge callback runs first in every collection, so nothing queued is missed),
        and by a background thread whenever it grows past ``_DRAIN_AT``, so memory stays bounded.
        """
        if len(_PENDING) >= _MAX_PENDING:  # the drainer cannot keep up: lose measurements, count them
            HEALTH.metrics_dropped.add()
            return
        _PENDING.append(
            (self, attributes, user, duration_s, input_tokens, output_tokens, cost_usd, ttfc_s, unpriced, details)
        )
        if len(_PENDING) >= _DRAIN_AT and not _WAKE.is_set():
            _wake_drainer()

    def _record(
        self,
        attributes: dict[str, Any],
        user: str | None,
        duration_s: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cost_usd: float | None,
        ttfc_s: float | None,
        unpriced: bool,
        details: TokenDetails | None,
    ) -> None:
        if self.user_cap is not None and user is not None:
            attributes[sc.LLMWATCH_USER] = self.user_cap.label(user)
        if duration_s is not None:
            self.duration.record(duration_s, attributes)
        if self.token_usage is not None:
            if input_tokens is not None:
                self.token_usage.record(input_tokens, {**attributes, sc.GEN_AI_TOKEN_TYPE: "input"})
            if output_tokens is not None:
                self.token_usage.record(output_tokens, {**attributes, sc.GEN_AI_TOKEN_TYPE: "output"})
        if self.inference_tokens is not None:
            self.inference_tokens.record(attributes, input_tokens, output_tokens, details or TokenDetails())
        if ttfc_s is not None:
            self.time_to_first_chunk.record(ttfc_s, attributes)
        if cost_usd is not None:
            self.cost.add(cost_usd, attributes)
        elif unpriced:
            self.unpriced.add(1, attributes)
        if sc.ERROR_TYPE in attributes:
            self.errors.add(1, attributes)


class TokenDetails(NamedTuple):
    """The parts of a call's usage the newer token metrics split out (queued only when they are on).

    ``input_modalities``/``output_modalities``: the provider's own breakdown by modality, when it
    reports one (Gemini does); else the totals are recorded with modality ``unknown``."""

    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    input_modalities: tuple[tuple[str, int], ...] = ()
    output_modalities: tuple[tuple[str, int], ...] = ()


class InferenceTokenMetrics:
    """``gen_ai.client.inference.usage.*`` counters (by ``gen_ai.token.modality``) and
    ``gen_ai.client.inference.operation.*`` histograms, per the GenAI conventions repo.

    Recorded for every call, failed ones too: a call with no usage counts ``0`` tokens of modality
    ``unknown``, so a rate of tokens per call stays honest."""

    def __init__(self, meter: Meter) -> None:
        def counter(name: str, description: str) -> Any:
            return meter.create_counter(name, unit="{token}", description=description)

        def histogram(name: str, description: str) -> Any:
            buckets = list(sc.TOKEN_BUCKETS)
            return meter.create_histogram(
                name, unit="{token}", description=description, explicit_bucket_boundaries_advisory=buckets
            )

        self.input = counter(sc.METRIC_INFERENCE_INPUT_TOKENS, "Input tokens used, including cached tokens.")
        self.output = counter(sc.METRIC_INFERENCE_OUTPUT_TOKENS, "Output tokens used, including reasoning tokens.")
        self.cache_read = counter(sc.METRIC_INFERENCE_CACHE_READ_TOKENS, "Input tokens served from a provider cache.")
        self.cache_write = counter(sc.METRIC_INFERENCE_CACHE_WRITE_TOKENS, "Input tokens written to a provider cache.")
        self.reasoning = counter(sc.METRIC_INFERENCE_REASONING_TOKENS, "Output tokens used for reasoning.")
        self.per_call_input = histogram(sc.METRIC_INFERENCE_OPERATION_INPUT_TOKENS, "Input tokens per operation.")
        self.per_call_output = histogram(sc.METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS, "Output tokens per operation.")

    def record(
        self, attributes: dict[str, Any], input_tokens: int | None, output_tokens: int | None, details: TokenDetails
    ) -> None:
        unknown = {**attributes, sc.GEN_AI_TOKEN_MODALITY: sc.TOKEN_MODALITY_UNKNOWN}
        _by_modality(self.input, attributes, unknown, input_tokens or 0, details.input_modalities)
        _by_modality(self.output, attributes, unknown, output_tokens or 0, details.output_modalities)
        self.cache_read.add(details.cache_read, unknown)
        self.cache_write.add(details.cache_write, unknown)
        self.reasoning.add(details.reasoning, unknown)
        self.per_call_input.record(input_tokens or 0, attributes)
        self.per_call_output.record(output_tokens or 0, attributes)


def _by_modality(
    counter: Any,
    attributes: dict[str, Any],
    unknown: dict[str, Any],
    total: int,
    modalities: tuple[tuple[str, int], ...],
) -> None:
    if not modalities:
        counter.add(total, unknown)
        return
    for modality, count in modalities:
        counter.add(count, {**attributes, sc.GEN_AI_TOKEN_MODALITY: modality})


# One queue for every Metrics (every configure(), every provider): entries carry the Metrics whose
# instruments they go to, and any collection drains all of it. OTel keeps the observable callbacks of
# the first registration of a name on a meter (a later runtime's own are ignored), so draining must
# not depend on whose callback runs.
_PENDING: collections.deque[tuple[Any, ...]] = collections.deque()
_DRAIN_LOCK = threading.Lock()
_WAKE = threading.Event()
_drainer: threading.Thread | None = None


def drain() -> None:
    """Record everything queued (called at collection time, and by the background drainer)."""
    with _DRAIN_LOCK:
        while _PENDING:
            try:
                metrics, *measurements = _PENDING.popleft()
            except IndexError:
                return
            try:
                metrics._record(*measurements)
            except Exception as exc:
                record_internal_error("metrics", exc)


def forget_pending() -> None:
    """Drop what is queued, unrecorded (tests: one test's calls must not reach the next one's meters
    through OTel's global proxy instruments)."""
    _PENDING.clear()


def _wake_drainer() -> None:
    global _drainer
    if _drainer is None or not _drainer.is_alive():  # first use, or a fork left us without it
        with _DRAIN_LOCK:
            if _drainer is None or not _drainer.is_alive():
                thread = threading.Thread(target=_drain_forever, name="llmwatch-metrics", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down: no new threads
                    return
                _drainer = thread
    _WAKE.set()


def _drain_forever() -> None:
    while True:
        _WAKE.wait()
        _WAKE.clear()
        drain()


def _after_fork_in_child() -> None:
    # The parent's drainer does not exist here, and may have held the lock when the fork happened.
    global _DRAIN_LOCK, _WAKE, _drainer
    _DRAIN_LOCK = threading.Lock()
    _WAKE = threading.Event()
    _drainer = None


_forking.after_fork_in_child(_after_fork_in_child)


def _budget_gauge(
    budget_state: Callable[[], Mapping[str, Mapping[str, Any]]], *, spent: bool
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """A gauge callback over every budget scope (read at export time, off the hot path).

    ``budget_state`` is ``stats()["budgets"]``'s source, handed in so metrics need not know budgets."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for key, state in budget_state().items():
            scope, _, window = key.rpartition("/")
            value = state["spent_usd"] if spent else state["limit_usd"]
            observations.append(
                Observation(value, {sc.LLMWATCH_BUDGET_SCOPE: scope, sc.LLMWATCH_BUDGET_WINDOW: window})
            )
        return observations

    return observe


_CIRCUIT_LABELS: Final = {
    "provider": sc.GEN_AI_PROVIDER_NAME,
    "model": sc.GEN_AI_REQUEST_MODEL,
    "feature": sc.LLMWATCH_FEATURE,
}


def _circuit_attributes(key: str, state: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {sc.LLMWATCH_CIRCUIT_SCOPE: key}
    for label, name in _CIRCUIT_LABELS.items():
        if label in state:
            attributes[name] = state[label]
    return attributes


def _circuit_gauge(
    circuit_state: Callable[[], Mapping[str, Mapping[str, Any]]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """``llmwatch.circuit.state`` for every circuit (read at export time, off the hot path)."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(sc.CIRCUIT_GAUGE_VALUES.get(state["state"], 0), _circuit_attributes(key, state))
            for key, state in circuit_state().items()
        ]

    return observe


def _circuit_transitions(
    circuit_state: Callable[[], Mapping[str, Mapping[str, Any]]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """``llmwatch.circuit.transitions``: each circuit's running count of transitions into each state."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for key, state in circuit_state().items():
            for entered, count in state.get("transitions", {}).items():
                attributes = {**_circuit_attributes(key, state), sc.LLMWATCH_CIRCUIT_TO: entered}
                observations.append(Observation(count, attributes))
        return observations

    return observe


def _rollout_rollbacks(
    rollout_state: Callable[[], Mapping[str, Mapping[str, Any]]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """``llmwatch.rollout.rollbacks``: 1 for each rollout rolled back, 0 for one still running."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(1 if state["state"] == "rolled_back" else 0, {sc.LLMWATCH_ROLLOUT_NAME: name})
            for name, state in rollout_state().items()
        ]

    return observe
