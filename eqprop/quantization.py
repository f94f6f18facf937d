"""Weights stored with ``k`` bits: a uniform grid over a fixed range per edge kind, and the
built-in update applied through it (:class:`QuantizedSGD`).

**Grid.** A parameter of range ``r`` holds one of the ``2**k - 1`` values ``m * delta``,
``m`` an integer in ``[-M, M]``, ``M = 2**(k-1) - 1``, ``delta = r / M``: a symmetric
``k``-bit signed code with zero exact (the code ``-2**(k-1)`` is left unused so that the
grid is symmetric), so a missing edge (and a bias at 0) is stored exactly.

**Ranges, fixed in advance from the initialisation** (what a hardware designer sets before
training, knowing only the layer sizes and the initial bounds): ``r = range_scale * bound``,
where ``bound`` is the initial bound of the parameter's *edge kind*:

- an adjacent-layer edge of layer pair ``(l, l+1)``: that pair's Glorot bound
  ``sqrt(6 / (n_l + n_{l+1}))`` (one range per adjacent layer pair);
- an intralayer or skip edge: the initial bound ``a`` of those edges
  (:func:`eqprop.network.default_skip_bound`; 0.05 for ICONS, the mean Glorot bound for the
  rewired topology), one range for all of them;
- the bias of a neuron in layer ``l >= 1``: the Glorot bound of its incoming pair
  ``(l-1, l)`` (biases start at 0, so the bound of the weights that feed the neuron; one
  range per layer).

With ``range_scale >= 1`` no initial weight is clipped. The initial weights are rounded to
the grid (to nearest) when the update is built.

**Update.** For each parameter ``w = m * delta`` and its proposed correction ``dw`` (the
masked-SGD correction of :class:`~eqprop.updates.MaskedSGD`, diagonal blocks symmetrised),
the new value is ``clip(R(m + dw / delta), -M, M) * delta``, i.e. ``Q(w + dw)``, where
``R`` is

- ``nearest``: round ``m + dw / delta`` to the nearest integer (ties to even);
- ``stochastic``: ``floor(x + u)``, ``u ~ U[0, 1)`` from the update's own seeded
  generator, so ``R(x)`` is ``ceil(x)`` with probability ``x - floor(x)`` and ``floor(x)``
  otherwise, and ``E[R(x)] = x`` (unbiased, to the ``2**-24`` resolution of a float32
  ``u``). One ``u`` per stored entry per batch, in storage order (blocks, then biases); in
  a diagonal block the upper triangle's draws are mirrored, so both copies of an edge round
  alike and ``W`` stays symmetric. The generator's state is part of
  :meth:`QuantizedSGD.state_dict`, so a resumed run rounds as one that never stopped.

**Lost updates.** A proposed correction is *lost* when it is non-zero but leaves the
parameter unchanged (rounded to zero steps, or pushing a parameter already at ``+-r``
outwards). Counted over each epoch (:meth:`QuantizedSGD.epoch_metrics`): per adjacent layer
pair over its existing adjacent-layer edges, over all intralayer and skip edges together,
and over the biases; each edge counted once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from eqprop.errors import ConfigError
from eqprop.estimators import Estimate
from eqprop.network import Network, glorot_bounds
from eqprop.topology import ADJACENT
from eqprop.updates import LearningRates, MaskedSGD

ROUNDINGS = ("nearest", "stochastic")
#: ``r = DEFAULT_RANGE_SCALE * initial bound`` unless ``range_scale`` says otherwise
DEFAULT_RANGE_SCALE = 2.0
#: fewest and most bits (a float32 holds every integer code of 24 bits exactly)
MIN_BITS, MAX_BITS = 2, 24
#: spawn key of the rounding generator's seed (a stream apart from the trainer's generator)
_ROUNDING_STREAM = 1


@dataclass(frozen=True)
class Quantization:
    """How parameters are stored (module docs).

    Attributes:
        bits: ``k``, bits per stored parameter, in ``[MIN_BITS, MAX_BITS]``.
        rounding: ``nearest`` or ``stochastic``.
        range_scale: ``r`` is this multiple (> 0) of the edge kind's initial bound.
    """

    bits: int
    rounding: str = "nearest"
    range_scale: float = DEFAULT_RANGE_SCALE

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and MIN_BITS <= self.bits <= MAX_BITS):
            raise ConfigError(
                f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {self.bits}"
            )
        if self.rounding not in ROUNDINGS:
            raise ConfigError(
                f"rounding must be one of {', '.join(ROUNDINGS)}, got {self.rounding!r}"
            )
        if not (np.isfinite(self.range_scale) and self.range_scale > 0):
            raise ConfigError(f"range_scale must be > 0, got {self.range_scale}")

    @property
    def levels(self) -> int:
        """``M = 2**(bits-1) - 1``: codes run from ``-M`` to ``M``."""
        return 2 ** (self.bits - 1) - 1


def rounding_seed(seed: int) -> int:
    """The seed of the stochastic-rounding generator of a run with training seed ``seed``:
    its own stream (``numpy.random.SeedSequence`` spawn key 1), apart from the trainer's."""
    sequence = np.random.SeedSequence(seed, spawn_key=(_ROUNDING_STREAM,))
    return int(sequence.generate_state(1, np.uint64)[0])


def edge_ranges(network: Network, range_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``(r per topology edge, r per bias)``: the fixed ranges of the module docs."""
    topo = network.topology
    pair_bounds = np.asarray(glorot_bounds(network.sizes))
    layer = topo.layer_of[topo.edges]
    bounds = np.full(len(layer), network.skip_bound)
    adjacent = topo.kinds == ADJACENT
    bounds[adjacent] = pair_bounds[layer[adjacent].min(axis=1)]
    if np.any(bounds <= 0):
        raise ConfigError(
            "intralayer and skip edges start at 0 (topology.a = 0), so their range under "
            "update.bits would be 0; set topology.a > 0"
        )
    bias_bounds = np.repeat(pair_bounds, network.sizes[1:])
    return range_scale * bounds, range_scale * bias_bounds


class QuantizedSGD(MaskedSGD):
    """:class:`~eqprop.updates.MaskedSGD` with every weight and bias stored on a ``k``-bit
    grid (module docs). Building it rounds the network's weights to the grid in place.

    Args:
        network: the network to update.
        rates: the learning rates of the masked SGD.
        quantization: bits, rounding and range.
        seed: seed of the stochastic-rounding generator (see :func:`rounding_seed`).

    Example:
        >>> from eqprop import topology
        >>> net = Network(topology.layered([4, 3, 2]), seed=0)
        >>> update = QuantizedSGD(net, LearningRates(lr=0.1), Quantization(bits=4), seed=0)
        >>> codes = net.weights[0] / update.steps[0]
        >>> bool(torch.equal(codes, codes.round()))
        True
    """

    def __init__(
        self, network: Network, rates: LearningRates, quantization: Quantization, seed: int
    ) -> None:
        super().__init__(network, rates)
        self.quantization = quantization
        edge_r, bias_r = edge_ranges(network, quantization.range_scale)
        levels = quantization.levels
        #: per stored block, the grid step of every edge (0 where there is none)
        self.steps = network.from_edges(edge_r / levels)
        self.bias_steps = torch.as_tensor(bias_r / levels, dtype=network.dtype).to(network.device)
        self._inverse = [torch.where(s > 0, 1.0 / s, torch.zeros_like(s)) for s in self.steps]
        self._bias_inverse = 1.0 / self.bias_steps
        self.generator = torch.Generator(device=network.device).manual_seed(seed)
        n_pairs = network.n_layers - 1
        self._has_other = bool(np.any(network.topology.kinds != ADJACENT))
        # counts of this epoch: per pair, then intralayer + skip, then biases
        self.proposed = torch.zeros(n_pairs + 2, dtype=torch.int64)
        self.lost = torch.zeros(n_pairs + 2, dtype=torch.int64)
        with torch.no_grad():
            for w, inv, step in zip(network.weights, self._inverse, self.steps, strict=True):
                w.copy_(torch.round(w * inv).clamp_(-levels, levels).mul_(step))
            network.biases.copy_(
                torch.round(network.biases * self._bias_inverse)
                .clamp_(-levels, levels)
                .mul_(self.bias_steps)
            )

    def _requantize(self, code: torch.Tensor, x: torch.Tensor, symmetric: bool) -> torch.Tensor:
        """The new codes ``clip(R(code + x), -M, M)`` of codes ``code`` moved by ``x`` grid
        steps (module docs): nearest rounds the sum in float64 (exact for every code), the
        stochastic rounding is ``code + floor(x + u)``; ``symmetric``: mirror the upper
        triangle's random draws into the lower one."""
        levels = self.quantization.levels
        if self.quantization.rounding == "nearest":
            moved = torch.round(code.double() + x.double()).to(code.dtype)
        else:
            u = torch.rand(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
            if symmetric:
                u = torch.triu(u) + torch.triu(u, 1).T
            moved = code + torch.floor(x.add_(u))
        return moved.clamp_(-levels, levels)

    @torch.no_grad()
    def apply(self, estimate: Estimate) -> torch.Tensor:
        net, scale = self.network, estimate.scale
        applied = []
        proposed_total = lost_total = 0
        proposed_masks, lost_masks = [], []
        for block, w, lr, raw, step, inv in zip(
            net.blocks, net.weights, self.weight_rates, estimate.weights, self.steps, self._inverse,
            strict=True,
        ):  # fmt: skip
            corr = raw.mul(lr).mul_(scale)
            if block.is_diagonal:
                corr = corr.add_(corr.T.clone()).mul_(0.5)
            code = torch.round(w * inv)
            new = self._requantize(code, corr * inv, block.is_diagonal)
            proposed, lost = corr != 0, new == code
            lost &= proposed
            new_w = new.mul_(step)
            applied.append(new_w - w)
            w.copy_(new_w)
            if block.is_diagonal:  # each edge once
                proposed, lost = torch.triu(proposed, 1), torch.triu(lost, 1)
            proposed_total += int(proposed.sum())
            lost_total += int(lost.sum())
            proposed_masks.append(proposed)
            lost_masks.append(lost)
        pair_proposed = torch.tensor(
            [int(proposed_masks[i][rows, cols].sum()) for i, rows, cols, _ in self._rate_views]
        )
        pair_lost = torch.tensor(
            [int(lost_masks[i][rows, cols].sum()) for i, rows, cols, _ in self._rate_views]
        )
        n_pairs = len(pair_proposed)
        self.proposed[:n_pairs] += pair_proposed
        self.lost[:n_pairs] += pair_lost
        self.proposed[n_pairs] += proposed_total - int(pair_proposed.sum())
        self.lost[n_pairs] += lost_total - int(pair_lost.sum())
        corr_b = self.bias_rates * estimate.biases * scale
        code_b = torch.round(net.biases * self._bias_inverse)
        new_b = self._requantize(code_b, corr_b * self._bias_inverse, False)
        self.proposed[-1] += int((corr_b != 0).sum())
        self.lost[-1] += int(((new_b == code_b) & (corr_b != 0)).sum())
        net.biases.copy_(new_b.mul_(self.bias_steps))
        return self.rates(applied)

    def epoch_metrics(self) -> dict[str, object]:
        """The lost-update fractions of the epoch since the last call (then reset) and the
        fraction of each adjacent pair's edges now at ``+-r``; ``None`` where nothing was
        proposed. Keys: ``lost_updates`` (one per adjacent pair, input side first),
        ``lost_updates_other`` (intralayer and skip edges; only when the topology has them),
        ``lost_updates_biases``, ``saturated`` (one per pair)."""
        fractions = [
            None if p == 0 else lost / p
            for lost, p in zip(self.lost.tolist(), self.proposed.tolist(), strict=True)
        ]
        n_pairs = len(self._rate_views)
        metrics: dict[str, object] = {"lost_updates": fractions[:n_pairs]}
        if self._has_other:
            metrics["lost_updates_other"] = fractions[n_pairs]
        metrics["lost_updates_biases"] = fractions[-1]
        levels = self.quantization.levels
        saturated = []
        for i, rows, cols, count in self._rate_views:
            code = torch.round(self.network.weights[i][rows, cols] * self._inverse[i][rows, cols])
            at_edge = (code.abs() == levels) & (self.steps[i][rows, cols] > 0)
            saturated.append(int(at_edge.sum()) / max(count, 1))
        metrics["saturated"] = saturated
        self.proposed.zero_()
        self.lost.zero_()
        return metrics

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The rounding generator's state and this epoch's counts."""
        return {
            "generator": self.generator.get_state(),
            "proposed": self.proposed.clone(),
            "lost": self.lost.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        if not state:
            raise ConfigError(
                "the checkpoint holds no state of the quantised update (it was written by an "
                "unquantised run); the config does not fit it"
            )
        self.generator.set_state(state["generator"])
        self.proposed.copy_(state["proposed"])
        self.lost.copy_(state["lost"])
