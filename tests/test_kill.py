"""SIGKILL at any moment, and a full disk, never cost a run more than its last batches: every
killed run resumes (or, killed before its directory was complete, starts again) and ends bit
for bit as the run that was never interrupted.

Twenty kills: twelve inside every kind of write (the config of a new run and of an extended
one, the moment the run directory appears, checkpoints, metrics, per-epoch arrays: half-way
through the temporary file, before its rename, after it), six at random moments of a run
(the first second included), and two in the first second of a ``python -m eqprop.cli``
process (its imports and start-up). The commands run in processes forked from one that
has imported eqprop (see ``test_cli_errors.CliServer``); the write kills are a hook in that
process that sends SIGKILL to itself at the chosen point.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli_errors import CliServer, serve

from eqprop.runs import read_free_steps, read_layer_rates

ARGS = [
    a
    for s in (
        "sizes=[64, 16, 10]",
        "limit=100",
        "n_free=10",
        "n_clamped=3",
        "batch_size=10",
        "epochs=3",
        "checkpoint_every=2",
    )
    for a in ("--set", s)
]

#: kills itself (SIGKILL) at the NTH atomic write of a file whose path ends with NAME, at
#: STAGE: "mid" (half the bytes in the temporary file, fsynced), "before-rename" or
#: "after-rename"; NAME "run-directory" is the rename that makes a new run directory appear
_HOOK = """
import io, os, signal
import eqprop.runs as runs
import eqprop.runs.checkpoints, eqprop.runs.directory, eqprop.runs.files

NAME, NTH, STAGE = {name!r}, {nth!r}, {stage!r}
seen = [0]
original_write, real_replace, real_rename = runs.atomic_write, os.replace, os.rename


def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)


def hooked(path, write):
    if not str(path).endswith(NAME):
        return original_write(path, write)
    seen[0] += 1
    if seen[0] != NTH:
        return original_write(path, write)
    if STAGE == "mid":
        def half(f):
            buffer = io.BytesIO()
            write(buffer)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            die()
        return original_write(path, half)
    if STAGE == "before-rename":
        os.replace = die
    else:
        os.replace = lambda a, b: (real_replace(a, b), die())
    return original_write(path, write)


def rename(a, b):
    real_rename(a, b)
    die()


if NAME == "run-directory":
    os.rename = rename
else:  # every module of the package that writes through it
    for module in (runs.files, runs.checkpoints, runs.directory):
        module.atomic_write = hooked
"""

#: simulated disk: every write through eqprop.runs fails with ENOSPC once BUDGET bytes
#: have been written (used where no small filesystem can be mounted)
_ENOSPC_HOOK = """
import builtins, errno, os
import eqprop.runs as runs
import eqprop.runs.files

BUDGET, written = {budget!r}, [0]


class Full:
    def __init__(self, f):
        self.f = f

    def write(self, data):
        written[0] += len(data)
        if written[0] > BUDGET:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.f.name)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def full_open(path, mode="r", *args, **kw):
    f = builtins.open(path, mode, *args, **kw)
    return Full(f) if "w" in mode or "a" in mode else f


runs.files.open = full_open  # atomic_write's open: every file a run writes
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "kill-logs")


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory) -> tuple[Path, float]:
    """The uninterrupted run, and how long it took."""
    where = tmp_path_factory.mktemp("reference")
    began = time.perf_counter()
    result = server.run(["train", "--quiet", "--out", "ref", *ARGS], where)
    assert result.rc == 0, result.err
    return where / "ref", time.perf_counter() - began


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


def _strip(records):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]


def assert_same_run(ref: Path, run: Path) -> None:
    """Bit-identical weights, particles, generator and metrics; nothing left over."""
    a, b = _checkpoint(ref), _checkpoint(run)
    ta, tb = a["trainer"], b["trainer"]
    for x, y in zip(ta["weights"], tb["weights"], strict=True):
        assert torch.equal(x, y)
    for key in ("biases", "particles", "generator"):
        assert torch.equal(ta[key], tb[key]), key
    assert (ta["epoch"], ta["position"], ta["counters"]) == (
        tb["epoch"],
        tb["position"],
        tb["counters"],
    )
    assert _strip(a["records"]) == _strip(b["records"])
    metrics = [[json.loads(line) for line in (r / "metrics.jsonl").open()] for r in (ref, run)]
    assert _strip(metrics[0]) == _strip(metrics[1])
    assert np.array_equal(read_layer_rates(ref), read_layer_rates(run))
    assert np.array_equal(read_free_steps(ref), read_free_steps(run))
    assert (ref / "config.toml").read_bytes() == (run / "config.toml").read_bytes()
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not [p for p in run.parent.iterdir() if p.name.endswith(".start")]


def recover(server: CliServer, where: Path, name: str, *resume: str) -> None:
    """What a user does after the kill: resume the run, or start it again where the kill
    came before the run directory was complete (then there is none)."""
    if (where / name).exists():
        assert (where / name / "config.toml").exists(), "a run directory without its config"
        result = server.run(["train", "--quiet", "--resume", name, *resume], where)
    else:
        result = server.run(["train", "--quiet", "--out", name, *ARGS], where)
    assert result.rc == 0, result.err
    assert "Traceback" not in result.err


WRITE_KILLS = [
    ("config.toml", 1, "mid"),
    ("config.toml", 1, "before-rename"),
    ("run-directory", 1, "after"),
    ("checkpoint.pt", 1, "mid"),
    ("checkpoint.pt", 3, "before-rename"),
    ("checkpoint.pt", 6, "after-rename"),
    ("metrics.jsonl", 2, "mid"),
    ("metrics.jsonl", 3, "before-rename"),
    ("layer_rates/epoch_0002.npy", 1, "mid"),
    ("free_steps/epoch_0001.npy", 1, "after-rename"),
]


@pytest.mark.parametrize("name, nth, stage", WRITE_KILLS)
def test_a_kill_inside_a_write_resumes_bit_for_bit(server, reference, tmp_path, name, nth, stage):
    ref, _ = reference
    hook = _HOOK.format(name=name, nth=nth, stage=stage)
    killed = server.run(["train", "--quiet", "--out", "run", *ARGS], tmp_path, hook=hook)
    assert killed.rc == -signal.SIGKILL, killed.err
    recover(server, tmp_path, "run")
    assert_same_run(ref, tmp_path / "run")


@pytest.mark.parametrize("stage", ["mid", "after-rename"])
def test_a_kill_while_extending_a_run_resumes_bit_for_bit(server, reference, tmp_path, stage):
    ref, _ = reference
    two = [a.replace("epochs=3", "epochs=2") for a in ARGS]  # one value per key
    assert server.run(["train", "--quiet", "--out", "run", *two], tmp_path).rc == 0
    hook = _HOOK.format(name="config.toml", nth=1, stage=stage)
    extend = ["train", "--quiet", "--resume", "run", "--set", "epochs=3"]
    killed = server.run(extend, tmp_path, hook=hook)
    assert killed.rc == -signal.SIGKILL, killed.err
    recover(server, tmp_path, "run", "--set", "epochs=3")
    assert_same_run(ref, tmp_path / "run")


@pytest.mark.parametrize("seed", range(6))
def test_a_kill_at_a_random_moment_resumes_bit_for_bit(server, reference, tmp_path, seed):
    ref, duration = reference
    rng = random.Random(seed)
    delay = rng.uniform(0.0, 1.0) if seed < 2 else rng.uniform(0.0, duration)
    handle = server.start(["train", "--quiet", "--out", "run", *ARGS], tmp_path)
    time.sleep(delay)
    try:
        os.kill(handle.pid, signal.SIGKILL)
    except ProcessLookupError:  # it had finished: then it must be complete
        pass
    handle.wait()
    recover(server, tmp_path, "run")
    assert_same_run(ref, tmp_path / "run")


#: a longer run for the SIGTERM cases, so that the signal lands while it trains
LONG = [a.replace("epochs=3", "epochs=12") for a in ARGS]


@pytest.fixture(scope="module")
def long_reference(server, tmp_path_factory) -> Path:
    """The uninterrupted run of :data:`LONG`."""
    where = tmp_path_factory.mktemp("long-reference")
    result = server.run(["train", "--quiet", "--out", "ref", *LONG], where)
    assert result.rc == 0, result.err
    return where / "ref"


@pytest.mark.parametrize("seed", range(4))
def test_sigterm_at_a_random_moment_stops_with_a_checkpoint_and_resumes_bit_for_bit(
    server, long_reference, tmp_path, seed
):
    """What a batch scheduler sends at a job's time limit: the batch under way finishes, the
    checkpoint is written, exit 143; the resumed run ends as the uninterrupted one."""
    rng = random.Random(200 + seed)
    after = rng.randint(1, 6)  # epochs finished before the signal, then a random moment
    handle = server.start(["train", "--quiet", "--out", "run", *LONG], tmp_path)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        not metrics.exists() or metrics.read_bytes().count(b"\n") < after
    ):
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.05))
    os.kill(handle.pid, signal.SIGTERM)
    result = handle.wait()
    assert result.rc == 143, result.err
    assert result.lines[-1] == (
        "eqprop: stopped by SIGTERM; continue with: eqprop train --resume run"
    )
    assert _checkpoint(tmp_path / "run")["trainer"]["epoch"] < 12
    recover(server, tmp_path, "run")
    assert_same_run(long_reference, tmp_path / "run")


@pytest.mark.parametrize("seed", range(2))
def test_a_kill_in_the_first_second_of_the_process_restarts_cleanly(
    server, reference, tmp_path, seed
):
    ref, _ = reference
    process = CliServer(server.logs, real=True)
    handle = process.start(["train", "--quiet", "--out", "run", *ARGS], tmp_path)
    time.sleep(random.Random(100 + seed).uniform(0.0, 1.0))
    handle.real.send_signal(signal.SIGKILL)
    handle.wait()
    recover(server, tmp_path, "run")
    assert_same_run(ref, tmp_path / "run")


def _mount_tmpfs(path: Path, size: int) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_full_disk_mid_run_is_one_line_and_resumes_bit_for_bit(server, reference, tmp_path):
    """A small tmpfs, filled so that the run runs out of space after its first checkpoint;
    where no filesystem can be mounted (not root), ENOSPC is simulated in the writing
    process instead."""
    ref, _ = reference
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _mount_tmpfs(disk, 2**20)
    try:
        hook = None
        if mounted:
            empty = _free(disk)
            shutil.copytree(ref, disk / "probe")  # what a finished run occupies
            needed = empty - _free(disk)
            shutil.rmtree(disk / "probe")
            ballast = disk / "ballast"
            ballast.write_bytes(b"\0" * (empty - needed + 8192))  # two pages short
        else:
            size = (ref / "checkpoint.pt").stat().st_size
            hook = _ENOSPC_HOOK.format(budget=3 * size)
        full = server.run(["train", "--quiet", "--out", "disk/run", *ARGS], tmp_path, hook=hook)
        assert full.rc == 2, full.err
        assert "Traceback" not in full.err
        last = [line for line in full.err.splitlines() if line.strip()][-1]
        assert last.startswith("eqprop: error: no space left on the device of disk/run"), last
        assert last.endswith("then continue with: eqprop train --resume disk/run"), last
        assert (disk / "run" / "checkpoint.pt").exists()
        assert not [p for p in (disk / "run").rglob("*") if p.name.endswith(".tmp")]
        if mounted:
            ballast.unlink()  # space is freed
        resumed = server.run(["train", "--quiet", "--resume", "disk/run"], tmp_path)
        assert resumed.rc == 0, resumed.err
        assert_same_run(ref, disk / "run")
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=True)
