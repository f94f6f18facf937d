"""The network against independent computations: autograd of F, implicit differentiation."""

import numpy as np
import pytest
import torch

from eqprop import topology
from eqprop.network import Network
from eqprop.rules import EPConfig, EquilibriumPropagation

SIZES = [12, 10, 10, 4]
FAMILIES = {
    "layered": lambda: topology.layered(SIZES),
    "icons": lambda: topology.icons(SIZES, n=40, seed=3),
    "rewired": lambda: topology.rewired(SIZES, p=0.3, seed=3),
}


def make(family: str, layout: str = "auto") -> Network:
    return Network(FAMILIES[family](), seed=1, dtype=torch.float64, layout=layout)


@pytest.mark.parametrize("layout", ["blocks", "dense"])
@pytest.mark.parametrize("family", FAMILIES)
def test_grad_F_matches_autograd(family, layout):
    net = make(family, layout)
    net.biases.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, SIZES[0], generator=g, dtype=torch.float64)
    s = 0.05 + 0.9 * torch.rand(3, net.n_state, generator=g, dtype=torch.float64)
    target = torch.eye(4, dtype=torch.float64)[[0, 2, 3]]
    for beta in (0.0, 0.7, -0.4):
        s_ = s.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net.total_energy(s_, x, beta, target).sum(), s_)
        torch.testing.assert_close(net.grad_F(s, x, beta, target), grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_dense_weights_symmetric_masked_zero_diagonal(family):
    net = make(family)
    w = net.dense_weights()
    adj = torch.as_tensor(net.topology.adjacency())
    assert torch.equal(w, w.T)
    assert torch.all(w[~adj] == 0)
    assert torch.all(w[adj] != 0)
    assert torch.all(torch.diagonal(w) == 0)


def test_initial_weights_follow_glorot_and_skip_bound():
    net = Network(topology.icons([30, 20, 20, 5], n=200, seed=0), a=0.05, seed=0)
    w = net.dense_weights().numpy()
    t = net.topology
    kinds = t.kinds
    vals = np.abs(w[t.edges[:, 0], t.edges[:, 1]])
    layer = t.layer_of[t.edges]
    bounds = [np.sqrt(6 / 50), np.sqrt(6 / 40), np.sqrt(6 / 25)]
    for k, bound in enumerate(bounds):
        sel = (kinds == topology.ADJACENT) & (layer.min(axis=1) == k)
        assert vals[sel].max() <= bound and vals[sel].max() > 0.8 * bound
    other = kinds != topology.ADJACENT
    assert vals[other].max() <= 0.05 and vals[other].max() > 0.04


def test_rewired_default_bound_is_mean_glorot():
    net = Network(topology.rewired([784, 500, 500, 500, 10], p=0.0, seed=0))
    assert net.skip_bound == pytest.approx(0.0829, abs=1e-4)
    net = Network(topology.rewired([784, 100, 100, 100, 100, 100, 10], p=0.0, seed=0))
    assert net.skip_bound == pytest.approx(0.168, abs=1e-3)


def test_layouts_give_identical_dynamics():
    t = topology.icons(SIZES, n=40, seed=3)
    a, b = (Network(t, seed=1, dtype=torch.float64, layout=lay) for lay in ("blocks", "dense"))
    torch.testing.assert_close(a.dense_weights(), b.dense_weights(), rtol=0, atol=0)
    x = torch.rand(4, SIZES[0], dtype=torch.float64)
    sa = a.relax(a.zero_state(4), a.input_drive(x), 100)
    sb = b.relax(b.zero_state(4), b.input_drive(x), 100)
    torch.testing.assert_close(sa, sb, rtol=1e-12, atol=1e-12)


def test_layered_network_does_no_dense_work():
    net = Network(topology.layered([784, 500, 500, 500, 10]))
    assert net.layout == "blocks"
    stored = sum(w.numel() for w in net.weights)
    assert stored == 897_000


# -- EP matches the gradient (the core correctness proof) ------------------------------------
def relax_to_fixed_point(net, s, base, beta=0.0, target=None):
    for _ in range(400):
        prev = s.clone()
        net.relax(s, base, 100, 0.5, beta, target)
        if float((s - prev).abs().max()) < 1e-15:
            return s
    raise AssertionError("relaxation did not converge")


def true_gradient(net, x, target, s_star):
    """-dC(s*)/dtheta by implicit differentiation at the fixed point, independent of EP.

    Free units (0 < s < 1) satisfy s_F = (W s + W_in x + b)_F; saturated units are constant.
    Solving that linear system for s_F as a differentiable function of the edge weights and
    biases and back-propagating C gives the exact gradient of C(s*).
    """
    t = net.topology
    n_in = net.n_input
    theta = torch.tensor(
        net.dense_weights()[t.edges[:, 0], t.edges[:, 1]].numpy(), requires_grad=True
    )
    b = net.biases.clone().requires_grad_(True)
    n = net.n_input + net.n_state
    w = torch.zeros(n, n, dtype=torch.float64).index_put(
        (torch.as_tensor(t.edges[:, 0]), torch.as_tensor(t.edges[:, 1])), theta
    )
    w = w + w.T
    w_ss, w_sx = w[n_in:, n_in:], w[n_in:, :n_in]
    total = 0.0
    for k in range(len(x)):
        free = (s_star[k] > 1e-9) & (s_star[k] < 1 - 1e-9)
        fixed = s_star[k].clone()
        fixed[free] = 0.0
        rhs = (w_ss @ fixed + w_sx @ x[k] + b)[free]
        a = torch.eye(int(free.sum()), dtype=torch.float64) - w_ss[free][:, free]
        s = fixed.clone()
        s = s.index_put((torch.nonzero(free).squeeze(1),), torch.linalg.solve(a, rhs))
        total = total + 0.5 * ((s[net.output] - target[k]) ** 2).sum()
    (total / len(x)).backward()
    return -theta.grad.numpy(), -b.grad.numpy(), s.detach()


def ep_update(net, x, target, s0, beta):
    """The library's EP update with lr = 1, read back as per-edge weight changes."""
    t = net.topology
    w_before, b_before = net.dense_weights().clone(), net.biases.clone()
    base = net.input_drive(x)
    sb = relax_to_fixed_point(net, s0.clone(), base, beta, target)
    EquilibriumPropagation(net, EPConfig(lr=1.0, beta=abs(beta))).update(x, s0, sb, beta)
    dw = (net.dense_weights() - w_before)[t.edges[:, 0], t.edges[:, 1]].numpy()
    db = (net.biases - b_before).numpy()
    for w, saved in zip(
        net.weights, net.from_edges(w_before[t.edges[:, 0], t.edges[:, 1]]), strict=False
    ):
        w.copy_(saved)
    net.biases.copy_(b_before)
    return dw, db


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("family", FAMILIES)
def test_ep_update_matches_true_gradient(family):
    net = make(family)
    g = torch.Generator().manual_seed(7)
    # moderate weights and positive biases keep most units inside (0, 1), where EP is tested
    for w in net.weights:
        w.mul_(0.5)
    net.biases.uniform_(0.1, 0.5, generator=g)
    x = torch.rand(4, SIZES[0], generator=g, dtype=torch.float64)
    target = torch.eye(4, dtype=torch.float64)[[1, 0, 3, 2]]
    s0 = relax_to_fixed_point(net, net.zero_state(4), net.input_drive(x))
    free_units = int(((s0 > 1e-9) & (s0 < 1 - 1e-9)).sum())
    assert free_units > s0.numel() // 2, "test network too saturated to be informative"
    gw, gb, _ = true_gradient(net, x, target, s0)
    beta = 1e-4
    dw_plus, db_plus = ep_update(net, x, target, s0, beta)
    dw_minus, db_minus = ep_update(net, x, target, s0, -beta)
    assert cosine(dw_plus, gw) >= 0.999
    assert cosine(db_plus, gb) >= 0.999
    assert cosine((dw_plus + dw_minus) / 2, gw) >= 0.9999
    assert cosine((db_plus + db_minus) / 2, gb) >= 0.9999
    # not just the direction: the magnitude matches too
    assert np.linalg.norm(dw_plus) == pytest.approx(np.linalg.norm(gw), rel=1e-2)
