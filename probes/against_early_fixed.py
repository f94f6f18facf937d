"""The issue's equal-learning criterion against the early-fixed paper runs.

A one-off reading behind a claim in ``docs/performance.md``. The solvers experiment judges a
fast protocol against the paper protocol as run, whose first free phases stop short of the
fixed point at the initial weights. ``early_free_phase.py`` retrains those paper runs with
their first free phases taken to the fixed point ("early fixed"). This probe applies the
experiment's criterion with the early-fixed runs as the reference: per epoch and seed, the
compared run's training and held-out errors against the early-fixed run of the same seed,
allowed the larger of the early-fixed runs' seed-to-seed spread and 0.5 points. It reads
only; it prints a markdown table and the count of comparisons within.

    python probes/against_early_fixed.py \\
        --reference early-C-paper-seed0.json early-C-paper-seed1.json early-C-paper-seed2.json \\
        --compared runs/C-fista-seed0 runs/C-fista-seed1 runs/C-fista-seed2

The files are given in the same seed order on both sides; ``--seeds`` names the seeds for the
table (default 0, 1, ...).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _probe import run

from eqprop.errors import EqpropError
from eqprop.experiments.solvers import FLOOR, judged, spread
from eqprop.runs import read_metrics

#: the two errors compared, as the run records name them, and their column labels
KEYS = {"train_error": "training", "test_error": "held-out"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, nargs="+", required=True)
    parser.add_argument("--compared", type=Path, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    run("against_early_fixed", parser, measure)


def reference_records(path: Path) -> dict[int, dict]:
    """An ``early_free_phase.py`` result as run records by epoch: its training error and the
    held-out error of its own evaluator."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise EqpropError(f"cannot read {path} ({exc.strerror})") from None
    try:
        epochs = json.loads(text)["epochs"]
        return {
            e["epoch"]: {"train_error": e["train_error"], "test_error": e["own"]} for e in epochs
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise EqpropError(f"{path} is not an early_free_phase result ({exc!r})") from None


def compared_records(run_dir: Path) -> dict[int, dict]:
    """A run directory's epoch records by epoch."""
    return {r["epoch"]: r for r in read_metrics(run_dir) if "test_error" in r}


def table(
    reference: list[dict[int, dict]], compared: list[dict[int, dict]], seeds: list[int]
) -> list[str]:
    """The markdown table (one row per epoch: per error, the differences per seed in points
    with their verdicts, then the allowance) and a last line counting the comparisons within;
    epochs not finished by every run are left out."""
    if not len(reference) == len(compared) == len(seeds):
        raise EqpropError(
            f"{len(reference)} reference files, {len(compared)} compared runs and "
            f"{len(seeds)} seeds; give one of each per seed, in the same order"
        )
    epochs = sorted(set.intersection(*(set(r) for r in reference + compared)))
    if not epochs:
        raise EqpropError("no epoch is finished by every reference and compared run")
    head = ["epoch"] + [f"{label}, seed {s}" for label in KEYS.values() for s in seeds]
    head += [f"allowed, {label}" for label in KEYS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    within = 0
    for e in epochs:
        cells, allowances = [str(e)], []
        for key in KEYS:
            allowed = max(spread([r[e][key] for r in reference]), FLOOR)
            for ref, run_ in zip(reference, compared, strict=True):
                cell, ok = judged(run_[e][key] - ref[e][key], allowed)
                cells.append(cell)
                within += ok
            allowances.append(f"{100 * allowed:.2f}")
        lines.append("| " + " | ".join(cells + allowances) + " |")
    checks = len(epochs) * len(KEYS) * len(reference)
    lines.append(f"{within} of {checks} comparisons within")
    return lines


def measure(args: argparse.Namespace) -> None:
    """Print the table of :func:`table` for the parsed arguments."""
    reference = [reference_records(p) for p in args.reference]
    compared = [compared_records(d) for d in args.compared]
    seeds = args.seeds if args.seeds is not None else list(range(len(reference)))
    print("\n".join(table(reference, compared, seeds)))


if __name__ == "__main__":
    main()
