"""Equilibrium propagation on convolutional Hopfield networks (beyond the papers eqprop
implements): the ``conv-mnist`` and ``conv-fashion`` presets, with the published numbers of
the convolutional EP codebases beside ours.

The presets (``docs/science.md`` section 7): 1x28x28 -> 16 maps (5x5 kernels, 2x2 max
pooling) -> 32 maps (5x5, pooling) -> 10 outputs, centered EP at ``beta = 0.5`` as in
Laborieux et al. (2021), "Scaling Equilibrium Propagation to Deep ConvNets by Drastically
Reducing Its Gradient Estimator Bias", 60 free and 10 nudged fixed steps, batches of 32,
per-pair rates (0.1, 0.05, 0.02), the standard 60k/10k split (the held-out error is the test
error, as the anchors report it), 10 epochs. Ernoult et al.'s (2019) MNIST network has twice
the maps (32 and 64): ours is narrowed to train on two CPU cores.

Runs, in this order: ``mnist``, ``fashion``.

Scales:

- ``smoke``: the bundled 8x8 digits, conv blocks of 4 maps with 3x3 kernels, at most 20 free
  steps, 2 epochs (seconds).
- ``quick``: the first 10,000 examples of each split, 3 epochs.
- ``full``: the presets unchanged.

Outputs in ``out``: ``errors.png`` (training and test error per epoch) and ``results.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

from eqprop import config as cfg
from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import Claim, ReachesBy
from eqprop.experiments.departures import Departures
from eqprop.experiments.report import ResultsPage
from eqprop.metrics import HELD_OUT_ERROR, held_out_error
from eqprop.plots import data_caption, errors_figure

SCALES = pr.SCALES
#: run name -> preset
RUNS = {"mnist": "conv-mnist", "fashion": "conv-fashion"}
REDUCTIONS = {
    "smoke": pr.Reduction(max_free=20, epochs=2, small=True),
    "quick": pr.Reduction(limit=10_000, epochs=3),
}


@dataclass(frozen=True)
class Anchor:
    """A convolutional EP codebase's published test error, the claim made of it and what it
    took to reach it."""

    error: float
    source: str
    who: str
    what: str
    #: the epochs their run trained (None: not stated in what we read) and where that is said
    epochs: int | None
    epochs_source: str
    network: str


#: run -> the anchor beside it
ANCHORS = {
    "mnist": Anchor(
        0.01,
        "Ernoult et al. 2019, 'Updates of Equilibrium Prop Match Gradients of Backprop "
        "Through Time in an RNN with Static Input'",
        "Ernoult et al. 2019",
        "about 1% test error on MNIST (their network: 32 and 64 maps)",
        40,
        "the command their public code's README gives for the convolutional row of their "
        "Table 1, github.com/ernoult/updatesEPgradientsBPTT",
        "32 and 64 maps of 5x5, batches of 20, 200 free steps from zeros and 10 nudged, "
        "one-sided EP at beta 0.4",
    ),
    "fashion": Anchor(
        0.0889,
        "Lin, Bal & Sengupta 2024, 'Scaling SNNs Trained Using Equilibrium Propagation to "
        "Convolutional Architectures'",
        "Lin, Bal & Sengupta 2024",
        "8.89% test error on Fashion-MNIST (their network: spiking, average pooling)",
        None,
        "not stated in their abstract, the only text of theirs we could read",
        "a spiking network of two conv and two dense layers, average pooling, centered EP",
    ),
}
#: "about": ours counts as reaching an anchor's error within this many points
ABOUT = 0.005
CLAIMS = tuple(
    Claim(
        f"A convolutional network trained with equilibrium propagation reaches {a.what} "
        f"(here: the `conv-{run}` preset's test error at most {100 * (a.error + ABOUT):.2f}% "
        "within its 10 epochs)",
        a.source,
        "full: 10 epochs",
        ReachesBy(run, HELD_OUT_ERROR, a.error + ABOUT, epoch=10, slack=1.0),
    )
    for run, a in ANCHORS.items()
)

PAGE = ResultsPage("Equilibrium propagation on convolutional networks", REDUCTIONS, CLAIMS)


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """The declared runs of ``scale``, in training order."""
    return [
        (name, pr.scaled(cfg.from_dict(cfg.preset(preset)), scale, REDUCTIONS))
        for name, preset in RUNS.items()
    ]


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """``errors.png``: training and test error per epoch of both runs."""
    curves = [(r.name, r.records) for r in results if r.records]
    data = data_caption(r.config for r in results)
    return {"errors.png": errors_figure(curves, title=f"Error per epoch\n{data}")}


def _row(r: pr.RunResult) -> list[str]:
    last = r.records[-1] if r.records else {}
    best = min(r.records, key=lambda x: (held_out_error(x), x["epoch"])) if r.records else None
    anchor = ANCHORS[r.name]
    wall = last.get("wall_time")
    return [
        r.name,
        f"{r.epochs_done}/{r.config.train.epochs}",
        pr.pct(last.get("train_error")),
        pr.pct(held_out_error(last) if last else None),
        f"{pr.pct(held_out_error(best))} ({best['epoch']})" if best else "–",
        f"{pr.pct(anchor.error)} ({anchor.who})",
        str(anchor.epochs) if anchor.epochs else "not stated",
        f"{wall / r.epochs_done / 60:.1f}" if wall and r.epochs_done else "–",
    ]


def _shortfall(r: pr.RunResult) -> str:
    """One line on how far run ``r``'s best test error is from its anchor's, and what of the
    difference the records measure (epochs) or the docs measure (network, estimator)."""
    anchor = ANCHORS[r.name]
    errors = [held_out_error(x) for x in r.records]
    best = min(errors)
    head = (
        f"- `{r.name}`: {pr.pct(best)} at best in {len(errors)} epochs against "
        f"{pr.pct(anchor.error)} ({anchor.who})"
    )
    if best <= anchor.error + ABOUT:
        return f"{head}: within {100 * ABOUT:.1f} points of it."
    theirs = f"theirs {anchor.epochs}" if anchor.epochs else "theirs not stated"
    fall = errors[-2] - errors[-1] if len(errors) > 1 else None
    trend = (
        f"; over our last epoch the test error still fell by {100 * fall:.2f} points"
        if fall is not None and fall > 0
        else ("; it did not fall over our last epoch" if fall is not None else "")
    )
    return (
        f"{head}, {100 * (best - anchor.error):.2f} points short. Epochs: ours "
        f"{len(errors)}, {theirs}{trend}. Network and settings: theirs {anchor.network}; "
        "ours 16 and 32 maps (32 and 64 at the quick scale: `docs/science.md` section 7). "
        "Estimator: how far the centered estimate at beta 0.5 is from "
        'the true gradient is measured in `docs/science.md` section 7 ("Which nudging").'
    )


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    header = [
        "run",
        "epochs",
        "final train",
        "final test",
        "best test (epoch)",
        "anchor's test error",
        "anchor's epochs",
        "wall min / epoch",
    ]
    protocol = (
        "Networks: 1x28x28 -> 16 maps (5x5 kernels, 2x2 max pooling) -> 32 maps (5x5, "
        "pooling) -> 10, hard-sigmoid units, the energy of Laborieux et al. (2021) in the "
        "Hopfield form (`docs/science.md` section 7); centered EP at beta = 0.5, 60 free "
        "steps from zeros every batch, as the anchors (theirs 200-250 steps), and 10 nudged "
        "fixed steps at eps = 0.5, the `gradient` nudged step (their cost "
        "1/2 |s_out - d|^2), plain SGD with per-pair rates (0.1, 0.05, 0.02), batches of 32; "
        "the standard split, so the held-out error is "
        "the test error. One seed each; no spread over seeds was measured."
    )
    anchors = ["The anchors' runs differ from ours in network, steps, estimator and epochs:", ""]
    anchors += [
        f"- {a.who} ({run}): {a.network}; "
        + (f"{a.epochs} epochs ({a.epochs_source})" if a.epochs else f"epochs {a.epochs_source}")
        + "."
        for run, a in ANCHORS.items()
    ]
    measurements = [
        "## Results",
        "",
        pr.table(header, [_row(r) for r in results]),
        "",
        "Wall time per epoch includes the test evaluation; it was measured on whatever machine "
        "and load trained the run (`docs/results/PROVENANCE.md`).",
        "",
    ]
    trained = [r for r in results if r.records]
    if trained:
        measurements += [
            "## Where ours differ from the anchors",
            "",
            *[_shortfall(r) for r in trained],
            "",
            "The side-by-side with Laborieux et al.'s code (their MNIST check: 32 and 64 maps, "
            "their settings, trained in both codebases) is in `docs/performance.md`.",
            "",
        ]
    after = ["![Error per epoch](errors.png)", ""]
    return PAGE.text(scale, results, departures, [protocol, "", *anchors], measurements, after)
