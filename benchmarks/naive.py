"""A naive equilibrium-propagation engine, written the way the paper authors' code works.

It is the reference the benchmark compares against and the independent formulation the tests
compare :class:`eqprop.training.Trainer` with. Everything is dense over *all* ``N`` neurons
(``N = 2294`` for 784-500-500-500-10), inputs included:

- one ``N x N`` weight matrix ``W`` and a 0/1 topology mask; every step uses ``W * mask``;
- one state vector over all neurons, the input entries set to the example ``x``;
- a relaxation step is ``s <- clip(s + eps (s_all (W * mask) + b - s))`` on the non-input
  neurons, with ``- eps beta (s_out - d)`` added on the outputs in the weakly-clamped phase,
  in a plain Python loop;
- the update builds the per-example outer products ``rho rho^T`` (shape ``(batch, N, N)``),
  ``dW = (1 / beta) mean_batch(rho_c rho_c^T - rho_f rho_f^T) * rates * mask``.

Only the *semantics* of :meth:`eqprop.training.Trainer.train_batch` are shared (phase order,
the beta-sign coin from a generator seeded the same way, per-pair and bias rates, persistent
particles, the eq. 2 layer rates); the arithmetic is written out again from SPEC section 1,
and the per-edge rates are rebuilt from the rule's configuration and the topology rather than
taken from eqprop's block storage. Only the initial weights are read from the network
(:meth:`eqprop.network.Network.dense_weights`) so both engines start identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from eqprop.network import Network
from eqprop.rules import EquilibriumPropagation
from eqprop.topology import ADJACENT
from eqprop.training import Relaxation


@dataclass
class NaiveBatch:
    """What one naive training batch measured (mirrors ``eqprop.training.BatchResult``)."""

    errors: int
    size: int
    beta: float
    free_steps: int
    layer_rates: torch.Tensor


class NaiveEP:
    """Dense, masked EP over all neurons, with persistent particles.

    Args:
        network: supplies the topology, sizes and initial weights and biases (copied; the
            network itself is never modified).
        rule: supplies the learning-rate configuration (lr per pair or single, lr_skip, beta,
            random sign); its block-shaped rate tensors are not used.
        relaxation, n_train, batch_size, persistent, seed: as for ``Trainer``.
    """

    def __init__(
        self,
        network: Network,
        rule: EquilibriumPropagation,
        relaxation: Relaxation,
        *,
        n_train: int,
        batch_size: int = 20,
        persistent: bool = True,
        seed: int = 0,
    ) -> None:
        topo = network.topology
        dtype, device = network.dtype, network.device
        self.sizes = topo.sizes
        self.n_in = topo.sizes[0]
        self.n = topo.n_neurons
        self.out = slice(self.n - topo.sizes[-1], self.n)
        self.relaxation, self.batch_size, self.persistent = relaxation, batch_size, persistent
        self.n_train = n_train
        self.config = rule.config

        self.W = network.dense_weights().clone()
        self.mask = torch.as_tensor(topo.adjacency(), dtype=dtype, device=device)
        self.b = torch.zeros(self.n, dtype=dtype, device=device)
        self.b[self.n_in :] = network.biases

        # per-edge learning rates from the configuration: adjacent-layer edges take the rate
        # of their pair, intralayer and skip edges lr_skip (default: the single / first rate)
        n_pairs = len(self.sizes) - 1
        lr = self.config.lr
        pair = np.asarray(lr if isinstance(lr, tuple) else (lr,) * n_pairs, dtype=np.float64)
        skip = self.config.lr_skip if self.config.lr_skip is not None else pair[0]
        layer = topo.layer_of
        rates = np.full((self.n, self.n), float(skip))
        low = np.minimum.outer(layer, layer)
        adjacent = np.abs(np.subtract.outer(layer, layer)) == 1
        rates[adjacent] = pair[low[adjacent]]
        self.rates = torch.as_tensor(rates, dtype=dtype, device=device)
        # bias of a neuron in layer k >= 1: the rate of its incoming pair k - 1
        bias_rates = np.zeros(self.n)
        bias_rates[self.n_in :] = pair[layer[self.n_in :] - 1]
        self.bias_rates = torch.as_tensor(bias_rates, dtype=dtype, device=device)
        # existing adjacent-layer edges of each pair (eq. 2 denominators)
        kinds_adjacent = topo.kinds == ADJACENT
        self.layer_index = [
            slice(int(topo.offsets[k]), int(topo.offsets[k + 1])) for k in range(len(self.sizes))
        ]
        self.pair_counts = [
            int(np.sum(kinds_adjacent & (layer[topo.edges[:, 0]] == k))) for k in range(n_pairs)
        ]

        self.generator = torch.Generator().manual_seed(seed)
        self.particles = torch.zeros(n_train, self.n, dtype=dtype, device=device)
        self.dtype, self.device = dtype, device

    # -- relaxation --------------------------------------------------------------------------
    def phase(
        self,
        s: torch.Tensor,
        steps: int,
        beta: float = 0.0,
        target: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        """``steps`` masked dense steps (fewer with the relaxation's ``tol`` in the free
        phase); ``s`` covers all neurons, its input entries hold ``x``. Returns the new state
        and the number of steps taken."""
        eps, tol = self.relaxation.eps, self.relaxation.tol if beta == 0 else None
        n_in = self.n_in
        s = s.clone()
        s[:, n_in:] = torch.clamp(s[:, n_in:], 0.0, 1.0)
        taken = 0
        for taken in range(1, steps + 1):  # noqa: B007 - read after the loop
            # inputs take part with rho(x) = x, states in [0, 1] with rho(s) = s
            grad = s @ (self.W * self.mask) + self.b - s  # -dF/ds at beta = 0
            if beta != 0:
                grad[:, self.out] -= beta * (s[:, self.out] - target)
            new = torch.clamp(s[:, n_in:] + eps * grad[:, n_in:], 0.0, 1.0)
            done = tol is not None and float((new - s[:, n_in:]).abs().max()) < tol
            s = torch.cat([s[:, :n_in], new], dim=1)
            if done:
                break
        return s, taken

    # -- one batch, one epoch ----------------------------------------------------------------
    def train_batch(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> NaiveBatch:
        """Free phase, prediction, particles, beta coin, clamped phase, update, eq. 2 rates."""
        relax = self.relaxation
        target = torch.nn.functional.one_hot(y, self.sizes[-1]).to(self.dtype)
        if self.persistent:
            s = self.particles[index].clone()
        else:
            s = torch.zeros(len(index), self.n, dtype=self.dtype, device=self.device)
        s[:, : self.n_in] = x
        s_free, free_steps = self.phase(s, relax.n_free)
        errors = int((s_free[:, self.out].argmax(1) != y).sum())
        if self.persistent:
            self.particles[index] = s_free
        beta = self.config.beta
        if self.config.random_sign and torch.rand((), generator=self.generator) < 0.5:
            beta = -beta
        s_clamped, _ = self.phase(s_free, relax.n_clamped, beta, target)

        outer = s_clamped[:, :, None] * s_clamped[:, None, :]
        outer -= s_free[:, :, None] * s_free[:, None, :]
        dW = outer.mean(0) / beta * self.rates * self.mask
        self.W += dW
        self.b += self.bias_rates * (s_clamped - s_free).mean(0) / beta
        rates = []
        for k, count in enumerate(self.pair_counts):
            block = dW[self.layer_index[k], self.layer_index[k + 1]]
            rates.append(torch.sqrt((block**2).sum() / max(count, 1)))
        return NaiveBatch(errors, len(index), beta, free_steps, torch.stack(rates))

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor) -> list[NaiveBatch]:
        """One epoch in the order drawn from the generator, like ``Trainer.train_epoch``."""
        order = torch.randperm(self.n_train, generator=self.generator)
        results = []
        for start in range(0, self.n_train, self.batch_size):
            index = order[start : start + self.batch_size].to(x.device)
            results.append(self.train_batch(x[index], y[index], index))
        return results

    # -- views in eqprop's coordinates --------------------------------------------------------
    def state_particles(self) -> torch.Tensor:
        """Persistent particles without the input entries, shaped like ``Trainer.particles``."""
        return self.particles[:, self.n_in :]

    def biases(self) -> torch.Tensor:
        """Biases of the non-input neurons, shaped like ``Network.biases``."""
        return self.b[self.n_in :]
