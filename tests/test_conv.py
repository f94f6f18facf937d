"""The convolutional Hopfield network (``docs/science.md`` section 7) against independent
computations: its energy and drive against an energy written here with ``unfold`` products
and reshaped maxima, and autograd; its fixed points against the energy's stationarity; the
EP estimate of every estimator against the true gradient by implicit differentiation."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixed_point import ep_descent, relax_to_fixed_point

from eqprop.activation import SMOOTH_SIGMOID
from eqprop.conv import ConvBlock, ConvNetwork, ConvSGD, conv_mnist
from eqprop.errors import ConfigError
from eqprop.estimators import Centered, Positive, RandomSign
from eqprop.nudging import GradientNudging, IconsNudging, Nudge
from eqprop.relaxation import fixed_point_residual
from eqprop.relaxation.fista import Fista
from eqprop.relaxation.fixed import FixedSteps
from eqprop.relaxation.layer_sweep import LayerSweep
from eqprop.relaxation.residual import Residual
from eqprop.relaxation.sor import OverRelaxed
from eqprop.relaxation.tolerance import Tolerance
from eqprop.training import Trainer, one_hot
from eqprop.updates import LearningRates

#: name -> (input shape, conv blocks, dense sizes)
ARCHITECTURES = {
    # the brief's tiny net: 1x8x8, one conv layer of 4 channels with 2x2 pooling, 3 outputs
    "tiny": ((1, 8, 8), [ConvBlock(4, kernel=3, padding=1, pool=2)], [3]),
    # two conv layers between state layers (conv_transpose2d feeds back), a hidden dense one
    "deep": (
        (2, 8, 8),
        [ConvBlock(3, kernel=3, padding=1, pool=2), ConvBlock(4, kernel=2, pool=1)],
        [5, 3],
    ),
    # pooling after a state-to-state convolution, no padding
    "pooled": (
        (1, 9, 9),
        [ConvBlock(3, kernel=2, pool=2), ConvBlock(4, kernel=3, padding=1, pool=2)],
        [3],
    ),
}


def network(name, activation="hard-sigmoid", seed=1):
    shape, blocks, dense = ARCHITECTURES[name]
    return ConvNetwork(shape, blocks, dense, seed=seed, dtype=torch.float64, activation=activation)


# -- the energy written independently ----------------------------------------------------------
def _conv(x, w, padding):
    """The convolution as an ``unfold`` product."""
    out, _, k, _ = w.shape
    height, width = (n + 2 * padding - k + 1 for n in x.shape[2:])
    cols = F.unfold(x, k, padding=padding)
    return (w.reshape(out, -1) @ cols).reshape(len(x), out, height, width)


def _pool(y, p):
    """Max pooling as the maximum over reshaped windows (remainder rows dropped)."""
    b, c, height, width = y.shape
    y = y[:, :, : height // p * p, : width // p * p]
    return y.reshape(b, c, height // p, p, width // p, p).amax((3, 5))


def reference_phi(net, weights, biases, r, x):
    """``Phi`` with the biases' term, per example, from the network's shapes only."""
    maps, at = [x.reshape(len(x), *net.shapes[0])], 0
    for k in range(1, net.n_layers):
        maps.append(r[:, at : at + net.sizes[k]].reshape(len(x), *net.shapes[k]))
        at += net.sizes[k]
    phi, at = 0.0, 0
    for k in range(1, net.n_layers):
        c = net.shapes[k][0]
        per_channel = maps[k].reshape(len(x), c, -1).sum(2)
        phi = phi + per_channel @ biases[at : at + c]
        at += c
        w = weights[k - 1]
        if k <= len(net.blocks):
            block = net.blocks[k - 1]
            pushed = _pool(_conv(maps[k - 1], w, block.padding), block.pool)
        else:
            pushed = maps[k - 1].reshape(len(x), -1) @ w
        phi = phi + (pushed.reshape(len(x), -1) * maps[k].reshape(len(x), -1)).sum(1)
    return phi


def reference_energy(net, weights, biases, s, x):
    return 0.5 * (s * s).sum(1) - reference_phi(net, weights, biases, net.activation.rho(s), x)


def problem(name, activation="hard-sigmoid", batch=3):
    net = network(name, activation)
    g = torch.Generator().manual_seed(5)
    # small weights and positive biases keep most units inside (0, 1), where EP is tested
    for w in net.weights:
        w.mul_(0.7)
    net.biases.uniform_(0.1, 0.4, generator=g)
    x = torch.rand(batch, net.n_input, generator=g, dtype=torch.float64)
    return net, x, g


# -- energy and drive ---------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["hard-sigmoid", SMOOTH_SIGMOID.name])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_energy_and_its_gradient_match_an_independent_energy(name, activation):
    net, x, g = problem(name, activation)
    s = torch.rand(len(x), net.n_state, generator=g, dtype=torch.float64) * 0.9 + 0.05
    if activation != "hard-sigmoid":
        s = s * 4 - 2  # a smooth activation's states are free
    want = reference_energy(net, net.weights, net.biases, s, x)
    assert torch.allclose(net.energy(s, x), want, rtol=1e-13, atol=1e-12)
    leaf = s.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        reference_energy(net, net.weights, net.biases, leaf, x).sum(), leaf
    )
    assert torch.allclose(net.grad_F(s, x), grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_phi_gradients_match_autograd(name):
    net, x, g = problem(name)
    r = torch.rand(len(x), net.n_state, generator=g, dtype=torch.float64)
    params = [w.detach().clone().requires_grad_(True) for w in [*net.weights, net.biases]]
    phi = reference_phi(net, params[:-1], params[-1], r, x).sum()
    want = torch.autograd.grad(phi, params)
    weights, biases = net.phi_gradients(x, r)
    for got, expected in zip([*weights, biases], want, strict=True):
        assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_nudged_step_descends_the_total_energy_gradient():
    net, x, g = problem("deep")
    s = torch.rand(len(x), net.n_state, generator=g, dtype=torch.float64) * 0.9 + 0.05
    target = one_hot(torch.tensor([0, 2, 1]), 3, torch.float64)
    nudge = Nudge(GradientNudging(), 0.3, target)
    leaf = s.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net.total_energy(leaf, x, nudge).sum(), leaf)
    eps = 0.01  # small enough that no unit leaves the box
    after = s.clone()
    FixedSteps(eps=eps, steps=1).relax(net, after, net.input_drive(x), nudge)
    assert torch.allclose(after, s - eps * grad, rtol=0, atol=1e-14)


# -- fixed points ------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["hard-sigmoid", SMOOTH_SIGMOID.name])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_fixed_point_is_a_stationary_point_of_the_energy(name, activation):
    net, x, _ = problem(name, activation)
    s = relax_to_fixed_point(net, net.zero_state(len(x)), net.input_drive(x))
    leaf = s.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        reference_energy(net, net.weights, net.biases, leaf, x).sum(), leaf
    )
    if activation == "hard-sigmoid":  # projected gradient: zero inside, outward at the bounds
        assert torch.allclose(torch.clamp(s - grad, 0.0, 1.0), s, rtol=0, atol=1e-12)
        inside = (s > 0) & (s < 1)
        assert inside.float().mean() > 0.5
    else:
        assert float(grad.abs().max()) < 1e-12


@pytest.mark.parametrize(
    "relaxer",
    [
        Tolerance(steps=20_000, tol=1e-13),
        Residual(steps=20_000, tol=1e-12),
        Fista(steps=20_000, tol=1e-12),
    ],
    ids=lambda r: type(r).__name__,
)
def test_relaxers_reach_the_same_fixed_point(relaxer):
    net, x, _ = problem("deep")
    base = net.input_drive(x)
    reference = relax_to_fixed_point(net, net.zero_state(len(x)), base)
    result = relaxer.relax(net, net.zero_state(len(x)), base)
    assert fixed_point_residual(net, result.state, base) < 1e-10
    assert torch.allclose(result.state, reference, rtol=0, atol=1e-9)
    capped = dataclasses.replace(relaxer, steps=3).relax(net, net.zero_state(len(x)), base)
    assert capped.steps == 3 and not capped.converged


# -- layer sweeps ------------------------------------------------------------------------------
#: three conv layers: layer 2 (even) max-pools into layer 3, so an even layer's feedback reads
#: the layer itself (the sweeps recompute its drive after its update)
THREE = (
    (1, 12, 12),
    [ConvBlock(2, 3, padding=1), ConvBlock(3, 3, padding=1, pool=1), ConvBlock(3, 3, padding=1)],
    [4],
)
ARCHITECTURES_AND_THREE = {**ARCHITECTURES, "three": THREE}


def sweep_problem(name, batch=3):
    if name != "three":
        return problem(name, batch=batch)
    shape, blocks, dense = THREE
    net = ConvNetwork(shape, blocks, dense, seed=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    for w in net.weights:
        w.mul_(0.7)
    net.biases.uniform_(0.1, 0.4, generator=g)
    return net, torch.rand(batch, net.n_input, generator=g, dtype=torch.float64), g


@pytest.mark.parametrize("name", ARCHITECTURES_AND_THREE)
def test_no_interaction_couples_two_layers_of_the_same_parity(name):
    """Brute force on the drive: changing any other layer of a layer's parity leaves that
    layer's drive exactly as it was (what makes an even/odd sweep a block method)."""
    net, x, g = sweep_problem(name)
    base = net.input_drive(x)
    s = torch.rand(len(x), net.n_state, generator=g, dtype=torch.float64)
    h = net.drive(s, base, torch.empty_like(s))
    for k in range(1, net.n_layers):
        for j in range(k % 2 or 2, net.n_layers, 2):
            if j == k:
                continue
            moved = s.clone()
            moved[:, net.layer_slices[j]] = torch.rand(
                len(x), net.sizes[j], generator=g, dtype=torch.float64
            )
            h_moved = net.drive(moved, base, torch.empty_like(s))
            assert torch.equal(h_moved[:, net.layer_slices[k]], h[:, net.layer_slices[k]])
            assert not torch.equal(h_moved, h)


@pytest.mark.parametrize("name", ["deep", "pooled"])
def test_layer_sweeps_reach_the_damped_steps_fixed_point_in_fewer_steps(name):
    """On these networks (with and without max pooling between state layers) the exact sweeps
    reach the fixed point the papers' damped step reaches from zero, in fewer sweeps than it
    takes steps."""
    net, x, _ = problem(name, batch=6)
    base = net.input_drive(x)
    reference = relax_to_fixed_point(net, net.zero_state(len(x)), base)
    damped = Residual(steps=5000, tol=1e-10).relax(net, net.zero_state(len(x)), base)
    sweeps = LayerSweep(steps=5000, tol=1e-10).relax(net, net.zero_state(len(x)), base)
    assert damped.converged and sweeps.converged
    assert fixed_point_residual(net, sweeps.state, base) < 1e-10
    torch.testing.assert_close(sweeps.state, reference, rtol=0, atol=1e-9)
    assert sweeps.steps < damped.steps / 2


@pytest.mark.parametrize("omega", [1.0, 1.5])
@pytest.mark.parametrize("name", ["pooled", "three"])
def test_layer_sweeps_never_increase_the_energy_with_max_pooling(name, omega):
    """With max pooling after a conv between state layers, a layer's feedback takes the pool's
    maxima at the layer itself: its energy is no longer a separable quadratic, and the
    half-sweep ``clip(h)`` is a majorise-minimise step (the pooled term is convex in the
    layer; its linearisation at the current state bounds it), so the energy never increases,
    over-relaxed too; the sweeps stop at a fixed point (module docs of
    :mod:`eqprop.relaxation.layer_sweep`)."""
    net, x, g = sweep_problem(name)
    base = net.input_drive(x)
    start = torch.rand(len(x), net.n_state, generator=g, dtype=torch.float64)
    energies = [net.energy(start, x)]
    for sweeps in range(1, 16):
        s = start.clone()
        OverRelaxed(eps=omega, steps=sweeps, tol=1e-300).relax(net, s, base)
        energies.append(net.energy(s, x))
    energies = torch.stack(energies)
    assert bool((energies[1:] <= energies[:-1] + 1e-12).all())
    assert bool((energies[-1] < energies[0] - 0.1).all())
    result = OverRelaxed(eps=omega, steps=3000, tol=1e-9).relax(net, start.clone(), base)
    assert result.converged and fixed_point_residual(net, result.state, base) < 1e-9


@pytest.mark.parametrize("name", ["pooled", "three"])
def test_the_sweeps_residual_is_the_current_states(name):
    """The residual the sweeps stop on is the current state's, ``max |s - clip(h(s))|`` per
    example, after every sweep: also where an even layer's drive reads the layer itself
    ("three"), whose drive is computed again after its update."""
    net, x, g = sweep_problem(name, batch=5)
    base = net.input_drive(x)
    state = torch.rand(len(x), net.n_state, generator=g, dtype=torch.float64)
    iterate = OverRelaxed(eps=1.5).start(net, state, base)
    even = torch.cat(
        [torch.arange(net.n_state)[net.layer_slices[k]] for k in range(2, net.n_layers, 2)]
    )
    for _ in range(12):
        got = iterate.residuals()
        s = iterate.current
        h = net.drive(s, base, torch.empty_like(s))
        want = (s - h.clamp(0.0, 1.0)).abs()
        torch.testing.assert_close(got, want.amax(1), rtol=0, atol=1e-12)
        torch.testing.assert_close(
            iterate.even.residuals(), want[:, even].amax(1), rtol=0, atol=1e-12
        )
        iterate.advance()


@pytest.mark.parametrize("name", ["deep", "pooled"])
def test_a_sweep_minimises_the_energy_exactly_over_a_layer_that_does_not_read_itself(name):
    """After a sweep the even layers (here none takes a pool's maxima at itself) are the exact
    minimiser of the energy given the odd ones: its projected gradient there is zero
    (autograd on the energy written in this file)."""
    net, x, g = problem(name)
    base = net.input_drive(x)
    s = torch.rand(len(x), net.n_state, generator=g, dtype=torch.float64)
    LayerSweep(steps=1, tol=1e-300).relax(net, s, base)
    leaf = s.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        reference_energy(net, net.weights, net.biases, leaf, x).sum(), leaf
    )
    for k in range(2, net.n_layers, 2):
        part = net.layer_slices[k]
        projected = torch.clamp(s[:, part] - grad[:, part], 0.0, 1.0)
        torch.testing.assert_close(projected, s[:, part], rtol=0, atol=1e-13)
    odd = net.layer_slices[1]  # not yet: the odd layers moved before the even ones
    assert not torch.allclose(torch.clamp(s[:, odd] - grad[:, odd], 0, 1), s[:, odd])


# -- the step's speed-ups change no bit ---------------------------------------------------------
def plain_step(net, s, base, eps):
    """One free step written with the textbook operations: NCHW ``max_pool2d`` and
    ``max_unpool2d`` (the network pools channels-last and unpools by a scatter). The dense
    terms use the network's in-place product: ``h.addmm_(a, w)`` and ``h += a @ w`` round
    differently in float64 on some processors (measured on an AMD EPYC with AVX2, not on an
    Intel Xeon with AVX512), and that is not the speed-up under test."""
    h = base.clone()
    for k, w in enumerate(net.weights[1:], start=1):
        src = s[:, net.layer_slices[k]].reshape(len(s), *net.shapes[k])
        dst = s[:, net.layer_slices[k + 1]].reshape(len(s), *net.shapes[k + 1])
        if k >= len(net.blocks):
            h[:, net.layer_slices[k + 1]].addmm_(src.reshape(len(s), -1), w)
            h[:, net.layer_slices[k]].addmm_(dst.reshape(len(s), -1), w.T)
            continue
        block = net.blocks[k]
        y = F.conv2d(src, w, padding=block.padding)
        pooled, indices = F.max_pool2d(y, block.pool, return_indices=True)
        h[:, net.layer_slices[k + 1]] += pooled.reshape(len(s), -1)
        grad = F.max_unpool2d(dst, indices, block.pool, output_size=y.shape[-2:])
        back = F.conv_transpose2d(grad, w, padding=block.padding)
        h[:, net.layer_slices[k]] += back.reshape(len(s), -1)
    return ((1 - eps) * s + eps * h).clamp(0.0, 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_conv_step_is_the_plain_step_bit_for_bit(dtype):
    """30 steps of a two-block MNIST-shaped network from zero (many states at 0, so the pools
    see ties) equal the textbook step's, bit for bit."""
    blocks = [ConvBlock(4, kernel=5, pool=2), ConvBlock(6, kernel=5, pool=2)]
    net = ConvNetwork((1, 28, 28), blocks, [10], seed=0, dtype=dtype)
    x = torch.rand(8, 784, generator=torch.Generator().manual_seed(0), dtype=dtype)
    base = net.input_drive(x)
    s, want = net.zero_state(8), net.zero_state(8)
    for _ in range(30):
        FixedSteps(eps=0.5, steps=1).relax(net, s, base)
        want = plain_step(net, want, base, 0.5)
        assert torch.equal(s, want)
    assert 0.05 < float((s == 0).float().mean()) < 0.95


# -- the EP estimate against the true gradient ---------------------------------------------------
def true_gradient(net, x, target, s_star, factor=1.0):
    """``-dC(s*)/dtheta`` of the batch mean of ``factor * 1/2 |s_out - d|^2``, by implicit
    differentiation of the reference energy's stationarity on the unsaturated units ``U``:
    ``H lambda = dC/ds_U`` with ``H`` the energy's Hessian on ``U`` (autograd), then
    ``dC/dtheta = -lambda . d(dE/ds_U)/dtheta``."""
    params = [w.detach().clone().requires_grad_(True) for w in [*net.weights, net.biases]]
    s = s_star.detach().reshape(-1)
    free = torch.nonzero((s > 1e-9) & (s < 1 - 1e-9)).squeeze(1)

    def energy(flat):
        return reference_energy(net, params[:-1], params[-1], flat.reshape(s_star.shape), x).sum()

    hessian = torch.autograd.functional.hessian(energy, s)[free][:, free]
    dc = torch.zeros_like(s_star)
    dc[:, net.output] = factor * (s_star[:, net.output] - target) / len(x)
    lam = torch.linalg.solve(hessian, dc.reshape(-1)[free])
    leaf = s.clone().requires_grad_(True)
    (grad_s,) = torch.autograd.grad(energy(leaf), leaf, create_graph=True)
    grads = torch.autograd.grad((grad_s[free] * lam).sum(), params)
    return [g.detach() for g in grads]  # -dC/dtheta = +lambda . d(dE/ds)/dtheta


def ep_estimate(net, estimator, nudging, x, target, s0):
    weights, biases = ep_descent(net, estimator, nudging, x, target, s0)
    return [*weights, biases]


def cosine(a, b):
    a, b = a.reshape(-1).numpy(), b.reshape(-1).numpy()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


#: nudging -> the norm of its small-beta estimate over the norm of -dC/dtheta (C with the 1/2)
NORM_FACTOR = {"gradient": 1.0, "icons": 2.0}


@pytest.mark.parametrize("nudging", [GradientNudging(), IconsNudging()], ids=lambda n: n.name)
@pytest.mark.parametrize("estimator", [Positive, RandomSign, Centered], ids=lambda e: e.__name__)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_ep_estimate_matches_the_true_gradient(name, estimator, nudging):
    net, x, _ = problem(name)
    target = one_hot(torch.tensor([1, 0, 2]), 3, torch.float64)
    s0 = relax_to_fixed_point(net, net.zero_state(len(x)), net.input_drive(x))
    before = [w.clone() for w in [*net.weights, net.biases]]
    factor = NORM_FACTOR[nudging.name]
    want = true_gradient(net, x, target, s0, factor)
    got = ep_estimate(net, estimator(1e-4), nudging, x, target, s0)
    tolerance = 1e-3 if estimator is Centered else 1e-2  # centered: bias of order beta^2
    for estimate, true in zip(got, want, strict=True):  # every kernel, matrix, and the biases
        assert cosine(estimate, true) >= 0.999
        assert float(estimate.norm()) == pytest.approx(float(true.norm()), rel=tolerance)
    assert all(torch.equal(a, b) for a, b in zip([*net.weights, net.biases], before, strict=True))


# -- training ------------------------------------------------------------------------------------
def test_a_trainer_trains_a_conv_network_and_resumes_exactly():
    shape, blocks, dense = ARCHITECTURES["deep"]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 128, generator=g)
    y = torch.arange(24) % 3

    def trainer():
        net = ConvNetwork(shape, blocks, dense, seed=2)
        return Trainer(
            net,
            RandomSign(0.5),
            ConvSGD(net, LearningRates(lr=(0.1, 0.05, 0.05, 0.02), bias_lr=0.01)),
            free=FixedSteps(steps=20),
            nudged=FixedSteps(steps=4),
            nudging=IconsNudging(),
            n_train=24,
            batch_size=6,
        )

    a = trainer()
    initial = [w.clone() for w in a.network.weights]
    first = a.train_epoch(x, y)
    assert first.layer_rates.shape == (4, 4) and bool((first.layer_rates > 0).all())
    assert all(not torch.equal(w, w0) for w, w0 in zip(a.network.weights, initial, strict=True))
    state = a.state_dict()
    a.train_epoch(x, y)
    b = trainer()
    b.load_state_dict(state)
    b.train_epoch(x, y)
    for wa, wb in zip(
        [*a.network.weights, a.network.biases], [*b.network.weights, b.network.biases], strict=True
    ):
        assert torch.equal(wa, wb)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ConvNetwork((1, 4, 4), [ConvBlock(2, kernel=5)], [3]), "does not fit a 4x4 map"),
        (lambda: ConvNetwork((1, 8, 8), [], [3]), "at least one conv block"),
        (lambda: ConvNetwork((1, 8, 8), [ConvBlock(2)], []), "at least one dense layer"),
        (lambda: ConvNetwork((8, 8), [ConvBlock(2)], [3]), "input_shape must be"),
        (lambda: ConvBlock(0), "channels must be an integer >= 1"),
        (lambda: ConvBlock(2, padding=-1), "padding must be an integer >= 0"),
        (
            lambda: ConvSGD(network("tiny"), LearningRates(lr=(0.1, 0.1, 0.1))),
            "lr has 3 values but the network has 2 layer pairs",
        ),
    ],
)
def test_bad_input_is_a_one_line_error(make, message):
    with pytest.raises(ConfigError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


def test_the_conv_mnist_preset_trains_a_batch():
    trainer = conv_mnist(32, free_steps=5)
    net = trainer.network
    assert net.shapes == ((1, 28, 28), (16, 12, 12), (32, 4, 4), (10,))
    x = torch.rand(32, 784, generator=torch.Generator().manual_seed(0))
    before = [w.clone() for w in net.weights]
    result = trainer.train_batch(x, torch.arange(32) % 10, torch.arange(32))
    assert result.betas == (0.5, -0.5) and result.free_steps == 5
    assert all(not torch.equal(w, w0) for w, w0 in zip(net.weights, before, strict=True))
