"""Installing and removing the class-level hooks of every supported SDK.

Each provider module lists ``TARGETS`` (module, class, method, handler, is_async), ``CLIENT_CLASSES``
and ``make_wrapper``; optionally ``extra_patches`` (and ``EXTRA_PATCH_MODULES``, the modules it
patches) and ``client_to_mark`` (what ``instrument(client)`` marks, when not the client itself).
``SDK_MODULE`` may be dotted (``google.genai``): a client belongs to the SDK whose package holds its
class. Hooks are installed once per SDK, whether instrumentation is global or per client; what
differs is only which clients the wrappers trace (``_base.REGISTRY``).

Nothing here imports a module the application has not imported: importing ``anthropic`` alone takes
1-2 s, openai's stream-helper modules 0.1-0.2 s. Global instrumentation hooks an SDK already
imported at once and any other when it is imported; an SDK's hooks go in module by module, each
when the SDK itself imports that module (openai loads its resources lazily). Both kinds of wait are
post-import hooks (``_import_hooks``): ``uninstrument()`` cancels the SDK-level ones,
``uninstall_all()`` all of them.

Locking: a post-import hook runs while its thread holds that module's import lock, so nothing waits
for an import while holding ``_lock``: ``install`` imports the SDK before taking it, and a module is
patched only once imported.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import threading
from types import ModuleType
from typing import Any

from llmwatch._health import record_internal_error
from llmwatch._instrument import _anthropic, _bedrock, _frameworks, _gemini, _import_hooks, _openai
from llmwatch._instrument._base import REGISTRY

logger = logging.getLogger("llmwatch")

PROVIDER_MODULES: tuple[ModuleType, ...] = (_openai, _anthropic, _gemini, _bedrock)
_installed: dict[str, list[tuple[type, str, Any]]] = {}  # SDK -> (class, method, original) wrapped so far
_lock = threading.Lock()


def installed_sdks() -> list[str]:
    """The supported SDKs importable here."""
    return [p.SDK_MODULE for p in PROVIDER_MODULES if _findable(p.SDK_MODULE)]


def _findable(name: str) -> bool:
    # A dotted SDK name (google.genai): find_spec imports the parent package, and raises when it is absent.
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def install(provider: ModuleType) -> bool:
    """Hook the provider's SDK once (idempotent): each of its modules now if imported, else when it
    is. False when the SDK is not importable."""
    if provider.SDK_MODULE in _installed:
        return True
    try:
        sdk = importlib.import_module(provider.SDK_MODULE)  # outside _lock: see the module docstring
    except ImportError:
        return False
    with _lock:
        if provider.SDK_MODULE in _installed:
            return True
        _warn_unknown_version(provider, sdk)
        _installed[provider.SDK_MODULE] = []
    owner = ("patch", provider.SDK_MODULE)
    for module_name in _patched_modules(provider):
        _import_hooks.when_imported(module_name, owner, functools.partial(_patch_module, provider, module_name))
    return True


def _patched_modules(provider: ModuleType) -> list[str]:
    names = [provider.SDK_MODULE]
    names += [target[0] for target in provider.TARGETS] + [module for module, _ in provider.CLIENT_CLASSES]
    names += list(getattr(provider, "EXTRA_PATCH_MODULES", ()))
    return list(dict.fromkeys(names))


def _patch_module(provider: ModuleType, module_name: str, module: ModuleType) -> None:
    """Wrap what ``provider`` hooks in ``module_name``, just imported; all of it or nothing."""
    import wrapt  # here, not at import: `import llmwatch` should not pay for it (~25 ms)

    # Classes first, outside _lock: openai's packages resolve names lazily (a module __getattr__
    # importing a submodule), and that import may fire other hooks of ours.
    targets = [
        (cls, method, handler, is_async)
        for target_module, class_name, method, handler, is_async in provider.TARGETS
        if target_module == module_name and (cls := _class(module, class_name)) is not None
    ]
    clients = [
        cls
        for client_module, class_name in provider.CLIENT_CLASSES
        if client_module == module_name and (cls := _class(module, class_name)) is not None
    ]
    with _lock:
        originals = _installed.get(provider.SDK_MODULE)
        if originals is None:  # uninstalled while this module was being imported
            return
        patched: list[tuple[type, str, Any]] = []
        try:
            for cls, method, handler, is_async in targets:
                # Absent: an SDK version without it, nothing to hook. Already a wrapper: a class that
                # copied a hooked function (the Bedrock client's beta.messages); it is traced as it is.
                if method in cls.__dict__ and not isinstance(cls.__dict__[method], wrapt.ObjectProxy):
                    patched.append((cls, method, cls.__dict__[method]))
                    wrapt.wrap_function_wrapper(cls, method, provider.make_wrapper(handler, is_async))
            for cls in clients:
                for method in ("copy", "with_options"):
                    if method in cls.__dict__:
                        patched.append((cls, method, cls.__dict__[method]))
                        wrapt.wrap_function_wrapper(cls, method, _propagate_mark)
            patched.extend(_extra_patches(provider, module_name))
        except BaseException:
            _restore(patched)
            raise
        originals.extend(patched)


def _extra_patches(provider: ModuleType, module_name: str) -> list[tuple[type, str, Any]]:
    if not hasattr(provider, "extra_patches"):
        return []
    lazy = getattr(provider, "EXTRA_PATCH_MODULES", None)
    if lazy is None:  # no modules named: all at once, with the SDK's own module
        return list(provider.extra_patches()) if module_name == provider.SDK_MODULE else []
    return list(provider.extra_patches(module_name)) if module_name in lazy else []


def _class(module: ModuleType, name: str) -> type | None:
    cls = getattr(module, name, None)
    return cls if isinstance(cls, type) else None


def _restore(originals: list[tuple[type, str, Any]]) -> None:
    for cls, method, original in reversed(originals):
        setattr(cls, method, original)


def uninstall_all() -> None:
    """Restore every SDK method we wrapped, and forget every hook still waiting for an import."""
    for provider in PROVIDER_MODULES:
        _import_hooks.cancel(("sdk", provider.SDK_MODULE))
        _import_hooks.cancel(("patch", provider.SDK_MODULE))
    with _lock:
        for originals in _installed.values():
            _restore(originals)
        _installed.clear()
    released_sdks_follow_the_global_provider()


def released_sdks_follow_the_global_provider() -> None:
    """For each SDK not hooked now: what it may do without llmwatch depends on whose global provider is
    installed (after ``uninstall_all()``, and again after ``shutdown()`` hands the global slot back)."""
    for provider in PROVIDER_MODULES:
        after = getattr(provider, "after_uninstall", None)
        if after is None or provider.SDK_MODULE in _installed:
            continue
        try:
            after()
        except Exception as exc:
            record_internal_error(f"{provider.SDK_MODULE} uninstall", exc)


def instrument_all() -> list[str]:
    """Trace every client of every supported SDK: those imported now at once, the others on import.

    Returns the SDKs hooked now; an SDK imported later is hooked by its post-import hook.
    """
    REGISTRY.global_enabled = True
    for provider in PROVIDER_MODULES:
        hook = functools.partial(_install_on_import, provider)
        _import_hooks.when_imported(provider.SDK_MODULE, ("sdk", provider.SDK_MODULE), hook)
    _frameworks.install_all()
    return [p.SDK_MODULE for p in PROVIDER_MODULES if p.SDK_MODULE in _installed]


def _install_on_import(provider: ModuleType, module: ModuleType) -> None:
    if REGISTRY.global_enabled:  # uninstrument() cancels the hook; this covers a race with it
        install(provider)


def instrument_client(client: Any, provider_name: str | None = None) -> Any:
    """Trace this one client (installing its SDK's hooks if needed); returns the same object.

    ``provider_name``: the provider its calls name, whatever its base URL says. A provider module may
    name what to mark for a client (``client_to_mark(client)``, which also refuses what is not a
    client): the object its hooked instances reach (see ``_base.begin_call``)."""
    module = type(client).__module__
    for provider in PROVIDER_MODULES:
        if module == provider.SDK_MODULE or module.startswith(provider.SDK_MODULE + "."):
            to_mark = getattr(provider, "client_to_mark", None)
            if to_mark is None:
                _check_is_client(client, provider)
            marked = client if to_mark is None else to_mark(client)
            install(provider)
            REGISTRY.mark(marked, provider_name)
            if hasattr(provider, "on_client_instrumented"):
                provider.on_client_instrumented(client)
            return client
    supported = ", ".join(f"{m}.{c}" for p in PROVIDER_MODULES for m, c in p.CLIENT_CLASSES)
    raise TypeError(f"llmwatch.instrument(): {type(client).__qualname__} is not supported; supported: {supported}")


def _check_is_client(client: Any, provider: ModuleType) -> None:
    """Refuse a part of a client (``client.chat.completions``): marking it would trace nothing.

    A provider module may say itself what it accepts (``check_client``: raises ``TypeError``)."""
    check = getattr(provider, "check_client", None)
    if check is not None:
        check(client)
        return
    base_module = sys.modules.get(f"{provider.SDK_MODULE}._base_client")  # imported: a client exists
    base = _class(base_module, "BaseClient") if base_module is not None else None
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
    """Stop global tracing and cancel pending import hooks; SDK hooks stay only while individually
    instrumented clients need them."""
    REGISTRY.global_enabled = False
    for provider in PROVIDER_MODULES:
        _import_hooks.cancel(("sdk", provider.SDK_MODULE))
    _frameworks.uninstall_all()
    if not REGISTRY.any_marked():
        uninstall_all()


def _propagate_mark(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # client.with_options(...) builds a new client: it stays instrumented if its source was.
    copy = wrapped(*args, **kwargs)
    try:
        if instance is not None and REGISTRY.is_marked(instance):  # with the name it was given, if any
            REGISTRY.mark(copy, REGISTRY.provider_name(instance))
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
