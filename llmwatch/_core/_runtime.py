"""The runtime the hot path reads: tracer, instruments, prices, content policy, pipeline.

``configure()`` builds a new :class:`Runtime` from validated settings and swaps ``CURRENT`` whole; a
wrapper reads ``CURRENT`` once per call, so a call in flight during reconfiguration finishes on the
runtime it started with. Before any ``configure()``, the default runtime uses the global OTel
providers (whatever the application installed, or OTel's no-op), captures no content and prices with
genai-prices.

Provider ownership (DESIGN.md "Providers"): providers passed in are used and never made global;
a real global provider is used as is; otherwise llmwatch creates its own and installs them as the
globals. Only what llmwatch created is flushed and shut down on reconfiguration or ``shutdown()``.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider

from llmwatch import _semconv
from llmwatch._config import Settings
from llmwatch._core import _pipeline, _usage_cost
from llmwatch._core._completions import remember_completion
from llmwatch._export._metrics import Metrics
from llmwatch._policy._budget import RULES
from llmwatch._policy._content import ContentPolicy
from llmwatch._policy._pricing import PriceBook
from llmwatch._policy._rollouts import ROLLOUTS

logger = logging.getLogger("llmwatch")

INSTRUMENTATION_NAME = "llmwatch"


# Kept equal to pyproject.toml's version by tests/test_public_api.py. A constant, not
# importlib.metadata.version(): importing importlib.metadata alone costs ~10 ms of `import llmwatch`.
VERSION = "0.1.0"


class Runtime:
    """Everything a call needs, fixed at ``configure()``."""

    def __init__(
        self,
        settings: Settings,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider | None,
        owned: list[Any] | None = None,
        *,
        configured: bool = False,
        logger_provider: Any = None,
    ) -> None:
        self.settings = settings
        self.configured = configured  # built by configure(), not the default before it
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer: Tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, VERSION)
        self.naming = _semconv.naming()  # OTEL_SEMCONV_STABILITY_OPT_IN: which names to emit
        self.metrics = (
            Metrics(
                meter_provider.get_meter(INSTRUMENTATION_NAME, VERSION),
                user_dimension=settings.metrics_user_dimension,
                budget_state=RULES.state,
                naming=self.naming,
                circuit_state=RULES.circuits_state,
                rollout_state=ROLLOUTS.state,
            )
            if meter_provider is not None
            else None
        )
        self.content = (
            ContentPolicy(
                settings.capture_content,
                settings.redact,
                settings.max_content_chars,
                settings.max_span_content_chars,
            )
            if settings.capture_content
            else None
        )
        self.content_destination = settings.content_destination or _semconv.CONTENT_SPAN
        self.openinference = _semconv.BACKEND_OPENINFERENCE in settings.backend_compat
        # The Logs API's provider for llmwatch's events (None: no Logs API at all). Content events use it
        # only when content goes to events; score events whenever there is one.
        self.logger_provider = logger_provider
        self.event_logger = (
            logger_provider.get_logger(INSTRUMENTATION_NAME, VERSION) if logger_provider is not None else None
        )
        self.content_logger = self.event_logger if wants_events(settings) else None
        self.content_hook = _content_hook(settings) if self.content is not None else None
        self.prices = PriceBook(settings.prices)
        self.emit_deprecated_system = self.naming.deprecated_system
        self.owned = owned or []
        if self.content_hook is not None:  # flushed and shut down with the rest of what is ours
            self.owned.append(self.content_hook)
        self.created_at = time.time()
        self.pipeline = _pipeline.Pipeline(self._steps(), self.metrics, after_end=(remember_completion,))

    def _steps(self) -> tuple[_pipeline.Step, ...]:
        steps: list[_pipeline.Step] = [
            _pipeline.response_step,
            _usage_cost.UsageStep(self.naming),
            _usage_cost.CostStep(self.prices, cost_attributes=self.naming.latest),
            _usage_cost.rollup_step,
            _usage_cost.budget_step,
            _pipeline.stream_step,
            _pipeline.fingerprint_step,
        ]
        if self.content is not None:  # decided here, so the capture-off path pays nothing for it
            steps.append(
                _pipeline.ContentStep(self.content, self.content_destination, self.content_logger, self.content_hook)
            )
        if self.openinference:  # after the content step: it reads the content on the span
            from llmwatch._core._openinference import openinference_step

            steps.append(openinference_step)
        return tuple(steps)


def _content_hook(settings: Settings) -> Any:
    if settings.content_hook is None:
        return None
    from llmwatch._core._content_hook import ContentHook

    return ContentHook(settings.content_hook)


def wants_events(settings: Settings) -> bool:
    """Content is captured and goes (also) to the ``gen_ai.client.inference.operation.details`` event."""
    return bool(settings.capture_content) and settings.content_destination in (
        _semconv.CONTENT_EVENT,
        _semconv.CONTENT_SPAN_AND_EVENT,
    )


def global_event_logger() -> Any:
    """Before ``configure()``: a logger of the real global LoggerProvider, if the app set one."""
    provider = _existing_logger_provider(Settings())
    return provider.get_logger(INSTRUMENTATION_NAME, VERSION) if provider is not None else None


def default_runtime() -> Runtime:
    """Before ``configure()``: the global providers (OTel's proxies resolve to whatever is set later)."""
    return Runtime(Settings(), trace.get_tracer_provider(), otel_metrics.get_meter_provider())


CURRENT: Runtime = default_runtime()


def swap(runtime: Runtime) -> Runtime:
    """Install a new runtime; returns the previous one (the caller shuts down what it owned)."""
    global CURRENT
    previous, CURRENT = CURRENT, runtime
    return previous


def build(settings: Settings) -> Runtime:
    """Build the runtime for ``configure()``: choose or create providers, wire the export side."""
    owned: list[Any] = []
    # Planned at most once, and only if something needs it: each plan makes its own exporters (and gRPC
    # channels), so planning per signal would open duplicates that nobody shuts down.
    plan = functools.cache(lambda: _export_plan(settings))
    tracer_provider = _tracer_provider(settings, plan, owned)
    meter_provider = _meter_provider(settings, plan, owned)
    logger_provider = (
        _logger_provider(settings, plan, owned) if wants_events(settings) else _existing_logger_provider(settings)
    )
    return Runtime(settings, tracer_provider, meter_provider, owned, configured=True, logger_provider=logger_provider)


def _is_real(provider: Any, proxy_type: type) -> bool:
    return (
        provider is not None
        and not isinstance(provider, proxy_type)
        and type(provider).__name__
        not in {
            "NoOpTracerProvider",
            "NoOpMeterProvider",
            "NoOpLoggerProvider",
        }
    )


def _tracer_provider(settings: Settings, plan: Callable[[], Any], owned: list[Any]) -> TracerProvider:
    from opentelemetry.trace import ProxyTracerProvider

    user_provider = settings.tracer_provider
    if user_provider is None:
        global_provider = trace.get_tracer_provider()
        if _is_real(global_provider, ProxyTracerProvider) and not created_by_llmwatch(global_provider):
            user_provider = global_provider
    if user_provider is not None:
        if settings.exporter is not None:  # the user asked for our exporter on their provider too
            user_provider.add_span_processor(_span_processor(plan(), owned))
        return user_provider  # type: ignore[no-any-return]
    provider = _new_tracer_provider(settings)
    provider.add_span_processor(_span_processor(plan(), owned))
    owned.append(provider)
    _install_global_tracer_provider(provider)
    return provider  # type: ignore[no-any-return]


def _new_tracer_provider(settings: Settings) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    # Sampling everything needs no ratio arithmetic per span: ALWAYS_ON decides the same, for less.
    root = ALWAYS_ON if settings.sample_rate >= 1.0 else TraceIdRatioBased(settings.sample_rate)
    provider = SdkTracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(root),
        shutdown_on_exit=False,  # OTel's own atexit waits without a deadline: ours has one (_api)
    )
    provider._llmwatch_created = True  # type: ignore[attr-defined]  # ours to replace on reconfigure
    return provider


def created_by_llmwatch(provider: Any) -> bool:
    return getattr(provider, "_llmwatch_created", False) is True


def _span_processor(plan: Any, owned: list[Any]) -> Any:
    from llmwatch._export._batch import LlmwatchSpanProcessor

    processor = LlmwatchSpanProcessor.from_env(plan.span_exporter, max_export_batch_size=plan.recommended_batch_size)
    owned.append(processor)
    logger.debug("llmwatch: exporting spans via %s", plan.description)
    return processor


def _export_plan(settings: Settings) -> Any:
    from llmwatch._export._presets import plan_export

    return plan_export(
        settings.exporter,
        endpoint=settings.endpoint,
        headers=settings.headers,
        protocol=settings.protocol,
        file_path=settings.file_path,
    )


def _meter_provider(settings: Settings, plan: Callable[[], Any], owned: list[Any]) -> MeterProvider | None:
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    if settings.meter_provider is not None:
        return settings.meter_provider  # type: ignore[no-any-return]
    global_provider = otel_metrics.get_meter_provider()
    if _is_real(global_provider, _ProxyMeterProvider) and not created_by_llmwatch(global_provider):
        return global_provider
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.resources import Resource

    from llmwatch._export._presets import make_metric_reader

    reader = make_metric_reader(plan())
    provider = SdkMeterProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        metric_readers=[reader] if reader is not None else [],
        shutdown_on_exit=False,
    )
    provider._llmwatch_created = True  # type: ignore[attr-defined]
    owned.append(provider)
    _install_global_meter_provider(provider)
    return provider


def _existing_logger_provider(settings: Settings) -> Any:
    """The LoggerProvider passed to ``configure()``, else a real global one, else None.

    What score events use when content events are off: llmwatch creates no Logs export of its own for
    them (an endpoint that takes traces only would reject every log export)."""
    if settings.logger_provider is not None:
        return settings.logger_provider
    if "opentelemetry._logs" not in sys.modules:  # nobody set a global one: the Logs API was never imported
        return None
    from opentelemetry import _logs
    from opentelemetry._logs._internal import ProxyLoggerProvider

    global_provider = _logs.get_logger_provider()
    return global_provider if _is_real(global_provider, ProxyLoggerProvider) else None


def _logger_provider(settings: Settings, plan: Callable[[], Any], owned: list[Any]) -> Any:
    """The content events' LoggerProvider: the one passed, else a real global one, else our own.

    Ours exports over OTLP logs with the traces' rules (``_export/_otlp.py``) and is not made global:
    it carries llmwatch's events only, and an app's own logging is not ours to reroute."""
    existing = _existing_logger_provider(settings)
    if existing is not None:
        return existing
    from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = SdkLoggerProvider(
        resource=Resource.create({"service.name": settings.service_name}), shutdown_on_exit=False
    )
    factory = plan().log_exporter_factory
    if factory is not None:
        provider.add_log_record_processor(BatchLogRecordProcessor(factory()))
        logger.debug("llmwatch: exporting content events via %s", plan().description)
    provider._llmwatch_created = True  # type: ignore[attr-defined]
    owned.append(provider)
    return provider


def _install_global_tracer_provider(provider: Any) -> None:
    current = trace.get_tracer_provider()
    if created_by_llmwatch(current):
        # Replacing our own earlier provider: OTel allows one set per process, so reset its guard.
        # Never done for a provider the user installed (that case never reaches here).
        _unset_global_tracer_provider()
    trace.set_tracer_provider(provider)


def _install_global_meter_provider(provider: Any) -> None:
    if created_by_llmwatch(otel_metrics.get_meter_provider()):
        _unset_global_meter_provider(None)
    otel_metrics.set_meter_provider(provider)


def _unset_global_tracer_provider() -> None:
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace._TRACER_PROVIDER = None


def _unset_global_meter_provider(forget: Any) -> None:
    """Hand OTel's global meter slot back; ``forget``: a provider OTel's proxy must stop forwarding to."""
    from opentelemetry.metrics import _internal as metrics_internal

    metrics_internal._METER_PROVIDER_SET_ONCE._done = False
    metrics_internal._METER_PROVIDER = None
    proxy = metrics_internal._PROXY_METER_PROVIDER
    with proxy._lock:  # the proxy forwards to the provider it was last given
        if forget is not None and proxy._real_meter_provider is forget:
            proxy._real_meter_provider = None


def release_globals(runtime: Runtime) -> None:
    """After ``shutdown()``: unset the global providers llmwatch created, so nothing keeps using them.

    OTel lets a process set its globals once; the providers were ours, so handing the slot back (as
    reconfiguring does) is safe, and spans made afterwards go to OTel's proxy as before configure().
    """
    if runtime.tracer_provider is trace.get_tracer_provider() and created_by_llmwatch(runtime.tracer_provider):
        _unset_global_tracer_provider()
    if runtime.meter_provider is otel_metrics.get_meter_provider() and created_by_llmwatch(runtime.meter_provider):
        _unset_global_meter_provider(runtime.meter_provider)


def flush_owned(runtime: Runtime, timeout_s: float) -> bool:
    """Flush what this runtime created; within ``timeout_s`` overall."""
    deadline = time.monotonic() + timeout_s
    ok = True
    for item in runtime.owned:
        remaining_ms = max(int((deadline - time.monotonic()) * 1000), 0)
        flush = getattr(item, "force_flush", None)
        if flush is not None:
            try:
                ok = bool(flush(remaining_ms)) and ok
            except Exception as exc:
                logger.debug("llmwatch: flush failed: %s", exc)
                ok = False
    return ok


def shutdown_owned(runtime: Runtime, timeout_s: float) -> None:
    """Flush and shut down what this runtime created (never a provider the user gave us).

    Processors go first, each with what is left of the deadline: an SDK ``TracerProvider.shutdown()``
    shuts its processors down without a timeout, which would let a stalled exporter hold us for its
    own default (30 s). Once our processor is shut down, the provider's call to it returns at once.
    """
    deadline = time.monotonic() + timeout_s
    flush_owned(runtime, timeout_s / 2)
    ordered = sorted(runtime.owned, key=lambda item: 0 if hasattr(item, "on_end") else 1)
    for item in ordered:
        remaining_ms = max((deadline - time.monotonic()) * 1000, 1.0)
        try:
            if hasattr(item, "on_end") or type(item).__name__ == "MeterProvider":
                item.shutdown(timeout_millis=remaining_ms)
            else:
                item.shutdown()
        except Exception as exc:
            logger.debug("llmwatch: shutdown failed: %s", exc)
    runtime.owned.clear()
