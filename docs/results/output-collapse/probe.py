"""Probe of the output-layer collapse of networks B and C under the ``gradient`` step (see
README.md next to this file).

Trains 784-500x3-10 variants for two epochs on the first 2,000 MNIST training images with
the paper's protocol except ``n_free = 100`` and the weakly-clamped step, and prints, per
epoch, the training error and the mean per-layer rates (eq. 2). Usage::

    python docs/results/output-collapse/probe.py DATA_DIR VARIANT [VARIANT ...]

VARIANT is ``B`` or ``C`` (layered or ICONS n = 100,000) with the ``gradient`` step, followed
by options joined with ``:``: ``lr=X`` (one rate), ``outlr=X`` (rate X on the output pair
only, .02 elsewhere), ``bias=X`` (all bias rates X, as in the paper authors' code),
``nosign`` (fixed positive beta) or ``icons`` (the authors' step instead), e.g.
``B:lr=0.005`` or ``C:icons``.
"""

from __future__ import annotations

import sys

import torch

from eqprop import topology
from eqprop.data import load_dataset
from eqprop.estimators import Positive, RandomSign
from eqprop.network import Network
from eqprop.nudging import GradientNudging, IconsNudging
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import Trainer
from eqprop.updates import LearningRates, MaskedSGD

SIZES = [784, 500, 500, 500, 10]


def probe(data_dir: str, variant: str) -> None:
    """Train one variant for two epochs and print its errors and mean rates."""
    name, *options = variant.split(":")
    settings = dict(option.partition("=")[::2] for option in options)
    top = topology.icons(SIZES, n=100_000, seed=0) if name == "C" else topology.layered(SIZES)
    net = Network(top, seed=0)
    lr: float | tuple[float, ...] = 0.02
    if "lr" in settings:
        lr = float(settings["lr"])
    elif "outlr" in settings:
        lr = (0.02, 0.02, 0.02, float(settings["outlr"]))
    skip = 0.02 if isinstance(lr, tuple) and name == "C" else None
    bias = float(settings["bias"]) if "bias" in settings else None
    update = MaskedSGD(net, LearningRates(lr=lr, lr_skip=skip, bias_lr=bias))
    estimator = Positive(1.0) if "nosign" in settings else RandomSign(1.0)
    nudging = IconsNudging() if "icons" in settings else GradientNudging()
    data = load_dataset("mnist", "icons", data_dir=data_dir, limit=2000)
    x, y = data.train.x, data.train.y
    trainer = Trainer(
        net,
        estimator,
        update,
        FixedSteps(steps=100),
        FixedSteps(steps=8),
        nudging,
        n_train=len(x),
    )
    for _ in range(2):
        result = trainer.train_epoch(x, y)
        rates = " ".join(f"{r:.2e}" for r in result.layer_rates.mean(0).tolist())
        print(
            f"{variant:14s} epoch {result.epoch}  train error {result.train_error:.2%}  "
            f"rates [{rates}]",
            flush=True,
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    for v in sys.argv[2:]:
        probe(sys.argv[1], v)
