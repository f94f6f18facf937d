"""The papers' claims as data: each kind of check gives the right verdict on hand-built
metrics, including "not yet measured" for runs that have not reached the claim's epoch."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from eqprop.experiments import fig3, journal
from eqprop.experiments.claims import (
    FAILS,
    HOLDS,
    NOT_YET,
    PARTLY,
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
        ([0.3, 0.1, 0.0], HOLDS, "C: train_error 0.00% at epoch 3"),  # by epoch 4 (slack 1.25: 5)
        ([0.3, 0.2, 0.1, 0.05, 0.01, 0.0], PARTLY, "at epoch 6"),  # later than about 4
        ([0.3, 0.2, 0.1], NOT_YET, "lowest train_error 10.00% in 3 epochs"),
        ([0.3, 0.2, 0.1, 0.1, 0.1], FAILS, "lowest train_error 10.00% in 5 epochs"),
        ([], NOT_YET, "no finished epoch yet"),
    ],
)
def test_reaches_by(train, verdict, measured):
    v = ReachesBy("C", "train_error", 0.0, epoch=4)(runs(run("C", train)))
    assert v.verdict == verdict and measured in v.measured


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
