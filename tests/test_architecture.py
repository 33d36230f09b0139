"""The package rules, read from the import statements of every module:

- ``losses/`` depends on torch and einops only (and the standard library);
- ``dense/`` (the engine) never imports a plug-in package (``tasks``, ``datasets``);
- plug-ins import the engine and ``losses``, never each other's package;
- nothing imports ``experiments/`` (configs, grids, benchmarks and diagnostics use the rest).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("dense", "tasks", "datasets", "losses")
CHECKED = (*PROJECT, "experiments")
ALLOWED = {
    "losses": {"torch", "einops", "losses"},
    "dense": {"dense", "losses"},
    "tasks": {"dense", "losses", "tasks"},
    "datasets": {"dense", "losses", "datasets"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every module ``path`` imports (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PROJECT)
def test_every_package_imports_only_what_its_rule_allows(package):
    broken = {}
    for path in modules(package):
        imported = imported_packages(path)
        if package == "losses":
            bad = {
                p
                for p in imported
                if p not in ALLOWED["losses"] and p not in sys.stdlib_module_names
            }
        else:
            bad = {p for p in imported if p in CHECKED and p not in ALLOWED[package]}
        if bad:
            broken[str(path.relative_to(ROOT))] = sorted(bad)
    assert not broken, f"imports against the package rules: {broken}"


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "engine.py"
    module.write_text("import os\nfrom tasks.depth import Depth\nfrom . import sibling\n")
    assert imported_packages(module) == {"os", "tasks"}
