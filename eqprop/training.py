"""Epochs of equilibrium propagation: persistent particles, evaluation, resumable state.

Exact semantics of one training batch (:meth:`Trainer.train_batch`):

1. The free phase starts from the batch's persistent particles (each example's free
   equilibrium from the last time it was trained on; all zeros the first time), or from zeros
   when ``persistent=False``, and runs ``n_free`` steps with ``beta = 0`` (fewer with an
   adaptive tolerance).
2. The prediction is the argmax of the output states at that free equilibrium; the batch's
   training errors are counted here, before the update.
3. The free equilibrium is stored as the examples' persistent particles.
4. The sign of beta is drawn (fair coin, from the trainer's generator) when random signs are
   on; the weakly-clamped phase then runs ``n_clamped`` steps from the free equilibrium.
5. The EP update is applied (:class:`~eqprop.rules.EquilibriumPropagation`), dividing by the
   signed beta, and the per-layer rates of eq. 2 are returned.

An epoch visits the training set in an order drawn from the trainer's generator at the start
of the epoch. All random draws come from that one seeded generator, and its state, the
epoch's order and position, the particles and the network are in :meth:`Trainer.state_dict`,
so a run restored mid-epoch continues exactly as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from eqprop.errors import ConfigError, DivergenceError
from eqprop.network import Network
from eqprop.rules import EquilibriumPropagation


@dataclass(frozen=True)
class Relaxation:
    """How the network relaxes.

    Attributes:
        eps: step size of the discrete dynamics, > 0.
        n_free: steps of the free phase (the cap when ``tol`` is set), >= 1.
        n_clamped: steps of the weakly-clamped phase, >= 1.
        tol: adaptive free phase: stop once the largest state change of a step falls below
            ``tol`` (``None``: always ``n_free`` steps, the paper's protocol).
    """

    eps: float = 0.5
    n_free: int = 500
    n_clamped: int = 8
    tol: float | None = None

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ConfigError(f"eps must be > 0, got {self.eps}")
        for name in ("n_free", "n_clamped"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value}")
        if self.tol is not None and not self.tol > 0:
            raise ConfigError(f"tol must be > 0 (or unset for fixed steps), got {self.tol}")


@dataclass(frozen=True)
class BatchResult:
    """What one training batch measured."""

    errors: int
    size: int
    beta: float
    free_steps: int
    layer_rates: torch.Tensor


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured: training error, mean free steps per batch, the per-layer
    rates of every batch (shape ``(batches, pairs)``) and the free steps of every batch."""

    epoch: int
    train_error: float
    mean_free_steps: float
    layer_rates: torch.Tensor
    free_steps: torch.Tensor


def one_hot(labels: torch.Tensor, n_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot targets ``d`` of shape ``(batch, n_classes)``."""
    return torch.nn.functional.one_hot(labels, n_classes).to(dtype)


class Trainer:
    """Trains a network with EP on a fixed training set.

    Args:
        network, rule: the network and its learning rule.
        relaxation: step size and phase lengths.
        n_train: number of training examples (sizes the persistent particles).
        batch_size: examples per batch.
        persistent: keep persistent particles (ICONS protocol) or start each free phase at 0.
        seed: seed of the generator of epoch orders and beta signs.

    Example:
        >>> import torch
        >>> from eqprop import topology
        >>> from eqprop.network import Network
        >>> from eqprop.rules import EPConfig, EquilibriumPropagation
        >>> net = Network(topology.layered([4, 8, 2]), seed=0)
        >>> x, y = torch.rand(40, 4), (torch.arange(40) % 2)
        >>> trainer = Trainer(net, EquilibriumPropagation(net, EPConfig(lr=0.1)),
        ...                   Relaxation(n_free=20, n_clamped=4), n_train=40, batch_size=10)
        >>> result = trainer.train_epoch(x, y)
        >>> result.epoch, tuple(result.layer_rates.shape)
        (1, (4, 2))
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
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.network, self.rule, self.relaxation = network, rule, relaxation
        self.n_train, self.batch_size, self.persistent = n_train, batch_size, persistent
        self.generator = torch.Generator().manual_seed(seed)
        self.particles = network.zero_state(n_train) if persistent else None
        self.epoch = 0  # completed epochs
        self.order: torch.Tensor | None = None  # this epoch's visiting order
        self.position = 0  # next batch of this epoch
        self.errors = self.seen = 0  # this epoch so far
        self.epoch_rates: list[torch.Tensor] = []  # per-layer rates of this epoch's batches
        self.epoch_steps: list[int] = []  # free steps of this epoch's batches

    # -- one batch ---------------------------------------------------------------------------
    def train_batch(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> BatchResult:
        """One batch of EP (see the module docs for the exact order of events)."""
        net, relax = self.network, self.relaxation
        target = one_hot(y, net.sizes[-1], net.dtype)
        base = net.input_drive(x)
        s = self.particles[index].clone() if self.persistent else net.zero_state(len(index))
        net.relax(s, base, relax.n_free, relax.eps, tol=relax.tol)
        free_steps = net.last_steps
        errors = int((s[:, net.output].argmax(1) != y).sum())
        if self.persistent:
            self.particles[index] = s
        beta = self.rule.draw_beta(self.generator)
        s_clamped = net.relax(s.clone(), base, relax.n_clamped, relax.eps, beta, target)
        rates = self.rule.update(x, s, s_clamped, beta)
        return BatchResult(errors, len(index), beta, free_steps, rates)

    # -- epochs ------------------------------------------------------------------------------
    def train_epoch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> EpochResult:
        """Train (or finish training) one epoch on ``x, y``; ``on_batch`` is called after
        every batch, with the trainer's state already advanced (a safe point to checkpoint).

        Raises :class:`~eqprop.errors.DivergenceError` naming the epoch and batch if states or
        weights become non-finite; nothing is saved after that, so the caller's last checkpoint
        stays the last good one.
        """
        if len(x) != self.n_train:
            raise ConfigError(f"trainer was built for {self.n_train} examples, got {len(x)}")
        if self.order is None:
            self.order = torch.randperm(self.n_train, generator=self.generator)
        n_batches = -(-self.n_train // self.batch_size)
        while self.position < n_batches:
            index = self.order[
                self.position * self.batch_size : (self.position + 1) * self.batch_size
            ]
            dev_index = index.to(x.device)
            result = self.train_batch(x[dev_index], y[dev_index], dev_index)
            if not self._finite(result):
                raise DivergenceError(
                    f"training diverged (non-finite states or weights) in epoch {self.epoch + 1}, "
                    f"batch {self.position + 1}; lower the learning rate or eps and resume from "
                    f"the last checkpoint"
                )
            self.position += 1
            self.errors += result.errors
            self.seen += result.size
            self.epoch_rates.append(result.layer_rates.cpu())
            self.epoch_steps.append(result.free_steps)
            if on_batch is not None:
                on_batch(result)
        epoch = EpochResult(
            self.epoch + 1,
            self.errors / self.seen,
            sum(self.epoch_steps) / n_batches,
            torch.stack(self.epoch_rates),
            torch.tensor(self.epoch_steps, dtype=torch.int32),
        )
        self.epoch += 1
        self.order, self.position = None, 0
        self.errors = self.seen = 0
        self.epoch_rates, self.epoch_steps = [], []
        return epoch

    def _finite(self, result: BatchResult) -> bool:
        net = self.network
        total = sum(w.sum() for w in net.weights) + net.biases.sum() + result.layer_rates.sum()
        return bool(torch.isfinite(total))

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        particles: torch.Tensor | None = None,
        batch_size: int = 1000,
    ) -> float:
        """Error rate on held-out data. Each example relaxes for ``n_free`` steps from zeros,
        or, when ``particles`` (shape ``(len(x), M)``) is given, from its particle, which is
        then overwritten with the new free equilibrium (the paper authors' protocol)."""
        net, relax = self.network, self.relaxation
        errors = 0
        for start in range(0, len(x), batch_size):
            part = slice(start, start + batch_size)
            xb = x[part]
            s = particles[part].clone() if particles is not None else net.zero_state(len(xb))
            net.relax(s, net.input_drive(xb), relax.n_free, relax.eps, tol=relax.tol)
            if particles is not None:
                particles[part] = s
            errors += int((s[:, net.output].argmax(1) != y[part]).sum())
        return errors / len(x)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: network, particles, generator, position."""
        net = self.network
        return {
            "weights": [w.clone() for w in net.weights],
            "biases": net.biases.clone(),
            "particles": None if self.particles is None else self.particles.clone(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "order": self.order,
            "position": self.position,
            "counters": (self.errors, self.seen),
            "epoch_rates": [r.clone() for r in self.epoch_rates],
            "epoch_steps": list(self.epoch_steps),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict`."""
        net = self.network
        for w, saved in zip(net.weights, state["weights"], strict=True):
            w.copy_(saved)
        net.biases.copy_(state["biases"])
        if self.particles is not None:
            self.particles.copy_(state["particles"])
        self.generator.set_state(state["generator"])
        self.epoch, self.order, self.position = state["epoch"], state["order"], state["position"]
        # older checkpoints also hold the epoch's free-step total, now summed from epoch_steps
        self.errors, self.seen = state["counters"][:2]
        self.epoch_rates = list(state["epoch_rates"])
        self.epoch_steps = list(state["epoch_steps"])
