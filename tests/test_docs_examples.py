"""The Python examples of ``docs/api.md`` and the README run as written, and print what the
documentation shows after them: each ```` ```python ```` block, in a fresh interpreter with
one torch thread, against the ```` ```text ```` block that follows it (where one does). An
example that reads MNIST runs where the data directory is given (``EQPROP_DATA_DIR`` or
``--data-dir``) and skips otherwise.

As ``docs/api.md`` says, another processor may change the last digits: the text must be the
same but for decimal numbers, which may differ by up to 2 units of the last digit shown
(measured: an AMD EPYC with AVX2 printed 0.539 where the Intel Xeon with AVX512 that wrote
the docs printed 0.540). Integers, words, shapes and flags must match exactly."""

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
_DECIMAL = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")
_LAST_DIGITS = 2  # units of the last digit shown that a decimal number may move


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
        assert _differences(done.stdout, shown) == [], f"{doc}: printed\n{done.stdout}"


def _differences(printed: str, shown: str) -> list[str]:
    """The lines of ``printed`` that are not those of ``shown`` up to the last digits of their
    decimal numbers (module docs), each as ``printed != shown``."""
    got, want = printed.strip().splitlines(), shown.strip().splitlines()
    if len(got) != len(want):
        return [f"{len(got)} lines != {len(want)} lines"]
    return [f"{a!r} != {b!r}" for a, b in zip(got, want, strict=True) if not _same_line(a, b)]


def _same_line(got: str, want: str) -> bool:
    if _DECIMAL.split(got) != _DECIMAL.split(want):
        return False
    for a, b in zip(_DECIMAL.findall(got), _DECIMAL.findall(want), strict=True):
        mantissa, _, exponent = b.lower().partition("e")
        unit = 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))
        if abs(float(a) - float(b)) > _LAST_DIGITS * unit * (1 + 1e-9):
            return False
    return True


@pytest.mark.parametrize(
    ("printed", "shown", "same"),
    [
        ("epoch 1: train error 0.539", "epoch 1: train error 0.540", True),
        ("error 0.537", "error 0.540", False),  # 3 units of the last digit
        ("['0.02', '1.00']", "['0.01', '1.00']", True),
        ("[53, 9]", "[52, 9]", False),  # integers are exact
        ("[True, False]", "[True, True]", False),
        ("loss 1.5e-03", "loss 1.7e-03", True),
        ("(4, 501)", "(4, 501)\n(5,)", False),  # a line more or less
    ],
)
def test_printed_numbers_may_move_in_their_last_digits_only(printed, shown, same):
    assert (_differences(printed, shown) == []) is same
