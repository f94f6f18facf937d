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

``python -m eqprop.experiments.skipnets SCALE OUT`` prints the plan of a scale in an output
directory (:func:`plan_lines`: planned, finished and remaining runs, estimated CPU time)
and trains nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from eqprop.baselines import (
    ArchitectureConfig,
    FeedforwardNetwork,
    TrainConfig,
    TrainingData,
    make_rule,
)
from eqprop.baselines import train as train_rule
from eqprop.baselines.architectures import ACTIVATIONS
from eqprop.config import RunConfig, from_dict, preset
from eqprop.data import load_dataset
from eqprop.errors import ConfigError, DivergenceError
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict, claims_section
from eqprop.metrics import held_out_error
from eqprop.runs import (
    CONFIG,
    RunOptions,
    atomic_write_bytes,
    load_data,
    read_config,
    read_metrics,
    start_run,
    train_run,
)
from eqprop.sweeps.placement import Placement, run_tasks
from eqprop.sweeps.tasks import RAY_DIR, Task

SCALES = ("smoke", "quick", "mlp-budget", "paper-mlp", "full")
RULE_NAMES = ("BP", "FA", "DTP")
#: plain architecture -> its densely connected counterpart
PAIRS = {"NN": "DN", "ConvNet": "DenseConvNet"}
#: (rule, architecture, activation, depth) of the reference run: a linear softmax readout of the
#: pixels (no hidden layer), the path every dense network has from its input to its output
LINEAR = ("BP", "linear", "none", 0)
#: the criteria of the Figure 1 claims (:class:`DenseKeepsUp`), in accuracy fractions
NEAR_BP = 0.02
DEGRADE_MARGIN = 0.01

_LOG = logging.getLogger(__name__)

#: EP's rule name, activation label, and architecture label -> the preset its config derives from
EP_RULE = "EP"
EP_ACTIVATION = "hardsigmoid"
EP_PRESETS = {"NN": "frontiers-layered-deep", "skip": "frontiers-skip-deep"}
#: input features per dataset (EP's configs are built before any data is loaded)
_N_INPUTS = {"digits": 64, "mnist": 784, "fashion-mnist": 784}
_N_CLASSES = 10
EP_DIR = "ep_runs"
#: the training state of unfinished baseline runs (see :func:`train_baseline`)
CHECKPOINT_DIR = "baseline_checkpoints"


@dataclass(frozen=True)
class EPProtocol:
    """The EP rows of one scale.

    Attributes:
        depths: hidden layers of each EP network.
        dataset: dataset name, loaded with ``split="icons"``.
        limit: keep the first examples of *each* split (None: all), as ``data.limit``.
        hidden: units per hidden layer.
        overrides: further :class:`~eqprop.config.RunConfig` fields replaced over the preset,
            as ``section.key`` (the budget of the scale: ``free.steps``, ``train.epochs``, ...).
        note: how this scale departs from the journal's protocol, stated in ``results.md``.
    """

    depths: tuple[int, ...]
    dataset: str = "mnist"
    limit: int | None = None
    hidden: int = 128
    overrides: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Protocol:
    """Everything one scale of the experiment runs.

    Attributes:
        dataset: dataset name, loaded with ``split="icons"`` (train / valid / test).
        train_limit, valid_limit, test_limit: keep the first examples of each split (None: all).
        architectures: architectures to train.
        depths: activation -> depths.
        learning_rates: (rule, activation) -> Adam learning rates.
        early_stop_starts: "mlp" / "conv" -> early-stopping starting points (examples seen).
        max_examples: "mlp" / "conv" -> cap on examples seen per run.
        eval_every: examples between validation evaluations.
        patience: evaluations without validation improvement that stop a run.
        seeds: seeds of the baseline runs at the shallowest and deepest depth of each
            activation; the depths between run with the first seed only, as do the linear
            readout and the EP rows. A seed seeds initialisation, feedback matrices, DTP noise
            and batch order (EP: initialisation, particles and batch order). Run files of the
            first seed 0 keep the names without a seed (:func:`run_name`).
        channels_per_depth: a ConvNet's hidden layers have ``channels_per_depth * depth``
            channels (the paper's "channel size (depth x 16)").
        caveat: what this scale cannot show, stated in ``results.md``.
        ep: the EP rows of this scale (None: none).
    """

    dataset: str
    train_limit: int | None
    valid_limit: int | None
    test_limit: int | None
    architectures: tuple[str, ...]
    depths: Mapping[str, tuple[int, ...]]
    learning_rates: Mapping[tuple[str, str], tuple[float, ...]]
    early_stop_starts: Mapping[str, tuple[int, ...]]
    max_examples: Mapping[str, int]
    eval_every: int
    patience: int
    seeds: tuple[int, ...] = (0,)
    channels_per_depth: int = 16
    caveat: str = ""
    ep: EPProtocol | None = None

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"Protocol.seeds must be distinct seeds, got {self.seeds!r}")

    @property
    def seed(self) -> int:
        """The first seed: that of the middle depths, the linear readout and the EP rows."""
        return self.seeds[0]

    def seeds_at(self, activation: str, depth: int) -> tuple[int, ...]:
        """The seeds of the baseline runs at ``depth`` with ``activation``: all of
        :attr:`seeds` at the shallowest and deepest depth, the first elsewhere."""
        depths = self.depths[activation]
        return self.seeds if depth in (min(depths), max(depths)) else self.seeds[:1]


def _same_rates(sigmoid: tuple[float, ...], relu: tuple[float, ...]) -> dict:
    return {
        (rule, act): rates
        for rule in RULE_NAMES
        for act, rates in (("sigmoid", sigmoid), ("relu", relu))
    }


#: the paper's Table 1 learning rates
TABLE1_RATES = {
    ("BP", "sigmoid"): (1e-1, 1e-2, 1e-3),
    ("FA", "sigmoid"): (1e-2, 1e-3, 1e-4),
    ("DTP", "sigmoid"): (1e-2, 1e-3, 1e-4),
    **{(rule, "relu"): (1e-3, 1e-4, 1e-5) for rule in RULE_NAMES},
}
#: the EP rows of the quick and mlp-budget scales: the journal's settings but the free phase
#: by FISTA to the fixed point (`reproduce solvers` measures how it learns against the
#: fixed steps) instead of the journal's 1000 fixed steps, and 2 epochs of the 50k training
#: images (100k examples, against the quick baselines' 80k cap)
SHORT_EP = EPProtocol(
    depths=(3, 5),
    overrides={
        "free.solver": "fista",
        "free.tol": 1e-3,
        "free.steps": 1000,
        "train.epochs": 2,
    },
    note=(
        "the free phase run by FISTA to a fixed-point residual below 1e-3 (at most "
        "1,000 steps) instead of the journal's 1000 fixed steps, and 2 epochs instead "
        "of its 100 (budget comparable to the baselines' 80k-example cap); the "
        "journal's networks have 100 units per hidden layer and train on the standard "
        "60k split."
    ),
)

PROTOCOLS: dict[str, Protocol] = {
    # Seconds on sklearn's digits (1,150 / 287 / 360 examples, 8x8): plumbing only. All four
    # architectures; the ConvNets with 2 x depth channels and 1 epoch.
    "smoke": Protocol(
        dataset="digits",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN", "ConvNet", "DenseConvNet"),
        depths={"sigmoid": (3, 4), "relu": (5, 6)},
        learning_rates=_same_rates((1e-2,), (1e-3,)),
        early_stop_starts={"mlp": (2_300, 4_600), "conv": (575, 1_150)},
        max_examples={"mlp": 5_750, "conv": 1_150},
        eval_every=1_150,
        patience=2,
        channels_per_depth=2,
        caveat=(
            "Plumbing check on a tiny dataset with a few epochs (ConvNets: 1 epoch, 2 x depth "
            "channels instead of the paper's 16 x depth); says nothing about the claims."
        ),
        ep=EPProtocol(
            depths=(3, 4),
            dataset="digits",
            overrides={"free.steps": 20, "train.epochs": 2},
            note="Plumbing check: digits, 20 free steps, 2 epochs.",
        ),
    ),
    # MNIST, all 50k training images but a short budget (80k examples, 1.6 epochs; the paper's
    # starting points are 200k-1000k), 3 of the paper's depths per activation, 2 learning rates
    # from inside its Table 1 ranges, MLPs only, validation on the first 5k of the 10k.
    "quick": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=5_000,
        test_limit=None,
        architectures=("NN", "DN"),
        depths={"sigmoid": (3, 5, 7), "relu": (5, 7, 10)},
        learning_rates=_same_rates((1e-2, 1e-3), (1e-3, 1e-4)),
        early_stop_starts={"mlp": (40_000, 80_000)},
        max_examples={"mlp": 80_000},
        eval_every=20_000,
        patience=1,
        caveat=(
            "Short budget: at most 80k examples (1.6 epochs) per run against the paper's "
            "200k-1000k, so networks that learn slowly (deep plain ones especially) are "
            "penalised more than under the paper's protocol; 3 depths per activation, 2 "
            "learning rates, validation on 5k examples, one seed."
        ),
        ep=SHORT_EP,
    ),
    # The paper's budget (section 3, Table 1: early-stopping starting points 200k-1000k,
    # patience 3 evaluations of 50k examples, its learning rates) for the MLPs at the
    # shallowest and deepest of its depths per activation; the EP rows as in `quick`.
    "mlp-budget": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN"),
        depths={"sigmoid": (3, 7), "relu": (5, 10)},
        learning_rates=TABLE1_RATES,
        early_stop_starts={"mlp": (200_000, 400_000, 600_000, 800_000, 1_000_000)},
        max_examples={"mlp": 1_500_000},
        eval_every=50_000,
        patience=3,
        caveat=(
            "The paper's budget and learning rates, but MLPs only, at the shallowest and "
            "deepest of its depths per activation, one seed; EP rows at the quick scale's "
            "short budget. ConvNets not run: their grid costs about 4,700 CPU hours "
            "(estimate, docs/reproducing.md, 'Budget of the skipnets grid')."
        ),
        ep=SHORT_EP,
    ),
    # `mlp-budget` completed: every depth of the paper's MLP grid, seeds 0-2 at the shallowest
    # and deepest depth per activation. Its seed-0 runs are those of `mlp-budget` (the same
    # settings and file names), so an output directory holding them goes on from there.
    "paper-mlp": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN"),
        depths={"sigmoid": (3, 4, 5, 6, 7), "relu": (5, 6, 7, 8, 9, 10)},
        learning_rates=TABLE1_RATES,
        early_stop_starts={"mlp": (200_000, 400_000, 600_000, 800_000, 1_000_000)},
        max_examples={"mlp": 1_500_000},
        eval_every=50_000,
        patience=3,
        seeds=(0, 1, 2),
        caveat=(
            "The paper's budget, learning rates and MLP depths; seeds 0-2 at the shallowest and "
            "deepest depth per activation, seed 0 between; EP rows at the quick scale's short "
            "budget. ConvNets not run: their grid costs about 4,700 CPU hours "
            "(estimate, docs/reproducing.md, 'Budget of the skipnets grid')."
        ),
        ep=SHORT_EP,
    ),
    # The paper's protocol (section 3, Table 1): MNIST 50k / 10k / 10k, depths 3-7 (sigmoid)
    # and 5-10 (ReLU), three learning rates per rule and activation, early-stopping starting
    # points 200k-1000k for MLPs and 50k-150k for ConvNets.
    "full": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN", "ConvNet", "DenseConvNet"),
        depths={"sigmoid": (3, 4, 5, 6, 7), "relu": (5, 6, 7, 8, 9, 10)},
        learning_rates=TABLE1_RATES,
        early_stop_starts={
            "mlp": (200_000, 400_000, 600_000, 800_000, 1_000_000),
            "conv": (50_000, 100_000, 150_000),
        },
        max_examples={"mlp": 1_500_000, "conv": 300_000},
        eval_every=50_000,
        patience=3,
        seeds=(0, 1, 2),
        caveat=(
            "Seeds 0-2 at the shallowest and deepest depth per activation, seed 0 between; the "
            "ConvNet grid costs about 4,700 CPU hours (estimate, docs/reproducing.md, 'Budget "
            "of the skipnets grid')."
        ),
        # EP: the journal's protocol (N_free 1000, N_clamped 12, lr .015, 100 epochs) on the
        # paper's sigmoid depths, 128 units per hidden layer.
        ep=EPProtocol(
            depths=(3, 4, 5, 6, 7),
            note=(
                "The journal's dynamics and budget (N_free 1000, 100 epochs) with 128 units per "
                "hidden layer (the journal's have 100) on the icons split (50k train, the 10k "
                "validation images for model selection) instead of the standard 60k split."
            ),
        ),
    ),
}


@dataclass(frozen=True)
class Row:
    """One line of the results table: the best grid point of one configuration and seed."""

    rule: str
    architecture: str
    activation: str
    depth: int
    hyperparameters: dict[str, float]
    valid_accuracy: float
    test_accuracy: float
    seed: int = 0


def _family(architecture: str) -> str:
    """Which early-stopping grid an architecture uses: "conv" or "mlp" (the linear readout)."""
    return "conv" if "Conv" in architecture else "mlp"


def _run_name(
    rule: str, architecture: str, activation: str, depth: int, lr: float, seed: int = 0
) -> str:
    """The run file's name: ``RULE-ARCH-ACT-dDEPTH-lrLR.json``, with ``-sSEED`` before
    ``.json`` for seeds other than 0 (seed 0 keeps the names of the one-seed scales, so their
    run files count as this seed's)."""
    suffix = f"-s{seed}" if seed else ""
    return f"{rule}-{architecture}-{activation}-d{depth}-lr{lr:g}{suffix}.json"


def _record_seed(record: Mapping) -> int:
    """The seed of a run file (files written before seeds were recorded: 0, their only seed)."""
    return int(record.get("seed", 0))


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines one baseline run's training (besides the rule's name):
    two scales whose settings of a run name are equal can share its run file."""

    data: tuple[str, int | None, int | None, int | None]
    architecture: ArchitectureConfig
    train: TrainConfig
    early_stop_starts: tuple[int, ...]
    seed: int


def settings_record(settings: RunSettings) -> dict:
    """``settings`` as a run file records them (JSON values: tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def run_settings(
    protocol: Protocol,
    architecture: str,
    activation: str,
    depth: int,
    learning_rate: float,
    seed: int = 0,
) -> RunSettings:
    """The settings of the baseline run of ``protocol`` on ``architecture`` (or the linear
    readout, ``"linear"``) at ``depth`` with ``learning_rate`` and ``seed``."""
    family = _family(architecture)
    starts = tuple(protocol.early_stop_starts[family])
    if architecture == LINEAR[1]:
        arch = ArchitectureConfig("NN", depth=0)
    else:
        arch = ArchitectureConfig(
            architecture, depth, activation, channels_per_depth=protocol.channels_per_depth
        )
    config = TrainConfig(
        learning_rate=learning_rate,
        early_stop_start=max(starts),
        patience=protocol.patience,
        max_examples=protocol.max_examples[family],
        eval_every=protocol.eval_every,
        seed=seed,
    )
    data = (protocol.dataset, protocol.train_limit, protocol.valid_limit, protocol.test_limit)
    return RunSettings(data, arch, config, starts, seed)


def _train_one(
    protocol: Protocol,
    data: TrainingData,
    rule_name: str,
    architecture: str,
    activation: str,
    depth: int,
    learning_rate: float,
    checkpoint: Path | None = None,
    seed: int = 0,
) -> dict:
    """Train one network with ``seed`` and return its result record (the run file's content);
    with ``checkpoint``, an interrupted run goes on from that file
    (:func:`eqprop.baselines.train`)."""
    settings = run_settings(protocol, architecture, activation, depth, learning_rate, seed)
    arch, config, starts = settings.architecture, settings.train, settings.early_stop_starts
    network = FeedforwardNetwork(arch, data.input_shape(arch.convolutional), data.n_classes, seed)
    desc = Path(_run_name(rule_name, architecture, activation, depth, learning_rate, seed)).stem
    rule = make_rule(rule_name, network, seed)
    result = train_rule(rule, data, config, desc=desc, checkpoint=checkpoint)
    grid = []
    for start in starts:
        chosen = result.select(start)
        grid.append(
            {
                "hyperparameters": {"learning_rate": learning_rate, "early_stop_start": start},
                "valid_accuracy": chosen.valid_accuracy,
                "test_accuracy": chosen.test_accuracy,
                "examples": chosen.examples,
            }
        )
    return {
        "rule": rule_name,
        "architecture": architecture,
        "activation": activation,
        "depth": depth,
        "seed": seed,
        "settings": settings_record(settings),
        "threads": torch.get_num_threads(),
        "grid": grid,
        "diverged": result.diverged,
        "seconds": result.seconds,
        "cpu_seconds": result.cpu_seconds,
        "history": [
            {
                "examples": e.examples,
                "valid_accuracy": e.valid_accuracy,
                "test_accuracy": None if math.isnan(e.test_accuracy) else e.test_accuracy,
                "train_stats": e.train_stats,
            }
            for e in result.evaluations
        ],
    }


def _load_data(protocol: Protocol, data_dir: Path | None) -> TrainingData:
    dataset = load_dataset(protocol.dataset, split="icons", data_dir=data_dir)
    return TrainingData.from_dataset(
        dataset,
        train_limit=protocol.train_limit,
        valid_limit=protocol.valid_limit,
        test_limit=protocol.test_limit,
    )


def _planned_runs(protocol: Protocol) -> list[tuple[str, str, str, int, float, int]]:
    """Every baseline run of the protocol as ``(rule, architecture, activation, depth, lr,
    seed)``: the linear readout (BP's ReLU learning rates, first seed) first, then the first
    seed activation by activation (so that a budget cut short leaves whole activations), then
    each further seed at the shallowest and deepest depths."""
    linear = [(*LINEAR, lr, protocol.seed) for lr in protocol.learning_rates[("BP", "relu")]]
    return linear + [
        (rule, arch, act, depth, lr, seed)
        for seed in protocol.seeds
        for act, depths in protocol.depths.items()
        for depth in depths
        if seed in protocol.seeds_at(act, depth)
        for arch in protocol.architectures
        for rule in RULE_NAMES
        for lr in protocol.learning_rates[(rule, act)]
    ]


def ep_config(protocol: Protocol, architecture: str, depth: int) -> RunConfig:
    """The EP run configuration of ``architecture`` ("NN" or "skip") at ``depth``: its preset
    with the data, sizes, evaluation and budget of ``protocol`` replaced."""
    ep = protocol.ep
    if ep is None:
        raise ConfigError("this skipnets scale has no EP rows")
    if architecture not in EP_PRESETS:
        raise ConfigError(
            f"EP architecture must be one of {', '.join(EP_PRESETS)}; got {architecture!r}"
        )
    base = from_dict(preset(EP_PRESETS[architecture]))
    sizes = [_N_INPUTS[ep.dataset], *[ep.hidden] * depth, _N_CLASSES]
    return base.override(
        {
            "description": (
                f"skipnets EP row: {architecture} ({base.topology.family}) "
                f"{sizes[0]}-{ep.hidden}x{depth}-{sizes[-1]}, "
                f"from preset {EP_PRESETS[architecture]}"
            ),
            "data.dataset": ep.dataset,
            "data.split": "icons",
            "data.limit": ep.limit,
            "topology.sizes": sizes,
            "train.evaluate_test": True,
            "train.seed": protocol.seed,
            **ep.overrides,
        }
    )


def _planned_ep_runs(protocol: Protocol) -> list[tuple[str, int]]:
    """(architecture, depth) of every EP run of the protocol."""
    if protocol.ep is None:
        return []
    return [(arch, depth) for depth in protocol.ep.depths for arch in EP_PRESETS]


def _ep_name(config: RunConfig, architecture: str, depth: int) -> str:
    lr = config.update.lr if isinstance(config.update.lr, float) else config.update.lr[0]
    return _run_name(EP_RULE, architecture, EP_ACTIVATION, depth, lr)


def _ep_record(
    config: RunConfig,
    architecture: str,
    depth: int,
    metrics: Sequence[Mapping],
    cpu_seconds: float,
    diverged: bool,
    data_dir: Path | None,
) -> dict:
    """The run file of a finished (or diverged) EP run: one grid point per epoch."""
    data = load_data(config, data_dir)
    n_train, n_valid, n_test = len(data.train), len(data.held_out), len(data.test)
    lr = config.update.lr if isinstance(config.update.lr, float) else list(config.update.lr)
    grid, history = [], []
    for m in metrics:
        valid = round(1.0 - held_out_error(m), 6)
        test = round(1.0 - m["official_test_error"], 6)
        examples = m["epoch"] * n_train
        grid.append(
            {
                "hyperparameters": {"learning_rate": lr, "epoch": m["epoch"]},
                "valid_accuracy": valid,
                "test_accuracy": test,
                "examples": examples,
            }
        )
        history.append(
            {
                "epoch": m["epoch"],
                "examples": examples,
                "valid_accuracy": valid,
                "test_accuracy": test,
                "train_stats": {
                    "train_error": m["train_error"],
                    "free_steps": m["free_steps"],
                    "layer_rates": m["layer_rates"],
                },
                "wall_time": m["wall_time"],
            }
        )
    return {
        "rule": EP_RULE,
        "architecture": architecture,
        "activation": EP_ACTIVATION,
        "depth": depth,
        "grid": grid,
        "diverged": diverged,
        "seconds": metrics[-1]["wall_time"] if metrics else 0.0,
        "cpu_seconds": cpu_seconds,
        "examples_per_epoch": n_train,
        "valid_examples": n_valid,
        "test_examples": n_test,
        "config": config.to_dict(),
        "history": history,
    }


_CPU_FILE = "skipnets_cpu_seconds.json"


def run_ep(
    protocol: Protocol, architecture: str, depth: int, out: Path, data_dir: Path | None
) -> Path:
    """Train (or resume, or skip when done) one EP run of ``protocol`` and write its run file
    ``out/runs/EP-...json``; return that path.

    The run directory ``out/ep_runs/<name>`` resumes exactly (:func:`eqprop.runs.train_run`);
    it must hold this very configuration. CPU seconds spent on it are summed over invocations
    in the run directory.
    """
    config = ep_config(protocol, architecture, depth)
    name = _ep_name(config, architecture, depth)
    path = Path(out) / "runs" / name
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(out) / EP_DIR / Path(name).stem
    if (run_dir / CONFIG).exists():
        if read_config(run_dir) != config:
            raise ConfigError(
                f"{run_dir} holds an EP run with another configuration; delete it to retrain"
            )
    else:
        start_run(config, run_dir)
    cpu_file = run_dir / _CPU_FILE
    spent = json.loads(cpu_file.read_text())["cpu_seconds"] if cpu_file.exists() else 0.0
    begin = time.process_time()
    diverged = False
    try:  # its epoch lines go to stderr, beside the progress: stdout has only results.md
        with contextlib.redirect_stdout(sys.stderr):
            train_run(run_dir, RunOptions(data_dir=data_dir, quiet=True))
    except DivergenceError as exc:
        _LOG.warning("skipnets %s diverged: %s", name, exc)
        diverged = True
    finally:
        spent += time.process_time() - begin
        atomic_write_bytes(cpu_file, json.dumps({"cpu_seconds": spent}).encode())
    metrics = read_metrics(run_dir)
    record = _ep_record(config, architecture, depth, metrics, spent, diverged, data_dir)
    atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    best = max((point["valid_accuracy"] for point in record["grid"]), default=math.nan)
    _LOG.info("skipnets %s: best valid %.4f (%.0f s)", path.stem, best, record["seconds"])
    return path


@functools.lru_cache(maxsize=2)
def _cached_data(scale: str, data_dir: str | None) -> TrainingData:
    """The baselines' data of ``scale``, loaded once per process (a Ray worker runs task
    after task)."""
    return _load_data(PROTOCOLS[scale], Path(data_dir) if data_dir else None)


def train_baseline(
    scale: str,
    rule: str,
    architecture: str,
    activation: str,
    depth: int,
    learning_rate: float,
    out: str,
    data_dir: str | None,
    seed: int = 0,
) -> dict:
    """The task of one baseline run (with ``seed``): train it and write its run file
    ``out/runs/NAME.json`` (nothing to do when the file exists). A run writes its file only
    when it has finished; until then it checkpoints at every evaluation into
    ``out/baseline_checkpoints/``, so one interrupted goes on from its last evaluation (the
    checkpoint is removed once the run file is written)."""
    name = _run_name(rule, architecture, activation, depth, learning_rate, seed)
    path = Path(out) / "runs" / name
    checkpoint = Path(out) / CHECKPOINT_DIR / f"{path.stem}.pt"
    if not path.exists():
        data = _cached_data(scale, data_dir)
        protocol = PROTOCOLS[scale]
        for folder in (path.parent, checkpoint.parent):
            folder.mkdir(parents=True, exist_ok=True)
        record = _train_one(
            protocol, data, rule, architecture, activation, depth, learning_rate, checkpoint, seed
        )
        atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    checkpoint.unlink(missing_ok=True)  # also one left by a stop right after the run file
    record = json.loads(path.read_text())
    return {"best_valid": max(point["valid_accuracy"] for point in record["grid"])}


def train_ep(scale: str, architecture: str, depth: int, out: str, data_dir: str | None) -> dict:
    """The task of one EP run (:func:`run_ep`)."""
    data = Path(data_dir) if data_dir else None
    path = run_ep(PROTOCOLS[scale], architecture, depth, Path(out), data)
    record = json.loads(path.read_text())
    return {"best_valid": max((p["valid_accuracy"] for p in record["grid"]), default=math.nan)}


def _tasks(protocol: Protocol, scale: str, out: Path, data_dir: Path | None) -> list[Task]:
    """One task per run of ``protocol`` whose run file is missing, in the order of the
    protocol (the baselines, then EP)."""
    runs_dir = out / "runs"
    data = str(Path(data_dir).resolve()) if data_dir is not None else None
    common = {"scale": scale, "out": str(out.resolve()), "data_dir": data}
    tasks = []
    for rule, arch, act, depth, lr, seed in _planned_runs(protocol):
        name = _run_name(rule, arch, act, depth, lr, seed)
        if (runs_dir / name).exists():
            _check_baseline_file(runs_dir / name, protocol, scale)
        else:
            run = {"rule": rule, "architecture": arch, "activation": act, "depth": depth}
            kwargs = {**common, **run, "learning_rate": lr, "seed": seed}
            tasks.append(Task(Path(name).stem, f"{__name__}:train_baseline", kwargs))
    for arch, depth in _planned_ep_runs(protocol):
        config = ep_config(protocol, arch, depth)
        name = _ep_name(config, arch, depth)
        if (runs_dir / name).exists():
            _check_ep_file(runs_dir / name, config, scale)
        else:
            kwargs = {**common, "architecture": arch, "depth": depth}
            tasks.append(Task(Path(name).stem, f"{__name__}:train_ep", kwargs))
    return tasks


def _check_baseline_file(path: Path, protocol: Protocol, scale: str) -> None:
    """A one-line ConfigError unless the baseline run file ``path`` was trained with the
    settings ``protocol`` gives its run (scales share run names; a file written before
    settings were recorded is taken as it is)."""
    try:
        record = json.loads(path.read_text())
        key = _record_key(record)
        recorded = record.get("settings")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path} is not a readable run file ({exc}); delete it to retrain"
        ) from exc
    if recorded is None:
        return
    lr = record["grid"][0]["hyperparameters"]["learning_rate"]
    declared = run_settings(protocol, key[1], key[2], key[3], lr, _record_seed(record))
    if recorded != settings_record(declared):
        raise ConfigError(
            f"{path} holds a run of other settings than scale {scale!r} declares (its data, "
            f"budget or network); use another --out for this scale, or delete the file to "
            f"retrain it"
        )


def _check_ep_file(path: Path, config: RunConfig, scale: str) -> None:
    """A one-line ConfigError unless the EP run file ``path`` was trained with ``config``
    (the scales' EP rows share names: ``full``'s depth-3 row is not ``quick``'s)."""
    try:
        recorded = from_dict(json.loads(path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ConfigError(
            f"{path} is not a readable EP run file ({exc}); delete it to retrain"
        ) from exc
    if recorded != config:
        raise ConfigError(
            f"{path} holds an EP run of other settings than scale {scale!r} declares; use "
            f"another --out for this scale, or delete the file to retrain it"
        )


def run(scale: str, out: Path, data_dir: Path | None, placement: Placement | None = None) -> Path:
    """Run (or resume) the experiment at ``scale`` into ``out``; return ``results.md``.

    Every run is a task (:mod:`eqprop.sweeps.tasks`): in this process one after another, or
    on Ray where ``placement`` asks for it (a run that fails there is reported, and the
    others go on)."""
    if scale not in PROTOCOLS:
        raise ConfigError(f"skipnets scale must be one of {', '.join(SCALES)}; got {scale!r}")
    protocol = PROTOCOLS[scale]
    out = Path(out)
    runs_dir = out / "runs"
    tasks = _tasks(protocol, scale, out, data_dir)
    if tasks:
        _load_data(protocol, data_dir)  # missing data is an error before the first write
    runs_dir.mkdir(parents=True, exist_ok=True)
    total = len(_planned_runs(protocol)) + len(_planned_ep_runs(protocol))
    errors = run_tasks(
        tasks,
        placement,
        label=f"skipnets {scale}",
        storage=out / RAY_DIR,
        done_before=total - len(tasks),
    )
    for name, error in errors.items():
        _LOG.warning("skipnets %s failed: %s", name, error)
    return render_stage(scale, out)


def publish_stage(scale: str, out: Path, dest: Path) -> Path:
    """Render the stage of ``scale`` held in ``out`` (:func:`render_stage`) and copy it into
    ``dest``: ``results.md``, the figures and every run file (replacing ``dest``'s), with an
    ``experiment.toml`` naming the scale; regenerate the claims index of ``dest``'s parent
    and return its path."""
    import shutil

    import tomli_w

    from eqprop.experiments.report import STAGE, write_index

    out, dest = Path(out), Path(dest)
    files = sorted((out / "runs").glob("*.json"))
    if not files:
        raise ConfigError(f"{out / 'runs'} holds no run files; nothing to publish")
    render_stage(scale, out)
    (dest / "runs").mkdir(parents=True, exist_ok=True)
    for old in (dest / "runs").glob("*.json"):
        old.unlink()
    for f in files:
        shutil.copyfile(f, dest / "runs" / f.name)
    for name in ("results.md", "accuracy_vs_depth.png", "sensitivity.png"):
        shutil.copyfile(out / name, dest / name)
    stage = {"experiment": "skipnets", "scale": scale}
    atomic_write_bytes(dest / STAGE, tomli_w.dumps(stage).encode())
    return write_index(dest.parent)


def render_stage(scale: str, out: Path) -> Path:
    """Draw the figures and write ``results.md`` of ``scale`` from the run files in
    ``out/runs`` as they are (trains nothing: runs without a file are listed as not run);
    return the path of ``results.md``."""
    protocol = PROTOCOLS[scale]
    out = Path(out)
    records = load_records(out / "runs")
    rows = collect_rows(records)
    plot_accuracy_vs_depth(rows, protocol, out / "accuracy_vs_depth.png")
    plot_sensitivity(records, protocol, out / "sensitivity.png")
    results = out / "results.md"
    atomic_write_bytes(results, render_results(scale, protocol, records, rows).encode())
    return results


def _estimate_cpu(
    run: tuple[str, str, str, int, float, int], done: Mapping[tuple[str, str, str, int], list]
) -> float | None:
    """Estimated CPU seconds of ``run`` from the finished runs ``done`` (CPU seconds by
    rule, architecture, activation and depth): their mean at its depth, else linear in depth
    between the nearest depths measured below and above, else that of the nearest depth;
    None when no run of its rule, architecture and activation has finished."""
    rule, arch, act, depth = run[:4]
    measured = {
        d: float(np.mean(v)) for (r, a, c, d), v in done.items() if (r, a, c) == (rule, arch, act)
    }
    if not measured:
        return None
    if depth in measured:
        return measured[depth]
    below = [d for d in measured if d < depth]
    above = [d for d in measured if d > depth]
    if below and above:
        lo, hi = max(below), min(above)
        return measured[lo] + (measured[hi] - measured[lo]) * (depth - lo) / (hi - lo)
    return measured[max(below) if below else min(above)]


def plan_lines(scale: str, out: Path) -> list[str]:
    """What running ``scale`` into ``out`` would do: planned, finished and remaining
    baseline and EP runs, and the CPU time of the remaining baseline runs estimated from the
    finished ones (:func:`_estimate_cpu`; one torch thread per run)."""
    if scale not in PROTOCOLS:
        raise ConfigError(f"skipnets scale must be one of {', '.join(SCALES)}; got {scale!r}")
    protocol = PROTOCOLS[scale]
    runs_dir = Path(out) / "runs"
    records = load_records(runs_dir) if runs_dir.is_dir() else []
    done: dict[tuple[str, str, str, int], list] = defaultdict(list)
    for record in records:
        if record["rule"] != EP_RULE and "cpu_seconds" in record:
            done[_record_key(record)].append(float(record["cpu_seconds"]))
    planned = _planned_runs(protocol)
    missing = [run for run in planned if not (runs_dir / _run_name(*run)).exists()]
    for run in planned:
        if run not in missing:
            _check_baseline_file(runs_dir / _run_name(*run), protocol, scale)
    estimates = [_estimate_cpu(run, done) for run in missing]
    known = [e for e in estimates if e is not None]
    unknown = len(estimates) - len(known)
    ep_planned = _planned_ep_runs(protocol)
    ep_missing = [
        (a, d)
        for a, d in ep_planned
        if not (runs_dir / _ep_name(ep_config(protocol, a, d), a, d)).exists()
    ]
    seeds = sorted({run[5] for run in planned})
    lines = [
        f"skipnets {scale} in {out}: {len(planned)} baseline runs planned (seeds "
        f"{', '.join(map(str, seeds))}), {len(planned) - len(missing)} finished, "
        f"{len(missing)} to run; {len(ep_planned)} EP runs planned, {len(ep_missing)} to run.",
    ]
    if missing:
        hours = sum(known) / 3600
        lines.append(
            f"Estimated CPU time of the {len(known)} remaining baseline runs with an estimate: "
            f"{sum(known):,.0f} s ({hours:.1f} CPU hours, one thread per run; from the CPU "
            "seconds of the finished runs of the same rule, architecture and activation, "
            "interpolated in depth)"
            + (
                f"; {unknown} runs without an estimate (no finished run of their rule, "
                "architecture and activation)."
                if unknown
                else "."
            )
        )
    return lines


def load_records(runs_dir: Path) -> list[dict]:
    """Every run file in ``runs_dir`` (sorted by name); a one-line ConfigError naming a file
    that is not one."""
    records = []
    for path in sorted(Path(runs_dir).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path} is not a readable run file ({exc}); delete it to retrain"
            ) from exc
        if not isinstance(record, dict) or "rule" not in record:
            raise ConfigError(f"{path} is not a run file (no rule); delete it to retrain")
        records.append(record)
    return records


def stage_measured(directory: Path, scale: str) -> tuple[list[dict], str]:
    """What :data:`CLAIMS` read of a committed output directory (its baseline run files) and
    what it reached, for the index of :mod:`eqprop.experiments.report`."""
    records = load_records(Path(directory) / "runs")
    baselines = [r for r in records if r["rule"] != EP_RULE]
    planned = len(_planned_runs(PROTOCOLS[scale]))
    return baselines, f"{len(baselines)} of {planned} baseline run files"


def _record_key(record: Mapping) -> tuple[str, str, str, int]:
    return record["rule"], record["architecture"], record["activation"], record["depth"]


def collect_rows(records: Iterable[Mapping]) -> list[Row]:
    """One row per (rule, architecture, activation, depth, seed): the grid point with the best
    validation accuracy (ties: the first in file order) across the run records of that seed
    (each seed selects its own hyperparameters). Rows of the baseline rules come first, those
    of other rules (EP) after them."""
    best: dict[tuple[str, str, str, int, int], Row] = {}
    for record in records:
        key = (*_record_key(record), _record_seed(record))
        for point in record["grid"]:
            if key in best and point["valid_accuracy"] <= best[key].valid_accuracy:
                continue
            best[key] = Row(*key[:4], dict(point["hyperparameters"]), *_accuracies(point), key[4])
    return sorted(best.values(), key=_row_key)


def _row_key(row: Row) -> tuple:
    """Baseline rules grouped by architecture, activation and depth; then each other rule;
    seeds last."""
    if row.rule in RULE_NAMES:
        rule = RULE_NAMES.index(row.rule)
        return (0, "", row.architecture, row.activation, row.depth, rule, row.seed)
    return (1, row.rule, row.architecture, row.activation, row.depth, 0, row.seed)


def seed_accuracies(rows: Iterable[Row]) -> dict[tuple[str, str, str, int], list[float]]:
    """(rule, architecture, activation, depth) -> the test accuracy of each seed's row (in
    seed order): what the spread over seeds is computed from."""
    out: dict[tuple[str, str, str, int], list[float]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.seed):
        out[(row.rule, row.architecture, row.activation, row.depth)].append(row.test_accuracy)
    return dict(out)


def _percent_spread(values: Sequence[float]) -> str:
    """The mean of accuracy fractions in percent, with ``[min-max]`` where several seeds."""
    text = f"{100 * float(np.mean(values)):.2f}"
    if len(values) > 1:
        text += f" [{100 * min(values):.2f}-{100 * max(values):.2f}]"
    return text


def _accuracies(point: Mapping) -> tuple[float, float]:
    return float(point["valid_accuracy"]), float(point["test_accuracy"])


def _format_hyperparameters(hyperparameters: Mapping[str, Any]) -> str:
    short = {"learning_rate": "lr", "early_stop_start": "start"}

    def value(v: Any) -> str:
        return "/".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else f"{v:g}"

    return ", ".join(f"{short.get(k, k)}={value(v)}" for k, v in hyperparameters.items())


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of ``rows``: rule, architecture, activation, depth, seed, best
    hyperparameters, validation and test accuracy (%)."""
    lines = [
        "| rule | architecture | activation | depth | seed | best hyperparameters "
        "| valid acc (%) | test acc (%) |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.rule} | {row.architecture} | {row.activation} | {row.depth} | {row.seed} "
            f"| {_format_hyperparameters(row.hyperparameters)} "
            f"| {100 * row.valid_accuracy:.2f} | {100 * row.test_accuracy:.2f} |"
        )
    return "\n".join(lines)


def format_seed_table(rows: Sequence[Row]) -> list[str]:
    """A Markdown table of the configurations with several seeds: their number, the mean,
    minimum and maximum over seeds of the per-seed best test accuracy (%), and its standard
    deviation (ddof 1); empty when every configuration has one seed."""
    several = {k: v for k, v in seed_accuracies(rows).items() if len(v) > 1}
    if not several:
        return []
    lines = [
        "| rule | architecture | activation | depth | seeds | mean test acc (%) | min (%) "
        "| max (%) | std (points) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (rule, arch, act, depth), values in several.items():
        lines.append(
            f"| {rule} | {arch} | {act} | {depth} | {len(values)} "
            f"| {100 * float(np.mean(values)):.2f} | {100 * min(values):.2f} "
            f"| {100 * max(values):.2f} | {100 * float(np.std(values, ddof=1)):.2f} |"
        )
    return lines


def _index(rows: Iterable[Row]) -> dict[tuple[str, str, str, int], float]:
    """(rule, architecture, activation, depth) -> test accuracy, the mean over seeds."""
    return {k: float(np.mean(v)) for k, v in seed_accuracies(rows).items()}


def _depth_range(
    rows: Iterable[Row], activation: str, architectures: Sequence[str]
) -> tuple[int, int] | None:
    """The shallowest and deepest depth measured for ``activation`` on one of
    ``architectures`` (a plain/dense pair; None: fewer than two depths)."""
    depths = {
        r.depth for r in rows if r.activation == activation and r.architecture in architectures
    }
    return (min(depths), max(depths)) if len(depths) > 1 else None


#: architecture family -> its plain architecture (:data:`PAIRS` gives the dense one)
FAMILIES = {"MLP": "NN", "Conv": "ConvNet"}


def _in_scope(value: str, wanted: str | None) -> bool:
    return wanted is None or value == wanted


@dataclass(frozen=True)
class DenseKeepsUp:
    """Figure 1 for one ``rule``, on the run files: per plain/dense pair (of ``family``,
    "MLP" or "Conv"; None: both) and activation (``activation``; None: every one) measured at
    two depths or more (a *case*), the dense network trained by ``rule`` is within
    :data:`NEAR_BP` of the dense network trained by BP at the deepest depth (*near*), and from
    the shallowest to the deepest depth the plain network loses at least
    :data:`DEGRADE_MARGIN` more test accuracy than the dense one (*degrades*). Each accuracy
    is the mean over the seeds measured of the per-seed best test accuracy; the measured
    text gives ``[min-max]`` over seeds where there are several. ``holds``: every case is
    near and degrades; ``does not hold``: none is both; ``partly`` otherwise."""

    rule: str
    family: str | None = None
    activation: str | None = None

    def __call__(self, records: Sequence[Mapping]) -> Verdict:
        rows = collect_rows(records)
        seeds = seed_accuracies(rows)
        cases, passed, several = [], 0, False
        for family, plain in FAMILIES.items():
            dense = PAIRS[plain]
            if not _in_scope(family, self.family):
                continue
            for act in sorted({r.activation for r in rows if r.architecture == dense}):
                depths = _depth_range(rows, act, (plain, dense))
                if not _in_scope(act, self.activation) or depths is None:
                    continue
                low, high = depths
                keys = [(self.rule, arch, act, d) for arch in (plain, dense) for d in depths]
                keys.append(("BP", dense, act, high))
                if not all(k in seeds for k in keys):
                    continue
                several = several or any(len(seeds[k]) > 1 for k in keys)
                plain_low, plain_high, dense_low, dense_high, bp = (
                    100 * float(np.mean(seeds[k])) for k in keys
                )
                text = [_percent_spread(seeds[k]) for k in keys]
                near = bp - dense_high <= 100 * NEAR_BP
                degrades = plain_low - plain_high >= dense_low - dense_high + 100 * DEGRADE_MARGIN
                passed += near and degrades
                cases.append(
                    f"{act}, depth {low} -> {high}: {dense} {text[2]} -> {text[3]}% "
                    f"(BP {text[4]}%: {'near' if near else 'not near'}), {plain} "
                    f"{text[0]} -> {text[1]}% "
                    f"({'degrades more' if degrades else 'does not degrade more'})"
                )
        scope = " ".join(x for x in (self.family, self.activation) if x)
        if not cases:
            return Verdict(
                NOT_YET,
                f"{self.rule}: no {scope + ' ' if scope else ''}plain/dense pair measured at "
                "two depths",
            )
        verdict = HOLDS if passed == len(cases) else FAILS if passed == 0 else PARTLY
        spread = (
            " (means over seeds of the per-seed best test accuracy, [min-max] over seeds)"
            if several
            else ""
        )
        return Verdict(verdict, f"{self.rule}: " + "; ".join(cases) + spread)


def _quartile_range(values: Sequence[float]) -> float:
    """The interquartile range of ``values`` (linear interpolation)."""
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


@dataclass(frozen=True)
class DenseLessSensitive:
    """Figure 2, on the run files: per baseline rule (``rule``; None: every one), activation
    (``activation``; None: every one) and plain/dense pair (of ``family``; None: both) with
    grid points of both (a *case*), the interquartile range of the test accuracies over all
    grid points (learning rate x early-stopping start x depth, every seed pooled) is smaller
    for the dense network than for the plain one. Where there are several seeds, the measured
    text adds the range over seeds of each seed's own interquartile range at the depths every
    seed has. ``holds``: in every case; ``does not hold``: in none; ``partly`` otherwise."""

    rule: str | None = None
    family: str | None = None
    activation: str | None = None

    def __call__(self, records: Sequence[Mapping]) -> Verdict:
        points: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        #: (rule, activation, architecture) -> seed -> depth -> test accuracies
        by_seed: dict[tuple[str, str, str], dict[int, dict[int, list[float]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        for record in records:
            key = (record["rule"], record["activation"], record["architecture"])
            accuracies = [100 * float(p["test_accuracy"]) for p in record["grid"]]
            points[key] += accuracies
            by_seed[key][_record_seed(record)][record["depth"]] += accuracies
        cases, passed = [], 0
        for rule in RULE_NAMES:
            if not _in_scope(rule, self.rule):
                continue
            for act in sorted({act for r, act, _ in points if r == rule}):
                if not _in_scope(act, self.activation):
                    continue
                for family, plain in FAMILIES.items():
                    dense = PAIRS[plain]
                    if not _in_scope(family, self.family):
                        continue
                    if not (points[(rule, act, plain)] and points[(rule, act, dense)]):
                        continue
                    spread = {a: _quartile_range(points[(rule, act, a)]) for a in (plain, dense)}
                    passed += spread[dense] < spread[plain]
                    seeds = {
                        a: _seed_quartile_ranges(by_seed[(rule, act, a)]) for a in (plain, dense)
                    }
                    over_seeds = (
                        f" (per seed at the depths all seeds have: {dense} "
                        f"{min(seeds[dense]):.2f}-{max(seeds[dense]):.2f}, {plain} "
                        f"{min(seeds[plain]):.2f}-{max(seeds[plain]):.2f})"
                        if min(len(seeds[plain]), len(seeds[dense])) > 1
                        else ""
                    )
                    cases.append(
                        f"{rule} {act}: {dense} {spread[dense]:.2f}, {plain} {spread[plain]:.2f}"
                        + over_seeds
                    )
        if not cases:
            return Verdict(NOT_YET, "no plain/dense pair with grid points of both")
        verdict = HOLDS if passed == len(cases) else FAILS if passed == 0 else PARTLY
        return Verdict(
            verdict,
            "interquartile range of the test accuracy over the grid, in points: "
            + "; ".join(cases)
            + f" (dense smaller in {passed} of {len(cases)})",
        )


def _seed_quartile_ranges(by_seed: Mapping[int, Mapping[int, list[float]]]) -> list[float]:
    """Each seed's interquartile range over its grid points at the depths every seed has."""
    if not by_seed:
        return []
    shared = set.intersection(*(set(depths) for depths in by_seed.values()))
    return [
        _quartile_range([a for d in sorted(shared) for a in depths[d]])
        for _, depths in sorted(by_seed.items())
        if shared
    ]


_SOURCE = (
    'Im, Patil & Branson, "Are skip connections necessary for biologically plausible '
    'learning rules?", section 3'
)
#: family -> the scales with the paper's budget and learning-rate grid (Table 1) for it
_BUDGET = {"MLP": ("mlp-budget", "paper-mlp", "full"), "Conv": ("full",)}
_MEANINGFUL = {
    "MLP": "mlp-budget, paper-mlp or full: the paper's budget and learning rates (Table 1), "
    "MNIST 50k / 10k / 10k; paper-mlp and full with seeds 0-2 at the shallowest and deepest "
    "depth",
    "Conv": "full: the paper's budget and learning rates (Table 1), MNIST 50k / 10k / 10k, "
    "16 x depth channels, seeds 0-2 at the shallowest and deepest depth",
}


def _family_claims(family: str) -> list[Claim]:
    """The claims of Figures 1 and 2 for one architecture family, per activation and rule."""
    plain = FAMILIES[family]
    dense = PAIRS[plain]
    claims = []
    for act in ACTIVATIONS:
        claims += [
            Claim(
                f"{family} ({plain} vs {dense}), {act}: with dense connections {rule} keeps "
                "up with BP as depth grows, while the test accuracy of plain networks drops "
                f"with depth (here: {dense} at the deepest depth within "
                f"{100 * NEAR_BP:.0f} points of BP, and from the shallowest to the deepest "
                f"depth {plain} loses at least {100 * DEGRADE_MARGIN:.0f} point more than "
                f"{dense})",
                f"{_SOURCE}, Figure 1{'a' if family == 'MLP' else 'b'}",
                _MEANINGFUL[family],
                DenseKeepsUp(rule, family, act),
                at_scale=_BUDGET[family],
            )
            for rule in ("FA", "DTP")
        ]
    for act in ACTIVATIONS:
        claims += [
            Claim(
                f"{family} ({plain} vs {dense}), {act}, {rule}: having dense connections makes "
                "the model more robust to different hyper-parameters (here: the interquartile "
                f"range of the test accuracies over all grid points smaller for {dense} than "
                f"for {plain})",
                f"{_SOURCE}, Figure 2{'a' if family == 'MLP' else 'b'}",
                _MEANINGFUL[family],
                DenseLessSensitive(rule, family, act),
                at_scale=_BUDGET[family],
            )
            for rule in RULE_NAMES
        ]
    return claims


CLAIMS = tuple(claim for family in FAMILIES for claim in _family_claims(family))
#: what moves the verdicts: one training run per grid point and seed
CLAIMS_NOTE = (
    "Each accuracy is the best grid point of one seed's runs; where a scale has several seeds "
    "(the shallowest and deepest depths of paper-mlp and full) the verdicts use the mean over "
    "seeds and give [min-max] over seeds, elsewhere one seed. The binomial standard error of "
    "one test accuracy near 97% on 10,000 examples is about 0.17 points, so a case near a "
    "criterion's threshold can change from seed to seed."
)


def context_lines(rows: Sequence[Row], protocol: Protocol) -> list[str]:
    """BP's own depth trend per plain/dense pair and the linear readout, as Markdown bullets:
    what the FA and DTP numbers should be read against."""
    acc = _index(rows)
    lines = []
    for plain, dense in PAIRS.items():
        for act, depths in protocol.depths.items():
            low, high = min(depths), max(depths)
            keys = [("BP", arch, act, d) for arch in (plain, dense) for d in (low, high)]
            if all(k in acc for k in keys):
                p_low, p_high, d_low, d_high = (100 * acc[k] for k in keys)
                lines.append(
                    f"- BP, {act}, depth {low} -> {high}: {plain} {p_low:.2f} -> {p_high:.2f}%, "
                    f"{dense} {d_low:.2f} -> {d_high:.2f}%."
                )
    if LINEAR in acc:
        lines.append(
            f"- Linear softmax readout of the pixels (no hidden layer, BP): "
            f"{100 * acc[LINEAR]:.2f}%. Every dense network contains this input-to-output "
            "matrix, trained with its true gradient by all three rules, so dense accuracies "
            "near this level say little about how well a rule trains the hidden layers."
        )
    return lines


#: implementation choices where the paper is silent or ambiguous, stated in every results.md
INTERPRETATIONS = (
    "- Depth counts hidden layers (the output layer is extra).",
    "- Dense layers receive every earlier layer *including the input*, as docs/science.md "
    "section 5 "
    "says; the paper's formula sums from h_1 while defining h_0 = x, which leaves it open. "
    "The output layer is a layer like the others, so it also reads every hidden layer and the "
    "pixels.",
    "- The paper names no optimiser; we use Adam for every rule. Its learning-rate ranges "
    "(Table 1) are used as given; they look tuned for plain SGD with sigmoid and for an "
    "adaptive method with ReLU.",
    "- The paper's 'early stop starting point' is read as examples seen before patience-based "
    "early stopping may stop a run; the reported checkpoint is the best-validation one. Table "
    "1 and its footnote disagree on the DTP/ReLU range; we use the text's ranges per "
    "architecture family (200k-1000k for MLPs, 50k-150k for ConvNets).",
    "- FA: every forward matrix, skip ones included, has its own fixed random feedback matrix "
    "drawn like the forward weight's initialisation; output-layer weights get their true "
    "gradient.",
    "- DTP (Lee et al. 2015, Algorithm 1): one learned inverse per hidden-to-hidden edge; the "
    "target of layer l sums the difference corrections of every later hidden layer it feeds "
    "(the paper's formula) plus a gradient step through the output layer's own weight from l "
    "(in a plain network only the last hidden layer has one, as in Lee et al.).",
    "- DTP's target step (eta = 0.5 times the per-example gradient of the cross-entropy) and "
    "the standard deviation of the Gaussian corruption in the inverses' reconstruction loss "
    "(0.1) are not given by the paper; we chose them and did not tune them. On ConvNets the "
    "inverse of a 3x3 convolution is a 3x3 convolution back onto the source's channels, "
    "followed by the activation.",
    "- 'Channel size (depth x 16)' is read as 16 x depth channels in every hidden layer of a "
    "network of that depth (48 at depth 3, 160 at depth 10): the paper gives one number per "
    "network, and a channel count growing with the layer index would make the dense and "
    "plain networks' widths differ by layer. Smaller scales may use another multiple; the "
    "protocol above states it.",
    "- The paper names no pooling or stride: every convolution is 3x3 with stride 1 and zero "
    "padding 1, so every hidden layer keeps the image size (28x28 on MNIST); the output layer "
    "is a linear map of the flattened feature maps (of every earlier layer, in a dense "
    "network).",
    "- FA on ConvNets: every convolution kernel has its own fixed random feedback kernel of "
    "the same shape, used in place of the forward kernel in the transposed convolution that "
    "carries the error down.",
)


#: how the EP rows are built, stated in every results.md that has them
EP_INTERPRETATIONS = (
    "- EP's architectures are not the paper's NN / DN: NN is the layered network (adjacent "
    "layers only, no intralayer edges), skip the journal's rewired layer-skipping network "
    "(every adjacent-layer edge independently, with probability p, replaced by a random edge "
    "between non-adjacent layers, so it has as many edges as NN; skip weights drawn from "
    "U[-a, a], a the mean Glorot bound of the adjacent pairs). Neither is densely connected.",
    "- EP's activation is the hard sigmoid clip of the state (docs/science.md section 1), "
    "its row label "
    "`hardsigmoid`; it has no ReLU counterpart, so EP appears once per depth.",
    "- EP's grid points are its epochs: the row is the epoch with the best validation "
    "accuracy (ties: the earlier), and its test accuracy is that of the network after the same "
    "epoch.",
)

#: what the nudging schemes and batch orders of the core do, for the protocol text
_NUDGING_TEXT = {
    "gradient": "one gradient step on E + beta C, the theory's",
    "icons": "the authors' step: the free update, then the outputs pulled 2 eps beta towards "
    "the target",
}
_ORDER_TEXT = {
    "reshuffle": "a new order of the training set every epoch",
    "fixed": "fixed batches visited in file order",
    "shuffled-once": "fixed batches visited in one order drawn once from the seed, the "
    "journal authors' code",
}


def _both(layered: Any, skip: Any, fmt: str = "{}") -> str:
    """One value when the two EP configurations agree, else both, labelled."""
    if layered == skip:
        return fmt.format(layered)
    return f"NN {fmt.format(layered)}, skip {fmt.format(skip)}"


def _ep_held_out(config: RunConfig) -> str:
    """How the held-out examples of ``config`` relax, for the protocol text."""
    zeros = f"relaxes from zeros for N_free = {config.free.steps} steps"
    if config.train.test_persistent:
        return (
            "the validation examples keep particles across evaluations (each epoch's "
            "evaluation starts from the previous one's free equilibria: "
            f"`train.test_persistent`, the paper authors' protocol); the official test set "
            f"{zeros}"
        )
    return f"every held-out example {zeros} (no test-time particles)"


def _ep_runs_table(records: Sequence[Mapping]) -> list[str]:
    """One line per EP run: per-epoch accuracies, selected epoch, time."""
    lines = [
        "| architecture | depth | valid acc per epoch (%) | test acc per epoch (%) "
        "| train error last epoch (%) | selected epoch | wall s | CPU s |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in sorted(records, key=lambda r: (r["depth"], r["architecture"])):
        grid = r["grid"]
        valid = ", ".join(f"{100 * g['valid_accuracy']:.2f}" for g in grid)
        test = ", ".join(f"{100 * g['test_accuracy']:.2f}" for g in grid)
        chosen = max(grid, key=lambda g: g["valid_accuracy"], default=None)
        epoch = chosen["hyperparameters"]["epoch"] if chosen else "-"
        history = r.get("history") or [{}]
        train_error = history[-1].get("train_stats", {}).get("train_error")
        train = "-" if train_error is None else f"{100 * train_error:.2f}"
        diverged = " (diverged)" if r.get("diverged") else ""
        lines.append(
            f"| {r['architecture']}{diverged} | {r['depth']} | {valid} | {test} | {train} "
            f"| {epoch} | {float(r.get('seconds', 0.0)):.0f} "
            f"| {float(r.get('cpu_seconds', 0.0)):.0f} |"
        )
    return lines


def ep_comparison(rows: Sequence[Row], n_test: int | None = None) -> list[str]:
    """EP on the layered (NN) against the layer-skipping (skip) network, from the measured
    rows, as Markdown bullets; empty when no depth has both. ``n_test``: test examples, for
    the binomial standard error of one accuracy."""
    ep = {(r.architecture, r.depth): r for r in rows if r.rule == EP_RULE}
    depths = sorted(d for (arch, d) in ep if arch == "NN" and ("skip", d) in ep)
    if not depths:
        return []
    lines = []
    diffs = {}
    for d in depths:
        nn, skip = ep[("NN", d)], ep[("skip", d)]
        diffs[d] = 100 * (skip.test_accuracy - nn.test_accuracy)
        lines.append(
            f"- Depth {d}: test accuracy layered (NN) {100 * nn.test_accuracy:.2f}%, "
            f"layer-skipping (skip) {100 * skip.test_accuracy:.2f}% (skip - NN = "
            f"{diffs[d]:+.2f} points); validation {100 * nn.valid_accuracy:.2f}% vs "
            f"{100 * skip.valid_accuracy:.2f}%."
        )
    if len(depths) > 1:
        low, high = depths[0], depths[-1]
        change = {
            arch: 100 * (ep[(arch, high)].test_accuracy - ep[(arch, low)].test_accuracy)
            for arch in ("NN", "skip")
        }
        lines.append(
            f"- Depth {low} -> {high}: NN {100 * ep[('NN', low)].test_accuracy:.2f} -> "
            f"{100 * ep[('NN', high)].test_accuracy:.2f}% ({change['NN']:+.2f} points), skip "
            f"{100 * ep[('skip', low)].test_accuracy:.2f} -> "
            f"{100 * ep[('skip', high)].test_accuracy:.2f}% ({change['skip']:+.2f} points)."
        )
    ahead = [d for d in depths if diffs[d] > 0]
    behind = [d for d in depths if diffs[d] < 0]
    if len(ahead) == len(depths):
        summary = "ahead of the layered one at every depth measured"
    elif len(behind) == len(depths):
        summary = "behind the layered one at every depth measured"
    else:
        summary = (
            f"ahead of the layered one at depth {', '.join(map(str, ahead)) or 'none'} and "
            f"behind at depth {', '.join(map(str, behind)) or 'none'}"
        )
    noise = ""
    if n_test:
        p = sum(r.test_accuracy for r in ep.values()) / len(ep)
        noise = (
            f"; the binomial standard error of one test accuracy near {100 * p:.1f}% on "
            f"{n_test:,} examples is about {100 * math.sqrt(p * (1 - p) / n_test):.2f} points"
        )
    lines.append(
        f"- In short: with EP the layer-skipping network is {summary} (differences "
        f"{', '.join(f'{diffs[d]:+.2f}' for d in depths)} points, one seed{noise})."
    )
    return lines


def ep_section(protocol: Protocol, records: Sequence[Mapping], rows: Sequence[Row]) -> list[str]:
    """The EP part of ``results.md`` (protocol, comparison, per-run table); empty when the
    scale has no EP rows."""
    ep = protocol.ep
    if ep is None:
        return []
    layered = ep_config(protocol, "NN", ep.depths[0])
    skip = ep_config(protocol, "skip", ep.depths[0])
    record = records[0] if records else {}
    n_train = record.get("examples_per_epoch")
    n_valid, n_test = record.get("valid_examples"), record.get("test_examples")
    per_epoch = f"{n_train:,} examples" if n_train else "the training split"
    total = f" ({layered.train.epochs * n_train:,} examples per run)" if n_train else ""
    valid = f"all {n_valid:,}" if n_valid else "all"
    baseline_valid = (
        "all" if protocol.valid_limit is None else f"the first {protocol.valid_limit:,}"
    )
    test = f" ({n_test:,} examples)" if n_test else ""
    limit = "all examples" if ep.limit is None else f"first {ep.limit:,} examples of each split"

    def both(get: Any, fmt: str = "{}") -> str:
        return _both(get(layered), get(skip), fmt)

    def explained(get: Any, texts: Mapping[str, str]) -> str:
        return "; ".join(texts[n] for n in dict.fromkeys((get(layered), get(skip))) if n in texts)

    def nudging(c: RunConfig) -> str:
        return c.nudged.nudging

    def order(c: RunConfig) -> str:
        return c.train.batch_order

    held_out = both(_ep_held_out)
    cpu = sum(float(r.get("cpu_seconds", 0.0)) for r in records)
    wall = sum(float(r.get("seconds", 0.0)) for r in records)
    return [
        "## EP: layered vs layer-skipping (equilibrium propagation from the core)",
        "",
        "Protocol:",
        "",
        f"- Networks: EP on `{ep.dataset}`, split `icons`, {limit}; sizes "
        f"[{layered.topology.sizes[0]}, {ep.hidden} x depth, {layered.topology.sizes[-1]}], "
        f"depths {', '.join(map(str, ep.depths))}. NN: preset `{EP_PRESETS['NN']}` (topology "
        f"`{layered.topology.family}`); skip: preset `{EP_PRESETS['skip']}` (topology "
        f"`{skip.topology.family}`, p = {skip.topology.p:g}).",
        f"- From the presets: lr {both(lambda c: c.update.lr)}, eps "
        f"{both(lambda c: c.free.eps, '{:g}')} (free) / {both(lambda c: c.nudged.eps, '{:g}')} "
        f"(nudged), estimator {both(lambda c: c.estimator.kind, '`{}`')}, beta "
        f"{both(lambda c: c.estimator.beta, '{:g}')}, N_clamped {both(lambda c: c.nudged.steps)}, "
        f"batch {both(lambda c: c.train.batch_size)}, persistent particles "
        f"{both(lambda c: 'on' if c.train.persistent else 'off')}; replaced for this scale: "
        + ", ".join(f"{k} {v}" for k, v in ep.overrides.items())
        + (" (none)" if not ep.overrides else "")
        + f". Budget: N_free {both(lambda c: c.free.steps)}, "
        f"{both(lambda c: c.train.epochs)} epoch(s) of {per_epoch}{total}.",
        f"- Nudging {both(nudging, '`{}`')} ({explained(nudging, _NUDGING_TEXT)}); batch order "
        f"{both(order, '`{}`')} ({explained(order, _ORDER_TEXT)}).",
        f"- Held-out evaluation: {held_out}.",
        f"- Validation accuracy: EP's held-out evaluation on {valid} validation examples (the "
        f"baselines use {baseline_valid}); test accuracy: the official test set"
        f"{test}, evaluated after every epoch. Model selection: the epoch with the best "
        "validation accuracy; its test accuracy is reported.",
        f"- Departures from the journal: {ep.note}",
        f"- {len(records)} EP runs; training time summed over runs {wall:.0f} s wall, "
        f"{cpu:.0f} s CPU (evaluations included).",
        *EP_INTERPRETATIONS,
        "",
        "Comparison (measured):",
        "",
        *(ep_comparison(rows, n_test) or ["- No depth has both EP rows yet."]),
        "",
        "Runs:",
        "",
        *_ep_runs_table(records),
        "",
    ]


def _threads(records: Sequence[Mapping]) -> str:
    """The torch thread counts the runs recorded ("not recorded" for older run files)."""
    counts = sorted({r["threads"] for r in records if "threads" in r})
    return ", ".join(map(str, counts)) if counts else "not recorded"


def coverage_lines(protocol: Protocol, records: Sequence[Mapping]) -> list[str]:
    """A bullet naming the planned baseline runs without a run file (a budget cut short), and
    the configurations whose learning-rate grid is therefore incomplete."""
    done = {
        _run_name(
            r["rule"],
            r["architecture"],
            r["activation"],
            r["depth"],
            r["grid"][0]["hyperparameters"]["learning_rate"],
            _record_seed(r),
        )
        for r in records
        if r["grid"]
    }
    missing = [run for run in _planned_runs(protocol) if _run_name(*run) not in done]
    if not missing:
        return []
    partial = sorted(
        {
            f"{rule} {arch} {act} depth {depth}" + (f" seed {seed}" if seed else "")
            for rule, arch, act, depth, _, seed in missing
            if any(
                _record_key(r) == (rule, arch, act, depth) and _record_seed(r) == seed
                for r in records
            )
        }
    )
    text = (
        f"- Without a result (not run, interrupted or failed): {len(missing)} of "
        f"{len(_planned_runs(protocol))} planned baseline runs "
        f"({', '.join(Path(_run_name(*run)).stem for run in missing)})."
    )
    if partial:
        text += (
            " Configurations selected over an incomplete learning-rate grid: "
            + "; ".join(partial)
            + "."
        )
    return [text]


def _seeds_text(protocol: Protocol) -> str:
    """How the protocol's seeds are spread over its depths, for the protocol text."""
    if len(protocol.seeds) == 1:
        return f"Seed {protocol.seed}, one run per grid point"
    ends = "; ".join(
        f"{act} {min(depths)} and {max(depths)}" for act, depths in protocol.depths.items()
    )
    return (
        f"Seeds {', '.join(map(str, protocol.seeds))} at the shallowest and deepest depths "
        f"({ends}), seed {protocol.seed} at the depths between, for the linear readout and "
        "for the EP rows; one run per grid point and seed, and each seed selects its own grid "
        "point"
    )


def _seed_section(rows: Sequence[Row]) -> list[str]:
    """The spread over seeds, where some configuration has several."""
    table = format_seed_table(rows)
    if not table:
        return []
    return [
        "Spread over seeds (per seed: the test accuracy at that seed's validation-selected "
        "grid point; Figure 1 plots the mean with min-max bars):",
        "",
        *table,
        "",
    ]


def render_results(
    scale: str,
    protocol: Protocol,
    records: Sequence[Mapping],
    rows: Sequence[Row],
) -> str:
    """The text of ``results.md``."""
    ep_records = [r for r in records if r["rule"] == EP_RULE]
    records = [r for r in records if r["rule"] != EP_RULE]
    train_seconds = sum(float(r.get("seconds", 0.0)) for r in records)
    cpu_seconds = sum(float(r.get("cpu_seconds", 0.0)) for r in records)
    diverged = sum(bool(r.get("diverged")) for r in records)
    grid_points = sum(len(r["grid"]) for r in records)
    limits = ", ".join(
        f"{name} {'all' if limit is None else f'first {limit:,}'}"
        for name, limit in (
            ("train", protocol.train_limit),
            ("valid", protocol.valid_limit),
            ("test", protocol.test_limit),
        )
    )
    rates = "; ".join(
        f"{rule} {act}: {', '.join(f'{lr:g}' for lr in lrs)}"
        for (rule, act), lrs in protocol.learning_rates.items()
    )
    parts = [
        "# Skip connections and biologically plausible rules (Im, Patil & Branson), scale "
        f"`{scale}`",
        "",
        "## Protocol",
        "",
        f"- Data: `{protocol.dataset}`, split `icons` (train / valid / test), {limits}.",
        f"- Architectures: {', '.join(protocol.architectures)}; 128 units per MLP hidden layer, "
        f"{protocol.channels_per_depth} x depth channels in every ConvNet hidden layer "
        "(3x3 kernels, stride 1, zero padding 1, no pooling); dense layers receive every "
        "earlier layer, the input included.",
        "- Depths (hidden layers): "
        + "; ".join(f"{act} {', '.join(map(str, d))}" for act, d in protocol.depths.items())
        + ".",
        f"- Adam, batch 128, L2 1e-5 on all parameters; learning rates: {rates}.",
        "- Early stopping: evaluation every "
        f"{protocol.eval_every:,} examples, patience {protocol.patience}, starting points "
        + "; ".join(
            f"{family} {', '.join(f'{s:,}' for s in starts)}"
            for family, starts in protocol.early_stop_starts.items()
        )
        + " examples, cap "
        + "; ".join(f"{family} {cap:,}" for family, cap in protocol.max_examples.items())
        + " examples.",
        "- Model selection: per (rule, architecture, activation, depth) the grid point "
        "(learning rate x starting point) with the best validation accuracy; its checkpoint is "
        "the best-validation one up to the stop. Test accuracy is only reported.",
        "- DTP: target step 0.5, reconstruction noise 0.1 (not tuned; the paper gives none).",
        f"- {_seeds_text(protocol)}.",
        f"- {len(records)} baseline runs ({grid_points} grid points, {diverged} diverged); "
        f"training time summed over runs {train_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU "
        f"(torch threads per run: {_threads(records)}).",
        *coverage_lines(protocol, records),
        f"- Caveat: {protocol.caveat}",
        "",
        *claims_section(CLAIMS, records, scale, CLAIMS_NOTE),
        "Context:",
        "",
        *context_lines(rows, protocol),
        "",
        *ep_section(protocol, ep_records, rows),
        "## Results (test accuracy at the validation-selected grid point)",
        "",
        format_table(rows),
        "",
        *_seed_section(rows),
        "![accuracy against depth](accuracy_vs_depth.png)",
        "",
        "![hyperparameter sensitivity](sensitivity.png)",
        "",
        "The sensitivity figure shows the baselines only: EP's grid points are the epochs of "
        "one run, not hyperparameters.",
        "",
        "## Interpretations of the paper",
        "",
        *INTERPRETATIONS,
        "",
    ]
    return "\n".join(parts)


_COLOURS = {
    "NN": "tab:red",
    "DN": "tab:blue",
    "ConvNet": "tab:orange",
    "DenseConvNet": "tab:cyan",
    "skip": "tab:green",
}
#: architecture labels of the EP panel's legend
_EP_LABELS = {"NN": "NN (layered)", "skip": "skip (rewired p=0.1)"}


def _panel_rows(protocol: Protocol) -> list[tuple[str, str]]:
    """(family, activation) of each row of panels: the architecture families of the protocol
    (MLP: NN vs DN, Conv: ConvNet vs DenseConvNet, the paper's panels a and b), each with
    every activation."""
    families = [
        family
        for family, plain in FAMILIES.items()
        if {plain, PAIRS[plain]} & set(protocol.architectures)
    ]
    return [(family, act) for family in families for act in protocol.depths]


def _panels(
    protocol: Protocol,
    rules: Sequence[str],
    title: str,
    extra: Sequence[tuple[str, str]] = (),
) -> tuple[Figure, dict[tuple[str, str, str], Axes]]:
    """One row per (family, activation) of the protocol and one column per rule, keyed
    ``(family, activation, rule)``, plus one column per ``(activation, rule)`` of ``extra``
    (rules with an activation of their own, e.g. EP with the hard sigmoid), whose single panel,
    keyed ``("", activation, rule)``, sits in the first row."""
    panel_rows = _panel_rows(protocol)
    n_cols = len(rules) + len(extra)
    fig = Figure(figsize=(3.2 * n_cols, 2.6 * len(panel_rows)), dpi=100)
    axes = fig.subplots(len(panel_rows), n_cols, squeeze=False, sharey="row")
    fig.suptitle(title)
    panels = {}
    for i, (family, act) in enumerate(panel_rows):
        for j, rule in enumerate(rules):
            panels[(family, act, rule)] = axes[i][j]
    for k, (act, rule) in enumerate(extra):
        panels[("", act, rule)] = axes[0][len(rules) + k]
        for i in range(1, len(panel_rows)):
            axes[i][len(rules) + k].set_visible(False)
    for (family, act, rule), ax in panels.items():
        pair = f", {FAMILIES[family]} vs {PAIRS[FAMILIES[family]]}" if family else ""
        ax.set_title(f"{rule}, {act}{pair}", fontsize=9)
        ax.grid(alpha=0.3)
    return fig, panels


def _family_architectures(family: str, protocol: Protocol) -> list[str]:
    """The architectures of ``family`` that ``protocol`` trains, plain first."""
    plain = FAMILIES[family]
    return [a for a in (plain, PAIRS[plain]) if a in protocol.architectures]


def _rules_of(rules: Iterable[str]) -> list[str]:
    present = set(rules)
    return [r for r in RULE_NAMES if r in present] + sorted(present - set(RULE_NAMES))


def _mark_linear(ax: Axes, rows: Sequence[Row]) -> None:
    """A dashed line at the linear readout's test accuracy, when it was measured."""
    levels = [
        r.test_accuracy for r in rows if (r.rule, r.architecture, r.activation, r.depth) == LINEAR
    ]
    if levels:
        ax.axhline(100 * levels[0], color="grey", ls="--", lw=1, label="linear readout")


def _own_activation(key: tuple[str, str, str, int], protocol: Protocol) -> bool:
    """Whether (rule, architecture, activation, depth) has an activation outside the
    protocol's (EP's hard sigmoid), the linear readout apart."""
    return key[2] not in protocol.depths and key != LINEAR


def _split_rows(rows: Sequence[Row], protocol: Protocol) -> tuple[list[Row], list[Row]]:
    """The baselines' rows (and the linear readout), and the rows with an activation of their
    own (EP)."""
    own = [_own_activation((r.rule, r.architecture, r.activation, r.depth), protocol) for r in rows]
    return (
        [r for r, o in zip(rows, own, strict=True) if not o],
        [r for r, o in zip(rows, own, strict=True) if o],
    )


def plot_accuracy_vs_depth(rows: Sequence[Row], protocol: Protocol, path: Path) -> None:
    """Test accuracy against depth, one panel per architecture family (the paper's panels a:
    NN vs DN and b: ConvNet vs DenseConvNet), activation and rule, one line per architecture
    (the paper's Figure 1): the mean over seeds of the per-seed best test accuracy, with
    min-max bars where there are several seeds. Rules with an activation of their own (EP,
    hard sigmoid) get one more panel in the first row, drawn with square markers."""
    inside, others = _split_rows(rows, protocol)
    extra = sorted({(r.activation, r.rule) for r in others}, key=lambda k: (k[1], k[0]))
    fig, panels = _panels(
        protocol, _rules_of(r.rule for r in inside), "Test accuracy vs depth", extra
    )
    seeds = seed_accuracies(rows)
    for (family, act, rule), ax in panels.items():
        own = not family
        architectures = (
            sorted({r.architecture for r in others if (r.activation, r.rule) == (act, rule)})
            if own
            else _family_architectures(family, protocol)
        )
        depths: set[int] = set()
        for arch in architectures:
            points = sorted(
                (depth, [100 * a for a in values])
                for (r, ar, ac, depth), values in seeds.items()
                if (r, ac, ar) == (rule, act, arch) and (own or depth in protocol.depths[act])
            )
            if points:
                xs = [d for d, _ in points]
                ys = [float(np.mean(v)) for _, v in points]
                depths.update(xs)
                label = f"{rule} {_EP_LABELS.get(arch, arch)}" if own else arch
                style = "s-" if own else "o-"
                ax.plot(xs, ys, style, color=_COLOURS.get(arch), label=label)
                if any(len(v) > 1 for _, v in points):  # min-max over seeds
                    low = [m - min(v) for m, (_, v) in zip(ys, points, strict=True)]
                    high = [max(v) - m for m, (_, v) in zip(ys, points, strict=True)]
                    ax.errorbar(xs, ys, yerr=[low, high], fmt="none", color=_COLOURS.get(arch))
        _mark_linear(ax, rows)
        ax.set_xticks(sorted(depths) if own else protocol.depths[act])
        ax.set_xlabel("depth (hidden layers)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def plot_sensitivity(records: Sequence[Mapping], protocol: Protocol, path: Path) -> None:
    """Sorted test accuracies of every grid point (learning rate x starting point x depth x
    seed), one panel per architecture family, activation and rule, one line per architecture
    (the paper's Figure 2).
    Only the rules with the protocol's activations (the baselines): EP's grid points are the
    epochs of one run, not hyperparameters."""
    records = [r for r in records if not _own_activation(_record_key(r), protocol)]
    points: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for record in records:
        for point in record["grid"]:
            key = (record["rule"], record["activation"], record["architecture"])
            points[key].append(100 * float(point["test_accuracy"]))
    rules = _rules_of(r["rule"] for r in records)
    fig, panels = _panels(protocol, rules, "Sensitivity: sorted test accuracy over the grid")
    rows = collect_rows(records)
    for (family, act, rule), ax in panels.items():
        for arch in _family_architectures(family, protocol):
            values = sorted(points.get((rule, act, arch), []))
            if values:
                ax.plot(range(len(values)), values, ".-", color=_COLOURS.get(arch), label=arch)
        _mark_linear(ax, rows)
        ax.set_xlabel("grid point (sorted)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eqprop.experiments.skipnets SCALE OUT [--render | --publish DEST]``: print
    :func:`plan_lines`; with ``--render``, also :func:`render_stage` (a stage of unfinished
    runs, say); with ``--publish``, :func:`publish_stage`."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m eqprop.experiments.skipnets",
        description="print what `eqprop reproduce skipnets --scale SCALE --out OUT` would run "
        "and its estimated CPU time; trains nothing",
    )
    parser.add_argument("scale", help=", ".join(SCALES))
    parser.add_argument("out", help="the output directory")
    parser.add_argument(
        "--render",
        action="store_true",
        help="also draw the figures and write results.md from the run files there",
    )
    parser.add_argument(
        "--publish",
        metavar="DEST",
        help="render, then copy the stage into DEST (e.g. docs/results/skipnets) and "
        "regenerate the claims index beside it",
    )
    args = parser.parse_args(argv)
    try:
        print("\n".join(plan_lines(args.scale, Path(args.out))))
        if args.publish:
            index = publish_stage(args.scale, Path(args.out), Path(args.publish))
            print(f"published to {args.publish}; index: {index}")
        elif args.render:
            print(render_stage(args.scale, Path(args.out)))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
