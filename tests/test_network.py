"""The network against independent computations: autograd of F, storage invariants."""

import numpy as np
import pytest
import torch

from eqprop import topology
from eqprop.network import Network
from eqprop.nudging import NUDGINGS, Nudge
from eqprop.relaxation.fixed import FixedSteps

SIZES = [12, 10, 10, 4]
FAMILIES = {
    "layered": lambda: topology.layered(SIZES),
    "icons": lambda: topology.icons(SIZES, n=40, seed=3),
    "rewired": lambda: topology.rewired(SIZES, p=0.3, seed=3),
}


def make(family: str, layout: str = "auto") -> Network:
    return Network(FAMILIES[family](), seed=1, dtype=torch.float64, layout=layout)


@pytest.mark.parametrize("nudging", sorted(NUDGINGS))
@pytest.mark.parametrize("layout", ["blocks", "dense"])
@pytest.mark.parametrize("family", FAMILIES)
def test_grad_F_matches_autograd(family, layout, nudging):
    net = make(family, layout)
    net.biases.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, SIZES[0], generator=g, dtype=torch.float64)
    s = 0.05 + 0.9 * torch.rand(3, net.n_state, generator=g, dtype=torch.float64)
    target = torch.eye(4, dtype=torch.float64)[[0, 2, 3]]
    for nudge in (None, *(Nudge(NUDGINGS[nudging](), b, target) for b in (0.7, -0.4))):
        s_ = s.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net.total_energy(s_, x, nudge).sum(), s_)
        torch.testing.assert_close(net.grad_F(s, x, nudge), grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_free_step_is_a_projected_gradient_step_on_E(family):
    """One free step equals ``clip(s - eps dE/ds)`` with dE/ds from autograd."""
    net = make(family)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, SIZES[0], generator=g, dtype=torch.float64)
    s = torch.rand(3, net.n_state, generator=g, dtype=torch.float64)
    s_ = s.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net.energy(s_, x).sum(), s_)
    expected = (s - 0.3 * grad).clamp(0, 1)
    stepped = FixedSteps(eps=0.3, steps=1).relax(net, s.clone(), net.input_drive(x)).state
    torch.testing.assert_close(stepped, expected, rtol=1e-12, atol=1e-12)


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
    relax = FixedSteps(steps=100)
    sa = relax.relax(a, a.zero_state(4), a.input_drive(x)).state
    sb = relax.relax(b, b.zero_state(4), b.input_drive(x)).state
    torch.testing.assert_close(sa, sb, rtol=1e-12, atol=1e-12)


def test_layered_network_does_no_dense_work():
    net = Network(topology.layered([784, 500, 500, 500, 10]))
    assert net.layout == "blocks"
    stored = sum(w.numel() for w in net.weights)
    assert stored == 897_000


def test_network_is_a_module_that_moves_and_round_trips_through_state_dict(tmp_path):
    net = Network(FAMILIES["icons"](), seed=1)  # float32
    net.biases.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, SIZES[0])
    before = FixedSteps(steps=30).relax(net, net.zero_state(3), net.input_drive(x)).state
    weights = [w.clone() for w in net.weights]
    assert isinstance(net, torch.nn.Module)
    assert {n for n, _ in net.named_parameters()} == {
        "biases",
        *(f"blocks_weights.{i}" for i in range(len(weights))),
    }
    net.double()  # another dtype: the plan follows, the dynamics still run
    assert net.dtype == torch.float64 and all(w.dtype == torch.float64 for w in net.weights)
    moved = FixedSteps(steps=30).relax(net, net.zero_state(3), net.input_drive(x.double())).state
    torch.testing.assert_close(moved.float(), before, rtol=1e-5, atol=1e-5)
    net.float()  # and back: float32 -> float64 -> float32 is exact
    assert all(torch.equal(a, b) for a, b in zip(net.weights, weights, strict=True))
    again = FixedSteps(steps=30).relax(net, net.zero_state(3), net.input_drive(x)).state
    assert torch.equal(again, before)
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    other = Network(FAMILIES["icons"](), seed=2)  # same topology, other weights, then loaded
    other.load_state_dict(torch.load(path, weights_only=True))
    assert all(torch.equal(a, b) for a, b in zip(other.weights, weights, strict=True))
    after = FixedSteps(steps=30).relax(other, other.zero_state(3), other.input_drive(x)).state
    assert torch.equal(after, before)


def test_predict_is_the_argmax_at_the_free_fixed_point():
    net = make("layered")
    x = torch.rand(8, SIZES[0], dtype=torch.float64)
    s = FixedSteps(steps=3000).relax(net, net.zero_state(8), net.input_drive(x)).state
    assert torch.equal(net.predict(x), s[:, net.output].argmax(1))
