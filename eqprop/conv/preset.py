"""``conv-mnist``: a small convolutional network for MNIST or Fashion-MNIST on a few CPU cores.

Ernoult et al.'s (2019) MNIST architecture, narrowed to fit two CPU cores: 1x28x28 ->
16 maps of 5x5 kernels, 2x2 max pooling (16x12x12) -> 32 maps of 5x5 kernels, 2x2 max pooling
(32x4x4) -> 10 outputs. Centered EP at ``beta = 0.5`` (the anchors' symmetric nudging),
the ``gradient`` nudged step (their cost ``1/2 |s_out - d|^2``), 60 free steps from zeros
for each batch (as the anchors) and 10 nudged steps per phase at ``eps = 0.5``, batches of
32, per-pair rates (0.1, 0.05, 0.02). The settings are
the bundled preset ``eqprop/presets/conv-mnist.toml`` (``eqprop train --preset conv-mnist``;
``conv-fashion`` is the same on Fashion-MNIST); :func:`conv_mnist` builds its trainer from
that file. The time per batch it was sized by is in ``docs/api.md``.
"""

from __future__ import annotations

import torch

from eqprop.training import Trainer

#: the bundled preset :func:`conv_mnist` reads
PRESET = "conv-mnist"


def conv_mnist(
    n_train: int,
    *,
    seed: int = 0,
    free_steps: int = 60,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Trainer:
    """A :class:`~eqprop.training.Trainer` of the ``conv-mnist`` preset (module docs) for a
    training set of ``n_train`` 28x28 images; ``seed`` seeds the weights, the batch order and
    nothing else. ``free_steps`` sets the free phase's length (the evaluation's too). It is
    the trainer that ``eqprop train --preset conv-mnist`` builds with these settings."""
    from eqprop import config as cfg
    from eqprop import runs

    config = cfg.from_dict(cfg.preset(PRESET)).override(
        {
            "train.seed": seed,
            "free.steps": free_steps,
            "train.dtype": str(dtype).removeprefix("torch."),
            "train.device": str(torch.device(device)),
        }
    )
    return runs.build_trainer(config, runs.build_network(config), n_train)
