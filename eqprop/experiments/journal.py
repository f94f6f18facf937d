"""The journal version's deeper networks (Gammell, Nam & McCaughan 2021, "Layer-Skipping
Connections Improve the Effectiveness of Equilibrium Propagation on Layered Networks",
Frontiers in Neuroscience): 784-100x5-10, layered against rewired (p = 10%), on MNIST and on
Fashion-MNIST.

The journal's claim: with five hidden layers the layered network trains far worse than the
rewired one, on both datasets (its Figure 4 shows why: the per-layer rates of the layered
network fall by orders of magnitude away from the output).

Runs (the presets ``frontiers-layered-deep`` and ``frontiers-skip-deep``: rate .015, 1000
free and 12 weakly-clamped steps, batch 20, batches shuffled once, persistent particles,
standard 60k/10k split, 100 epochs), in this order: ``layered-mnist``, ``skip-mnist``,
``layered-fashion``, ``skip-fashion``.

Scales:

- ``smoke``: the bundled 8x8 digits with hidden layers of 32 (same depth), first 300
  examples, at most 20 free steps, 3 epochs; both "datasets" are the digits (seconds).
- ``quick``: the first 10,000 examples of each split, free steps / 5 (200), 5 epochs.
- ``full``: the presets unchanged. With ``--fast`` (the validated fast free phase: SOR on the
  layered network, FISTA on the rewired one) an epoch takes about a minute on one core.

Outputs in ``out``: ``errors.png`` (training and held-out error per epoch of the four
runs), ``layer_rates.png`` (each layer pair's rate per batch, averaged over each epoch, of
each run: the journal's Figure 4 bottom row; a full run's 300,000 batches drawn one by one
are a solid band, and its per-epoch means are in the committed ``metrics.jsonl`` where its
per-batch files are not) and ``results.md``.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import Claim, Lower
from eqprop.experiments.departures import Departures
from eqprop.experiments.report import ResultsPage
from eqprop.metrics import HELD_OUT_ERROR, held_out_error, record_metric
from eqprop.plots import data_caption, epoch_rates_figure, errors_figure, network_label

SCALES = pr.SCALES
#: run name -> (network of :data:`~eqprop.experiments.paper_runs.NETWORKS`, dataset)
RUNS = {
    "layered-mnist": ("deep-layered", "mnist"),
    "skip-mnist": ("deep-skip", "mnist"),
    "layered-fashion": ("deep-layered", "fashion-mnist"),
    "skip-fashion": ("deep-skip", "fashion-mnist"),
}
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, epochs=3, small=True),
    "quick": pr.Reduction(limit=10_000, free_divisor=5, epochs=5),
}
#: "far worse", read as: at least this much higher training error (mean of the last 5 epochs)
FAR = 0.05
_SOURCE = (
    "Gammell, Nam & McCaughan 2021 (journal version), Figure 4; the Fashion-MNIST runs from "
    "the authors' code and logs"
)
CLAIMS = tuple(
    Claim(
        f"With five hidden layers the layered network trains far worse than the rewired one "
        f"(p = 10%) on {label} (here: training error at least {100 * FAR:.0f} points higher)",
        _SOURCE,
        "full: 100 epochs",
        Lower(f"skip-{key}", f"layered-{key}", "train_error", margin=FAR, min_epochs=100),
    )
    for key, label in (("mnist", "MNIST"), ("fashion", "Fashion-MNIST"))
)

PAGE = ResultsPage(
    "Journal version: five hidden layers, layered against rewired", REDUCTIONS, CLAIMS
)


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """The declared runs of ``scale``, in training order."""
    declared = []
    for name, (network, dataset) in RUNS.items():
        config = pr.paper_config(network).override({"data.dataset": dataset})
        declared.append((name, pr.scaled(config, scale, REDUCTIONS)))
    return declared


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """``errors.png`` (training and held-out error per epoch) and ``layer_rates.png`` (each
    run's per-layer rates, averaged over each epoch's batches)."""
    curves = [(f"{r.name}: {network_label(r.config)}", r.records) for r in results if r.records]
    data = data_caption(r.config for r in results)
    title = "Per-layer training rates (eq. 2), mean over each epoch's batches"
    return {
        "errors.png": errors_figure(curves, title=f"Error per epoch\n{data}"),
        "layer_rates.png": epoch_rates_figure([(r.name, r.records) for r in results], title=title),
    }


def _mean_last(records: list[dict], key: str, window: int = 5) -> float | None:
    """Mean of ``key`` over the last ``window`` finished epochs (None without any)."""
    values = [record_metric(r, key) for r in records[-window:]]
    return sum(values) / len(values) if values else None


def comparison_lines(results: list[pr.RunResult]) -> list[str]:
    """Markdown bullets: layered against rewired on each dataset, at the epochs both reached
    (errors averaged over the last five of those epochs, since one epoch's held-out error
    moves by points from run to run)."""
    by = {r.name: r for r in results}
    lines = []
    for dataset in ("mnist", "fashion"):
        layered, skip = by[f"layered-{dataset}"], by[f"skip-{dataset}"]
        common = min(layered.epochs_done, skip.epochs_done)
        if not common:
            lines.append(f"- {dataset}: no epoch finished by both runs yet.")
            continue
        a = [r for r in layered.records if r["epoch"] <= common]
        b = [r for r in skip.records if r["epoch"] <= common]
        window = min(5, common)
        parts = [
            f"{what} {pr.pct(_mean_last(a, key))} layered against {pr.pct(_mean_last(b, key))} "
            "rewired"
            for what, key in (("training error", "train_error"), ("held-out error", HELD_OUT_ERROR))
        ]
        lines.append(
            f"- {dataset}, epochs {common - window + 1}-{common} (mean): {'; '.join(parts)}."
        )
    return lines


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    header = ["run", "epochs", "final train", "final held-out", "best held-out (epoch)"]
    rows = []
    for r in results:
        last = r.records[-1] if r.records else {}
        best = min(r.records, key=lambda x: (held_out_error(x), x["epoch"])) if r.records else None
        rows.append(
            [
                r.name,
                f"{r.epochs_done}/{r.config.train.epochs}",
                pr.pct(last.get("train_error")),
                pr.pct(held_out_error(last) if last else None),
                f"{pr.pct(held_out_error(best))} ({best['epoch']})" if best else "–",
            ]
        )
    protocol = (
        "Networks: 784-100x5-10 layered, and rewired with p = 10% (no intralayer edges, "
        "a = 0.168), rate .015, the authors' weakly-clamped step, batches shuffled once, "
        "persistent particles; the held-out error is the official test set (standard split)."
    )
    after = [
        "## Layered against rewired",
        "",
        *comparison_lines(results),
        "",
        "![Error per epoch](errors.png)",
        "",
        "![Per-layer rates](layer_rates.png)",
        "",
    ]
    measurements = ["## Results", "", pr.table(header, rows), ""]
    return PAGE.text(scale, results, departures, [protocol], measurements, after)
