"""The relaxer contract, run on every solver: reaches the reference fixed point, respects
its step cap, is deterministic. A new solver is added to :data:`RELAXERS` and inherits it.
It runs on fully connected networks of every topology family and on small convolutional
networks (:data:`CONV_FAMILIES`)."""

import dataclasses

import pytest
import torch

from eqprop import topology
from eqprop.activation import SMOOTH_SIGMOID
from eqprop.conv import ConvBlock, ConvNetwork
from eqprop.energy_network import EnergyNetwork
from eqprop.errors import ConfigError
from eqprop.network import Network
from eqprop.nudging import IconsNudging, Nudge
from eqprop.relaxation import SOLVERS, RelaxResult, fixed_point_residual
from eqprop.relaxation.cuda_graph import CudaGraphs
from eqprop.relaxation.fista import Fista, momenta
from eqprop.relaxation.fixed import FixedSteps
from eqprop.relaxation.layer_sweep import LayerSweep
from eqprop.relaxation.residual import Residual
from eqprop.relaxation.sor import OverRelaxed
from eqprop.relaxation.tolerance import Tolerance

SIZES = [10, 8, 8, 3]
FAMILIES = {
    "layered": lambda: topology.layered(SIZES),
    "icons": lambda: topology.icons(SIZES, n=30, seed=2),
    "rewired": lambda: topology.rewired(SIZES, p=0.3, seed=2),
}
#: conv networks, (input shape, conv blocks, dense sizes): "conv" has a conv block between
#: two state layers without pooling (its energy is a quadratic on the box, one fixed point);
#: "conv-pooled" max-pools after it, which gives the energy concave kinks (the pool's maximum
#: is convex in its source layer), so fixed points need not be unique (docs/science.md
#: section 7; :mod:`eqprop.relaxation.layer_sweep`)
CONV_FAMILIES = {
    "conv": (
        (1, 8, 8),
        [ConvBlock(4, 3, padding=1, pool=2), ConvBlock(4, 3, padding=1, pool=1)],
        [10],
    ),
    "conv-pooled": (
        (1, 8, 8),
        [ConvBlock(4, 3, padding=1, pool=2), ConvBlock(4, 3, padding=1, pool=2)],
        [10],
    ),
}
ALL_FAMILIES = [*FAMILIES, *CONV_FAMILIES]
TOL = 1e-6
#: every solver, configured to converge to TOL within 3,000 steps
RELAXERS = {
    "fixed": FixedSteps(eps=0.5, steps=3000),
    "tolerance": Tolerance(eps=0.5, steps=3000, tol=TOL / 100),
    "cuda-graphs": CudaGraphs(eps=0.5, steps=3000),
    "residual": Residual(eps=0.5, steps=3000, tol=TOL / 10),
    "fista": Fista(eps=0.5, steps=3000, tol=TOL / 10),
    "layer-sweep": LayerSweep(steps=3000, tol=TOL / 10),
    "sor": OverRelaxed(eps=1.5, steps=3000, tol=TOL / 10),
}
#: solvers that only apply to some families
ONLY = {"layer-sweep": {"layered", *CONV_FAMILIES}, "sor": {"layered", *CONV_FAMILIES}}
#: the solvers stopped on the fixed-point residual
RESIDUAL_STOPPED = ["residual", "fista", "layer-sweep", "sor"]
#: the solvers whose iterates are the papers' damped steps (they reach the reference's fixed
#: point wherever they converge, on a non-convex energy too)
DAMPED = ["fixed", "tolerance", "cuda-graphs", "residual"]
#: the conv families' reference and fixed-step solvers take this many steps (they converge
#: to the float64 rounding within 400; 3,000 conv steps would slow the suite)
CONV_STEPS = 600


def problem(family, dtype=torch.float64, layout="auto", activation="hard-sigmoid"):
    if family in CONV_FAMILIES:
        shape, blocks, dense = CONV_FAMILIES[family]
        net = ConvNetwork(shape, blocks, dense, seed=4, dtype=dtype, activation=activation)
    else:
        topo = FAMILIES[family]()
        net = Network(topo, seed=4, dtype=dtype, layout=layout, activation=activation)
    g = torch.Generator().manual_seed(5)
    net.biases.uniform_(-0.2, 0.4, generator=g)
    x = torch.rand(6, net.sizes[0], generator=g).to(dtype)
    return net, x, net.input_drive(x)


def solver(name, family):
    """The contract's solver ``name`` for ``family`` (fixed-step ones shortened on conv)."""
    if family in CONV_FAMILIES and name in ("fixed", "cuda-graphs"):
        return dataclasses.replace(RELAXERS[name], steps=CONV_STEPS)
    return RELAXERS[name]


def reference_fixed_point(net, base):
    steps = CONV_STEPS if isinstance(net, ConvNetwork) else 5000
    return FixedSteps(eps=0.5, steps=steps).relax(net, net.zero_state(len(base)), base).state


def test_every_registered_solver_is_under_contract():
    assert set(SOLVERS) <= set(RELAXERS)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("name", RELAXERS)
def test_reaches_the_reference_fixed_point(name, family):
    """Every solver reaches a fixed point; where it is unique (all but "conv-pooled"), the
    reference's; on "conv-pooled" the damped-step solvers still reach the reference's (the
    same iterates) and the others one whose residual is below the tolerance."""
    net, x, base = problem(family)
    if family not in ONLY.get(name, ALL_FAMILIES):
        with pytest.raises(ConfigError, match="need a topology with no edge between two"):
            RELAXERS[name].relax(net, net.zero_state(len(x)), base)
        return
    reference = reference_fixed_point(net, base)
    assert fixed_point_residual(net, reference, base) < 1e-12
    result = solver(name, family).relax(net, net.zero_state(len(x)), base)
    assert isinstance(result, RelaxResult)
    assert 1 <= result.steps <= 3000
    assert fixed_point_residual(net, result.state, base) < TOL
    if family != "conv-pooled" or name in DAMPED:
        torch.testing.assert_close(result.state, reference, rtol=0, atol=TOL)


@pytest.mark.parametrize(
    "name, family",
    [
        (name, family)
        for name in RELAXERS
        for family in ("icons", "layered", "conv-pooled")
        if family in ONLY.get(name, ALL_FAMILIES)
    ],
)
def test_deterministic_and_in_place(name, family):
    net, x, base = problem(family, torch.float32)
    relaxer = solver(name, family)
    a, b = net.zero_state(len(x)), net.zero_state(len(x))
    ra, rb = relaxer.relax(net, a, base), relaxer.relax(net, b, base)
    assert ra.state is a and torch.equal(a, b) and ra.steps == rb.steps


@pytest.mark.parametrize("family", ["layered", "conv-pooled"])
@pytest.mark.parametrize("name", RELAXERS)
def test_respects_the_step_cap(name, family):
    net, x, base = problem(family)
    capped = dataclasses.replace(RELAXERS[name], steps=3)
    result = capped.relax(net, net.zero_state(len(x)), base)
    assert result.steps <= 3 and result.converged is not True
    if name in DAMPED:  # the papers' own steps
        exact = FixedSteps(eps=0.5, steps=result.steps).relax(net, net.zero_state(6), base)
        torch.testing.assert_close(result.state, exact.state, rtol=0, atol=0)


@pytest.mark.parametrize("family", ["layered", "conv-pooled"])
@pytest.mark.parametrize("name", RESIDUAL_STOPPED)
def test_residual_rule_stops_at_the_first_state_below_tolerance(name, family):
    """The result's residual is below tol; with one step fewer the solver had not stopped."""
    net, x, base = problem(family)
    solver = dataclasses.replace(RELAXERS[name], tol=1e-4)
    result = solver.relax(net, net.zero_state(len(x)), base)
    assert result.converged and fixed_point_residual(net, result.state, base) < 1e-4
    shorter = dataclasses.replace(solver, steps=result.steps - 1)
    earlier = shorter.relax(net, net.zero_state(len(x)), base)
    assert not earlier.converged
    assert fixed_point_residual(net, earlier.state, base) >= 1e-4


@pytest.mark.parametrize("family", ["layered", "conv-pooled"])
@pytest.mark.parametrize("name", RESIDUAL_STOPPED)
def test_each_example_stops_at_its_own_first_state_below_tolerance(name, family):
    """Relaxed in one batch, every example ends where it ends relaxed alone (the examples do
    not interact; the batch shrinks as they stop), and alone, one step fewer had not
    reached the tolerance; the batch's steps are its slowest example's."""
    net, x, base = problem(family)
    solver = dataclasses.replace(RELAXERS[name], tol=1e-4)
    together = solver.relax(net, net.zero_state(len(x)), base)
    alone = [solver.relax(net, net.zero_state(1), base[i : i + 1]) for i in range(len(x))]
    steps = [r.steps for r in alone]
    assert len(set(steps)) > 1  # the examples stop at different steps
    assert together.steps == max(steps)
    for i, r in enumerate(alone):
        torch.testing.assert_close(together.state[i : i + 1], r.state, rtol=0, atol=1e-12)
        assert fixed_point_residual(net, r.state, base[i : i + 1]) < 1e-4
        shorter = dataclasses.replace(solver, steps=r.steps - 1)
        earlier = shorter.relax(net, net.zero_state(1), base[i : i + 1])
        assert fixed_point_residual(net, earlier.state, base[i : i + 1]) >= 1e-4


def test_over_relaxation_of_one_is_the_exact_layer_sweep():
    net, x, base = problem("layered")
    exact = LayerSweep(steps=3000, tol=1e-6).relax(net, net.zero_state(len(x)), base)
    one = OverRelaxed(eps=1.0, steps=3000, tol=1e-6).relax(net, net.zero_state(len(x)), base)
    assert one.steps == exact.steps and torch.equal(one.state, exact.state)


@pytest.mark.parametrize("name", ["layer-sweep", "sor"])
def test_layer_sweeps_split_a_block_the_step_plan_runs_whole(name):
    """With ``layout="dense"`` a small layered network's step is one product over its whole
    hidden block; the sweeps take its layer pairs and reach the fixed point of the blocks
    layout."""
    dense, x, base = problem("layered", layout="dense")
    blocks, _, base_blocks = problem("layered", layout="blocks")
    assert len(dense.product_plan()) == 1 and len(blocks.product_plan()) == 4
    # the input drive is the same product on differently stored blocks: equal to rounding
    # (bit for bit on some processors; up to 4.4e-16 apart on an AMD EPYC with AVX2)
    torch.testing.assert_close(base, base_blocks, rtol=0, atol=1e-14)
    reference = reference_fixed_point(blocks, base)
    results = [RELAXERS[name].relax(n, n.zero_state(len(x)), base) for n in (dense, blocks)]
    for net, result in zip((dense, blocks), results, strict=True):
        assert result.converged and fixed_point_residual(net, result.state, base) < TOL
        torch.testing.assert_close(result.state, reference, rtol=0, atol=TOL)
    torch.testing.assert_close(results[0].state, results[1].state, rtol=0, atol=TOL / 10)


@pytest.mark.parametrize("layout", ["dense", "blocks"])
@pytest.mark.parametrize("name", ["layer-sweep", "sor"])
def test_layer_sweeps_refuse_edges_between_layers_of_the_same_parity(name, layout):
    """ICONS skip edges (layer 1 - layer 3) and intralayer edges: refused in either layout."""
    net, x, base = problem("icons", layout=layout)
    layer = net.topology.layer_of[net.topology.edges]
    assert ((layer[:, 0] > 0) & (layer[:, 0] % 2 == layer[:, 1] % 2)).any()
    with pytest.raises(ConfigError, match="need a topology with no edge between two layers"):
        RELAXERS[name].relax(net, net.zero_state(len(x)), base)


def test_over_relaxation_factor_must_be_below_two():
    with pytest.raises(ConfigError, match="relaxation factor and must be below 2"):
        OverRelaxed(eps=2.0)


@pytest.mark.parametrize("name", ["fista", "layer-sweep", "sor"])
def test_accelerated_solvers_need_fewer_steps_than_the_damped_step(name):
    net, x, base = problem("layered")
    damped = Residual(eps=0.5, steps=3000, tol=1e-5).relax(net, net.zero_state(6), base)
    fast = dataclasses.replace(RELAXERS[name], tol=1e-5).relax(net, net.zero_state(6), base)
    assert fast.converged and fast.steps < damped.steps


@pytest.mark.parametrize("family", ["layered", "conv"])
@pytest.mark.parametrize("name", RESIDUAL_STOPPED)
def test_adaptive_solvers_refuse_a_nudged_phase(name, family):
    net, x, base = problem(family)
    n_out = net.sizes[-1]
    nudge = Nudge(IconsNudging(), 1.0, torch.eye(n_out, dtype=torch.float64)[torch.arange(6) % 3])
    with pytest.raises(ConfigError, match="relaxes the free phase only"):
        RELAXERS[name].relax(net, net.zero_state(6), base, nudge)


@pytest.mark.parametrize("family", ["layered", "conv-pooled"])
@pytest.mark.parametrize("name", [n for n, s in SOLVERS.items() if s.hard_sigmoid_only])
def test_layer_solvers_refuse_a_smooth_activation_in_one_line(name, family):
    net, x, base = problem(family, activation=SMOOTH_SIGMOID.name)
    with pytest.raises(ConfigError, match=f"the '{name}' solver needs the hard sigmoid") as err:
        SOLVERS[name](steps=10).relax(net, net.zero_state(6), base)
    assert "\n" not in str(err.value)


def _plain_fista(net, s, base, eps, steps):
    """FISTA as the module docs write it, on whole tensors: ``steps`` steps from ``s``; the
    extrapolated point and the number of restarts."""
    y, t, restarts = s.clone(), torch.ones(len(s), 1, dtype=s.dtype), 0
    for _ in range(steps):
        h = net.drive(y, base, torch.empty_like(y))
        new = torch.lerp(y, h, eps).clamp_(0.0, 1.0)
        restart = torch.linalg.vecdot(y - h, new - s, dim=1).unsqueeze(1) > 0
        t_next = (1.0 + torch.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum = torch.where(restart, 0.0, (t - 1.0) / t_next)
        t, restarts = torch.where(restart, 1.0, t_next), restarts + int(restart.sum())
        y = torch.addcmul(new, new - s, momentum).clamp_(0.0, 1.0)
        s = new
    return y, restarts


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fista_steps_are_the_plain_recurrence_bit_for_bit(dtype):
    """The buffers reused in place and the momentum table change no rounding."""
    net, _, _ = problem("icons", dtype)
    g = torch.Generator().manual_seed(3)  # 21 rows: the vectorised kernels and their tails
    base = net.input_drive(torch.rand(21, SIZES[0], dtype=dtype, generator=g))
    start = torch.rand(21, net.zero_state(1).shape[1], dtype=dtype, generator=g)
    want, restarts = _plain_fista(net, start, base, 0.5, 40)  # still moving at 40
    assert restarts > 0
    got = Fista(eps=0.5, steps=40, tol=1e-300).relax(net, start.clone(), base)
    assert got.steps == 40 and torch.equal(got.state, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fista_momentum_table_is_the_recurrence(dtype):
    """Entry ``j``: the momentum after ``j`` steps without restart, computed by the recurrence
    on a batch of rows (vectorised and scalar kernels); the table grows consistently."""
    short = momenta(10, dtype, torch.device("cpu")).clone()
    table = momenta(5000, dtype, torch.device("cpu"))
    assert len(table) >= 5000 and torch.equal(table[: len(short)], short)
    t = torch.ones(37, 1, dtype=dtype)
    assert table[0] == 0
    for j in range(1, 5000):
        t_next = (1.0 + torch.sqrt(1.0 + 4.0 * t * t)) / 2.0
        assert torch.equal((t - 1.0) / t_next, table[j].expand(37, 1)), j
        t = t_next


def test_tolerance_stops_at_the_first_small_change():
    net, x, base = problem("layered")
    result = Tolerance(eps=0.5, steps=3000, tol=1e-4).relax(net, net.zero_state(len(x)), base)
    assert result.converged
    before = FixedSteps(eps=0.5, steps=result.steps - 1).relax(net, net.zero_state(6), base)
    after = FixedSteps(eps=0.5, steps=1).relax(net, before.state.clone(), base)
    assert float((after.state - before.state).abs().max()) < 1e-4
    earlier = FixedSteps(eps=0.5, steps=result.steps - 2).relax(net, net.zero_state(6), base)
    assert float((before.state - earlier.state).abs().max()) >= 1e-4


@pytest.mark.parametrize("family", ["rewired", "conv-pooled"])
def test_nudged_relaxation_of_every_solver_matches_fixed_steps(family):
    net, x, base = problem(family)
    target = torch.eye(net.sizes[-1], dtype=torch.float64)[torch.arange(6) % 3]
    nudge = Nudge(IconsNudging(), 0.2, target)
    want = FixedSteps(eps=0.5, steps=8).relax(net, net.zero_state(6), base, nudge).state
    got = CudaGraphs(eps=0.5, steps=8).relax(net, net.zero_state(6), base, nudge).state
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FixedSteps(eps=0.0), "eps must be a number > 0"),
        (lambda: FixedSteps(steps=0), "steps must be an integer >= 1"),
        (lambda: FixedSteps(steps=2.5), "steps must be an integer >= 1"),
        (lambda: Tolerance(tol=0.0), "tol must be a number > 0"),
    ],
)
def test_invalid_settings_are_one_line_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_layer_solvers_refuse_a_network_without_layer_terms():
    class Opaque(ConvNetwork):
        layer_terms = EnergyNetwork.layer_terms

    shape, blocks, dense = CONV_FAMILIES["conv"]
    net = Opaque(shape, blocks, dense, dtype=torch.float64)
    base = net.input_drive(torch.rand(2, net.sizes[0], dtype=torch.float64))
    with pytest.raises(ConfigError, match="do not apply to a Opaque .*use free.solver = 'fista'"):
        LayerSweep(steps=10).relax(net, net.zero_state(2), base)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_cuda_graphs_on_a_conv_network_equal_eager_steps_on_gpu():
    """The graph captures a conv step (convolutions, pooling, the scatter unpool) as it
    captures a dense one, free and nudged."""
    shape, blocks, dense = CONV_FAMILIES["conv-pooled"]
    net = ConvNetwork(shape, blocks, dense, seed=4, device="cuda")
    x = torch.rand(6, net.sizes[0], device="cuda")
    base = net.input_drive(x)
    nudge = Nudge(IconsNudging(), 0.5, torch.eye(10, device="cuda")[torch.arange(6) % 3])
    for steps, phase in ((40, None), (8, nudge)):
        want = FixedSteps(eps=0.5, steps=steps).relax(net, net.zero_state(6), base, phase)
        got = CudaGraphs(eps=0.5, steps=steps).relax(net, net.zero_state(6), base, phase)
        torch.testing.assert_close(got.state, want.state, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_cuda_graphs_equal_eager_steps_on_gpu():
    net, x, base = problem("icons", torch.float32)
    net = Network(FAMILIES["icons"](), seed=4, device="cuda")
    base = net.input_drive(x.float().cuda())
    want = FixedSteps(eps=0.5, steps=40).relax(net, net.zero_state(6), base).state
    got = CudaGraphs(eps=0.5, steps=40).relax(net, net.zero_state(6), base).state
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def _plain_sweeps(net, s, base, omega, sweeps):
    """Even/odd sweeps written out layer by layer: each layer's drive is its input drive plus
    its pair products in the order of ``pair_plan``, then ``s <- clip(lerp(s, h, omega))``."""
    layer_of = {}
    for k in range(1, net.n_layers):
        c = net.layer_slices[k]
        layer_of[(c.start, c.stop)] = k

    def layer(part):
        return next(k for (a, b), k in layer_of.items() if a <= part.start and part.stop <= b)

    for _ in range(sweeps):
        for parity in (1, 0):
            for k in range(1, net.n_layers):
                if k % 2 != parity:
                    continue
                c = net.layer_slices[k]
                h = base[:, c].clone()
                for p in net.pair_plan():
                    if layer(p.cols) == k:
                        local = slice(p.cols.start - c.start, p.cols.stop - c.start)
                        h[:, local].addmm_(s[:, p.rows], p.weight)
                s[:, c] = torch.lerp(s[:, c], h, omega).clamp_(0.0, 1.0)
    return s


@pytest.mark.parametrize("sizes", [[12, 7, 9, 6, 3], [10, 8, 8, 3]])
def test_layer_sweeps_are_the_plain_per_layer_sweeps_to_rounding(sizes):
    """The solver keeps each parity's layers in one block (one operation per half-sweep, not
    one per layer); that is a layout, not another computation. Bit for bit where the BLAS
    rounds a product the same whatever the layout of its operands (seen on an Intel Xeon with
    AVX512); MKL on an AMD EPYC with AVX2 does not, and the two differ there by at most 3 ulp
    of float32 (2e-7, measured) after 1 or 25 sweeps, where a relaxation factor of 1.69 for
    1.7 moves the result by 4.6e-5 and one sweep fewer by 3.8e-4 (measured)."""
    net = Network(topology.layered(sizes), seed=3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, sizes[0], generator=gen)
    base = net.input_drive(x)
    start = torch.rand(5, net.n_state, generator=gen)
    for solver, omega in (
        (OverRelaxed(eps=1.7, steps=25, tol=1e-30), 1.7),
        (LayerSweep(steps=25, tol=1e-30), 1.0),
    ):
        got = start.clone()
        solver.relax(net, got, base)
        want = _plain_sweeps(net, start.clone(), base, omega, 25)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
