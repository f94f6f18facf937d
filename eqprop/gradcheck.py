"""Check an EP estimate against the true gradient, for a user's own network and settings.

:func:`check_gradient` relaxes a few examples to their free fixed point ``s*`` (to a residual
of 1e-12 in float64), runs the configured estimator's nudged phases to their own fixed points
at a small ``beta``, and compares the estimate with ``-dC(s*)/dtheta`` computed by the adjoint
method, independently of EP. ``C`` is the nudging's own cost (``docs/science.md`` section 1):
``1/2 |s_out - d|^2`` for ``gradient``, ``|s_out - d|^2`` for ``icons``, so a correct estimate
has cosine near 1 *and* norm ratio near 1 for both.

Adjoint method, for any activation (``docs/science.md`` section 1): at the fixed point the
unsaturated units (``rho'(s_i) > 0``, the set ``F``: for the hard sigmoid those strictly
inside ``(0, 1)``, for a smooth activation all) obey ``dE/ds_F = s_F - a_F h_F = 0`` with
``a = rho'(s)``, ``h = W u + b`` and ``u = (x, rho(s))``; saturated units are locally
constant. The Hessian of ``E`` on ``F`` is ``H = diag(1 - rho''(s) h) - diag(a) W diag(a)``
(``I - W_FF`` for the hard sigmoid). With ``lambda`` solving ``H lambda = dC/ds_F`` (``W``
is symmetric), the gradient of an edge weight ``w_ij`` is ``g_i u_j + g_j u_i`` and of a
bias ``g_i``, where ``g = a lambda`` on ``F`` and 0 elsewhere.

A convolutional network (:class:`eqprop.conv.ConvNetwork`) is checked the same way, with
autograd on its energy in place of the formulas: ``H`` is the Hessian of ``E`` on ``F``,
and ``-dC/dtheta = d/dtheta (lambda . dE/ds_F)`` with ``lambda`` held fixed (implicit
differentiation of ``dE/ds_F = 0``); the weights are compared over every kernel and matrix
entry.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from eqprop import config as cfg
from eqprop import nudging as nudgings
from eqprop import runs
from eqprop.conv import ConvNetwork
from eqprop.energy_network import EnergyNetwork
from eqprop.errors import ConfigError
from eqprop.estimators import Estimator
from eqprop.network import Network
from eqprop.nudging import Nudge, Nudging
from eqprop.relaxation import fixed_point_residual
from eqprop.relaxation.fixed import FixedSteps
from eqprop.saved import TrainedRun, load_run
from eqprop.training import one_hot

#: the fixed points are relaxed until the residual (or, nudged, the step change) is below this
PRECISION = 1e-12


@dataclass(frozen=True)
class GradientCheck:
    """How an EP estimate compares with the true gradient (weights and biases apart)."""

    cosine_weights: float
    cosine_biases: float
    norm_ratio_weights: float
    norm_ratio_biases: float
    free_fraction: float
    examples: int
    beta: float

    def lines(self) -> list[str]:
        """The result as short lines for the command line."""
        return [
            f"weights: cosine {self.cosine_weights:.6f}, norm ratio {self.norm_ratio_weights:.4f}",
            f"biases:  cosine {self.cosine_biases:.6f}, norm ratio {self.norm_ratio_biases:.4f}",
            f"({self.examples} examples, beta {self.beta:g}, {self.free_fraction:.0%} of the "
            f"units unsaturated (rho' > 0) at the free fixed point)",
        ]


def _relax_until_still(net: EnergyNetwork, s: torch.Tensor, base: torch.Tensor, nudge=None) -> None:
    step = FixedSteps(eps=0.5, steps=50)
    for _ in range(2000):
        prev = s.clone()
        step.relax(net, s, base, nudge)
        if float((s - prev).abs().max()) < PRECISION:
            return
    raise RuntimeError("the fixed point was not reached in 100,000 steps")


def true_gradient(
    net: Network, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor, nudging: Nudging
) -> tuple[np.ndarray, np.ndarray]:
    """``-dC(s*)/dtheta`` per topology edge and per bias, batch mean, by the adjoint method
    with the network's activation (module docs)."""
    act = net.activation
    w = net.dense_weights().double()
    edges = net.topology.edges
    n_in = net.n_input
    grad_w = np.zeros(len(edges))
    grad_b = np.zeros(net.n_state)
    for k in range(len(x)):
        sk = s[k].double()
        gain = act.rho_prime(sk)
        free = (gain > 0).nonzero().squeeze(1)
        u = torch.cat([x[k].double(), act.rates(sk)])
        curvature = act.rho_second(sk) * (w[n_in:] @ u + net.biases.double())
        dc = torch.zeros(net.n_state, dtype=torch.float64)
        dc[net.output] = nudging.cost_grad(sk[net.output][None], target[k][None].double())[0]
        lam = torch.zeros(net.n_state, dtype=torch.float64)
        if len(free):
            a = gain[free]
            w_ff = a[:, None] * w[n_in:, n_in:][free][:, free] * a[None, :]
            hessian = torch.diag(1.0 - curvature[free]) - w_ff
            lam[free] = a * torch.linalg.solve(hessian, dc[free])
        lam_all = torch.cat([torch.zeros(n_in, dtype=torch.float64), lam]).numpy()
        u = u.numpy()
        grad_w += lam_all[edges[:, 0]] * u[edges[:, 1]] + lam_all[edges[:, 1]] * u[edges[:, 0]]
        grad_b += lam.numpy()
    return -grad_w / len(x), -grad_b / len(x)


def true_gradient_conv(
    net: ConvNetwork, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor, nudging: Nudging
) -> tuple[np.ndarray, np.ndarray]:
    """``-dC(s*)/dtheta`` of a conv network, batch mean, by implicit differentiation of its
    energy with autograd (module docs): the weights flat, kernel after kernel (then the
    matrices) in :attr:`~eqprop.conv.ConvNetwork.weights` order, and the biases. The
    network's parameters take gradients during the call only (use a float64 network)."""
    act = net.activation
    params = [*net.weights, net.biases]
    lam = torch.zeros_like(s)
    for k in range(len(x)):
        free = (act.rho_prime(s[k]) > 0).nonzero().squeeze(1)
        if not len(free):
            continue
        dc = torch.zeros(net.n_state, dtype=s.dtype)
        dc[net.output] = nudging.cost_grad(s[k][None, net.output], target[k][None])[0]
        xk = x[k : k + 1]
        hessian = torch.autograd.functional.hessian(
            lambda v, xk=xk: net.energy(v[None], xk).sum(), s[k].detach()
        )
        lam[k, free] = torch.linalg.solve(hessian[free][:, free], dc[free])
    for p in params:
        p.requires_grad_(True)
    try:
        leaf = s.detach().clone().requires_grad_(True)
        (grad_s,) = torch.autograd.grad(net.energy(leaf, x).sum(), leaf, create_graph=True)
        grads = torch.autograd.grad((grad_s * lam).sum(), params)
    finally:
        for p in params:
            p.requires_grad_(False)
    weights = torch.cat([g.flatten() for g in grads[:-1]]).numpy()
    return weights / len(x), grads[-1].numpy() / len(x)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine of ``a`` and ``b``; NaN where either is zero or not finite."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_gradient(
    net: EnergyNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    estimator: Estimator,
    nudging: Nudging,
) -> GradientCheck:
    """Compare ``estimator``'s estimate (with ``nudging``, at its ``beta``) with the true
    gradient on the examples ``x, y`` (module docs). Runs in float64 on a copy of ``net``."""
    net = _float64_copy(net)
    x = x.double()
    target = one_hot(y, net.sizes[-1], torch.float64)
    base = net.input_drive(x)
    s0 = net.zero_state(len(x))
    _relax_until_still(net, s0, base)
    if fixed_point_residual(net, s0, base) > 1e-9:
        raise RuntimeError("the free phase stopped moving away from its fixed point")
    betas = estimator.betas(torch.Generator().manual_seed(0))
    nudged = []
    for beta in betas:
        s = s0.clone()
        _relax_until_still(net, s, base, Nudge(nudging, beta, target))
        nudged.append(s)
    weights, biases = estimator.estimate(net, x, s0, nudged, betas).descent(net)
    if isinstance(net, ConvNetwork):
        est_w = torch.cat([w.flatten() for w in weights]).numpy()
        true_w, true_b = true_gradient_conv(net, x, s0, target, nudging)
    else:
        edges = net.topology.edges
        est_w = net.dense_weights(weights)[edges[:, 0], edges[:, 1]].numpy()
        true_w, true_b = true_gradient(net, x, s0, target, nudging)
    est_b = biases.numpy()
    if not (np.any(true_w) or np.any(true_b)):
        raise ConfigError(
            f"the true gradient on these {len(x)} examples is zero (no small nudge changes "
            f"their cost: every output unit saturated at the free fixed point), so there is "
            f"nothing to compare; check more examples (--examples)"
        )
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio_w = float(np.linalg.norm(est_w) / np.linalg.norm(true_w))
        ratio_b = float(np.linalg.norm(est_b) / np.linalg.norm(true_b))
    return GradientCheck(
        cosine_weights=_cosine(est_w, true_w),
        cosine_biases=_cosine(est_b, true_b),
        norm_ratio_weights=ratio_w,
        norm_ratio_biases=ratio_b,
        free_fraction=float((net.activation.rho_prime(s0) > 0).double().mean()),
        examples=len(x),
        beta=float(betas[0]),
    )


def _float64_copy(net: EnergyNetwork) -> EnergyNetwork:
    if isinstance(net, ConvNetwork):
        return copy.deepcopy(net).to(dtype=torch.float64, device="cpu")
    duplicate = Network(
        net.topology, seed=0, layout=net.layout, dtype=torch.float64, activation=net.activation
    )
    duplicate.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    return duplicate


#: the most state units :func:`check_config` takes: the true gradient solves a linear system
#: in the energy's Hessian over one example's state (10,000 units: 800 MB in float64)
MAX_STATE = 10_000


def check_config(
    config: cfg.RunConfig,
    examples: int = 8,
    beta: float = 1e-4,
    data_dir: str | Path | None = None,
) -> GradientCheck:
    """:func:`check_gradient` for a config's initial network, estimator and nudging, with
    ``beta`` replacing the config's, on the first ``examples`` training examples; a one-line
    ConfigError for a network of more than :data:`MAX_STATE` state units."""
    _check_size(config)
    net = runs.build_network(config.override({"train.dtype": "float64", "train.device": "cpu"}))
    return _check_on_data(config, net, examples, beta, data_dir)


def check_run(
    run_dir: str | Path,
    examples: int = 8,
    beta: float | None = None,
    data_dir: str | Path | None = None,
    which: str = "latest",
    overrides: Mapping[str, object] | None = None,
) -> tuple[GradientCheck, TrainedRun]:
    """:func:`check_gradient` for the trained network of the run directory ``run_dir`` (its
    latest checkpoint, or with ``which="best"`` its best epoch; :func:`eqprop.saved.load_run`)
    with the run's own estimator and nudging, at ``beta`` (default: the run's own), on the
    first ``examples`` training examples. Returns the check and the run as loaded (its
    config, and the epoch its network is at). ``overrides`` (``--set`` keys) may change the
    estimator (``estimator.*``) and the nudging (``nudged.nudging``) the check uses, to compare
    another estimator on the same trained network; the network stays the run's.
    How biased the estimate is changes as a network trains; this measures it where the run
    got to. A missing or damaged run is the one-line error of ``eqprop train --resume``."""
    changes = {cfg.canonical_key(k): v for k, v in (overrides or {}).items()}
    other = [k for k in changes if not (k.startswith("estimator.") or k == "nudged.nudging")]
    if other:
        raise ConfigError(
            f"with a run, --set may change only the estimator (estimator.kind, estimator.beta) "
            f"and nudged.nudging; the network is the run's, so drop {', '.join(other)}"
        )
    _check_size(runs.read_config(Path(run_dir)))  # before its checkpoint is read
    trained = load_run(run_dir, which)
    config = trained.config.override(changes)
    check_beta = config.estimator.beta if beta is None else beta
    result = _check_on_data(config, trained.network, examples, check_beta, data_dir)
    trained = replace(trained, config=config)
    return result, trained


def _check_size(config: cfg.RunConfig) -> None:
    n_state = sum(config.topology.layer_sizes()[1:])
    if n_state > MAX_STATE:
        raise ConfigError(
            f"check-gradient solves with the energy's Hessian over one example's "
            f"{n_state:,} state units, more than it takes ({MAX_STATE:,}); check a narrower "
            f"network of the same kind (fewer channels or neurons per layer)"
        )


def _check_on_data(
    config: cfg.RunConfig,
    net: EnergyNetwork,
    examples: int,
    beta: float,
    data_dir: str | Path | None,
) -> GradientCheck:
    """:func:`check_gradient` of ``net`` with ``config``'s estimator (at ``beta``) and
    nudging, on the first ``examples`` training examples of ``config``'s data."""
    config = config.override({"estimator.beta": beta, "data.limit": None})
    data = runs.load_data(config, data_dir)
    runs.check_data_fits(config, data)
    result = check_gradient(
        net,
        data.train.x[:examples],
        data.train.y[:examples],
        config.estimator.build(),
        nudgings.get(config.nudged.nudging),
    )
    measured = (result.cosine_weights, result.cosine_biases)
    if not all(math.isfinite(v) for v in measured):
        raise ConfigError(
            f"beta {beta:g} gives no finite EP estimate to compare (the nudged phase "
            f"overflows or does not move); the check is for small beta, such as 1e-4"
        )
    return result
