"""The figures of the skipnets experiment: test accuracy against depth (the paper's Figure
1, plus an EP panel; :func:`plot_accuracy_vs_depth`) and the sorted test accuracies over the
grid (its Figure 2; :func:`plot_sensitivity`)."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from eqprop.experiments.skipnets.protocol import FAMILIES, LINEAR, PAIRS, RULE_NAMES, Protocol
from eqprop.experiments.skipnets.rows import Row, collect_rows, seed_accuracies
from eqprop.experiments.skipnets.runfiles import record_key

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
        if {plain, PAIRS[plain]} & set(protocol.architectures) or family in protocol.not_run
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
        if family in protocol.not_run:  # the paper's panel, empty, and why
            ax.text(
                0.5,
                0.5,
                textwrap.fill(f"not run at this scale: {protocol.not_run[family]}", 30),
                ha="center",
                va="center",
                fontsize=8,
                color="dimgrey",
                transform=ax.transAxes,
            )
            ax.set_xticks([])
            ax.set_yticks([])
    return fig, panels


def _family_architectures(family: str, protocol: Protocol) -> list[str]:
    """The architectures of ``family`` that ``protocol`` trains, plain first."""
    plain = FAMILIES[family]
    return [a for a in (plain, PAIRS[plain]) if a in protocol.architectures]


def _rules_of(rules: Iterable[str]) -> list[str]:
    """The rules present, the baseline rules first; the baseline rules when none is (a stage
    with no run file yet: empty panels)."""
    present = set(rules)
    if not present:
        return list(RULE_NAMES)
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
        if family in protocol.not_run:
            continue
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
        if ax.get_legend_handles_labels()[0]:  # a panel without runs has no legend
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def plot_sensitivity(records: Sequence[Mapping], protocol: Protocol, path: Path) -> None:
    """Sorted test accuracies of every grid point (learning rate x starting point x depth x
    seed), one panel per architecture family, activation and rule, one line per architecture
    (the paper's Figure 2).
    Only the rules with the protocol's activations (the baselines): EP's grid points are the
    epochs of one run, not hyperparameters."""
    records = [r for r in records if not _own_activation(record_key(r), protocol)]
    points: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for record in records:
        for point in record["grid"]:
            key = (record["rule"], record["activation"], record["architecture"])
            points[key].append(100 * float(point["test_accuracy"]))
    rules = _rules_of(r["rule"] for r in records)
    fig, panels = _panels(protocol, rules, "Sensitivity: sorted test accuracy over the grid")
    rows = collect_rows(records)
    for (family, act, rule), ax in panels.items():
        if family in protocol.not_run:
            continue
        for arch in _family_architectures(family, protocol):
            values = sorted(points.get((rule, act, arch), []))
            if values:
                ax.plot(range(len(values)), values, ".-", color=_COLOURS.get(arch), label=arch)
        _mark_linear(ax, rows)
        ax.set_xlabel("grid point (sorted)")
        ax.set_ylabel("test accuracy (%)")
        if ax.get_legend_handles_labels()[0]:  # a panel without runs has no legend
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
