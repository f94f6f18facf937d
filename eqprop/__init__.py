"""eqprop: equilibrium propagation on any topology.

A few lines from topology to trained network (the parts: ``docs/architecture.md``)::

    import torch, eqprop
    topo = eqprop.topology.icons([64, 40, 40, 10], p=0.08, seed=0)      # layer-skipping
    net = eqprop.Network(topo, seed=0)
    trainer = eqprop.Trainer(
        net,
        eqprop.RandomSign(beta=1.0),                                     # estimator
        eqprop.MaskedSGD(net, eqprop.LearningRates(lr=0.05)),            # update
        free=eqprop.FixedSteps(steps=50),
        nudged=eqprop.FixedSteps(steps=8),
        nudging=eqprop.IconsNudging(),                                   # weakly-clamped step
        batch_size=20,
    )
    result = trainer.train_epoch(x, y)          # x: (n, 64) in [0, 1], y: (n,) labels
    result.train_error, result.layer_rates      # per-batch per-layer rates (eq. 2)

The names below are imported on first use, so that ``import eqprop`` (and the command line's
start) does not pay for PyTorch before it is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: public name -> the module that defines it
_EXPORTS = {
    "Centered": "eqprop.estimators",
    "Positive": "eqprop.estimators",
    "RandomSign": "eqprop.estimators",
    "Network": "eqprop.network",
    "GradientNudging": "eqprop.nudging",
    "IconsNudging": "eqprop.nudging",
    "FixedSteps": "eqprop.relaxation.fixed",
    "Tolerance": "eqprop.relaxation.tolerance",
    "Trainer": "eqprop.training",
    "LearningRates": "eqprop.updates",
    "MaskedSGD": "eqprop.updates",
    "OptimizerUpdate": "eqprop.updates",
    "topology": "eqprop.topology",
    "load_run": "eqprop.saved",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first access (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'eqprop' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if name == "topology" else getattr(module, name)
    globals()[name] = value
    return value
