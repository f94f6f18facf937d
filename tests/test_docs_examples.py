"""The Python examples of ``docs/api.md`` and the README run as written, and print what the
documentation shows after them: each ```` ```python ```` block, in a fresh interpreter with
one torch thread, against the ```` ```text ```` block that follows it (where one does). An
example that reads MNIST runs where the data directory is given (``EQPROP_DATA_DIR`` or
``--data-dir``) and skips otherwise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("docs/api.md", "README.md")
_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _examples() -> list:
    """``(doc, index, code, shown)`` of every python block; ``shown`` is the text block
    right after it (None if the next block is not one)."""
    found = []
    for doc in DOCS:
        blocks = _BLOCK.findall((ROOT / doc).read_text())
        python = 0
        for k, (kind, code) in enumerate(blocks):
            if kind != "python":
                continue
            after = blocks[k + 1] if k + 1 < len(blocks) else ("", "")
            shown = after[1] if after[0] == "text" else None
            found.append(pytest.param(doc, code, shown, id=f"{doc}:{python}"))
            python += 1
    return found


def test_every_api_section_has_examples():
    """Guards the collection: a change of the fence style would silently test nothing."""
    assert len([p for p in _examples() if p.values[0] == "docs/api.md"]) >= 12


@pytest.mark.parametrize(("doc", "code", "shown"), _examples())
def test_the_example_runs_and_prints_what_the_docs_show(doc, code, shown, request, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if '"mnist"' in code or '"fashion-mnist"' in code:
        data_dir = request.getfixturevalue("real_data_dir")  # skips without the data
        env["EQPROP_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # examples that write files write them here
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{doc}: the example failed:\n{done.stderr[-2000:]}"
    if shown is not None:
        assert done.stdout.strip().splitlines() == shown.strip().splitlines()
