"""Figure 4 of the ICONS paper: per-layer training rates (eq. 2, smoothed with eq. 3, n = 5)
of networks A, B, C, and of the journal version's deeper 784-100x5-10 networks (layered and
rewired skip).

For each network the per-batch rates of every adjacent layer pair are summarised as:

- the mean rate of each pair over the batches where it is finite and positive (some batches
  have an output-pair rate of exactly 0: with the authors' step at ``beta = -1`` outputs at 0
  stay at 0, ``clip(2 * 0 - d) = 0``, so a batch whose free outputs are all 0 gives the output
  pair no correction; with the ``gradient`` step, a dead output layer. They are left out of
  the mean and their fraction is reported), and the same over the first
  :data:`~eqprop.experiments.paper_runs.FIRST_BATCHES` (50) batches only;
- the ratio between consecutive pairs' means (pair k+1 over pair k, pair 0 at the input);
- the log-spread (std of log10 of the means) over all pairs and over the deeper pairs (all
  but the output pair).

The claims of ICONS section 4.2 (:data:`CLAIMS`) are checked on the means over all
batches: in B each deeper pair trains slower than the next shallower one (by a factor >= 2
here; the paper: about 4); A's log-spread is at most half of B's; C's deeper pairs have a
smaller log-spread than B's deeper pairs, and C's output pair trains at least twice as fast
as each deeper pair.

Scales:

- ``smoke``: bundled 8x8 digits, hidden layers of 32, first 300 examples, at most 20 free
  steps, 2 epochs (seconds; no download).
- ``quick``: MNIST, first 5,000 examples of each split, free steps / 5 (100 for A, B, C; 200
  for the deep networks), 2 epochs (500 batches per network); about 15 minutes on 2 idle CPU
  cores (per epoch: A, B about 80 s each, C 180 s, deep layered 10 s, deep skip 50 s, of
  which evaluating the 5,000 held-out examples is about half).
- ``full``: the presets unchanged (A, B, C: 250 epochs, icons split; deep networks: 100
  epochs, standard split). A, B, C are the same runs as ``fig3 --scale full``: symlink
  ``out/A``, ``out/B``, ``out/C`` to fig3's run directories to reuse them.

Run directories: ``out/<network>``; rerunning resumes. Outputs: ``layer_rates.png`` (a
panel per network), ``rate_profile.png`` (mean rate per pair) and ``results.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict
from eqprop.experiments.departures import Departures
from eqprop.experiments.report import ResultsPage
from eqprop.metrics import SMOOTH
from eqprop.plots import (
    STYLE,
    data_caption,
    epoch_rates_figure,
    layer_rates_figure,
    log_axis,
    network_label,
    new_figure,
    outside_legend,
)

SCALES = pr.SCALES
ORDER = ("A", "B", "C", "deep-layered", "deep-skip")
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, epochs=2, small=True),
    "quick": pr.Reduction(limit=5_000, free_divisor=5, epochs=2),
}
#: the claims read the per-batch rates: a published stage keeps their summary
#: (:data:`~eqprop.experiments.paper_runs.RATE_SUMMARY`)
PUBLISH_RATE_SUMMARY = True
#: "decreases by a factor of ~4 with each additional layer", read as: at least this factor
MIN_RATIO = 2.0
#: "trains significantly faster", read as: at least this factor
FASTER = 2.0


def _means(runs: Mapping[str, pr.RunResult], name: str) -> np.ndarray | None:
    """Run ``name``'s mean rate per pair over all batches (None: no finished epoch)."""
    r = runs.get(name)
    summary = r.rate_summary if r is not None and r.records else None
    return summary.mean if summary is not None else None


def _rates(values: np.ndarray, fmt: str = ".2f") -> str:
    return " / ".join(pr.num(v, fmt) for v in values)


@dataclass(frozen=True)
class _PairRates:
    """A check of run ``run``'s mean rate per pair against ``factor``, judged once every pair
    has a positive mean rate (:meth:`judge`; before that, not yet measured)."""

    run: str
    factor: float

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        means = _means(runs, self.run)
        if means is None or len(means) < 2 or not np.all(np.isfinite(pr.ratios(means))):
            return Verdict(NOT_YET, f"{self.run}: no positive rate of every pair yet")
        return self.judge(means)

    def judge(self, means: np.ndarray) -> Verdict:
        """The verdict on the per-pair means (input pair first), every one positive."""
        raise NotImplementedError


@dataclass(frozen=True)
class SlowerPerLayer(_PairRates):
    """In run ``run`` each pair trains at least ``factor`` times slower than the next
    shallower one (``partly``: slower, by less)."""

    factor: float = MIN_RATIO

    def judge(self, means: np.ndarray) -> Verdict:
        ratios = pr.ratios(means)
        per_layer = (means[-1] / means[0]) ** (1 / (len(means) - 1))
        measured = (
            f"{self.run}: ratios pair k+1 / pair k {_rates(ratios)} (mean factor per layer "
            f"{per_layer:.2f}); deepest pair at {pr.pct(means[0] / means[-1])} of the "
            "output pair's rate"
        )
        verdict = (
            HOLDS if np.all(ratios >= self.factor) else PARTLY if np.all(ratios > 1) else FAILS
        )
        return Verdict(verdict, measured)


@dataclass(frozen=True)
class SpreadBelow:
    """Run ``low``'s log-spread of the pairs' mean rates is at most ``fraction`` of run
    ``high``'s (``partly``: below it, by less); over the deeper pairs only (all but the
    output pair) with ``deeper``."""

    low: str
    high: str
    fraction: float = 1.0
    deeper: bool = False

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        spreads = {}
        for name in (self.low, self.high):
            means = _means(runs, name)
            spreads[name] = (
                math.nan if means is None else pr.spread(means[:-1] if self.deeper else means)
            )
        which = "deeper pairs" if self.deeper else "all pairs"
        measured = (
            f"log-spread ({which}): {self.low} {pr.num(spreads[self.low], '.3f')}, "
            f"{self.high} {pr.num(spreads[self.high], '.3f')}"
        )
        low, high = spreads[self.low], spreads[self.high]
        if math.isnan(low) or math.isnan(high):
            return Verdict(NOT_YET, measured)
        verdict = HOLDS if low < high and low <= self.fraction * high else PARTLY
        return Verdict(verdict if low < high else FAILS, measured)


@dataclass(frozen=True)
class OutputFaster(_PairRates):
    """In run ``run`` the output pair trains at least ``factor`` times faster than every
    deeper pair (``partly``: faster, by less)."""

    factor: float = FASTER

    def judge(self, means: np.ndarray) -> Verdict:
        factor = means[-1] / np.max(means[:-1])
        measured = f"{self.run}: output pair {factor:.2f}x the fastest deeper pair"
        verdict = HOLDS if factor >= self.factor else PARTLY if factor > 1 else FAILS
        return Verdict(verdict, measured)


_SOURCE = "Gammell, Nam & McCaughan 2020 (ICONS), section 4.2, Figure 4"
_FULL = "full: rates over the paper's 250 epochs"
CLAIMS = (
    Claim(
        "In the layered network with one rate (B) the training rate of a layer decreases by a "
        "factor of ~4 with each additional layer, the deepest pair training at around 1% of "
        f"the rate of the shallowest (here: each pair at least {MIN_RATIO:g}x slower than the "
        "next)",
        _SOURCE,
        _FULL,
        SlowerPerLayer("B"),
    ),
    Claim(
        "The problem is solved very effectively in the layered network with per-layer rates "
        "(A) (here: its log-spread of the pairs' rates at most half of B's)",
        _SOURCE,
        _FULL,
        SpreadBelow("A", "B", fraction=0.5),
    ),
    Claim(
        "It appears to be solved effectively for the deepest 3 pairs in the network with "
        "layer-skipping connections (C) (here: their log-spread below B's deeper pairs')",
        _SOURCE,
        _FULL,
        SpreadBelow("C", "B", deeper=True),
    ),
    Claim(
        "... but C's output layer still trains significantly faster than the deeper 3 layers "
        f"(here: at least {FASTER:g}x each deeper pair's rate)",
        _SOURCE,
        _FULL,
        OutputFaster("C"),
    ),
)

PAGE = ResultsPage("Figure 4 (ICONS): per-layer training rates", REDUCTIONS, CLAIMS)


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """The declared runs of ``scale``."""
    return [(name, pr.scaled(pr.paper_config(name), scale, REDUCTIONS)) for name in ORDER]


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """``layer_rates.png`` (a panel per network), ``epoch_rates.png`` (the same as each
    epoch's mean, readable for runs of many thousands of batches) and ``rate_profile.png``
    (mean rate per pair)."""
    summaries = {r.name: r.rate_summary for r in results}
    panels = [(panel_title(r.name, r.config), pr.plottable(r.rates)) for r in results]
    title = (
        f"Per-layer training rates (eq. 3 smoothing, n = {SMOOTH}), "
        f"{data_caption(r.config for r in results)}"
    )
    labels = {r.name: label(r.name, r.config) for r in results}
    return {
        "layer_rates.png": layer_rates_figure(panels, smooth=SMOOTH, title=title),
        "epoch_rates.png": epoch_rates_figure(
            [(panel_title(r.name, r.config), r.records) for r in results],
            title=f"Per-layer training rates, mean over each epoch's batches, "
            f"{data_caption(r.config for r in results)}",
        ),
        "rate_profile.png": profile_figure(summaries, labels),
    }


def label(name: str, config: RunConfig) -> str:
    """A network's label, from the config it ran with: ``"B: 64-32x3-10 layered"``."""
    return f"{name}: {network_label(config)}"


def panel_title(name: str, config: RunConfig) -> str:
    """:func:`label` on two lines (name and sizes, then the topology), for a narrow panel."""
    sizes, topology = network_label(config).split(" ", 1)
    return f"{name}: {sizes}\n{topology}"


def profile_figure(summaries: dict[str, pr.RateSummary | None], labels: dict[str, str]) -> Figure:
    """Mean rate per layer pair (log scale), a line per network (labelled by ``labels``);
    left: all batches with a positive rate, right: the first batches. The legend is outside
    the panels."""
    with rc_context(STYLE):
        fig = new_figure(figsize=(9.4, 3.2))
        axes = fig.subplots(1, 2, sharey=True)
        handles = []
        for ax, field, title in (
            (axes[0], "mean", "all batches (finite positive rates)"),
            (axes[1], "first", f"first {pr.FIRST_BATCHES} batches"),
        ):
            for k, (name, s) in enumerate(summaries.items()):
                style = {"color": f"C{k % 10}", "marker": "o", "ms": 4}
                if ax is axes[0]:
                    handles.append(Line2D([], [], label=labels.get(name, name), **style))
                if s is None:
                    continue
                values = getattr(s, field)
                ax.plot(np.arange(len(values)), values, **style)
            ax.set_xlabel("layer pair (0 = input side)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(title)
        for ax in axes:
            log_axis(ax.yaxis)
        axes[0].set_ylabel("mean RMS correction per batch")
        outside_legend(axes[-1], handles)
    return fig


def _stats(s: pr.RateSummary | None, field: str) -> tuple[np.ndarray, float, float]:
    """(per-pair means, log-spread of all pairs, log-spread of the deeper pairs)."""
    if s is None:
        return np.zeros(0), math.nan, math.nan
    means = getattr(s, field)
    return means, pr.spread(means), pr.spread(means[:-1])


def _joined(values: np.ndarray) -> str:
    return " / ".join(pr.num(v, ".2e") for v in values) if len(values) else "–"


def rate_table(summaries: dict[str, pr.RateSummary | None], field: str) -> str:
    """Markdown table of the per-pair means, consecutive ratios and log-spreads."""
    rows = []
    for name, s in summaries.items():
        means, all_pairs, deeper = _stats(s, field)
        rows.append(
            [
                name,
                str(min(s.batches, pr.FIRST_BATCHES) if field == "first" else s.batches)
                if s
                else "0",
                _joined(means),
                " / ".join(pr.num(v, ".2f") for v in pr.ratios(means)) or "–",
                pr.num(all_pairs, ".3f"),
                pr.num(deeper, ".3f"),
                pr.pct(s.zero_output, 1) if s else "–",
            ]
        )
    header = [
        "network",
        "batches",
        "mean rate per pair (input -> output)",
        "ratio pair k+1 / pair k",
        "log-spread (all pairs)",
        "log-spread (deeper pairs)",
        "batches with zero output-pair rate (whole run)",
    ]
    return pr.table(header, rows)


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    summaries = {r.name: r.rate_summary for r in results}
    protocol = (
        "Rate of a layer pair in a batch (eq. 2): RMS of the corrections applied to the pair's "
        "adjacent-layer edges (skip and intralayer edges ignored). Means are over the batches "
        f"where the rate is finite and positive; 'first {pr.FIRST_BATCHES} batches' uses only "
        "the start of training. A zero output-pair rate (last column) is a batch whose free "
        "outputs are all 0 nudged at beta = -1: the authors' step leaves them at "
        "clip(2 * 0 - d) = 0, so the output pair gets no correction (with the `gradient` step "
        "it would be a dead output layer). Log-spread: population std of log10 of the pairs' "
        "means; deeper pairs = all pairs but the output pair."
    )
    after = [
        "## Rates over all batches (finite positive)",
        "",
        rate_table(summaries, "mean"),
        "",
        f"## Rates over the first {pr.FIRST_BATCHES} batches",
        "",
        rate_table(summaries, "first"),
        "",
        "![Per-layer rates, a panel per network](layer_rates.png)",
        "",
        "![Per-layer rates, epoch means](epoch_rates.png)",
        "",
        "![Mean rate per layer pair](rate_profile.png)",
        "",
        "Reading the plots: `layer_rates.png` has a panel per network (titled with the "
        "network's sizes and topology as it ran) and a line per adjacent layer pair (0 = input "
        "side; pair k has the same colour in every panel, so the output pair's colour depends "
        f"on the depth; eq. 3 moving average over {2 * SMOOTH + 1} batches, log axis; a line "
        "that drops out of the panel has reached 0). Lines far apart mean layers "
        "that train at very different speeds; close lines mean uniform training. "
        "`epoch_rates.png` draws the same rates as each epoch's mean (the runs' "
        "`metrics.jsonl`), which stays readable over hundreds of thousands of batches. "
        "`rate_profile.png` shows each network's mean rate per pair: a flat profile is uniform, "
        "a steep one uneven.",
        "",
    ]
    return PAGE.text(scale, results, departures, [protocol], after=after)
