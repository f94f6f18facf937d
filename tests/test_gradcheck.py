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


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A digits run trained for one epoch on 500 examples (centered EP, gradient nudging)."""
    from eqprop.cli import main

    run = tmp_path_factory.mktemp("check") / "run"
    argv = ["train", "--preset", "digits", "--out", str(run), "--quiet"]
    sets = ["train.epochs=1", "data.limit=500", "estimator.kind='centered'", "beta=0.5"]
    assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    return run


def test_check_run_checks_the_trained_network_with_the_runs_estimator(trained_run):
    """The trained network (not the initial one) passes at a small beta; at the run's own
    beta the check is exactly check_gradient on the loaded network, estimator and nudging."""
    from eqprop.gradcheck import check_run
    from eqprop.saved import load_run

    small, trained = check_run(trained_run, examples=4, beta=1e-4)
    assert trained.epoch == 1 and trained.config.estimator.kind == "centered"
    assert small.cosine_weights >= 0.999 and small.cosine_biases >= 0.999
    assert small.norm_ratio_weights == pytest.approx(1.0, abs=1e-2)
    initial = runs.build_network(trained.config)
    assert not torch.equal(trained.network.weights[0], initial.weights[0])

    own, _ = check_run(trained_run, examples=4)  # the run's beta, 0.5
    assert own.beta == 0.5
    run = load_run(trained_run)
    data = load_dataset("digits", "standard")
    direct = check_gradient(
        run.network,
        data.train.x[:4],
        data.train.y[:4],
        run.config.estimator.build(),
        GradientNudging(),
    )
    assert own == direct


def test_check_run_may_swap_the_estimator_but_not_the_network(trained_run):
    from eqprop.errors import ConfigError
    from eqprop.gradcheck import check_run

    centered, _ = check_run(trained_run, examples=4)
    positive, trained = check_run(trained_run, examples=4, overrides={"estimator.kind": "positive"})
    assert trained.config.estimator.kind == "positive"
    assert positive.cosine_weights != centered.cosine_weights  # beta 0.5: the bias differs
    with pytest.raises(ConfigError, match="may change only the estimator.*drop train.epochs"):
        check_run(trained_run, overrides={"epochs": 3})


def test_check_gradient_command_on_a_run(trained_run, capsys):
    from eqprop.cli import main

    assert main(["check-gradient", "--run", str(trained_run), "--examples", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        f"centered, gradient nudging) against -dC/dtheta by the adjoint method, trained "
        f"network of {trained_run} (latest: epoch 1)" in out
    )
    assert "beta 0.5" in out
    assert main(["check-gradient", "--run", str(trained_run), "--best", "--examples", "2"]) == 0
    assert "(best: epoch 1)" in capsys.readouterr().out
    assert main(["check-gradient", "--run", str(trained_run), "--preset", "digits"]) == 2
    assert "checks the run's own network and config; drop --preset" in capsys.readouterr().err
    assert main(["check-gradient", "--best"]) == 2
    assert "give the run with --run DIR" in capsys.readouterr().err


def test_a_network_whose_outputs_are_all_saturated_is_one_line_not_nan():
    """Dead outputs (every one clipped at 0 at the free fixed point): no nudge moves the cost,
    the true gradient is zero, and the check says so instead of printing NaN ratios."""
    from eqprop.errors import ConfigError

    net = runs.build_network(cfg.resolve("digits"))
    with torch.no_grad():
        net.biases[net.output] = -100.0
    data = load_dataset("digits", "standard")
    with pytest.raises(ConfigError, match="true gradient on these 4 examples is zero"):
        check_gradient(net, data.train.x[:4], data.train.y[:4], Positive(1e-4), GradientNudging())


def test_check_run_refuses_a_network_too_large_before_reading_its_checkpoint(tmp_path):
    """The size check needs only config.toml: a run of a network too large to check is
    refused in one line even with no checkpoint (nothing is loaded before it)."""
    from eqprop.errors import ConfigError
    from eqprop.gradcheck import check_run

    (tmp_path / runs.CONFIG).write_text(cfg.resolve("conv-cifar10").to_toml())
    with pytest.raises(ConfigError, match="over one example's 57,866 state units"):
        check_run(tmp_path)
