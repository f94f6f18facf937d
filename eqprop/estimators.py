"""Gradient estimators: equilibria in, an estimate of ``-dC/dtheta`` out; weights untouched.

After the free phase of a batch reaches ``s0``, an estimator names the signed nudgings of its
weakly-clamped phases (:meth:`Estimator.betas`, each phase starting from ``s0``) and turns
the equilibria they reach into an :class:`Estimate` (``docs/science.md`` section 1), batch
means of

- ``positive``: one phase at ``+beta``; ``(1/beta) (rho(s^b) rho(s^b)^T - rho(s0) rho(s0)^T)``
  (``rho`` the network's activation; the hard sigmoid's states are their own ``rho``);
- ``random-sign`` (the ICONS protocol): one phase at ``+beta`` or ``-beta`` by a fair coin
  drawn from the trainer's generator after the free phase; the same formula, dividing by the
  signed beta;
- ``centered``: two phases at ``+beta`` and ``-beta``;
  ``(1/(2 beta)) (rho(s^+) rho(s^+)^T - rho(s^-) rho(s^-)^T)``, whose bias against the true
  gradient is of order ``beta^2`` instead of ``beta``.

The same form for the biases, with ``rho(s)`` in place of the products. A new estimator is
one class here plus one line in :data:`ESTIMATORS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from eqprop.energy_network import EnergyNetwork
from eqprop.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Estimate:
    """A gradient estimate in the network's block storage, kept as ``scale`` times raw sums
    over the batch so that the built-in update applies it with the same float operations as
    always (``weights[i] * rate * scale``).

    Attributes:
        weights: per stored block, ``sum_batch (u_i^a u_j^a - u_i^b u_j^b)`` with ``u`` the
            inputs and states (only the block's own rows and columns).
        biases: ``sum_batch (rho(s^a) - rho(s^b))``.
        scale: ``1 / (batch * beta)`` (``1 / (2 batch beta)`` for centered); ``scale *
            weights[i]`` estimates ``-dC/dW`` on the edges of block ``i``.
    """

    weights: list[torch.Tensor]
    biases: torch.Tensor
    scale: float

    def descent(self, network: EnergyNetwork) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The estimate itself, ``scale * raw``, per block of ``network`` (zero on missing
        edges, diagonal blocks symmetrised) and for the biases: the direction of
        ``-dC/dtheta``, for ``.grad`` or for comparison with the true gradient."""
        scaled = [raw.mul(self.scale) for raw in self.weights]
        return network.on_edges(scaled), self.biases * self.scale


def correlation_difference(
    network: EnergyNetwork, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The raw sums of an estimate between the states ``a`` and ``b`` of ``network``
    (:meth:`~eqprop.energy_network.EnergyNetwork.correlation_difference`): for the fully connected
    network, per stored block ``sum_batch (u^a u^a^T - u^b u^b^T)``, ``u = (x, rho(s))``, and
    ``sum_batch (rho(a) - rho(b))`` for the biases; for a convolutional one, the same
    correlations through its kernels (:mod:`eqprop.conv`)."""
    return network.correlation_difference(x, a, b)


@dataclass(frozen=True)
class Estimator:
    """Base of the estimators: ``beta``, the magnitude of the nudging (non-zero, finite)."""

    beta: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.beta, (int, float)) and np.isfinite(self.beta) and self.beta):
            raise ConfigError(f"beta must be a non-zero number, got {self.beta!r}")

    def betas(self, generator: torch.Generator) -> tuple[float, ...]:
        """The signed beta of each weakly-clamped phase of the batch (drawn after its free
        phase)."""
        raise NotImplementedError

    @torch.no_grad()
    def estimate(
        self,
        network: EnergyNetwork,
        x: torch.Tensor,
        free: torch.Tensor,
        nudged: Sequence[torch.Tensor],
        betas: Sequence[float],
    ) -> Estimate:
        """The estimate from the free equilibrium and the nudged ones (in :meth:`betas`
        order)."""
        weights, biases = correlation_difference(network, x, nudged[0], free)
        return Estimate(weights, biases, 1.0 / (betas[0] * x.shape[0]))


@dataclass(frozen=True)
class Positive(Estimator):
    """One phase at ``+beta``."""

    def betas(self, generator: torch.Generator) -> tuple[float, ...]:
        return (self.beta,)


@dataclass(frozen=True)
class RandomSign(Estimator):
    """One phase at ``+beta`` or ``-beta`` by a fair coin from ``generator``."""

    def betas(self, generator: torch.Generator) -> tuple[float, ...]:
        return (-self.beta,) if torch.rand((), generator=generator) < 0.5 else (self.beta,)


@dataclass(frozen=True)
class Centered(Estimator):
    """Two phases, ``+beta`` and ``-beta``, both from the free equilibrium."""

    def betas(self, generator: torch.Generator) -> tuple[float, ...]:
        return (self.beta, -self.beta)

    @torch.no_grad()
    def estimate(
        self,
        network: EnergyNetwork,
        x: torch.Tensor,
        free: torch.Tensor,
        nudged: Sequence[torch.Tensor],
        betas: Sequence[float],
    ) -> Estimate:
        weights, biases = correlation_difference(network, x, nudged[0], nudged[1])
        return Estimate(weights, biases, 1.0 / (2.0 * betas[0] * x.shape[0]))


#: name -> estimator class (a new estimator is one class above plus one line here)
ESTIMATORS: dict[str, type[Estimator]] = {
    "positive": Positive,
    "random-sign": RandomSign,
    "centered": Centered,
}


def get(name: str, beta: float = 1.0) -> Estimator:
    """The estimator called ``name`` with nudging magnitude ``beta``."""
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](beta)
