"""Settings: one table of every setting and environment variable, resolved and validated once.

Each setting has one row: its name, the environment variables that can set it (in precedence order),
its default, its parser (``_config_parse.py``) and whether it is a ``configure()`` argument. For an
argument an explicit value wins over the environment, which wins over the default. Everything is
checked up front, so a wrong value fails at ``configure()`` with a message that says how to fix it,
and never later on a user's request.

Arguments resolve into one immutable :class:`Settings`; the hot path reads the ``Runtime`` built from
it (see ``_core/_runtime.py``) through a single module attribute, swapped whole on reconfiguration.
The environment-only rows (``OTEL_BSP_*``, the OTLP variables llmwatch checks, the preset keys, the
kill switches, the semconv opt-in, ...) are read where they are used, always through :func:`env`
naming a row, never ``os.environ`` directly (``tests/test_config_docs.py`` keeps it so), and
``docs/configuration.md`` is checked against this table. Rows read by OpenTelemetry only are listed for
the docs: llmwatch passes nothing over them and :func:`env` refuses to read them.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable, Mapping
from typing import Any, Final

from llmwatch import _config_parse as p
from llmwatch._config_parse import CaptureMode, ContentDestination, Redactor
from llmwatch._errors import ConfigurationError as ConfigurationError  # re-exported: its old home
from llmwatch._fleet._url import StoreURL, parse_lease_usd, parse_store, parse_store_failure

LLMWATCH: Final = "llmwatch"
OTEL: Final = "OpenTelemetry"
TIKTOKEN: Final = "tiktoken"
BOTH: Final = (LLMWATCH, OTEL)  # llmwatch checks (or describes) the value; OTel's exporters use it
_SIGNALS: Final = ("", "TRACES_", "METRICS_")  # OTLP variables: general, then per signal


@dataclasses.dataclass(frozen=True)
class Param:
    """One row of the settings table."""

    name: str
    env_vars: tuple[str, ...]
    default: Any
    parse: Callable[[str, Any], Any]
    doc: str
    argument: bool = True  # a configure() argument; False: set by the environment only
    read_by: tuple[str, ...] = (LLMWATCH,)  # who reads the variables; without llmwatch, env() refuses
    keep_empty: bool = False  # an empty value is a value (tiktoken's "no cache"), not "unset"


def _env_only(
    name: str,
    env_vars: tuple[str, ...],
    default: Any,
    parse: Callable[[str, Any], Any],
    doc: str,
    read_by: tuple[str, ...] = (LLMWATCH,),
    keep_empty: bool = False,
) -> Param:
    return Param(name, env_vars, default, parse, doc, argument=False, read_by=read_by, keep_empty=keep_empty)


def _per_signal(kind: str, parse: Callable[[str, Any], Any], doc: str) -> tuple[Param, ...]:
    """``OTEL_EXPORTER_OTLP_<kind>`` and its TRACES_/METRICS_ forms: each checked by llmwatch on its own."""
    return tuple(
        _env_only(
            f"otlp_{signal.lower()}{kind.lower()}",
            (f"OTEL_EXPORTER_OTLP_{signal}{kind}",),
            None,
            parse,
            doc,
            read_by=BOTH,
        )
        for signal in _SIGNALS
    )


PARAMS: tuple[Param, ...] = (
    Param("service_name", ("OTEL_SERVICE_NAME",), "unknown_service", p.parse_str, "resource service.name"),
    Param("exporter", ("LLMWATCH_EXPORTER",), None, p.identity, "otlp|datadog|newrelic|console|file|none"),
    Param("endpoint", (), None, p.parse_optional_str, "OTLP base URL; overrides OTEL_EXPORTER_OTLP_ENDPOINT"),
    Param("headers", (), None, p.parse_headers, "OTLP headers; override OTEL_EXPORTER_OTLP_HEADERS"),
    Param("protocol", (), None, p.parse_optional_str, "grpc | http/protobuf"),
    Param("file_path", ("LLMWATCH_FILE_PATH",), None, p.parse_optional_str, "JSON Lines path (file)"),
    Param(
        "capture_content",
        ("LLMWATCH_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
        False,
        p.parse_capture,
        "message content: false | true | redacted, or NO_CONTENT | SPAN_ONLY | EVENT_ONLY | SPAN_AND_EVENT",
    ),
    Param("content_destination", ("LLMWATCH_CONTENT_DESTINATION",), None, p.parse_destination, "span|event|both"),
    Param("redact", (), None, p.parse_redact, "callable(str) -> str run on every captured text"),
    Param("content_hook", (), None, p.parse_content_hook, "callable(record) run off-thread with each call's content"),
    Param("prices", ("LLMWATCH_PRICES",), None, p.parse_prices, "price overrides: mapping or JSON path"),
    Param(
        "providers",
        ("LLMWATCH_PROVIDERS",),
        None,
        p.parse_providers,
        "provider names by base URL or host: mapping, JSON or url=name,host=name",
    ),
    Param("tracer_provider", (), None, p.parse_tracer_provider, "TracerProvider to use"),
    Param("meter_provider", (), None, p.parse_meter_provider, "MeterProvider to use"),
    Param("logger_provider", (), None, p.parse_logger_provider, "LoggerProvider for content events"),
    Param("sample_rate", ("LLMWATCH_SAMPLE_RATE",), 1.0, p.parse_ratio, "head sampling ratio"),
    Param(
        "metrics_user_dimension",
        ("LLMWATCH_METRICS_USER_DIMENSION",),
        False,
        p.parse_bool,
        "user as a metric attribute (top-100)",
    ),
    Param("instrument", ("LLMWATCH_INSTRUMENT",), True, p.parse_bool, "instrument installed SDKs"),
    Param(
        "max_content_chars",
        ("LLMWATCH_MAX_CONTENT_CHARS",),
        32768,
        p.parse_positive_int,
        "max chars per captured text",
    ),
    Param(
        "max_span_content_chars",
        ("LLMWATCH_MAX_SPAN_CONTENT_CHARS",),
        131072,
        p.parse_positive_int,
        "max chars of captured content per span",
    ),
    Param(
        "request_stream_usage",
        ("LLMWATCH_REQUEST_STREAM_USAGE",),
        True,
        p.parse_bool,
        "add stream_options.include_usage to OpenAI chat streams that do not set it",
    ),
    Param(
        "backend_compat",
        ("LLMWATCH_BACKEND_COMPAT",),
        frozenset(),
        p.parse_backend_compat,
        "extra attribute sets for backends: openinference",
    ),
    Param("store", ("LLMWATCH_STORE",), None, parse_store, "redis://, rediss:// or unix:// URL: fleet-wide budgets"),
    Param("lease_usd", ("LLMWATCH_LEASE_USD",), None, parse_lease_usd, "USD per lease of a shared budget"),
    Param("store_failure", ("LLMWATCH_STORE_FAILURE",), "open", parse_store_failure, "open | closed"),
    # --- environment only: export (read at configure()) -------------------------------------------------
    _env_only(
        "traces_exporter",
        ("OTEL_TRACES_EXPORTER",),
        "",
        p.parse_word,
        "the preset when exporter= and LLMWATCH_EXPORTER are not given",
    ),
    _env_only("metrics_exporter", ("OTEL_METRICS_EXPORTER",), "", p.parse_word, "none: no metrics"),
    _env_only(
        "metric_export_interval_ms", ("OTEL_METRIC_EXPORT_INTERVAL",), 60000, p.parse_count, "ms between metric exports"
    ),
    _env_only("export_queue_size", ("OTEL_BSP_MAX_QUEUE_SIZE",), 2048, p.parse_count, "spans queued for export"),
    _env_only(
        "export_batch_size",
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",),
        512,
        p.parse_count,
        "spans per export (presets: 100 for datadog, newrelic)",
    ),
    _env_only("export_schedule_delay_ms", ("OTEL_BSP_SCHEDULE_DELAY",), 1000, p.parse_count, "ms between exports"),
    _env_only("export_timeout_ms", ("OTEL_BSP_EXPORT_TIMEOUT",), 30000, p.parse_count, "ms one export may take"),
    _env_only("otlp_endpoint", ("OTEL_EXPORTER_OTLP_ENDPOINT",), "", p.parse_text, "OTLP base URL", read_by=BOTH),
    _env_only(
        "otlp_traces_endpoint",
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",),
        "",
        p.parse_text,
        "full traces URL",
        read_by=BOTH,
    ),
    _env_only(
        "otlp_metrics_endpoint",
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",),
        "",
        p.parse_text,
        "full metrics URL",
        read_by=BOTH,
    ),
    _env_only("otlp_logs_endpoint", ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",), "", p.parse_text, "logs URL", read_by=BOTH),
    _env_only(
        "otlp_traces_protocol",
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        "http/protobuf",
        p.parse_protocol,
        "traces: grpc | http/protobuf",
    ),
    _env_only(
        "otlp_metrics_protocol",
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        "http/protobuf",
        p.parse_protocol,
        "metrics: grpc | http/protobuf",
    ),
    _env_only(
        "otlp_logs_protocol",
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        "http/protobuf",
        p.parse_protocol,
        "logs (content events): grpc | http/protobuf",
    ),
    _env_only(
        "otlp_traces_headers",
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        types.MappingProxyType({}),
        p.parse_otlp_headers,
        "traces headers",
        read_by=BOTH,
    ),
    _env_only(
        "otlp_metrics_headers",
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        types.MappingProxyType({}),
        p.parse_otlp_headers,
        "metrics headers",
        read_by=BOTH,
    ),
    _env_only(
        "otlp_logs_headers",
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        types.MappingProxyType({}),
        p.parse_otlp_headers,
        "logs headers",
        read_by=BOTH,
    ),
    _env_only(
        "otlp_traces_insecure",
        ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
        False,
        p.parse_insecure,
        "gRPC traces without a scheme: plaintext",
        read_by=BOTH,
    ),
    *_per_signal("TIMEOUT", p.parse_otlp_seconds, "seconds per OTLP request"),
    *_per_signal("COMPRESSION", p.parse_compression, "gzip | deflate | none"),
    *_per_signal("CERTIFICATE", p.parse_existing_file, "CA bundle file"),
    *_per_signal("CLIENT_CERTIFICATE", p.parse_existing_file, "client certificate file (mTLS)"),
    *_per_signal("CLIENT_KEY", p.parse_existing_file, "client key file (mTLS)"),
    _env_only("datadog_agent_host", ("DD_AGENT_HOST",), "localhost", p.parse_text, "datadog: the Agent's host"),
    _env_only("datadog_api_key", ("DD_API_KEY",), "", p.parse_text, "datadog with endpoint=: agentless intake key"),
    _env_only("newrelic_license_key", ("NEW_RELIC_LICENSE_KEY",), "", p.parse_text, "newrelic: the api-key header"),
    _env_only("newrelic_region", ("NEW_RELIC_REGION",), "us", p.parse_newrelic_region, "newrelic: us | eu"),
    # --- environment only: read by OpenTelemetry, listed for the docs ---------------------------------------
    _env_only(
        "otlp_metrics_insecure",
        ("OTEL_EXPORTER_OTLP_METRICS_INSECURE",),
        None,
        p.parse_insecure,
        "gRPC metrics without a scheme: plaintext",
        read_by=(OTEL,),
    ),
    _env_only(
        "otlp_metrics_temporality",
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",),
        None,
        p.parse_word,
        "cumulative | delta | lowmemory",
        read_by=(OTEL,),
    ),
    _env_only(
        "otlp_metrics_histogram_aggregation",
        ("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",),
        None,
        p.parse_word,
        "explicit_bucket_histogram | base2_exponential_bucket_histogram",
        read_by=(OTEL,),
    ),
    _env_only(
        "resource_attributes",
        ("OTEL_RESOURCE_ATTRIBUTES",),
        None,
        p.parse_raw,
        "extra resource attributes",
        read_by=(OTEL,),
    ),
    # --- environment only: elsewhere -------------------------------------------------------------------------
    _env_only(
        "disabled_features", ("LLMWATCH_DISABLED_FEATURES",), frozenset(), p.parse_names, "kill switches: features"
    ),
    _env_only("disabled_models", ("LLMWATCH_DISABLED_MODELS",), frozenset(), p.parse_names, "kill switches: models"),
    _env_only(
        "semconv_stability_opt_in",
        ("OTEL_SEMCONV_STABILITY_OPT_IN",),
        frozenset(),
        p.parse_names,
        "gen_ai_latest_experimental: newer GenAI names; /dup: both, and gen_ai.system",
    ),
    _env_only(
        "tiktoken_cache_dir",
        ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"),
        None,
        p.parse_raw,
        "where tiktoken caches encodings; empty: no cache",
        read_by=(LLMWATCH, TIKTOKEN),
        keep_empty=True,
    ),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved, validated configuration."""

    service_name: str = "unknown_service"
    exporter: Any = None
    endpoint: str | None = None
    headers: dict[str, str] | None = None
    protocol: str | None = None
    file_path: str | None = None
    capture_content: CaptureMode = False
    content_destination: ContentDestination | None = None  # resolved by resolve(); None: span
    redact: Redactor | None = None
    content_hook: Any = None
    prices: dict[str, dict[str, float]] | None = None
    providers: dict[str, str] | None = None
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    sample_rate: float = 1.0
    metrics_user_dimension: bool = False
    instrument: bool = True
    max_content_chars: int = 32768
    max_span_content_chars: int = 131072
    request_stream_usage: bool = True
    backend_compat: frozenset[str] = frozenset()
    store: StoreURL | None = None
    lease_usd: float | None = None
    store_failure: str = "open"


_UNSET: Any = object()
ARGUMENTS: Final = tuple(param for param in PARAMS if param.argument)


def resolve(arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every argument row from the arguments given (``_UNSET``/``None`` = not given), then env."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for param in ARGUMENTS:
        values[param.name] = _resolve_param(param, arguments.get(param.name, _UNSET), environ)
    p.split_capture(values)
    p.check_combinations(values)
    return Settings(**values)


def _resolve_param(param: Param, argument: Any, environ: Mapping[str, str]) -> Any:
    if argument is not _UNSET and argument is not None:
        return param.parse(param.name, argument)
    value = _from_environ(param, environ)
    return param.default if value is _UNSET else value


def _from_environ(param: Param, environ: Mapping[str, str]) -> Any:
    for env_var in param.env_vars:
        raw = environ.get(env_var)
        if raw is not None and (param.keep_empty or raw.strip() != ""):
            return param.parse(env_var, raw)
    return _UNSET


_ROWS: Final = {param.name: param for param in PARAMS}


def env(name: str, environ: Mapping[str, str] | None = None, *, default: Any = _UNSET) -> Any:
    """Row ``name`` from the environment: its first variable set (in precedence order), parsed.

    Unset (or blank, unless the row keeps empty values): ``default``, else the row's default. Raises
    ``ConfigurationError`` from the row's parser. The one place llmwatch reads the environment.
    """
    param = _ROWS[name]
    if LLMWATCH not in param.read_by:
        raise LookupError(f"{name}: {', '.join(param.read_by)} reads it, llmwatch does not")
    value = _from_environ(param, os.environ if environ is None else environ)
    if value is not _UNSET:
        return value
    return param.default if default is _UNSET else default


def variable(name: str) -> str:
    """The environment variable of a one-variable row, for messages that name it."""
    (env_var,) = _ROWS[name].env_vars
    return env_var
