"""The package's shape, checked: no import cycle among llmwatch's modules, and modules stay small.

Every import counts, type-only ones (``if TYPE_CHECKING:``) and those inside functions included:
each is coupling a reader has to follow. The graph is read from the source with ``ast``, so nothing
is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmwatch"
MAX_LINES = 500
MAX_MODULES_OVER_400 = 3
EXEMPT_FROM_SIZE = ("llmwatch._demo",)  # the loopback server speaks four wire formats in one place


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The llmwatch modules ``name`` imports (``from a import b`` counts ``a.b`` when it is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):  # a name defined in ``base`` itself
                found.add(base)
    return {target for target in found if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    # Importing a.b.c runs a/__init__ first, but that is Python's doing, not a dependency the code
    # chose: only the modules an import names are edges.
    return {name: imported_modules(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    described = [" <-> ".join(c) + ": " + "; ".join(f"{a} -> {sorted(graph[a] & set(c))}" for a in c) for c in found]
    assert not found, "import cycles:\n" + "\n".join(described)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_modules_stay_small() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in modules().items()
        if not name.startswith(EXEMPT_FROM_SIZE)
    }
    too_big = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not too_big, f"modules over {MAX_LINES} lines: {too_big}"
    over_400 = sorted(name for name, lines in sizes.items() if lines > 400)
    assert len(over_400) <= MAX_MODULES_OVER_400, f"more than {MAX_MODULES_OVER_400} modules over 400 lines: {over_400}"


# The rooms, from the top down: a module may import its own room and the rooms below it, never above.
LAYERS = (
    ("llmwatch", "llmwatch.testing", "llmwatch.__main__", "llmwatch._cli", "llmwatch._demo", "llmwatch._report"),
    ("llmwatch._api", "llmwatch._scores", "llmwatch._state", "llmwatch._recovery"),
    ("llmwatch._instrument",),
    ("llmwatch._core",),
    ("llmwatch._policy", "llmwatch._export"),
    ("llmwatch._fleet",),  # the store's wire and the lease accounting: budgets (policy) read them
    (
        "llmwatch._fleet._url",  # read by the settings table
        "llmwatch._config",
        "llmwatch._config_parse",
        "llmwatch._errors",
        "llmwatch._health",
        "llmwatch._semconv",
        "llmwatch._text",
        "llmwatch._attribution",
        "llmwatch._wrapping",
        "llmwatch._forking",
    ),
)


def layer_of(module: str) -> int:
    best, depth = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > depth:
                best, depth = index, len(prefix)
    assert best >= 0, f"{module} is in no room of LAYERS: add it"
    return best


def test_dependencies_point_down() -> None:
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        for target in targets
        if layer_of(target) < layer_of(source)
    )
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_policy_and_export_do_not_import_each_other() -> None:
    graph = import_graph()
    crossing = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        for a, b in (("llmwatch._policy", "llmwatch._export"), ("llmwatch._export", "llmwatch._policy"))
        if source.startswith(a) and target.startswith(b)
    )
    assert not crossing, crossing


ADAPTERS = (
    "_openai",
    "_openai_chat",
    "_openai_request",
    "_openai_responses",
    "_openai_embeddings",
    "_anthropic",
    "_gemini",
    "_gemini_content",
    "_bedrock",
    "_bedrock_converse",
    "_bedrock_bodies",
    "_bedrock_reader",
)


def test_adapters_never_read_the_global_runtime() -> None:
    """An adapter turns SDK objects into neutral data; the settings and policy of a call reach it as
    arguments (``prepare(..., settings)``, the content policy in ``_core``), never from ``CURRENT``."""
    found = []
    for name in ADAPTERS:
        path = PACKAGE / "_instrument" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Name, ast.Attribute)) and "CURRENT" in (
                node.id if isinstance(node, ast.Name) else node.attr
            ):
                found.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and any(alias.name == "CURRENT" for alias in node.names):
                found.append(f"{name}:{node.lineno}")
    assert not found, found
