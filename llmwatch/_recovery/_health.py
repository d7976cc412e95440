"""``llmwatch.health()``: is llmwatch, and the LLM feature behind it, working right now?

Each check answers ``ok``, ``degraded`` (working, with something a person should look at) or
``failing`` (calls fail or telemetry is being lost), with a reason in words; the overall status is the
worst of them. Reads only memory (the counters behind ``stats()``, the rules, the fleet's last sync),
never the network: a probe every few seconds costs microseconds and cannot hang.

The checks (thresholds below; the table with what each status means is in docs/health.md): exporter,
store, circuits, budgets, prices, encodings, providers.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, Final

from llmwatch._core import _runtime
from llmwatch._core._provider_stats import PROVIDERS, WINDOW_S
from llmwatch._health import HEALTH
from llmwatch._policy import _pricing, _shared, _tokens
from llmwatch._policy._budget import RULES

OK: Final = "ok"
DEGRADED: Final = "degraded"
FAILING: Final = "failing"
_RANK: Final = {OK: 0, DEGRADED: 1, FAILING: 2}

RECENT_S: Final = 300.0  # a failure this recent still degrades the exporter
STALE_SYNC_S: Final = 10.0  # a store not synced for this long is degraded even if no error was seen
BUDGET_WARN: Final = 0.9
PROVIDER_ERROR_RATE: Final = 0.25
PROVIDER_MIN_CALLS: Final = 5

Check = dict[str, Any]


def health() -> dict[str, Any]:
    """``{"status": "ok"|"degraded"|"failing", "checks": {name: {"status", "reason", ...}}, ...}``."""
    now = time.time()
    checks: dict[str, Check] = {}
    for name, check in CHECKS:
        try:
            checks[name] = check(now)
        except Exception as exc:  # a broken check says so; the others still answer
            checks[name] = _check(DEGRADED, f"the check itself failed: {type(exc).__name__}: {exc}")
    status = max((entry["status"] for entry in checks.values()), key=_RANK.__getitem__, default=OK)
    return {
        "status": status,
        "service": _runtime.CURRENT.settings.service_name,
        "time": _iso(now),
        "checks": checks,
    }


def _check(status: str, reason: str, **details: Any) -> Check:
    return {"status": status, "reason": reason, **details}


def _iso(epoch: float | None) -> str | None:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat() if epoch is not None else None


def _age(epoch: float | None, now: float) -> float | None:
    return round(now - epoch, 3) if epoch is not None else None


# --- the checks ----------------------------------------------------------------------------------------
def exporter(now: float) -> Check:
    ok_at, failed_at = HEALTH.last_export_ok_at, HEALTH.last_export_failed_at
    metric_failed_at = HEALTH.last_metric_export_failed_at
    details = {
        "last_export_ok_at": _iso(ok_at),
        "last_export_age_s": _age(ok_at, now),
        "last_export_error": HEALTH.last_export_error,
        "exports_failed": HEALTH.exports_failed.value,
        "spans_dropped": HEALTH.spans_dropped.value,
    }
    if failed_at is not None and (ok_at is None or failed_at > ok_at):
        since = "" if ok_at is None else f" (last success {now - ok_at:.0f} s ago)"
        return _check(FAILING, f"span export is failing{since}: {HEALTH.last_export_error}", **details)
    recent = [at for at in (failed_at, metric_failed_at) if at is not None and now - at < RECENT_S]
    if recent:
        return _check(
            DEGRADED, f"an export failed {now - max(recent):.0f} s ago: {HEALTH.last_export_error}", **details
        )
    if ok_at is None:
        return _check(OK, "no span exported yet", **details)
    return _check(OK, f"last span export succeeded {now - ok_at:.0f} s ago", **details)


def store(now: float) -> Check:
    state = _shared.state()
    if state is None:
        return _check(OK, "no store configured: budgets, switches and circuits are per process")
    details = {key: state[key] for key in ("url", "state", "store_failure", "last_sync", "errors", "last_error")}
    if state["state"] == "down":
        if state["store_failure"] == "closed":
            return _check(
                FAILING,
                "the store is unreachable and store_failure='closed' refuses shared-budget calls: "
                f"{state['last_error']}",
                **details,
            )
        return _check(
            DEGRADED, f"the store is unreachable; enforcing from the last known state: {state['last_error']}", **details
        )
    fleet_synced = _shared.last_sync()
    if fleet_synced is None or now - fleet_synced > STALE_SYNC_S:
        return _check(
            DEGRADED,
            "connecting to the store" if fleet_synced is None else f"no store sync for {now - fleet_synced:.0f} s",
            **details,
        )
    return _check(OK, f"connected; last sync {now - fleet_synced:.1f} s ago", **details)


def circuits(now: float) -> Check:
    found: dict[str, Any] = {}
    failing: list[str] = []
    degraded: list[str] = []
    for breaker in RULES.breakers:
        for key, state in breaker.state().items():
            found[key] = state
            if state["state"] == "open":
                with_fallback = breaker.fallback is not None
                (degraded if with_fallback else failing).append(
                    f"{key} open until {state['reopens_at']}" + (" (a fallback answers)" if with_fallback else "")
                )
            elif state["state"] == "half_open":
                degraded.append(f"{key} half-open (probing)")
    details = {"circuits": found}
    if failing:
        return _check(FAILING, "; ".join(failing + degraded), **details)
    if degraded:
        return _check(DEGRADED, "; ".join(degraded), **details)
    return _check(OK, f"{len(found)} circuit(s) closed" if found else "no circuit breaker set", **details)


def budgets(now: float) -> Check:
    failing: list[str] = []
    degraded: list[str] = []
    states = RULES.state()
    for key, state in states.items():
        limit, spent = state["limit_usd"], state["spent_usd"]
        used = spent / limit if limit else 1.0
        described = f"{key} at {used:.0%} (${spent:.4f} of ${limit:.4f})"
        refusing = used >= 1.0 and state["on_exceed"] != "warn"
        if refusing and not state.get("per_value"):
            failing.append(described + ", refusing calls")
        elif used >= BUDGET_WARN:
            degraded.append(described)
    details = {"budgets": states}
    if failing:
        return _check(FAILING, "; ".join(failing + degraded), **details)
    if degraded:
        return _check(DEGRADED, "; ".join(degraded), **details)
    return _check(
        OK, f"{len(states)} budget scope(s) under {BUDGET_WARN:.0%}" if states else "no budget set", **details
    )


def prices(now: float) -> Check:
    unpriced = _pricing.UNPRICED.pairs()
    details = {"loaded": _pricing.genai_prices_loaded(), "unpriced": unpriced}
    error = _pricing.genai_prices_error()
    if error is not None:
        return _check(DEGRADED, f"genai-prices could not be imported, calls are unpriced: {error}", **details)
    if not details["loaded"]:
        loading = _pricing.genai_prices_loading()
        return _check(OK, "the price table is loading" if loading else "prices load with the first call", **details)
    if unpriced:
        return _check(OK, f"{len(unpriced)} model(s) called without a price (see llmwatch.calls.unpriced)", **details)
    return _check(OK, "prices loaded", **details)


def encodings(now: float) -> Check:
    errors = _tokens.encoding_errors()
    details = {"ready": _tokens.encodings_ready(), "errors": errors}
    if errors:
        names = ", ".join(sorted(errors))
        return _check(DEGRADED, f"encoding(s) {names} failed to load: token counts fall back to estimates", **details)
    return _check(OK, "tokenizer encodings loaded" if details["ready"] else "no encoding needed yet", **details)


def providers(now: float) -> Check:
    seen = PROVIDERS.snapshot()
    for entry in seen.values():
        for key in ("last_success_at", "last_failure_at"):
            entry[key] = _iso(entry[key])
    troubled = [
        f"{name}: {entry['failures']} of {entry['calls']} calls failed in the last {WINDOW_S / 60:.0f} min"
        for name, entry in seen.items()
        if entry["calls"] >= PROVIDER_MIN_CALLS and entry["error_rate"] >= PROVIDER_ERROR_RATE
    ]
    if troubled:
        return _check(DEGRADED, "; ".join(troubled), providers=seen)
    return _check(OK, f"{len(seen)} provider(s) answering" if seen else "no call made yet", providers=seen)


CHECKS: Final[tuple[tuple[str, Callable[[float], Check]], ...]] = (
    ("exporter", exporter),
    ("store", store),
    ("circuits", circuits),
    ("budgets", budgets),
    ("prices", prices),
    ("encodings", encodings),
    ("providers", providers),
)
