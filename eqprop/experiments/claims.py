"""The papers' claims as data: what an experiment tests, and whether it holds here.

A :class:`Claim` is a statement of a paper (quoted or paraphrased), its source, the scale at
which checking it means something, and a *check*: a function of what the experiment measured
that returns a :class:`Verdict`. For the experiments made of EP runs that is their runs by name
(per-epoch metrics, :class:`~eqprop.experiments.paper_runs.RunResult`); a study whose results
are not per-epoch run metrics passes its own results (its run files, its table of graph
metrics) to its checks. A verdict is one of

- ``holds``, ``partly``, ``does not hold``: judged on what the runs reached;
- ``not yet measured``: the runs have not reached the epoch (or the scale) the claim is
  about, so no verdict is possible yet.

The checks are small classes, each for a kind of statement the papers make:

- :class:`ReachesBy`: a run's metric reaches a value by about an epoch ("C reaches 0%
  training error in about 190 epochs");
- :class:`NeverReaches`: it does not reach a value within an epoch ("B does not converge in
  250 epochs");
- :class:`Lower`: one run's metric is below another's, averaged over the last epochs both
  reached ("the layered network trains far worse than the rewired one");
- :class:`BelowEachEpoch`: one run's metric is below another's at every epoch ("B is
  clearly inferior to the other two networks").

A check that needs more (Figure 5's trend against ``p``, the rates of Figure 4, means over
seeds, the studies' own results) is any callable of what the experiment measured, declared
beside the experiment.
:func:`claims_section` renders the claims of an experiment for its
``results.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eqprop.metrics import metric_key, record_metric

HOLDS, PARTLY, FAILS, NOT_YET = "holds", "partly", "does not hold", "not yet measured"
VERDICTS = (HOLDS, PARTLY, FAILS, NOT_YET)


class Run(Protocol):
    """What a check reads of a run: its name, per-epoch records and the epochs it plans."""

    name: str
    records: list[dict]

    @property
    def epochs_done(self) -> int: ...


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict and the measured numbers behind it (one sentence)."""

    verdict: str
    measured: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


#: a check: what the experiment measured (its runs by name, or a study's own results) -> verdict
Check = Callable[[Any], Verdict]


@dataclass(frozen=True)
class Claim:
    """A paper's claim (module docs): ``statement`` (quoted or paraphrased), ``source``
    (paper and section or figure), ``scale`` (where the check is meaningful, e.g. ``"full:
    250 epochs on 50,000 images"``), ``check``, and ``at_scale``: the experiment scales at
    which a verdict may be given (elsewhere the verdict is ``not yet measured``)."""

    statement: str
    source: str
    scale: str
    check: Check
    at_scale: tuple[str, ...] = ("full",)

    def judge(self, measured: Any, scale: str) -> Verdict:
        """The verdict on ``measured`` (what :attr:`check` reads) made at ``scale``."""
        verdict = self.check(measured)
        if scale not in self.at_scale and verdict.verdict != NOT_YET:
            return Verdict(NOT_YET, f"at scale `{scale}` only: {verdict.measured}")
        return verdict


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def first_epoch_at_most(records: Sequence[dict], metric: str, value: float) -> int | None:
    """The first epoch whose ``metric`` (read by :func:`~eqprop.metrics.record_metric`) is at
    most ``value`` (None if none)."""
    return next((r["epoch"] for r in records if record_metric(r, metric) <= value), None)


def _named(metric: str, records: Sequence[dict]) -> str:
    """How a verdict names ``metric``: by the key the records hold it under (a held-out
    error as ``valid_error`` or ``test_error``)."""
    return metric_key(records[0], metric) if records else metric


@dataclass(frozen=True)
class _OneRun:
    """A check of run ``run``'s ``metric`` against ``value`` up to epoch ``epoch``."""

    run: str
    metric: str
    value: float
    epoch: int

    def named(self, r: Run) -> str:
        """How a verdict names :attr:`metric` (by the key of ``r``'s records)."""
        return _named(self.metric, r.records)

    def reached_at(self, r: Run, epoch: int) -> str:
        """The measurement: ``r``'s :attr:`metric` at ``epoch``, the first epoch at most
        :attr:`value`."""
        got = next(record_metric(x, self.metric) for x in r.records if x["epoch"] == epoch)
        return (
            f"{self.run}: {self.named(r)} {_pct(got)} at epoch {epoch} "
            f"(the first at most {_pct(self.value)})"
        )

    def lowest(self, r: Run, records: Sequence[dict]) -> str:
        """The measurement: the lowest :attr:`metric` of ``records``, of ``r``'s epochs."""
        best = min(record_metric(x, self.metric) for x in records)
        return f"{self.run}: lowest {self.named(r)} {_pct(best)} in {r.epochs_done} epochs"


@dataclass(frozen=True)
class ReachesBy(_OneRun):
    """Run ``run``'s ``metric`` is at most ``value`` by epoch ``epoch`` ("about": up to
    ``slack`` times later still holds; reached later than that is ``partly``)."""

    slack: float = 1.25

    def __call__(self, runs: Mapping[str, Run]) -> Verdict:
        r = runs.get(self.run)
        if r is None or not r.records:
            return Verdict(NOT_YET, f"{self.run}: no finished epoch yet")
        limit = math.ceil(self.epoch * self.slack)
        reached = first_epoch_at_most(r.records, self.metric, self.value)
        if reached is not None:
            return Verdict(HOLDS if reached <= limit else PARTLY, self.reached_at(r, reached))
        verdict = FAILS if r.epochs_done >= limit else NOT_YET
        return Verdict(verdict, self.lowest(r, r.records))


@dataclass(frozen=True)
class NeverReaches(_OneRun):
    """Run ``run``'s ``metric`` stays above ``value`` through epoch ``epoch``."""

    def __call__(self, runs: Mapping[str, Run]) -> Verdict:
        r = runs.get(self.run)
        if r is None or not r.records:
            return Verdict(NOT_YET, f"{self.run}: no finished epoch yet")
        within = [x for x in r.records if x["epoch"] <= self.epoch]
        reached = first_epoch_at_most(within, self.metric, self.value)
        if reached is not None:
            return Verdict(FAILS, self.reached_at(r, reached))
        verdict = HOLDS if r.epochs_done >= self.epoch else NOT_YET
        return Verdict(verdict, self.lowest(r, within))


@dataclass(frozen=True)
class _TwoRuns:
    """Run ``low``'s ``metric`` against run ``high``'s, not judged before both reached
    ``min_epochs`` (keyword only)."""

    low: str
    high: str
    metric: str
    min_epochs: int = field(default=1, kw_only=True)

    def curves(self, runs: Mapping[str, Run]) -> tuple[dict[int, float], dict[int, float]]:
        """The two runs' ``metric`` by epoch (empty for a run not among ``runs``)."""
        a, b = (runs.get(name) for name in (self.low, self.high))
        return tuple(
            {x["epoch"]: record_metric(x, self.metric) for x in r.records} if r else {}
            for r in (a, b)
        )

    def named(self, runs: Mapping[str, Run]) -> str:
        """How a verdict names :attr:`metric` (by the key of ``low``'s records)."""
        low = runs.get(self.low)
        return _named(self.metric, low.records if low else [])

    def verdict(self, reached: int, verdict: str, measured: str) -> Verdict:
        """``verdict`` once both runs ``reached`` :attr:`min_epochs`, else not yet measured."""
        if reached < self.min_epochs:
            return Verdict(NOT_YET, f"so far ({self.min_epochs} epochs needed): {measured}")
        return Verdict(verdict, measured)


@dataclass(frozen=True)
class Lower(_TwoRuns):
    """Run ``low``'s ``metric`` is below run ``high``'s by at least ``margin`` (``partly``:
    below, by less), averaged over the last ``window`` epochs both reached; not judged before
    both reached ``min_epochs``."""

    margin: float
    window: int = 5

    def __call__(self, runs: Mapping[str, Run]) -> Verdict:
        a, b = self.curves(runs)
        common = min(max(a, default=0), max(b, default=0))
        if not common:
            return Verdict(NOT_YET, f"{self.low} and {self.high}: no common epoch yet")
        first = max(1, common - self.window + 1)

        def mean(curve: dict[int, float]) -> float:
            values = [v for e, v in curve.items() if first <= e <= common]
            return sum(values) / len(values)

        low, high = mean(a), mean(b)
        gap = high - low
        measured = (
            f"{self.named(runs)} over epochs {first}-{common}: {self.low} {_pct(low)}, "
            f"{self.high} {_pct(high)} ({100 * gap:+.2f} points)"
        )
        return self.verdict(
            common, HOLDS if gap >= self.margin else PARTLY if gap > 0 else FAILS, measured
        )


@dataclass(frozen=True)
class BelowEachEpoch(_TwoRuns):
    """Run ``low``'s ``metric`` is below run ``high``'s at every epoch after ``after`` that
    both reached (``partly``: at all but at most a tenth of those epochs); not judged
    before both reached ``min_epochs``."""

    after: int = 1

    def __call__(self, runs: Mapping[str, Run]) -> Verdict:
        mine, theirs = self.curves(runs)
        common = [e for e in mine if e > self.after and e in theirs]
        if not common:
            return Verdict(
                NOT_YET, f"{self.low} and {self.high}: no common epoch after {self.after} yet"
            )
        behind = [e for e in common if not mine[e] < theirs[e]]
        last = common[-1]
        measured = (
            f"{self.low}'s {self.named(runs)} below {self.high}'s at "
            f"{len(common) - len(behind)} of {len(common)} epochs {self.after + 1}-{last}"
            + (f" (not at {', '.join(map(str, behind))})" if behind else "")
        )
        verdict = HOLDS if not behind else PARTLY if len(behind) <= len(common) / 10 else FAILS
        return self.verdict(last, verdict, measured)


#: how much one run's held-out error moves, for the results that compare single runs
NOISE_NOTE = (
    "One run is one seed: its held-out error moves by 2-3 points from rounding alone (network "
    "C rerun unchanged on another CPU moved by up to 2.61 points with FISTA at epoch 2, and by "
    "3.57 points with the paper protocol at epoch 1; docs/results/solvers-full), so the checks "
    "on errors average over the last epochs where they can, and a verdict near its threshold "
    "can change from run to run."
)


def claims_section(
    claims: Sequence[Claim], measured: Any, scale: str, note: str | None = NOISE_NOTE
) -> list[str]:
    """The Markdown lines of an experiment's claims judged on ``measured`` at ``scale``: a
    table of statement, source, verdict, the measured numbers and where the check is
    meaningful, then ``note`` (by default :data:`NOISE_NOTE`, for single runs' errors;
    None: no note)."""
    rows = ["| claim | source | verdict | measured | meaningful at |", "|---|---|---|---|---|"]
    for claim in claims:
        v = claim.judge(measured, scale)
        rows.append(
            f"| {claim.statement} | {claim.source} | **{v.verdict}** | {v.measured} | "
            f"{claim.scale} |"
        )
    return ["## The paper's claims", "", *rows, "", *([note, ""] if note else [])]
