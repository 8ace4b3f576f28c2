"""The pure core (`runtime/policy/*.py`, `runtime/config/spec.py`) imports no side-effecting module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "runtime"
FORBIDDEN = frozenset({"asyncio", "os", "signal", "socket", "subprocess", "psutil", "time"})
PURE_FILES = sorted([*ROOT.joinpath("policy").glob("*.py"), ROOT / "config" / "spec.py"])


def imported_roots(tree: ast.AST) -> set[str]:
    """Top-level names of every absolute import anywhere in the module."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_pure_module_has_no_forbidden_import(path: Path) -> None:
    """A pure module must take time and I/O as data, so it imports none of the edge modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert imported_roots(tree) & FORBIDDEN == set()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os", {"os"}),
        ("import os.path as p", {"os"}),
        ("from time import monotonic", {"time"}),
        ("def f():\n    import asyncio", {"asyncio"}),
        ("from . import spec", set()),
        ("from runtime.config.spec import AppSpec", {"runtime"}),
    ],
    ids=["import", "dotted", "from", "nested", "relative", "project"],
)
def test_imported_roots_sees_every_form(source: str, expected: set[str]) -> None:
    """The checker catches plain, dotted, from- and function-level imports."""
    assert imported_roots(ast.parse(source)) == expected


def test_pure_file_list_is_not_empty() -> None:
    """The glob finds the policy modules, so the check cannot pass vacuously."""
    assert ROOT / "config" / "spec.py" in PURE_FILES
    assert len(PURE_FILES) >= 7
