"""Installing and removing the class-level hooks of every supported SDK.

Each provider module lists ``TARGETS`` (module, class, method, handler, is_async), ``CLIENT_CLASSES``
and ``make_wrapper``. Hooks are installed once per SDK, whether instrumentation is global or per
client; what differs is only which clients the wrappers trace (``_base.REGISTRY``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from types import ModuleType
from typing import Any

from llmwatch._health import record_internal_error
from llmwatch._instrument import _anthropic, _openai
from llmwatch._instrument._base import REGISTRY

logger = logging.getLogger("llmwatch")

PROVIDER_MODULES: tuple[ModuleType, ...] = (_openai, _anthropic)
_installed: dict[str, list[tuple[type, str, Any]]] = {}
_lock = threading.Lock()


def installed_sdks() -> list[str]:
    """The supported SDKs importable here."""
    return [p.SDK_MODULE for p in PROVIDER_MODULES if importlib.util.find_spec(p.SDK_MODULE) is not None]


def install(provider: ModuleType) -> bool:
    """Wrap the provider's SDK methods once (idempotent). False when the SDK is not importable."""
    with _lock:
        if provider.SDK_MODULE in _installed:
            return True
        try:
            sdk = importlib.import_module(provider.SDK_MODULE)
        except ImportError:
            return False
        _warn_unknown_version(provider, sdk)
        import wrapt  # here, not at import: `import llmwatch` should not pay for it (~25 ms)

        originals: list[tuple[type, str, Any]] = []
        for module_name, class_name, method, handler, is_async in provider.TARGETS:
            cls = _find_class(module_name, class_name)
            if cls is None or method not in cls.__dict__:  # an SDK version without it: nothing to hook
                continue
            originals.append((cls, method, cls.__dict__[method]))
            wrapt.wrap_function_wrapper(cls, method, provider.make_wrapper(handler, is_async))
        for module_name, class_name in provider.CLIENT_CLASSES:
            cls = _find_class(module_name, class_name)
            if cls is None:
                continue
            for method in ("copy", "with_options"):
                if method in cls.__dict__:
                    originals.append((cls, method, cls.__dict__[method]))
                    wrapt.wrap_function_wrapper(cls, method, _propagate_mark)
        if hasattr(provider, "extra_patches"):
            originals.extend(provider.extra_patches())
        _installed[provider.SDK_MODULE] = originals
        return True


def uninstall_all() -> None:
    """Restore every SDK method we wrapped."""
    with _lock:
        for originals in _installed.values():
            for cls, method, original in reversed(originals):
                setattr(cls, method, original)
        _installed.clear()


def instrument_all() -> list[str]:
    """Install every supported SDK and trace every client."""
    done = [p.SDK_MODULE for p in PROVIDER_MODULES if install(p)]
    REGISTRY.global_enabled = True
    return done


def instrument_client(client: Any) -> Any:
    """Trace this one client (installing its SDK's hooks if needed); returns the same object."""
    module = type(client).__module__.split(".", 1)[0]
    for provider in PROVIDER_MODULES:
        if module == provider.SDK_MODULE:
            _check_is_client(client, provider)
            install(provider)
            REGISTRY.mark(client)
            if hasattr(provider, "on_client_instrumented"):
                provider.on_client_instrumented(client)
            return client
    supported = ", ".join(f"{m}.{c}" for p in PROVIDER_MODULES for m, c in p.CLIENT_CLASSES)
    raise TypeError(f"llmwatch.instrument(): {type(client).__qualname__} is not supported; supported: {supported}")


def _check_is_client(client: Any, provider: ModuleType) -> None:
    """Refuse a part of a client (``client.chat.completions``): marking it would trace nothing."""
    base = _find_class(f"{provider.SDK_MODULE}._base_client", "BaseClient")
    if base is None or isinstance(client, base):
        return
    owner = getattr(client, "_client", None)
    hint = (
        f" It looks like a part of a client ({type(owner).__qualname__}): pass the client itself, "
        "e.g. llmwatch.instrument(client), not llmwatch.instrument(client.chat.completions)."
        if owner is not None and isinstance(owner, base)
        else ""
    )
    clients = ", ".join(f"{m}.{c}" for m, c in provider.CLIENT_CLASSES)
    raise TypeError(
        f"llmwatch.instrument(): {type(client).__module__}.{type(client).__qualname__} is not a client "
        f"(expected {clients} or another {provider.SDK_MODULE} client).{hint}"
    )


def uninstrument() -> None:
    """Stop global tracing; hooks stay only while individually instrumented clients need them."""
    REGISTRY.global_enabled = False
    if not REGISTRY.any_marked():
        uninstall_all()


def _find_class(module_name: str, class_name: str) -> type | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, class_name, None)
    return cls if isinstance(cls, type) else None


def _propagate_mark(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # client.with_options(...) builds a new client: it stays instrumented if its source was.
    copy = wrapped(*args, **kwargs)
    try:
        if instance is not None and not REGISTRY.global_enabled and REGISTRY.is_traced(instance):
            REGISTRY.mark(copy)
    except Exception as exc:
        record_internal_error("client copy", exc)
    return copy


def _warn_unknown_version(provider: ModuleType, sdk: ModuleType) -> None:
    version = str(getattr(sdk, "__version__", "0"))
    try:
        major = int(version.split(".", 1)[0])
    except ValueError:
        major = -1
    if major not in provider.KNOWN_MAJOR_VERSIONS:
        logger.warning(
            "llmwatch: %s %s is a version llmwatch was not tested with (known majors: %s); "
            "instrumenting anyway, but some spans may lack attributes.",
            provider.SDK_MODULE,
            version,
            ", ".join(map(str, provider.KNOWN_MAJOR_VERSIONS)),
        )
