"""The user-facing gradient check: the adjoint gradient against implicit differentiation,
the verdict on correct estimators, and a low cosine for a deliberately wrong one."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_theory import problem

from eqprop import config as cfg
from eqprop import runs
from eqprop.data import load_dataset
from eqprop.estimators import Estimate, Positive
from eqprop.gradcheck import check_config, check_gradient, true_gradient
from eqprop.nudging import GradientNudging, IconsNudging


@pytest.mark.parametrize("family", ["layered", "icons", "rewired"])
def test_adjoint_gradient_equals_implicit_differentiation(family):
    net, x, target, s0, (gw, gb) = problem(family)
    aw, ab = true_gradient(net, x, s0, target, GradientNudging())
    np.testing.assert_allclose(aw, gw, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ab, gb, rtol=1e-9, atol=1e-12)
    iw, _ = true_gradient(net, x, s0, target, IconsNudging())  # its cost has no 1/2
    np.testing.assert_allclose(iw, 2 * gw, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("nudging", ["gradient", "icons"])
@pytest.mark.parametrize("kind", ["positive", "random-sign", "centered"])
def test_every_estimator_and_nudging_passes_on_the_digits_network(kind, nudging):
    config = cfg.resolve("digits", None, [f"estimator.kind='{kind}'", f"nudging='{nudging}'"])
    result = check_config(config, examples=4, beta=1e-4)
    assert result.cosine_weights >= 0.999 and result.cosine_biases >= 0.999
    assert result.norm_ratio_weights == pytest.approx(1.0, abs=1e-2)
    assert 0.1 < result.free_fraction < 1.0  # the check is informative: units on both sides


@dataclass(frozen=True)
class WrongSign(Positive):
    """A broken estimator: the right estimate with the input block's sign flipped."""

    def estimate(self, network, x, free, nudged, betas) -> Estimate:
        right = super().estimate(network, x, free, nudged, betas)
        pairs = zip(right.weights, network.blocks, strict=True)
        weights = [-w if b.is_input else w for w, b in pairs]
        return Estimate(weights, right.biases, right.scale)


def test_a_wrong_estimate_gets_a_low_cosine():
    config = cfg.resolve("digits")
    data = load_dataset("digits", "standard")
    net = runs.build_network(config)
    good = check_gradient(
        net, data.train.x[:4], data.train.y[:4], Positive(1e-4), GradientNudging()
    )
    bad = check_gradient(
        net, data.train.x[:4], data.train.y[:4], WrongSign(1e-4), GradientNudging()
    )
    assert good.cosine_weights >= 0.999
    assert bad.cosine_weights < 0.5
    assert torch.equal(net.weights[0], runs.build_network(config).weights[0])  # net untouched


def test_check_gradient_command_prints_the_cosines():
    import os
    import re
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "eqprop.cli", "check-gradient", "--examples", "4"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    cosines = [float(c) for c in re.findall(r"cosine (\d\.\d+)", out.stdout)]
    assert len(cosines) == 2 and min(cosines) >= 0.999
    assert "random-sign, gradient nudging" in out.stdout
