"""The estimate error of a free phase (eqprop.estimate_error) against an independent
computation, and its behaviour: zero for the reference itself, smaller the closer the free
phase stops to the fixed point, the trainer untouched."""

import numpy as np
import pytest
import torch

from eqprop import topology
from eqprop.estimate_error import estimate_errors, relative_errors
from eqprop.estimators import Estimate, RandomSign
from eqprop.network import Network
from eqprop.nudging import IconsNudging
from eqprop.relaxation.fista import Fista
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import Trainer
from eqprop.updates import LearningRates, MaskedSGD

SIZES = [10, 8, 8, 3]


def trainer(family: str) -> tuple[Trainer, torch.Tensor, torch.Tensor]:
    top = topology.icons(SIZES, n=30, seed=2) if family == "icons" else topology.layered(SIZES)
    net = Network(top, seed=4, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    net.biases.uniform_(-0.2, 0.4, generator=g)
    x, y = torch.rand(40, SIZES[0], generator=g).double(), torch.arange(40) % 3
    t = Trainer(
        net,
        RandomSign(beta=1.0),
        MaskedSGD(net, LearningRates(lr=0.1)),
        free=FixedSteps(eps=0.5, steps=30),
        nudged=FixedSteps(eps=0.5, steps=8),
        nudging=IconsNudging(),
        n_train=40,
        batch_size=10,
    )
    t.train_epoch(x, y)  # particles away from zero, weights away from their start
    return t, x, y


@pytest.mark.parametrize("family", ["layered", "icons"])
def test_relative_errors_match_a_direct_computation_over_the_edges(family):
    t, _, _ = trainer(family)
    net = t.network
    g = torch.Generator().manual_seed(9)

    def random_estimate():
        raw = [torch.randn(w.shape, generator=g, dtype=w.dtype) for w in net.weights]
        return Estimate(raw, torch.zeros(net.n_state, dtype=net.dtype), 0.3)

    d, r = random_estimate(), random_estimate()
    # independently: the dense N x N matrices of both estimates on the existing edges only,
    # symmetric, each edge once (the upper triangle of the state-state part)
    n_in = SIZES[0]

    def edges(estimate):
        """The estimate on the dense (input + state)^2 matrix, each edge once, and each
        edge's multiplicity in block storage (diagonal blocks hold both triangles)."""
        full = np.zeros((n_in + net.n_state,) * 2)
        count = np.ones_like(full)
        for block, raw, mask in zip(net.blocks, estimate.weights, net.masks, strict=True):
            shift = 0 if block.is_input else n_in
            rows = slice(block.rows.start + shift, block.rows.stop + shift)
            cols = slice(block.cols.start + n_in, block.cols.stop + n_in)
            value = (raw * estimate.scale * mask).numpy()
            if block.is_diagonal:
                value = np.triu((value + value.T) / 2)
                count[rows, cols] += np.triu(np.ones_like(value), 1)
            full[rows, cols] += value
        return full, count

    (a, count), (b, _) = edges(d), edges(r)
    overall, pairs = relative_errors(net, d, r)
    expected = np.sqrt((count * (a - b) ** 2).sum() / (count * b**2).sum())
    assert overall == pytest.approx(expected, rel=1e-12)
    bounds = np.cumsum([0] + SIZES)
    for k, value in enumerate(pairs):
        rows, cols = slice(bounds[k], bounds[k + 1]), slice(bounds[k + 1], bounds[k + 2])
        want = np.linalg.norm(a[rows, cols] - b[rows, cols]) / np.linalg.norm(b[rows, cols])
        assert value == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("family", ["layered", "icons"])
def test_error_is_zero_for_the_reference_and_falls_as_the_free_phase_nears_the_fixed_point(
    family,
):
    t, x, y = trainer(family)
    before = [w.clone() for w in t.network.weights], t.particles.clone()
    reference = FixedSteps(eps=0.5, steps=5000)
    relaxers = {
        "reference": reference,
        **{f"fista{tol:g}": Fista(eps=0.5, steps=3000, tol=tol) for tol in (1e-2, 1e-4, 1e-8)},
    }
    batches = [torch.arange(0, 10), torch.arange(20, 30)]
    out, reference_residual = estimate_errors(t, x, y, batches, relaxers, reference)
    assert reference_residual < 1e-12 and out["reference"].residual == reference_residual
    assert out["reference"].overall == out["reference"].overall_median == 0.0
    assert out["reference"].steps_mean == 5000
    errors = [out[f"fista{tol:g}"].overall for tol in (1e-2, 1e-4, 1e-8)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-5
    assert out["fista0.01"].residual < 1e-2 and out["fista1e-08"].residual < 1e-8
    assert len(out["fista0.01"].pairs) == len(SIZES) - 1
    assert out["fista0.01"].steps_mean < out["fista1e-08"].steps_mean
    assert all(torch.equal(w, b) for w, b in zip(t.network.weights, before[0], strict=True))
    assert torch.equal(t.particles, before[1])
