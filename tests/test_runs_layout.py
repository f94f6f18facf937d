"""The ``eqprop.runs`` package imports in one direction: each module imports only modules
before it in :data:`ORDER` (a function-level import counts too), so no module can reach the
training loop, and the package lists every module."""

from __future__ import annotations

import ast
from pathlib import Path

import eqprop.runs

PACKAGE = Path(eqprop.runs.__file__).parent
#: the modules of eqprop.runs, each importing only those before it
ORDER = ("files", "build", "checks", "checkpoints", "directory", "progress", "train")


def _ours(path: Path) -> set[str]:
    """The modules of the package that ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eqprop.runs."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("eqprop.runs.")}
    return found


def test_the_order_lists_every_module():
    assert {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} == set(ORDER)


def test_no_module_imports_one_later_in_the_order():
    for position, name in enumerate(ORDER):
        later = _ours(PACKAGE / f"{name}.py") - set(ORDER[:position])
        assert not later, f"eqprop.runs.{name} imports {sorted(later)}, not before it"


def test_the_package_exports_each_modules_public_names():
    """``from eqprop.runs import X`` works for every public name of every module but the
    progress interval, which is patched where it is read (``eqprop.runs.progress``)."""
    import importlib

    for name in ORDER:
        module = importlib.import_module(f"eqprop.runs.{name}")
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                public = node.name
            elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                public = node.targets[0].id
            else:
                continue
            if public.startswith("_") or public == "PLAIN_PROGRESS_EVERY_S":
                continue
            assert getattr(eqprop.runs, public) is getattr(module, public), public
            assert public in eqprop.runs.__all__
