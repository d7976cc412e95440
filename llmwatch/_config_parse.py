"""The parsers of the settings table (``_config.PARAMS``): each turns a value into the setting or fails.

A parser takes ``(source, value)``: ``source`` is the argument or the environment variable the value
came from, so the ``ConfigurationError`` it raises names what the user wrote and says how to fix it.
Argument parsers accept Python values and strings (the environment's); the environment-only parsers
below them get the variable's text. Kept apart from the table so that ``_config.py`` stays readable
as the list of settings it is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from llmwatch._errors import ConfigurationError

CaptureMode = Literal[False, True, "redacted"]  # what is captured: nothing, the texts, or redacted texts
ContentDestination = Literal["span", "event", "span_and_event"]  # where captured content goes
DESTINATIONS: Final[tuple[ContentDestination, ...]] = ("span", "event", "span_and_event")
Redactor = Callable[[str], str]
PROTOCOLS = ("grpc", "http/protobuf")
COMPRESSIONS = ("gzip", "deflate", "none")


# --- configure() arguments (and their environment variables) ------------------------------------------
def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigurationError(f"{name}={value!r} is not a boolean: use true or false.")


class Capture(NamedTuple):
    """A ``capture_content`` value: what is captured, and where (None: the value does not say)."""

    mode: CaptureMode
    destination: ContentDestination | None


# OpenTelemetry's values (util-genai's ContentCapturingMode, the GenAI instrumentations' variable
# OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT): each says what and where.
OTEL_CAPTURE_MODES: Final[dict[str, Capture]] = {
    "no_content": Capture(False, None),
    "span_only": Capture(True, "span"),
    "event_only": Capture(True, "event"),
    "span_and_event": Capture(True, "span_and_event"),
}


def parse_capture(name: str, value: Any) -> Capture:
    """``false | true | redacted`` (llmwatch's) or OTel's ``NO_CONTENT | SPAN_ONLY | EVENT_ONLY |
    SPAN_AND_EVENT``, case-insensitive; a :class:`Capture` passes through."""
    if isinstance(value, Capture):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "redacted":
        return Capture("redacted", None)
    if text in OTEL_CAPTURE_MODES:
        return OTEL_CAPTURE_MODES[text]
    try:
        return Capture(parse_bool(name, value), None)
    except ConfigurationError:
        raise ConfigurationError(
            f"{name}={value!r} is not valid: use false (the default: no message content), true, "
            '"redacted" (capture content after the built-in redactor and your redact hook), or one of '
            "OpenTelemetry's NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT."
        ) from None


def parse_destination(name: str, value: Any) -> ContentDestination | None:
    """Where captured content goes: ``span`` (attributes), ``event`` (a log event) or ``span_and_event``."""
    if value is None:
        return None
    text = str(value).strip().lower().replace("-", "_")
    text = {"both": "span_and_event", "events": "event", "spans": "span"}.get(text, text)
    for destination in DESTINATIONS:
        if text == destination:
            return destination
    raise ConfigurationError(
        f"{name}={value!r} is not valid: use span (span attributes, the default), event (a "
        "gen_ai.client.inference.operation.details log event) or span_and_event."
    )


def parse_content_hook(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise ConfigurationError(
            f"{name} must be a function taking a content record (llmwatch calls it off your thread), got {value!r}."
        )
    return value


def parse_str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}.")
    return value.strip()


def parse_optional_str(name: str, value: Any) -> str | None:
    return None if value is None else parse_str(name, value)


def parse_ratio(name: str, value: Any) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={value!r} is not a number: use a ratio from 0.0 to 1.0.") from None
    if not 0.0 <= ratio <= 1.0:
        raise ConfigurationError(f"{name}={value!r} is out of range: use a ratio from 0.0 to 1.0.")
    return ratio


def parse_positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={value!r} is not a whole number.") from None
    if isinstance(value, bool) or number <= 0:
        raise ConfigurationError(f"{name}={value!r} must be a whole number above 0.")
    return number


def parse_redact(name: str, value: Any) -> Redactor | None:
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name} must be a function taking a str and returning a str, got {value!r}.")
    return value  # type: ignore[no-any-return]


def parse_headers(name: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigurationError(f"{name} must be a mapping of header names to string values.")
    return dict(value)


def parse_providers(name: str, value: Any) -> dict[str, str] | None:
    """``{base_url or host: provider name}``; from the environment, JSON or ``key=name,key=name``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _provider_pairs(name, value)
    example = '{"http://gpu-1:8000/v1": "vllm", "ollama.internal": "ollama"}'
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must map a base URL or host to a provider name, e.g. {example}.")
    providers: dict[str, str] = {}
    for key, provider in value.items():
        if not isinstance(key, str) or not key.strip() or not isinstance(provider, str) or not provider.strip():
            raise ConfigurationError(
                f"{name}: {key!r}: {provider!r} is not a base URL or host mapped to a provider name, e.g. {example}."
            )
        if "://" not in key and ("/" in key or ":" in key):
            raise ConfigurationError(
                f"{name}: {key!r} is neither a host (api.example.com) nor a base URL with its scheme "
                f"(http://{key}); e.g. {example}."
            )
        providers[key.strip()] = provider.strip()
    return providers


def _provider_pairs(name: str, text: str) -> Any:
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{name} is not valid JSON: {exc}.") from None
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, provider = item.rpartition("=")
        if not sep:
            raise ConfigurationError(f"{name}: {item!r} is not key=provider (e.g. http://gpu-1:8000/v1=vllm).")
        pairs[key.strip()] = provider.strip()
    return pairs


def parse_prices(name: str, value: Any) -> dict[str, dict[str, float]] | None:
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


def identity(name: str, value: Any) -> Any:
    return value


def _provider_parser(kind: str, method: str, example: str) -> Callable[[str, Any], Any]:
    """A parser for ``tracer_provider=``/``meter_provider=``: an object with ``method``, or None."""

    def parse(name: str, value: Any) -> Any:
        if value is not None and not callable(getattr(value, method, None)):
            raise ConfigurationError(
                f"{name} must be an OpenTelemetry {kind} (e.g. {example}), "
                f"got {type(value).__qualname__}; leave it out to use the global provider or llmwatch's own."
            )
        return value

    return parse


parse_tracer_provider = _provider_parser("TracerProvider", "get_tracer", "opentelemetry.sdk.trace.TracerProvider()")
parse_meter_provider = _provider_parser("MeterProvider", "get_meter", "opentelemetry.sdk.metrics.MeterProvider()")
parse_logger_provider = _provider_parser("LoggerProvider", "get_logger", "opentelemetry.sdk._logs.LoggerProvider()")


# --- environment only -------------------------------------------------------------------------------------
def parse_count(name: str, value: Any) -> int:
    """``OTEL_BSP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``: a whole number above 0."""
    raw = str(value).strip()
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if number <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be a whole number above 0 (milliseconds or a count).")
    return number


def parse_text(name: str, value: Any) -> str:
    return str(value).strip()


def parse_word(name: str, value: Any) -> str:
    """A keyword, compared case-insensitively (``OTEL_TRACES_EXPORTER=Console``)."""
    return str(value).strip().lower()


def parse_raw(name: str, value: Any) -> str:
    """The value exactly as set: for variables another library reads, to choose as it chooses."""
    return str(value)


def parse_names(name: str, value: Any) -> frozenset[str]:
    """A comma-separated list of names (kill switches, semconv opt-ins); blanks dropped."""
    return frozenset(item.strip() for item in str(value).split(",") if item.strip())


def parse_protocol(name: str, value: Any) -> str:
    normalized = str(value).strip().lower()
    if normalized in PROTOCOLS:
        return normalized
    hint = " (OTel Python has no http/json exporter)" if normalized == "http/json" else ""
    raise ConfigurationError(f"{name}={value!r} is not supported{hint}: use 'grpc' or 'http/protobuf'.")


def parse_otlp_headers(name: str, value: Any) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` as OTel reads it (``k=v,k2=v2``, URL-encoded); names lower-cased."""
    from opentelemetry.util.re import parse_env_headers

    return {key.lower(): item for key, item in parse_env_headers(str(value), liberal=True).items()}


def parse_insecure(name: str, value: Any) -> bool:
    """``OTEL_EXPORTER_OTLP_INSECURE`` as OTel's gRPC exporter reads it: only ``true`` means plaintext."""
    return str(value).strip().lower() == "true"


def parse_otlp_seconds(name: str, value: Any) -> float:
    """``OTEL_EXPORTER_OTLP_TIMEOUT``: checked up front, else OTel fails at export time (or crashes)."""
    raw = str(value).strip()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigurationError(f"{name}={raw!r} must be a positive number of seconds (OTel Python's unit).")
    return seconds


def parse_compression(name: str, value: Any) -> str:
    raw = str(value).strip().lower()
    if raw not in COMPRESSIONS:
        raise ConfigurationError(f"{name}={raw!r} is not supported: use gzip, deflate or none.")
    return raw


def parse_existing_file(name: str, value: Any) -> str:
    raw = str(value).strip()
    if not Path(raw).is_file():
        raise ConfigurationError(f"{name}={raw!r}: no such file.")
    return raw


def parse_newrelic_region(name: str, value: Any) -> str:
    region = str(value).strip().lower()
    if region in ("us", "eu"):
        return region
    raise ConfigurationError(f"{name}={region!r} is not known: use 'us' (the default) or 'eu', or pass endpoint=.")


BACKEND_COMPAT: Final = frozenset({"openinference"})


def parse_backend_compat(name: str, value: Any) -> frozenset[str]:
    """Names of extra attribute sets, as a list or a comma-separated string; each must be known."""
    if isinstance(value, str):
        names = parse_names(name, value)
    elif isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        names = frozenset(v.strip() for v in value if v.strip())
    else:
        raise ConfigurationError(
            f"{name} must be a list of names, e.g. backend_compat=['openinference']; got {value!r}."
        )
    names = frozenset(n.lower() for n in names)
    unknown = sorted(names - BACKEND_COMPAT)
    if unknown:
        raise ConfigurationError(
            f"{name}: unknown backend compatibility {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(BACKEND_COMPAT))} (e.g. backend_compat=['openinference'])."
        )
    return names


def split_capture(values: dict[str, Any]) -> None:
    """``capture_content``: what (and, OTel's values, where); ``content_destination``: where, over it.
    The winning capture value wins whole (``LLMWATCH_CAPTURE_CONTENT=true`` hides OTel's EVENT_ONLY)."""
    capture = values["capture_content"]
    if not isinstance(capture, Capture):  # the row's default
        capture = Capture(capture, None)
    values["capture_content"] = capture.mode
    if values["content_destination"] is None:
        values["content_destination"] = capture.destination or "span"


def check_combinations(values: Mapping[str, Any]) -> None:
    if values["content_hook"] is not None and not values["capture_content"]:
        raise ConfigurationError('content_hook= gets captured content: set capture_content (True, "redacted", ...).')
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
