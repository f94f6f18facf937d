"""Target-linked hidden neurons (issue 16, study 3): does nudging some hidden neurons towards
fixed random codes of the target close the gap between the output pair's training rate and
the deeper pairs' (Figure 4) in the layered network B, and how does that compare with the
layer-skipping network C?

The hidden nudge (:class:`eqprop.nudging.TargetLinked`, ``docs/science.md`` section 1): in
the weakly-clamped phase only, the first ``fraction`` of the neurons of every hidden layer
``l`` are pulled towards ``t_l = d P_l`` (``P_l`` fixed, uniform in ``[0, 1)``, seeded) by
the same ``icons`` step that pulls the outputs, with the signed beta ``hidden_beta * beta``.

Settings (:data:`SETTINGS`), each run with every seed of :data:`SEEDS` (``train.seed``, and
the seed of C's topology and of the hidden codes):

- ``B``: network B (preset ``icons-layered``), unchanged;
- ``B-hidden``: B with 10% of every hidden layer target-linked at ``hidden_beta = 1`` (at the
  paper's ``eps = 1/2``, ``beta = +1`` those neurons are clamped onto their codes, as the
  outputs are);
- ``B-hidden-weak``, ``B-hidden-faint``: the same neurons at ``hidden_beta = 0.1`` and
  ``0.01``;
- ``B-hidden-first``: 10% of hidden layer 1 only (next to the input, the slowest pair's
  upper side) at ``hidden_beta = 1``, leaving the layers next to the output alone;
- ``C``: network C (preset ``icons-skip``), the layer-skipping answer to the same gap.

Measured per run: the mean eq. 2 rate of each adjacent layer pair over the batches where it
is finite and positive (:func:`~eqprop.experiments.paper_runs.summarize_rates`), the ratio
deepest pair / output pair, the log-spread of all pairs and of the deeper pairs, and the
training and held-out error after the last epoch; per setting the mean and the sample
standard deviation over the seeds.

Scales:

- ``smoke``: bundled 8x8 digits, hidden layers of 32, first 300 examples, at most 20 free
  steps, 2 epochs, seeds 0 and 1 (seconds; no download).
- ``quick``: MNIST, first 5,000 examples of each split, 2 epochs (500 batches per run), the
  free phase (training and evaluation) solved by FISTA to a residual of 1e-3 (at most 1,000
  steps) instead of 500 fixed steps, seeds 0, 1, 2 (measured: 13 CPU-minutes in all, 25
  minutes' wall time on 2 shared cores).
- ``full``: the presets unchanged (250 epochs, icons split), seeds 0, 1, 2. ``B-s0`` and
  ``C-s0`` are the runs ``B`` and ``C`` of ``fig3 --scale full``: symlink them to reuse them.

Run directories: ``out/<setting>-s<seed>``; rerunning resumes. Outputs: ``rate_profile.png``
(mean rate per pair, a line per setting, bars: the seeds' range), ``layer_rates.png`` (eq. 3
smoothed rates of the first seed, a panel per setting), ``errors.png`` (training and held-out
error per epoch, mean over the seeds) and ``results.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
from eqprop.metrics import HELD_OUT_ERROR, SMOOTH, held_out_error, record_metric
from eqprop.plots import (
    STYLE,
    data_caption,
    layer_rates_figure,
    log_axis,
    new_figure,
    outside_legend,
)

SCALES = pr.SCALES
SEEDS = {"smoke": (0, 1), "quick": (0, 1, 2), "full": (0, 1, 2)}
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, epochs=2, small=True),
    "quick": pr.Reduction(limit=5_000, epochs=2),
}
#: fraction of every hidden layer that is target-linked
FRACTION = 0.1


@dataclass(frozen=True)
class Setting:
    """One compared network: the paper network it starts from and its hidden nudge
    (``hidden_beta`` None: none; ``first_only``: only the hidden layer next to the input,
    else every hidden layer)."""

    network: str
    hidden_beta: float | None
    description: str
    first_only: bool = False


SETTINGS = {
    "B": Setting("B", None, "layered, no hidden nudge"),
    "B-hidden": Setting(
        "B", 1.0, f"layered, {FRACTION:.0%} of every hidden layer nudged, hidden_beta 1"
    ),
    "B-hidden-weak": Setting(
        "B", 0.1, f"layered, {FRACTION:.0%} of every hidden layer nudged, hidden_beta 0.1"
    ),
    "B-hidden-faint": Setting(
        "B", 0.01, f"layered, {FRACTION:.0%} of every hidden layer nudged, hidden_beta 0.01"
    ),
    "B-hidden-first": Setting(
        "B", 1.0, f"layered, {FRACTION:.0%} of hidden layer 1 only nudged, hidden_beta 1", True
    ),
    "C": Setting("C", None, "layer-skipping (ICONS topology), no hidden nudge"),
}


def run_name(setting: str, seed: int) -> str:
    """The directory name of one run: ``"B-hidden-s2"``."""
    return f"{setting}-s{seed}"


def setting_config(setting: str, seed: int, scale: str) -> RunConfig:
    """The config of ``setting`` with ``seed`` at ``scale``."""
    spec = SETTINGS[setting]
    config = pr.scaled(pr.paper_config(spec.network), scale, REDUCTIONS)
    changes: dict[str, Any] = {"train.seed": seed, "topology.seed": seed}
    if scale == "quick":
        changes.update(pr.FAST_FREE)
    if spec.hidden_beta is not None:
        hidden = len(config.topology.sizes) - 2
        changes.update(
            {
                "nudged.hidden_layers": [1] if spec.first_only else list(range(1, hidden + 1)),
                "nudged.hidden_fraction": FRACTION,
                "nudged.hidden_beta": spec.hidden_beta,
                "nudged.hidden_seed": seed,
            }
        )
    return config.override(changes)


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """The declared runs of ``scale``: every setting with every seed."""
    pr.check_scale(scale)
    return [
        (run_name(setting, seed), setting_config(setting, seed, scale))
        for setting in SETTINGS
        for seed in SEEDS[scale]
    ]


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """``rate_profile.png``, ``layer_rates.png`` (the first seed of each setting) and
    ``errors.png``."""
    groups = grouped(results)
    data = data_caption(r.config for r in results)
    panels = [(s, pr.plottable(runs[0].result.rates)) for s, runs in groups.items() if runs]
    title = f"Per-layer training rates (eq. 3, n = {SMOOTH}), first seed, {data}"
    return {
        "rate_profile.png": profile_figure(groups, data),
        "layer_rates.png": layer_rates_figure(panels, smooth=SMOOTH, title=title),
        "errors.png": errors_figure(groups, data),
    }


# -- measurements ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """What one run measured (NaN where it holds no finished epoch)."""

    setting: str
    seed: int
    result: pr.RunResult
    rates: np.ndarray  # mean rate per pair, input side first
    gap: float  # deepest pair / output pair
    spread_all: float
    spread_deeper: float
    train_error: float
    held_out_error: float


def measure(result: pr.RunResult) -> Measured:
    """The measurements of one run (its name is ``<setting>-s<seed>``)."""
    setting, _, seed = result.name.rpartition("-s")
    summary = pr.summarize_rates(result.rates)
    n_pairs = len(result.config.topology.sizes) - 1
    rates = summary.mean if summary is not None else np.full(n_pairs, math.nan)
    last = result.records[-1] if result.records else {}
    return Measured(
        setting,
        int(seed),
        result,
        rates,
        float(rates[0] / rates[-1]),
        pr.spread(rates),
        pr.spread(rates[:-1]),
        last.get("train_error", math.nan),
        held_out_error(last) if last else math.nan,
    )


def grouped(results: Iterable[pr.RunResult]) -> dict[str, list[Measured]]:
    """The measurements of every run, by setting (in the order of :data:`SETTINGS`)."""
    measured = [measure(r) for r in results]
    return {s: [m for m in measured if m.setting == s] for s in SETTINGS}


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for the deviation of a single value); NaN
    values are left out."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
    return float(np.mean(finite)), sd


def _pm(values: list[float], fmt: str, scale: float = 1.0) -> str:
    mean, sd = mean_sd(values)
    if not math.isfinite(mean):
        return "–"
    text = format(scale * mean, fmt)
    return f"{text} ± {format(scale * sd, fmt)}" if math.isfinite(sd) else text


# -- plots -----------------------------------------------------------------------------------
def _styled(
    groups: dict[str, list[Measured]], spread: float
) -> tuple[list[tuple[list[Measured], dict, float]], list[Line2D]]:
    """Per setting: its runs, its plot style and the x offset (``spread`` apart) that keeps
    the settings' bars from overlapping; and the legend handles, one per setting."""
    settings, handles = [], []
    for k, (setting, runs) in enumerate(groups.items()):
        style = {"color": f"C{k % 10}", "marker": "o", "ms": 4}
        handles.append(Line2D([], [], label=setting, **style))
        settings.append((runs, style, spread * (k - (len(groups) - 1) / 2)))
    return settings, handles


def profile_figure(groups: dict[str, list[Measured]], data: str) -> Figure:
    """Mean rate per layer pair (log scale), a line per setting through the mean over the
    seeds, bars from the lowest to the highest seed."""
    with rc_context(STYLE):
        fig = new_figure(figsize=(6.4, 3.4))
        ax = fig.add_subplot()
        settings, handles = _styled(groups, spread=0.04)
        for runs, style, dx in settings:
            if not runs:
                continue
            stack = np.array([m.rates for m in runs])
            x = np.arange(stack.shape[1]) + dx
            mean = np.nanmean(stack, axis=0)
            low, high = np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
            ax.errorbar(x, mean, yerr=[mean - low, high - mean], capsize=2, **style)
        ax.set_xlabel("layer pair (0 = input side)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("mean RMS correction per batch")
        log_axis(ax.yaxis)
        ax.set_title(f"Mean rate per layer pair, mean over seeds (bars: range)\n{data}")
        outside_legend(ax, handles)
    return fig


def errors_figure(groups: dict[str, list[Measured]], data: str) -> Figure:
    """Training (solid) and held-out (dashed) error per epoch, mean over the seeds, bars from
    the lowest to the highest seed."""
    with rc_context(STYLE):
        fig = new_figure(figsize=(6.4, 3.4))
        ax = fig.add_subplot()
        settings, handles = _styled(groups, spread=0.03)
        for runs, style, dx in settings:
            epochs = min((len(m.result.records) for m in runs), default=0)
            if not epochs:
                continue
            x = np.arange(1, epochs + 1) + dx
            for key, ls, mfc in (("train_error", "-", None), (HELD_OUT_ERROR, "--", "white")):
                values = 100 * np.array(
                    [[record_metric(r, key) for r in m.result.records[:epochs]] for m in runs]
                )
                mean = values.mean(0)
                yerr = [mean - values.min(0), values.max(0) - mean]
                ax.errorbar(x, mean, yerr=yerr, ls=ls, mfc=mfc, capsize=2, **style)
        handles += [
            Line2D([], [], color="0.2", marker="o", ms=4, label="training error"),
            Line2D(
                [], [], color="0.2", marker="o", ms=4, ls="--", mfc="white", label="held-out error"
            ),
        ]
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("error (%)")
        ax.set_title(f"Errors, mean over seeds (bars: range)\n{data}")
        outside_legend(ax, handles)
    return fig


# -- results.md ------------------------------------------------------------------------------
RUN_HEADER = [
    "run",
    "setting",
    "seed",
    "mean rate per pair (input -> output)",
    "deepest / output",
    "log-spread (all pairs)",
    "log-spread (deeper pairs)",
    "training error",
    "held-out error",
]
SETTING_HEADER = [
    "setting",
    "seeds",
    "mean rate per pair (input -> output), mean ± sd",
    "deepest / output",
    "log-spread (all pairs)",
    "log-spread (deeper pairs)",
    "training error",
    "held-out error",
]


def run_table(measured: list[Measured]) -> str:
    """One row per run (the values each run's files hold)."""
    rows = [
        [
            m.result.name,
            m.setting,
            str(m.seed),
            " / ".join(pr.num(v, ".3e") for v in m.rates),
            pr.num(m.gap, ".3g"),
            pr.num(m.spread_all, ".3f"),
            pr.num(m.spread_deeper, ".3f"),
            pr.pct(m.train_error),
            pr.pct(m.held_out_error),
        ]
        for m in measured
    ]
    return pr.table(RUN_HEADER, rows)


def setting_table(groups: dict[str, list[Measured]]) -> str:
    """One row per setting: mean ± sample standard deviation over its seeds."""
    rows = []
    for setting, runs in groups.items():
        pairs = len(runs[0].rates) if runs else 0
        rates = " / ".join(_pm([m.rates[k] for m in runs], ".2e") for k in range(pairs))
        rows.append(
            [
                setting,
                str(len(runs)),
                rates or "–",
                _pm([m.gap for m in runs], ".3g"),
                _pm([m.spread_all for m in runs], ".3f"),
                _pm([m.spread_deeper for m in runs], ".3f"),
                _pm([m.train_error for m in runs], ".2f", 100) + " %",
                _pm([m.held_out_error for m in runs], ".2f", 100) + " %",
            ]
        )
    return pr.table(SETTING_HEADER, rows)


def _pairs(
    groups: dict[str, list[Measured]], setting: str, other: str, field: str
) -> list[tuple[float, float]]:
    """``(setting's field, other's field)`` for every seed both ran with finite values."""
    mine = {m.seed: getattr(m, field) for m in groups.get(setting, [])}
    theirs = {m.seed: getattr(m, field) for m in groups.get(other, [])}
    both = [s for s in mine if s in theirs and math.isfinite(mine[s] + theirs[s])]
    return [(mine[s], theirs[s]) for s in both]


def _count(
    groups: dict[str, list[Measured]], setting: str, other: str, field: str, above: bool
) -> str:
    """``"k of n seeds"``: the seeds where ``setting``'s ``field`` is above (or below)
    ``other``'s."""
    pairs = _pairs(groups, setting, other, field)
    hits = sum((a > b) if above else (a < b) for a, b in pairs)
    return f"{hits} of {len(pairs)} seeds"


@dataclass(frozen=True)
class NarrowsGap:
    """Hidden setting ``setting`` raises the deepest pair's rate relative to the output
    pair's (the gap ratio) above B's in every seed (``partly``: in some)."""

    setting: str

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        groups = grouped(runs.values())
        pairs = _pairs(groups, self.setting, "B", "gap")
        if not pairs:
            return Verdict(NOT_YET, f"{self.setting} and B: no seed with rates of both yet")
        hits = sum(a > b for a, b in pairs)
        mean = {s: pr.pct(mean_sd([m.gap for m in groups[s]])[0]) for s in (self.setting, "B")}
        measured = (
            f"deepest pair at {mean[self.setting]} of the output pair's rate (B: {mean['B']}); "
            f"higher than B in {hits} of {len(pairs)} seeds"
        )
        return Verdict(HOLDS if hits == len(pairs) else PARTLY if hits else FAILS, measured)


CLAIMS = tuple(
    Claim(
        "Allowing non-output neurons to be directly affected in the weakly-clamped phase would "
        "likely reduce the gap between the training rates of output and hidden layers seen in "
        f"Figure 4 (here: `{name}`, {SETTINGS[name].description}: the deepest pair's rate "
        "relative to the output pair's above B's in every seed)",
        "Gammell, Nam & McCaughan 2020 (ICONS), section 6.3",
        f"full: the presets' 250 epochs, {len(SEEDS['full'])} seeds",
        NarrowsGap(name),
    )
    for name in SETTINGS
    if name.startswith("B-hidden")
)

PAGE = ResultsPage("Target-linked hidden neurons (hidden-nudge)", REDUCTIONS, CLAIMS)


def comparison_lines(groups: dict[str, list[Measured]]) -> list[str]:
    """Plain statements of what was measured, a bullet per hidden setting and one for C: the
    gap (deepest pair's rate as a fraction of the output pair's) and the held-out error,
    each against B (and C), with in how many seeds the difference has that sign."""

    def gap(setting: str) -> str:
        return pr.pct(mean_sd([m.gap for m in groups.get(setting, [])])[0])

    def error(setting: str) -> str:
        return _pm([m.held_out_error for m in groups.get(setting, [])], ".2f", 100) + " %"

    lines = []
    for setting in [s for s in groups if s != "B"]:
        against_c = setting != "C" and "C" in groups
        text = (
            f"- `{setting}`: the deepest pair trains at {gap(setting)} of the output pair's rate "
            f"(B: {gap('B')}"
            + (f", C: {gap('C')}" if against_c else "")
            + f"); higher than B in {_count(groups, setting, 'B', 'gap', True)}"
            + (f", than C in {_count(groups, setting, 'C', 'gap', True)}" if against_c else "")
            + f". Held-out error {error(setting)} (B: {error('B')}"
            + (f", C: {error('C')}" if against_c else "")
            + f"); lower than B in {_count(groups, setting, 'B', 'held_out_error', False)}"
            + (
                f", than C in {_count(groups, setting, 'C', 'held_out_error', False)}"
                if against_c
                else ""
            )
            + "."
        )
        lines.append(text)
    return lines


def hidden_fields(runs: list[Measured]) -> str:
    """The hidden-nudge fields a setting's runs were configured with, as ``" (nudged.x =
    ..., ...)"`` (empty without a hidden nudge)."""
    if not runs or runs[0].result.config.nudged.hidden_layers is None:
        return ""
    nudged = runs[0].result.config.nudged
    return (
        f" (`nudged.hidden_layers = {list(nudged.hidden_layers)}`, `hidden_fraction = "
        f"{nudged.hidden_fraction:g}`, `hidden_beta = {nudged.hidden_beta:g}`, `hidden_seed` = "
        "the run's seed)"
    )


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    groups = grouped(results)
    quick = []
    if scale == "quick":
        quick = [
            "Also departs in the free phase (training and evaluation): FISTA to a fixed-point "
            'residual of 1e-3, at most 1,000 steps (`free.solver = "fista"`, `free.tol = '
            "1e-3`, `free.steps = 1000`) instead of 500 fixed steps.",
            "",
        ]
    settings = "\n".join(
        f"- `{name}`: {s.description}{hidden_fields(groups[name])}" for name, s in SETTINGS.items()
    )
    protocol = [
        *quick,
        "**Question.** Does nudging some hidden neurons in the weakly-clamped phase close the "
        "gap between the output pair's training rate and the deeper pairs' (Figure 4) in the "
        "layered network B, and how does it compare with layer-skipping (C)?",
        "",
        "**The hidden nudge.** In the weakly-clamped phase only, the first "
        f"{FRACTION:.0%} of the neurons of every hidden layer l are pulled towards "
        "t_l = d P_l (d the one-hot target, P_l a fixed random (10, k_l) matrix, entries "
        "uniform in [0, 1), seeded with the run's seed) by the same `icons` step that pulls "
        "the outputs: s'_H += 2 eps beta_H (t_l - s'_H) after the free update, then the clip, "
        "with beta_H = hidden_beta * beta (the random sign of beta included). The free phase "
        "is unchanged. See docs/science.md, section 1.",
        "",
        "**Settings.**",
        "",
        settings,
    ]
    measurements = [
        "## Per setting (mean ± sample sd over the seeds)",
        "",
        "Rates: eq. 2 (RMS of the corrections of a pair's adjacent-layer edges per batch), "
        "mean over the batches where it is finite and positive. Deepest / output: the input "
        "pair's mean rate over the output pair's (Figure 4: about 0.01 in B). Log-spread: "
        "std of log10 of the pairs' means (deeper pairs: all but the output pair). Errors "
        "after the last epoch.",
        "",
        setting_table(groups),
        "",
        "## Measured against B and C",
        "",
        *comparison_lines(groups),
        "",
        "A difference is a measured effect only when it has the same sign in every seed.",
        "",
    ]
    after = [
        "The eq. 2 rate counts every correction, including the ones the hidden codes cause: "
        "the codes are random, not the gradient of the output cost, so a faster deep pair is "
        "not by itself more useful learning; the errors say whether it helps.",
        "",
        "## Per run",
        "",
        run_table([m for runs in groups.values() for m in runs]),
        "",
        "![Mean rate per layer pair](rate_profile.png)",
        "",
        "![Per-layer rates of the first seed](layer_rates.png)",
        "",
        "![Training and held-out errors](errors.png)",
        "",
    ]
    return PAGE.text(scale, results, departures, protocol, measurements, after)
