"""The papers' claims as data: each kind of check gives the right verdict on hand-built
metrics, including "not yet measured" for runs that have not reached the claim's epoch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from eqprop.experiments import fig3, journal
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import (
    FAILS,
    HOLDS,
    NOT_YET,
    PARTLY,
    BelowEachEpoch,
    Claim,
    Lower,
    NeverReaches,
    ReachesBy,
    Verdict,
    claims_section,
)


@dataclass
class FakeRun:
    name: str
    records: list[dict]

    @property
    def epochs_done(self) -> int:
        return max((r["epoch"] for r in self.records), default=0)


def run(name: str, train: list[float], test: list[float] | None = None) -> FakeRun:
    test = test or train
    return FakeRun(
        name,
        [
            {"epoch": k + 1, "train_error": a, "test_error": b}
            for k, (a, b) in enumerate(zip(train, test, strict=True))
        ],
    )


def runs(*items: FakeRun) -> dict[str, FakeRun]:
    return {r.name: r for r in items}


@pytest.mark.parametrize(
    ("train", "verdict", "measured"),
    [
        ([0.3, 0.1, 0.0], HOLDS, "C: train_error 0.00% at epoch 3 (the first at most 0.00%)"),
        ([0.3, 0.2, 0.1, 0.05, 0.01, 0.0], PARTLY, "at epoch 6"),  # later than about 4
        ([0.3, 0.2, 0.1], NOT_YET, "lowest train_error 10.00% in 3 epochs"),
        ([0.3, 0.2, 0.1, 0.1, 0.1], FAILS, "lowest train_error 10.00% in 5 epochs"),
        ([], NOT_YET, "no finished epoch yet"),
    ],
)
def test_reaches_by(train, verdict, measured):
    """By epoch 4, "about" with the default slack 1.25: up to epoch 5 holds."""
    v = ReachesBy("C", "train_error", 0.0, epoch=4)(runs(run("C", train)))
    assert v.verdict == verdict and measured in v.measured


def test_reaches_by_reports_the_value_reached_not_the_threshold():
    v = ReachesBy("C", "train_error", 0.15, epoch=4)(runs(run("C", [0.3, 0.125, 0.1])))
    assert v.verdict == HOLDS
    assert v.measured == "C: train_error 12.50% at epoch 2 (the first at most 15.00%)"


@pytest.mark.parametrize(
    ("train", "verdict"),
    [
        ([0.3, 0.2, 0.1, 0.1], HOLDS),  # through epoch 4, never at 0
        ([0.3, 0.2], NOT_YET),  # not at 0 yet, but only 2 of 4 epochs
        ([0.3, 0.0], FAILS),  # reached within the epochs
        ([0.3, 0.2, 0.1, 0.1, 0.0], HOLDS),  # reached only after the claim's epoch
    ],
)
def test_never_reaches(train, verdict):
    assert NeverReaches("B", "train_error", 0.0, epoch=4)(runs(run("B", train))).verdict == verdict


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        ([0.1, 0.1, 0.1], [0.5, 0.4, 0.3], HOLDS),  # 30-point gap over the last 2 epochs
        ([0.1, 0.1, 0.1], [0.1, 0.12, 0.12], PARTLY),  # below, by less than the margin
        ([0.2, 0.2, 0.2], [0.1, 0.1, 0.1], FAILS),
        ([0.1], [0.5, 0.4, 0.3], NOT_YET),  # one common epoch of the 3 needed
    ],
)
def test_lower(low, high, verdict):
    check = Lower("skip", "layered", "train_error", margin=0.05, window=2, min_epochs=3)
    v = check(runs(run("skip", low), run("layered", high)))
    assert v.verdict == verdict


def test_lower_averages_the_last_common_epochs():
    check = Lower("a", "b", "test_error", margin=0.01, window=2)
    v = check(runs(run("a", [0.5] * 3, [0.9, 0.2, 0.1]), run("b", [0.5] * 4, [0.0, 0.3, 0.3, 0.0])))
    assert v.measured == "test_error over epochs 2-3: a 15.00%, b 30.00% (+15.00 points)"
    assert v.verdict == HOLDS


def test_a_verdict_off_its_scale_is_not_yet_measured():
    claim = Claim("x", "paper", "full: 4 epochs", ReachesBy("C", "train_error", 0.0, 4))
    done = runs(run("C", [0.0]))
    assert claim.judge(done, "full").verdict == HOLDS
    quick = claim.judge(done, "quick")
    assert quick.verdict == NOT_YET and quick.measured.startswith("at scale `quick` only:")
    with pytest.raises(ValueError, match="verdict must be one of"):
        Verdict("maybe", "")


def test_the_experiments_claims_render_with_a_verdict_each():
    none = {}
    lines = claims_section(fig3.CLAIMS, none, "full")
    assert lines[0] == "## The paper's claims"
    assert sum("**not yet measured**" in line for line in lines) == len(fig3.CLAIMS)
    half = runs(run("skip-mnist", [0.1] * 100), run("layered-mnist", [0.6] * 100))
    lines = claims_section(journal.CLAIMS, half, "full")
    assert sum("**holds**" in line for line in lines) == 1  # MNIST; Fashion-MNIST not yet
    assert sum("**not yet measured**" in line for line in lines) == 1


def fig5_runs(b: float | None, errors: dict[float, float]) -> dict:
    """B and swept networks (one epoch each) as fig5's checks read them."""
    from types import SimpleNamespace

    out = {}
    if b is not None:
        out["B"] = run("B", [b])
    for p, e in errors.items():
        r = run(f"p_{p:.3g}", [e])
        r.config = SimpleNamespace(topology=SimpleNamespace(p=p))
        out[r.name] = r
    return out


PS = [1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.05, 0.1, 0.3, 0.9]


@pytest.mark.parametrize(
    ("errors", "verdicts"),
    [
        # flat below 0.1%, falling above, below B (0.495) from p = 0.1 on: the paper's curve
        (
            [0.50, 0.51, 0.51, 0.509, 0.505, 0.50, 0.498, 0.30, 0.20, 0.10],
            (HOLDS, HOLDS, HOLDS),
        ),
        # no change at all with p
        ([0.50] * 10, (HOLDS, FAILS, FAILS)),
        # everything beats B from the start, falling: crossing far below 7%
        (
            [0.30, 0.29, 0.28, 0.27, 0.26, 0.25, 0.24, 0.23, 0.22, 0.21],
            (HOLDS, HOLDS, FAILS),
        ),
        # a big step inside p <= 0.1%: not "little improvement"
        (
            [0.50, 0.40, 0.30, 0.29, 0.28, 0.27, 0.26, 0.25, 0.24, 0.23],
            (FAILS, HOLDS, FAILS),
        ),
    ],
)
def test_fig5_checks(errors, verdicts):
    from eqprop.experiments import fig5

    runs_ = fig5_runs(0.495, dict(zip(PS, errors, strict=True)))
    got = tuple(
        check(runs_).verdict for check in (fig5.FlatBelow(), fig5.FallsWithP(), fig5.BeatsBFrom())
    )
    assert got == verdicts


def test_fig5_checks_wait_for_the_runs():
    from eqprop.experiments import fig5

    partial = fig5_runs(None, {1e-5: 0.5, 1e-4: 0.5})
    assert {
        c(partial).verdict for c in (fig5.FlatBelow(), fig5.FallsWithP(), fig5.BeatsBFrom())
    } == {NOT_YET}


@pytest.mark.parametrize(
    ("low", "high", "verdict", "measured"),
    [
        ([0.5, 0.1, 0.1, 0.1], [0.4, 0.2, 0.2, 0.2], HOLDS, "at 3 of 3 epochs 2-4"),
        (
            [0.5] + [0.1] * 10 + [0.3],
            [0.4] + [0.2] * 11,
            PARTLY,
            "10 of 11 epochs 2-12 (not at 12)",
        ),
        ([0.5, 0.3, 0.3, 0.1], [0.4, 0.2, 0.2, 0.2], FAILS, "(not at 2, 3)"),
        ([0.5, 0.1], [0.4, 0.2], NOT_YET, "so far (4 epochs needed)"),
        ([0.5], [0.4, 0.2], NOT_YET, "no common epoch after 1 yet"),
    ],
)
def test_below_each_epoch(low, high, verdict, measured):
    v = BelowEachEpoch("C", "B", "train_error", min_epochs=4)(runs(run("C", low), run("B", high)))
    assert v.verdict == verdict and measured in v.measured


def result(name: str, config, records: list[dict], rates=None) -> pr.RunResult:
    """A run as the experiments read it, from hand-built metrics (and per-batch rates)."""
    r = pr.RunResult(name, config, Path("/nonexistent") / name, records, "published")
    r.__dict__["rates"] = np.zeros((0, 0)) if rates is None else np.asarray(rates, float)
    return r


def epochs(train: list[float], test: list[float] | None = None) -> list[dict]:
    return run("", train, test).records


def rate_runs(**means: list[float]) -> dict[str, pr.RunResult]:
    """Runs of one epoch whose every batch has the given per-pair rates."""
    config = pr.paper_config("B")
    return {n: result(n, config, epochs([0.5]), [m] * 4) for n, m in means.items()}


def test_fig4_checks():
    from eqprop.experiments.fig4 import OutputFaster, SlowerPerLayer, SpreadBelow

    b = [1e-4, 4e-4, 1.6e-3, 6.4e-3]  # 4x per layer
    a = [1e-3, 1.2e-3, 1e-3, 1.1e-3]
    c = [1e-4, 1.1e-4, 1e-4, 3e-4]
    got = rate_runs(A=a, B=b, C=c)
    assert SlowerPerLayer("B")(got).verdict == HOLDS
    assert "mean factor per layer 4.00" in SlowerPerLayer("B")(got).measured
    assert SlowerPerLayer("B")(rate_runs(B=[1e-4, 1.5e-4, 1.6e-3, 6e-3])).verdict == PARTLY
    assert SlowerPerLayer("A")(got).verdict == FAILS
    assert SpreadBelow("A", "B", fraction=0.5)(got).verdict == HOLDS
    assert SpreadBelow("C", "B", fraction=0.01)(got).verdict == PARTLY
    assert SpreadBelow("B", "A")(got).verdict == FAILS
    assert SpreadBelow("C", "B", deeper=True)(got).verdict == HOLDS
    assert OutputFaster("C")(got).verdict == HOLDS
    assert OutputFaster("C", factor=5)(got).verdict == PARTLY
    assert OutputFaster("A")(got).verdict == FAILS
    none = {"B": result("B", pr.paper_config("B"), [])}
    for check in (SlowerPerLayer("B"), SpreadBelow("A", "B"), OutputFaster("C")):
        assert check(none).verdict == NOT_YET


def fashion_runs(errors: dict[float, list[tuple[float, float]]]) -> dict[str, pr.RunResult]:
    """fig5-fashion's runs: per p (0: B), (training, held-out) error of each seed."""
    from eqprop.experiments import fig5_fashion

    declared = dict(fig5_fashion.planned("smoke"))
    out = {}
    for p, seeds in errors.items():
        for seed, (train, test) in enumerate(seeds):
            name = f"{'B' if p == 0 else f'p_{p:.3g}'}-s{seed}"
            out[name] = result(name, declared[name], epochs([train], [test]))
    return out


def test_fig5_fashion_check():
    from eqprop.experiments.fig5_fashion import WorsensPastP, p_values

    ps = p_values("smoke")  # 4 values
    # the gap grows with p; the held-out error is lowest at 1e-2 and rises well past it
    worse = {p: [(0.30 - 0.05 * k, 0.30 + 0.05 * (k - 1) ** 2)] * 3 for k, p in enumerate(ps)}
    assert WorsensPastP()(fashion_runs(worse)).verdict == HOLDS
    steady = {p: [(0.3 - 0.05 * k, 0.3 - 0.05 * k + 0.01 * s) for s in range(3)]
              for k, p in enumerate(ps)}  # fmt: skip
    v = WorsensPastP()(fashion_runs(steady))
    assert v.verdict == FAILS and "past it no rise" in v.measured
    assert WorsensPastP()(fashion_runs({0: [(0.5, 0.5)], ps[0]: [(0.4, 0.4)]})).verdict == NOT_YET


def removal_runs(layered: float, removed: float, spread: float, epochs_: int = 4) -> dict:
    """skip-removal's nine runs whose held-out errors end at the given means (± spread)."""
    from eqprop.experiments import skip_removal

    out = {}
    for name, config in skip_removal.planned("smoke"):
        network, seed = name.rsplit("-s", 1)
        final = {"layered": layered, "add": layered, "add-remove": removed}[network]
        test = [0.9] * (epochs_ - 1) + [final + spread * (int(seed) - 1)]
        out[name] = result(name, config, epochs([0.5] * epochs_, test) if epochs_ else [])
    return out


def test_skip_removal_check():
    from eqprop.experiments.skip_removal import LastingBenefit

    assert LastingBenefit()(removal_runs(0.20, 0.10, 0.01)).verdict == HOLDS
    within = LastingBenefit()(removal_runs(0.20, 0.19, 0.05))
    assert within.verdict == FAILS and "within twice" in within.measured
    assert LastingBenefit()(removal_runs(0.10, 0.20, 0.01)).verdict == FAILS
    assert LastingBenefit()(removal_runs(0.2, 0.1, 0.01, epochs_=0)).verdict == NOT_YET


def hidden_runs(gaps: dict[str, list[float]]) -> dict[str, pr.RunResult]:
    """hidden-nudge's runs whose deepest pair trains at ``gap`` of the output pair's rate."""
    from eqprop.experiments import hidden_nudge

    declared = dict(hidden_nudge.planned("smoke"))
    out = {}
    for setting, values in gaps.items():
        for seed, gap in enumerate(values):
            name = hidden_nudge.run_name(setting, seed)
            rates = [[gap * 1e-2, 1e-3, 1e-3, 1e-2]] * 3
            out[name] = result(name, declared[name], epochs([0.5]), rates)
    return out


def test_hidden_nudge_check():
    from eqprop.experiments.hidden_nudge import NarrowsGap

    check = NarrowsGap("B-hidden")
    assert check(hidden_runs({"B": [0.01, 0.02], "B-hidden": [0.1, 0.2]})).verdict == HOLDS
    assert check(hidden_runs({"B": [0.01, 0.02], "B-hidden": [0.1, 0.01]})).verdict == PARTLY
    v = check(hidden_runs({"B": [0.1, 0.2], "B-hidden": [0.01, 0.01]}))
    assert v.verdict == FAILS and "higher than B in 0 of 2 seeds" in v.measured
    assert check(hidden_runs({"B": [0.1, 0.2]})).verdict == NOT_YET


def bit_runs(errors: dict[str, dict[str, float]]) -> dict[str, pr.RunResult]:
    """bitdepth's smoke runs (k = 4, 12) with the given held-out error per network and point,
    complete; the others not started."""
    from eqprop.experiments import bitdepth

    out = {}
    for name, config in bitdepth.planned("smoke"):
        network, point = name.rsplit("-s", 1)[0].split("-", 1) if name[0] in "ABC" else ("", "")
        error = errors.get(network, {}).get(point)
        records = epochs([0.5] * config.train.epochs, [error] * config.train.epochs)
        out[name] = result(name, config, records if error is not None else [])
    return out


def test_bitdepth_check():
    from eqprop.experiments.bitdepth import FewerBits

    def points(k4: float, k12: float) -> dict[str, float]:
        return {"float32": 0.1, "k4-nearest": k4, "k12-nearest": k12,
                "k4-stochastic": k4, "k12-stochastic": k12}  # fmt: skip

    check = FewerBits("B", "C")
    v = check(bit_runs({"B": points(0.5, 0.1), "C": points(0.1, 0.1)}))
    assert v.verdict == HOLDS
    assert v.measured == "bits needed, nearest: B 12, C 4; stochastic: B 12, C 4"
    partly = points(0.1, 0.1) | {"k4-stochastic": 0.5}
    assert check(bit_runs({"B": points(0.5, 0.1), "C": partly})).verdict == PARTLY
    assert check(bit_runs({"B": points(0.1, 0.1), "C": points(0.5, 0.5)})).verdict == FAILS
    assert check(bit_runs({"B": points(0.5, 0.1)})).verdict == NOT_YET
