"""Training directed networks on small data sets with DEEP or asymmetric EP.

Independent runs (one seed each) are trained side by side as a leading dimension of the
weight tensor; each run draws its initial weights and pruning decisions from its own
generator, so a run's result does not depend on which other runs share the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from eqprop.directed.learning import apply_update, asymmetric_ep_update, deep_update
from eqprop.directed.network import (
    INIT_DISTRIBUTIONS,
    DirectedNetwork,
    complete_network,
    initial_state,
    relax,
)
from eqprop.directed.pruning import NORMALISATIONS, prune
from eqprop.errors import ConfigError

RULES = ("deep", "asymmetric")


@dataclass(frozen=True)
class DirectedConfig:
    """Hyperparameters of training a complete directed network; validated on construction.

    Farinha et al. give none of these. The defaults are those of the deep-logic experiment,
    chosen on XOR with seeds 10..29 (the experiment reports seeds 0..9). The authors'
    notebook (``logical_operations_DEEP.ipynb`` of MatildeTristany/DEEP-model-ESANN-2020)
    uses other values; the fields after ``success_mse`` exist to express its protocol, and
    their defaults keep this package's own protocol unchanged.

    Attributes:
        rule: ``"deep"`` (eq. 1 dynamics, eq. 2 rule of Farinha et al.) or ``"asymmetric"``
            (asymmetric EP of Scellier et al. 2018: unit leak, ``s_i^0 (s_j^beta - s_j^0)``).
        n_hidden: hidden neurons of the complete graph.
        input_edges: whether the graph has the edges from free neurons into the inputs,
            which only add to the leak of eq. 1 (see
            :func:`~eqprop.directed.network.allowed_edges`).
        eps: Euler step of the dynamics.
        beta: nudging strength of the second phase (non-zero).
        free_steps: ``M_0``, steps of the first phase (from zero states).
        nudged_steps: ``M_beta``, steps of the second phase.
        lr: learning rate.
        l1: L1 regularisation strength.
        prune_threshold: ``lambda`` of eq. 3 (0 disables pruning).
        temperature: ``T`` of eq. 3.
        init_scale: initial weights and biases are ``U[-init_scale, init_scale]``.
        epochs: passes over the data.
        batch_size: examples per update; None for the full batch.
        success_mse: a run has converged when its first-phase MSE falls below this.
        init_distribution: ``"uniform"``: initial weights and biases ``U[-init_scale,
            init_scale]``; ``"normal"``: ``N(0, init_scale^2)`` (the notebook, with 0.05).
        state_init_scale: the free neurons start every first phase (and the final
            evaluation) at states drawn from ``U[0, state_init_scale)``, afresh for each
            example and epoch (the notebook, with 0.1); 0 starts them at 0. In [0, 1].
        prune_normalisation: what eq. 3's Boltzmann distribution is normalised over:
            ``"present"``, the incoming connections still present; ``"column"``, every
            source of the column with absent ones counted as weight 0 (the notebook). See
            :func:`~eqprop.directed.pruning.removal_probabilities`.
        prune_permanent: True: a pruned connection is gone for good. False: its weight is set
            to 0 but later updates can make it grow again (the notebook); the final
            network's mask then drops the connections whose weight is exactly 0, and its
            sparsity counts them, as the notebook counts the zero entries of its matrix.
    """

    rule: str = "deep"
    n_hidden: int = 5
    input_edges: bool = True
    eps: float = 0.1
    beta: float = 2.0
    free_steps: int = 200
    nudged_steps: int = 20
    lr: float = 10.0
    l1: float = 0.0
    prune_threshold: float = 0.0
    temperature: float = 1.0
    init_scale: float = 0.5
    epochs: int = 100
    batch_size: int | None = None
    success_mse: float = 0.01
    init_distribution: str = "uniform"
    state_init_scale: float = 0.0
    prune_normalisation: str = "present"
    prune_permanent: bool = True

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        for name, allowed in (
            ("init_distribution", INIT_DISTRIBUTIONS),
            ("prune_normalisation", NORMALISATIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        checks = [
            ("n_hidden", self.n_hidden >= 0, "must be >= 0"),
            ("eps", 0 < self.eps <= 1, "must be in (0, 1]"),
            ("beta", self.beta != 0 and math.isfinite(self.beta), "must be non-zero and finite"),
            ("free_steps", self.free_steps >= 1, "must be >= 1"),
            ("nudged_steps", self.nudged_steps >= 1, "must be >= 1"),
            ("lr", 0 < self.lr < math.inf, "must be > 0 and finite"),
            ("l1", 0 <= self.l1 < math.inf, "must be >= 0 and finite"),
            ("prune_threshold", 0 <= self.prune_threshold < math.inf, "must be >= 0"),
            ("temperature", 0 < self.temperature < math.inf, "must be > 0 and finite"),
            ("init_scale", 0 <= self.init_scale < math.inf, "must be >= 0 and finite"),
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("batch_size", self.batch_size is None or self.batch_size >= 1, "must be >= 1"),
            ("success_mse", 0 < self.success_mse < math.inf, "must be > 0 and finite"),
            ("state_init_scale", 0 <= self.state_init_scale <= 1, "must be in [0, 1]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"{name} {rule}, got {getattr(self, name)!r}")

    @property
    def leak(self) -> str:
        """The dynamics of the rule: DEEP's eq. 1 or asymmetric EP's unit leak."""
        return "deep" if self.rule == "deep" else "unit"


@dataclass(frozen=True)
class TrainingResult:
    """Outcome of :func:`train` for ``R`` runs.

    Attributes:
        mse: ``(R, epochs + 1)`` first-phase MSE of each epoch, then of the final networks;
            NaN after a run diverged.
        network: the final networks (leading dimension ``R``).
        diverged_at: ``(R,)`` epoch whose updates made the weights non-finite, or -1.
        converged_epoch: ``(R,)`` first epoch whose MSE is below ``success_mse``, or -1.
        success: ``(R,)`` whether the final networks' MSE is below ``success_mse``.
        max_error: ``(R,)`` largest ``|s_out - y|`` of the final networks over the examples;
            below 0.5 every output is on the right side of 0.5.
        sparsity: ``(R,)`` fraction of the complete graph's parameters removed.
    """

    mse: torch.Tensor
    network: DirectedNetwork
    diverged_at: torch.Tensor
    converged_epoch: torch.Tensor
    success: torch.Tensor
    max_error: torch.Tensor
    sparsity: torch.Tensor


def _initial_network(
    config: DirectedConfig, n_inputs: int, n_outputs: int, generators: Sequence[torch.Generator]
) -> DirectedNetwork:
    """One complete network per generator, stacked on a leading dimension."""
    nets = [
        complete_network(
            n_inputs,
            config.n_hidden,
            n_outputs,
            config.init_scale,
            g,
            input_edges=config.input_edges,
            distribution=config.init_distribution,
        )
        for g in generators
    ]
    weights = torch.stack([net.weights for net in nets])
    return DirectedNetwork(weights, torch.stack([net.mask for net in nets]), n_inputs, n_outputs)


def free_phase_errors(
    net: DirectedNetwork,
    config: DirectedConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    free: torch.Tensor | None = None,
) -> torch.Tensor:
    """Output errors ``s_out - y`` at the end of the first phase, ``(..., B, n_outputs)``.

    ``free``: initial states of the free neurons (see
    :func:`~eqprop.directed.network.initial_state`); zeros when None.
    """
    s = relax(net, initial_state(net, x, free), config.free_steps, config.eps, config.leak)
    return s[..., net.outputs] - y


def _step(
    net: DirectedNetwork,
    config: DirectedConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both phases on a batch, the first from free states ``start`` (zeros when None);
    returns the first-phase squared errors summed per network and the update direction."""
    free = relax(net, initial_state(net, x, start), config.free_steps, config.eps, config.leak)
    squared_error = (free[..., net.outputs] - y).square().sum(dim=(-2, -1))
    if config.rule == "deep":
        path = relax(net, free, config.nudged_steps, config.eps, config.leak, config.beta, y, True)
        return squared_error, deep_update(path, config.beta)
    nudged = relax(net, free, config.nudged_steps, config.eps, config.leak, config.beta, y)
    return squared_error, asymmetric_ep_update(free, nudged, config.beta)


def _uniform(generators: Sequence[torch.Generator], shape: torch.Size) -> torch.Tensor:
    """``U[0, 1)`` draws of ``shape`` for every run, each from the run's own generator."""
    return torch.stack([torch.rand(shape, generator=g, dtype=torch.float64) for g in generators])


def _start(
    config: DirectedConfig, generators: Sequence[torch.Generator], n_examples: int, n_free: int
) -> torch.Tensor | None:
    """Initial free states of a first phase: ``U[0, state_init_scale)`` per run, or None."""
    if config.state_init_scale == 0:
        return None
    return config.state_init_scale * _uniform(generators, torch.Size((n_examples, n_free)))


def train(
    config: DirectedConfig, x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int]
) -> TrainingResult:
    """Train one complete directed network per seed on ``(x, y)``.

    Each epoch visits the examples in a random order per run, in batches of
    ``config.batch_size``. Per batch: first phase from zero states (or from
    ``U[0, state_init_scale)``), second phase from its end, one update with the rule's
    direction and L1 (:func:`apply_update`), then stochastic pruning (eq. 3) when
    ``prune_threshold > 0``. The MSE of an epoch is that of the first phases during the
    epoch, before each batch's update. A run whose weights become non-finite is marked
    diverged and frozen (its later MSE is NaN); the others go on. With
    ``prune_permanent=False`` the final networks' masks drop the edges whose weight is
    exactly 0, except for diverged runs (whose weights are all set to 0), which keep theirs.
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    n_examples = x.shape[0]
    batch_size = config.batch_size or n_examples
    if batch_size > n_examples:
        raise ConfigError(f"batch_size must be <= {n_examples} (the number of examples)")
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    net = _initial_network(config, x.shape[-1], y.shape[-1], generators)
    n_free = net.n_neurons - net.n_inputs
    n_runs = len(generators)
    mse = torch.full((n_runs, config.epochs + 1), math.nan, dtype=torch.float64)
    diverged_at = torch.full((n_runs,), -1)
    for epoch in range(config.epochs):
        order = torch.stack([torch.randperm(n_examples, generator=g) for g in generators])
        squared_error = torch.zeros(n_runs, dtype=torch.float64)
        for start in range(0, n_examples, batch_size):
            batch = order[:, start : start + batch_size]
            start = _start(config, generators, batch.shape[-1], n_free)
            error, direction = _step(net, config, x[batch], y[batch], start)
            squared_error += error
            net = apply_update(net, direction, config.lr, config.l1)
            if config.prune_threshold > 0:
                uniform = _uniform(generators, net.weights.shape[1:])
                net = prune(
                    net,
                    config.prune_threshold,
                    config.temperature,
                    uniform,
                    config.prune_normalisation,
                    config.prune_permanent,
                )
        mse[:, epoch] = squared_error / y[0].numel() / n_examples
        bad = ~net.weights.isfinite().all(dim=(-2, -1)) & (diverged_at < 0)
        if bad.any():
            diverged_at[bad] = epoch
            net = net.with_weights(net.weights.masked_fill((diverged_at >= 0)[:, None, None], 0))
    errors = free_phase_errors(net, config, x, y, _start(config, generators, n_examples, n_free))
    mse[:, -1] = errors.square().mean(dim=(-2, -1))
    epochs = torch.arange(config.epochs + 1)
    mse[(diverged_at[:, None] >= 0) & (epochs > diverged_at[:, None])] = math.nan
    below = mse < config.success_mse
    converged = torch.where(below.any(dim=-1), below.int().argmax(dim=-1), -1)
    success = below[:, -1]
    max_error = errors.abs().amax(dim=(-2, -1))
    if not config.prune_permanent:
        present = (net.weights != 0) | (diverged_at >= 0)[:, None, None]
        net = net.with_weights(net.weights, net.mask & present)
    return TrainingResult(mse, net, diverged_at, converged, success, max_error, net.sparsity())
