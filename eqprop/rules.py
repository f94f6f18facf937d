"""How parameters change: the equilibrium-propagation update (SPEC section 1).

For a batch with free equilibrium ``s0`` and weakly-clamped equilibrium ``sb`` (reached with
the signed nudging ``beta``), averaged over the batch:

``dW_ij = (lr_ij / beta) (rho(sb_i) rho(sb_j) - rho(s0_i) rho(s0_j))``,
``db_i = (lr_i / beta) (rho(sb_i) - rho(s0_i))``.

Learning rates: one rate for everything, or one per adjacent layer pair (input side first).
With per-pair rates each neuron's bias takes the rate of its *incoming* pair (layer-1 biases
the first rate, output biases the last) -- the paper authors' code silently skipped this.
Intralayer and skip edges take ``lr_skip`` (default: the single rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from eqprop.errors import ConfigError
from eqprop.network import Network
from eqprop.topology import ADJACENT


@dataclass(frozen=True)
class EPConfig:
    """Hyperparameters of the EP rule.

    Attributes:
        lr: one learning rate, or one per adjacent layer pair (input side first).
        lr_skip: rate of intralayer and skip edges; default the single ``lr``. Required when
            ``lr`` is per pair and the topology has such edges.
        beta: magnitude of the nudging, non-zero.
        random_sign: draw the sign of beta by a fair coin after each free phase.
    """

    lr: float | tuple[float, ...] = 0.02
    lr_skip: float | None = None
    beta: float = 1.0
    random_sign: bool = True

    def __post_init__(self) -> None:
        rates = self.lr if isinstance(self.lr, tuple) else (self.lr,)
        if not rates or any(not np.isfinite(r) or r < 0 for r in rates):
            raise ConfigError(f"lr must be >= 0 (one value or one per layer pair), got {self.lr}")
        if self.lr_skip is not None and (not np.isfinite(self.lr_skip) or self.lr_skip < 0):
            raise ConfigError(f"lr_skip must be >= 0, got {self.lr_skip}")
        if self.beta == 0 or not np.isfinite(self.beta):
            raise ConfigError(f"beta must be non-zero and finite, got {self.beta}")


class EquilibriumPropagation:
    """The EP learning rule bound to a network: turns two equilibria into an update.

    Args:
        network: the network whose weights and biases it updates in place.
        config: learning rates and nudging.
    """

    def __init__(self, network: Network, config: EPConfig) -> None:
        self.network, self.config = network, config
        n_pairs = network.n_layers - 1
        if isinstance(config.lr, tuple):
            if len(config.lr) != n_pairs:
                raise ConfigError(
                    f"lr has {len(config.lr)} values but the network has {n_pairs} adjacent "
                    f"layer pairs; give one rate per pair or a single rate"
                )
            pair_rates = np.asarray(config.lr, dtype=np.float64)
            kinds = network.topology.kinds
            if config.lr_skip is None and np.any(kinds != ADJACENT):
                raise ConfigError(
                    "lr is per layer pair and the topology has intralayer or skip edges: "
                    "set lr_skip"
                )
        else:
            pair_rates = np.full(n_pairs, float(config.lr))
        skip_rate = float(config.lr_skip if config.lr_skip is not None else pair_rates[0])
        topo = network.topology
        layer = topo.layer_of[topo.edges]
        edge_rates = np.full(len(layer), skip_rate)
        adjacent = topo.kinds == ADJACENT
        edge_rates[adjacent] = pair_rates[layer[adjacent].min(axis=1)]
        self.weight_rates = network.from_edges(edge_rates)
        # bias of a neuron in layer k >= 1 takes the rate of its incoming pair k-1
        self.bias_rates = torch.as_tensor(
            np.repeat(pair_rates, network.sizes[1:]), dtype=network.dtype, device=network.device
        )
        self._rate_views = self._adjacent_pair_views()

    def _adjacent_pair_views(self) -> list[tuple[int, slice, slice, int]]:
        """For each adjacent layer pair: its block, row and column slices inside the block,
        and its number of existing edges (the denominator of eq. 2)."""
        net = self.network
        views = []
        for k in range(net.n_layers - 1):
            gr, gc = net.group_of_layer[k], net.group_of_layer[k + 1]
            index = next(
                i for i, b in enumerate(net.blocks) if (b.row_group, b.col_group) == (gr, gc)
            )
            block = net.blocks[index]
            lo, hi = net.layer_slices[k], net.layer_slices[k + 1]
            rows = slice(lo.start - block.rows.start, lo.stop - block.rows.start)
            cols = slice(hi.start - block.cols.start, hi.stop - block.cols.start)
            count = int(net.masks[index][rows, cols].sum())
            views.append((index, rows, cols, count))
        return views

    def draw_beta(self, generator: torch.Generator) -> float:
        """The signed nudging for the next weakly-clamped phase: ``+beta``, or with
        ``random_sign`` a fair coin's sign times ``beta`` drawn from ``generator``."""
        beta = self.config.beta
        if self.config.random_sign and torch.rand((), generator=generator) < 0.5:
            return -beta
        return beta

    @torch.no_grad()
    def update(
        self, x: torch.Tensor, s_free: torch.Tensor, s_clamped: torch.Tensor, beta: float
    ) -> torch.Tensor:
        """Apply the EP update in place and return the per-layer training rates (eq. 2).

        ``beta`` is the signed nudging used in the weakly-clamped phase. The rate of adjacent
        pair ``l`` is the root-mean-square of the corrections applied to its existing
        adjacent-layer edges (intralayer and skip edges are ignored).
        """
        net = self.network
        scale = 1.0 / (beta * x.shape[0])
        corrections = []
        for block, w, lr in zip(net.blocks, net.weights, self.weight_rates, strict=True):
            if block.is_input:
                corr = x.T @ (s_clamped[:, block.cols] - s_free[:, block.cols])
            else:
                corr = s_clamped[:, block.rows].T @ s_clamped[:, block.cols]
                corr.addmm_(s_free[:, block.rows].T, s_free[:, block.cols], alpha=-1.0)
            corr.mul_(lr).mul_(scale)
            if block.is_diagonal:
                # exact symmetry: both triangles get the same float sum
                corr = corr.add_(corr.T.clone()).mul_(0.5)
            w.add_(corr)
            corrections.append(corr)
        net.biases.add_(self.bias_rates * (s_clamped - s_free).sum(0) * scale)
        return torch.stack(
            [
                (corrections[i][rows, cols] ** 2).sum().div(max(count, 1)).sqrt()
                for i, rows, cols, count in self._rate_views
            ]
        )
