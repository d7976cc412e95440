"""Framework bridges: agent frameworks whose agents, tools and workflows become llmwatch spans.

A bridge is a module in ``_instrument/`` with ``FRAMEWORK_MODULE`` (the module whose import turns it
on, e.g. ``"agents"`` for openai-agents), ``install(module)`` (idempotent: register a callback, a
processor or a wrapper with the framework) and ``uninstall()``. ``configure(instrument=True)`` installs
every bridge whose framework is imported now, and the others when they are imported (post-import
hooks: nothing here imports a framework the app did not import). Model calls stay the SDK-level
adapters' spans: a bridge opens agent/tool/workflow spans (``_observe.ObservedSpan``) and never an
LLM span for a call an SDK adapter already traces.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

from llmwatch._health import record_internal_error
from llmwatch._instrument import _import_hooks

# Bridge modules, imported lazily by name (their own imports are light; the framework's are not).
BRIDGES: tuple[str, ...] = ("_pydantic_ai", "_litellm", "_mcp", "_openai_agents", "_langchain")
_installed: set[str] = set()


def _bridge(name: str) -> ModuleType:
    return importlib.import_module(f"llmwatch._instrument.{name}")


def install_all() -> None:
    """Install each bridge now if its framework is imported, else when it is."""
    for name in BRIDGES:
        bridge = _bridge(name)
        _import_hooks.when_imported(bridge.FRAMEWORK_MODULE, ("framework", name), functools.partial(_install, name))


def _install(name: str, module: ModuleType) -> None:
    if name in _installed:
        return
    try:
        _bridge(name).install(module)
        _installed.add(name)
    except Exception as exc:
        record_internal_error(f"{name} bridge install", exc)


def uninstall_all() -> None:
    """Cancel pending bridge hooks and remove the installed bridges."""
    for name in BRIDGES:
        _import_hooks.cancel(("framework", name))
        if name in _installed:
            try:
                _bridge(name).uninstall()
            except Exception as exc:
                record_internal_error(f"{name} bridge uninstall", exc)
            _installed.discard(name)
