"""Epochs of equilibrium propagation: persistent particles, evaluation, resumable state.

The trainer composes the parts (``docs/architecture.md``): a free relaxer and a nudged
relaxer (:mod:`eqprop.relaxation`), a nudging scheme (:mod:`eqprop.nudging`), an estimator
(:mod:`eqprop.estimators`) and an update (:mod:`eqprop.updates`). Exact semantics of one
training batch (:meth:`Trainer.train_batch`):

1. The free phase starts from the batch's persistent particles (each example's free
   equilibrium from the last time it was trained on; all zeros the first time), or from zeros
   when ``persistent=False``, and runs the free relaxer.
2. The prediction is the argmax of the output states at that free equilibrium; the batch's
   training errors are counted here, before the update.
3. The free equilibrium is stored as the examples' persistent particles.
4. The estimator names its weakly-clamped phases (:meth:`~eqprop.estimators.Estimator.betas`,
   drawing from the trainer's generator where it is random); each runs the nudged relaxer
   from the free equilibrium.
5. The estimator turns the equilibria into an estimate; the update applies it and returns the
   per-layer rates of eq. 2.

Batch order (``batch_order``): ``reshuffle`` draws a new order of the training set from the
trainer's generator at the start of every epoch; ``fixed`` visits batch ``k`` = examples
``k*B .. k*B+B-1`` in file order every epoch (the ICONS authors' code); ``shuffled-once``
keeps those fixed batches but visits them in one order drawn once from ``seed`` (the journal
authors' code; a short last batch, when ``B`` does not divide the set, stays last). All
random draws come from seeded generators; their state, the epoch's order and position, the
particles and the network are in :meth:`Trainer.state_dict`, so a run restored mid-epoch
continues exactly as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from eqprop.errors import ConfigError, DivergenceError
from eqprop.estimators import Estimator
from eqprop.network import Network
from eqprop.nudging import Nudge, Nudging
from eqprop.relaxation import Relaxer, RelaxResult
from eqprop.updates import Update

BATCH_ORDERS = ("reshuffle", "fixed", "shuffled-once")


@dataclass(frozen=True)
class BatchResult:
    """What one training batch measured."""

    errors: int
    size: int
    betas: tuple[float, ...]
    free_steps: int
    layer_rates: torch.Tensor


@dataclass(frozen=True)
class EpochResult:
    """What one epoch measured: training error, mean free steps per batch, the per-layer
    rates of every batch (shape ``(batches, pairs)``), the free steps of every batch, and
    the update's own measurements of the epoch (:meth:`Update.epoch_metrics`)."""

    epoch: int
    train_error: float
    mean_free_steps: float
    layer_rates: torch.Tensor
    free_steps: torch.Tensor
    metrics: dict = field(default_factory=dict)


class DeadOutputMonitor:
    """Notices a dead output layer: the output pair's eq. 2 rate exactly 0 for ``patience``
    consecutive batches (every output clipped at 0 in both phases, so nothing reaches it).

    :meth:`update` returns a one-line warning the first time that happens, then ``None``.
    """

    def __init__(self, nudging: str, patience: int = 100) -> None:
        self.nudging, self.patience = nudging, patience
        self.run = 0
        self.warned = False

    def update(self, layer_rates: torch.Tensor) -> str | None:
        """Record one batch's per-layer rates; the warning, once, when the layer is dead."""
        self.run = self.run + 1 if float(layer_rates[-1]) == 0.0 else 0
        if self.warned or self.run < self.patience:
            return None
        self.warned = True
        fix = (
            "this is the known collapse of the gradient step at large rates: use "
            "--set nudged.nudging=icons (the papers' step) or a lower update.lr"
            if self.nudging == "gradient"
            else "lower update.lr or check the data and targets"
        )
        return (
            f"eqprop: warning: the output layer has stopped learning (its pair's rate was "
            f"exactly 0 for {self.patience} consecutive batches); {fix}"
        )


def one_hot(labels: torch.Tensor, n_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot targets ``d`` of shape ``(batch, n_classes)``."""
    return torch.nn.functional.one_hot(labels, n_classes).to(dtype)


class Trainer:
    """Trains a network with EP on a fixed training set.

    Args:
        network: the network.
        estimator, update: how equilibria become an estimate, and how it is applied.
        free, nudged: the relaxers of the free and the weakly-clamped phases (keywords, so
            the two cannot be swapped by position).
        nudging: how the target enters a weakly-clamped step.
        n_train: number of training examples (sizes the persistent particles); default: the
            length of the training set first given to :meth:`train_epoch` (or of a loaded
            state's particles).
        batch_size: examples per batch.
        persistent: keep persistent particles (ICONS protocol) or start each free phase at 0.
        batch_order: ``reshuffle``, ``fixed`` or ``shuffled-once`` (module docs).
        seed: seed of the generator of epoch orders and beta signs.
        remove_after: after this many epochs, remove the edges that do not join adjacent
            layers (intralayer and skip edges; :meth:`Network.keep_adjacent_only`) and train
            on (None: never). The particles are kept.

    Example:
        >>> import torch
        >>> from eqprop import topology
        >>> from eqprop.estimators import RandomSign
        >>> from eqprop.network import Network
        >>> from eqprop.nudging import IconsNudging
        >>> from eqprop.relaxation.fixed import FixedSteps
        >>> from eqprop.updates import LearningRates, MaskedSGD
        >>> net = Network(topology.layered([4, 8, 2]), seed=0)
        >>> x, y = torch.rand(40, 4), (torch.arange(40) % 2)
        >>> trainer = Trainer(net, RandomSign(beta=1.0), MaskedSGD(net, LearningRates(lr=0.1)),
        ...                   free=FixedSteps(steps=20), nudged=FixedSteps(steps=4),
        ...                   nudging=IconsNudging(), batch_size=10)
        >>> result = trainer.train_epoch(x, y)
        >>> result.epoch, tuple(result.layer_rates.shape)
        (1, (4, 2))
    """

    def __init__(
        self,
        network: Network,
        estimator: Estimator,
        update: Update,
        *,
        free: Relaxer,
        nudged: Relaxer,
        nudging: Nudging,
        n_train: int | None = None,
        batch_size: int = 20,
        persistent: bool = True,
        batch_order: str = "reshuffle",
        seed: int = 0,
        remove_after: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if batch_order not in BATCH_ORDERS:
            raise ConfigError(
                f"batch_order must be one of {', '.join(BATCH_ORDERS)}, got {batch_order!r}"
            )
        self.network, self.estimator, self.update = network, estimator, update
        self.free, self.nudged, self.nudging = free, nudged, nudging
        self.batch_size, self.persistent = batch_size, persistent
        self.batch_order, self.seed = batch_order, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.n_train: int | None = None
        self._fixed_order: torch.Tensor | None = None
        self.particles: torch.Tensor | None = None
        if n_train is not None:
            self._size(n_train)
        self.epoch = 0  # completed epochs
        self.order: torch.Tensor | None = None  # this epoch's visiting order
        self.position = 0  # next batch of this epoch
        self.errors = self.seen = 0  # this epoch so far
        self.epoch_rates: list[torch.Tensor] = []  # per-layer rates of this epoch's batches
        self.epoch_steps: list[int] = []  # free steps of this epoch's batches
        self.remove_after = remove_after
        self.removed = False  # the edges of remove_after are gone

    def _size(self, n_train: int) -> None:
        """Size the trainer for ``n_train`` examples: the particles and the fixed orders."""
        if n_train < 1:
            raise ConfigError(f"n_train must be >= 1, got {n_train}")
        self.n_train = n_train
        self._fixed_order = self._batches_in_file_order(self.seed)
        self.particles = self.network.zero_state(n_train) if self.persistent else None

    def _remove_edges_when_due(self) -> None:
        """Remove the non-adjacent edges once ``remove_after`` epochs are complete."""
        if self.remove_after is not None and self.epoch >= self.remove_after and not self.removed:
            self.network.keep_adjacent_only()
            self.update.edges_removed()
            self.removed = True

    def _batches_in_file_order(self, seed: int) -> torch.Tensor | None:
        """The visiting order of the fixed-composition batch orders (None for reshuffle)."""
        if self.batch_order == "reshuffle":
            return None
        examples = torch.arange(self.n_train)
        if self.batch_order == "fixed":
            return examples
        # the full batches in one order drawn from the seed; a short last batch stays last,
        # so batch k of the epoch is always examples order[k*B : (k+1)*B]
        full = self.n_train // self.batch_size
        batches = list(torch.split(examples, self.batch_size))
        once = torch.randperm(full, generator=torch.Generator().manual_seed(seed))
        return torch.cat([batches[int(k)] for k in once] + batches[full:])

    # -- one batch ---------------------------------------------------------------------------
    def train_batch(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> BatchResult:
        """One batch of EP (see the module docs for the exact order of events); ``index``:
        the batch's examples in the training set (their particles)."""
        if self.persistent and self.particles is None:
            raise ConfigError(
                "the trainer does not know the training set's size yet: give n_train, or "
                "start with train_epoch"
            )
        net = self.network
        target = one_hot(y, net.sizes[-1], net.dtype)
        base = net.input_drive(x)
        s = self.particles[index].clone() if self.persistent else net.zero_state(len(index))
        free = self.free.relax(net, s, base)
        errors = int((s[:, net.output].argmax(1) != y).sum())
        if self.persistent:
            self.particles[index] = s
        betas = self.estimator.betas(self.generator)
        nudged = [
            self.nudged.relax(net, s.clone(), base, Nudge(self.nudging, beta, target)).state
            for beta in betas
        ]
        rates = self.update.apply(self.estimator.estimate(net, x, s, nudged, betas))
        return BatchResult(errors, len(index), betas, free.steps, rates)

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
        if self.n_train is None:
            self._size(len(x))
        if len(x) != self.n_train:
            raise ConfigError(f"trainer was built for {self.n_train} examples, got {len(x)}")
        self._remove_edges_when_due()
        if self.order is None:
            self.order = (
                torch.randperm(self.n_train, generator=self.generator)
                if self._fixed_order is None
                else self._fixed_order
            )
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
            self.update.epoch_metrics(),
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
        on_relax: Callable[[RelaxResult], None] | None = None,
    ) -> float:
        """Error rate on held-out data. Each example relaxes with the free relaxer from zeros,
        or, when ``particles`` (shape ``(len(x), M)``) is given, from its particle, which is
        then overwritten with the new free equilibrium (the paper authors' protocol).
        ``on_relax`` receives each evaluation batch's relaxation result (steps taken)."""
        net = self.network
        errors = 0
        for start in range(0, len(x), batch_size):
            part = slice(start, start + batch_size)
            xb = x[part]
            s = particles[part].clone() if particles is not None else net.zero_state(len(xb))
            relaxed = self.free.relax(net, s, net.input_drive(xb))
            if on_relax is not None:
                on_relax(relaxed)
            if particles is not None:
                particles[part] = s
            errors += int((s[:, net.output].argmax(1) != y[part]).sum())
        return errors / len(x)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: network, particles, generator, position,
        and the update's own state (:meth:`Update.state_dict`)."""
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
            "update": self.update.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict`."""
        net = self.network
        for w, saved in zip(net.weights, state["weights"], strict=True):
            w.copy_(saved)
        net.biases.copy_(state["biases"])
        if self.n_train is None and state["particles"] is not None:
            self._size(len(state["particles"]))
        if self.particles is not None:
            self.particles.copy_(state["particles"])
        self.generator.set_state(state["generator"])
        self.epoch, self.order, self.position = state["epoch"], state["order"], state["position"]
        # older checkpoints also hold the epoch's free-step total, now summed from epoch_steps
        self.errors, self.seen = state["counters"][:2]
        self.epoch_rates = list(state["epoch_rates"])
        self.epoch_steps = list(state["epoch_steps"])
        self.update.load_state_dict(state.get("update", {}))  # older checkpoints: none
        self._remove_edges_when_due()
