"""The lifecycle API: ``configure``, ``instrument``, ``uninstrument``, ``force_flush``, ``shutdown``, ``stats``,
and the run-side controls ``budget`` and ``kill_switch``."""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from llmwatch import _config, _health, _instrument
from llmwatch._core import _runtime
from llmwatch._errors import BudgetExceeded, CircuitOpen, ConfigurationError
from llmwatch._instrument import _openai_batch_results
from llmwatch._policy import _breakers, _budget, _pricing, _rollout_config, _rollouts, _run_budget, _shared, _tokens
from llmwatch._recovery import _health as _recovery_health

if TYPE_CHECKING:
    from llmwatch._recovery._health_app import HealthApp

ClientT = TypeVar("ClientT")
_lock = threading.Lock()


def configure(
    service_name: str | None = None,
    exporter: Any = None,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    protocol: str | None = None,
    file_path: str | None = None,
    capture_content: bool | str | None = None,
    content_destination: str | None = None,
    redact: Callable[[str], str] | None = None,
    content_hook: Callable[[Any], Any] | None = None,
    prices: Any = None,
    providers: Mapping[str, str] | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    sample_rate: float | None = None,
    metrics_user_dimension: bool | None = None,
    instrument: bool | None = None,
    max_content_chars: int | None = None,
    max_span_content_chars: int | None = None,
    request_stream_usage: bool | None = None,
    backend_compat: Iterable[str] | str | None = None,
    store: str | None = None,
    lease_usd: float | None = None,
    store_failure: str | None = None,
) -> None:
    """Set llmwatch up (again). Validates everything first; a wrong value raises ``ConfigurationError``.

    Arguments left as ``None`` come from the environment (``OTEL_*``, ``LLMWATCH_*``), else defaults:
    ``exporter="otlp"``, ``capture_content=False`` (also OTel's ``"SPAN_ONLY"``, ``"EVENT_ONLY"``,
    ``"SPAN_AND_EVENT"``, ``"NO_CONTENT"``), ``content_destination`` (``span``, ``event`` or
    ``span_and_event``; default: what ``capture_content`` says, else ``span``), ``sample_rate=1.0``,
    ``instrument=True``, ``max_content_chars=32768`` (per captured text),
    ``max_span_content_chars=131072`` (all captured content of one span),
    ``request_stream_usage=True`` (ask OpenAI chat streams for their usage chunk).
    ``providers={base_url or host: name}`` names the provider behind an endpoint the host does not
    tell (``{"http://gpu-1:8000/v1": "vllm"}``). ``backend_compat=["openinference"]`` adds the
    OpenInference attributes Phoenix and other OpenInference readers show (docs/backends.md).
    ``store="redis://host:6379/0"`` shares budgets and kill switches with every process of the same
    ``service_name`` (extra ``llmwatch[redis]``; ``lease_usd``, default 1 % of each limit, and
    ``store_failure="open"|"closed"``: docs/fleet.md). See docs/configuration.md for the full table.

    Calling it again flushes and shuts down what the previous call created (never a provider you
    passed or installed), then starts afresh. Providers: with ``tracer_provider=``/``meter_provider=``
    those are used and never made global; else a real global provider is used; else llmwatch creates
    its own and installs them as the globals.
    """
    arguments = {
        "service_name": service_name,
        "exporter": exporter,
        "endpoint": endpoint,
        "headers": headers,
        "protocol": protocol,
        "file_path": file_path,
        "capture_content": capture_content,
        "content_destination": content_destination,
        "redact": redact,
        "content_hook": content_hook,
        "prices": prices,
        "providers": providers,
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
        "logger_provider": logger_provider,
        "sample_rate": sample_rate,
        "metrics_user_dimension": metrics_user_dimension,
        "instrument": instrument,
        "max_content_chars": max_content_chars,
        "max_span_content_chars": max_span_content_chars,
        "request_stream_usage": request_stream_usage,
        "backend_compat": backend_compat,
        "store": store,
        "lease_usd": lease_usd,
        "store_failure": store_failure,
    }
    settings = _config.resolve(arguments)
    with _lock:
        fleet = _shared.prepare(settings)  # may raise ConfigurationError (no redis-py): nothing swapped yet
        runtime = _runtime.build(settings)  # may raise ConfigurationError: nothing swapped yet
        _shared.stop(timeout_s=2.0)
        previous = _runtime.swap(runtime)
        _runtime.shutdown_owned(previous, timeout_s=5.0)
        _shared.start(fleet)
    _budget.RULES.reload_env()
    _register_exit_shutdown()
    _pricing.start_background_import()
    _tokens.start_loading()
    if settings.instrument:
        _instrument.instrument_all()


EXIT_SHUTDOWN_TIMEOUT_S = 3.0  # at interpreter exit: export what we can, never hold the exit longer
_exit_registered = False


def _register_exit_shutdown() -> None:
    global _exit_registered
    if not _exit_registered:
        atexit.register(_shutdown_at_exit)
        _exit_registered = True


def _shutdown_at_exit() -> None:
    with contextlib.suppress(Exception):  # at exit, nothing is worth a traceback in the host's output
        shutdown(timeout_s=EXIT_SHUTDOWN_TIMEOUT_S)


def instrument(client: ClientT, *, provider: str | None = None) -> ClientT:
    """Instrument one client instance (``openai.OpenAI``/``AsyncOpenAI``, ``anthropic.Anthropic``/
    ``AsyncAnthropic``, ``google.genai.Client``, a boto3 ``bedrock-runtime`` client, ...); returns
    the same object, usable exactly as before.

    ``provider`` names who the client talks to (``gen_ai.provider.name``, and the prices used), over
    what its base URL says: ``instrument(OpenAI(base_url="http://localhost:11434/v1"), provider="ollama")``.
    """
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise ConfigurationError(f"instrument(): provider must be a non-empty string, got {provider!r}.")
    return _instrument.instrument_client(client, provider.strip() if provider else None)  # type: ignore[no-any-return]


def uninstrument() -> None:
    """Undo global instrumentation (clients given to ``instrument()`` stay instrumented)."""
    _instrument.uninstrument()


def force_flush(timeout_s: float = 30.0) -> bool:
    """Export everything finished so far; returns within ``timeout_s``. True when all was flushed.

    Batch results still being read (``files.content`` of a batch's output) are recorded first."""
    deadline = time.monotonic() + timeout_s
    recorded = _openai_batch_results.wait_idle(timeout_s / 2)
    return _runtime.flush_owned(_runtime.CURRENT, max(deadline - time.monotonic(), 0.0)) and recorded


def shutdown(timeout_s: float = 30.0) -> None:
    """Flush and stop what llmwatch created; returns within ``timeout_s``. ``configure()`` works after."""
    _openai_batch_results.wait_idle(timeout_s / 2)  # batch results being read go out with the rest
    with _lock:
        _shared.stop(min(timeout_s / 4, 2.0))  # unused leases go back to the store
        previous = _runtime.swap(_runtime.default_runtime())
        _runtime.shutdown_owned(previous, timeout_s)
        _runtime.release_globals(previous)
        _runtime.swap(_runtime.default_runtime())  # again: now over OTel's proxies, not our shut providers
    _instrument.released_sdks_follow_the_global_provider()


def stats() -> dict[str, Any]:
    """In-process health: spans, exports, internal errors, budgets, encodings and prices. Never raises."""
    try:
        result = _health.HEALTH.counters()
        result["encodings_ready"] = _tokens.encodings_ready()
        result["prices"] = _prices_stats()
        result["budgets"] = _budget_stats()
        result["kill_switches"] = _budget.RULES.switches.names()
        result["circuits"] = _budget.RULES.circuits_state()
        result["rollouts"] = _rollouts.ROLLOUTS.state()
        store = _shared.state()
        if store is not None:
            result["store"] = store
        result["batch_results"] = _openai_batch_results.STATS.snapshot()
        return result
    except Exception as exc:  # stats() is what you call when things look wrong: it must not fail too
        return {"error": f"{type(exc).__name__}: {exc}"}


def health() -> dict[str, Any]:
    """Whether llmwatch and the LLM calls it watches work right now, for a health endpoint or a probe.

    ``{"status": "ok"|"degraded"|"failing", "service": ..., "time": ..., "checks": {name: {"status",
    "reason", ...}}}``; the status is the worst check's. Checks: ``exporter`` (the last export's result
    and age), ``store``, ``circuits`` (open ones), ``budgets`` (scopes at 90 % or more), ``prices``,
    ``encodings`` and ``providers`` (each one's last success, error rate and latency over 5 minutes).
    Reads memory only: cheap enough for a probe every second. Never raises. See docs/health.md.
    """
    try:
        return _recovery_health.health()
    except Exception as exc:
        return {
            "status": "failing",
            "checks": {"health": {"status": "failing", "reason": f"{type(exc).__name__}: {exc}"}},
        }


def health_app(path: str = "/healthz") -> HealthApp:
    """``health()`` as JSON at ``path``: one object that is both a WSGI and an ASGI app, no framework
    needed. 200 when ok or degraded, 503 when failing; ``?strict=1`` makes degraded 503 too.
    ``app.mount("/healthz", llmwatch.health_app())`` in FastAPI or Starlette; docs/health.md for
    Flask, Django and Kubernetes probes."""
    from llmwatch._recovery._health_app import HealthApp  # asyncio: ~30 ms no `import llmwatch` should pay

    return HealthApp(health, path)


def _prices_stats() -> dict[str, Any]:
    runtime = _runtime.CURRENT
    version = _pricing.genai_prices_version()
    return {
        "source": "genai-prices" + (" + overrides" if runtime.settings.prices else ""),
        "version": version,
        **_pricing.genai_prices_freshness(_dt.datetime.now(tz=_dt.UTC).date().isoformat()),
        "loaded": _pricing.genai_prices_loaded(),
        "overrides": sorted(runtime.settings.prices or {}),
        "unpriced": _pricing.UNPRICED.pairs(),
    }


def _budget_stats() -> dict[str, Any]:
    return _budget.RULES.state()


def budget(
    limit_usd: float,
    *,
    per: str = "day",
    user: str | None = None,
    feature: str | None = None,
    model: str | None = None,
    on_exceed: str | Callable[[BudgetExceeded], Any] = "raise",
) -> _budget.Budget:
    """Set a cost ceiling of ``limit_usd`` US dollars per ``per``: "hour", "day" or "month" (UTC), or
    "run" (each outermost ``@observe`` span: an agent run; calls outside any run are not covered).

    Scope: ``user``, ``feature`` and ``model`` narrow it (``None`` = any; ``"*"`` = each value on its
    own, e.g. ``user="*"`` caps every user separately); with none given it is global. Setting the
    same scope and window again updates that budget's limit and ``on_exceed``, keeps what was spent,
    and returns the same handle (so any handle's ``.remove()`` lifts it). Checked before each
    call: once the scope has spent its limit, ``on_exceed`` decides: ``"raise"`` raises
    ``BudgetExceeded`` before anything is sent; ``"warn"`` logs once per window and lets calls go
    ahead (spans marked ``llmwatch.budget.exceeded``); a callable ``fn(exc)`` may return a fallback
    answer that the caller receives instead of calling the provider, return ``None`` to go ahead, or
    raise. Returns the budget; ``.remove()`` lifts it. See docs/budgets.md.
    """
    return _budget.RULES.set_budget(_run_budget.budget_from_args(limit_usd, per, user, feature, model, on_exceed))


def circuit_breaker(
    provider: str | None = None,
    model: str | None = None,
    feature: str | None = None,
    failure_rate: float = 0.5,
    min_calls: int = 20,
    window_s: float = 60,
    open_s: float = 30,
    fallback: Callable[[CircuitOpen], Any] | None = None,
    *,
    half_open_probes: int = 1,
) -> _breakers.CircuitBreaker:
    """Stop sending calls to a provider, model or feature that keeps failing, and answer them another way.

    Scope: ``provider`` (``gen_ai.provider.name``: ``"openai"``, ``"anthropic"``, ``"aws.bedrock"``...),
    ``model`` (the request model) and ``feature`` narrow it (``None`` = any; ``"*"`` = a circuit per
    value, e.g. ``model="*"``). Provider failures count (5xx, 429, timeouts, connection errors, cut
    streams); caller errors (400, 401, 404, 422...) do not. Once the last ``window_s`` seconds hold at
    least ``min_calls`` calls of which ``failure_rate`` or more failed, the circuit opens: calls are
    refused before any I/O with ``CircuitOpen`` or, with ``fallback``, answered by ``fallback(exc)``
    (sync or async; ``exc.request`` holds the call's keyword arguments: ``lambda exc:
    client.chat.completions.create(**{**exc.request, "model": "gpt-4o-mini"})``; returning None lets the
    call go ahead after all). After ``open_s`` seconds it is half-open: one call at a time goes through
    as a probe; ``half_open_probes`` successes in a row close it, a failure opens it again. With
    ``configure(store=...)`` the circuits are shared by the fleet. Setting the same scope again updates
    it and returns the same handle; ``.remove()`` lifts it. See docs/recovery.md.
    """
    breaker = _breakers.breaker_from_args(
        provider, model, feature, failure_rate, min_calls, window_s, open_s, fallback, half_open_probes
    )
    return _budget.RULES.set_breaker(breaker)


def rollout(
    name: str,
    *,
    champion: Mapping[str, Any] | None = None,
    challenger: Mapping[str, Any] | None = None,
    share: float = 0.05,
    mode: str = "canary",
    feature: str | None = None,
    guard: Mapping[str, float] | None = None,
    min_calls: int = 200,
    alpha: float = 0.05,
    on_rollback: Callable[[dict[str, Any]], Any] | None = None,
    auto_promote: bool = False,
) -> _rollouts.Rollout:
    """Send a sticky ``share`` of ``feature``'s users (every call's, with ``feature=None``) to the
    ``challenger``'s request overrides (``{"model": "gpt-4o-mini"}``, any keyword arguments of the
    call; none: a prompt-only rollout, the arm told by ``rollout_arm()``), the others to the
    ``champion``'s (none: the call as written), and judge the arms live.

    A user's arm is a stable hash of ``name`` and the user (``llmwatch.attributes(user=...)``); calls
    without a user draw at random (or get what ``rollout_arm(name)`` drew in their context). Spans and
    metrics carry ``llmwatch.rollout.name`` and ``.arm``. ``guard`` bounds how much worse the challenger
    may be (default ``{"error_rate": 0.02, "p95_latency_ratio": 1.5, "cost_per_call_ratio": 1.2}``, and
    ``"score:<name>": -0.1`` for a score); once both arms have ``min_calls``, a sequential test valid
    under continuous monitoring (false alarms at most ``alpha``) rolls a worse challenger back
    automatically: share 0, the ``llmwatch.rollout.rollback`` span event with the evidence, the
    ``llmwatch.rollout.rollbacks`` counter, a log line and ``on_rollback(report)``. ``auto_promote``:
    a challenger not worse on any guard becomes every call's. Returns the rollout: ``set_share()``,
    ``stop()``, ``report()``. See docs/rollouts.md.
    """
    made = _rollout_config.rollout_from_args(
        name, champion, challenger or {}, share, mode, feature, guard, min_calls, alpha, on_rollback, auto_promote
    )
    return _rollouts.ROLLOUTS.add(made)


def rollout_arm(name: str) -> str:
    """``"champion"`` or ``"challenger"``: the arm the current user's (or context's) calls of rollout
    ``name`` get, for code that picks a prompt version itself. ``"champion"`` for an unknown rollout."""
    return _rollouts.pin_arm(name)


def kill_switch(feature: str | None = None, model: str | None = None, enabled: bool = True) -> None:
    """Refuse (``enabled=True``) or allow again (``enabled=False``) every call of a feature or model.

    Refused calls raise ``FeatureDisabled`` before any network I/O; the refusal is a span event and
    the ``llmwatch.calls.refused`` metric. A trailing ``*`` matches a prefix (``model="gpt-4*"``).
    ``LLMWATCH_DISABLED_FEATURES`` / ``LLMWATCH_DISABLED_MODELS`` (comma-separated) are re-read by
    every call of this function (``kill_switch()`` alone only re-reads them) and by ``configure()``.
    """
    for name, value in (("feature", feature), ("model", model)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"llmwatch.kill_switch(): {name} must be a non-empty string, got {value!r}")
    if not isinstance(enabled, bool):  # "no" or 0 must not engage a switch by being truthy
        raise ConfigurationError(
            f"llmwatch.kill_switch(): enabled must be True (refuse calls) or False (allow them again), got {enabled!r}"
        )
    _shared.switch(feature, model, enabled)
