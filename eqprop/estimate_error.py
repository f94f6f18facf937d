"""How far a free phase's EP estimate is from the estimate at the exact fixed point.

A free phase that stops early leaves the state a residual away from its fixed point; the
weakly-clamped phase then starts from there, and its few steps partly relax that residual
too, which enters the estimate as if it were learning signal. This measures the effect
directly, free of the seed-to-seed chaos of training runs: at one network's weights and
persistent particles, each batch's free phase runs with each compared relaxer, the trainer's
weakly-clamped phases (the same betas for every relaxer) start from each result, and the
estimate is compared with the one from a reference free phase run long enough to be at the
fixed point (the solvers experiment uses 5,000 of the network's fixed steps, as the solver
contract tests do).

The error of an estimate ``d`` against the reference ``r`` is ``||d - r|| / ||r||`` over the
network's edges (the descent direction of :meth:`~eqprop.estimators.Estimate.descent`),
overall and per adjacent layer pair (the pairs of eq. 2), averaged over the batches.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from eqprop.estimators import Estimate
from eqprop.network import Network
from eqprop.nudging import Nudge
from eqprop.relaxation import Relaxer, fixed_point_residual
from eqprop.training import Trainer, one_hot


@dataclass(frozen=True)
class EstimateError:
    """One relaxer's estimate error, averaged over the batches measured."""

    #: mean and largest free steps per batch
    steps_mean: float
    steps_max: int
    #: the largest fixed-point residual of a free state it left
    residual: float
    #: ``||d - r|| / ||r||`` over all edges: the mean over the batches, and the median (the
    #: mean is led by the few batches whose examples relax slowest)
    overall: float
    overall_median: float
    #: the same per adjacent layer pair, input side first
    pairs: tuple[float, ...]


def relative_errors(
    network: Network, estimate: Estimate, reference: Estimate
) -> tuple[float, list[float]]:
    """``||d - r|| / ||r||`` of ``estimate`` against ``reference``, over all of the network's
    edges and per adjacent layer pair."""
    return _relative(network, estimate.descent(network)[0], reference.descent(network)[0])


def _relative(
    network: Network, d: list[torch.Tensor], r: list[torch.Tensor]
) -> tuple[float, list[float]]:
    """:func:`relative_errors` of the per-block descent directions ``d`` against ``r``."""
    diff = sum(float((a - b).square().sum()) for a, b in zip(d, r, strict=True))
    norm = sum(float(b.square().sum()) for b in r)
    pairs = []
    for i, rows, cols, _count in network.pair_views():
        ref = r[i][rows, cols]
        pairs.append(float((d[i][rows, cols] - ref).norm() / ref.norm()))
    return (diff / norm) ** 0.5, pairs


def _estimate(
    trainer: Trainer, free: Relaxer, x: torch.Tensor, drive, target, index, betas
) -> tuple[Estimate, int, float]:
    """The trainer's estimate on the examples ``index`` (inputs ``x``, input drive ``drive``)
    with ``free`` as the free phase, the free steps it took and the fixed-point residual it
    left."""
    net = trainer.network
    s = trainer.particles[index].clone() if trainer.persistent else net.zero_state(len(x))
    taken = free.relax(net, s, drive).steps
    residual = fixed_point_residual(net, s, drive)
    nudged = [
        trainer.nudged.relax(net, s.clone(), drive, Nudge(trainer.nudging, b, target)).state
        for b in betas
    ]
    return trainer.estimator.estimate(net, x, s, nudged, betas), taken, residual


@torch.no_grad()
def estimate_errors(
    trainer: Trainer,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: list[torch.Tensor],
    relaxers: Mapping[str, Relaxer],
    reference: Relaxer,
) -> tuple[dict[str, EstimateError], float]:
    """Per name in ``relaxers``: its estimate error against ``reference`` (module docs) on
    the examples ``batches`` (index tensors into ``x``, ``y``), each free phase starting from
    the trainer's persistent particles (zeros where it keeps none); and the largest
    fixed-point residual the reference left, which says whether it was at the fixed point.
    Nothing of the trainer changes."""
    net = trainer.network
    signs = torch.Generator().manual_seed(0)  # the same betas for every relaxer of a batch
    steps: dict[str, list[int]] = {name: [] for name in relaxers}
    residuals: dict[str, list[float]] = {name: [] for name in relaxers}
    reference_residual = 0.0
    errors: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in relaxers}
    for index in batches:
        xb, target = x[index], one_hot(y[index], net.sizes[-1], net.dtype)
        drive, betas = net.input_drive(xb), trainer.estimator.betas(signs)
        ref, _, left = _estimate(trainer, reference, xb, drive, target, index, betas)
        reference_residual = max(reference_residual, left)
        r = ref.descent(net)[0]  # once per batch, for every relaxer
        for name, relaxer in relaxers.items():
            est, taken, left = _estimate(trainer, relaxer, xb, drive, target, index, betas)
            steps[name].append(taken)
            residuals[name].append(left)
            errors[name].append(_relative(net, est.descent(net)[0], r))
    out = {}
    for name in relaxers:
        overall = [e[0] for e in errors[name]]
        pairs = torch.tensor([e[1] for e in errors[name]]).mean(0)
        out[name] = EstimateError(
            steps_mean=sum(steps[name]) / len(steps[name]),
            steps_max=max(steps[name]),
            residual=max(residuals[name]),
            overall=sum(overall) / len(overall),
            overall_median=statistics.median(overall),
            pairs=tuple(float(p) for p in pairs),
        )
    return out, reference_residual
