"""``conv-mnist``: a small convolutional network for MNIST or Fashion-MNIST on a few CPU cores.

Ernoult et al.'s (2019) MNIST architecture, narrowed to fit two CPU cores: 1x28x28 ->
16 maps of 5x5 kernels, 2x2 max pooling (16x12x12) -> 32 maps of 5x5 kernels, 2x2 max pooling
(32x4x4) -> 10 outputs. Centered EP at ``beta = 0.5`` (the anchors' symmetric nudging),
the ``icons`` nudged step, 60 free steps from the persistent particles and 10 nudged steps
per phase at ``eps = 0.5``, batches of 32, per-pair rates (0.1, 0.05, 0.02). The time per
batch it was sized by is in ``docs/api.md``.
"""

from __future__ import annotations

import torch

from eqprop.conv.network import ConvBlock, ConvNetwork
from eqprop.conv.update import ConvSGD
from eqprop.estimators import Centered
from eqprop.nudging import IconsNudging
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import Trainer
from eqprop.updates import LearningRates

#: the preset's conv blocks and dense layers (module docs)
BLOCKS = (ConvBlock(16, kernel=5, pool=2), ConvBlock(32, kernel=5, pool=2))
DENSE = (10,)


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
    nothing else. ``free_steps`` sets the free phase's length (the evaluation's too)."""
    net = ConvNetwork((1, 28, 28), BLOCKS, DENSE, seed=seed, dtype=dtype, device=device)
    return Trainer(
        net,
        Centered(beta=0.5),
        ConvSGD(net, LearningRates(lr=(0.1, 0.05, 0.02))),
        free=FixedSteps(eps=0.5, steps=free_steps),
        nudged=FixedSteps(eps=0.5, steps=10),
        nudging=IconsNudging(),
        n_train=n_train,
        batch_size=32,
        seed=seed,
    )
