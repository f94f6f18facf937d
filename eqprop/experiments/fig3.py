"""Figure 3 of the ICONS paper: training (solid) and test (dashed) error per epoch of
networks A (layered, per-layer rates; corrected and as the authors ran it), B (layered, one
rate) and C (ICONS layer-skipping).

Scales:

- ``smoke``: the bundled 8x8 digits, layers 64-32-32-32-10, first 300 examples of each
  split, at most 20 free steps, 3 epochs (seconds; no download).
- ``quick``: MNIST (icons split), first 10,000 examples of each split (500 batches per
  epoch, 10,000 held-out examples), free steps / 5 (100), 5 epochs.
- ``full``: the paper protocol, the presets ``icons-layered-perlayer`` (A),
  ``icons-layered-perlayer-authors`` (A-authors), ``icons-layered`` (B) and ``icons-skip`` (C)
  unchanged: 250 epochs on the first 50,000
  training images, evaluation on the other 10,000.

Run directories are ``out/A``, ``out/B`` and ``out/C`` (plain ``eqprop train`` run
directories), so a run started by hand, e.g. ``eqprop train --preset icons-skip --out
OUT/C``, is resumed by ``eqprop reproduce fig3 --scale full --out OUT``, not restarted. Runs
are trained one after the other in the order C, A, B (C first: it is the paper's point and
the slowest per epoch); ``EQPROP_ONLY=C`` (or ``A,B``, ...) trains only the named networks
and reports the others from what their directories hold. Rerunning continues where it
stopped.

Outputs in ``out``: ``errors.png`` (Figure 3), ``errors_zoom.png`` (the same with the error
axis cut to the low-error range) and ``results.md``.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import (
    BelowEachEpoch,
    Claim,
    Lower,
    NeverReaches,
    ReachesBy,
)
from eqprop.experiments.departures import Departures
from eqprop.experiments.report import ResultsPage
from eqprop.metrics import HELD_OUT_ERROR, held_out_error, record_metric
from eqprop.plots import ERRORS_TITLE, data_caption, errors_figure, network_label

SCALES = pr.SCALES
#: training order (see the module docstring)
ORDER = ("C", "A", "A-authors", "B")
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, epochs=3, small=True),
    "quick": pr.Reduction(limit=10_000, free_divisor=5, epochs=5),
}
#: what the paper states for each network (ICONS section 4, Figure 3)
PAPER = {
    "A": "0% training / about 2.5% test error in about 150 epochs",
    "A-authors": "(the paper's A as run: every bias at rate 1) as A",
    "B": "does not converge (0% training) in 250 epochs; stays about 0.5% worse",
    "C": "0% training error in about 190 epochs",
}
_SOURCE = "Gammell, Nam & McCaughan 2020 (ICONS), section 4.1, Figure 3"
_FULL = "full: 250 epochs on 50,000 images"
CLAIMS = (
    Claim(
        "The network with layer-skipping connections (C) converges to 0% training error in "
        "around 190 epochs",
        _SOURCE,
        _FULL,
        ReachesBy("C", "train_error", 0.0, 190),
    ),
    Claim(
        "... and to 2.5% test error in around 190 epochs",
        _SOURCE,
        _FULL,
        ReachesBy("C", HELD_OUT_ERROR, 0.025, 190),
    ),
    Claim(
        "The layered network with per-layer rates (A) converges to 0% training error in around "
        "150 epochs",
        _SOURCE,
        _FULL,
        ReachesBy("A", "train_error", 0.0, 150),
    ),
    Claim(
        "The layered network with one rate (B) fails to converge (0% training error) in 250 epochs",
        _SOURCE,
        _FULL,
        NeverReaches("B", "train_error", 0.0, 250),
    ),
    Claim(
        "... and its test error stays about .5% higher than C's (here: at least 0.25 points, "
        "mean of the last 5 epochs)",
        _SOURCE,
        _FULL,
        Lower("C", "B", HELD_OUT_ERROR, margin=0.0025, min_epochs=250),
    ),
    *(
        Claim(
            f"The layered network with one rate (B) is clearly inferior to the other two "
            f"networks (here: {network}'s training error below B's at every epoch after the "
            "first)",
            _SOURCE,
            _FULL,
            BelowEachEpoch(network, "B", "train_error", min_epochs=250),
        )
        for network in ("C", "A")
    ),
)

PAGE = ResultsPage("Figure 3 (ICONS): error per epoch of A, B, C", REDUCTIONS, CLAIMS)


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """The declared runs of ``scale``, in training order."""
    return [(name, pr.scaled(pr.paper_config(name), scale, REDUCTIONS)) for name in ORDER]


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """Figure 3 (``errors.png``) and the same with the error axis cut to the low-error range
    (``errors_zoom.png``)."""
    shown = sorted(results, key=lambda r: r.name)  # A, B, C in plots and tables
    curves = [(curve_label(r), r.records) for r in shown if r.records]
    data = data_caption(r.config for r in shown)
    zoom = errors_figure(curves, title=f"{ERRORS_TITLE}, low-error range\n{data}")
    finals = [100 * held_out_error(r.records[-1]) for r in shown if r.records]
    zoom.axes[0].set_ylim(0, min(100.0, max([5.0, *(2 * f for f in finals)])))
    return {
        "errors.png": errors_figure(curves, title=f"{ERRORS_TITLE}\n{data}"),
        "errors_zoom.png": zoom,
    }


def curve_label(result: pr.RunResult) -> str:
    """A run's legend entry, from the config it ran with: ``"C: 64-32x3-10 ICONS skip (p =
    7.56%)"``."""
    return f"{result.name}: {network_label(result.config)}"


def _best(records: list[dict], key: str) -> tuple[float, int] | None:
    if not records:
        return None
    best = min(records, key=lambda r: (record_metric(r, key), r["epoch"]))
    return record_metric(best, key), best["epoch"]


def first_zero_epoch(records: list[dict]) -> int | None:
    """First epoch with 0% training error, or None."""
    return next((r["epoch"] for r in records if r["train_error"] == 0), None)


def _row(r: pr.RunResult) -> list[str]:
    last = r.records[-1] if r.records else {}
    best_train, best_test = _best(r.records, "train_error"), _best(r.records, HELD_OUT_ERROR)
    zero = first_zero_epoch(r.records)
    return [
        r.name,
        f"`{pr.NETWORKS[r.name]}`",
        f"{r.epochs_done}/{r.config.train.epochs}",
        pr.pct(last.get("train_error")),
        pr.pct(held_out_error(last) if last else None),
        f"{pr.pct(best_train[0])} ({best_train[1]})" if best_train else "–",
        f"{pr.pct(best_test[0])} ({best_test[1]})" if best_test else "–",
        str(zero) if zero is not None else "not reached",
        PAPER[r.name],
    ]


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    results = sorted(results, key=lambda r: r.name)
    header = [
        "network",
        "preset",
        "epochs",
        "final train",
        "final test",
        "best train (epoch)",
        "best test (epoch)",
        "first epoch at 0% train",
        "paper",
    ]
    protocol = (
        "Networks: A = layered 784-500x3-10 with per-pair rates .128/.032/.008/.002, each "
        "bias at its incoming pair's rate; A-authors = the same with every bias at rate 1 "
        "(what the authors' code did); "
        "B = layered, one rate .02; C = ICONS layer-skipping (n = 100,000 replacements, "
        "p = 7.56%), a = .05, rate .02 (docs/science.md section 4). Test error is the error on the "
        "held-out split (for MNIST's icons split the last 10,000 of the 60,000 training "
        "images). All four use the authors' weakly-clamped step (`icons` nudging), fixed "
        "batches in file order and persistent particles for the held-out examples. Training "
        "order C, A, A-authors, B; `EQPROP_ONLY` selects networks."
    )
    measurements = ["## Results", "", pr.table(header, [_row(r) for r in results]), ""]
    after = [
        "![Figure 3: training (solid) and test (dashed) error per epoch](errors.png)",
        "",
        "![Figure 3, low-error range](errors_zoom.png)",
        "",
        "Reading the plots: one colour per network, one marker per epoch; solid lines (filled "
        "markers) are the training error of each epoch (measured during training, on the "
        "examples as they were met), dashed lines (open markers) the held-out error after the "
        "epoch.",
        "",
    ]
    return PAGE.text(scale, results, departures, [protocol], measurements, after)
