"""Trained runs as objects: the network of a run directory, ready to predict.

:func:`load_run` reads a run directory written by ``eqprop train`` (or a sweep or an
experiment): its config, and the network of its latest checkpoint or of its best epoch
(``best.pt``: the lowest held-out error so far), with the run's own free-phase relaxer.
:func:`load_trainer` restores the whole trainer of the latest checkpoint (particles, order,
position), to measure at a run's state or to train on from it in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from eqprop.config import RunConfig
from eqprop.data import Dataset
from eqprop.energy_network import EnergyNetwork
from eqprop.errors import EqpropError
from eqprop.relaxation import Relaxer
from eqprop.runs import (
    BEST,
    CHECKPOINT,
    build_network,
    build_trainer,
    load_best,
    load_data,
    not_fitting,
    read_checkpoint,
    read_config,
    run_topology,
)
from eqprop.training import Trainer


@dataclass
class TrainedRun:
    """A run's config, network (at ``epoch``; a :class:`~eqprop.network.Network`, or a
    :class:`~eqprop.conv.ConvNetwork` for ``topology.family = "conv"``) and free relaxer;
    ``test_particles`` are the held-out examples' persistent particles of the latest
    checkpoint when the run keeps them (``train.test_persistent``), else None."""

    config: RunConfig
    network: EnergyNetwork
    epoch: int
    free: Relaxer
    test_particles: torch.Tensor | None = None

    def predict(self, x: torch.Tensor, particles: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted classes: the argmax of the outputs at the free equilibrium the run's own
        free relaxer reaches, from zeros or from ``particles`` (updated in place)."""
        return self.network.predict(x, self.free, particles)

    def error(
        self, x: torch.Tensor, y: torch.Tensor, particles: torch.Tensor | None = None
    ) -> float:
        """Error rate of :meth:`predict` on ``x, y``."""
        return float((self.predict(x, particles).cpu() != y.cpu()).double().mean())


def _latest_checkpoint(run_dir: Path, config: RunConfig) -> dict:
    """The state of ``run_dir``'s latest checkpoint, checked as a resume checks it
    (:func:`eqprop.runs.read_checkpoint`); one line when there is none yet."""
    state = read_checkpoint(run_dir, config)
    if state is None:
        raise EqpropError(f"{run_dir} has no checkpoint yet; train it first")
    return state


def _restore(path: Path, restore: Callable[[], None]) -> None:
    """Run ``restore`` (copying saved tensors into a network or trainer); a file of other
    shapes is the one-line error a resume gives (:func:`eqprop.runs.not_fitting`)."""
    try:
        restore()
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as exc:
        first = " ".join(str(exc).split("\n")[0].split())[:160]
        raise not_fitting(path, f" ({first})") from None


def load_trainer(run_dir: str | Path, data_dir: str | Path | None) -> tuple[Dataset, Trainer]:
    """The data and the trainer of ``run_dir`` as its latest checkpoint left them (weights,
    particles, generator, epoch and position); the run directory is only read. The one-line
    errors of ``eqprop train --resume`` for a missing, damaged or foreign checkpoint, as
    :class:`~eqprop.errors.EqpropError`."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    state = _latest_checkpoint(run_dir, config)
    data = load_data(config, data_dir)
    trainer = build_trainer(
        config, build_network(config, run_topology(config, run_dir)), len(data.train.x)
    )
    _restore(run_dir / CHECKPOINT, lambda: trainer.load_state_dict(state["trainer"]))
    return data, trainer


def load_run(run_dir: str | Path, which: str = "latest") -> TrainedRun:
    """The trained network of ``run_dir``: ``which`` is ``"latest"`` (the checkpoint) or
    ``"best"`` (the epoch with the lowest held-out error). A missing, damaged or foreign
    file (another run's, or one the edited ``config.toml`` does not fit) is the one-line
    error that ``eqprop train --resume`` gives, as an :class:`~eqprop.errors.EqpropError`."""
    run_dir = Path(run_dir)
    if which not in ("latest", "best"):
        raise EqpropError(f"which must be 'latest' or 'best', got {which!r}")
    config = read_config(run_dir)
    network = build_network(config, run_topology(config, run_dir))
    free = config.free.build()
    if which == "latest":
        state = _latest_checkpoint(run_dir, config)
        trainer = state["trainer"]

        def restore() -> None:
            with torch.no_grad():
                for w, saved in zip(network.weights, trainer["weights"], strict=True):
                    w.copy_(saved)
                network.biases.copy_(trainer["biases"])

        _restore(run_dir / CHECKPOINT, restore)
        particles = state.get("test_particles")
        return TrainedRun(config, network, int(trainer["epoch"]), free, particles)
    if not os.path.lexists(run_dir / BEST):
        raise EqpropError(f"{run_dir} has no {BEST} yet (written after each best epoch)")
    saved = load_best(run_dir, config)
    _restore(run_dir / BEST, lambda: network.load_state_dict(saved["network"]))
    return TrainedRun(config, network, saved["epoch"], free)
