"""Stochastic pruning of weak connections, eq. 3 of Farinha et al."""

from __future__ import annotations

import torch

from eqprop.directed.network import DirectedNetwork


def removal_probabilities(net: DirectedNetwork, temperature: float) -> torch.Tensor:
    """Eq. 3 of Farinha et al.: ``p_ij = exp(-|W_ij|/T) / sum_k exp(-|W_kj|/T)``.

    A Boltzmann distribution over the incoming connections of each neuron ``j`` that are
    still present, the bias counted as the connection from the bias neuron. Absent
    connections have probability 0.
    """
    logits = (-net.weights.abs() / temperature).masked_fill(~net.mask, float("-inf"))
    # Columns with no connection at all give NaN here; the mask sets them to 0.
    return torch.where(net.mask, torch.softmax(logits, dim=-2), 0.0)


def prune(
    net: DirectedNetwork, threshold: float, temperature: float, uniform: torch.Tensor
) -> DirectedNetwork:
    """Remove each connection with ``|W_ij| < threshold`` with the probability of eq. 3.

    Args:
        net: the network; its mask loses the removed connections.
        threshold: ``lambda``; connections at or above it are never removed.
        temperature: ``T`` of eq. 3 (``> 0``).
        uniform: draws from ``U[0, 1)`` with the shape of ``net.weights``; connection
            ``i -> j`` is removed when its draw is below ``p_ij``.
    """
    probabilities = removal_probabilities(net, temperature)
    removed = net.mask & (net.weights.abs() < threshold) & (uniform < probabilities)
    return net.with_weights(net.weights, net.mask & ~removed)
