"""The packages split into modules (``eqprop.runs``, ``eqprop.config``, ``eqprop.data``,
``eqprop.experiments.paper_runs``) import in one direction: each module imports only modules
before it in its package's order (a function-level import counts too), the order lists every
module, and the package exports every public name of its modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

#: package -> its modules, each importing only those before it; and the public names left out
#: of the package on purpose (the progress interval is patched where it is read)
PACKAGES = {
    "eqprop.runs": (
        ("files", "build", "checks", "checkpoints", "directory", "progress", "train"),
        {"PLAIN_PROGRESS_EVERY_S"},
    ),
    "eqprop.config": (("sections", "run_config", "presets"), set()),
    "eqprop.data": (("splits", "directories", "idx", "own", "datasets"), set()),
    "eqprop.experiments.paper_runs": (
        ("declaring", "rates", "formats", "run_dirs", "status", "running", "pages"),
        set(),
    ),
}


def _folder(package: str) -> Path:
    return Path(importlib.import_module(package).__file__).parent


def _ours(package: str, path: Path) -> set[str]:
    """The modules of ``package`` that ``path`` imports, at any depth of its code."""
    prefix, depth = f"{package}.", package.count(".") + 1
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(prefix):
            found.add(node.module.split(".")[depth])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[depth] for a in node.names if a.name.startswith(prefix)}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_the_order_lists_every_module(package: str) -> None:
    order, _ = PACKAGES[package]
    modules = {p.stem for p in _folder(package).glob("*.py") if p.stem != "__init__"}
    assert modules == set(order)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_one_later_in_the_order(package: str) -> None:
    order, _ = PACKAGES[package]
    for position, name in enumerate(order):
        later = _ours(package, _folder(package) / f"{name}.py") - set(order[:position])
        assert not later, f"{package}.{name} imports {sorted(later)}, not before it"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_exports_each_modules_public_names(package: str) -> None:
    """``from PACKAGE import X`` works for every public name of every module (but those
    left out on purpose), and ``__all__`` lists it."""
    order, left_out = PACKAGES[package]
    top = importlib.import_module(package)
    for name in order:
        module = importlib.import_module(f"{package}.{name}")
        tree = ast.parse((_folder(package) / f"{name}.py").read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                public = node.name
            elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                public = node.targets[0].id
            else:
                continue
            if public.startswith("_") or public in left_out:
                continue
            assert getattr(top, public) is getattr(module, public), f"{package}.{public}"
            assert public in top.__all__, f"{package}.__all__ lacks {public}"
