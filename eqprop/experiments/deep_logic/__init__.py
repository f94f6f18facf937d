"""DEEP learning logic gates on a complete directed graph (Farinha et al., Figures 1 and 2).

An 8-neuron complete directed graph (2 inputs, 5 hidden, 1 output) learns AND, OR and XOR;
each gate and method is trained from 10 seeds. Methods: DEEP (eq. 1 dynamics, eq. 2 rule);
asymmetric EP (Scellier et al. 2018) with the same hyperparameters, and again with its
learning rate divided by ``M_beta`` (eq. 2 divides the path integral by ``M_beta``;
asymmetric EP takes one step, so the same learning rate gives it ``M_beta`` times larger
updates); DEEP with L1 and stochastic pruning (eq. 3) at a weak and a strong L1, the strong
one again with regrowth (pruned weights set to 0 but free to grow back, as in the authors'
notebook); and DEEP with the protocol of the authors' notebook (:data:`AUTHORS`).

Besides these, ``results.md`` compares our protocol with the notebook's point by point and
measures what the differences do: the notebook's protocol with one point at a time set to
ours (:func:`ablations`), and XOR from 100 seeds (:func:`searches`).

Outputs in ``out``: ``runs/<gate>-<method>.json`` (one per gate and method, resumable; the
100-seed runs are ``runs/xor-<method>-seeds0-99.json``), ``fig1_mse.png`` (MSE against
epoch: median, quartile and min-max bands), ``fig2_pruned.png`` (the sparsest pruned network
per gate) and ``results.md``.

The modules, one job each: :mod:`~eqprop.experiments.deep_logic.protocol` (gates, methods,
ablations, searches), :mod:`~eqprop.experiments.deep_logic.runfiles` (one resumable file per
gate and method), :mod:`~eqprop.experiments.deep_logic.figures`,
:mod:`~eqprop.experiments.deep_logic.claims` and :mod:`~eqprop.experiments.deep_logic.results`
(``results.md``); :func:`run` ties them together.
"""

from __future__ import annotations

from pathlib import Path

from eqprop.baselines.training import RunProgress
from eqprop.experiments.deep_logic.claims import (
    CLAIMS,
    CLAIMS_NOTE,
    AsSparse,
    Converges,
    FailsToLearn,
    MostlyButLess,
    SlowerNotAlways,
)
from eqprop.experiments.deep_logic.figures import _plot_mse, _plot_networks
from eqprop.experiments.deep_logic.protocol import (
    AUTHORS,
    GATES,
    PAPER_SPARSITY,
    SCALES,
    Method,
    ablations,
    methods,
    searches,
)
from eqprop.experiments.deep_logic.results import (
    _notebook_section,
    _results_markdown,
    stage_measured,
)
from eqprop.experiments.deep_logic.runfiles import _run_file, _run_path, _write_atomic

__all__ = [
    "AUTHORS",
    "CLAIMS",
    "CLAIMS_NOTE",
    "GATES",
    "PAPER_SPARSITY",
    "SCALES",
    "AsSparse",
    "Converges",
    "FailsToLearn",
    "Method",
    "MostlyButLess",
    "SlowerNotAlways",
    "ablations",
    "methods",
    "run",
    "searches",
    "stage_measured",
]


def run(scale: str, out: Path, data_dir: Path | None) -> Path:
    """Run (or resume) every gate and method of ``scale``, the ablations of the authors'
    protocol and the XOR seed search; write the figures and results.md.

    ``data_dir`` is unused: the truth tables are generated.
    """
    all_methods, seeds = methods(scale)
    out = Path(out)
    ablation_methods = ablations(scale)
    search_methods, search_seeds = searches(scale)
    suffix = f"-seeds{search_seeds[0]}-{search_seeds[-1]}"
    planned = [
        *(_run_path(out, g, m) for g in GATES for m in (*all_methods, *ablation_methods)),
        *(_run_path(out, "XOR", m, suffix) for m in search_methods),
    ]
    progress = RunProgress(
        len(planned),
        f"deep-logic {scale} (gate x method, every seed at once)",
        initial=sum(path.exists() for path in planned),
    )
    try:
        records = {
            (gate, method.name): _run_file(out, gate, method, seeds, progress=progress)
            for gate in GATES
            for method in all_methods
        }
        ablation_records = {
            (gate, method.name): _run_file(out, gate, method, seeds, progress=progress)
            for gate in GATES
            for method in ablation_methods
        }
        search_records = {
            method.name: _run_file(out, "XOR", method, search_seeds, suffix, progress)
            for method in search_methods
        }
    finally:
        progress.close()
    _plot_mse(records, all_methods, out / "fig1_mse.png")
    pruned = tuple(m for m in all_methods if m.config.prune_threshold > 0)
    _plot_networks(records, pruned, out / "fig2_pruned.png")
    notebook = _notebook_section(
        scale,
        records,
        ablation_records,
        search_records,
        all_methods,
        ablation_methods,
        search_methods,
        search_seeds,
    )
    every = [*records.values(), *ablation_records.values(), *search_records.values()]
    seconds = sum(record["seconds"] for record in every)
    results = out / "results.md"
    text = _results_markdown(scale, records, all_methods, seeds, notebook, seconds)
    _write_atomic(results, lambda f: f.write(text.encode()))
    return results
