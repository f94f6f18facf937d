"""The files of a run directory: their names, atomic writing, the checks of a path before
long work, and reading what a run wrote (its config, metrics and per-epoch arrays)."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from eqprop.config import RunConfig, from_dict, load_file
from eqprop.errors import ConfigError, EqpropError

CHECKPOINT = "checkpoint.pt"
#: the network of the epoch with the lowest held-out error so far
BEST = "best.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.toml"
RATES = "layer_rates"
STEPS = "free_steps"
#: the data directory the run was trained from (a resume without --data-dir reads it there)
DATA_DIR = "data_dir"
#: the SHA-256 of the run's own data file (``data.dataset = "file"``), recorded at its start
DATA_SHA256 = "data.sha256"
#: the run's own topology (``topology.family = "file"``), saved at its start
TOPOLOGY = "topology.npz"
#: a file that asks the process training the run to stop after its batch, with a checkpoint,
#: as SIGTERM does (how an experiment or sweep stops its Ray workers; ``touch`` works too)
STOP_REQUEST = "stop-request"


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, spaces collapsed, at most 160 characters."""
    return " ".join(str(exc).split("\n")[0].split())[:160]


def _os_error(exc: OSError, path: Path | str, fix: str) -> EqpropError:
    """A one-line error for a failed file operation on ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return EqpropError(f"no space left on the device of {path}; free some space, then {fix}")
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.EROFS:
        reason = "read-only file system"
    return EqpropError(f"cannot write {path} ({reason}); {fix}")


@contextlib.contextmanager
def _writing(path: Path | str, fix: str) -> Iterator[None]:
    """Turn an OSError of the block into a one-line error naming ``path`` and ``fix``."""
    try:
        yield
    except OSError as exc:
        failed = Path(exc.filename) if isinstance(exc.filename, str) else Path(path)
        if _is_leftover(failed.name):  # name the file, not its temporary copy
            failed = failed.with_name(failed.name[1 : -len(".tmp")])
        raise _os_error(exc, failed, fix) from None


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that a crash at any moment leaves either the old or the new one:
    ``write`` fills a temporary file, which is flushed, fsynced and renamed over ``path``,
    and the directory entry is fsynced. On any error the temporary file is removed and the
    error raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """:func:`atomic_write` of a bytes payload."""
    atomic_write(path, lambda f: f.write(payload))


def check_writable_file(path: str | os.PathLike, what: str = "--out") -> None:
    """A one-line error now, before long work, if ``path`` cannot be written later: it is
    empty, too long or a loop of links (:func:`check_path`), a directory or another thing
    that is not a regular file (writing into a FIFO would hang), or its directory is missing
    or not writable."""
    check_path(path, what)
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if os.path.isdir(path):
        raise EqpropError(f"{path} is a directory; give a file name such as {path / 'out.json'}")
    if os.path.exists(path) and not os.path.isfile(path):
        mode = os.stat(path).st_mode
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise EqpropError(f"{what} {path} is {kind}, not a file; give the path of a file")
    if not os.path.isdir(parent):
        raise EqpropError(f"the directory of {path} does not exist; create {parent} first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EqpropError(
            f"cannot write into {parent} (read-only or permission denied); choose another path"
        )


def check_path(path: str | os.PathLike, what: str) -> None:
    """A one-line error for a path no file can have: empty, a name longer than the
    filesystem allows, too long in all, or a loop of symbolic links."""
    from eqprop.data import path_problem

    if not os.fspath(path):
        raise EqpropError(f"{what} is empty; give a path")
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise EqpropError(f"{what} {path_problem(path)}; give another path") from None


def check_output_dir(path: Path, what: str = "--out", *, writable: bool = True) -> None:
    """A one-line error now if directory ``path`` can neither be used nor created: it is
    empty, too long or a loop of links (:func:`check_path`), a file, lies under a file, or
    (with ``writable``: where it will be written) it or the existing directory it would be
    created in is not writable."""
    check_path(path, what)
    path = Path(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise EqpropError(f"{what} {path} is a file, not a directory; give a directory path")
    existing = path
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not os.path.isdir(existing):
        raise EqpropError(
            f"{what} {path} lies under {existing}, which is a file; give a directory path"
        )
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        verb = "write into" if existing == path else f"create {path} in"
        raise EqpropError(
            f"cannot {verb} {existing} (read-only or permission denied); choose another {what}"
        )


def _parse_metrics(path: Path) -> tuple[list[dict], bool]:
    """The records of a metrics file and whether a torn last line (a write cut short) was
    dropped; a damaged line elsewhere is a one-line error."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return [], False
    except OSError as exc:
        raise EqpropError(f"cannot read {path} ({exc.strerror})") from None
    lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    records, torn = [], False
    for k, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("not an epoch record")
        except ValueError:
            if k == len(lines) - 1:
                torn = True  # an append cut short: the checkpoint has the truth
                break
            raise EqpropError(
                f"{path}: line {number} is damaged (not a JSON epoch record); delete that "
                f"line or restore the file"
            ) from None
        records.append(record)
    return records, torn


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run directory (a torn last line, a write cut short by a
    crash, is left out)."""
    return _parse_metrics(Path(run_dir) / METRICS)[0]


def _read_epochs(
    run_dir: str | Path, kind: str, empty: np.ndarray, up_to: int | None = None
) -> np.ndarray:
    """The per-batch arrays ``run_dir/kind/epoch_*.npy`` of all finished epochs (or of epochs
    ``1..up_to``), concatenated in epoch order (``empty`` when there are none)."""
    files = sorted((Path(run_dir) / kind).glob("epoch_*.npy"))
    if up_to is not None:
        files = [f for f in files if int(f.stem[len("epoch_") :]) <= up_to]
    arrays = []
    for f in files:
        try:
            arrays.append(np.load(f))
        except (OSError, ValueError, EOFError) as exc:
            raise EqpropError(
                f"{f} is damaged ({' '.join(str(exc).split())}); resume the run to rewrite it "
                f"or delete it"
            ) from None
    try:
        return np.concatenate(arrays) if arrays else empty
    except ValueError:
        raise EqpropError(
            f"the files in {Path(run_dir) / kind} do not fit together (shapes "
            f"{sorted({a.shape[1:] for a in arrays})}); they come from different runs"
        ) from None


def _save_epoch(run_dir: Path, kind: str, epoch: int, values: np.ndarray) -> None:
    atomic_write(run_dir / kind / f"epoch_{epoch:04d}.npy", functools.partial(np.save, arr=values))


def read_layer_rates(run_dir: str | Path, up_to: int | None = None) -> np.ndarray:
    """Per-batch per-layer rates of all finished epochs (or of epochs ``1..up_to``), shape
    ``(batches, pairs)``."""
    return _read_epochs(run_dir, RATES, np.zeros((0, 0), dtype=np.float32), up_to)


def read_free_steps(run_dir: str | Path) -> np.ndarray:
    """Free-phase steps of every batch of all finished epochs, shape ``(batches,)``."""
    return _read_epochs(run_dir, STEPS, np.zeros(0, dtype=np.int32))


def _is_leftover(name: str) -> bool:
    """A temporary file of an atomic write that a crash left behind."""
    return name.startswith(".") and name.endswith(".tmp")


def read_config(run_dir: str | Path) -> RunConfig:
    """The resolved configuration saved in a run directory."""
    check_path(run_dir, "the run directory")
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not os.path.lexists(run_dir):
        raise EqpropError(f"{run_dir} does not exist; pass a directory written by 'eqprop train'")
    if not os.path.isdir(run_dir):
        raise EqpropError(
            f"{run_dir} is a file, not a run directory; pass a directory written by 'eqprop train'"
        )
    if not os.path.lexists(path):
        try:
            names = [p.name for p in run_dir.iterdir()]
        except OSError as exc:
            raise EqpropError(f"cannot read the run directory {run_dir} ({exc.strerror})") from None
        if names and all(_is_leftover(n) for n in names):
            raise EqpropError(
                f"{run_dir} holds no {CONFIG}: its start was interrupted before the run was "
                f"saved; start it again with: eqprop train --out {run_dir} ..."
            )
        raise EqpropError(
            f"{run_dir} is not a run directory (no {CONFIG}); "
            f"pass a directory written by 'eqprop train'"
        )
    values = load_file(path)
    try:
        return from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: Path, fix: str) -> None:
    """A one-line error unless ``path`` is (or links to) a regular file: reading a FIFO or a
    device would hang or never end. ``fix`` ends the message."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise EqpropError(
                f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; {fix}"
            ) from None
        raise EqpropError(f"{path} does not exist; {fix}") from None
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            from eqprop.data import path_problem

            raise EqpropError(f"{path_problem(path)}; {fix}") from None
        raise EqpropError(f"cannot read {path} ({exc.strerror}); {fix}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise EqpropError(f"{path} is {kind}, not a file eqprop wrote; {fix}")


def _write_metrics(run_dir: Path, records: list[dict]) -> None:
    """``metrics.jsonl`` rewritten atomically (a crash leaves the old or the new file)."""
    payload = "".join(json.dumps(r) + "\n" for r in records).encode()
    atomic_write_bytes(run_dir / METRICS, payload)
