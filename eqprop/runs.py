"""Run directories: a training run that is saved as it goes and resumes exactly.

A run directory holds:

- ``config.toml``: the resolved configuration (every field);
- ``metrics.jsonl``: one JSON line per epoch (training and evaluation error, mean per-layer
  rates, mean free steps per batch, relaxation steps, wall time, and the update's own
  measurements: with ``update.bits``, the fractions of updates lost to rounding,
  :meth:`eqprop.quantization.QuantizedSGD.epoch_metrics`);
- ``layer_rates/epoch_NNNN.npy``: the per-batch per-layer rates (eq. 2) of each epoch,
  float32, shape ``(batches, pairs)``;
- ``free_steps/epoch_NNNN.npy``: the free-phase steps of every batch of each epoch, int32
  (``n_free`` everywhere unless adaptive relaxation, ``tol``, is on);
- ``tensorboard/``: TensorBoard event files, when asked for (``--tensorboard``);
- ``data_dir``: the data directory the run was last trained from (MNIST and Fashion-MNIST);
  a resume given neither ``--data-dir`` nor ``$EQPROP_DATA_DIR`` reads its data there;
- ``data.sha256``: with your own data (``data.dataset = "file"``), the SHA-256 of the data file
  when the run started (``sha256sum`` format); a resume on a file with other content is refused;
- ``topology.npz``: with your own topology (``topology.family = "file"``), the topology read
  from the edge-list file when the run started (:meth:`~eqprop.topology.Topology.save`); the run
  resumes from it, so the original file is no longer needed;
- ``best.pt``: the network of the epoch with the lowest held-out error so far, with its
  epoch, the config it was trained with and a SHA-256 of all of them;
- ``checkpoint.pt``: the trainer's complete state, the metrics of the finished epochs, the
  resolved config it was trained with (its TOML text and the SHA-256 of that) and a SHA-256
  of all of them, written atomically (temporary file, fsync, rename) every
  ``checkpoint_every`` batches, at the end of every epoch, and when the run is stopped by
  Ctrl-C (SIGINT) or SIGTERM (a batch scheduler's time limit, a shutdown): the batch under
  way finishes, the checkpoint is written, and :class:`~eqprop.errors.Interrupted` (a
  :class:`KeyboardInterrupt`) is raised; a second signal stops at once, keeping the last
  checkpoint. A file ``stop-request`` in the run directory asks the same (it is how a sweep or
  an experiment on Ray stops its workers; it is removed once honoured, and one left from
  before the process started is dropped).

Every file is written atomically, so a crash (SIGKILL, power loss, a full disk) leaves either
its old or its new version. A new run directory appears complete (with its ``config.toml``) or
not at all. The checkpoint is the source of truth: resuming verifies it (its zip CRCs, its
stored checksum, that the config it records is the run's ``config.toml`` but for a longer
``train.epochs``, that its shapes fit), loads it with ``weights_only=True`` (a checkpoint
cannot run code), verifies ``best.pt`` alike, rewrites ``metrics.jsonl`` from the metrics it
holds and drops any per-epoch file written after it, so a run killed at any moment and
resumed ends with the same weights and metrics as one never interrupted. An epoch's record
reaches ``metrics.jsonl`` only after the checkpoint that holds it: a directory whose metrics
hold finished epochs but whose checkpoint is gone is refused, and only one that never
reached its first checkpoint (or lost it before finishing an epoch) starts again from the
beginning, with a note saying so. A process training a run
holds a lock on its directory (``flock``); a second one is refused.

Every check that can fail (config, device, data, layer sizes against the data, memory, the
checkpoint) runs before anything is written; every write that fails (a full disk, a read-only
directory) is one line naming the path and the fix (:class:`~eqprop.errors.EqpropError`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import stat
import struct
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from eqprop import arithmetic
from eqprop import topology as topo
from eqprop.config import (
    CONV,
    FILE,
    MASKED_SGD,
    RunConfig,
    flat_items,
    from_dict,
    load_file,
    parse_toml,
)
from eqprop.conv import ConvNetwork, ConvSGD
from eqprop.data import Dataset, load_dataset, load_npz
from eqprop.errors import ConfigError, DivergenceError, EqpropError, Interrupted
from eqprop.metrics import (
    TEST_ERROR,
    VALID_ERROR,
    held_out_error,
    held_out_key,
    held_out_label,
)
from eqprop.network import EnergyNetwork, Network
from eqprop.quantization import QuantizedSGD, rounding_seed
from eqprop.relaxation.cuda_graph import CudaGraphs
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import DeadOutputMonitor, Trainer
from eqprop.updates import MaskedSGD, OptimizerUpdate, Update

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
#: where a process that was building a new run directory ``NAME`` keeps it until it is
#: complete: ``.NAME.PID.start`` beside it (renamed to ``NAME`` when its config is written)
_STARTING = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.start$")
#: a plain progress line at most this often (seconds) when stderr is not a terminal
PLAIN_PROGRESS_EVERY_S = 30.0


def build_topology(config: RunConfig) -> topo.Topology:
    """The topology a config describes (a fully connected family; a conv network has none)."""
    section = config.topology
    if section.family == CONV:
        raise ConfigError(
            f"topology.family = {CONV!r} is a convolutional network, not a topology of edges; "
            f"its layers are in topology.input_shape, channels, kernels, paddings, pools, sizes"
        )
    if section.family == "layered":
        return topo.layered(section.sizes)
    if section.family == FILE:
        return topo.Topology.from_edge_file(section.sizes, section.path)
    if section.family == "rewired":
        return topo.rewired(section.sizes, section.p, seed=section.seed)
    return topo.icons(
        section.sizes,
        n=section.n,
        p=section.p,
        mode="add" if section.family == "icons-add" else "replace",
        p_formula=section.p_formula,
        seed=section.seed,
    )


def run_topology(config: RunConfig, run_dir: str | Path | None = None) -> topo.Topology | None:
    """The topology of a run: for ``topology.family = "file"``, the copy saved in ``run_dir``
    (:data:`TOPOLOGY`) when there is one, so that the original file is no longer needed;
    None for a conv network; otherwise the one the config describes
    (:func:`build_topology`)."""
    if config.topology.family == CONV:
        return None
    saved = None if run_dir is None else Path(run_dir) / TOPOLOGY
    if config.topology.family != FILE or saved is None or not os.path.lexists(saved):
        return build_topology(config)
    fix = "restore it from a copy of the run directory"
    check_regular_file(saved, fix)
    try:
        topology = topo.Topology.load(saved)
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise EqpropError(f"{saved} is damaged ({_first_line(exc)}); {fix}") from None
    if topology.sizes != config.topology.sizes:
        raise EqpropError(
            f"{saved} has layer sizes {list(topology.sizes)} but {saved.parent / CONFIG} has "
            f"{list(config.topology.sizes)}; the file belongs to another run: {fix}"
        )
    return topology


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, spaces collapsed, at most 160 characters."""
    return " ".join(str(exc).split("\n")[0].split())[:160]


def build_network(
    config: RunConfig, topology: topo.Topology | None = None
) -> Network | ConvNetwork:
    """The initial network a config describes: a :class:`~eqprop.network.Network` on
    ``topology`` (absent: the config's, :func:`build_topology`), or with ``topology.family =
    "conv"`` a :class:`~eqprop.conv.ConvNetwork` (``topology`` unused)."""
    train = config.train
    if train.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {train.device!r} requested but no CUDA GPU is available; use --device cpu"
        )
    section = config.topology
    if section.family == CONV:
        return ConvNetwork(
            section.input_shape,
            section.conv_blocks(),
            section.sizes,
            seed=train.seed,
            dtype=getattr(torch, train.dtype),
            device=train.device,
            activation=config.network.build(),
        )
    return Network(
        topology if topology is not None else build_topology(config),
        a=config.topology.a,
        seed=train.seed,
        layout=train.layout,
        dtype=getattr(torch, train.dtype),
        device=train.device,
        activation=config.network.build(),
    )


def build_update(config: RunConfig, network: EnergyNetwork) -> Update:
    """The update a config describes: the built-in masked SGD (on a conv network
    :class:`~eqprop.conv.ConvSGD`, the same rule without masks), or a ``torch.optim``
    optimiser (with ``update.lr`` and ``update.optimizer_args``) through ``.grad``; with
    ``update.bits``, masked SGD on a ``k``-bit grid
    (:class:`~eqprop.quantization.QuantizedSGD`, which rounds the initial weights)."""
    section = config.update
    quantization = section.quantization()
    if quantization is not None:
        seed = rounding_seed(config.train.seed)
        return QuantizedSGD(network, section.rates(), quantization, seed)
    if section.optimizer == MASKED_SGD:
        if isinstance(network, ConvNetwork):
            return ConvSGD(network, section.rates())
        return MaskedSGD(network, section.rates())
    optimizer = getattr(torch.optim, section.optimizer)
    kwargs = section.optimizer_kwargs()
    return OptimizerUpdate(network, lambda params: optimizer(params, **kwargs))


def build_trainer(config: RunConfig, network: EnergyNetwork, n_train: int) -> Trainer:
    """The trainer (relaxers, nudging, estimator, update, particles, generator) a config
    describes. Fixed-step phases run as CUDA graphs on a GPU (:class:`CudaGraphs`)."""
    free, nudged = config.free.build(), config.nudged.build()
    if isinstance(free, FixedSteps):
        free = CudaGraphs(free.eps, free.steps)
    return Trainer(
        network,
        config.estimator.build(),
        build_update(config, network),
        free=free,
        nudged=CudaGraphs(nudged.eps, nudged.steps),
        nudging=config.nudged.scheme(network),
        n_train=n_train,
        batch_size=config.train.batch_size,
        persistent=config.train.persistent,
        batch_order=config.train.batch_order,
        seed=config.train.seed,
        remove_after=config.topology.remove_after,
    )


def load_data(config: RunConfig, data_dir: str | Path | None) -> Dataset:
    """The dataset a config trains on (``data_dir`` is where MNIST-like files are; own data
    is read from ``data.path``)."""
    data = config.data
    if data.dataset == FILE:
        return load_npz(data.path, limit=data.limit)
    return load_dataset(data.dataset, data.split, data_dir, limit=data.limit)


# -- checks that run before anything is written ---------------------------------------------
def check_device(device: str, fix: str = "--device cpu") -> None:
    """A one-line error if ``device`` (``cpu``, ``cuda``, ``cuda:N``) is not on this machine;
    ``fix``: the option that asks for the CPU instead."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is available; use {fix}")
    index = device.partition(":")[2]
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ConfigError(
            f"device {device!r} requested but this machine has {count} CUDA GPU(s) "
            f"(cuda:0 to cuda:{count - 1}); choose one of those"
        )


def _available_memory(device: str) -> int | None:
    """Bytes of memory a run on ``device`` can use at most (None when unknown)."""
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    with contextlib.suppress(OSError, ValueError):  # a container's limit, when lower
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def memory_lower_bound(config: RunConfig, n_train: int, n_held: int) -> int:
    """Bytes that a run of ``config`` needs at the very least: its edge list, the weights and
    masks of its adjacent-layer (and, for ICONS, intralayer) edges (a conv network: its
    kernels and matrices), and its particles."""
    section = config.topology
    sizes = section.layer_sizes()
    itemsize = 8 if config.train.dtype == "float64" else 4
    if section.family == CONV:
        weights = section.conv_weights() * itemsize
        return weights + _particles(config, sum(sizes[1:]), n_train, n_held, itemsize)
    if section.family.startswith("icons"):
        edges = topo.base_counts(sizes)[0]
    else:
        edges = topo.layered_edge_count(sizes)
    return edges * (16 + 2 * itemsize) + _particles(
        config, sum(sizes[1:]), n_train, n_held, itemsize
    )


def _particles(config: RunConfig, n_state: int, n_train: int, n_held: int, itemsize: int) -> int:
    """Bytes of the persistent particles of ``n_train`` training and ``n_held`` held-out
    examples (those the config keeps)."""
    particles = n_train * n_state if config.train.persistent else 0
    particles += n_held * n_state if config.train.test_persistent else 0
    return particles * itemsize


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_run(
    config: RunConfig, options: RunOptions | None = None, run_dir: str | Path | None = None
) -> Dataset:
    """Everything about ``config`` that can only be checked against this machine and the data:
    the device, the data files, an own topology's file (or its copy in ``run_dir``), the
    layer sizes against the data's input width and classes, and the memory it needs at
    least. One-line :class:`~eqprop.errors.EqpropError` on a problem; returns the dataset.
    Runs before a run directory is created or changed."""
    options = options or RunOptions()
    check_device(config.train.device)
    if config.topology.family == FILE:
        run_topology(config, run_dir)
    available = _available_memory(config.train.device)
    if available is not None:  # before the data: a network that cannot fit at all
        need = memory_lower_bound(config, 0, 0)
        if need > available:
            raise ConfigError(_memory_message(config, need, available))
    data = load_data(config, options.data_dir)
    check_data_fits(config, data)
    if available is not None:
        need = memory_lower_bound(config, len(data.train), len(data.held_out))
        if need > available:
            raise ConfigError(_memory_message(config, need, available))
    return data


def check_data_fits(config: RunConfig, data: Dataset) -> None:
    """A one-line ConfigError unless ``config``'s network takes ``data``: a fully connected
    one its input width and classes, a conv one its image shape and classes."""
    if config.topology.family == CONV:
        _check_conv_data(config, data)
    else:
        _check_sizes(config, data)


def _check_sizes(config: RunConfig, data: Dataset) -> None:
    """A fully connected network's input and output layers against the data."""
    sizes = config.topology.sizes
    shown = ", ".join(str(s) for s in sizes[1:-1]) or "..."
    fix = f"use --set topology.sizes=[{data.n_features}, {shown}, {data.n_classes}]"
    if sizes[0] != data.n_features:
        raise ConfigError(
            f"topology.sizes starts with {sizes[0]} inputs but {data.name} has "
            f"{data.n_features} features per example; {fix}"
        )
    if sizes[-1] != data.n_classes:
        raise ConfigError(
            f"topology.sizes ends with {sizes[-1]} outputs but {data.name} has "
            f"{data.n_classes} classes; {fix}"
        )


def image_shape(data: Dataset) -> tuple[int, ...]:
    """The ``(C, H, W)`` shape of the data's examples as a conv network reads them (flat, in
    that order): its ``image_shape`` with one channel added to a ``(H, W)`` one; a flat
    ``(features,)`` shape as it is (any ``C x H x W`` of that many values fits)."""
    shape = tuple(data.image_shape)
    return (1, *shape) if len(shape) == 2 else shape


def _check_conv_data(config: RunConfig, data: Dataset) -> None:
    """A conv network's ``input_shape`` and output layer against the data."""
    section = config.topology
    wanted = list(section.input_shape)
    shape = image_shape(data)
    fits = len(shape) == 1 and math.prod(wanted) == shape[0]
    if not fits and tuple(wanted) != shape:
        fix = (
            f"use --set topology.input_shape=[{','.join(map(str, shape))}]"
            if len(shape) == 3
            else f"set topology.input_shape to a [C, H, W] of {data.n_features} values"
        )
        raise ConfigError(
            f"topology.input_shape = {wanted} but {data.name} has images of shape "
            f"{'x'.join(map(str, data.image_shape))} ({data.n_features} values); {fix}"
        )
    if section.sizes[-1] != data.n_classes:
        dense = [*section.sizes[:-1], data.n_classes]
        raise ConfigError(
            f"topology.sizes ends with {section.sizes[-1]} outputs but {data.name} has "
            f"{data.n_classes} classes; use --set topology.sizes={str(dense).replace(' ', '')}"
        )


def _memory_message(config: RunConfig, need: int, available: int) -> str:
    device = config.train.device
    what = f"topology.sizes {list(config.topology.sizes)}"
    if config.topology.family == CONV:
        what = "the conv network of topology.input_shape, channels and sizes"
    return (
        f"{what} needs at least {_gib(need)} of memory "
        f"for its weights and particles but {device} has {_gib(available)}; use smaller "
        f"layers (or a smaller data.limit)"
    )


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


# -- writing --------------------------------------------------------------------------------
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


# -- reading --------------------------------------------------------------------------------
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


# -- checkpoints ----------------------------------------------------------------------------
def _feed(h, value) -> None:
    """Feed a canonical encoding of a checkpoint value into hash ``h``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}|".encode())
        for key in sorted(value, key=str):
            _feed(h, str(key))
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}|".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, str):
        data = value.encode()
        h.update(f"S{len(data)}|".encode() + data)
    elif isinstance(value, bool):
        h.update(b"B1" if value else b"B0")
    elif isinstance(value, int):
        h.update(f"I{value}|".encode())
    elif isinstance(value, float):
        h.update(b"F" + struct.pack(">d", value))
    elif value is None:
        h.update(b"N")
    else:
        raise TypeError(f"cannot checksum a {type(value).__name__} in a checkpoint")


def state_digest(state: dict) -> str:
    """SHA-256 of a checkpoint's content (every tensor's bytes, every number), independent of
    how ``torch.save`` lays the file out."""
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` with its :func:`state_digest` atomically to ``path``."""
    buffer = io.BytesIO()  # serialised first: a failing write is then a plain OSError
    torch.save({**state, "digest": state_digest(state)}, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def config_digest(config: RunConfig) -> str:
    """SHA-256 of the resolved config (its TOML text, as ``config.toml`` holds it)."""
    return hashlib.sha256(config.to_toml().encode()).hexdigest()


def config_record(config: RunConfig) -> dict[str, str]:
    """What a checkpoint and ``best.pt`` record of the config they were trained with: its
    TOML text (``config``) and its :func:`config_digest` (``config_sha256``)."""
    return {"config": config.to_toml(), "config_sha256": config_digest(config)}


def save_best(
    path: Path, network: EnergyNetwork, epoch: int, held_out: dict[str, float], config: RunConfig
) -> None:
    """Write the network's weights (``state_dict``) with the epoch, its held-out error
    ``held_out`` (one item: the error under the key the run's records hold it,
    :func:`~eqprop.metrics.held_out_key`) and the config it was trained with
    (:func:`config_record`), and a SHA-256 of all of them as a checkpoint has
    (:func:`state_digest`), atomically."""
    payload = {
        "network": network.state_dict(),
        "epoch": epoch,
        **held_out,
        **config_record(config),
    }
    save_checkpoint(path, payload)


def start_over(run_dir: Path) -> str:
    """The command that trains a run's config again from the start, in a new directory."""
    return f"start the run over with: eqprop train --config {run_dir / CONFIG} --out NEW_DIR"


def _damaged(path: Path, why: str, fix: str) -> EqpropError:
    return EqpropError(f"{path} is damaged ({why}); {fix}")


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


#: the fix for a damaged checkpoint outside a run directory of ``eqprop train`` (a baseline's)
_RETRAIN = "delete it to train the run again from the start"
#: the fix for a damaged ``best.pt``
_BEST_FIX = (
    "restore it from a copy, or delete it (the next epoch better than all before writes it again)"
)


def _load_verified(path: Path, what: str, fix: str) -> dict:
    """The content of ``path`` (a ``what``: a checkpoint or ``best.pt``), verified: a regular
    file, its zip CRCs, then (where it has one; older files do not) its stored checksum;
    loaded with ``weights_only=True``, so a crafted file cannot run code. One-line
    :class:`~eqprop.errors.EqpropError` ending with ``fix`` otherwise."""
    check_regular_file(path, fix)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise _damaged(path, f"not a complete {what} archive: {exc}", fix) from None
    except OSError as exc:
        raise EqpropError(f"cannot read {path} ({exc.strerror}); {fix}") from None
    if bad is not None:
        raise _damaged(path, f"CRC mismatch in {bad}", fix)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error: not a checkpoint, or one that runs code
        first = " ".join(str(exc).split("\n")[0].split())[:160]
        raise EqpropError(
            f"{path} is not an eqprop {what} (it holds something else than tensors and "
            f"numbers: {first}); {fix}"
        ) from None
    if not isinstance(state, dict):
        raise EqpropError(f"{path} is not an eqprop {what} (not a dictionary); {fix}")
    digest = state.pop("digest", None)
    if digest is not None and digest != state_digest(state):
        raise _damaged(path, "its content does not match its stored checksum", fix)
    return state


def load_checkpoint(path: str | Path, fix: str = _RETRAIN) -> dict:
    """The verified content of a checkpoint (:func:`_load_verified`); ``fix`` ends a
    one-line :class:`~eqprop.errors.EqpropError`."""
    path = Path(path)
    state = _load_verified(path, "checkpoint", fix)
    if not isinstance(state.get("trainer"), dict):
        raise EqpropError(f"{path} is not an eqprop checkpoint (no trainer state); {fix}")
    return state


def not_fitting(path: Path, detail: str) -> EqpropError:
    """The one-line error for a checkpoint or ``best.pt`` at ``path`` that does not fit its
    run's ``config.toml``; ``detail`` (``": ..."`` or ``" (...)"``) says how."""
    config = path.parent / CONFIG
    return EqpropError(
        f"{path} does not fit {config}{detail}; {config} was edited or {path.name} is another "
        f"run's: restore the run's own files, or {start_over(path.parent)}"
    )


#: the keys a resume may change: the run's length and where it computes
RESUME_MAY_CHANGE = ("train.epochs", "train.device")


def check_trained_with(path: Path, saved: dict, config: RunConfig) -> None:
    """A one-line error naming the keys (with both values) in which the config a checkpoint
    or ``best.pt`` (``saved``, read from ``path``) records differs from ``config``, the run's
    ``config.toml``. ``train.epochs`` may differ: a resume may extend a run; so may
    ``train.device``: it says where the run computes, not what (a resume elsewhere says once
    that the rounding then differs). Files written before eqprop recorded the config (no
    ``config_sha256``) are not checked: they resume as before, with their shapes still
    checked against the config."""
    digest = saved.get("config_sha256")
    if digest is None or digest == config_digest(config):
        return
    try:
        recorded = flat_items(from_dict(parse_toml(saved["config"], str(path))))
    except (KeyError, TypeError, ConfigError) as exc:
        raise EqpropError(
            f"{path} records a config this eqprop cannot read ({exc}); it was written by "
            f"another version of eqprop: resume it with that version"
        ) from None
    current = flat_items(config)
    keys = [
        key
        for key in sorted(set(recorded) | set(current))
        if key not in RESUME_MAY_CHANGE and recorded.get(key) != current.get(key)
    ]
    if not keys:
        return

    def value(values: dict, key: str) -> str:
        text = repr(values[key]) if key in values else "unset"
        return text if len(text) <= 60 else f"{text[:56]}..."

    shown = ", ".join(
        f"{key} is {value(recorded, key)} in {path.name} but {value(current, key)} in {CONFIG}"
        for key in keys[:4]
    )
    more = f" (and {len(keys) - 4} more keys)" if len(keys) > 4 else ""
    raise not_fitting(path, f": {shown}{more}")


_TRAINER_KEYS = ("weights", "biases", "particles", "generator", "epoch", "order", "position")


def _check_state(
    path: Path, state: dict, config: RunConfig, n_train: int | None, n_held: int | None
) -> None:
    """The checkpoint fits the config: the shapes of biases and (given the data's sizes
    ``n_train`` and ``n_held``) of the particles, the counters."""
    trainer = state["trainer"]
    missing = [k for k in (*_TRAINER_KEYS, "counters", "epoch_rates", "epoch_steps")
               if k not in trainer]  # fmt: skip
    if missing or "wall" not in state:
        raise EqpropError(f"{path} is not an eqprop checkpoint (no {(missing or ['wall'])[0]})")
    shapes = config.topology.layer_shapes()
    n_state = sum(math.prod(shape) for shape in shapes[1:])
    n_biases = sum(shape[0] for shape in shapes[1:])  # one per channel of a conv layer
    expected = {"biases": (trainer["biases"], (n_biases,))}
    if n_train is not None and n_held is not None:
        expected["particles"] = (
            trainer["particles"],
            (n_train, n_state) if config.train.persistent else None,
        )
        expected["test particles"] = (
            state.get("test_particles"),
            (n_held, n_state) if config.train.test_persistent else None,
        )
    for name, (value, shape) in expected.items():
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else value
        if got != shape:
            raise not_fitting(path, f" ({name} of shape {got}, the config needs {shape})")
    epoch, position = trainer["epoch"], trainer["position"]
    if not (isinstance(epoch, int) and isinstance(position, int) and epoch >= 0 <= position):
        raise EqpropError(f"{path} is not an eqprop checkpoint (epoch {epoch!r})")


def read_checkpoint(
    run_dir: Path, config: RunConfig, n_train: int | None = None, n_held: int | None = None
) -> dict | None:
    """The verified state of the checkpoint of ``run_dir``, checked against ``config`` (its
    ``config.toml``): the config the checkpoint records (:func:`check_trained_with`), its
    trainer state and shapes (the particles' where the data's sizes ``n_train`` and
    ``n_held`` are given). None for a run that never reached its first checkpoint. A run
    whose ``metrics.jsonl`` holds finished epochs did reach it (an epoch's record is
    written after the checkpoint that holds it), so a checkpoint missing there is a
    one-line error, as is a dangling link."""
    path = run_dir / CHECKPOINT
    if not os.path.lexists(path):
        done = [r["epoch"] for r in _parse_metrics(run_dir / METRICS)[0]]
        if done:
            raise EqpropError(
                f"{run_dir} has finished {max(done)} epoch(s) ({METRICS}) but has no "
                f"{CHECKPOINT} to continue from (deleted or lost); restore {path} from a "
                f"copy, or {start_over(run_dir)}"
            )
        return None
    state = load_checkpoint(path, f"restore it from a copy, or {start_over(run_dir)}")
    check_trained_with(path, state, config)
    _check_state(path, state, config, n_train, n_held)
    return state


def load_best(run_dir: Path, config: RunConfig) -> dict:
    """The verified content of ``run_dir``'s ``best.pt`` (its checksum, its epoch, the config
    it records against ``config``): ``network`` (a ``state_dict``), ``epoch`` and the
    held-out error (read it with :func:`~eqprop.metrics.held_out_error`). One-line
    :class:`~eqprop.errors.EqpropError` otherwise."""
    path = run_dir / BEST
    saved = _load_verified(path, BEST, _BEST_FIX)
    for key, kind in (("network", dict), ("epoch", int)):
        if not isinstance(saved.get(key), kind) or isinstance(saved.get(key), bool):
            raise EqpropError(f"{path} is not an eqprop {BEST} (no {key}); {_BEST_FIX}")
    check_trained_with(path, saved, config)
    return saved


# -- run directories ------------------------------------------------------------------------
@dataclass
class RunOptions:
    """How a run reports and where it finds data. ``announce``: print ``run directory: ...``
    on stderr once every check has passed (the command line does)."""

    data_dir: str | Path | None = None
    quiet: bool = False
    tensorboard: bool = False
    announce: bool = False


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


class _Progress:
    """A progress bar on a terminal; elsewhere (a log file, a pipe) a plain line at most every
    :data:`PLAIN_PROGRESS_EVERY_S` seconds, so that logs stay readable."""

    def __init__(self, total: int, desc: str, *, initial: int = 0, enabled: bool = True) -> None:
        self.total, self.desc, self.n, self.postfix = total, desc, initial, ""
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit="batch", leave=False, file=sys.stderr
            )
        self.last = time.monotonic()

    def update(self, postfix: str = "") -> None:
        self.n += 1
        self.postfix = postfix or self.postfix
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)
        elif self.enabled and time.monotonic() - self.last >= PLAIN_PROGRESS_EVERY_S:
            self.last = time.monotonic()
            extra = f", {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: batch {self.n}/{self.total}{extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _status(text: str, options: RunOptions) -> None:
    """One line on stderr about a step that may take a while (not with ``quiet``)."""
    if not options.quiet:
        print(f"eqprop: {text}", file=sys.stderr, flush=True)


def _divergence(exc: DivergenceError, saved: bool) -> DivergenceError:
    """The trainer's divergence message with the fix the command line allows (a resumed run
    keeps its config, so it would diverge again)."""
    what = str(exc).split(";")[0]
    fix = "start a new run with a lower update.lr (or free.eps and nudged.eps)"
    if saved:
        fix = f"the run keeps its last good checkpoint, but resuming it would diverge again: {fix}"
    return DivergenceError(f"{what}; {fix}")


def train_run(
    run_dir: str | Path,
    options: RunOptions | None = None,
    *,
    epochs: int | None = None,
    device: str | None = None,
) -> list[dict]:
    """Train (or resume) the run in ``run_dir`` until its configured epochs are done.

    ``epochs`` changes the run's total number of epochs (``train.epochs`` in its
    ``config.toml``, written only once every check has passed); it cannot be below the epochs
    the checkpoint has finished. ``device`` moves the run to another device (``cpu``,
    ``cuda``, ``cuda:N``; ``train.device``, written the same way): it goes on from its
    checkpoint there, with a note that the rounding, so the result, is no longer bit for bit
    that of a run never moved. Returns the per-epoch metrics. Raises
    :class:`~eqprop.errors.DivergenceError` if the run diverges; the last checkpoint then
    stays as it was.
    """
    options = options or RunOptions()
    run_dir = Path(run_dir)
    recorded = config = read_config(run_dir)
    with _run_lock(run_dir):
        options = _recorded_data_dir(run_dir, options)
        # -- checks: nothing is written until all of them pass --------------------------
        if epochs is not None:
            config = config.override({"train.epochs": epochs})
        if device is not None:
            config = config.override({"train.device": device})  # checked by check_run
        for path in (run_dir, run_dir / RATES, run_dir / STEPS):
            if os.path.lexists(path) and not path.is_dir():
                raise EqpropError(
                    f"{path} should be a directory of the run but is not; move it away (or "
                    f"restore the run directory from a copy), then resume"
                )
            if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
                raise EqpropError(
                    f"cannot write into {path} (read-only or permission denied); make it "
                    f"writable, or copy the run directory and resume the copy"
                )
        for name in (METRICS, BEST):
            path = run_dir / name
            if os.path.lexists(path) and not path.is_file():
                raise EqpropError(
                    f"{path} should be a file of the run but is not; move it away (or restore "
                    f"the run directory from a copy), then resume"
                )
        data = check_run(config, options, run_dir)
        _check_same_data(run_dir, data)
        held = data.held_out
        ckpt_path = run_dir / CHECKPOINT
        state = read_checkpoint(run_dir, config, len(data.train), len(held))
        # a run trained before (these are written as training starts) with no checkpoint
        restarted = state is None and any(
            os.path.lexists(run_dir / name) for name in (METRICS, RATES, STEPS)
        )
        if os.path.lexists(run_dir / BEST):
            load_best(run_dir, config)
        if state is not None:
            done = state["trainer"]["epoch"]
            if config.train.epochs < done:
                raise ConfigError(
                    f"{run_dir} has finished {done} epochs; train.epochs (the total, not the "
                    f"number to add) must be at least {done}"
                )
        if options.announce:
            where = ""
            if state is not None:
                trainer_state = state["trainer"]
                where = f" (resuming after epoch {done}, batch {trainer_state['position']})"
            print(f"run directory: {run_dir}{where}", file=sys.stderr, flush=True)
        if restarted:
            tqdm.write(
                f"eqprop: note: {run_dir} has no {CHECKPOINT} and no finished epoch (the run "
                "stopped before its first checkpoint, or the checkpoint was deleted); training "
                "starts from the beginning",
                file=sys.stderr,
            )
        # -- building -------------------------------------------------------------------
        device = torch.device(config.train.device)
        computing = arithmetic.describe(device)  # read once: it reads /proc/cpuinfo
        dtype = getattr(torch, config.train.dtype)
        x, y = data.train.x.to(device, dtype), data.train.y.to(device)
        hx, hy = held.x.to(device, dtype), held.y.to(device)
        if config.topology.family not in ("layered", CONV):
            _status(f"building the {config.topology.family} topology", options)
        try:
            network = build_network(config, run_topology(config, run_dir))
            trainer = build_trainer(config, network, len(x))
        except (MemoryError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "alloc" not in str(exc).lower():
                raise
            raise EqpropError(
                f"not enough memory to build the network of {run_dir / CONFIG}; use smaller "
                f"topology.sizes"
            ) from None
        test_particles = network.zero_state(len(hx)) if config.train.test_persistent else None
        wall = 0.0
        records: list[dict] | None = None
        if state is not None:
            try:
                trainer.load_state_dict(state["trainer"])
                if test_particles is not None:
                    test_particles.copy_(state["test_particles"])
            except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as exc:
                first = " ".join(str(exc).split("\n")[0].split())[:160]
                raise not_fitting(ckpt_path, f" ({first})") from None
            wall = float(state["wall"])
            records = state.get("records")
            before = state.get("arithmetic")
            if before is not None and before != computing:  # older checkpoints lack it
                tqdm.write(
                    f"eqprop: note: {ckpt_path} was written computing with {before}; this "
                    f"process computes with {computing}. Training goes on, but rounding "
                    "differs, so it is not bit for bit what the first would give",
                    file=sys.stderr,
                )
        # -- writes ---------------------------------------------------------------------
        resume_fix = f"continue with: eqprop train --resume {run_dir}"
        with _writing(run_dir, resume_fix):
            if recorded != config:  # train.epochs or train.device changed
                atomic_write_bytes(run_dir / CONFIG, config.to_toml().encode())
            if records is None:  # a checkpoint without metrics (older), or none
                on_disk, torn = _parse_metrics(run_dir / METRICS)
                records = [r for r in on_disk if r["epoch"] <= trainer.epoch]
                lost = sorted(set(range(1, trainer.epoch + 1)) - {r["epoch"] for r in records})
                if lost:
                    tqdm.write(
                        f"eqprop: warning: {run_dir / METRICS} lacks the records of epoch(s) "
                        f"{', '.join(map(str, lost))} (damaged); training goes on without them",
                        file=sys.stderr,
                    )
            _write_metrics(run_dir, records)
            if options.data_dir is not None and config.data.dataset not in ("digits", FILE):
                where = f"{Path(options.data_dir).resolve()}\n"
                recorded = run_dir / DATA_DIR
                if not recorded.is_file() or recorded.read_text() != where:
                    atomic_write_bytes(recorded, where.encode())
            for kind in (RATES, STEPS):
                (run_dir / kind).mkdir(exist_ok=True)
                for f in (run_dir / kind).iterdir():
                    number = f.name[len("epoch_") : -len(".npy")]
                    stale = f.name.startswith("epoch_") and number.isdigit()
                    if _is_leftover(f.name) or (stale and int(number) > trainer.epoch):
                        f.unlink()
            for f in run_dir.iterdir():
                if _is_leftover(f.name) or f.name == STOP_REQUEST:  # a request of the past
                    f.unlink()
        writer = (
            require_tensorboard()(str(run_dir / "tensorboard")) if options.tensorboard else None
        )

        def checkpoint() -> None:
            state = {
                "trainer": trainer.state_dict(),
                "wall": wall,
                "test_particles": test_particles,
                "records": list(records),
                "arithmetic": computing,
                **config_record(config),
            }
            with _writing(ckpt_path, resume_fix):
                save_checkpoint(ckpt_path, state)

        monitor = DeadOutputMonitor(config.nudged.nudging)
        stop_request = run_dir / STOP_REQUEST
        n_batches = -(-len(x) // config.train.batch_size)
        n_eval = -(-len(hx) // 1000)  # Trainer.evaluate's batches
        # a resumed run keeps the key its first epochs were recorded under, so one
        # metrics.jsonl never mixes keys (runs written before valid_error have test_error)
        held_key = held_out_key(records[0]) if records else _held_out_key(data)
        with _deferred_stop() as interrupted:
            while trainer.epoch < config.train.epochs:
                epoch = trainer.epoch + 1
                progress = _Progress(
                    n_batches,
                    f"epoch {epoch}/{config.train.epochs}",
                    initial=trainer.position,
                    enabled=not options.quiet,
                )
                started = time.perf_counter()

                def on_batch(result, progress=progress) -> None:
                    nonlocal wall, started
                    warning = monitor.update(result.layer_rates)
                    if warning:
                        tqdm.write(warning, file=sys.stderr)
                    error = trainer.errors / trainer.seen if trainer.seen else None
                    progress.update(f"train error {error:.2%}" if error is not None else "")
                    every = config.train.checkpoint_every
                    due = every and trainer.position % every == 0
                    if not interrupted[0] and stop_request.exists():
                        interrupted[0] = signal.SIGTERM
                    if due or interrupted[0]:
                        now = time.perf_counter()
                        wall, started = wall + now - started, now
                        checkpoint()
                    if interrupted[0]:
                        stop_request.unlink(missing_ok=True)  # honoured
                        raise Interrupted(interrupted[0])

                try:
                    result = trainer.train_epoch(x, y, on_batch)
                except DivergenceError as exc:
                    raise _divergence(exc, ckpt_path.exists()) from None
                finally:  # also on Ctrl-C, so the message that follows starts on a clean line
                    progress.close()
                held_error = _evaluate(
                    trainer, hx, hy, test_particles, n_eval, epoch, config, options
                )
                record = {
                    "epoch": result.epoch,
                    "train_error": result.train_error,
                    held_key: held_error,
                    "layer_rates": result.layer_rates.double().mean(0).tolist(),
                    "free_steps": result.mean_free_steps,
                    "relaxation_steps": n_batches * (result.mean_free_steps + config.nudged.steps),
                    **result.metrics,
                }
                if config.train.evaluate_test and data.valid is not None and data.test is not None:
                    tx, ty = data.test.x.to(device, dtype), data.test.y.to(device)
                    record["official_test_error"] = _evaluate(
                        trainer, tx, ty, None, -(-len(tx) // 1000), epoch, config, options
                    )
                wall += time.perf_counter() - started
                record["wall_time"] = wall
                with _writing(run_dir, resume_fix):
                    _save_epoch(run_dir, RATES, result.epoch, result.layer_rates.float().numpy())
                    _save_epoch(run_dir, STEPS, result.epoch, result.free_steps.numpy())
                    if writer is not None:
                        _log_epoch(writer, record)
                    earlier = [held_out_error(r) for r in records]
                    if not earlier or held_error < min(earlier):
                        best = {held_key: held_error}
                        save_best(run_dir / BEST, network, result.epoch, best, config)
                records.append(record)
                checkpoint()
                # the epoch's record goes on disk after the checkpoint that holds it, so a
                # directory whose metrics hold an epoch has had a checkpoint (read_checkpoint)
                with _writing(run_dir, resume_fix):
                    _write_metrics(run_dir, records)
                tqdm.write(_epoch_line(record, config.train.epochs))
                if not interrupted[0] and stop_request.exists():  # asked during evaluation
                    interrupted[0] = signal.SIGTERM
                stop_request.unlink(missing_ok=True)
                if interrupted[0] and trainer.epoch < config.train.epochs:
                    raise Interrupted(interrupted[0])
    if writer is not None:
        writer.close()
    return records


def _recorded_data_dir(run_dir: Path, options: RunOptions) -> RunOptions:
    """``options`` with the run's recorded data directory (:data:`DATA_DIR`) where neither
    ``options.data_dir`` nor ``$EQPROP_DATA_DIR`` names one."""
    from eqprop.data import DATA_DIR_ENV

    recorded = run_dir / DATA_DIR
    if options.data_dir is not None or os.environ.get(DATA_DIR_ENV) or not recorded.is_file():
        return options
    return dataclasses.replace(options, data_dir=recorded.read_text().strip())


def _held_out_key(data: Dataset) -> str:
    """The key of a new run's held-out error: :data:`~eqprop.metrics.VALID_ERROR` when it
    evaluates on a validation split, :data:`~eqprop.metrics.TEST_ERROR` on the test set."""
    return VALID_ERROR if data.valid is not None else TEST_ERROR


def _write_metrics(run_dir: Path, records: list[dict]) -> None:
    """``metrics.jsonl`` rewritten atomically (a crash leaves the old or the new file)."""
    payload = "".join(json.dumps(r) + "\n" for r in records).encode()
    atomic_write_bytes(run_dir / METRICS, payload)


def _evaluate(trainer, x, y, particles, n_eval, epoch, config, options) -> float:
    """The held-out error, with its own progress (it can take as long as many batches)."""
    progress = _Progress(
        n_eval, f"epoch {epoch}/{config.train.epochs} evaluation", enabled=not options.quiet
    )
    try:
        return trainer.evaluate(x, y, particles=particles, on_relax=lambda _: progress.update())
    finally:
        progress.close()


def _log_epoch(writer, record: dict) -> None:
    step = record["epoch"]
    for key in ("train_error", VALID_ERROR, TEST_ERROR, "official_test_error", "free_steps"):
        if key in record:
            writer.add_scalar(key, record[key], step)
    for pair, rate in enumerate(record["layer_rates"], start=1):
        writer.add_scalar(f"layer_rate/pair_{pair}", rate, step)
    writer.flush()


def _epoch_line(record: dict, epochs: int) -> str:
    rates = " ".join(f"{r:.2e}" for r in record["layer_rates"])
    held = held_out_label(held_out_key(record))
    return (
        f"epoch {record['epoch']}/{epochs}  train error {record['train_error']:.2%}  "
        f"{held} {held_out_error(record):.2%}  free steps {record['free_steps']:.0f}  "
        f"rates [{rates}]  {record['wall_time']:.0f}s"
    )
