"""Post-import hooks: run a function right after a module is first imported.

Why not ``wrapt.register_post_import_hook``: importing wrapt costs 25-90 ms (it imports
``importlib.metadata``), which ``configure()`` would pay even when no SDK is ever imported; and its
hooks cannot be cancelled (``uninstrument()`` must stop a pending one) and an exception in one fails
the import. Ours:

- a finder first in ``sys.meta_path`` that, for a watched name only, asks the other finders for the
  module's spec and wraps its loader; every other import pays one dict lookup;
- the wrapped loader gives the module back its real loader, executes it, then runs the hook: after
  the module's own code, before the importing statement returns;
- a hook runs at most once, and an exception in it is counted (``record_internal_error``), never
  raised into the importing code;
- :func:`cancel` forgets a pending hook (the finder stays: removing it from ``sys.meta_path`` could
  make another thread's import, iterating the list, skip a finder).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Hashable, Sequence
from types import ModuleType
from typing import Any

from llmwatch._health import record_internal_error

Hook = Callable[[ModuleType], None]

_hooks: dict[str, dict[Hashable, Hook]] = {}  # module name -> owner -> hook
_lock = threading.Lock()
_resolving = threading.local()  # names this thread is finding a spec for: our own lookup skips us


def when_imported(name: str, owner: Hashable, hook: Hook) -> None:
    """Run ``hook(module)`` once ``name`` is imported; now, in this thread, if it already is.

    ``owner`` names the hook for :func:`cancel`; registering the same owner again replaces it.
    """
    with _lock:
        _install_finder()
        _hooks.setdefault(name, {})[owner] = hook
    module = sys.modules.get(name)  # checked after registering: an import starting now cannot slip by
    if module is None:
        return
    if getattr(getattr(module, "__spec__", None), "_initializing", False):
        try:  # another thread is importing it (without us, it started first): wait for its end, no lock held
            module = importlib.import_module(name)
        except Exception:
            return  # that import failed: the hook waits for the next attempt
    _fire(name, module)


def cancel(owner: Hashable) -> None:
    """Forget every pending hook of ``owner`` (a hook already running finishes)."""
    with _lock:
        for name in list(_hooks):
            _hooks[name].pop(owner, None)
            if not _hooks[name]:
                del _hooks[name]


def pending() -> dict[str, list[Hashable]]:
    """Module name -> owners of the hooks waiting for it (for tests and debugging)."""
    with _lock:
        return {name: list(owners) for name, owners in _hooks.items()}


def _fire(name: str, module: ModuleType) -> None:
    with _lock:
        hooks = _hooks.pop(name, {})  # whoever pops them runs them: each at most once
    for owner, hook in hooks.items():
        try:
            hook(module)
        except Exception as exc:  # the application's import goes on; that part is just not instrumented
            record_internal_error(f"post-import hook {owner!r} for {name}", exc)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _hooks:  # every import in the process asks: keep this the whole cost
            return None
        resolving: set[str] = _resolving.__dict__.setdefault("names", set())
        if fullname in resolving:
            return None
        resolving.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)  # the other finders (this one returns None now)
        finally:
            resolving.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookedLoader(spec.loader)
        return spec


class _HookedLoader(importlib.abc.Loader):
    """The module's own loader, then the hook."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        # The module sees its real loader (importlib.resources, get_data, reloads), never this one.
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        self._loader.exec_module(module)
        _fire(module.__name__, module)

    def __getattr__(self, name: str) -> Any:  # is_package, get_code, get_resource_reader, ...
        return getattr(self._loader, name)


_finder: _Finder | None = None


def _renew_lock() -> None:  # a forked child must not inherit the lock held by another thread
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_lock)


def _install_finder() -> None:
    global _finder
    if _finder is None:
        _finder = _Finder()
        sys.meta_path.insert(0, _finder)
