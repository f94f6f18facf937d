"""Figure 5 of the ICONS paper: training error and per-layer rates after one epoch as the
skip probability ``p`` sweeps over orders of magnitude.

Every swept network is network C (preset ``icons-skip``: ICONS replace topology, a = .05,
one rate .02) with ``p`` given instead of ``n`` (``topology="icons"``, ``p=...``, ``n=-1``)
and one epoch; ``p`` runs log-uniformly from 1e-5 to 0.9. Network B (preset
``icons-layered``, p = 0, one epoch) is the reference line. Reported per network: training
error of the epoch, held-out error after it, and the mean rate of each layer pair over the
epoch (batches with a finite positive rate, as in ``fig4``).

Scales:

- ``smoke``: bundled 8x8 digits, hidden layers of 32, first 300 examples, at most 20 free
  steps, 7 values of p (seconds; no download).
- ``quick``: MNIST, first 10,000 examples of each split (500 batches), free steps / 5
  (100), 10 values of p (building the topology of p = 0.9, 2.9 million ICONS
  replacements, takes about a minute).
- ``full``: the paper protocol (one epoch of 50,000 examples, 500 free steps), 13 values.

Run directories: ``out/B`` and ``out/p_<p>``; rerunning resumes. Outputs: ``fig5.png``
(left: training error after one epoch against p; right: mean rate per layer pair against
p; dashed: B) and ``results.md``, whose claims (:data:`CLAIMS`) judge the measured trend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.stats import spearmanr

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict
from eqprop.experiments.departures import Departures
from eqprop.experiments.report import ResultsPage
from eqprop.metrics import held_out_error
from eqprop.plots import (
    STYLE,
    data_caption,
    log_axis,
    network_label,
    new_figure,
    outside_legend,
    pair_colors,
)
from eqprop.topology import n_from_p

SCALES = pr.SCALES
P_MIN, P_MAX = 1e-5, 0.9
#: number of p values per scale
P_COUNT = {"smoke": 7, "quick": 10, "full": 13}
#: the rank correlation of p and the error is judged over p >= this (issue: "past 0.1%")
RANK_FROM = 1e-3
#: the paper's threshold: "little change below p = 0.1%"
P_THRESHOLD = 1e-3
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, small=True),
    "quick": pr.Reduction(limit=10_000, free_divisor=5),
}

#: one-epoch training errors within this of each other count as "little improvement" (one
#: run's error moves by 2-3 points from rounding alone)
FLAT = 0.02
#: sweep points a trend claim needs before it is judged
MIN_POINTS = 8


def _one_epoch(runs: Mapping[str, pr.RunResult]) -> tuple[float | None, list[tuple[float, float]]]:
    """B's one-epoch training error (None if not run) and ``(p, error)`` of the finished
    swept runs, in increasing p."""
    b = runs.get("B")
    reference = b.records[0]["train_error"] if b is not None and b.records else None
    points = sorted(
        (r.config.topology.p, r.records[0]["train_error"])
        for name, r in runs.items()
        if name != "B" and r.records
    )
    return reference, points


@dataclass(frozen=True)
class FlatBelow:
    """The one-epoch training errors of the swept networks with p at most
    :data:`P_THRESHOLD` lie within :data:`FLAT` of each other (``partly``: twice that): "little
    improvement" as p grows in that range."""

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        _, points = _one_epoch(runs)
        low = [e for p, e in points if p <= P_THRESHOLD]
        if len(low) < 3:
            return Verdict(NOT_YET, f"{len(low)} networks with p <= 0.1% finished")
        spread = max(low) - min(low)
        verdict = HOLDS if spread <= FLAT else PARTLY if spread <= 2 * FLAT else FAILS
        return Verdict(
            verdict,
            f"{len(low)} networks with p <= 0.1% from {100 * min(low):.2f}% to "
            f"{100 * max(low):.2f}% ({100 * spread:.2f} points)",
        )


@dataclass(frozen=True)
class FallsWithP:
    """Spearman's rank correlation of p and the one-epoch training error over p >=
    :data:`RANK_FROM` is at most -0.8 (``partly``: negative)."""

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        _, points = _one_epoch(runs)
        ranked = [(p, e) for p, e in points if p >= RANK_FROM]
        if len(ranked) < MIN_POINTS // 2:
            return Verdict(NOT_YET, f"{len(ranked)} networks with p >= 0.1% finished")
        errors = [e for _, e in ranked]
        if max(errors) == min(errors):
            return Verdict(FAILS, f"the same error at all {len(ranked)} values of p >= 0.1%")
        rho = float(spearmanr([p for p, _ in ranked], errors)[0])
        verdict = HOLDS if rho <= -0.8 else PARTLY if rho < 0 else FAILS
        return Verdict(verdict, f"rank correlation {rho:+.2f} over {len(ranked)} values of p")


@dataclass(frozen=True)
class BeatsBFrom:
    """The smallest p from which every larger swept network has a lower one-epoch training
    error than B lies within a factor 2 of ``p`` (``partly``: a factor 4)."""

    p: float = 0.07

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        reference, points = _one_epoch(runs)
        if reference is None or len(points) < MIN_POINTS:
            return Verdict(NOT_YET, f"B and {len(points)} of the swept networks finished")
        crossing = None
        for p, e in reversed(points):
            if e >= reference:
                break
            crossing = p
        if crossing is None:
            return Verdict(FAILS, f"the largest p does not beat B's {100 * reference:.2f}%")
        factor = max(crossing / self.p, self.p / crossing)
        verdict = HOLDS if factor <= 2 else PARTLY if factor <= 4 else FAILS
        return Verdict(verdict, f"below B's {100 * reference:.2f}% from p = {crossing:.3g} on")


_SOURCE = "Gammell, Nam & McCaughan 2020 (ICONS), section 4.3, Figure 5"
_FULL = "full: one epoch of 50,000 images per p"
CLAIMS = (
    Claim(
        "There is little improvement (one-epoch training error) for p < .1% (here: the "
        f"networks with p <= 0.1% within {100 * FLAT:.0f} points of each other)",
        _SOURCE,
        _FULL,
        FlatBelow(),
    ),
    Claim(
        "After that the error rate decreases as p grows (here: rank correlation <= -0.8)",
        _SOURCE,
        _FULL,
        FallsWithP(),
    ),
    Claim(
        "Networks beat B (p = 0) only from about p = 7% (here: within a factor 2)",
        _SOURCE,
        _FULL,
        BeatsBFrom(),
    ),
)

PAGE = ResultsPage("Figure 5 (ICONS): one epoch against p", REDUCTIONS, CLAIMS)


def p_values(scale: str) -> list[float]:
    """The swept probabilities of ``scale`` (log-uniform from P_MIN to P_MAX)."""
    pr.check_scale(scale)
    return [float(p) for p in np.geomspace(P_MIN, P_MAX, P_COUNT[scale])]


def run_name(p: float) -> str:
    """Directory name of the run at ``p``."""
    return f"p_{p:.3g}"


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """Reference B, then the sweep in increasing p."""
    skip = pr.paper_config("C")
    if isinstance(skip.update.lr, tuple):  # pragma: no cover - the preset has one rate
        raise ValueError("fig5 needs the single-rate icons-skip preset")
    runs = [("B", pr.paper_config("B").override({"train.epochs": 1}))]
    runs += [
        (run_name(p), skip.override({"topology.n": None, "topology.p": p, "train.epochs": 1}))
        for p in p_values(scale)
    ]
    return [(name, pr.scaled(config, scale, REDUCTIONS)) for name, config in runs]


def points(results: list[pr.RunResult]) -> tuple[Point, list[Point]]:
    """B's one-epoch measurements and those of the sweep, in the planned order."""
    rows = [Point(r) for r in results]
    return rows[0], rows[1:]


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """``fig5.png``: :func:`figure` of the runs."""
    return {"fig5.png": figure(*points(results))}


class Point:
    """One network's one-epoch measurements."""

    def __init__(self, result: pr.RunResult) -> None:
        self.name = result.name
        self.config = result.config
        top = result.config.topology
        self.p = top.p if top.family == "icons" else 0.0
        first = result.records[0] if result.records else {}
        self.train_error = first.get("train_error", math.nan)
        self.held_out_error = held_out_error(first) if first else math.nan
        self.summary = pr.summarize_rates(result.rates) if result.records else None

    @property
    def rates(self) -> np.ndarray:
        """The mean rate per layer pair over the run's batches (empty before its first epoch)."""
        return self.summary.mean if self.summary else np.zeros(0)

    @property
    def replacements(self) -> int:
        """The layer-skipping edges the point's network replaces (0 for the layered one)."""
        c = self.config.topology
        return n_from_p(c.p, c.sizes, c.p_formula) if c.family == "icons" else 0


def figure(reference: Point, sweep: list[Point]) -> Figure:
    """Left: training error after one epoch against p (B dashed); right: mean rate per layer
    pair against p (B's rates dashed, same colours). Labels come from the runs' configs; the
    legend is outside the panels."""
    done = [s for s in sweep if math.isfinite(s.train_error)]
    configs = [point.config for point in (reference, *sweep)]
    with rc_context(STYLE):
        fig = new_figure(figsize=(9.8, 3.4))
        left, right = fig.subplots(1, 2)
        handles = []
        if sweep:
            swept = f"{network_label(sweep[0].config, with_p=False)}, p swept"
            style = {"color": "C0", "marker": "o", "ms": 5}
            handles.append(Line2D([], [], label=swept, **style))
            if done:
                left.plot([s.p for s in done], [100 * s.train_error for s in done], **style)
        b_style = {"color": "k", "ls": "--", "lw": 1}
        handles.append(Line2D([], [], label=f"B: {network_label(reference.config)}", **b_style))
        if math.isfinite(reference.train_error):
            left.axhline(100 * reference.train_error, **b_style)
        left.set_xlabel("p (equivalent skip probability)")
        left.set_ylabel("training error after one epoch (%)")
        left.set_title("Training error after one epoch")
        with_rates = [s for s in done if s.summary is not None]
        n_pairs = max([len(s.rates) for s in with_rates] + [len(reference.rates)] + [0])
        for k, color in enumerate(pair_colors(n_pairs)):
            side = " (input)" if k == 0 else " (output)" if k == n_pairs - 1 else ""
            pair = f"layers {k}-{k + 1}{side}"
            handles.append(Line2D([], [], color=color, marker="o", ms=3, label=pair))
            if with_rates:
                right.plot(
                    [s.p for s in with_rates],
                    [s.rates[k] for s in with_rates],
                    "o-",
                    ms=3,
                    color=color,
                )
            if k < len(reference.rates) and np.isfinite(reference.rates[k]):
                right.axhline(reference.rates[k], color=color, ls="--", lw=0.8)
        for axis in (left.xaxis, right.xaxis, right.yaxis):
            log_axis(axis)
        right.set_xlabel("p (equivalent skip probability)")
        right.set_ylabel("mean RMS correction per batch")
        right.set_title("Per-layer rates over the epoch (dashed: B)")
        fig.suptitle(f"One epoch against p, {data_caption(configs)}")
        outside_legend(right, handles)
    return fig


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    reference, sweep = points(results)
    rows = []
    for s in [reference, *sweep]:
        rows.append(
            [
                s.name,
                f"{s.p:.3g}",
                f"{s.replacements:,}",
                pr.pct(s.train_error),
                pr.pct(s.held_out_error),
                " / ".join(pr.num(v, ".2e") for v in s.rates) or "–",
                pr.pct(s.summary.zero_output, 1) if s.summary else "–",
            ]
        )
    header = [
        "network",
        "p",
        "replacements n",
        "train error (epoch 1)",
        "test error (after epoch 1)",
        "mean rate per pair (input -> output)",
        "batches with zero output-pair rate",
    ]
    protocol = (
        f"Swept: {len(sweep)} values of p, log-uniform from {P_MIN:g} to {P_MAX:g}; each is "
        "network C (icons-skip preset) with ICONS topology of that `p` (no `n`), one "
        "rate .02 and one epoch. Reference: B (icons-layered preset, p = 0), one epoch. "
        "Replacements n = round(ln(1 - p) / ln(1 - 1/N_o)) (the 'simple' formula). As p "
        "goes to 0 the ICONS network does not become B: it keeps every edge inside each "
        "hidden layer (3 x 500 x 499 / 2 = 374,250, initial weights U[-a, a], a = .05; "
        "`docs/science.md` section 2), so the small-p networks and B differ by those edges as "
        "well as by the few replacements."
    )
    measurements = ["## Results", "", pr.table(header, rows), ""]
    after = [
        "One seed per p and a single epoch, so neighbouring values differ by noise as well as "
        "by p.",
        "",
        "![Figure 5: one-epoch training error and per-layer rates against p](fig5.png)",
        "",
        "Reading the plot: x is p on a log axis. Left: training error of the first epoch, one "
        "point per network; the dashed line is B. Right: each layer pair's mean rate over the "
        "epoch (0 = input side), dashed lines B's rates in the same colours; skips that make "
        "the deeper pairs train faster pull their lines up towards the output pair's.",
        "",
    ]
    return PAGE.text(scale, results, departures, [protocol], measurements, after)
