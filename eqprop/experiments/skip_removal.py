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
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.ticker import MaxNLocator

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.departures import Departures
from eqprop.plots import STYLE, new_figure, outside_legend
from eqprop.sweeps.tasks import Placement

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


def run(
    scale: str,
    out: Path,
    data_dir: Path | None,
    placement: Placement | None = None,
    departures: Departures | None = None,
    results_only: bool = False,
) -> Path:
    """Run (or resume) every run of ``scale`` into ``out``; return ``results.md``."""
    pr.check_scale(scale)
    out = Path(out)
    results = pr.execute(planned(scale), out, data_dir, placement, departures, results_only)
    curves = per_epoch(results)
    pr.save_png(figure(curves, scale), out / "errors.png")
    path = out / "results.md"
    pr.atomic_write_bytes(path, render(scale, results, curves, departures=departures).encode())
    return path


def per_epoch(results: list[pr.RunResult]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """network -> ``train_error`` / ``test_error`` -> per epoch (mean, std) over the seeds
    whose runs have that epoch."""
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for network in NETWORKS:
        runs = [r for r in results if r.name.rsplit("-s", 1)[0] == network]
        done = min((r.epochs_done for r in runs), default=0)
        curves[network] = {
            key: [pr.mean_sd([r.records[e][key] for r in runs]) for e in range(done)]
            for key in ("train_error", "test_error")
        }
    return curves


def figure(curves: dict, scale: str):
    """Held-out (solid) and training (dashed) error per epoch, mean over seeds with one
    standard deviation shaded; a vertical line where ``add-remove`` loses its skips."""
    with rc_context(STYLE):
        return _draw(curves, scale)


def _draw(curves: dict, scale: str):
    fig = new_figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for network, keys in curves.items():
        for key, style in (("test_error", "-"), ("train_error", "--")):
            points = keys[key]
            if not points:
                continue
            epochs = np.arange(1, len(points) + 1)
            mean = 100 * np.array([m for m, _ in points])
            std = 100 * np.array([s for _, s in points])
            what = "held-out" if key == "test_error" else "training"
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


def verdict_lines(curves: dict, scale: str) -> list[str]:
    """Plain statements from the final held-out errors (mean ± sd over seeds)."""
    finals = {n: c["test_error"][-1] for n, c in curves.items() if c["test_error"]}
    if len(finals) < 3 or len({len(c["test_error"]) for c in curves.values()}) != 1:
        return ["- Not every network has finished the same epochs yet: no verdict."]
    (lay, lay_sd), (add, add_sd), (rem, rem_sd) = (finals[n] for n in NETWORKS)

    def compare(a: float, a_sd: float, b: float, b_sd: float) -> tuple[float, str]:
        diff = 100 * (a - b)
        noise = 100 * math.hypot(a_sd, b_sd)
        return diff, ("beyond" if abs(diff) > 2 * noise else "within")

    d_lay, s_lay = compare(rem, rem_sd, lay, lay_sd)
    d_add, s_add = compare(rem, rem_sd, add, add_sd)
    epochs = len(curves["layered"]["test_error"])
    removed = REMOVE_AFTER[scale]
    before = curves["add-remove"]["test_error"][removed - 1]
    after = curves["add-remove"]["test_error"][removed] if epochs > removed else None
    if d_lay < 0 and s_lay == "beyond":
        verdict = (
            "**Verdict: the benefit lasts after removal**: the network that learned with skips "
            "is still ahead of the layered network trained as long."
        )
    elif d_lay > 0 and s_lay == "beyond":
        verdict = (
            "**Verdict: the benefit does not last; removal costs more than the skips gave**: "
            "after removal the network is behind the layered network trained as long, by more "
            "than the seed spread."
        )
    else:
        verdict = (
            "**Verdict: no lasting benefit measured**: after removal the network is within the "
            "seed spread of the layered network trained as long."
        )
    return [
        f"- After {epochs} epochs (skips removed after epoch {removed}), held-out error: "
        f"add-remove {_cell(finals['add-remove'])}, layered {_cell(finals['layered'])}, "
        f"add {_cell(finals['add'])}.",
        f"- add-remove - layered: {d_lay:+.2f} points ({s_lay} twice the combined seed "
        f"spread); add-remove - add: {d_add:+.2f} points ({s_add} it).",
        f"- The removal itself: add-remove's held-out error {_cell(before)} after epoch "
        f"{removed} (with its skips), {_cell(after)} after the first epoch without them.",
        f"- {verdict}",
    ]


def render(
    scale: str, results: list[pr.RunResult], curves: dict, departures: Departures | None = None
) -> str:
    """The text of ``results.md``."""
    n_epochs = max((len(c["test_error"]) for c in curves.values()), default=0)
    rows = []
    for e in range(n_epochs):
        row = [str(e + 1) + (" (first without skips)" if e == REMOVE_AFTER[scale] else "")]
        for key in ("train_error", "test_error"):
            for network in NETWORKS:
                points = curves[network][key]
                row.append(_cell(points[e] if e < len(points) else None))
        rows.append(row)
    header = ["epoch"] + [
        f"{what}, {network}" for what in ("train", "held-out") for network in NETWORKS
    ]
    departure = [pr.FAST_FREE_NOTE] if scale == "quick" else []
    return "\n".join(
        [
            *pr.header_lines(
                "Add, train, remove (ICONS section 6.3)",
                scale,
                REDUCTIONS.get(scale),
                pr.departure_lines(departures, results),
            ),
            *departure,
            "",
            "**Question.** The ICONS paper proposes adding skip connections, training, removing "
            "them and training on. Does the benefit of the skips last after removal?",
            "",
            f"**Protocol.** Per seed ({', '.join(map(str, SEEDS))}): `layered` = network B; "
            "`add` = the ICONS add topology (B plus all intralayer edges and n = 100,000 added "
            "random edges, a = .05), trained throughout; `add-remove` = the same network with "
            f"its intralayer and skip edges removed after epoch {REMOVE_AFTER[scale]} "
            "(`topology.remove_after`), so that it is network B from then on. Same rate, "
            "nudging, batches and budget for all three; the seed sets the initial weights, "
            "the signs of beta and the added edges. Held-out error after each epoch; "
            "training error during it. Mean ± sample standard deviation over the seeds.",
            "",
            *pr.runs_section(results),
            "",
            "## Measurements",
            "",
            pr.table(header, rows),
            "",
            "## Verdict",
            "",
            *verdict_lines(curves, scale),
            "",
            "![held-out (solid) and training (dashed) error per epoch](errors.png)",
            "",
        ]
    )
