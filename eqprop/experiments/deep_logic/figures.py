"""The figures: MSE against epoch (Figure 1) and the sparsest pruned networks (Figure 2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TypeVar

import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from eqprop.experiments.deep_logic.protocol import GATES, PAPER_SPARSITY, Method
from eqprop.experiments.deep_logic.runfiles import _write_atomic

#: what :func:`_sparsest` pairs with each run (a method or a method's name)
T = TypeVar("T")


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
