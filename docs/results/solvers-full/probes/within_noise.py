"""The issue's equal-learning criterion, with any runs as the reference and as the noise.

A one-off reading behind claims in ``docs/performance.md``. The solvers experiment judges a
fast protocol against the paper protocol as run: per epoch and seed, the compared run's
training and held-out errors against the paper run of the same seed, allowed the larger of
the paper runs' seed-to-seed spread and 0.5 points. This probe applies the same criterion
to other pairings, reading only:

- ``--reference``: the runs compared against, one per seed;
- ``--compared``: the runs judged, one per seed, in the same order;
- ``--noise``: the runs whose spread over seeds gives the allowance (default: the
  references).

Each is a run directory (its ``metrics.jsonl``) or an ``early_free_phase.py`` result (its
training error and the held-out error of the run's own evaluator). It prints a markdown
table and the count of comparisons within. For example, the fast solver against the paper
runs retrained with their first free phases at the fixed point:

    python within_noise.py \\
        --reference early-C-paper-seed0.json early-C-paper-seed1.json early-C-paper-seed2.json \\
        --compared runs/C-fista-seed0 runs/C-fista-seed1 runs/C-fista-seed2

``--seeds`` names the seeds for the table (default 0, 1, ...).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _probe import run

from eqprop.errors import EqpropError
from eqprop.experiments.solvers import FLOOR, judged, spread
from eqprop.metrics import held_out_error
from eqprop.runs import read_metrics

#: the two errors compared, as :func:`records` names them, and their column labels
KEYS = {"train_error": "training", "test_error": "held-out"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, nargs="+", required=True)
    parser.add_argument("--compared", type=Path, nargs="+", required=True)
    parser.add_argument("--noise", type=Path, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    run("within_noise", parser, measure)


def records(path: Path) -> dict[int, dict]:
    """The epoch records of ``path`` by epoch: a run directory's, or an
    ``early_free_phase.py`` result's (its training error and its own held-out error)."""
    if path.is_dir():
        found = {
            r["epoch"]: {"train_error": r["train_error"], "test_error": held_out_error(r)}
            for r in read_metrics(path)
        }
        if not found:
            raise EqpropError(f"{path} has no finished epoch (no metrics.jsonl records)")
        return found
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
        raise EqpropError(
            f"{path} is neither a run directory nor an early_free_phase result ({exc!r})"
        ) from None


def table(
    reference: list[dict[int, dict]],
    compared: list[dict[int, dict]],
    noise: list[dict[int, dict]],
    seeds: list[int],
) -> list[str]:
    """The markdown table (one row per epoch: per error, the differences per seed in points
    with their verdicts, then the allowance) and a last line counting the comparisons within;
    epochs not finished by every run are left out."""
    if not len(reference) == len(compared) == len(seeds):
        raise EqpropError(
            f"{len(reference)} references, {len(compared)} compared runs and {len(seeds)} "
            "seeds; give one of each per seed, in the same order"
        )
    if len(noise) < 2:
        raise EqpropError(f"{len(noise)} noise run; give at least two seeds to measure noise")
    epochs = sorted(set.intersection(*(set(r) for r in reference + compared + noise)))
    if not epochs:
        raise EqpropError("no epoch is finished by every run given")
    head = ["epoch"] + [f"{label}, seed {s}" for label in KEYS.values() for s in seeds]
    head += [f"allowed, {label}" for label in KEYS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    within = 0
    for e in epochs:
        cells, allowances = [str(e)], []
        for key in KEYS:
            allowed = max(spread([r[e][key] for r in noise]), FLOOR)
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
    reference = [records(p) for p in args.reference]
    compared = [records(p) for p in args.compared]
    noise = [records(p) for p in args.noise] if args.noise is not None else reference
    seeds = args.seeds if args.seeds is not None else list(range(len(reference)))
    print("\n".join(table(reference, compared, noise, seeds)))


if __name__ == "__main__":
    main()
