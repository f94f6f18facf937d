"""benchmarks/side_by_side_laborieux.py builds Laborieux et al.'s MNIST conv model: checked
against their primitive-function formulation, written here independently and differentiated
by autograd (their ``s <- clip(dPhi/ds)`` steps, ``Phi - beta/2 |s_out - d|^2`` when nudged,
and the one-sided estimate ``(dPhi/dtheta(nudged) - dPhi/dtheta(free)) / beta``, batch mean)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from eqprop.nudging import Nudge
from eqprop.training import one_hot

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "side_by_side_laborieux.py"
_SPEC = importlib.util.spec_from_file_location("side_by_side_laborieux", _PATH)
harness = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(harness)


def _phi(net, x, s, target, beta, kernels, matrix, biases):
    """Their primitive function per example: ``sum_k s_k . P(conv(s_{k-1}) + b_k)`` (bias
    inside the pool, as ``torch.nn.Conv2d`` puts it), ``s_out . (s_2 W + b_out)``, minus
    ``beta/2 |s_out - d|^2``; ``s`` the flat state split into the net's layers."""
    batch = x.shape[0]
    layers = [x.view(batch, 1, 28, 28)] + [
        s[:, net.layer_slices[k]].view(batch, *net.shapes[k]) for k in range(1, 4)
    ]
    b1, b2, b_out = biases[:32], biases[32:96], biases[96:]
    phi = 0.0
    for k, (w, b) in enumerate(zip(kernels, (b1, b2), strict=True)):
        pushed = F.max_pool2d(F.conv2d(layers[k], w, bias=b), 2)
        phi = phi + (pushed * layers[k + 1]).sum((1, 2, 3))
    phi = phi + ((layers[2].flatten(1) @ matrix + b_out) * layers[3]).sum(1)
    return phi - beta * 0.5 * ((layers[3] - target) ** 2).sum(1)


def _batch(seed=1, n=3):
    """The harness's trainer with its network in float64 (so the comparisons are exact to
    rounding: in float32 the large correlation sums differ by about 2e-5 of their size), a
    random batch, its one-hot targets and a generator for states."""
    generator = torch.Generator().manual_seed(seed)
    trainer = harness.build_trainer(n, seed=seed)
    net = trainer.network.to(torch.float64)
    x = torch.rand(n, 784, generator=generator, dtype=torch.float64)
    target = one_hot(torch.tensor([3, 7, 0])[:n], 10, net.dtype)
    return trainer, net, x, target, generator


def test_a_nudged_step_at_eps_1_is_their_update():
    trainer, net, x, target, generator = _batch()
    s = torch.rand(3, net.n_state, generator=generator, dtype=torch.float64)
    leaf = s.clone().requires_grad_()
    params = (list(net.kernels), net.matrices[0], net.biases)
    phi = _phi(net, x, leaf, target, 0.4, *params).sum()
    (grad,) = torch.autograd.grad(phi, leaf)
    theirs = grad.clamp(0.0, 1.0)
    nudged = type(trainer.nudged)(eps=1.0, steps=1)
    nudge = Nudge(trainer.nudging, 0.4, target)
    ours = nudged.relax(net, s.clone(), net.input_drive(x), nudge).state
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert trainer.free.eps == trainer.nudged.eps == 1.0
    assert (trainer.free.steps, trainer.nudged.steps) == (200, 10)


def test_the_applied_gradient_is_their_one_sided_estimate():
    trainer, net, x, target, generator = _batch()
    free, nudged = (
        torch.rand(3, net.n_state, generator=generator, dtype=torch.float64) for _ in range(2)
    )
    betas = trainer.estimator.betas(trainer.generator)
    assert betas == (0.4,)
    estimate = trainer.estimator.estimate(net, x, free, [nudged], betas)
    weights, biases = estimate.descent(net)
    params = [p.detach().clone().requires_grad_() for p in (*net.kernels, *net.matrices)]
    bias = net.biases.detach().clone().requires_grad_()
    # their p.grad: (mean Phi(free, beta=0) - mean Phi(nudged, beta)) / (0 - beta), negated
    # here to the ascent direction that ours calls the estimate
    delta = (
        _phi(net, x, nudged, target, 0.4, params[:2], params[2], bias).mean()
        - _phi(net, x, free, target, 0.0, params[:2], params[2], bias).mean()
    ) / 0.4
    grads = torch.autograd.grad(delta, [*params, bias])
    for ours, theirs in zip([*weights, biases], grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_biases_start_as_torch_layers_do():
    net = harness.build_trainer(10, seed=0).network
    starts = (0, 32, 96, 106)
    for k, fan_in in enumerate((25, 32 * 25, 1024)):
        part = net.biases[starts[k] : starts[k + 1]]
        bound = 1 / math.sqrt(fan_in)
        assert part.abs().max() <= bound
        assert part.abs().max() > 0.5 * bound
    assert harness.build_trainer(10, bias_init="zero").network.biases.abs().sum() == 0


def test_adam_takes_their_per_layer_rates():
    groups = harness.build_trainer(10, bias_lr=2e-5).update.optimizer.param_groups
    assert [g["lr"] for g in groups] == [5e-5, 1e-5, 8e-6, 2e-5]
    assert all(isinstance(g["params"][0], torch.nn.Parameter) for g in groups)


def test_bad_flags_are_one_line_errors():
    with pytest.raises(SystemExit) as info:
        harness.main(["--n-train", "0"])
    assert str(info.value) == "side_by_side_laborieux: --n-train must be >= 1"
