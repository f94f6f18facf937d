"""A run directory as a whole: created atomically, locked while a process trains it,
stopped cleanly by a signal or a ``stop-request`` file."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from eqprop.config import FILE, RunConfig
from eqprop.data import Dataset
from eqprop.errors import EqpropError, Interrupted
from eqprop.runs.build import build_topology
from eqprop.runs.files import (
    CONFIG,
    DATA_SHA256,
    TOPOLOGY,
    _fsync_dir,
    _is_leftover,
    _writing,
    atomic_write,
    atomic_write_bytes,
    check_output_dir,
    check_path,
)

#: where a process that was building a new run directory ``NAME`` keeps it until it is
#: complete: ``.NAME.PID.start`` beside it (renamed to ``NAME`` when its config is written)
_STARTING = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.start$")


def require_tensorboard() -> type:
    """TensorBoard's ``SummaryWriter`` class; a one-line error if the extra is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise EqpropError(
            "--tensorboard needs the tensorboard package; install it with "
            "pip install 'eqprop[tensorboard]'"
        ) from None
    return SummaryWriter


#: the signals that stop a run cleanly: Ctrl-C, and what batch schedulers send at a job's
#: time limit (and machines at shutdown)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _deferred_stop() -> Iterator[list[int]]:
    """While active, a first SIGINT or SIGTERM only records its number (``flag[0]``) so that
    the caller can stop at a consistent point (after the batch under way, with a
    checkpoint); a second one raises :class:`~eqprop.errors.Interrupted` at once. A signal
    that is ignored (SIGINT in a background job of a non-interactive shell) stays ignored;
    outside the main thread, where handlers cannot be set, nothing is changed."""
    flag = [0]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame) -> None:
        if flag[0]:
            raise Interrupted(signum)
        flag[0] = signum
        again = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        tqdm.write(
            f"eqprop: {signal.Signals(signum).name} received; stopping after this batch with a "
            f"checkpoint ({again} again to stop at once)",
            file=sys.stderr,
        )

    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the run directory itself; refuse if another process
    holds it."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise EqpropError(f"cannot open the run directory {run_dir} ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EqpropError(
                f"{run_dir} is in use by another eqprop process (it holds the run's lock); "
                f"wait for it to finish or stop it, then resume"
            ) from None
        yield
    finally:
        os.close(fd)


def in_use(run_dir: str | Path) -> bool:
    """Whether a process is training the run in ``run_dir`` now (it holds the run's lock)."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_new_run_dir(run_dir: Path) -> None:
    """A one-line error if a new run cannot be created at ``run_dir``."""
    check_path(run_dir, "--out")
    if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
        raise EqpropError(f"--out {run_dir} is a file; give the path of a new run directory")
    if os.path.isdir(run_dir):
        try:
            names = [p.name for p in run_dir.iterdir()]
        except OSError as exc:
            raise EqpropError(
                f"cannot read {run_dir} ({exc.strerror}); choose another --out"
            ) from None
        if CONFIG in names or not all(_is_leftover(n) for n in names):
            raise EqpropError(
                f"run directory {run_dir} already exists; resume it with --resume {run_dir} "
                f"or choose another --out"
            )
    check_output_dir(run_dir)


def _own_inputs(config: RunConfig) -> dict[str, Callable[[BinaryIO], object]]:
    """What a new run directory records of its own data and topology files: the writer of
    each file (:data:`DATA_SHA256`, :data:`TOPOLOGY`) by name. Reads the files now, so that
    a problem with them is raised before anything is written."""
    from eqprop.userfiles import read_user_file

    writers: dict[str, Callable[[BinaryIO], object]] = {}
    if config.data.dataset == FILE:
        path = config.data.path
        digest = hashlib.sha256(read_user_file(path, "data file")).hexdigest()
        line = f"{digest}  {path}\n".encode()
        writers[DATA_SHA256] = lambda f: f.write(line)
    if config.topology.family == FILE:
        writers[TOPOLOGY] = build_topology(config).save
    return writers


def _check_same_data(run_dir: Path, data: Dataset) -> None:
    """A one-line error if the run's own data file is not the one it started on."""
    recorded = run_dir / DATA_SHA256
    if data.sha256 is None or not recorded.is_file():
        return
    started = recorded.read_text(errors="replace").partition(" ")[0]
    if started != data.sha256:
        raise EqpropError(
            f"data file {data.name} has changed since {run_dir} started (SHA-256 now "
            f"{data.sha256[:12]}..., at the start {started[:12]}...); restore the data the run "
            f"trained on, or start a new run on the new data"
        )


def start_run(config: RunConfig, run_dir: str | Path) -> Path:
    """Create a new run directory for ``config``; refuse to touch an existing one.

    The directory is built beside its final name (``.NAME.PID.start``) and renamed into place
    once its config is on disk, so a crash leaves either no run directory or a complete one.
    An empty directory, or one holding only the temporary files of an interrupted start, is
    taken over; leftovers of starts whose process is gone are removed. With own data or an
    own topology (``"file"``), the data file's SHA-256 and the topology are recorded too.
    """
    run_dir = Path(run_dir)
    check_new_run_dir(run_dir)
    own = _own_inputs(config)
    fix = "choose another --out"
    with _writing(run_dir, fix):
        parent = run_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        for other in parent.iterdir():
            match = _STARTING.match(other.name)
            if match and match["name"] == run_dir.name and not _pid_alive(int(match["pid"])):
                shutil.rmtree(other, ignore_errors=True)
        staging = parent / f".{run_dir.name}.{os.getpid()}.start"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            atomic_write_bytes(staging / CONFIG, config.to_toml().encode())
            for name, write in own.items():
                atomic_write(staging / name, write)
            if run_dir.is_dir():  # empty but for leftovers (checked): rename needs it empty
                for leftover in run_dir.iterdir():
                    leftover.unlink()
            os.rename(staging, run_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(parent)
    return run_dir
