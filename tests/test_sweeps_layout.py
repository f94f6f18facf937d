"""The ``eqprop.sweeps`` package imports in one direction: each module imports only modules
before it in :data:`ORDER` (the order its docstring draws), anywhere in its code (a
function-level import counts too), and only ``engine`` imports Ray. No Ray needed."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import eqprop.sweeps

PACKAGE = Path(eqprop.sweeps.__file__).parent
#: the modules of eqprop.sweeps, each importing only those before it
ORDER = ("tasks", "trial", "engine", "placement", "results", "spec", "command")


def _imported(path: Path) -> tuple[set[str], set[str]]:
    """The modules of the package that ``path`` imports, and the top-level packages it
    imports from outside (absolute or relative, at any depth of the code)."""
    ours, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from .x import y
                base = node.module or ""
                names = [f"eqprop.sweeps.{base or alias.name}" for alias in node.names]
            elif node.module == "eqprop.sweeps":
                names = [f"eqprop.sweeps.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            if name.startswith("eqprop.sweeps."):
                ours.add(name.split(".")[2])
            else:
                outside.add(name.split(".")[0])
    return ours, outside


def test_the_order_lists_every_module_and_matches_the_package_docstring():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules == set(ORDER)
    drawn = re.findall(r"^    ([a-z_]+) {2,}", eqprop.sweeps.__doc__ or "", re.MULTILINE)
    assert tuple(drawn) == ORDER


def test_no_module_imports_one_later_in_the_order():
    for position, name in enumerate(ORDER):
        ours, _ = _imported(PACKAGE / f"{name}.py")
        later = ours - set(ORDER[:position])
        assert not later, f"eqprop.sweeps.{name} imports {sorted(later)}, not before it"
    init_ours, _ = _imported(PACKAGE / "__init__.py")
    assert not init_ours


def test_only_the_engine_imports_ray():
    users = [name for name in ORDER if "ray" in _imported(PACKAGE / f"{name}.py")[1]]
    assert users == ["engine"]


def test_each_module_imports_in_a_fresh_interpreter_in_order():
    """Importing the modules one by one, in order, in a new process: each imports, and
    none pulls in a module later in the order."""
    script = f"""
import sys
order = {ORDER!r}
for i, name in enumerate(order):
    __import__(f"eqprop.sweeps.{{name}}")
    early = [m for m in order[i + 1 :] if f"eqprop.sweeps.{{m}}" in sys.modules]
    assert not early, f"importing {{name}} imported {{early}}"
    print(name)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=PACKAGE.parent.parent,  # this checkout's eqprop
    )
    assert done.returncode == 0, done.stderr
    assert tuple(done.stdout.split()) == ORDER
