"""Stochastic pruning of weak connections, eq. 3 of Farinha et al."""

from __future__ import annotations

import torch

from eqprop.directed.network import DirectedNetwork
from eqprop.errors import ConfigError

#: what the Boltzmann distribution of eq. 3 is normalised over (see :func:`removal_probabilities`)
NORMALISATIONS = ("present", "column")


def removal_probabilities(
    net: DirectedNetwork, temperature: float, over: str = "present"
) -> torch.Tensor:
    """Eq. 3 of Farinha et al.: ``p_ij = exp(-|W_ij|/T) / sum_k exp(-|W_kj|/T)``.

    A Boltzmann distribution over the incoming connections of each neuron ``j``, the bias
    counted as the connection from the bias neuron. ``over`` sets the sum over ``k``:

    - ``"present"``: the incoming connections still present (the mask).
    - ``"column"``: all ``N + 1`` sources of the column, absent ones (the self-loop, pruned
      or structurally missing edges) counted with weight 0, so each adds ``exp(0) = 1``; the
      authors' notebook normalises over the full column of its weight matrix this way.

    Absent connections have probability 0 either way.
    """
    if over not in NORMALISATIONS:
        raise ConfigError(f"over must be one of {', '.join(NORMALISATIONS)}, got {over!r}")
    logits = -net.weights.abs() / temperature
    if over == "present":
        logits = logits.masked_fill(~net.mask, float("-inf"))
    else:
        logits = torch.where(net.mask, logits, 0.0)
    # Columns with no connection at all give NaN here; the mask sets them to 0.
    return torch.where(net.mask, torch.softmax(logits, dim=-2), 0.0)


def prune(
    net: DirectedNetwork,
    threshold: float,
    temperature: float,
    uniform: torch.Tensor,
    over: str = "present",
    permanent: bool = True,
) -> DirectedNetwork:
    """Remove each connection with ``|W_ij| < threshold`` with the probability of eq. 3.

    Args:
        net: the network.
        threshold: ``lambda``; connections at or above it are never removed.
        temperature: ``T`` of eq. 3 (``> 0``).
        uniform: draws from ``U[0, 1)`` with the shape of ``net.weights``; connection
            ``i -> j`` is removed when its draw is below ``p_ij``.
        over: normalisation of eq. 3, see :func:`removal_probabilities`.
        permanent: True: the mask loses the removed connections, which never come back.
            False: their weights are set to 0 but the edges stay, so later updates can make
            them grow again (the authors' notebook, which zeroes entries of its weight matrix
            and keeps no mask).
    """
    probabilities = removal_probabilities(net, temperature, over)
    removed = net.mask & (net.weights.abs() < threshold) & (uniform < probabilities)
    if permanent:
        return net.with_weights(net.weights, net.mask & ~removed)
    return net.with_weights(net.weights.masked_fill(removed, 0.0))
