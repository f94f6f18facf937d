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
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from eqprop.baselines.training import RunProgress
from eqprop.data import logic_gate
from eqprop.directed import DirectedConfig, TrainingResult, train
from eqprop.errors import ConfigError
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict, claims_section
from eqprop.runs import atomic_write

SCALES = ("smoke", "full")
#: what :func:`_sparsest` pairs with each run (a method or a method's name)
T = TypeVar("T")
GATES = ("AND", "OR", "XOR")
#: sparsity of the networks in Figure 2 of Farinha et al.
PAPER_SPARSITY = {"AND": 0.9375, "OR": 0.9583, "XOR": 0.6250}
#: at most this many epochs of the MSE bands are stored per run file
_CURVE_POINTS = 500

_DEEP = DirectedConfig(
    rule="deep",
    n_hidden=5,
    input_edges=True,
    eps=0.1,
    beta=2.0,
    free_steps=200,
    nudged_steps=20,
    lr=10.0,
    init_scale=0.5,
    epochs=4000,
)
#: L1 strengths of the two pruned variants: weak enough for XOR, strong enough for AND and OR
_L1 = (3e-6, 3e-5)

#: The protocol of the authors' notebook, ``logical_operations_DEEP.ipynb`` of
#: MatildeTristany/DEEP-model-ESANN-2020, with its L1 and pruning switched on (the committed
#: notebook has both flags off) at the values of its hyperparameter dictionary. The notebook
#: steps the weights by ``dt_W = 100`` times the path integral of eq. 2 averaged over
#: ``M_beta`` and the batch, not divided by ``beta``; eq. 2 here divides by ``beta``, so the
#: same step is ``lr = dt_W * beta``. Its L1 step ``reg_W sign(W)``, ``reg_W = 1.5e-4``, is not
#: scaled by ``dt_W``; here it is ``lr * l1``, so ``l1 = reg_W / lr``.
AUTHORS = DirectedConfig(
    rule="deep",
    n_hidden=5,
    input_edges=False,
    eps=0.05,
    beta=10.0,
    free_steps=1000,
    nudged_steps=1000,
    lr=100.0 * 10.0,
    l1=1.5e-4 / (100.0 * 10.0),
    prune_threshold=0.01,
    temperature=5.0,
    init_scale=0.05,
    epochs=200,
    batch_size=None,
    init_distribution="normal",
    state_init_scale=0.1,
    prune_normalisation="column",
    prune_permanent=False,
)
#: seeds of the XOR search at full scale
_SEARCH_SEEDS = tuple(range(100))


@dataclass(frozen=True)
class Method:
    """One trained variant: a file-safe name, a label for tables and plots, its config."""

    name: str
    label: str
    config: DirectedConfig


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r} for deep-logic; choose one of: smoke, full")


def _authors(scale: str) -> DirectedConfig:
    """:data:`AUTHORS`, shortened at smoke scale."""
    return (
        AUTHORS if scale == "full" else replace(AUTHORS, epochs=5, free_steps=100, nudged_steps=100)
    )


def methods(scale: str) -> tuple[tuple[Method, ...], tuple[int, ...]]:
    """The methods and seeds of a scale; ConfigError for an unknown scale."""
    _check_scale(scale)
    deep = _DEEP if scale == "full" else replace(_DEEP, epochs=40, free_steps=100)
    sparse = tuple(
        Method(
            f"deep-l1-{l1:g}",
            f"DEEP + L1 {l1:g} + pruning",
            replace(deep, l1=l1, prune_threshold=0.01, temperature=1.0),
        )
        for l1 in _L1
    )
    regrow = Method(
        f"deep-l1-{_L1[1]:g}-regrow",
        f"DEEP + L1 {_L1[1]:g} + pruning, regrowth",
        replace(sparse[1].config, prune_permanent=False),
    )
    asymmetric = replace(deep, rule="asymmetric")
    matched = replace(asymmetric, lr=deep.lr / deep.nudged_steps)
    seeds = tuple(range(10)) if scale == "full" else (0, 1, 2)
    return (
        Method("deep", "DEEP", deep),
        Method("asym", "asymmetric EP", asymmetric),
        Method("asym-lr", f"asymmetric EP, lr / {deep.nudged_steps}", matched),
        *sparse,
        regrow,
        Method("deep-authors", "DEEP, authors' protocol", _authors(scale)),
    ), seeds


def ablations(scale: str) -> tuple[Method, ...]:
    """The authors' protocol as the notebook is committed (no L1, no pruning), then with one
    point at a time set to the value of our deep-logic protocol; trained on every gate from
    the seeds of :func:`methods`."""
    _check_scale(scale)
    authors = _authors(scale)
    ours = _DEEP
    return (
        Method(
            "authors-committed",
            "as committed: no L1, no pruning",
            replace(authors, l1=0.0, prune_threshold=0.0),
        ),
        Method(
            "authors-permanent",
            "pruned connections removed for good",
            replace(authors, prune_permanent=True),
        ),
        Method(
            "authors-present",
            "eq. 3 normalised over present connections",
            replace(authors, prune_normalisation="present"),
        ),
        Method(
            "authors-input-edges",
            "with the edges into the inputs",
            replace(authors, input_edges=ours.input_edges),
        ),
        Method(
            "authors-zero-states",
            "first phase from zero states",
            replace(authors, state_init_scale=ours.state_init_scale),
        ),
        Method(
            "authors-uniform-init",
            f"initial weights U[-{ours.init_scale:g}, {ours.init_scale:g}]",
            replace(authors, init_distribution=ours.init_distribution, init_scale=ours.init_scale),
        ),
    )


def searches(scale: str) -> tuple[tuple[Method, ...], tuple[int, ...]]:
    """The pruned methods trained on XOR from many seeds (100 at full scale): how often a
    correct XOR network as sparse as the paper's comes out."""
    all_methods, _ = methods(scale)
    names = (f"deep-l1-{_L1[1]:g}", f"deep-l1-{_L1[1]:g}-regrow", "deep-authors")
    chosen = tuple(m for m in all_methods if m.name in names)
    return chosen, _SEARCH_SEEDS if scale == "full" else tuple(range(5))


def _write_atomic(path: Path, write) -> None:
    """:func:`eqprop.runs.atomic_write` (``write`` fills a binary file), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def _finite(value: float, digits: int = 6) -> float | None:
    """JSON-safe rounded float (None for NaN or infinity)."""
    return round(value, digits) if math.isfinite(value) else None


def _summarise(result: TrainingResult, seeds: tuple[int, ...], seconds: float) -> dict:
    """The per-run numbers, the pruned networks and the MSE bands of one gate and method."""
    epochs = result.mse.shape[1]
    stride = max(1, math.ceil(epochs / _CURVE_POINTS))
    index = list(range(0, epochs, stride))
    if index[-1] != epochs - 1:
        index.append(epochs - 1)
    curves = result.mse[:, index]
    levels = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    bands = torch.nanquantile(curves, levels, dim=0)
    net = result.network
    runs = []
    for r, seed in enumerate(seeds):
        runs.append(
            {
                "seed": seed,
                "success": bool(result.success[r]),
                "correct": bool(result.max_error[r] < 0.5),
                "converged_epoch": int(result.converged_epoch[r]),
                "diverged_at": int(result.diverged_at[r]),
                "final_mse": _finite(float(result.mse[r, -1])),
                "sparsity": float(result.sparsity[r]),
                "input_edges_left": int(net.mask[r][:, : net.n_inputs].sum()),
                "weights": [[_finite(float(w), 4) for w in row] for row in net.weights[r]],
                "mask": net.mask[r].int().tolist(),
            }
        )
    names = ("min", "q25", "median", "q75", "max")
    return {
        "seconds": round(seconds, 2),
        "epochs": index,
        "bands": {k: [_finite(float(v)) for v in bands[i]] for i, k in enumerate(names)},
        "runs": runs,
    }


def _run_path(out: Path, gate: str, method: Method, suffix: str = "") -> Path:
    """The run file of one gate and method."""
    return out / "runs" / f"{gate.lower()}-{method.name}{suffix}.json"


def _run_file(
    out: Path,
    gate: str,
    method: Method,
    seeds: tuple[int, ...],
    suffix: str = "",
    progress: RunProgress | None = None,
) -> dict:
    """Train one gate with one method from every seed, or load the stored result.

    A stored config lacking fields added to :class:`DirectedConfig` since it was written is
    read with their defaults, which reproduce the behaviour of the time. ``progress`` counts
    a run trained here.
    """
    path = _run_path(out, gate, method, suffix)
    settings = {"gate": gate, "method": method.name, "config": asdict(method.config)}
    settings["seeds"] = list(seeds)
    if path.exists():
        stored = json.loads(path.read_text())
        if isinstance(stored.get("config"), dict):
            stored["config"] = asdict(DirectedConfig()) | stored["config"]
        if {k: stored.get(k) for k in settings} != settings:
            raise ConfigError(f"{path} holds results of other settings; use another output folder")
        return stored
    x, y = logic_gate(gate)
    start = time.perf_counter()
    result = train(method.config, x, y, seeds)
    record = settings | _summarise(result, seeds, time.perf_counter() - start)
    _write_atomic(path, lambda f: f.write(json.dumps(record).encode()))
    if progress is not None:
        correct = sum(run["correct"] for run in record["runs"])
        seconds = record["seconds"]
        progress.update(f"{gate} {method.name}: {correct}/{len(seeds)} correct ({seconds:.0f} s)")
    return record


def _plot_mse(records: dict, shown: tuple[Method, ...], path: Path) -> None:
    """Figure 1: first-phase MSE against epoch, median with quartile and min-max bands."""
    fig = Figure(figsize=(11, 2.6 * len(shown)), layout="constrained")
    axes = fig.subplots(len(shown), len(GATES), sharex=True, sharey=True, squeeze=False)
    for row, method in enumerate(shown):
        for col, gate in enumerate(GATES):
            ax, record = axes[row][col], records[gate, method.name]
            band = {
                k: [math.nan if v is None else v for v in vs] for k, vs in record["bands"].items()
            }
            epochs = record["epochs"]
            ax.fill_between(
                epochs, band["min"], band["max"], color="C0", alpha=0.2, lw=0, label="min-max"
            )
            ax.fill_between(
                epochs, band["q25"], band["q75"], color="C0", alpha=0.5, lw=0, label="q25-q75"
            )
            ax.plot(epochs, band["median"], color="C0", lw=1.2, label="median")
            successes = sum(run["success"] for run in record["runs"])
            ax.set_title(f"{gate}, {method.label} ({successes}/{len(record['runs'])})", fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            if col == 0:
                ax.set_ylabel("MSE (first phase)")
            if row == len(shown) - 1:
                ax.set_xlabel("epoch")
    axes[0][0].legend(fontsize=7, loc="upper right")
    _write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=80))


def _sparsest(runs: list[tuple[T, dict]]) -> tuple[T, dict]:
    """The run shown in Figure 2: the sparsest correct run, else the most accurate one."""
    correct = [(method, run) for method, run in runs if run["correct"]]
    if correct:
        return max(correct, key=lambda pair: pair[1]["sparsity"])
    return min(runs, key=lambda pair: pair[1]["final_mse"] or math.inf)


def _plot_networks(records: dict, pruned: tuple[Method, ...], path: Path) -> None:
    """Figure 2: pruned networks, edge opacity proportional to |weight|, colour by sign."""
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    axes = fig.subplots(1, len(GATES))
    for ax, gate in zip(axes, GATES, strict=True):
        candidates = [(m, run) for m in pruned for run in records[gate, m.name]["runs"]]
        method, run = _sparsest(candidates)
        weights = torch.tensor(
            [[math.nan if w is None else w for w in row] for row in run["weights"]]
        )
        mask = torch.tensor(run["mask"], dtype=torch.bool)
        n = weights.shape[0] - 1
        angles = [math.pi / 2 - 2 * math.pi * k / n for k in range(n)]
        position = [(math.cos(a), math.sin(a)) for a in angles] + [(0.0, 0.0)]
        strength = weights.abs().masked_fill(~mask, 0.0)
        scale = float(strength.max()) or 1.0
        for i, j in mask.nonzero().tolist():
            alpha = max(0.05, float(strength[i, j]) / scale)
            arrow = FancyArrowPatch(
                position[i],
                position[j],
                arrowstyle="-|>",
                mutation_scale=9,
                connectionstyle="arc3,rad=0.12",
                shrinkA=11,
                shrinkB=11,
                color="C3" if weights[i, j] > 0 else "C0",
                alpha=alpha,
                lw=1.4,
            )
            ax.add_patch(arrow)
        for k, (px, py) in enumerate(position):
            kind = (
                "input" if k < 2 else ("bias" if k == n else ("output" if k == n - 1 else "hidden"))
            )
            colour = {
                "input": "#bbbbbb",
                "hidden": "#ffffff",
                "output": "#ffd27f",
                "bias": "#dddddd",
            }
            ax.scatter([px], [py], s=380, c=colour[kind], edgecolors="black", zorder=3)
            ax.annotate("b" if k == n else str(k), (px, py), ha="center", va="center", zorder=4)
        status = "correct" if run["correct"] else "not learned"
        ax.set_title(
            f"{gate}: {100 * run['sparsity']:.2f}% sparse ({status}; paper "
            f"{100 * PAPER_SPARSITY[gate]:.2f}%)\n{method.label}, seed {run['seed']}",
            fontsize=9,
        )
        ax.set_xlim(-1.3, 1.3)
        ax.set_ylim(-1.3, 1.3)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle("Pruned networks (red: positive, blue: negative; opacity: |weight|)", fontsize=10)
    _write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=80))


_PAPER_OUTCOME = {
    ("deep", "AND"): "MSE to 0",
    ("deep", "OR"): "MSE to 0",
    ("deep", "XOR"): "MSE to 0 most of the times",
    ("asym", "AND"): "slower than DEEP (about 2x), not always to 0",
    ("asym", "OR"): "slower than DEEP (about 2x), not always to 0",
    ("asym", "XOR"): "fails",
}


def _epochs_text(record: dict) -> str:
    """Median [min, max] of the first epoch with MSE below the threshold, over runs reaching it."""
    epochs = sorted(run["converged_epoch"] for run in record["runs"] if run["converged_epoch"] >= 0)
    if not epochs:
        return "never"
    median = (
        epochs[len(epochs) // 2] if len(epochs) % 2 else sum(epochs[len(epochs) // 2 - 1 :][:2]) / 2
    )
    return f"{median:g} [{epochs[0]}, {epochs[-1]}] ({len(epochs)} runs)"


def _row(gate: str, method: Method, record: dict) -> str:
    runs = record["runs"]
    count = len(runs)
    success = sum(run["success"] for run in runs)
    correct = sum(run["correct"] for run in runs)
    diverged = sum(run["diverged_at"] >= 0 for run in runs)
    finals = sorted(run["final_mse"] for run in runs if run["final_mse"] is not None)
    final = f"{finals[len(finals) // 2]:.2g}" if finals else "n/a"
    sparsity = [100 * run["sparsity"] for run in runs]
    sparse_text = (
        f"{sum(sparsity) / count:.1f}% [{min(sparsity):.1f}, {max(sparsity):.1f}]"
        if method.config.prune_threshold > 0
        else "0 (no pruning)"
    )
    if method.config.prune_threshold > 0:
        paper = f"{100 * PAPER_SPARSITY[gate]:.2f}% sparse"
    else:
        paper = _PAPER_OUTCOME.get((method.name, gate), "")
    return (
        f"| {gate} | {method.label} | {success}/{count} | {correct}/{count} | {diverged} | "
        f"{_epochs_text(record)} | {final} | {sparse_text} | {paper} |"
    )


def _settings_table(all_methods: tuple[Method, ...]) -> list[str]:
    fields = list(asdict(all_methods[0].config))
    lines = ["| setting | " + " | ".join(m.label for m in all_methods) + " |"]
    lines.append("|---" * (len(all_methods) + 1) + "|")
    for field in fields:
        values = [getattr(m.config, field) for m in all_methods]
        lines.append(
            f"| {field} | "
            + " | ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
            + " |"
        )
    return lines


def _results_markdown(
    scale: str,
    records: dict,
    all_methods: tuple[Method, ...],
    seeds: tuple[int, ...],
    notebook: list[str],
    seconds: float,
) -> str:
    threshold = all_methods[0].config.success_mse
    lines = [
        "# DEEP on logic gates (Farinha et al., Figures 1 and 2)",
        "",
        f"Scale `{scale}`: {len(seeds)} seeded runs ({seeds[0]}..{seeds[-1]}) per gate and method, "
        f"8-neuron complete directed graph (2 inputs, 5 hidden, 1 output). Training time "
        f"{seconds:.0f} s in all, the notebook comparison included (sum over the run files, as "
        "measured when each was computed).",
        "",
        "## Results",
        "",
        f"- *MSE < {threshold:g}*: runs whose final networks have a first-phase MSE below "
        f"{threshold:g} over the four examples.",
        "- *correct*: runs whose final outputs are all within 0.5 of the target.",
        f"- *epochs*: first epoch with MSE < {threshold:g}, median [min, max] over the runs that "
        "reach it.",
        "- *sparsity*: fraction of the 48 learnable connections (42 edges into hidden and output "
        "neurons, 6 biases) removed by pruning (with regrowth: whose weight is 0 at the end), "
        "mean [min, max] over runs.",
        "",
        f"| gate | method | MSE < {threshold:g} | correct | diverged | epochs | "
        "final MSE (median) | sparsity | paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in all_methods:
        lines += [_row(gate, method, records[gate, method.name]) for gate in GATES]
    lines += [
        "",
        "![MSE against epoch](fig1_mse.png)",
        "",
        "![Pruned networks](fig2_pruned.png)",
        "",
        "## Settings",
        "",
        *_settings_table(all_methods),
        "",
        "Each epoch is one full-batch update on the four examples: a first phase of "
        "`free_steps` Euler steps from zero states (from `U[0, state_init_scale)` when that is "
        "positive), a second phase of `nudged_steps` steps with `beta`, then the update, L1 and "
        "pruning. Except in the authors' protocol, the graph also holds the 12 edges from the "
        "hidden and output neurons into the inputs (`input_edges`), which only add to the leak "
        "of eq. 1 and are never changed by the learning rules; they are not counted in the "
        "sparsity. Asymmetric EP uses its own dynamics (leak `-s_j`).",
        "",
        *claims_section(CLAIMS, records, scale, CLAIMS_NOTE),
        *notebook,
        "",
        "## Choices where the paper is silent",
        "",
        "- Farinha et al. give no hyperparameters (their notebook does: the authors' protocol "
        "above). Ours were chosen on XOR with seeds 10..29 "
        "(a random search over `init_scale`, `beta`, `lr`, `eps`, `nudged_steps`), then run here "
        "on seeds 0..9; the two L1 strengths bracket the trade-off between sparsity and "
        "learning found on seeds 10..19.",
        "- Parameters counted for the sparsity: 48, the edges and biases into the 6 free "
        "neurons; the paper's 93.75%, 95.83% and 62.50% are 45, 46 and 30 of 48 removed.",
        "- Edges into the inputs: eq. 1's leak sums over all outgoing weights and Proposition 2 "
        "compares that sum with the incoming weights from free neurons only; without edges into "
        "the inputs the outgoing sums of the free neurons add up to at most their incoming "
        "`|W|`, so Proposition 2 could never hold. The complete graph here therefore has them.",
        "- Eq. 2 is divided by `beta` as well as `M_beta`, like the asymmetric EP rule, so that "
        "both are first-order estimates of the same size; the learning rate absorbs the rest.",
        "- Pruning (eq. 3) runs after every update from the first epoch, as the paper says, over "
        "the incoming connections still present (the bias included); removed connections never "
        "come back, except in the methods marked *regrowth* and the authors' protocol, where a "
        "pruned weight is set to 0 and later updates can make it grow again, as in the notebook.",
        "",
    ]
    return "\n".join(lines)


def _count(record: dict, key: str) -> str:
    return f"{sum(run[key] for run in record['runs'])}/{len(record['runs'])}"


def _fraction(record: dict, key: str) -> float:
    """The fraction of the record's runs with ``key`` (``success``: MSE below the
    threshold; ``correct``)."""
    return sum(run[key] for run in record["runs"]) / len(record["runs"])


def _median_epoch(record: dict) -> float | None:
    """The median first epoch with MSE below the threshold over the runs reaching it."""
    epochs = [run["converged_epoch"] for run in record["runs"] if run["converged_epoch"] >= 0]
    return float(statistics.median(epochs)) if epochs else None


def _missing(records: Mapping, keys: list[tuple[str, str]]) -> Verdict | None:
    """Not yet measured when a run file of ``keys`` (gate, method) is missing."""
    absent = [f"{gate} {name}" for gate, name in keys if (gate, name) not in records]
    return Verdict(NOT_YET, f"no run file of {', '.join(absent)}") if absent else None


@dataclass(frozen=True)
class Converges:
    """Method ``method``'s MSE converges to zero on each of ``gates``: every run below the
    threshold (``partly``: more than half of them on each gate)."""

    method: str
    gates: tuple[str, ...]

    def __call__(self, records: Mapping) -> Verdict:
        keys = [(gate, self.method) for gate in self.gates]
        if missing := _missing(records, keys):
            return missing
        rates = [_fraction(records[k], "success") for k in keys]
        measured = ", ".join(f"{k[0]} {_count(records[k], 'success')}" for k in keys)
        verdict = HOLDS if min(rates) == 1 else PARTLY if min(rates) > 0.5 else FAILS
        return Verdict(verdict, f"{self.method} below the MSE threshold: {measured}")


@dataclass(frozen=True)
class MostlyButLess:
    """On ``gate`` method ``method``'s MSE converges to zero most of the times but not always
    (more than half of the runs, not all), less often than on each of ``easier``
    (``partly``: most of the times, but not less often than on every easier gate)."""

    method: str
    gate: str
    easier: tuple[str, ...]

    def __call__(self, records: Mapping) -> Verdict:
        keys = [(gate, self.method) for gate in (self.gate, *self.easier)]
        if missing := _missing(records, keys):
            return missing
        rate, *others = (_fraction(records[k], "success") for k in keys)
        measured = f"{self.method} below the MSE threshold: " + ", ".join(
            f"{g} {_count(records[g, self.method], 'success')}" for g, _ in keys
        )
        if not 0.5 < rate < 1:
            return Verdict(FAILS, measured)
        return Verdict(HOLDS if all(rate < o for o in others) else PARTLY, measured)


@dataclass(frozen=True)
class FailsToLearn:
    """Method ``method`` fails to learn ``gate``: no run ends with every output within 0.5
    of its target (``partly``: fewer than half of them do)."""

    method: str
    gate: str

    def __call__(self, records: Mapping) -> Verdict:
        if missing := _missing(records, [(self.gate, self.method)]):
            return missing
        record = records[self.gate, self.method]
        rate = _fraction(record, "correct")
        measured = f"{self.method} on {self.gate}: {_count(record, 'correct')} runs correct"
        return Verdict(HOLDS if rate == 0 else PARTLY if rate < 0.5 else FAILS, measured)


@dataclass(frozen=True)
class SlowerNotAlways:
    """On each of ``gates`` method ``method`` converges slower than ``reference`` (median
    first epoch below the MSE threshold at least ``factor`` times the reference's) and not
    always to zero (some run stays above the threshold). ``holds``: both on every gate;
    ``does not hold``: neither on any; ``partly`` otherwise."""

    method: str
    reference: str
    gates: tuple[str, ...]
    factor: float = 1.5

    def __call__(self, records: Mapping) -> Verdict:
        keys = [(g, m) for g in self.gates for m in (self.method, self.reference)]
        if missing := _missing(records, keys):
            return missing
        parts, met = [], []
        for gate in self.gates:
            mine, theirs = (_median_epoch(records[gate, m]) for m in (self.method, self.reference))
            slower = mine is None or (theirs is not None and mine >= self.factor * theirs)
            not_always = _fraction(records[gate, self.method], "success") < 1
            met += [slower, not_always]
            parts.append(
                f"{gate}: median epoch {_epoch(mine)} against {_epoch(theirs)}, "
                f"{_count(records[gate, self.method], 'success')} below the threshold"
            )
        verdict = HOLDS if all(met) else PARTLY if any(met) else FAILS
        return Verdict(verdict, f"{self.method} against {self.reference}: " + "; ".join(parts))


def _epoch(value: float | None) -> str:
    """A median epoch, or "never"."""
    return "never" if value is None else f"{value:g}"


@dataclass(frozen=True)
class AsSparse:
    """Pruning finds, for each gate, a correct network at least as sparse as the paper's
    (:data:`PAPER_SPARSITY`), among all runs of the pruned methods (``partly``: for some
    gates)."""

    def __call__(self, records: Mapping) -> Verdict:
        if not any(r["config"]["prune_threshold"] > 0 for r in records.values()):
            return Verdict(NOT_YET, "no pruned method's run file")
        parts, reached = [], 0
        for gate in GATES:
            runs = [
                (name, run)
                for (g, name), record in records.items()
                if g == gate and record["config"]["prune_threshold"] > 0
                for run in record["runs"]
                if run["correct"]
            ]
            if not runs:
                parts.append(f"{gate}: no correct pruned network")
                continue
            name, run = _sparsest(runs)
            reached += run["sparsity"] >= PAPER_SPARSITY[gate] - 1e-9
            parts.append(
                f"{gate} {100 * run['sparsity']:.2f}% ({name}, seed {run['seed']}; paper "
                f"{100 * PAPER_SPARSITY[gate]:.2f}%)"
            )
        verdict = HOLDS if reached == len(GATES) else PARTLY if reached else FAILS
        return Verdict(verdict, "sparsest correct pruned network: " + "; ".join(parts))


_SOURCE = (
    'Farinha et al., "Equilibrium Propagation for Complete Directed Neural Networks", section 4'
)
_FULL = "full: 10 seeds per gate and method"
CLAIMS = (
    Claim(
        "DEEP learns AND and OR: the MSE of the first phase converges to zero (here: every run "
        "below the MSE threshold)",
        f"{_SOURCE}, Figure 1",
        _FULL,
        Converges("deep", ("AND", "OR")),
    ),
    Claim(
        "When learning XOR, the MSE converges to zero most of the times but not always, and "
        "less frequently than when learning AND or OR",
        f"{_SOURCE}, Figure 1",
        _FULL,
        MostlyButLess("deep", "XOR", ("AND", "OR")),
    ),
    Claim(
        "Asymmetric EP, with the same architecture and hyperparameters, fails to learn XOR "
        "(here: no run correct)",
        _SOURCE,
        _FULL,
        FailsToLearn("asym", "XOR"),
    ),
    Claim(
        "For AND and OR, asymmetric EP's MSE converged slower than DEEP's (DEEP took about half "
        "the number of epochs), and not always to zero (here: median epoch at least 1.5x "
        "DEEP's, and some run above the MSE threshold)",
        _SOURCE,
        _FULL,
        SlowerNotAlways("asym", "deep", ("AND", "OR")),
    ),
    Claim(
        "Sparse networks are found for the logical operations: AND 93.75%, OR 95.83% and XOR "
        "62.50% sparse (here: a correct pruned network at least as sparse)",
        f"{_SOURCE}, Figure 2",
        _FULL,
        AsSparse(),
    ),
)
#: how far the verdicts move: counts over 10 seeds
CLAIMS_NOTE = (
    "Counts are over 10 seeds per gate and method; a count near a criterion's threshold can "
    "change with the seeds (the 100-seed XOR search below says how rare a sparse XOR is)."
)


#: the point-by-point comparison: point, the notebook, our deep-logic protocol, the fields
_POINTS = (
    (
        "graph",
        "x1, x2 and the bias as a third clamped input; 5 hidden, 1 output; no edges into "
        "clamped neurons",
        "a bias neuron; also the 12 edges from free neurons into the inputs (leak only)",
        "`input_edges`",
    ),
    (
        "initial weights",
        "N(0, 0.05^2), then the structural zeros",
        "U[-0.5, 0.5]",
        "`init_distribution`, `init_scale`",
    ),
    (
        "start of the first phase",
        "free states U[0, 0.1), drawn afresh every epoch",
        "0",
        "`state_init_scale`",
    ),
    ("step size", "0.05", "0.1", "`eps`"),
    (
        "phase lengths",
        "1000 + 1000 steps (its early stop is off)",
        "200 + 20 steps",
        "`free_steps`, `nudged_steps`",
    ),
    ("beta", "10", "2", "`beta`"),
    (
        "weight step",
        "`dt_W` = 100 times the path integral of eq. 2 averaged over the 1000 steps and 4 "
        "examples, not divided by beta (lr = 1000 here)",
        "lr = 10 on eq. 2 divided by beta",
        "`lr`",
    ),
    (
        "L1",
        "`reg_W` sign(W) = 1.5e-4 per update, not scaled by `dt_W` (l1 = 1.5e-7 here); off in "
        "the committed notebook",
        "lr l1 = 3e-5 or 3e-4 per update",
        "`l1`",
    ),
    (
        "pruning schedule",
        "after every update from the first epoch; off in the committed notebook",
        "the same",
        "`prune_threshold` > 0",
    ),
    ("threshold, temperature", "0.01, 5", "0.01, 1", "`prune_threshold`, `temperature`"),
    (
        "sum in eq. 3",
        "the 9 entries of the column, the self-loop and zeroed entries adding exp(0) = 1",
        "the connections still present",
        "`prune_normalisation`",
    ),
    (
        "what pruning removes",
        "sets the weight to 0; the edge stays and the next update can regrow it",
        "the edge, for good",
        "`prune_permanent`",
    ),
    ("biases pruned", "yes (bias = an input column)", "yes", ""),
    (
        "epochs, batch",
        "200; full batch, one update per epoch",
        "4000; full batch, one update per epoch",
        "`epochs`, `batch_size`",
    ),
    ("runs", "10 (`num_net`)", "10 (seeds 0..9)", ""),
    (
        "sparsity count",
        "1 - edges / (81 - 33) = / 48 when the bias neuron is drawn; the committed plotting "
        "cell leaves it out (/ 42), where 93.75%, 95.83% and 62.50% cannot occur",
        "1 - present / 48",
        "",
    ),
)


def _correct_sparsities(record: dict) -> list[float]:
    return sorted(100 * run["sparsity"] for run in record["runs"] if run["correct"])


def _cell(record: dict) -> str:
    """``correct/runs; sparsest correct; mean sparsity over all runs``."""
    runs = record["runs"]
    correct = _correct_sparsities(record)
    best = f"{correct[-1]:.2f}%" if correct else "none correct"
    mean = 100 * sum(run["sparsity"] for run in runs) / len(runs)
    return f"{len(correct)}/{len(runs)}; {best}; {mean:.1f}%"


def _notebook_section(
    scale: str,
    records: dict,
    ablation_records: dict,
    search_records: dict,
    all_methods: tuple[Method, ...],
    ablation_methods: tuple[Method, ...],
    search_methods: tuple[Method, ...],
    search_seeds: tuple[int, ...],
) -> list[str]:
    """Section "Our protocol against the authors' notebook": the points, then the measures."""
    lines = [
        "## Our protocol against the authors' notebook",
        "",
        "The authors' notebook (`logical_operations_DEEP.ipynb` of "
        "MatildeTristany/DEEP-model-ESANN-2020) against the deep-logic protocol of this package "
        "(full-scale values; the pruned methods' `l1`, `prune_threshold` and `temperature`). The "
        "dynamics (eq. 1 with the hard-sigmoid clip after each step) and the rule (eq. 2 with "
        "backward differences, biases as weights from a unit at 1) are the same in both; "
        "*DEEP, authors' protocol* (`deep_logic.AUTHORS`) sets every point to the notebook's "
        "value, with its L1 and pruning switched on at the values of its hyperparameter "
        "dictionary (the committed notebook has both off).",
        "",
        "| point | authors' notebook | our protocol | field |",
        "|---|---|---|---|",
        *(f"| {point} | {theirs} | {ours} | {field} |" for point, theirs, ours, field in _POINTS),
        "",
        "Measured, on the seeds of the table above: each cell is *correct runs; sparsity of the "
        "sparsest correct network; mean sparsity over all runs*. The rows after the authors' "
        "protocol change one point of it to our value.",
        "",
        "| method | AND | OR | XOR |",
        "|---|---|---|---|",
        "| paper (Figure 2, one network per gate) | "
        + " | ".join(f"{100 * PAPER_SPARSITY[g]:.2f}%" for g in GATES)
        + " |",
    ]
    pruned = [m for m in all_methods if m.config.prune_threshold > 0]
    for method in pruned:
        cells = " | ".join(_cell(records[gate, method.name]) for gate in GATES)
        lines.append(f"| {method.label} | {cells} |")
    for method in ablation_methods:
        cells = " | ".join(_cell(ablation_records[gate, method.name]) for gate in GATES)
        lines.append(f"| authors' protocol, {method.label} | {cells} |")
    paper = 100 * PAPER_SPARSITY["XOR"]
    lines += [
        "",
        f"XOR from {len(search_seeds)} seeds ({search_seeds[0]}..{search_seeds[-1]}): how often "
        "a correct network as sparse as the paper's comes out.",
        "",
        f"| method | correct | correct and >= {paper:.2f}% sparse | sparsest correct | "
        "median sparsity of the correct |",
        "|---|---|---|---|---|",
    ]
    found = {}
    for method in search_methods:
        record = search_records[method.name]
        correct = _correct_sparsities(record)
        found[method.name] = (len(correct), sum(v >= paper - 1e-9 for v in correct), correct)
        median = f"{correct[len(correct) // 2]:.1f}%" if correct else "n/a"
        best = f"{correct[-1]:.2f}%" if correct else "none correct"
        lines.append(
            f"| {method.label} | {len(correct)}/{len(record['runs'])} | "
            f"{found[method.name][1]} | {best} | {median} |"
        )
    explanation = _explanation(
        scale, records, ablation_records, found, all_methods, len(search_seeds)
    )
    lines += ["", *explanation, ""]
    return lines


def _mean_sparsity(records: dict, name: str) -> float:
    """Mean sparsity (%) over every run of every gate of one method."""
    values = [100 * run["sparsity"] for g in GATES for run in records[g, name]["runs"]]
    return sum(values) / len(values)


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _explanation(
    scale: str,
    records: dict,
    ablation_records: dict,
    found: dict,
    all_methods: tuple,
    n_seeds: int,
) -> list[str]:
    """What the measures say about the sparsity gap, numbers filled in from the runs."""
    by_name = {m.name: m for m in all_methods}
    weak, strong = f"deep-l1-{_L1[0]:g}", f"deep-l1-{_L1[1]:g}"
    regrow = f"{strong}-regrow"
    kept = ", ".join(f"{round(48 * (1 - PAPER_SPARSITY[g]))}" for g in GATES)
    n_runs = len(records["XOR", strong]["runs"])
    paper = f"{100 * PAPER_SPARSITY['XOR']:.2f}%"

    def best(values: list[float]) -> str:
        return f"{values[-1]:.2f}%" if values else "none"

    def correct(record: dict) -> list[float]:
        return _correct_sparsities(record)

    def tally(name: str, gate: str = "XOR", table: dict = records) -> str:
        return f"{len(correct(table[gate, name]))}/{n_runs}"

    def searched(name: str) -> str:
        n_correct, n_paper, values = found[name]
        return (
            f"{n_correct} correct, {n_paper} of them at least {paper} sparse (up to {best(values)})"
        )

    authors_mean = _mean_sparsity(records, "deep-authors")
    changes = sorted(
        (
            (_mean_sparsity(ablation_records, m) - authors_mean, m)
            for m in (
                "authors-permanent",
                "authors-present",
                "authors-input-edges",
                "authors-zero-states",
                "authors-uniform-init",
            )
        ),
        key=lambda pair: -abs(pair[0]),
    )
    labels = {m.name: m.label for m in ablations(scale)}
    ours = [
        m.name for m in all_methods if m.config.prune_threshold > 0 and m.name != "deep-authors"
    ]
    below = [
        g
        for g in GATES
        if best(correct(records[g, "deep-authors"])) != "none"
        and correct(records[g, "deep-authors"])[-1]
        < max((correct(records[g, name]) or [0.0])[-1] for name in ours)
    ]
    runs = records["XOR", strong]["runs"]
    seeds = f"{runs[0]['seed']}..{runs[-1]['seed']}"
    small = max(abs(change) for change, _ in changes[2:])
    lines = [
        "What the measures say about the gap to the paper's Figure 2:",
        "",
        f"- *Not the count.* Both count 48 connections; the paper's figures are {kept} of 48 "
        "kept (AND, OR, XOR).",
        "- *Not the dynamics or the rule.* One epoch of the preset is the notebook's epoch "
        "restated on its own node order (`test_one_epoch_of_the_preset_is_the_notebooks_epoch` "
        "in `tests/test_deep_logic.py`).",
        "- *Not the notebook's hyperparameters.* With them (*DEEP, authors' protocol*) the "
        "sparsest correct networks are "
        + ", ".join(f"{g} {best(correct(records[g, 'deep-authors']))}" for g in GATES)
        + (f", below ours on {_and(below)}" if below else "")
        + f"; on XOR from {n_seeds} seeds: {searched('deep-authors')}. Of its points, two move "
        f"its mean sparsity ({authors_mean:.1f}% over the three gates) most: "
        f"{labels[changes[0][1]]} ({changes[0][0]:+.1f} points) and {labels[changes[1][1]]} "
        f"({changes[1][0]:+.1f}); the others by at most {small:.1f}. Removing pruned "
        f"connections for good also takes its correct XOR runs from {tally('deep-authors')} to "
        f"{tally('authors-permanent', table=ablation_records)}.",
        f"- *What lifts our XOR: regrowth and seeds.* At L1 {_L1[1]:g} with pruned "
        f"connections removed for good ({by_name[strong].label}), {tally(strong)} runs on seeds "
        f"{seeds} learn XOR, so the sparsest correct XOR network of the table above is "
        f"{best(correct(records['XOR', weak]))} at L1 {_L1[0]:g} and "
        f"{best(correct(records['XOR', strong]))} at L1 {_L1[1]:g}. Letting pruned weights "
        f"regrow, as the notebook does, gives {tally(regrow)} correct, the sparsest at "
        f"{best(correct(records['XOR', regrow]))} (AND and OR: {tally(strong, 'AND')} and "
        f"{tally(strong, 'OR')} correct become {tally(regrow, 'AND')} and "
        f"{tally(regrow, 'OR')}, sparsest {best(correct(records['AND', regrow]))} and "
        f"{best(correct(records['OR', regrow]))}). On XOR from {n_seeds} seeds: "
        f"{searched(strong)} with permanent removal; {searched(regrow)} with regrowth.",
        f"- So the XOR gap is a rare outcome that {n_runs} seeds can miss: under the strong L1, "
        f"{found[strong][0]} of {n_seeds} seeds give a correct XOR network when pruned "
        f"connections are removed for good and {found[regrow][0]} when they can regrow; the "
        f"paper shows one network. The notebook's own values give {found['deep-authors'][1]} "
        f"correct XOR networks at least {paper} sparse in {n_seeds} seeds.",
    ]
    if scale != "full":
        lines.append(
            "- (Smoke scale: these runs are far too short to learn; the numbers only show that "
            "the section is filled in.)"
        )
    return lines


def stage_measured(directory: Path, scale: str) -> tuple[dict, str]:
    """What :data:`CLAIMS` read of a committed output directory (the run file of each gate and
    method, by ``(gate, method name)``) and what it reached, for the index of
    :mod:`eqprop.experiments.report`."""
    all_methods, seeds = methods(scale)
    paths = {(g, m.name): _run_path(Path(directory), g, m) for g in GATES for m in all_methods}
    records = {key: json.loads(path.read_text()) for key, path in paths.items() if path.exists()}
    return records, f"{len(records)} of {len(paths)} run files of {len(seeds)} seeds each"


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
