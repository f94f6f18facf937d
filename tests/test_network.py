"""The network against independent computations: autograd of F, storage invariants."""

import numpy as np
import pytest
import torch

from eqprop import config as cfg
from eqprop import product_plan, topology
from eqprop.network import Network
from eqprop.nudging import NUDGINGS, Nudge
from eqprop.product_plan import Product, plan_cost, product_cost
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


def _multiply_adds_only(monkeypatch) -> None:
    """The plan's cost model without the fixed cost of a call (the model before it had one)."""
    monkeypatch.setattr(product_plan, "DENSE_CALL_COST", 0.0)
    monkeypatch.setattr(product_plan, "CSR_CALL_COST", 0.0)


def _plan_of(preset: str, layout: str | None = None) -> Network:
    from eqprop.runs import build_network

    config = cfg.from_dict(cfg.preset(preset))
    if layout is not None:
        config = config.override({"train.layout": layout})
    return build_network(config)


def test_product_cost_counts_multiply_adds_and_a_fixed_cost_per_call():
    assert product_cost(100 * 40) == product_plan.DENSE_CALL_COST + 4000
    assert (
        product_cost(100 * 40, nnz=30) == product_plan.CSR_CALL_COST + product_plan.SPARSE_COST * 30
    )
    assert product_cost(100 * 40, calls=False) == 4000
    assert product_cost(100 * 40, nnz=30, calls=False) == product_plan.SPARSE_COST * 30
    # a hand-built plan: a dense 3 x 4 product and a CSR one of 2 non-zeros in a 4 x 3 view
    w = torch.zeros(3, 4)
    mask = torch.zeros(3, 4)
    mask[0, 1] = mask[2, 3] = 1.0
    dense = Product(slice(0, 3), slice(3, 7), w, w)
    sparse = Product(slice(3, 7), slice(0, 3), w.T, w, Product.sparse_of(w.T, mask.T, w))
    assert plan_cost([dense, sparse]) == (
        product_plan.DENSE_CALL_COST
        + 12
        + product_plan.CSR_CALL_COST
        + 2 * product_plan.SPARSE_COST
    )
    assert plan_cost([dense, sparse], calls=False) == 12 + 2 * product_plan.SPARSE_COST
    assert plan_cost([]) == 0.0


def test_small_blocks_run_as_one_dense_product_where_calls_dominate(monkeypatch):
    """A small skip network: one dense product per stored block (call costs dominate);
    without them, the multiply-add model would split it into layer pairs, some CSR."""
    t = topology.icons(SIZES, n=40, seed=3)
    net = Network(t, seed=1, layout="dense")
    (block,) = [b for b in net.blocks if not b.is_input]
    (product,) = net.product_plan()
    assert (product.rows, product.cols, product.sparse) == (block.rows, block.cols, None)
    _multiply_adds_only(monkeypatch)
    split = Network(t, seed=1, layout="dense").product_plan()
    assert len(split) > 1 and any(p.sparse is not None for p in split)


def test_split_and_whole_plans_give_the_same_drive(monkeypatch):
    """The CSR path (which small networks no longer take) against one dense product."""
    t = topology.icons(SIZES, n=40, seed=3)
    whole = Network(t, seed=1, dtype=torch.float64, layout="dense")
    _multiply_adds_only(monkeypatch)
    split = Network(t, seed=1, dtype=torch.float64, layout="dense")
    assert len(whole.product_plan()) == 1
    assert any(p.sparse is not None for p in split.product_plan())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, SIZES[0], generator=g, dtype=torch.float64)
    s = torch.rand(3, whole.n_state, generator=g, dtype=torch.float64)
    drives = [n.drive(s, n.input_drive(x), torch.empty_like(s)) for n in (whole, split)]
    torch.testing.assert_close(drives[0], drives[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["dense", "blocks"])
def test_rewired_journal_network_runs_one_dense_product_per_stored_block(layout, monkeypatch):
    """784-100x5-10 rewired, p = 10% (frontiers-skip-deep): 30 pair products, 20 of them CSR,
    cost more in calls than one dense product per stored block saves in multiply-adds."""
    net = _plan_of("frontiers-skip-deep", layout)
    assert net.layout == layout
    plan = net.product_plan()
    expected = [(b.rows, b.cols) for b in net.blocks if not b.is_input]
    expected += [(b.cols, b.rows) for b in net.blocks if not b.is_input and not b.is_diagonal]
    assert sorted((p.rows.start, p.cols.start) for p in plan) == sorted(
        (r.start, c.start) for r, c in expected
    )
    assert all(p.sparse is None for p in plan)
    assert len(plan) == (1 if layout == "dense" else 30)
    _multiply_adds_only(monkeypatch)  # the multiply-add model alone would split it
    split = _plan_of("frontiers-skip-deep", layout).product_plan()
    assert (len(split), sum(p.sparse is not None for p in split)) == (30, 20)


def test_icons_network_c_keeps_its_csr_skip_pairs(monkeypatch):
    """ICONS network C (n = 100,000): its split stays cheaper than one dense 1510 x 1510
    product. Of its 8.8%-dense skip pairs only the 500 x 500 ones (layer 1 - layer 3) run as
    CSR: on the 500 x 10 ones (layers 1, 2 - output) a CSR call costs more than the dense
    product it saves; by multiply-adds alone they would be CSR too."""
    net = _plan_of("icons-skip")
    assert net.layout == "dense"
    plan = net.product_plan()

    def layer(part: slice) -> int:
        return next(k for k in range(1, net.n_layers) if net.layer_slices[k] == part)

    def csr_pairs(plan: list[Product]) -> set[tuple[int, int]]:
        return {(layer(p.rows), layer(p.cols)) for p in plan if p.sparse is not None}

    assert len(plan) == 15
    assert csr_pairs(plan) == {(1, 3), (3, 1)}
    (block,) = [b for b in net.blocks if not b.is_input]
    whole = block.whole_products(net.weights[net.blocks.index(block)])
    assert plan_cost(plan) < 0.95 * plan_cost(whole)
    _multiply_adds_only(monkeypatch)
    plan = _plan_of("icons-skip").product_plan()
    assert csr_pairs(plan) == {(1, 3), (3, 1), (1, 4), (4, 1), (2, 4), (4, 2)}


@pytest.mark.parametrize("family", FAMILIES)
def test_pair_plan_splits_every_block_into_its_layer_pairs(family):
    """:meth:`Network.pair_plan` whatever the plan merges: with ``layout="dense"`` the pairs
    of the blocks layout's plan, on the same weights; rebuilt after ``.to()`` and after
    :meth:`Network.keep_adjacent_only`."""
    net, blocks = make(family, "dense"), make(family, "blocks")
    assert len(net.product_plan()) == 1

    def pairs(plan: list[Product]) -> dict:
        return {(p.rows.start, p.cols.start): p for p in plan}

    got, want = pairs(net.pair_plan()), pairs(blocks.pair_plan())
    assert (
        got.keys() == want.keys() == {(p.rows.start, p.cols.start) for p in blocks.product_plan()}
    )
    assert all(p.rows in net.layer_slices and p.cols in net.layer_slices for p in got.values())
    for key, p in got.items():
        assert (p.rows, p.cols) == (want[key].rows, want[key].cols)
        torch.testing.assert_close(p.weight, want[key].weight, rtol=0, atol=0)
    net.float()
    assert all(p.weight.dtype == torch.float32 for p in net.pair_plan())
    (w,) = [w for b, w in zip(net.blocks, net.weights, strict=True) if not b.is_input]
    assert all(
        p.weight.untyped_storage().data_ptr() == w.untyped_storage().data_ptr()
        for p in net.pair_plan()
    )
    net.keep_adjacent_only()
    layers = {(p.rows.start, p.cols.start) for p in net.pair_plan()}
    adjacent = {
        (net.layer_slices[k].start, net.layer_slices[m].start)
        for k in range(1, net.n_layers)
        for m in range(1, net.n_layers)
        if abs(k - m) == 1
    }
    assert layers == adjacent


def test_forward_is_the_relaxed_states_outputs_and_predict_and_error_follow():
    from eqprop.relaxation.fixed import FixedSteps

    net = Network(topology.layered([6, 5, 4, 3]), seed=1)
    x = torch.rand(7, 6, generator=torch.Generator().manual_seed(0))
    relaxer = FixedSteps(steps=80)
    s = net.zero_state(7)
    relaxer.relax(net, s, net.input_drive(x))
    with torch.no_grad():
        out = net(x, relaxer)
    assert out.shape == (7, 3) and torch.equal(out, s[:, net.output])
    assert torch.equal(net.equilibrium(x, relaxer), s)
    assert torch.equal(net.predict(x, relaxer), s[:, net.output].argmax(1))
    labels = s[:, net.output].argmax(1)
    labels[:2] = (labels[:2] + 1) % 3  # two of seven wrong
    assert net.error(x, labels, relaxer) == pytest.approx(2 / 7)
    assert torch.equal(net(x.double(), relaxer), out)  # inputs take the network's dtype
