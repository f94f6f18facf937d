"""Analytic properties of the DEEP dynamics (Farinha et al., section 3.1)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from eqprop.directed.network import DirectedNetwork, field


@dataclass(frozen=True)
class InvariantCheck:
    """Result of :func:`check_proposition1` (per network).

    Attributes:
        max_relative_drift: ``max_t |sum_j s_j(t) - sum_j s_j(0)| / |sum_j s_j(0)|``.
        clipping_active: whether the hard-sigmoid clip changed a state at some step, in which
            case Proposition 1 (a statement about eq. 1 without clipping) does not apply.
    """

    max_relative_drift: torch.Tensor
    clipping_active: torch.Tensor


def check_proposition1(
    net: DirectedNetwork, s: torch.Tensor, n_steps: int, eps: float
) -> InvariantCheck:
    """Run eq. 1 with ``beta = 0`` and no external stimulus; measure the sum of the states.

    Proposition 1 of Farinha et al.: without input or bias activity the dynamics conserves
    ``sum_j s_j``, since every weight ``W_ij`` adds ``W_ij s_i`` to neuron ``j`` and removes
    the same amount from neuron ``i`` through its leak. Here no neuron is clamped (the input
    neurons evolve by eq. 1 like the others) and the bias neuron is silenced (set to 0).

    Args:
        net: a directed network (its weights are used as they are).
        s: initial states ``(..., B, N + 1)`` in [0, 1], with a non-zero sum.
        n_steps: Euler steps of size ``eps`` (each followed by the hard-sigmoid clip).
    """
    s = s.clone()
    s[..., -1] = 0.0
    velocity = field(replace(net, n_inputs=0), "deep")
    start = s.sum(dim=-1)
    drift = torch.zeros_like(start)
    clipped = torch.zeros_like(start, dtype=torch.bool)
    for _ in range(n_steps):
        unclipped = s + eps * velocity(s)
        s = unclipped.clamp(0.0, 1.0)
        clipped |= (s != unclipped).any(dim=-1)
        drift = torch.maximum(drift, (s.sum(dim=-1) - start).abs() / start.abs())
    return InvariantCheck(drift.amax(dim=-1), clipped.any(dim=-1))


def jacobian(net: DirectedNetwork) -> torch.Tensor:
    """Jacobian of eq. 1 (``beta = 0``, clip inactive) over the free neurons.

    ``J_jk = d(ds_j/dt)/ds_k = W_kj - [j = k] sum_i W_ji``. Eq. 1 is linear in ``s``, so ``J``
    does not depend on the state. Shape ``(..., F, F)`` for the ``F`` free neurons.
    """
    free = net.free
    incoming = net.weights[..., free, free].transpose(-2, -1)
    return incoming - torch.diag_embed(net.weights.sum(dim=-1)[..., free])


def proposition2_holds(net: DirectedNetwork) -> torch.Tensor:
    """Proposition 2 of Farinha et al., a sufficient condition for local asymptotic stability.

    For every free neuron ``j``: ``sum_i W_ji > 0`` and
    ``sum_{i free} |W_ij| < |sum_i W_ji|`` (Gershgorin's circle theorem on the rows of
    :func:`jacobian`: every disc lies in the open left half-plane). The outgoing sum runs
    over all neurons, inputs included, so the condition needs edges into the inputs (see
    :func:`~eqprop.directed.network.allowed_edges`). Returns a bool per network.
    """
    free = net.free
    outgoing = net.weights.sum(dim=-1)[..., free]
    incoming_free = net.weights[..., free, free].abs().sum(dim=-2)
    return ((outgoing > 0) & (incoming_free < outgoing.abs())).all(dim=-1)
