"""eqprop: equilibrium propagation on any topology.

A few lines from topology to trained network::

    import torch, eqprop
    topo = eqprop.topology.icons([64, 40, 40, 10], p=0.08, seed=0)      # layer-skipping
    net = eqprop.Network(topo, seed=0)
    rule = eqprop.EquilibriumPropagation(net, eqprop.EPConfig(lr=0.05))
    trainer = eqprop.Trainer(net, rule, eqprop.Relaxation(n_free=50, n_clamped=8),
                             n_train=len(x), batch_size=20)
    result = trainer.train_epoch(x, y)          # x: (n, 64) in [0, 1], y: (n,) labels
    result.train_error, result.layer_rates      # per-batch per-layer rates (eq. 2)
"""

from eqprop import topology
from eqprop.network import Network
from eqprop.rules import EPConfig, EquilibriumPropagation
from eqprop.training import Relaxation, Trainer

__version__ = "0.1.0"
__all__ = [
    "EPConfig",
    "EquilibriumPropagation",
    "Network",
    "Relaxation",
    "Trainer",
    "topology",
]
