"""Updates: applying a gradient estimate (:mod:`eqprop.estimators`) to the network.

- :class:`MaskedSGD`, the built-in rule (``docs/science.md`` section 1):
  ``W <- W + lr_ij * estimate_ij``, ``b <- b + lr_i * estimate_i``. Rates are one value, or
  one per adjacent layer pair (input side first); intralayer and skip edges take ``lr_skip``
  (default: the single rate). A bias takes the rate of its *incoming* pair (layer-1 biases
  the first rate, output biases the last), or, with ``bias_lr`` set, that one rate (the
  paper authors' code in per-pair mode: every bias at rate 1). Missing edges have rate 0.
- :class:`OptimizerUpdate`: the estimate is written into ``.grad`` as ``-estimate`` (zero on
  missing edges, diagonal blocks symmetrised) and any ``torch.optim`` optimiser (and
  optional scheduler) takes the step; the network re-masks its weights after every
  optimiser step (:meth:`eqprop.network.Network.apply_masks`), so no update ever reaches a
  missing edge, whatever the optimiser's weight decay or momentum. On a convolutional
  network (:class:`eqprop.conv.ConvNetwork`) every kernel and matrix entry is a weight:
  there are no masks, and the optimiser steps on its kernels, matrices and biases as they are.

Both return the per-layer training rates of eq. 2 (``docs/science.md`` section 3): for each
adjacent layer pair, the root-mean-square of the *applied* corrections over its existing
adjacent-layer edges (intralayer and skip edges ignored).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from eqprop.energy_network import EnergyNetwork
from eqprop.errors import ConfigError, EqpropError
from eqprop.estimators import Estimate
from eqprop.network import Network
from eqprop.topology import ADJACENT


@dataclass(frozen=True)
class LearningRates:
    """Rates of :class:`MaskedSGD` (module docs).

    Attributes:
        lr: one rate, or one per adjacent layer pair (input side first), each >= 0.
        lr_skip: rate of intralayer and skip edges (``None``: the single ``lr``; required
            when ``lr`` is per pair and the topology has such edges).
        bias_lr: one rate for every bias (``None``: each bias the rate of its incoming pair).
    """

    lr: float | tuple[float, ...] = 0.02
    lr_skip: float | None = None
    bias_lr: float | None = None

    def __post_init__(self) -> None:
        rates = self.lr if isinstance(self.lr, tuple) else (self.lr,)
        if not rates or any(not np.isfinite(r) or r < 0 for r in rates):
            raise ConfigError(f"lr must be >= 0 (one value or one per layer pair), got {self.lr}")
        for name in ("lr_skip", "bias_lr"):
            value = getattr(self, name)
            if value is not None and (not np.isfinite(value) or value < 0):
                raise ConfigError(f"{name} must be >= 0, got {value}")


class Update:
    """Base of the updates: :meth:`apply` changes the network and returns eq. 2's rates."""

    def __init__(self, network: EnergyNetwork) -> None:
        self.network = network
        self._rate_views = network.pair_views()

    def apply(self, estimate: Estimate) -> torch.Tensor:
        """Apply ``estimate`` in place; return the per-layer rates (eq. 2), one per pair."""
        raise NotImplementedError

    def edges_removed(self) -> None:
        """The network's masks lost edges (:meth:`Network.keep_adjacent_only`): from now on
        no update may reach them. The default suits torch.optim steps, after which the network
        re-masks its weights (:meth:`Network.apply_masks`)."""

    def epoch_metrics(self) -> dict[str, object]:
        """Measurements of the update over the epoch since the last call, for the epoch's
        metrics record (none here; :class:`eqprop.quantization.QuantizedSGD` has some)."""
        return {}

    def state_dict(self) -> dict:
        """State of the update beyond the network's (none here), for exact resume."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict` (nothing to restore here)."""

    def rates(self, corrections: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 2 from the applied per-block corrections."""
        return torch.stack(
            [
                (corrections[i][rows, cols] ** 2).sum().div(max(count, 1)).sqrt()
                for i, rows, cols, count in self._rate_views
            ]
        )


class MaskedSGD(Update):
    """The built-in update with per-edge and per-bias rates (module docs)."""

    def __init__(self, network: Network, rates: LearningRates) -> None:
        super().__init__(network)
        self.config = rates
        n_pairs = network.n_layers - 1
        if isinstance(rates.lr, tuple):
            if len(rates.lr) != n_pairs:
                raise ConfigError(
                    f"lr has {len(rates.lr)} values but the network has {n_pairs} adjacent "
                    f"layer pairs; give one rate per pair or a single rate"
                )
            pair_rates = np.asarray(rates.lr, dtype=np.float64)
            if rates.lr_skip is None and np.any(network.topology.kinds != ADJACENT):
                raise ConfigError(
                    "lr is per layer pair and the topology has intralayer or skip edges: "
                    "set lr_skip"
                )
        else:
            pair_rates = np.full(n_pairs, float(rates.lr))
        skip_rate = float(rates.lr_skip if rates.lr_skip is not None else pair_rates[0])
        topo = network.topology
        layer = topo.layer_of[topo.edges]
        edge_rates = np.full(len(layer), skip_rate)
        adjacent = topo.kinds == ADJACENT
        edge_rates[adjacent] = pair_rates[layer[adjacent].min(axis=1)]
        #: per stored block, the rate of every edge (0 where there is none)
        self.weight_rates = network.from_edges(edge_rates)
        # bias of a neuron in layer k >= 1 takes the rate of its incoming pair k-1
        bias = np.repeat(pair_rates, network.sizes[1:])
        if rates.bias_lr is not None:
            bias = np.full_like(bias, rates.bias_lr)
        self.bias_rates = torch.as_tensor(bias, dtype=network.dtype, device=network.device)

    def edges_removed(self) -> None:
        """Rate 0 on the removed edges."""
        self.weight_rates = [
            rate.mul(mask) for rate, mask in zip(self.weight_rates, self.network.masks, strict=True)
        ]

    @torch.no_grad()
    def apply(self, estimate: Estimate) -> torch.Tensor:
        net, scale = self.network, estimate.scale
        corrections = []
        for block, w, lr, raw in zip(
            net.blocks, net.weights, self.weight_rates, estimate.weights, strict=True
        ):
            corr = raw.mul(lr).mul_(scale)
            if block.is_diagonal:
                # exact symmetry: both triangles get the same float sum (a + b == b + a)
                corr = torch.add(corr, corr.T).mul_(0.5)
            w.add_(corr)
            corrections.append(corr)
        net.biases.add_(self.bias_rates * estimate.biases * scale)
        return self.rates(corrections)


class OptimizerUpdate(Update):
    """Any ``torch.optim`` optimiser on the network's weight blocks and biases (module docs).

    Args:
        network: the network to update.
        optimizer: the optimiser, as one of
            - a class, built with its defaults on the parameter list (the weight blocks in
              storage order, then the biases): ``torch.optim.Adam``;
            - a factory taking that list: ``lambda p: torch.optim.Adam(p, lr=1e-3)``;
            - an optimiser already built over the network's parameters:
              ``torch.optim.Adam(net.parameters(), lr=1e-3)``.
        scheduler: optionally builds a learning-rate scheduler from the optimiser; it steps
            once per batch.

    Raises:
        EqpropError: an optimiser built over a parameter that is not the network's, or
            something that is not (and does not build) an optimiser.

    Example:
        >>> import torch
        >>> from eqprop import topology
        >>> net = Network(topology.layered([4, 3, 2]), seed=0)
        >>> update = OptimizerUpdate(net, lambda p: torch.optim.Adam(p, lr=1e-3))
        >>> len(update.optimizer.param_groups[0]["params"])
        3
        >>> OptimizerUpdate(net, torch.optim.Adam(net.parameters())).optimizer.defaults["lr"]
        0.001
    """

    def __init__(
        self,
        network: EnergyNetwork,
        optimizer: torch.optim.Optimizer | Callable[[list[torch.Tensor]], torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], object] | None = None,
    ) -> None:
        super().__init__(network)
        self.parameters = [*network.weights, network.biases]
        built = optimizer
        if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
            built = optimizer(self.parameters)
        if not isinstance(built, torch.optim.Optimizer):
            raise EqpropError(
                f"the optimizer must be a torch.optim optimiser, its class or a factory of "
                f"one; got {type(built).__name__}"
            )
        self.optimizer = built
        own = {id(p) for p in self.parameters}
        foreign = sum(
            id(p) not in own for group in self.optimizer.param_groups for p in group["params"]
        )
        if foreign:
            raise EqpropError(
                f"the optimiser holds {foreign} tensor(s) that are not this network's "
                f"parameters; build it over net.parameters()"
            )
        self.scheduler = scheduler(self.optimizer) if scheduler is not None else None

    def state_dict(self) -> dict:
        """The optimiser's state (momenta, step counts) and the scheduler's, so that a
        resumed run continues exactly."""
        state = {"optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict` (older checkpoints hold none: the
        optimiser then starts afresh, as it did when they were resumed)."""
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])

    @torch.no_grad()
    def apply(self, estimate: Estimate) -> torch.Tensor:
        net = self.network
        before = [w.clone() for w in net.weights]
        weights, biases = estimate.descent(net)
        for w, g in zip(net.weights, weights, strict=True):
            w.grad = g.neg_()
        net.biases.grad = biases.neg_()
        self.optimizer.step()  # the network re-masks its weights after the step
        if self.scheduler is not None:
            self.scheduler.step()
        for p in self.parameters:
            p.grad = None
        return self.rates([w - b for w, b in zip(net.weights, before, strict=True)])
