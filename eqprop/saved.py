"""Trained runs as objects: the network of a run directory, ready to predict.

:func:`load_run` reads a run directory written by ``eqprop train`` (or a sweep or an
experiment): its config, and the network of its latest checkpoint or of its best epoch
(``best.pt``: the lowest held-out error so far), with the run's own free-phase relaxer.
:func:`load_trainer` restores the whole trainer of the latest checkpoint (particles, order,
position), to measure at a run's state or to train on from it in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from eqprop.config import RunConfig
from eqprop.data import Dataset
from eqprop.errors import EqpropError
from eqprop.network import Network
from eqprop.relaxation import Relaxer
from eqprop.runs import (
    BEST,
    CHECKPOINT,
    build_network,
    build_trainer,
    check_regular_file,
    load_checkpoint,
    load_data,
    read_config,
    run_topology,
)
from eqprop.training import Trainer


@dataclass
class TrainedRun:
    """A run's config, network (at ``epoch``) and free relaxer; ``test_particles`` are the
    held-out examples' persistent particles of the latest checkpoint when the run keeps them
    (``train.test_persistent``), else None."""

    config: RunConfig
    network: Network
    epoch: int
    free: Relaxer
    test_particles: torch.Tensor | None = None

    def predict(self, x: torch.Tensor, particles: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted classes: the argmax of the outputs at the free equilibrium the run's own
        free relaxer reaches, from zeros or from ``particles`` (updated in place)."""
        return self.network.predict(x, self.free, particles)

    def error(self, x: torch.Tensor, y: torch.Tensor, particles=None) -> float:
        """Error rate of :meth:`predict` on ``x, y``."""
        return float((self.predict(x, particles).cpu() != y.cpu()).double().mean())


def _latest_checkpoint(run_dir: Path) -> dict:
    """The state of ``run_dir``'s latest checkpoint; one line when there is none yet."""
    path = run_dir / CHECKPOINT
    if not os.path.lexists(path):
        raise EqpropError(f"{run_dir} has no checkpoint yet; train it first")
    return load_checkpoint(path)


def load_trainer(run_dir: str | Path, data_dir: str | Path | None) -> tuple[Dataset, Trainer]:
    """The data and the trainer of ``run_dir`` as its latest checkpoint left them (weights,
    particles, generator, epoch and position); the run directory is only read. One-line
    errors for a missing run or checkpoint."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    state = _latest_checkpoint(run_dir)
    data = load_data(config, data_dir)
    network = build_network(config, run_topology(config, run_dir))
    trainer = build_trainer(config, network, len(data.train.x))
    trainer.load_state_dict(state["trainer"])
    return data, trainer


def load_run(run_dir: str | Path, which: str = "latest") -> TrainedRun:
    """The trained network of ``run_dir``: ``which`` is ``"latest"`` (the checkpoint) or
    ``"best"`` (the epoch with the lowest held-out error). One-line errors for a missing or
    damaged file."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    network = build_network(config, run_topology(config, run_dir))
    free = config.free.build()
    if which == "latest":
        state = _latest_checkpoint(run_dir)
        trainer = state["trainer"]
        with torch.no_grad():
            for w, saved in zip(network.weights, trainer["weights"], strict=True):
                w.copy_(saved)
            network.biases.copy_(trainer["biases"])
        particles = state.get("test_particles")
        return TrainedRun(config, network, int(trainer["epoch"]), free, particles)
    if which == "best":
        path = run_dir / BEST
        if not os.path.lexists(path):
            raise EqpropError(f"{run_dir} has no {BEST} yet (written after each best epoch)")
        check_regular_file(path, "remove it; the next best epoch writes it again")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            network.load_state_dict(saved["network"])
        except Exception as exc:
            raise EqpropError(f"{path} is damaged ({str(exc).splitlines()[0][:120]})") from None
        return TrainedRun(config, network, int(saved["epoch"]), free)
    raise EqpropError(f"which must be 'latest' or 'best', got {which!r}")
