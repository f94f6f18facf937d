"""The two weakly-clamped steps against the SPEC formulas, written out independently."""

import pytest
import torch
from nudge_case import SIZES, random_case

from eqprop import topology
from eqprop.errors import ConfigError
from eqprop.network import Network
from eqprop.nudging import NUDGINGS, GradientNudging, IconsNudging, Nudge, get
from eqprop.relaxation.fixed import FixedSteps


def setup(seed=0):
    return random_case(topology.icons(SIZES, n=10, seed=1), seed)


def dense_drive(net, x, s):
    """W rho(s) + b over all neurons from the dense matrix (independent of the block plan)."""
    u = torch.cat([x, s.clamp(0, 1)], 1)
    return (u @ net.dense_weights())[:, net.n_input :] + net.biases


def one_step(net, x, s, nudge):
    return FixedSteps(eps=nudge_eps, steps=1).relax(net, s.clone(), net.input_drive(x), nudge)


nudge_eps = 0.3


@pytest.mark.parametrize("beta", [1.0, -1.0, 0.37, -2.5])
def test_icons_step_is_the_authors_formula(beta):
    """s' = s + eps (W rho(s) + b - s); s'_out += 2 eps beta (d - s'_out); s = clip(s')."""
    net, x, s, target = setup()
    expected = s + nudge_eps * (dense_drive(net, x, s) - s)
    out = expected[:, net.output]
    expected[:, net.output] = out + 2 * nudge_eps * beta * (target - out)
    expected = expected.clamp(0, 1)
    got = one_step(net, x, s, Nudge(IconsNudging(), beta, target)).state
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", [1.0, -1.0, 0.37])
def test_gradient_step_is_one_gradient_step_on_F(beta):
    """s = clip(s + eps (W rho(s) + b - s) - eps beta (s_out - d)), both from the old state."""
    net, x, s, target = setup(1)
    expected = s + nudge_eps * (dense_drive(net, x, s) - s)
    expected[:, net.output] -= nudge_eps * beta * (s[:, net.output] - target)
    got = one_step(net, x, s, Nudge(GradientNudging(), beta, target)).state
    torch.testing.assert_close(got, expected.clamp(0, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_icons_step_at_the_paper_values_is_a_hard_clamp(dtype):
    """eps = 1/2, beta = +1: the outputs land exactly on the target after every step; beta =
    -1 gives clip(2 s'_out - d)."""
    net = Network(topology.layered(SIZES), seed=0, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(7, SIZES[0], generator=g).to(dtype)
    target = torch.eye(3, dtype=dtype)[torch.randint(0, 3, (7,), generator=g)]
    s = torch.rand(7, net.n_state, generator=g).to(dtype)
    for steps in (1, 5):
        out = FixedSteps(eps=0.5, steps=steps).relax(
            net, s.clone(), net.input_drive(x), Nudge(IconsNudging(), 1.0, target)
        )
        assert torch.equal(out.state[:, net.output], target)
    free = s + 0.5 * (net.drive(s, net.input_drive(x), torch.empty_like(s)) - s)
    minus = FixedSteps(eps=0.5, steps=1).relax(
        net, s.clone(), net.input_drive(x), Nudge(IconsNudging(), -1.0, target)
    )
    expected = (2 * free[:, net.output] - target).clamp(0, 1)
    torch.testing.assert_close(minus.state[:, net.output], expected)


def test_costs_and_their_gradients():
    s_out = torch.tensor([[0.2, 0.9]], dtype=torch.float64, requires_grad=True)
    d = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    for nudging, cost in ((GradientNudging(), 0.5 * 0.05), (IconsNudging(), 0.05)):
        c = nudging.cost(s_out, d)
        assert float(c.detach()) == pytest.approx(cost)
        (grad,) = torch.autograd.grad(c.sum(), s_out)
        torch.testing.assert_close(nudging.cost_grad(s_out.detach(), d), grad)


def test_registry_names():
    assert set(NUDGINGS) == {"gradient", "icons"}
    assert isinstance(get("icons"), IconsNudging)
    with pytest.raises(ConfigError, match="unknown nudging 'hard'; choose one of gradient, icons"):
        get("hard")
