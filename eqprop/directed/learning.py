"""Learning rules on directed networks: DEEP (eq. 2 of Farinha et al.), asymmetric EP, L1."""

from __future__ import annotations

import torch

from eqprop.directed.network import DirectedNetwork


def deep_update(trajectory: torch.Tensor, beta: float) -> torch.Tensor:
    """DEEP learning rule, eq. 2 of Farinha et al., without the learning rate.

    ``dW_ij = 1/(beta M_beta) * sum_{m=1}^{M_beta} s_i(m) (s_j(m) - s_j(m - 1))``, averaged
    over the batch: the path integral of ``s_i ds_j`` along the second phase with backward
    differences. Biases are the row of the bias neuron (``s = 1``), so their update is the
    net change ``(s_j^beta - s_j^0) / (beta M_beta)``. The division by ``beta`` (the paper
    writes only a proportionality) makes the update independent of the size and sign of
    ``beta`` to first order.

    Args:
        trajectory: states ``s(M_0), ..., s(M_0 + M_beta)`` of the second phase, shape
            ``(M_beta + 1, ..., B, N + 1)``; ``s(M_0)`` is the free equilibrium.
        beta: the (non-zero) nudging strength used in the second phase.

    Returns:
        ``(..., N + 1, N + 1)`` update direction, entry ``[i, j]`` for the edge ``i -> j``.
    """
    n_steps, batch = trajectory.shape[0] - 1, trajectory.shape[-2]
    after = trajectory[1:].movedim(0, -3).flatten(-3, -2)  # s(m), (..., M_beta * B, N + 1)
    change = trajectory.diff(dim=0).movedim(0, -3).flatten(-3, -2)  # s(m) - s(m - 1)
    return after.transpose(-2, -1) @ change / (beta * n_steps * batch)


def asymmetric_ep_update(free: torch.Tensor, nudged: torch.Tensor, beta: float) -> torch.Tensor:
    """Asymmetric EP rule (Scellier et al. 2018): ``dW_ij = s_i^0 (s_j^beta - s_j^0) / beta``.

    Averaged over the batch. ``free`` and ``nudged`` are the equilibria ``s^0`` and
    ``s^beta``, shape ``(..., B, N + 1)``. It is the one-step, forward-difference version of
    eq. 2 of Farinha et al.
    """
    return free.transpose(-2, -1) @ (nudged - free) / (beta * free.shape[-2])


def apply_update(
    net: DirectedNetwork, direction: torch.Tensor, lr: float, l1: float
) -> DirectedNetwork:
    """Gradient-like step with L1 regularisation: ``W <- W + lr (dW - l1 sign(W))``, masked.

    ``l1 sign(W)`` is the subgradient of the penalty ``l1 sum |W_ij|`` that Farinha et al. add
    to the learning rule to induce sparsity.
    """
    return net.with_weights(net.weights + lr * (direction - l1 * net.weights.sign()))
