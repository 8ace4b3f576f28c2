"""The package's import graph: no cycles (TYPE_CHECKING imports included), layers one way.

Dependencies run one way: cli -> supervise -> boot -> control -> observe/devloop -> logs
-> proc -> policy -> config -> the shared top-level modules (STYLE.md, "Packages show the
layers"). Each package's docstring says what it may import; this test holds them to it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "runtime"

# Lower layers first; a module may import its own package and any package listed before it.
LAYERS = (
    ("runtime", "runtime.errors", "runtime.argv"),
    ("runtime.config",),
    ("runtime.policy",),
    ("runtime.proc",),
    ("runtime.logs",),
    ("runtime.observe", "runtime.devloop"),
    ("runtime.control",),
    ("runtime.boot",),
    ("runtime.supervise",),
    ("runtime.cli", "runtime.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every runtime module `path` imports, anywhere in it (functions, TYPE_CHECKING too)."""
    found: set[str] = set()
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in known and name != here)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    for rank, names in enumerate(LAYERS):
        for name in names:
            if module == name or (name != "runtime" and module.startswith(name + ".")):
                return rank
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else module


def upward_edges(edges: dict[str, set[str]]) -> Iterator[str]:
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            if package_of(source) == package_of(target):
                continue
            if layer(target) > layer(source):
                yield f"{source} -> {target}"


def test_no_import_cycles() -> None:
    """No module reaches itself through imports, counting those under TYPE_CHECKING."""
    assert cycles(graph()) == []


def test_imports_follow_the_layers() -> None:
    """A module imports only its own package and the layers below it."""
    assert list(upward_edges(graph())) == []


def test_every_package_says_what_it_may_import() -> None:
    """Each subpackage has a docstring naming what lives there and what it may import."""
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "import" in doc.lower(), f"{init.relative_to(ROOT)} does not say what it may import"


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
    ids=["pair", "chain", "triangle"],
)
def test_cycle_finder(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    """The checker itself finds a cycle when there is one, and none in a chain."""
    assert cycles(edges) == expected


def test_the_graph_sees_type_checking_and_nested_imports() -> None:
    """Imports under TYPE_CHECKING and inside functions count (the reshape issue asks for it)."""
    edges = graph()
    assert "runtime.supervise.supervisor" in edges["runtime.cli.run"]  # imported in a function
    assert len(edges) > 50
