"""A small float64 network with random biases, inputs, states and one-hot targets: the case
the nudging tests evaluate their formulas on."""

from __future__ import annotations

import torch

from eqprop.network import Network
from eqprop.topology import Topology

#: layer sizes of the case (3 classes)
SIZES = [6, 5, 4, 3]


def random_case(topology: Topology, seed: int = 0):
    """``(network, x, s, target)`` on ``topology`` (sizes :data:`SIZES`), 5 examples."""
    net = Network(topology, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    net.biases.uniform_(-0.2, 0.2, generator=g)
    x = torch.rand(5, SIZES[0], generator=g, dtype=torch.float64)
    s = torch.rand(5, net.n_state, generator=g, dtype=torch.float64)
    target = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 1, 0]]
    return net, x, s, target
