"""The reference equilibrium the theory tests compare with: the damped step run until the
state stops changing in float64, independent of every stopping rule under test."""

from __future__ import annotations

import torch

from eqprop.nudging import Nudge
from eqprop.relaxation.fixed import FixedSteps


def relax_to_fixed_point(net, s, base, nudge=None):
    """Relax ``s`` in place (and return it) until one step changes no unit by 1e-15; an
    AssertionError after 40,000 steps."""
    relax = FixedSteps(eps=0.5, steps=100)
    for _ in range(400):
        prev = s.clone()
        relax.relax(net, s, base, nudge)
        if float((s - prev).abs().max()) < 1e-15:
            return s
    raise AssertionError("relaxation did not converge")


def ep_descent(net, estimator, nudging, x, target, s0):
    """The estimator's descent direction (weights, biases) at the free fixed point ``s0``,
    every nudged phase relaxed to its own fixed point (betas from seed 0; weights untouched)."""
    base = net.input_drive(x)
    betas = estimator.betas(torch.Generator().manual_seed(0))
    nudged = [
        relax_to_fixed_point(net, s0.clone(), base, Nudge(nudging, beta, target)) for beta in betas
    ]
    return estimator.estimate(net, x, s0, nudged, betas).descent(net)
