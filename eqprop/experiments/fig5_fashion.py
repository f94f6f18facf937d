"""Figure 5 on harder data (ICONS section 6.3): the ``p`` sweep on Fashion-MNIST, with the
training *and* the held-out error against ``p``. The paper expects that on a harder dataset
generalisation worsens past some ``p``; this measures whether, and where.

The networks are those of ``fig5`` (network C with ``p`` given instead of ``n``, and network
B as ``p = 0``), trained on Fashion-MNIST (``icons`` split: the last 10,000 training images
held out) for one epoch, at several seeds (the seed sets the initial weights, the signs of
beta and the skip edges). Per ``p``: the training error of the epoch (measured during it),
the held-out error after it, and their difference, the generalisation gap; mean and sample
standard deviation over the seeds. "Generalisation worsens past ``p``" is read as: the gap
grows with ``p`` (Spearman rank correlation over the swept values) and the held-out error
rises again past its minimum by more than the seed spread.

Scales:

- ``smoke``: the bundled 8x8 digits (no download; plumbing only), hidden layers of 32, 300
  examples, at most 20 free steps, 4 values of p, seeds 0-2.
- ``quick``: Fashion-MNIST, first 10,000 examples of each split, one epoch, 6 values of p
  and B, seeds 0-2; the free phase by FISTA to a fixed-point residual below 1e-3 (at most
  1,000 steps) instead of 500 fixed steps.
- ``full``: the paper protocol (one epoch of 50,000 images, 500 fixed free steps) on
  Fashion-MNIST, 13 values of p, seeds 0-2.

Run directories ``out/<B|p_...>-s<seed>``; on a cluster:
``eqprop reproduce fig5-fashion --scale full --out DIR --address HEAD:6379``. Outputs:
``errors_vs_p.png`` and ``results.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from eqprop.config import RunConfig
from eqprop.experiments import fig5
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict
from eqprop.experiments.departures import Departures
from eqprop.experiments.report import ResultsPage, question_and_protocol
from eqprop.metrics import held_out_error
from eqprop.plots import STYLE, log_axis, new_figure, outside_legend

SCALES = pr.SCALES
SEEDS = (0, 1, 2)
P_COUNT = {"smoke": 4, "quick": 6, "full": 13}
DATASET = {"smoke": "digits", "quick": "fashion-mnist", "full": "fashion-mnist"}
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, small=True),
    "quick": pr.Reduction(limit=10_000),
}


def p_values(scale: str) -> list[float]:
    """The swept probabilities of ``scale`` (log-uniform over fig5's range)."""
    pr.check_scale(scale)
    return [float(p) for p in np.geomspace(fig5.P_MIN, fig5.P_MAX, P_COUNT[scale])]


def _config(base: RunConfig, scale: str, seed: int) -> RunConfig:
    config = pr.scaled(base, scale, REDUCTIONS).override(
        {"data.dataset": DATASET[scale], "train.seed": seed, "train.epochs": 1}
    )
    if config.topology.family == "icons":
        config = config.override({"topology.seed": seed})
    return config.override(pr.FAST_FREE) if scale == "quick" else config


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """Seed by seed: B, then the sweep in increasing p."""
    skip = pr.paper_config("C")
    runs = []
    for seed in SEEDS:
        runs.append((f"B-s{seed}", _config(pr.paper_config("B"), scale, seed)))
        for p in p_values(scale):
            config = _config(skip.override({"topology.n": None, "topology.p": p}), scale, seed)
            runs.append((f"{fig5.run_name(p)}-s{seed}", config))
    return runs


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """``errors_vs_p.png``: :func:`figure` of the runs."""
    return {"errors_vs_p.png": figure(summarize(results), DATASET[scale])}


def summarize(results: Iterable[pr.RunResult]) -> list[dict]:
    """One row per network in the planned order (B first, then increasing p): its name, p,
    seeds finished, and mean / sd of the training error, the held-out error and the gap
    (held-out - training) over the seeds."""
    groups: dict[str, list[pr.RunResult]] = {}
    for r in results:
        groups.setdefault(r.name.rsplit("-s", 1)[0], []).append(r)
    rows = []
    for name, runs in groups.items():
        done = [r.records[0] for r in runs if r.records]
        train = [d["train_error"] for d in done]
        test = [held_out_error(d) for d in done]
        rows.append(
            {
                "name": name,
                "p": 0.0 if name == "B" else runs[0].config.topology.p,
                "seeds": len(done),
                "train": pr.mean_sd(train),
                "test": pr.mean_sd(test),
                "gap": pr.mean_sd([b - a for a, b in zip(train, test, strict=True)]),
            }
        )
    return rows


def figure(points: list[dict], dataset: str) -> Figure:
    """Left: training and held-out error against p (B as dashed lines); right: the gap."""
    with rc_context(STYLE):
        fig = new_figure(figsize=(10.0, 4.0))
        left, right = fig.subplots(1, 2)
        sweep, ref = points[1:], points[0]
        ps = [pt["p"] for pt in sweep]
        for ax, keys in (
            (left, (("train", "training", "tab:blue"), ("test", "held-out", "tab:red"))),
            (right, (("gap", "held-out - training", "tab:purple"),)),
        ):
            for key, label, colour in keys:
                mean = [100 * pt[key][0] for pt in sweep]
                sd = [100 * pt[key][1] for pt in sweep]
                ax.errorbar(
                    ps,
                    mean,
                    yerr=sd,
                    marker="o",
                    color=colour,
                    capsize=3,
                    label=f"{label} (C at p)",
                )
                if ref["seeds"]:
                    ax.axhline(
                        100 * ref[key][0], color=colour, ls="--", lw=1, label=f"{label}, B (p = 0)"
                    )
            log_axis(ax.xaxis)
            ax.set_xlabel("p (probability of a skip replacement)")
        left.set_ylabel("error after one epoch (%)")
        right.set_ylabel("generalisation gap (points)")
        left.set_title(f"{dataset}: error against p (mean ± sd over seeds)")
        right.set_title("held-out - training error")
        outside_legend(
            right, left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        )
        return fig


def _cell(point: tuple[float, float], scale: float = 100.0, unit: str = "%") -> str:
    mean, sd = point
    if not math.isfinite(mean):
        return "–"
    return f"{scale * mean:.2f} ± {scale * sd:.2f}{unit}"


@dataclass(frozen=True)
class WorsensPastP:
    """Generalisation worsens past some p: the gap (held-out - training error, mean over
    seeds) grows with p (Spearman rank correlation above 0.5 over the swept values) and the
    held-out error rises past its minimum by more than twice the seeds' combined spread
    (``partly``: one of the two)."""

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        sweep = [pt for pt in summarize(runs.values()) if pt["name"] != "B" and pt["seeds"]]
        if len(sweep) < 3:
            return Verdict(NOT_YET, f"{len(sweep)} values of p finished, 3 needed")
        rho = float(spearmanr([pt["p"] for pt in sweep], [pt["gap"][0] for pt in sweep])[0])
        tests = [pt["test"] for pt in sweep]
        best = int(np.argmin([m for m, _ in tests]))
        rises = [
            (pt["p"], pt["test"][0] - tests[best][0])
            for pt in sweep[best + 1 :]
            if pt["test"][0] - tests[best][0] > 2 * math.hypot(pt["test"][1], tests[best][1])
        ]
        measured = (
            f"gap against p: rank correlation {rho:+.2f} over {len(sweep)} values (mean gap "
            f"{100 * sweep[0]['gap'][0]:+.2f} to {100 * sweep[-1]['gap'][0]:+.2f} points); "
            f"lowest held-out error {_cell(tests[best])} at p = {sweep[best]['p']:.3g}, "
            + (
                "past it higher by more than twice the seed spread at p = "
                + ", ".join(f"{p:.3g} (+{100 * d:.2f} points)" for p, d in rises)
                if rises
                else "past it no rise beyond twice the seed spread"
            )
        )
        grows = rho > 0.5
        verdict = HOLDS if grows and rises else PARTLY if grows or rises else FAILS
        return Verdict(verdict, measured)


CLAIMS = (
    Claim(
        "A network's generalisation ability will suffer for large p as it loses its "
        "regimented nature, which may become apparent on a more difficult dataset (here: on "
        "Fashion-MNIST the generalisation gap grows with p and the held-out error rises again "
        "past its minimum)",
        "Gammell, Nam & McCaughan 2020 (ICONS), sections 4.3 and 6.1",
        f"full: one epoch of 50,000 Fashion-MNIST images, {P_COUNT['full']} values of p, "
        f"{len(SEEDS)} seeds",
        WorsensPastP(),
    ),
)

PAGE = ResultsPage("Figure 5 on Fashion-MNIST", REDUCTIONS, CLAIMS, fast_free=("quick",))


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    points = summarize(results)
    rows = [
        [
            pt["name"],
            "0 (B)" if pt["name"] == "B" else f"{pt['p']:.3g}",
            str(pt["seeds"]),
            _cell(pt["train"]),
            _cell(pt["test"]),
            _cell(pt["gap"], unit=" points"),
        ]
        for pt in points
    ]
    protocol = question_and_protocol(
        "The ICONS paper expects that on a harder dataset generalisation worsens as p grows. "
        "Is there a p past which it does?",
        f"Network C with p in place of n (ICONS replace topology, a = .05, "
        f"rate .02) at {len(points) - 1} values of p, and network B (p = 0), one epoch on "
        f"`{DATASET[scale]}`, seeds {', '.join(map(str, SEEDS))} (initial weights, signs "
        "of beta and skip edges). Training error: during the epoch; held-out error: "
        "after it, on the held-out split; gap = held-out - training. Mean ± sample "
        "standard deviation over seeds.",
    )
    measurements = [
        "## Measurements",
        "",
        pr.table(["network", "p", "seeds", "training error", "held-out error", "gap"], rows),
        "",
        "Reading the gap: after one epoch the training error is that of the epoch, "
        "measured while the network learns, and the held-out error is measured after "
        "it, so a negative gap says the network improved during the epoch; it measures "
        "generalisation only once training error is low (longer training: the full "
        "scale or more epochs). At small p network C differs from B by its intralayer "
        "edges (the ICONS topology connects every pair inside a hidden layer), so the "
        "sweep does not meet B as p tends to 0.",
        "",
    ]
    after = ["![error and gap against p](errors_vs_p.png)", ""]
    return PAGE.text(scale, results, departures, protocol, measurements, after)
