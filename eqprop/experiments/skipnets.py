"""Seed 003 (Im, Patil & Branson): are skip connections necessary for biologically plausible
learning rules? BP, FA and DTP on plain and densely connected networks against depth.

For every rule, architecture, activation and depth the experiment trains one network per
learning rate of the grid and derives the result of every early-stopping starting point from
that run (exact, see :mod:`eqprop.baselines.training`). A row of the table is the grid point
with the best *validation* accuracy; its test accuracy is reported. Outputs in ``out``:

- ``runs/*.json``: one file per training run, written atomically; a rerun skips the files that
  exist. Schema (what :func:`collect_rows` reads, so other rules, e.g. EP, can add rows by
  writing files of the same form): ``rule``, ``architecture``, ``activation``, ``depth`` and
  ``grid``, a list of ``{"hyperparameters": {...}, "valid_accuracy", "test_accuracy"}``;
  optional ``seconds`` and ``cpu_seconds``.
- ``accuracy_vs_depth.png`` (the seed's Figure 1), ``sensitivity.png`` (its Figure 2: test
  accuracies of all grid points, sorted);
- ``results.md``: protocol, table, and the claim check.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from eqprop.baselines import ArchitectureConfig, Network, TrainConfig, TrainingData, make_rule
from eqprop.baselines import train as train_rule
from eqprop.data import load_dataset
from eqprop.errors import ConfigError
from eqprop.runs import atomic_write_bytes

SCALES = ("smoke", "quick", "full")
RULE_NAMES = ("BP", "FA", "DTP")
#: plain architecture -> its densely connected counterpart
PAIRS = {"NN": "DN", "ConvNet": "DenseConvNet"}
#: (rule, architecture, activation, depth) of the reference run: a linear softmax readout of the
#: pixels (no hidden layer), the path every dense network has from its input to its output
LINEAR = ("BP", "linear", "none", 0)
#: tolerance (accuracy points) of the automatic claim check
NEAR_BP = 0.02
DEGRADE_MARGIN = 0.01

_LOG = logging.getLogger(__name__)


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
        seed: seed of initialisation, feedback matrices, DTP noise and batch order.
        caveat: what this scale cannot show, stated in ``results.md``.
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
    seed: int = 0
    caveat: str = ""


def _same_rates(sigmoid: tuple[float, ...], relu: tuple[float, ...]) -> dict:
    return {
        (rule, act): rates
        for rule in RULE_NAMES
        for act, rates in (("sigmoid", sigmoid), ("relu", relu))
    }


PROTOCOLS: dict[str, Protocol] = {
    # Seconds on sklearn's digits (1,150 / 287 / 360 examples, 8x8): plumbing only.
    "smoke": Protocol(
        dataset="digits",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN"),
        depths={"sigmoid": (3, 4), "relu": (5, 6)},
        learning_rates=_same_rates((1e-2,), (1e-3,)),
        early_stop_starts={"mlp": (2_300, 4_600)},
        max_examples={"mlp": 5_750},
        eval_every=1_150,
        patience=2,
        caveat="Plumbing check on a tiny dataset with a few epochs; says nothing about the claim.",
    ),
    # MNIST, all 50k training images but a short budget (80k examples, 1.6 epochs; the seed's
    # starting points are 200k-1000k), 3 of the seed's depths per activation, 2 learning rates
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
            "Short budget: at most 80k examples (1.6 epochs) per run against the seed's "
            "200k-1000k, so networks that learn slowly (deep plain ones especially) are "
            "penalised more than under the seed's protocol; 3 depths per activation, 2 "
            "learning rates, validation on 5k examples, one seed."
        ),
    ),
    # The seed's protocol (section 3, Table 1): MNIST 50k / 10k / 10k, depths 3-7 (sigmoid)
    # and 5-10 (ReLU), three learning rates per rule and activation, early-stopping starting
    # points 200k-1000k for MLPs and 50k-150k for ConvNets.
    "full": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN", "ConvNet", "DenseConvNet"),
        depths={"sigmoid": (3, 4, 5, 6, 7), "relu": (5, 6, 7, 8, 9, 10)},
        learning_rates={
            ("BP", "sigmoid"): (1e-1, 1e-2, 1e-3),
            ("FA", "sigmoid"): (1e-2, 1e-3, 1e-4),
            ("DTP", "sigmoid"): (1e-2, 1e-3, 1e-4),
            **{(rule, "relu"): (1e-3, 1e-4, 1e-5) for rule in RULE_NAMES},
        },
        early_stop_starts={
            "mlp": (200_000, 400_000, 600_000, 800_000, 1_000_000),
            "conv": (50_000, 100_000, 150_000),
        },
        max_examples={"mlp": 1_500_000, "conv": 300_000},
        eval_every=50_000,
        patience=3,
        caveat="One seed; ConvNets at this size need a GPU-sized budget.",
    ),
}


@dataclass(frozen=True)
class Row:
    """One line of the results table: the best grid point of one configuration."""

    rule: str
    architecture: str
    activation: str
    depth: int
    hyperparameters: dict[str, float]
    valid_accuracy: float
    test_accuracy: float


def _family(architecture: str) -> str:
    """Which early-stopping grid an architecture uses: "conv" or "mlp" (the linear readout)."""
    return "conv" if "Conv" in architecture else "mlp"


def _run_name(rule: str, architecture: str, activation: str, depth: int, lr: float) -> str:
    return f"{rule}-{architecture}-{activation}-d{depth}-lr{lr:g}.json"


def _train_one(
    protocol: Protocol,
    data: TrainingData,
    rule_name: str,
    architecture: str,
    activation: str,
    depth: int,
    learning_rate: float,
) -> dict:
    """Train one network and return its result record (the run file's content)."""
    family = _family(architecture)
    starts = protocol.early_stop_starts[family]
    if (rule_name, architecture, activation, depth) == LINEAR:
        arch = ArchitectureConfig("NN", depth=0)
    else:
        arch = ArchitectureConfig(architecture, depth, activation)
    network = Network(arch, data.input_shape(arch.convolutional), data.n_classes, protocol.seed)
    config = TrainConfig(
        learning_rate=learning_rate,
        early_stop_start=max(starts),
        patience=protocol.patience,
        max_examples=protocol.max_examples[family],
        eval_every=protocol.eval_every,
        seed=protocol.seed,
    )
    result = train_rule(make_rule(rule_name, network, protocol.seed), data, config)
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


def _planned_runs(protocol: Protocol) -> list[tuple[str, str, str, int, float]]:
    """Every run of the protocol, plus the linear readout (BP's ReLU learning rates)."""
    runs = [
        (rule, arch, act, depth, lr)
        for arch in protocol.architectures
        for act, depths in protocol.depths.items()
        for depth in depths
        for rule in RULE_NAMES
        for lr in protocol.learning_rates[(rule, act)]
    ]
    return runs + [(*LINEAR, lr) for lr in protocol.learning_rates[("BP", "relu")]]


def run(scale: str, out: Path, data_dir: Path | None) -> Path:
    """Run (or resume) the experiment at ``scale`` into ``out``; return ``results.md``."""
    if scale not in PROTOCOLS:
        raise ConfigError(f"skipnets scale must be one of {', '.join(SCALES)}; got {scale!r}")
    protocol = PROTOCOLS[scale]
    out = Path(out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    data: TrainingData | None = None
    planned = _planned_runs(protocol)
    for index, (rule, arch, act, depth, lr) in enumerate(planned, 1):
        path = runs_dir / _run_name(rule, arch, act, depth, lr)
        if path.exists():
            continue
        if data is None:
            data = _load_data(protocol, data_dir)
        record = _train_one(protocol, data, rule, arch, act, depth, lr)
        atomic_write_bytes(path, json.dumps(record, indent=1).encode())
        best = max(point["valid_accuracy"] for point in record["grid"])
        _LOG.info(
            "skipnets %d/%d %s: best valid %.4f (%.0f s)",
            index,
            len(planned),
            path.stem,
            best,
            record["seconds"],
        )
    records = load_records(runs_dir)
    rows = collect_rows(records)
    plot_accuracy_vs_depth(rows, protocol, out / "accuracy_vs_depth.png")
    plot_sensitivity(records, protocol, out / "sensitivity.png")
    results = out / "results.md"
    atomic_write_bytes(results, render_results(scale, protocol, records, rows).encode())
    return results


def load_records(runs_dir: Path) -> list[dict]:
    """Every run file in ``runs_dir`` (sorted by name)."""
    return [json.loads(path.read_text()) for path in sorted(Path(runs_dir).glob("*.json"))]


def collect_rows(records: Iterable[Mapping]) -> list[Row]:
    """One row per (rule, architecture, activation, depth): the grid point with the best
    validation accuracy (ties: the first in file order) across all run records."""
    best: dict[tuple[str, str, str, int], Row] = {}
    for record in records:
        key = (record["rule"], record["architecture"], record["activation"], record["depth"])
        for point in record["grid"]:
            if key in best and point["valid_accuracy"] <= best[key].valid_accuracy:
                continue
            best[key] = Row(*key, dict(point["hyperparameters"]), *_accuracies(point))
    order = {name: i for i, name in enumerate(RULE_NAMES)}
    return sorted(
        best.values(),
        key=lambda r: (r.architecture, r.activation, r.depth, order.get(r.rule, len(order))),
    )


def _accuracies(point: Mapping) -> tuple[float, float]:
    return float(point["valid_accuracy"]), float(point["test_accuracy"])


def _format_hyperparameters(hyperparameters: Mapping[str, float]) -> str:
    short = {"learning_rate": "lr", "early_stop_start": "start"}
    return ", ".join(f"{short.get(k, k)}={v:g}" for k, v in hyperparameters.items())


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of ``rows``: rule, architecture, activation, depth, best
    hyperparameters, validation and test accuracy (%)."""
    lines = [
        "| rule | architecture | activation | depth | best hyperparameters | valid acc (%) "
        "| test acc (%) |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.rule} | {row.architecture} | {row.activation} | {row.depth} "
            f"| {_format_hyperparameters(row.hyperparameters)} "
            f"| {100 * row.valid_accuracy:.2f} | {100 * row.test_accuracy:.2f} |"
        )
    return "\n".join(lines)


def _index(rows: Iterable[Row]) -> dict[tuple[str, str, str, int], float]:
    return {(r.rule, r.architecture, r.activation, r.depth): r.test_accuracy for r in rows}


def claim_check(rows: Sequence[Row], protocol: Protocol) -> tuple[list[str], str]:
    """The seed's claim, tested on the measured rows.

    For each activation, rule in {FA, DTP} and plain/dense pair of ``protocol``:

    - *dense keeps the rule near BP*: at the deepest depth the dense network trained by the
      rule is within ``NEAR_BP`` of the dense network trained by BP;
    - *plain degrades*: from the shallowest to the deepest depth, the plain network loses at
      least ``DEGRADE_MARGIN`` more test accuracy than the dense one.

    Returns the per-case lines (Markdown bullets) and a one-word verdict: "holds" (every case
    passes both), "does not hold" (none passes both) or "partly holds".
    """
    acc = _index(rows)
    lines, passed, total = [], 0, 0
    for plain, dense in PAIRS.items():
        if plain not in protocol.architectures:
            continue
        for act, depths in protocol.depths.items():
            low, high = min(depths), max(depths)
            for rule in ("FA", "DTP"):
                try:
                    bp_dense = acc[("BP", dense, act, high)]
                    plain_low, plain_high = (
                        acc[(rule, plain, act, low)],
                        acc[(rule, plain, act, high)],
                    )
                    dense_low, dense_high = (
                        acc[(rule, dense, act, low)],
                        acc[(rule, dense, act, high)],
                    )
                except KeyError:
                    continue
                gap = bp_dense - dense_high
                drop_plain, drop_dense = plain_low - plain_high, dense_low - dense_high
                near = gap <= NEAR_BP
                degrades = drop_plain >= drop_dense + DEGRADE_MARGIN
                total += 1
                passed += near and degrades
                lines.append(
                    f"- {rule}, {act}: at depth {high}, {dense} {100 * dense_high:.2f}% vs BP "
                    f"{100 * bp_dense:.2f}% ({'near' if near else 'not near'} BP); depth {low} "
                    f"-> {high}: {plain} {100 * plain_low:.2f} -> {100 * plain_high:.2f}%, "
                    f"{dense} {100 * dense_low:.2f} -> {100 * dense_high:.2f}% "
                    f"({'plain degrades more' if degrades else 'plain does not degrade more'})."
                )
    if total == 0:
        return lines, "not tested"
    verdict = "holds" if passed == total else "does not hold" if passed == 0 else "partly holds"
    return lines, verdict


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


#: implementation choices where the seed is silent or ambiguous, stated in every results.md
INTERPRETATIONS = (
    "- Depth counts hidden layers (the output layer is extra).",
    "- Dense layers receive every earlier layer *including the input*, as SPEC section 5 "
    "says; the seed's formula sums from h_1 while defining h_0 = x, which leaves it open. "
    "The output layer is a layer like the others, so it also reads every hidden layer and the "
    "pixels.",
    "- The seed names no optimiser; we use Adam for every rule. Its learning-rate ranges "
    "(Table 1) are used as given; they look tuned for plain SGD with sigmoid and for an "
    "adaptive method with ReLU.",
    "- The seed's 'early stop starting point' is read as examples seen before patience-based "
    "early stopping may stop a run; the reported checkpoint is the best-validation one. Table "
    "1 and its footnote disagree on the DTP/ReLU range; we use the text's ranges per "
    "architecture family (200k-1000k for MLPs, 50k-150k for ConvNets).",
    "- FA: every forward matrix, skip ones included, has its own fixed random feedback matrix "
    "drawn like the forward weight's initialisation; output-layer weights get their true "
    "gradient.",
    "- DTP (Lee et al. 2015, Algorithm 1): one learned inverse per hidden-to-hidden edge; the "
    "target of layer l sums the difference corrections of every later hidden layer it feeds "
    "(the seed's formula) plus a gradient step through the output layer's own weight from l "
    "(in a plain network only the last hidden layer has one, as in Lee et al.).",
)


def render_results(
    scale: str,
    protocol: Protocol,
    records: Sequence[Mapping],
    rows: Sequence[Row],
) -> str:
    """The text of ``results.md``."""
    lines, verdict = claim_check(rows, protocol)
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
        f"# Skip connections and biologically plausible rules (seed 003), scale `{scale}`",
        "",
        "## Protocol",
        "",
        f"- Data: `{protocol.dataset}`, split `icons` (train / valid / test), {limits}.",
        f"- Architectures: {', '.join(protocol.architectures)}; 128 units per MLP hidden layer, "
        "16 x depth channels per ConvNet layer; dense layers receive every earlier layer, "
        "the input included.",
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
        "- DTP: target step 0.5, reconstruction noise 0.1 (not tuned; the seed gives none).",
        f"- Seed {protocol.seed}, one run per grid point.",
        f"- {len(records)} runs ({grid_points} grid points, {diverged} diverged); training "
        f"time summed over runs {train_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU "
        f"(torch threads: {torch.get_num_threads()}).",
        f"- Caveat: {protocol.caveat}",
        "",
        "## Claim check",
        "",
        "The seed's claim: with dense connectivity FA and DTP stay near BP as depth grows, while "
        f"plain networks degrade. Criteria: near = within {100 * NEAR_BP:.0f} points of BP on "
        "the dense network at the deepest depth; degrades = from the shallowest to the deepest "
        f"depth the plain network loses at least {100 * DEGRADE_MARGIN:.0f} point more than "
        "the dense one. Single seed.",
        "",
        *lines,
        "",
        f"**Verdict: the claim {verdict} in these measurements.**",
        "",
        "Context:",
        "",
        *context_lines(rows, protocol),
        "",
        "## Results (test accuracy at the validation-selected grid point)",
        "",
        format_table(rows),
        "",
        "![accuracy against depth](accuracy_vs_depth.png)",
        "",
        "![hyperparameter sensitivity](sensitivity.png)",
        "",
        "## Interpretations of the seed",
        "",
        *INTERPRETATIONS,
        "",
    ]
    return "\n".join(parts)


_COLOURS = {"NN": "tab:red", "DN": "tab:blue", "ConvNet": "tab:orange", "DenseConvNet": "tab:cyan"}


def _panels(
    protocol: Protocol, rules: Sequence[str], title: str
) -> tuple[Figure, dict[tuple[str, str], Axes]]:
    activations = list(protocol.depths)
    fig = Figure(figsize=(3.2 * len(rules), 2.6 * len(activations)), dpi=100)
    axes = fig.subplots(len(activations), len(rules), squeeze=False, sharey="row")
    fig.suptitle(title)
    panels = {}
    for i, act in enumerate(activations):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            ax.set_title(f"{rule}, {act}", fontsize=9)
            ax.grid(alpha=0.3)
            panels[(act, rule)] = ax
    return fig, panels


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


def plot_accuracy_vs_depth(rows: Sequence[Row], protocol: Protocol, path: Path) -> None:
    """Test accuracy against depth, one panel per activation and rule, one line per
    architecture (the seed's Figure 1)."""
    fig, panels = _panels(protocol, _rules_of(r.rule for r in rows), "Test accuracy vs depth")
    for (act, rule), ax in panels.items():
        for arch in protocol.architectures:
            points = sorted(
                (r.depth, 100 * r.test_accuracy)
                for r in rows
                if (r.rule, r.activation, r.architecture) == (rule, act, arch)
                and r.depth in protocol.depths[act]
            )
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, "o-", color=_COLOURS.get(arch), label=arch)
        _mark_linear(ax, rows)
        ax.set_xticks(protocol.depths[act])
        ax.set_xlabel("depth (hidden layers)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def plot_sensitivity(records: Sequence[Mapping], protocol: Protocol, path: Path) -> None:
    """Sorted test accuracies of every grid point (learning rate x starting point x depth),
    one panel per activation and rule, one line per architecture (the seed's Figure 2)."""
    points: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for record in records:
        for point in record["grid"]:
            key = (record["rule"], record["activation"], record["architecture"])
            points[key].append(100 * float(point["test_accuracy"]))
    rules = _rules_of(r["rule"] for r in records)
    fig, panels = _panels(protocol, rules, "Sensitivity: sorted test accuracy over the grid")
    rows = collect_rows(records)
    for (act, rule), ax in panels.items():
        for arch in protocol.architectures:
            values = sorted(points.get((rule, act, arch), []))
            if values:
                ax.plot(range(len(values)), values, ".-", color=_COLOURS.get(arch), label=arch)
        _mark_linear(ax, rows)
        ax.set_xlabel("grid point (sorted)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
