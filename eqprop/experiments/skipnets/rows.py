"""The rows of the skipnets results: per configuration and seed, the grid point with the
best validation accuracy (:func:`collect_rows`), the test accuracies over seeds, and the
Markdown tables of both."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eqprop.experiments.skipnets.protocol import RULE_NAMES
from eqprop.experiments.skipnets.runfiles import record_key, record_seed


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


def collect_rows(records: Iterable[Mapping]) -> list[Row]:
    """One row per (rule, architecture, activation, depth, seed): the grid point with the best
    validation accuracy (ties: the first in file order) across the run records of that seed
    (each seed selects its own hyperparameters). Rows of the baseline rules come first, those
    of other rules (EP) after them."""
    best: dict[tuple[str, str, str, int, int], Row] = {}
    for record in records:
        key = (*record_key(record), record_seed(record))
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


def percent_spread(values: Sequence[float]) -> str:
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


def mean_accuracies(rows: Iterable[Row]) -> dict[tuple[str, str, str, int], float]:
    """(rule, architecture, activation, depth) -> test accuracy, the mean over seeds."""
    return {k: float(np.mean(v)) for k, v in seed_accuracies(rows).items()}


def depth_range(
    rows: Iterable[Row], activation: str, architectures: Sequence[str]
) -> tuple[int, int] | None:
    """The shallowest and deepest depth measured for ``activation`` on one of
    ``architectures`` (a plain/dense pair; None: fewer than two depths)."""
    depths = {
        r.depth for r in rows if r.activation == activation and r.architecture in architectures
    }
    return (min(depths), max(depths)) if len(depths) > 1 else None
