"""``results.md``: the table of every gate and method, the claims, and the point-by-point
comparison with the authors' notebook."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from eqprop.experiments.claims import claims_section
from eqprop.experiments.deep_logic.claims import CLAIMS, CLAIMS_NOTE
from eqprop.experiments.deep_logic.protocol import (
    _L1,
    GATES,
    PAPER_SPARSITY,
    Method,
    ablations,
    methods,
)
from eqprop.experiments.deep_logic.runfiles import _run_path

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
