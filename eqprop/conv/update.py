"""Plain SGD on a convolutional network's kernels, matrices and biases.

``w <- w + lr_k * estimate`` for the weights of layer pair ``k`` (input side first), and
``b <- b + lr * estimate`` for a layer's biases with the rate of its incoming pair (or one
``bias_lr`` for all), as :class:`~eqprop.updates.MaskedSGD` does for the fully connected
network; every kernel and matrix entry is a weight, so there are no masks. It returns the
per-pair rates of eq. 2: the root-mean-square correction over each pair's kernel or matrix.
"""

from __future__ import annotations

import torch

from eqprop.conv.network import ConvNetwork
from eqprop.errors import ConfigError
from eqprop.estimators import Estimate
from eqprop.updates import LearningRates, Update


class ConvSGD(Update):
    """The built-in rule on a :class:`ConvNetwork` (module docs); ``rates.lr`` is one rate or
    one per layer pair, ``rates.lr_skip`` must be unset (there are no skip weights)."""

    def __init__(self, network: ConvNetwork, rates: LearningRates) -> None:
        super().__init__(network)
        n_pairs = network.n_layers - 1
        lr = rates.lr if isinstance(rates.lr, tuple) else (rates.lr,) * n_pairs
        if len(lr) != n_pairs:
            raise ConfigError(
                f"lr has {len(lr)} values but the network has {n_pairs} layer pairs; give one "
                f"rate per pair or a single rate"
            )
        if rates.lr_skip is not None:
            raise ConfigError("lr_skip does not apply to a conv network (it has no skip weights)")
        self.config = rates
        self.weight_rates = tuple(float(r) for r in lr)
        per_layer = torch.tensor(lr, dtype=torch.float64)[network.bias_layer]
        if rates.bias_lr is not None:
            per_layer = torch.full_like(per_layer, rates.bias_lr)
        self.bias_rates = per_layer.to(dtype=network.dtype, device=network.device)

    @torch.no_grad()
    def apply(self, estimate: Estimate) -> torch.Tensor:
        net, scale = self.network, estimate.scale
        corrections = []
        for w, lr, raw in zip(net.weights, self.weight_rates, estimate.weights, strict=True):
            corr = raw.mul(lr).mul_(scale)
            w.add_(corr)
            corrections.append(corr)
        net.biases.add_(self.bias_rates * estimate.biases * scale)
        return self.rates(corrections)
