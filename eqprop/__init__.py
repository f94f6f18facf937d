"""eqprop: equilibrium propagation on any topology.

A few lines from topology to trained network (the parts: ``docs/architecture.md``)::

    import torch, eqprop
    topo = eqprop.topology.icons([64, 40, 40, 10], p=0.08, seed=0)      # layer-skipping
    net = eqprop.Network(topo, seed=0)
    trainer = eqprop.Trainer(
        net,
        eqprop.RandomSign(beta=1.0),                                     # estimator
        eqprop.MaskedSGD(net, eqprop.LearningRates(lr=0.05)),            # update
        eqprop.FixedSteps(steps=50),                                     # free phase
        eqprop.FixedSteps(steps=8),                                      # nudged phase
        eqprop.IconsNudging(),                                           # nudging scheme
        n_train=len(x), batch_size=20,
    )
    result = trainer.train_epoch(x, y)          # x: (n, 64) in [0, 1], y: (n,) labels
    result.train_error, result.layer_rates      # per-batch per-layer rates (eq. 2)
"""

from eqprop import topology
from eqprop.estimators import Centered, Positive, RandomSign
from eqprop.network import Network
from eqprop.nudging import GradientNudging, IconsNudging
from eqprop.relaxation.fixed import FixedSteps
from eqprop.relaxation.tolerance import Tolerance
from eqprop.training import Trainer
from eqprop.updates import LearningRates, MaskedSGD, OptimizerUpdate

__version__ = "0.2.0"
__all__ = [
    "Centered",
    "FixedSteps",
    "GradientNudging",
    "IconsNudging",
    "LearningRates",
    "MaskedSGD",
    "Network",
    "OptimizerUpdate",
    "Positive",
    "RandomSign",
    "Tolerance",
    "Trainer",
    "topology",
]
