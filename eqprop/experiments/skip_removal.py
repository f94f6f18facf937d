"""Add, train, remove (ICONS section 6.3): does the benefit of the skip connections last
after they are taken away?

Three networks per seed, trained for the same number of epochs with the paper's protocol
(the authors' weakly-clamped step, file-order batches, persistent particles):

- ``layered``: network B (preset ``icons-layered``);
- ``add``: the ICONS *add* topology: B plus every intralayer edge and ``n = 100,000`` added
  random edges between unconnected neurons (preset ``icons-skip`` with
  ``topology.family = "icons-add"``), trained throughout;
- ``add-remove``: the same network, whose intralayer and skip edges are removed after
  ``REMOVE_AFTER`` epochs (``topology.remove_after``): from then on it *is* network B, with
  the weights (and particles) the added edges helped to learn.

Seeds change the initial weights, the signs of beta and the added edges (``train.seed`` and
``topology.seed``). The answer is read from the held-out error at the end: ``add-remove``
against ``layered`` (does the benefit last?) and against ``add`` (what removal costs).

Scales:

- ``smoke``: the bundled 8x8 digits, hidden layers of 32, first 300 examples, at most 20
  free steps, 4 epochs, removal after 2, seeds 0-2 (seconds; no download).
- ``quick``: MNIST (icons split), first 5,000 examples of each split, 4 epochs, removal after
  2, seeds 0-2; the free phase by FISTA to a fixed-point residual below 1e-3 (at most 1,000
  steps) instead of 500 fixed steps (``reproduce solvers`` measures that departure).
- ``full``: the paper protocol, 100 epochs, removal after 50, seeds 0-2.

Run directories ``out/<network>-s<seed>``; rerunning resumes; on a cluster:
``eqprop reproduce skip-removal --scale full --out DIR --address HEAD:6379``. Outputs:
``errors.png`` (mean held-out and training error per epoch over seeds, with the spread) and
``results.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, Claim, Verdict
from eqprop.experiments.departures import Departures
from eqprop.experiments.report import ResultsPage, question_and_protocol
from eqprop.metrics import HELD_OUT_ERROR, record_metric
from eqprop.plots import STYLE, new_figure, outside_legend

SCALES = pr.SCALES
NETWORKS = ("layered", "add", "add-remove")
SEEDS = (0, 1, 2)
#: total epochs and the epoch after which ``add-remove`` loses its skips, per scale
EPOCHS = {"smoke": 4, "quick": 4, "full": 100}
REMOVE_AFTER = {"smoke": 2, "quick": 2, "full": 50}
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, small=True),
    "quick": pr.Reduction(limit=5_000),
}
COLOURS = {"layered": "tab:blue", "add": "tab:green", "add-remove": "tab:red"}


def network_config(network: str, scale: str, seed: int) -> RunConfig:
    """The config of ``network`` (one of :data:`NETWORKS`) at ``scale`` and ``seed``."""
    pr.check_scale(scale)
    changes: dict = {"train.epochs": EPOCHS[scale], "train.seed": seed}
    if network == "layered":
        base = pr.paper_config("B")
    else:
        base = pr.paper_config("C")
        changes |= {"topology.family": "icons-add", "topology.seed": seed}
    config = pr.scaled(base.override(changes), scale, REDUCTIONS)
    if scale == "quick":
        config = config.override(pr.FAST_FREE)
    if network == "add-remove":
        config = config.override({"topology.remove_after": REMOVE_AFTER[scale]})
    return config


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """Every run of ``scale``: seed by seed, the three networks."""
    return [
        (f"{network}-s{seed}", network_config(network, scale, seed))
        for seed in SEEDS
        for network in NETWORKS
    ]


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """``errors.png``: :func:`figure` of the runs."""
    return {"errors.png": figure(per_epoch(results), scale)}


def per_epoch(
    results: Iterable[pr.RunResult],
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """network -> ``train_error`` / :data:`~eqprop.metrics.HELD_OUT_ERROR` -> per epoch
    (mean, std) over the seeds whose runs have that epoch."""
    results = list(results)
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for network in NETWORKS:
        runs = [r for r in results if r.name.rsplit("-s", 1)[0] == network]
        done = min((r.epochs_done for r in runs), default=0)
        curves[network] = {
            key: [pr.mean_sd([record_metric(r.records[e], key) for r in runs]) for e in range(done)]
            for key in ("train_error", HELD_OUT_ERROR)
        }
    return curves


def figure(curves: dict, scale: str) -> Figure:
    """Held-out (solid) and training (dashed) error per epoch, mean over seeds with one
    standard deviation shaded; a vertical line where ``add-remove`` loses its skips."""
    with rc_context(STYLE):
        return _draw(curves, scale)


def _draw(curves: dict, scale: str):
    fig = new_figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for network, keys in curves.items():
        for key, style in ((HELD_OUT_ERROR, "-"), ("train_error", "--")):
            points = keys[key]
            if not points:
                continue
            epochs = np.arange(1, len(points) + 1)
            mean = 100 * np.array([m for m, _ in points])
            std = 100 * np.array([s for _, s in points])
            what = "held-out" if key == HELD_OUT_ERROR else "training"
            ax.plot(
                epochs, mean, style, marker="o", color=COLOURS[network], label=f"{network}, {what}"
            )
            ax.fill_between(epochs, mean - std, mean + std, color=COLOURS[network], alpha=0.15)
    ax.axvline(REMOVE_AFTER[scale] + 0.5, color="0.4", lw=1, ls=":")
    ax.text(
        REMOVE_AFTER[scale] + 0.55,
        ax.get_ylim()[1],
        " skips removed",
        va="top",
        fontsize=8,
        color="0.3",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_title(f"Add, train, remove: mean over seeds {', '.join(map(str, SEEDS))} (± 1 sd)")
    outside_legend(ax, ax.get_legend_handles_labels()[0])
    return fig


def _cell(point: tuple[float, float] | None) -> str:
    if point is None:
        return "–"
    mean, std = point
    return f"{100 * mean:.2f} ± {100 * std:.2f}%"


def finals(curves: dict) -> dict[str, tuple[float, float]] | None:
    """Each network's held-out error (mean, sd over seeds) after the last epoch that every
    network reached in every seed (None: not every network has finished an epoch, or they
    have not finished the same epochs)."""
    if len({len(c[HELD_OUT_ERROR]) for c in curves.values()}) != 1:
        return None
    last = {n: c[HELD_OUT_ERROR][-1] for n, c in curves.items() if c[HELD_OUT_ERROR]}
    return last if len(last) == len(NETWORKS) else None


def difference(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, bool]:
    """``a - b`` in points, and whether it is beyond twice the seeds' combined spread."""
    diff = 100 * (a[0] - b[0])
    return diff, abs(diff) > 2 * 100 * math.hypot(a[1], b[1])


@dataclass(frozen=True)
class LastingBenefit:
    """After removal, ``add-remove``'s final held-out error (mean over seeds) is below
    ``layered``'s by more than twice the seeds' combined spread."""

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        curves = per_epoch(runs.values())
        last = finals(curves)
        if last is None:
            return Verdict(NOT_YET, "not every network has finished the same epochs yet")
        diff, beyond = difference(last["add-remove"], last["layered"])
        measured = (
            f"after {len(curves['layered'][HELD_OUT_ERROR])} epochs, held-out error add-remove "
            f"{_cell(last['add-remove'])}, layered {_cell(last['layered'])}: {diff:+.2f} "
            f"points ({'beyond' if beyond else 'within'} twice the combined seed spread)"
        )
        return Verdict(HOLDS if diff < 0 and beyond else FAILS, measured)


CLAIMS = (
    Claim(
        "Adding layer-skipping connections, training, then removing them and training further "
        "may leave a lasting benefit after removal (proposed; here: after removal the held-out "
        "error below the layered network's trained as long, by more than twice the combined "
        "seed spread)",
        "Gammell, Nam & McCaughan 2020 (ICONS), section 6.3",
        f"full: {EPOCHS['full']} epochs, skips removed after {REMOVE_AFTER['full']}, "
        f"{len(SEEDS)} seeds",
        LastingBenefit(),
    ),
)

PAGE = ResultsPage(
    "Add, train, remove (ICONS section 6.3)", REDUCTIONS, CLAIMS, fast_free=("quick",)
)


def removal_lines(curves: dict, scale: str) -> list[str]:
    """What the removal costs: ``add-remove`` against ``add`` at the end, and its held-out
    error just before and just after the removal (mean ± sd over seeds)."""
    last = finals(curves)
    if last is None:
        return ["- Not every network has finished the same epochs yet."]
    diff, beyond = difference(last["add-remove"], last["add"])
    removed = REMOVE_AFTER[scale]
    errors = curves["add-remove"][HELD_OUT_ERROR]
    before = errors[removed - 1] if len(errors) >= removed else None
    after = errors[removed] if len(errors) > removed else None
    return [
        f"- add-remove - add after the last epoch: {diff:+.2f} points "
        f"({'beyond' if beyond else 'within'} twice the combined seed spread).",
        f"- The removal itself: add-remove's held-out error {_cell(before)} after epoch "
        f"{removed} (with its skips), {_cell(after)} after the first epoch without them.",
    ]


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    curves = per_epoch(results)
    n_epochs = max((len(c[HELD_OUT_ERROR]) for c in curves.values()), default=0)
    rows = []
    for e in range(n_epochs):
        row = [str(e + 1) + (" (first without skips)" if e == REMOVE_AFTER[scale] else "")]
        for key in ("train_error", HELD_OUT_ERROR):
            for network in NETWORKS:
                points = curves[network][key]
                row.append(_cell(points[e] if e < len(points) else None))
        rows.append(row)
    header = ["epoch"] + [
        f"{what}, {network}" for what in ("train", "held-out") for network in NETWORKS
    ]
    protocol = question_and_protocol(
        "The ICONS paper proposes adding skip connections, training, removing them and "
        "training on. Does the benefit of the skips last after removal?",
        f"Per seed ({', '.join(map(str, SEEDS))}): `layered` = network B; "
        "`add` = the ICONS add topology (B plus all intralayer edges and n = 100,000 added "
        "random edges, a = .05), trained throughout; `add-remove` = the same network with "
        f"its intralayer and skip edges removed after epoch {REMOVE_AFTER[scale]} "
        "(`topology.remove_after`), so that it is network B from then on. Same rate, "
        "nudging, batches and budget for all three; the seed sets the initial weights, "
        "the signs of beta and the added edges. Held-out error after each epoch; "
        "training error during it. Mean ± sample standard deviation over the seeds.",
    )
    measurements = [
        "## Measurements",
        "",
        pr.table(header, rows),
        "",
        "What the removal costs:",
        "",
        *removal_lines(curves, scale),
        "",
    ]
    after = ["![held-out (solid) and training (dashed) error per epoch](errors.png)", ""]
    return PAGE.text(scale, results, departures, protocol, measurements, after)
