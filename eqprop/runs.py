"""Run directories: a training run that is saved as it goes and resumes exactly.

A run directory holds:

- ``config.toml``: the resolved configuration (every field);
- ``metrics.jsonl``: one JSON line per epoch (training and evaluation error, mean per-layer
  rates, mean free steps per batch, relaxation steps, wall time);
- ``layer_rates/epoch_NNNN.npy``: the per-batch per-layer rates (eq. 2) of each epoch,
  float32, shape ``(batches, pairs)``;
- ``free_steps/epoch_NNNN.npy``: the free-phase steps of every batch of each epoch, int32
  (``n_free`` everywhere unless adaptive relaxation, ``tol``, is on);
- ``tensorboard/``: TensorBoard event files, when asked for (``--tensorboard``);
- ``checkpoint.pt``: the trainer's complete state, written atomically (temporary file, fsync,
  rename) every ``checkpoint_every`` batches, at the end of every epoch, and when the run is
  interrupted with Ctrl-C (SIGINT): the batch under way finishes, the checkpoint is written,
  and :class:`KeyboardInterrupt` is raised; a second Ctrl-C stops at once, keeping the last
  checkpoint.

Resuming restores the checkpoint and drops any metrics written after it, so a run killed at
any moment and resumed ends with the same weights and metrics as one never interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from eqprop import nudging
from eqprop import topology as topo
from eqprop.config import MASKED_SGD, RunConfig, from_dict, load_file
from eqprop.data import Dataset, load_dataset
from eqprop.errors import ConfigError, EqpropError
from eqprop.network import Network
from eqprop.relaxation.cuda_graph import CudaGraphs
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import DeadOutputMonitor, Trainer
from eqprop.updates import MaskedSGD, OptimizerUpdate, Update

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.toml"
RATES = "layer_rates"
STEPS = "free_steps"


def build_topology(config: RunConfig) -> topo.Topology:
    """The topology a config describes."""
    section = config.topology
    if section.family == "layered":
        return topo.layered(section.sizes)
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


def build_network(config: RunConfig, topology: topo.Topology | None = None) -> Network:
    """The initial network a config describes."""
    train = config.train
    if train.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {train.device!r} requested but no CUDA GPU is available; "
            f"use --set train.device=cpu"
        )
    return Network(
        topology if topology is not None else build_topology(config),
        a=config.topology.a,
        seed=train.seed,
        layout=train.layout,
        dtype=getattr(torch, train.dtype),
        device=train.device,
    )


def build_update(config: RunConfig, network: Network) -> Update:
    """The update a config describes: the built-in masked SGD, or a ``torch.optim``
    optimiser through ``.grad``."""
    section = config.update
    if section.optimizer == MASKED_SGD:
        return MaskedSGD(network, section.rates())
    optimizer = getattr(torch.optim, section.optimizer)
    return OptimizerUpdate(network, lambda params: optimizer(params, lr=section.lr))


def build_trainer(config: RunConfig, network: Network, n_train: int) -> Trainer:
    """The trainer (relaxers, nudging, estimator, update, particles, generator) a config
    describes. Fixed-step phases run as CUDA graphs on a GPU (:class:`CudaGraphs`)."""
    free, nudged = config.free.build(), config.nudged.build()
    if isinstance(free, FixedSteps):
        free = CudaGraphs(free.eps, free.steps)
    return Trainer(
        network,
        config.estimator.build(),
        build_update(config, network),
        free,
        CudaGraphs(nudged.eps, nudged.steps),
        nudging.get(config.nudged.nudging),
        n_train=n_train,
        batch_size=config.train.batch_size,
        persistent=config.train.persistent,
        batch_order=config.train.batch_order,
        seed=config.train.seed,
    )


def load_data(config: RunConfig, data_dir: str | Path | None) -> Dataset:
    """The dataset a config trains on."""
    data = config.data
    return load_dataset(data.dataset, data.split, data_dir, limit=data.limit)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that a crash at any moment leaves either the old or the new one:
    ``write`` fills a temporary file, which is flushed, fsynced and renamed over ``path``,
    and the directory entry is fsynced."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_writable_file(path: Path) -> None:
    """A one-line error now, before long work, if ``path`` cannot be written later: its
    directory is missing or not writable, or the path is a directory."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise EqpropError(f"{path} is a directory; give a file name such as {path / 'out.json'}")
    if not parent.is_dir():
        raise EqpropError(f"the directory of {path} does not exist; create {parent} first")
    if not os.access(parent, os.W_OK):
        raise EqpropError(f"cannot write into {parent} (permission denied); choose another path")


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """:func:`atomic_write` of a bytes payload."""
    atomic_write(path, lambda f: f.write(payload))


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run directory."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_epochs(run_dir: str | Path, kind: str, empty: np.ndarray) -> np.ndarray:
    """The per-batch arrays ``run_dir/kind/epoch_*.npy`` of all finished epochs, concatenated
    in epoch order (``empty`` when there are none)."""
    files = sorted((Path(run_dir) / kind).glob("epoch_*.npy"))
    return np.concatenate([np.load(f) for f in files]) if files else empty


def _save_epoch(run_dir: Path, kind: str, epoch: int, values: np.ndarray) -> None:
    atomic_write(run_dir / kind / f"epoch_{epoch:04d}.npy", functools.partial(np.save, arr=values))


def read_layer_rates(run_dir: str | Path) -> np.ndarray:
    """Per-batch per-layer rates of all finished epochs, shape ``(batches, pairs)``."""
    return _read_epochs(run_dir, RATES, np.zeros((0, 0), dtype=np.float32))


def read_free_steps(run_dir: str | Path) -> np.ndarray:
    """Free-phase steps of every batch of all finished epochs, shape ``(batches,)``."""
    return _read_epochs(run_dir, STEPS, np.zeros(0, dtype=np.int32))


def read_config(run_dir: str | Path) -> RunConfig:
    """The resolved configuration saved in a run directory."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise EqpropError(
            f"{run_dir} is not a run directory (no {CONFIG}); "
            f"pass a directory written by 'eqprop train'"
        )
    return from_dict(load_file(path))


@dataclass
class RunOptions:
    """How a run reports and where it finds data."""

    data_dir: str | Path | None = None
    quiet: bool = False
    tensorboard: bool = False


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


@contextlib.contextmanager
def _deferred_sigint() -> Iterator[list[bool]]:
    """While active, a first SIGINT only sets the flag (``flag[0]``) so that the caller can
    stop at a consistent point; a second one raises :class:`KeyboardInterrupt` at once.
    Outside the main thread (where signal handlers cannot be set), or where SIGINT is ignored
    (a background job of a non-interactive shell), nothing is changed and the flag stays
    False."""
    flag = [False]
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield flag
        return

    def handler(signum, frame) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True
        tqdm.write(
            "eqprop: stopping after this batch (Ctrl-C again to stop at once)", file=sys.stderr
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def start_run(config: RunConfig, run_dir: str | Path) -> Path:
    """Create a new run directory for ``config``; refuse to touch an existing one."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise EqpropError(
            f"run directory {run_dir} already exists; resume it with --resume {run_dir} "
            f"or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / CONFIG, config.to_toml().encode())
    return run_dir


def train_run(run_dir: str | Path, options: RunOptions | None = None) -> list[dict]:
    """Train (or resume) the run in ``run_dir`` until its configured epochs are done.

    Returns the per-epoch metrics. Raises :class:`~eqprop.errors.DivergenceError` if the
    run diverges; the last checkpoint then stays as it was.
    """
    options = options or RunOptions()
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    data = load_data(config, options.data_dir)
    device = torch.device(config.train.device)
    dtype = getattr(torch, config.train.dtype)
    x, y = data.train.x.to(device, dtype), data.train.y.to(device)
    held = data.held_out
    hx, hy = held.x.to(device, dtype), held.y.to(device)
    network = build_network(config)
    trainer = build_trainer(config, network, len(x))
    test_particles = network.zero_state(len(hx)) if config.train.test_persistent else None
    wall = 0.0

    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        try:
            state = torch.load(ckpt_path, weights_only=False)
        except Exception as exc:  # a checkpoint is only ever replaced atomically
            raise EqpropError(
                f"cannot read {ckpt_path} ({exc}); it is not an eqprop checkpoint"
            ) from None
        trainer.load_state_dict(state["trainer"])
        if test_particles is not None:
            test_particles.copy_(state["test_particles"])
        wall = state["wall"]
    records = [r for r in read_metrics(run_dir) if r["epoch"] <= trainer.epoch]
    atomic_write_bytes(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in records).encode())
    for kind in (RATES, STEPS):
        (run_dir / kind).mkdir(exist_ok=True)
    writer = require_tensorboard()(str(run_dir / "tensorboard")) if options.tensorboard else None

    def checkpoint() -> None:
        state = {"trainer": trainer.state_dict(), "wall": wall, "test_particles": test_particles}
        atomic_write(ckpt_path, lambda f: torch.save(state, f))

    monitor = DeadOutputMonitor(config.nudged.nudging)
    with _deferred_sigint() as interrupted:
        n_batches = -(-len(x) // config.train.batch_size)
        while trainer.epoch < config.train.epochs:
            epoch = trainer.epoch + 1
            bar = tqdm(
                total=n_batches,
                initial=trainer.position,
                desc=f"epoch {epoch}/{config.train.epochs}",
                unit="batch",
                disable=options.quiet,
                leave=False,
            )
            started = time.perf_counter()

            def on_batch(result, bar=bar) -> None:
                nonlocal wall, started
                bar.update(1)
                warning = monitor.update(result.layer_rates)
                if warning:
                    tqdm.write(warning, file=sys.stderr)
                if trainer.seen:
                    error = trainer.errors / trainer.seen
                    bar.set_postfix(train_error=f"{error:.2%}", refresh=False)
                every = config.train.checkpoint_every
                due = every and trainer.position % every == 0
                if due or interrupted[0]:
                    now = time.perf_counter()
                    wall, started = wall + now - started, now
                    checkpoint()
                if interrupted[0]:
                    raise KeyboardInterrupt

            try:
                result = trainer.train_epoch(x, y, on_batch)
            finally:  # also on Ctrl-C, so the message that follows starts on a clean line
                bar.close()
            held_error = trainer.evaluate(hx, hy, particles=test_particles)
            record = {
                "epoch": result.epoch,
                "train_error": result.train_error,
                "test_error": held_error,
                "layer_rates": result.layer_rates.double().mean(0).tolist(),
                "free_steps": result.mean_free_steps,
                "relaxation_steps": n_batches * (result.mean_free_steps + config.nudged.steps),
            }
            if config.train.evaluate_test and data.valid is not None:
                record["official_test_error"] = trainer.evaluate(
                    data.test.x.to(device, dtype), data.test.y.to(device)
                )
            wall += time.perf_counter() - started
            record["wall_time"] = wall
            _save_epoch(run_dir, RATES, result.epoch, result.layer_rates.float().numpy())
            _save_epoch(run_dir, STEPS, result.epoch, result.free_steps.numpy())
            if writer is not None:
                _log_epoch(writer, record)
            with open(run_dir / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
            checkpoint()
            records.append(record)
            tqdm.write(_epoch_line(record, config.train.epochs))
            if interrupted[0] and trainer.epoch < config.train.epochs:
                raise KeyboardInterrupt
    if writer is not None:
        writer.close()
    return records


def _log_epoch(writer, record: dict) -> None:
    step = record["epoch"]
    for key in ("train_error", "test_error", "official_test_error", "free_steps"):
        if key in record:
            writer.add_scalar(key, record[key], step)
    for pair, rate in enumerate(record["layer_rates"], start=1):
        writer.add_scalar(f"layer_rate/pair_{pair}", rate, step)
    writer.flush()


def _epoch_line(record: dict, epochs: int) -> str:
    rates = " ".join(f"{r:.2e}" for r in record["layer_rates"])
    return (
        f"epoch {record['epoch']}/{epochs}  train error {record['train_error']:.2%}  "
        f"test error {record['test_error']:.2%}  free steps {record['free_steps']:.0f}  "
        f"rates [{rates}]  {record['wall_time']:.0f}s"
    )
