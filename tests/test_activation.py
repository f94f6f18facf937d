"""The activation as a part (``eqprop/activation.py``, ``docs/science.md`` section 1): the EP
estimate against the true gradient for every activation on every topology family, the
adjoint of a smooth activation against autograd through the relaxation, the solvers that
relax it and those that refuse it, and the config and command line."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from small_run import SMALL

from eqprop import activation, runs, topology
from eqprop import config as cfg
from eqprop.errors import ConfigError
from eqprop.estimators import Centered, Positive
from eqprop.gradcheck import check_gradient, true_gradient
from eqprop.metrics import held_out_error
from eqprop.network import Network
from eqprop.nudging import GradientNudging, IconsNudging
from eqprop.relaxation import fixed_point_residual
from eqprop.relaxation.fista import Fista
from eqprop.relaxation.fixed import FixedSteps
from eqprop.relaxation.layer_sweep import LayerSweep
from eqprop.relaxation.residual import Residual
from eqprop.relaxation.sor import OverRelaxed
from eqprop.relaxation.tolerance import Tolerance

SIZES = [12, 10, 10, 4]
#: every topology family of eqprop/topology.py (rewired: the journal's small-world network)
FAMILIES = {
    "layered": lambda: topology.layered(SIZES),
    "icons": lambda: topology.icons(SIZES, n=40, seed=3),
    "icons-add": lambda: topology.icons(SIZES, n=40, seed=3, mode="add"),
    "rewired": lambda: topology.rewired(SIZES, p=0.3, seed=3),
}


def _softsign(s: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.5 * s / (1.0 + s.abs())


def _softsign_prime(s: torch.Tensor) -> torch.Tensor:
    return 0.5 / (1.0 + s.abs()) ** 2


#: a user's own activation, plugged in from Python
SOFTSIGN = activation.Smooth("softsign", _softsign, _softsign_prime)
ACTIVATIONS = [*activation.ACTIVATIONS.values(), SOFTSIGN]


def problem(family: str, act: activation.Activation):
    """A small float64 network of ``family`` with ``act``, moderate weights and positive
    biases (most hard-sigmoid units inside (0, 1), where EP is tested), and 4 examples."""
    net = Network(FAMILIES[family](), seed=1, dtype=torch.float64, activation=act)
    g = torch.Generator().manual_seed(7)
    for w in net.weights:
        w.mul_(0.5)
    net.biases.uniform_(0.1, 0.5, generator=g)
    x = torch.rand(4, SIZES[0], generator=g, dtype=torch.float64)
    return net, x, torch.tensor([1, 0, 3, 2])


@pytest.mark.parametrize("nudging", [GradientNudging(), IconsNudging()], ids=lambda n: n.name)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.name)
def test_ep_matches_the_true_gradient_for_every_activation_and_family(act, family, nudging):
    net, x, y = problem(family, act)
    for estimator, cosine in ((Positive(1e-4), 0.999), (Centered(1e-4), 0.9999)):
        result = check_gradient(net, x, y, estimator, nudging)
        assert result.cosine_weights >= cosine and result.cosine_biases >= cosine
        assert result.norm_ratio_weights == pytest.approx(1.0, rel=1e-2)
        assert result.norm_ratio_biases == pytest.approx(1.0, rel=1e-2)
    if act.projected:  # the check is informative: units on both sides of the box's edges
        assert 0.5 < result.free_fraction < 1.0
    else:
        assert result.free_fraction == 1.0


def _unrolled_gradient(net: Network, x: torch.Tensor, target: torch.Tensor, steps: int):
    """``-dC/dtheta`` by autograd through ``steps`` plain gradient steps on ``E`` from zero,
    written out here from the energy's definition (no eqprop relaxer): the Jacobian of a
    contracting iteration converges to that of its fixed point."""
    act, t, n_in = net.activation, net.topology, net.n_input
    theta = torch.tensor(
        net.dense_weights()[t.edges[:, 0], t.edges[:, 1]].numpy(), requires_grad=True
    )
    b = net.biases.clone().requires_grad_(True)
    n = n_in + net.n_state
    w = torch.zeros(n, n, dtype=torch.float64).index_put(
        (torch.as_tensor(t.edges[:, 0]), torch.as_tensor(t.edges[:, 1])), theta
    )
    w = w + w.T
    s = torch.zeros(len(x), net.n_state, dtype=torch.float64)
    for _ in range(steps):  # s <- s - eps dE/ds, dE/ds = s - rho'(s) (W u + b)
        h = torch.cat([x, act.rho(s)], 1) @ w[:, n_in:] + b
        s = s - 0.5 * (s - act.rho_prime(s) * h)
    cost = 0.5 * ((s[:, net.output] - target) ** 2).sum(1).mean()
    cost.backward()
    return -theta.grad.numpy(), -b.grad.numpy(), s.detach()


@pytest.mark.parametrize("family", ["layered", "icons"])
def test_the_adjoint_of_a_smooth_activation_equals_autograd_through_the_relaxation(family):
    net, x, y = problem(family, activation.SMOOTH_SIGMOID)
    target = torch.eye(4, dtype=torch.float64)[y]
    gw, gb, s_star = _unrolled_gradient(net, x, target, steps=400)
    assert fixed_point_residual(net, s_star, net.input_drive(x)) < 1e-13
    aw, ab = true_gradient(net, x, s_star, target, GradientNudging())
    np.testing.assert_allclose(aw, gw, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ab, gb, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    "solver",
    [FixedSteps(steps=300), Tolerance(steps=300, tol=1e-12), Residual(steps=300, tol=1e-10)]
    + [Fista(steps=300, tol=1e-10)],
    ids=lambda s: type(s).__name__,
)
def test_the_general_solvers_reach_a_smooth_activations_fixed_point(solver):
    net, x, _ = problem("icons", activation.SMOOTH_SIGMOID)
    base = net.input_drive(x)
    s = net.zero_state(len(x))
    solver.relax(net, s, base)
    assert fixed_point_residual(net, s, base) < 1e-9
    assert float((s - net.equilibrium(x)).abs().max()) < 1e-4  # net(x): FISTA to 1e-5
    assert float(s.min()) < 0.0  # the states are free: no projection onto [0, 1]


@pytest.mark.parametrize("solver", [LayerSweep(tol=1e-6), OverRelaxed(eps=1.5, tol=1e-6)])
def test_the_layer_sweeps_refuse_a_smooth_activation(solver):
    net, x, _ = problem("layered", SOFTSIGN)
    with pytest.raises(ConfigError, match="needs the hard sigmoid.*'softsign'"):
        solver.relax(net, net.zero_state(len(x)), net.input_drive(x))


def test_a_wrong_derivative_is_refused():
    with pytest.raises(ConfigError, match="its derivative differs"):
        activation.Smooth("bad", torch.tanh, lambda s: 1.0 - s**2)


@pytest.mark.parametrize(
    "sets, message",
    [
        (["network.activation=tanh"], "[network] unknown activation 'tanh'; choose one of"),
        (
            ["activation=smooth-sigmoid", "free.solver=sor"],
            "[free] the 'sor' solver needs the hard sigmoid",
        ),
    ],
)
def test_the_command_line_refuses_bad_activations_in_one_line_before_writing(
    tmp_path, sets, message
):
    args = [a for s in sets for a in ("--set", s)]
    out = _cli("train", "--preset", "digits", *args, "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_smooth_activation_trains_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    args = [a for s in [*SMALL, "activation=smooth-sigmoid"] for a in ("--set", s)]
    out = _cli("train", "--preset", "digits", *args, "--quiet", "--out", str(run))
    assert out.returncode == 0, out.stderr
    first, last = runs.read_metrics(run)
    # it learns (200 examples, 2 epochs; chance is 90%): 91.0% then 85.5% training error
    assert last["train_error"] < first["train_error"] and held_out_error(last) < 0.85
    assert runs.read_config(run).network.activation == "smooth-sigmoid"
    assert "[network]" not in cfg.resolve("digits").to_toml()  # the default is not written


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eqprop.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
