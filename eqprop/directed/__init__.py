"""Directed equilibrium propagation (DEEP, Farinha et al.) on complete directed graphs.

- :mod:`~eqprop.directed.network`: the directed network, eq. 1 dynamics (and asymmetric EP's).
- :mod:`~eqprop.directed.learning`: the DEEP rule (eq. 2), asymmetric EP's rule, L1.
- :mod:`~eqprop.directed.pruning`: stochastic pruning of weak connections (eq. 3).
- :mod:`~eqprop.directed.stability`: Propositions 1 (invariant sum) and 2 (stability).
- :mod:`~eqprop.directed.training`: hyperparameters and the training loop over seeded runs.
"""

from eqprop.directed.learning import apply_update, asymmetric_ep_update, deep_update
from eqprop.directed.network import (
    DirectedNetwork,
    allowed_edges,
    complete_network,
    field,
    initial_state,
    relax,
)
from eqprop.directed.pruning import prune, removal_probabilities
from eqprop.directed.stability import (
    InvariantCheck,
    check_proposition1,
    jacobian,
    proposition2_holds,
)
from eqprop.directed.training import DirectedConfig, TrainingResult, free_phase_errors, train

__all__ = [
    "DirectedConfig",
    "DirectedNetwork",
    "InvariantCheck",
    "TrainingResult",
    "allowed_edges",
    "apply_update",
    "asymmetric_ep_update",
    "check_proposition1",
    "complete_network",
    "deep_update",
    "field",
    "free_phase_errors",
    "initial_state",
    "jacobian",
    "proposition2_holds",
    "prune",
    "relax",
    "removal_probabilities",
    "train",
]
