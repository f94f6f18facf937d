"""Im, Patil & Branson, "Are skip connections necessary for biologically plausible learning
rules?": BP, FA and DTP on plain and densely connected networks against depth.

For every rule, architecture, activation, depth and seed the experiment trains one network
per learning rate of the grid and derives the result of every early-stopping starting point
from that run (exact, see :mod:`eqprop.baselines.training`). A row of the table is, per seed,
the grid point with the best *validation* accuracy; its test accuracy is reported. A scale's
seeds (:attr:`Protocol.seeds`) run at the shallowest and deepest depth of each activation,
its first seed also at the depths between; the claims judge the mean over seeds and state the
[min-max] over seeds. Outputs in ``out``:

- ``runs/*.json``: one file per training run, written atomically; a rerun skips the files that
  exist (:func:`run_settings` gives a run's settings: scales planning a run name with equal
  settings share its file, as ``paper-mlp`` shares those of ``mlp-budget``). Schema (what
  :func:`collect_rows` reads, so other rules, e.g. EP, can add rows by writing files of the
  same form): ``rule``, ``architecture``, ``activation``, ``depth`` and ``grid``, a list of
  ``{"hyperparameters": {...}, "valid_accuracy", "test_accuracy"}``; optional ``seed`` (0
  when absent), ``seconds`` and ``cpu_seconds``. Names: ``RULE-ARCH-ACT-dDEPTH-lrLR.json``,
  ``-sSEED`` before ``.json`` for seeds other than 0.
- ``baseline_checkpoints/NAME.pt``: the training state of an unfinished baseline run,
  written at every evaluation, from which a rerun goes on exactly (removed once the run
  file is written);
- ``ep_runs/<name>/``: the EP run directories (:mod:`eqprop.runs`: config, per-epoch
  metrics, checkpoint), scratch space that resumes exactly; an EP run's ``runs/*.json`` is
  written once the run has finished all its epochs;
- ``accuracy_vs_depth.png`` (the paper's Figure 1, plus an EP panel), ``sensitivity.png`` (its
  Figure 2: test accuracies of all grid points, sorted; baselines only): a row of panels per
  architecture family (NN vs DN, ConvNet vs DenseConvNet) and activation, a column per rule;
- ``results.md``: protocol, the paper's claims (:data:`CLAIMS`) judged on the run files, the
  table and the EP comparison.

EP rows (:class:`EPProtocol`): equilibrium propagation from the core on a layered network
(architecture "NN") and on the journal's layer-skipping network (architecture "skip": the
rewired topology, p = 0.1), 128 units per hidden layer, activation "hardsigmoid". Their
configurations derive from the presets ``frontiers-layered-deep`` and ``frontiers-skip-deep``
(one source of truth for lr, eps, beta, steps, particles, the nudging and the batch order: the
journal's ``icons`` nudging and ``shuffled-once`` order) with the sizes, data and budget of the
scale replaced. Their grid is the epochs of one run: the row is the epoch with the best
validation accuracy (EP's held-out evaluation on the validation split), and its test accuracy
is the official test set evaluated after the same epoch.

``eqprop reproduce skipnets --scale SCALE --out OUT`` trains (:func:`run`); with ``--status``
it prints the plan of the scale in ``OUT`` (:func:`status_text`: planned, finished and
remaining runs, estimated CPU time), with ``--results-only`` it draws the figures and writes
``results.md`` from the run files there (:func:`render_stage`), with ``--publish DEST`` it
also copies the stage into ``DEST`` (:func:`publish_stage`); these three train nothing.

The modules, one job each: :mod:`~eqprop.experiments.skipnets.protocol` (the scales and the
runs they plan), :mod:`~eqprop.experiments.skipnets.runfiles` (run file names, settings,
reading and checking), :mod:`~eqprop.experiments.skipnets.training` (the tasks that train the
runs, and :func:`run`), :mod:`~eqprop.experiments.skipnets.rows` (best grid points and
tables), :mod:`~eqprop.experiments.skipnets.claims` (the paper's claims),
:mod:`~eqprop.experiments.skipnets.figures`, :mod:`~eqprop.experiments.skipnets.ep_section`
and :mod:`~eqprop.experiments.skipnets.results` (the text of ``results.md``),
:mod:`~eqprop.experiments.skipnets.plan` (``--status``) and
:mod:`~eqprop.experiments.skipnets.stage` (rendering and publishing a stage).
"""

from __future__ import annotations

from eqprop.experiments.skipnets.claims import CLAIMS, CLAIMS_NOTE, DenseKeepsUp, DenseLessSensitive
from eqprop.experiments.skipnets.ep_section import ep_comparison, ep_section
from eqprop.experiments.skipnets.plan import estimate_cpu, plan_lines, status_text
from eqprop.experiments.skipnets.protocol import (
    EP_PRESETS,
    EP_RULE,
    PROTOCOLS,
    RULE_NAMES,
    SCALES,
    EPProtocol,
    Protocol,
    ep_config,
    planned_ep_runs,
    planned_runs,
    same_rates,
)
from eqprop.experiments.skipnets.results import coverage_lines, render_results
from eqprop.experiments.skipnets.rows import Row, collect_rows, format_seed_table, format_table
from eqprop.experiments.skipnets.runfiles import (
    RunSettings,
    load_records,
    record_key,
    run_name,
    run_settings,
    settings_record,
)
from eqprop.experiments.skipnets.stage import publish_stage, render_stage, stage_measured
from eqprop.experiments.skipnets.training import (
    CHECKPOINT_DIR,
    EP_DIR,
    pending_tasks,
    run,
    run_ep,
    train_baseline,
    train_ep,
)

__all__ = [
    "CHECKPOINT_DIR",
    "CLAIMS",
    "CLAIMS_NOTE",
    "DenseKeepsUp",
    "DenseLessSensitive",
    "EPProtocol",
    "EP_DIR",
    "EP_PRESETS",
    "EP_RULE",
    "PROTOCOLS",
    "Protocol",
    "RULE_NAMES",
    "Row",
    "RunSettings",
    "SCALES",
    "collect_rows",
    "coverage_lines",
    "ep_comparison",
    "ep_config",
    "ep_section",
    "estimate_cpu",
    "format_seed_table",
    "format_table",
    "load_records",
    "pending_tasks",
    "plan_lines",
    "planned_ep_runs",
    "planned_runs",
    "publish_stage",
    "record_key",
    "render_results",
    "render_stage",
    "run",
    "run_ep",
    "run_name",
    "run_settings",
    "same_rates",
    "settings_record",
    "stage_measured",
    "status_text",
    "train_baseline",
    "train_ep",
]
