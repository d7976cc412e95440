"""Settings: one table, resolved and validated once in ``configure()``.

Each setting has one row: its ``configure()`` argument, the environment variables that can set it
(in precedence order), its default and its parser. An explicit argument wins over the environment,
which wins over the default. Everything is checked here, up front, so a wrong value fails at
``configure()`` with a message that says how to fix it, and never later on a user's request.

The result is one immutable :class:`Settings`; the hot path reads the ``Runtime`` built from it
(see ``_core/_runtime.py``) through a single module attribute, swapped whole on reconfiguration.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from llmwatch._errors import ConfigurationError as ConfigurationError  # re-exported: its old home

CaptureMode = Literal[False, True, "redacted"]
Redactor = Callable[[str], str]


@dataclasses.dataclass(frozen=True)
class Param:
    """One row of the settings table."""

    name: str
    env_vars: tuple[str, ...]
    default: Any
    parse: Callable[[str, Any], Any]
    doc: str


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigurationError(f"{name}={value!r} is not a boolean: use true or false.")


def _parse_capture(name: str, value: Any) -> CaptureMode:
    if value == "redacted" or (isinstance(value, str) and value.strip().lower() == "redacted"):
        return "redacted"
    try:
        return _parse_bool(name, value)
    except ConfigurationError:
        raise ConfigurationError(
            f"{name}={value!r} is not valid: use false (the default: no message content), true, or "
            '"redacted" (capture content after the built-in redactor and your redact hook).'
        ) from None


def _parse_str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}.")
    return value.strip()


def _parse_optional_str(name: str, value: Any) -> str | None:
    return None if value is None else _parse_str(name, value)


def _parse_ratio(name: str, value: Any) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={value!r} is not a number: use a ratio from 0.0 to 1.0.") from None
    if not 0.0 <= ratio <= 1.0:
        raise ConfigurationError(f"{name}={value!r} is out of range: use a ratio from 0.0 to 1.0.")
    return ratio


def _parse_positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={value!r} is not a whole number.") from None
    if isinstance(value, bool) or number <= 0:
        raise ConfigurationError(f"{name}={value!r} must be a whole number above 0.")
    return number


def _parse_redact(name: str, value: Any) -> Redactor | None:
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name} must be a function taking a str and returning a str, got {value!r}.")
    return value  # type: ignore[no-any-return]


def _parse_headers(name: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigurationError(f"{name} must be a mapping of header names to string values.")
    return dict(value)


def _parse_prices(name: str, value: Any) -> dict[str, dict[str, float]] | None:
    if value is None:
        return None
    source = "prices="
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        source = str(path)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"{name}: cannot read price file {path}: {exc}.") from None
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{name}: price file {path} is not valid JSON: {exc}.") from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{name} must be a mapping (or a JSON file of one) from model name to "
            '{"input": USD per 1M tokens, "output": ...}.'
        )
    return {str(model): _parse_price_entry(source, str(model), entry) for model, entry in value.items()}


_PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning")


def _parse_price_entry(source: str, model: str, entry: Any) -> dict[str, float]:
    if not isinstance(entry, Mapping) or "input" not in entry or "output" not in entry:
        raise ConfigurationError(
            f"{source}: price for {model!r} must be a mapping with at least 'input' and 'output' "
            "(USD per million tokens)."
        )
    unknown = set(entry) - set(_PRICE_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{source}: price for {model!r} has unknown keys {sorted(unknown)}; allowed: {list(_PRICE_KEYS)}."
        )
    parsed: dict[str, float] = {}
    for key, rate in entry.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
            raise ConfigurationError(
                f"{source}: price {key!r} for {model!r} must be a non-negative number, got {rate!r}."
            )
        parsed[key] = float(rate)
    return parsed


def _identity(name: str, value: Any) -> Any:
    return value


def _parse_tracer_provider(name: str, value: Any) -> Any:
    if value is not None and not callable(getattr(value, "get_tracer", None)):
        raise ConfigurationError(
            f"{name} must be an OpenTelemetry TracerProvider (e.g. opentelemetry.sdk.trace.TracerProvider()), "
            f"got {type(value).__qualname__}; leave it out to use the global provider or llmwatch's own."
        )
    return value


def _parse_meter_provider(name: str, value: Any) -> Any:
    if value is not None and not callable(getattr(value, "get_meter", None)):
        raise ConfigurationError(
            f"{name} must be an OpenTelemetry MeterProvider (e.g. opentelemetry.sdk.metrics.MeterProvider()), "
            f"got {type(value).__qualname__}; leave it out to use the global provider or llmwatch's own."
        )
    return value


PARAMS: tuple[Param, ...] = (
    Param("service_name", ("OTEL_SERVICE_NAME",), "unknown_service", _parse_str, "resource service.name"),
    Param("exporter", ("LLMWATCH_EXPORTER",), None, _identity, "otlp|datadog|newrelic|console|file|none"),
    Param("endpoint", (), None, _parse_optional_str, "OTLP base URL; overrides OTEL_EXPORTER_OTLP_ENDPOINT"),
    Param("headers", (), None, _parse_headers, "OTLP headers; override OTEL_EXPORTER_OTLP_HEADERS"),
    Param("protocol", (), None, _parse_optional_str, "grpc | http/protobuf"),
    Param("file_path", ("LLMWATCH_FILE_PATH",), None, _parse_optional_str, "JSON Lines path (file)"),
    Param(
        "capture_content",
        ("LLMWATCH_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
        False,
        _parse_capture,
        "message content: false | true | redacted",
    ),
    Param("redact", (), None, _parse_redact, "callable(str) -> str run on every captured text"),
    Param("prices", ("LLMWATCH_PRICES",), None, _parse_prices, "price overrides: mapping or JSON path"),
    Param("tracer_provider", (), None, _parse_tracer_provider, "TracerProvider to use"),
    Param("meter_provider", (), None, _parse_meter_provider, "MeterProvider to use"),
    Param("sample_rate", ("LLMWATCH_SAMPLE_RATE",), 1.0, _parse_ratio, "head sampling ratio"),
    Param(
        "metrics_user_dimension",
        ("LLMWATCH_METRICS_USER_DIMENSION",),
        False,
        _parse_bool,
        "user as a metric attribute (top-100)",
    ),
    Param("instrument", ("LLMWATCH_INSTRUMENT",), True, _parse_bool, "instrument installed SDKs"),
    Param(
        "max_content_chars",
        ("LLMWATCH_MAX_CONTENT_CHARS",),
        32768,
        _parse_positive_int,
        "max chars per captured text",
    ),
    Param(
        "max_span_content_chars",
        ("LLMWATCH_MAX_SPAN_CONTENT_CHARS",),
        131072,
        _parse_positive_int,
        "max chars of captured content per span",
    ),
    Param(
        "request_stream_usage",
        ("LLMWATCH_REQUEST_STREAM_USAGE",),
        True,
        _parse_bool,
        "add stream_options.include_usage to OpenAI chat streams that do not set it",
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
    redact: Redactor | None = None
    prices: dict[str, dict[str, float]] | None = None
    tracer_provider: Any = None
    meter_provider: Any = None
    sample_rate: float = 1.0
    metrics_user_dimension: bool = False
    instrument: bool = True
    max_content_chars: int = 32768
    max_span_content_chars: int = 131072
    request_stream_usage: bool = True


_UNSET: Any = object()


def resolve(arguments: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Settings:
    """Resolve every setting from the arguments given (``_UNSET``/``None`` = not given), then env."""
    values: dict[str, Any] = {}
    for param in PARAMS:
        values[param.name] = _resolve_param(param, arguments.get(param.name, _UNSET), environ)
    _check_combinations(values)
    return Settings(**values)


def _check_combinations(values: Mapping[str, Any]) -> None:
    provider = values["tracer_provider"]
    if (
        provider is not None
        and values["exporter"] is not None
        and not callable(getattr(provider, "add_span_processor", None))
    ):
        raise ConfigurationError(
            f"exporter= needs a tracer_provider llmwatch can add its span processor to; "
            f"{type(provider).__qualname__} has no add_span_processor(). Use an SDK TracerProvider, "
            "or leave exporter out and export from your provider yourself."
        )


def _resolve_param(param: Param, argument: Any, environ: Mapping[str, str]) -> Any:
    if argument is not _UNSET and argument is not None:
        return param.parse(param.name, argument)
    for env_var in param.env_vars:
        raw = environ.get(env_var)
        if raw is not None and raw.strip() != "":
            return param.parse(env_var, raw)
    return param.default
