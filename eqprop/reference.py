"""A naive equilibrium-propagation engine, written the way the paper authors' code works.

It is the reference ``eqprop bench`` times against and the independent formulation the tests
compare :class:`eqprop.training.Trainer` with. Everything is dense over *all* ``N`` neurons
(``N = 2294`` for 784-500-500-500-10), inputs included:

- one ``N x N`` weight matrix ``W`` and a 0/1 topology mask; every step multiplies by the
  whole ``W * mask``, input rows included, so the drive is ``h = u (W * mask) + b`` with
  ``u = (x, s)`` (inputs take part with ``rho(x) = x``, states in ``[0, 1]`` with
  ``rho(s) = s``);
- a free step is one gradient step on the energy, ``s <- clip(s - eps dE/ds)`` with
  ``dE/ds = s - h``, on the non-input neurons, in a plain Python loop;
- a weakly-clamped step follows one of the two nudging schemes, each written out from its
  formula (``docs/science.md`` section 1), not taken from :mod:`eqprop.nudging`:

  - ``gradient``: one gradient step on ``F = E + beta/2 |s_out - d|^2``, both terms from
    the old state: ``dF/ds_out = s_out - h_out + beta (s_out - d)``;
  - ``icons``: the free step ``s' = s - eps dE/ds`` first, then the outputs pulled from the
    *updated* values, ``s'_out <- s'_out + 2 eps beta (d - s'_out)``, then the clip;

- the update builds the per-example outer products ``u u^T`` (shape ``(batch, N, N)``),
  ``dW = (1 / beta) mean_batch(u_c u_c^T - u_f u_f^T) * rates * mask`` and
  ``db = (1 / beta) mean_batch(s_c - s_f) * bias_rates``.

Only the *semantics* of :meth:`eqprop.training.Trainer.train_batch` and
:meth:`~eqprop.training.Trainer.train_epoch` are shared: the phase order, persistent
particles, the beta-sign coin of ``random-sign`` (``torch.rand(()) < 0.5`` flips the sign,
drawn after the free phase from a generator seeded with the trainer's seed), the batch orders
(``reshuffle``, ``fixed``, ``shuffled-once``), the per-pair, skip and bias rates (including
``bias_lr``, one rate for every bias) and the eq. 2 layer rates. The per-edge rates are rebuilt
from the rates' configuration and the topology rather than taken from eqprop's block storage.
Only the initial weights and biases are read from the network
(:meth:`eqprop.network.Network.dense_weights`), so both engines start identical.

The settings come from a :class:`~eqprop.config.RunConfig` (:meth:`NaiveEP.from_config`) or
from a trainer's parts (:meth:`NaiveEP.from_trainer`). Supported: the ``fixed`` and
``tolerance`` free solvers (also wrapped as CUDA graphs), both nudgings, the ``positive`` and
``random-sign`` estimators, and the built-in ``masked-sgd`` update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from eqprop.errors import ConfigError
from eqprop.network import Network
from eqprop.topology import ADJACENT

if TYPE_CHECKING:
    from eqprop.config import RunConfig
    from eqprop.training import Trainer

NUDGINGS = ("gradient", "icons")
ESTIMATORS = ("positive", "random-sign")
BATCH_ORDERS = ("reshuffle", "fixed", "shuffled-once")


@dataclass(frozen=True)
class Settings:
    """What the naive engine runs: relaxation, nudging, estimator, rates, batches, seed.

    Attributes:
        free_eps, free_steps, tol: the free phase (``tol``: stop once a step changes no
            state by ``tol`` or more, at most ``free_steps``; ``None``: exactly
            ``free_steps``).
        nudged_eps, nudged_steps, nudging: the weakly-clamped phase and its scheme.
        estimator, beta: ``positive`` or ``random-sign``, and the magnitude of beta.
        lr, lr_skip, bias_lr: the rates, as :class:`eqprop.updates.LearningRates`.
        batch_size, persistent, batch_order, seed: as for :class:`eqprop.training.Trainer`.
    """

    free_eps: float = 0.5
    free_steps: int = 500
    tol: float | None = None
    nudged_eps: float = 0.5
    nudged_steps: int = 8
    nudging: str = "gradient"
    estimator: str = "random-sign"
    beta: float = 1.0
    lr: float | tuple[float, ...] = 0.02
    lr_skip: float | None = None
    bias_lr: float | None = None
    batch_size: int = 20
    persistent: bool = True
    batch_order: str = "reshuffle"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (
            ("nudging", NUDGINGS),
            ("estimator", ESTIMATORS),
            ("batch_order", BATCH_ORDERS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"the naive reference engine supports {name} {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )


@dataclass(frozen=True)
class NaiveBatch:
    """What one naive training batch measured (mirrors ``eqprop.training.BatchResult``)."""

    errors: int
    size: int
    betas: tuple[float, ...]
    free_steps: int
    layer_rates: torch.Tensor


def settings_from_config(config: RunConfig) -> Settings:
    """The :class:`Settings` of a :class:`~eqprop.config.RunConfig`."""
    from eqprop.config import MASKED_SGD

    if config.update.optimizer != MASKED_SGD:
        raise ConfigError(
            f"the naive reference engine implements the {MASKED_SGD!r} update only, got "
            f"update.optimizer = {config.update.optimizer!r}"
        )
    free = config.free.build()
    return Settings(
        free_eps=free.eps,
        free_steps=free.steps,
        tol=getattr(free, "tol", None),
        nudged_eps=config.nudged.eps,
        nudged_steps=config.nudged.steps,
        nudging=config.nudged.nudging,
        estimator=config.estimator.kind,
        beta=config.estimator.beta,
        lr=config.update.lr,
        lr_skip=config.update.lr_skip,
        bias_lr=config.update.bias_lr,
        batch_size=config.train.batch_size,
        persistent=config.train.persistent,
        batch_order=config.train.batch_order,
        seed=config.train.seed,
    )


def settings_from_trainer(trainer: Trainer, seed: int) -> Settings:
    """The :class:`Settings` of a :class:`~eqprop.training.Trainer`'s parts; ``seed`` is the
    seed the trainer was built with (a trainer keeps only its generator)."""
    from eqprop.estimators import Positive, RandomSign
    from eqprop.relaxation.cuda_graph import CudaGraphs
    from eqprop.relaxation.fixed import FixedSteps
    from eqprop.relaxation.tolerance import Tolerance
    from eqprop.updates import MaskedSGD

    free, nudged = trainer.free, trainer.nudged
    if isinstance(free, Tolerance):
        tol = free.tol
    elif isinstance(free, (FixedSteps, CudaGraphs)):
        tol = None
    else:
        raise ConfigError(f"the naive reference engine cannot follow the free relaxer {free!r}")
    if not isinstance(nudged, (FixedSteps, CudaGraphs)):
        raise ConfigError(f"the naive reference engine runs fixed nudged phases, got {nudged!r}")
    kinds = {Positive: "positive", RandomSign: "random-sign"}
    if type(trainer.estimator) not in kinds:
        raise ConfigError(
            f"the naive reference engine supports the estimators {', '.join(ESTIMATORS)}, "
            f"got {trainer.estimator!r}"
        )
    if not isinstance(trainer.update, MaskedSGD):
        raise ConfigError("the naive reference engine implements the masked-sgd update only")
    rates = trainer.update.config
    return Settings(
        free_eps=free.eps,
        free_steps=free.steps,
        tol=tol,
        nudged_eps=nudged.eps,
        nudged_steps=nudged.steps,
        nudging=trainer.nudging.name,
        estimator=kinds[type(trainer.estimator)],
        beta=trainer.estimator.beta,
        lr=rates.lr,
        lr_skip=rates.lr_skip,
        bias_lr=rates.bias_lr,
        batch_size=trainer.batch_size,
        persistent=trainer.persistent,
        batch_order=trainer.batch_order,
        seed=seed,
    )


class NaiveEP:
    """Dense, masked EP over all neurons, with persistent particles (module docs).

    Args:
        network: supplies the topology, sizes, dtype, device and the initial weights and
            biases (copied; the network itself is never modified).
        settings: what to run (:class:`Settings`).
        n_train: number of training examples (sizes the particles and the epoch order).
    """

    def __init__(self, network: Network, settings: Settings, *, n_train: int) -> None:
        topo = network.topology
        dtype, device = network.dtype, network.device
        self.settings = settings
        self.sizes = topo.sizes
        self.n_in = topo.sizes[0]
        self.n = topo.n_neurons
        self.out = slice(self.n - topo.sizes[-1], self.n)
        self.n_train, self.batch_size = n_train, settings.batch_size
        self.dtype, self.device = dtype, device

        self.W = network.dense_weights().clone()
        self.mask = torch.as_tensor(topo.adjacency(), dtype=dtype, device=device)
        self.b = torch.zeros(self.n, dtype=dtype, device=device)
        self.b[self.n_in :] = network.biases

        # per-edge learning rates: adjacent-layer edges take the rate of their pair,
        # intralayer and skip edges lr_skip (default: the single rate)
        n_pairs = len(self.sizes) - 1
        lr = settings.lr
        per_pair = isinstance(lr, tuple)
        pair = np.asarray(lr if per_pair else (lr,) * n_pairs, dtype=np.float64)
        if len(pair) != n_pairs:
            raise ConfigError(f"lr has {len(pair)} values for {n_pairs} layer pairs")
        has_other_edges = bool(np.any(topo.kinds != ADJACENT))
        if per_pair and settings.lr_skip is None and has_other_edges:
            raise ConfigError("lr is per layer pair and the topology has skip edges: set lr_skip")
        skip = settings.lr_skip if settings.lr_skip is not None else pair[0]
        layer = topo.layer_of
        rates = np.full((self.n, self.n), float(skip))
        low = np.minimum.outer(layer, layer)
        adjacent = np.abs(np.subtract.outer(layer, layer)) == 1
        rates[adjacent] = pair[low[adjacent]]
        self.rates = torch.as_tensor(rates, dtype=dtype, device=device)
        # bias of a neuron in layer k >= 1: bias_lr, or the rate of its incoming pair k - 1;
        # input neurons have no bias (rate 0)
        bias_rates = np.zeros(self.n)
        if settings.bias_lr is not None:
            bias_rates[self.n_in :] = settings.bias_lr
        else:
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

        self.generator = torch.Generator().manual_seed(settings.seed)
        self.particles = torch.zeros(n_train, self.n, dtype=dtype, device=device)

    @classmethod
    def from_config(cls, network: Network, config: RunConfig, *, n_train: int) -> NaiveEP:
        """The engine a :class:`~eqprop.config.RunConfig` describes, from ``network``'s
        initial weights."""
        return cls(network, settings_from_config(config), n_train=n_train)

    @classmethod
    def from_trainer(cls, trainer: Trainer, *, seed: int) -> NaiveEP:
        """The engine that follows ``trainer`` (built with ``seed``), from its network's
        current weights: build it before the trainer trains."""
        settings = settings_from_trainer(trainer, seed)
        return cls(trainer.network, settings, n_train=trainer.n_train)

    # -- relaxation --------------------------------------------------------------------------
    def free_phase(self, s: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The free phase from ``s`` (all neurons, the input entries holding ``x``): at most
        ``free_steps`` energy-gradient steps, fewer with ``tol``. Returns the new state and
        the steps taken."""
        st = self.settings
        return self._relax(s, st.free_steps, st.free_eps, tol=st.tol)

    def nudged_phase(
        self, s: torch.Tensor, beta: float, target: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """The weakly-clamped phase from ``s`` at the signed ``beta`` towards ``target``
        (one-hot), ``nudged_steps`` steps of the settings' nudging scheme."""
        st = self.settings
        return self._relax(s, st.nudged_steps, st.nudged_eps, st.nudging, beta, target)

    def _relax(
        self,
        s: torch.Tensor,
        steps: int,
        eps: float,
        nudging: str | None = None,
        beta: float = 0.0,
        target: torch.Tensor | None = None,
        tol: float | None = None,
    ) -> tuple[torch.Tensor, int]:
        n_in, out = self.n_in, slice(self.out.start - self.n_in, self.out.stop - self.n_in)
        s = s.clone()
        s[:, n_in:] = torch.clamp(s[:, n_in:], 0.0, 1.0)
        taken = 0
        for taken in range(1, steps + 1):  # noqa: B007 - read after the loop
            h = s @ (self.W * self.mask) + self.b  # the drive, every neuron, inputs included
            state = s[:, n_in:]
            dE = state - h[:, n_in:]  # dE/ds of the non-input neurons
            if nudging == "gradient":  # dF/ds of F = E + beta/2 |s_out - d|^2, old state
                dE[:, out] += beta * (state[:, out] - target)
                new = state - eps * dE
            else:  # free step (and the first half of an icons step)
                new = state - eps * dE
                if nudging == "icons":  # pull from the updated outputs
                    new[:, out] += 2.0 * eps * beta * (target - new[:, out])
            new = torch.clamp(new, 0.0, 1.0)
            done = tol is not None and float((new - state).abs().max()) < tol
            s = torch.cat([s[:, :n_in], new], dim=1)
            if done:
                break
        return s, taken

    # -- one batch, one epoch ----------------------------------------------------------------
    def _betas(self) -> tuple[float, ...]:
        beta = self.settings.beta
        if self.settings.estimator == "random-sign":  # a fair coin, as the ICONS protocol
            return (-beta,) if torch.rand((), generator=self.generator) < 0.5 else (beta,)
        return (beta,)

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> NaiveBatch:
        """Free phase, prediction, particles, beta sign, clamped phase, update, eq. 2 rates."""
        target = torch.nn.functional.one_hot(y, self.sizes[-1]).to(self.dtype)
        if self.settings.persistent:
            s = self.particles[index].clone()
        else:
            s = torch.zeros(len(index), self.n, dtype=self.dtype, device=self.device)
        s[:, : self.n_in] = x
        s_free, free_steps = self.free_phase(s)
        errors = int((s_free[:, self.out].argmax(1) != y).sum())
        if self.settings.persistent:
            self.particles[index] = s_free
        betas = self._betas()
        (beta,) = betas
        s_clamped, _ = self.nudged_phase(s_free, beta, target)

        outer = s_clamped[:, :, None] * s_clamped[:, None, :]
        outer -= s_free[:, :, None] * s_free[:, None, :]
        dW = outer.mean(0) / beta * self.rates * self.mask
        self.W += dW
        self.b += self.bias_rates * (s_clamped - s_free).mean(0) / beta
        rates = []
        for k, count in enumerate(self.pair_counts):
            block = dW[self.layer_index[k], self.layer_index[k + 1]]
            rates.append(torch.sqrt((block**2).sum() / max(count, 1)))
        return NaiveBatch(errors, len(index), betas, free_steps, torch.stack(rates))

    def epoch_batches(self) -> list[torch.Tensor]:
        """The batches of the next epoch, in visiting order: a fresh permutation from the
        generator cut into batches (``reshuffle``); batch ``k`` = examples ``k*B .. k*B+B-1``
        in file order (``fixed``); or those same file-order batches, each kept whole, visited
        in one order drawn from a generator seeded with ``seed``, a short last batch kept
        last (``shuffled-once``)."""
        b, order = self.batch_size, self.settings.batch_order
        if order == "reshuffle":
            return list(torch.split(torch.randperm(self.n_train, generator=self.generator), b))
        n_batches = -(-self.n_train // b)
        in_file_order = [
            torch.arange(k * b, min((k + 1) * b, self.n_train)) for k in range(n_batches)
        ]
        if order == "fixed":
            return in_file_order
        once = torch.Generator().manual_seed(self.settings.seed)
        full = self.n_train // b
        shuffled = [in_file_order[int(k)] for k in torch.randperm(full, generator=once)]
        return shuffled + in_file_order[full:]

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor) -> list[NaiveBatch]:
        """One epoch over :meth:`epoch_batches`, like ``Trainer.train_epoch``."""
        results = []
        for index in self.epoch_batches():
            index = index.to(x.device)
            results.append(self.train_batch(x[index], y[index], index))
        return results

    # -- views in eqprop's coordinates --------------------------------------------------------
    def state_particles(self) -> torch.Tensor:
        """Persistent particles without the input entries, shaped like ``Trainer.particles``."""
        return self.particles[:, self.n_in :]

    def biases(self) -> torch.Tensor:
        """Biases of the non-input neurons, shaped like ``Network.biases``."""
        return self.b[self.n_in :]
