"""The package root is the whole API: __all__ is honest and every submodule is private."""

from __future__ import annotations

import pkgutil

import llmwatch


def test_all_names_exist_and_are_documented() -> None:
    for name in llmwatch.__all__:
        member = getattr(llmwatch, name)
        if callable(member):
            assert member.__doc__, f"{name} has no docstring"


def test_every_public_callable_is_in_all() -> None:
    public = {
        n for n in dir(llmwatch) if not n.startswith("_") and not isinstance(getattr(llmwatch, n), type(llmwatch))
    }
    assert public <= set(llmwatch.__all__)


def test_submodules_are_private_except_testing() -> None:
    names = {m.name for m in pkgutil.iter_modules(llmwatch.__path__)}
    assert {n for n in names if not n.startswith("_")} == {"testing"}


def test_the_version_is_the_packages() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert llmwatch.__version__ == pyproject["project"]["version"]
