"""Bit depth: how many bits per weight does each topology need, and does layer-skipping lower
it? (Issue 16, study 1.)

Weights and biases are stored with ``k`` bits on a fixed grid per edge kind and every update
is applied through that quantiser (:mod:`eqprop.quantization`: range = ``range_scale`` (2)
times the edge kind's initial bound, i.e. twice the Glorot bound of each adjacent layer
pair, twice ``a`` for intralayer and skip edges, twice the incoming pair's Glorot bound for
the biases; fixed before training). Each network of the paper presets is trained in float32
and at each ``k``, with round-to-nearest and with stochastic rounding, at several seeds
(``train.seed``: initial weights, signs of beta, rounding draws; the topology's seed stays
the preset's). Measured per run, after its last epoch: held-out and training error, and the
fraction of non-zero proposed updates that left the weight unchanged ("lost"), per adjacent
layer pair, over intralayer and skip edges, and over the biases.

Bits needed (``results.md``): the smallest ``k`` of the grid from which on (that ``k`` and
every larger one measured) the mean held-out error over the seeds is at most the network's
float32 mean plus :data:`TOLERANCE`.

Scales:

- ``smoke``: bundled 8x8 digits, hidden layers of 32, first 300 examples, at most 20 free
  steps, 1 epoch; all five networks at ``k`` in {4, 12} and float32, one seed (seconds).
- ``quick``: MNIST (the presets' splits), first 3,000 examples of each split, 2 epochs, the
  free phase by FISTA to a residual of 1e-3 (at most 1,000 steps; a stated departure from
  the presets' fixed steps); networks B and C, float32, nearest ``k`` in {8, 12, 16},
  stochastic ``k`` in {4, 8, 12}, 3 seeds (42 runs; about 45 minutes on one thread of a
  busy machine, B about 45 s and C about 80 s a run).
- ``full``: the presets unchanged (their epochs, splits and free steps), all five networks,
  ``k`` in {4, 6, 8, 10, 12, 16} with both roundings and float32, 3 seeds.

Run directories ``out/<network>-<point>-s<seed>`` (point ``float32`` or ``k<k>-<rounding>``);
rerunning resumes. Outputs: ``results.md``, ``error_vs_bits.png`` and ``lost_updates.png``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict, claims_section
from eqprop.experiments.departures import Departures
from eqprop.metrics import HELD_OUT_ERROR, metric_key
from eqprop.plots import STYLE, data_caption, network_label, new_figure, outside_legend
from eqprop.quantization import DEFAULT_RANGE_SCALE, ROUNDINGS

SCALES = pr.SCALES
FLOAT = "float32"
#: a run's bits are enough when its mean held-out error is within this of float32's
TOLERANCE = 0.02
#: each layered network and its layer-skipping counterpart
PAIRS = (("B", "C"), ("deep-layered", "deep-skip"))


@dataclass(frozen=True)
class Plan:
    """What one scale runs: networks, bits per rounding, seeds."""

    networks: tuple[str, ...]
    bits: dict[str, tuple[int, ...]]
    seeds: tuple[int, ...]


PLANS = {
    "smoke": Plan(
        ("A", "B", "C", "deep-layered", "deep-skip"),
        {"nearest": (4, 12), "stochastic": (4, 12)},
        (0,),
    ),
    "quick": Plan(("B", "C"), {"nearest": (8, 12, 16), "stochastic": (4, 8, 12)}, (0, 1, 2)),
    "full": Plan(
        ("A", "B", "C", "deep-layered", "deep-skip"),
        {r: (4, 6, 8, 10, 12, 16) for r in ROUNDINGS},
        (0, 1, 2),
    ),
}
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, epochs=1, small=True),
    "quick": pr.Reduction(limit=3_000, epochs=2),
}


def point_name(bits: int | None, rounding: str | None) -> str:
    """``float32`` or ``k<bits>-<rounding>``."""
    return FLOAT if bits is None else f"k{bits}-{rounding}"


def points(plan: Plan) -> list[tuple[int | None, str | None]]:
    """``(bits, rounding)`` of every point of ``plan``, float32 (``(None, None)``) first."""
    return [(None, None)] + [(k, r) for r in ROUNDINGS for k in plan.bits.get(r, ())]


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """The runs of ``scale``, ``(name, config)``, seed by seed (so that a partial sweep
    already compares every network at every point): per seed, network and point."""
    pr.check_scale(scale)
    plan = PLANS[scale]
    bases = {}
    for network in plan.networks:
        base = pr.scaled(pr.paper_config(network), scale, REDUCTIONS)
        bases[network] = base.override(pr.FAST_FREE) if scale == "quick" else base
    runs = []
    for seed in plan.seeds:
        for network in plan.networks:
            for bits, rounding in points(plan):
                changes = {"update.bits": bits, "update.rounding": rounding, "train.seed": seed}
                name = f"{network}-{point_name(bits, rounding)}-s{seed}"
                runs.append((name, bases[network].override(changes)))
    return runs


def figures(scale: str, results: list[pr.RunResult]) -> dict[str, Figure]:
    """``error_vs_bits.png`` and ``lost_updates.png``."""
    cells, plan = collect(results), PLANS[scale]
    return {
        "error_vs_bits.png": error_figure(cells, plan, [r.config for r in results]),
        "lost_updates.png": lost_figure(cells, plan),
    }


# -- collecting -------------------------------------------------------------------------------
@dataclass
class Cell:
    """The complete runs of one network at one point: the records of their last epoch."""

    network: str
    bits: int | None
    rounding: str | None
    records: list[dict]

    def values(self, key: str) -> np.ndarray:
        """``key`` of every run, a row per seed (a list is a row; None is NaN)."""
        rows = [
            np.atleast_1d(np.array(r.get(metric_key(r, key)), dtype=np.float64))
            for r in self.records
        ]
        return np.array(rows) if rows else np.zeros((0, 1))

    def mean(self, key: str) -> np.ndarray:
        """Mean over the seeds (NaN where none has a value)."""
        values = self.values(key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN
            return np.nanmean(values, axis=0) if len(values) else np.full(1, math.nan)

    def std(self, key: str) -> np.ndarray:
        """Sample standard deviation over the seeds (NaN with fewer than two)."""
        values = self.values(key)
        if len(values) < 2:
            return np.full(values.shape[1], math.nan)
        return values.std(axis=0, ddof=1)

    @property
    def seeds(self) -> int:
        """How many seeds the cell has records of."""
        return len(self.records)


def collect(results: Iterable[pr.RunResult]) -> dict[tuple[str, str], Cell]:
    """``(network, point name) -> Cell`` over the complete runs (each run's network and
    point read from its name and config)."""
    cells: dict[tuple[str, str], Cell] = {}
    for r in results:
        bits, rounding = r.config.update.bits, r.config.update.rounding
        point = point_name(bits, rounding)
        network = r.name.rsplit("-s", 1)[0].removesuffix(f"-{point}")
        cell = cells.setdefault((network, point), Cell(network, bits, rounding, []))
        if r.complete and r.records:
            cell.records.append(r.records[-1])
    return cells


#: the errors a bits-needed criterion is read on: metrics key -> words
CRITERIA = {HELD_OUT_ERROR: "held-out error", "train_error": "training error"}


def bits_needed(
    cells: dict[tuple[str, str], Cell], network: str, rounding: str, key: str = HELD_OUT_ERROR
) -> int | None:
    """The smallest ``k`` from which on every measured ``k`` reaches float32's mean error
    ``key`` (:data:`~eqprop.metrics.HELD_OUT_ERROR` or ``train_error`` of the last epoch)
    plus :data:`TOLERANCE` (None: no ``k`` of the grid does, or no float32 result)."""
    reference = cells.get((network, FLOAT))
    if reference is None or not reference.seeds:
        return None
    target = float(reference.mean(key)[0]) + TOLERANCE
    ks = sorted(c.bits for c in cells.values() if c.network == network and c.rounding == rounding)
    needed = None
    for k in reversed(ks):
        cell = cells[(network, point_name(k, rounding))]
        if not cell.seeds or not float(cell.mean(key)[0]) <= target:
            break
        needed = k
    return needed


# -- figures ----------------------------------------------------------------------------------
def error_figure(
    cells: dict[tuple[str, str], Cell], plan: Plan, configs: list[RunConfig]
) -> Figure:
    """Held-out error (top) and training error of the last epoch (bottom) against bits, a
    column per rounding, a colour per network (mean and standard deviation over the seeds);
    float32 as a dashed line of the network's colour."""
    with rc_context(STYLE):
        fig = new_figure(figsize=(9.6, 6.2))
        grid = fig.subplots(len(CRITERIA), len(ROUNDINGS), sharey="row", sharex=True)
        handles = []
        for i, network in enumerate(plan.networks):
            color = f"C{i % 10}"
            handles.append(Line2D([], [], color=color, marker="o", label=network))
            reference = cells.get((network, FLOAT))
            for axes, key in zip(grid, CRITERIA, strict=True):
                for ax, rounding in zip(axes, ROUNDINGS, strict=True):
                    ks = list(plan.bits.get(rounding, ()))
                    found = [cells[(network, point_name(k, rounding))] for k in ks]
                    means = [100 * c.mean(key)[0] for c in found]
                    stds = [100 * c.std(key)[0] for c in found]
                    ax.errorbar(ks, means, yerr=np.nan_to_num(stds), color=color, marker="o",
                                ms=4, capsize=2)  # fmt: skip
                    if reference is not None and reference.seeds:
                        ax.axhline(100 * reference.mean(key)[0], color=color, ls="--", lw=1)
        for ax, rounding in zip(grid[0], ROUNDINGS, strict=True):
            ax.set_title(f"{rounding} rounding")
        for ax in grid[-1]:
            ax.set_xlabel("bits per weight (k)")
            ax.set_xticks(sorted({k for ks in plan.bits.values() for k in ks}))
        grid[0][0].set_ylabel("held-out error, after the last epoch (%)")
        grid[1][0].set_ylabel("training error, last epoch (%)")
        handles.append(Line2D([], [], color="0.3", ls="--", label="float32 (same network)"))
        outside_legend(grid[0][-1], handles)
        fig.suptitle(f"Error against bit depth (mean ± sd over seeds), {data_caption(configs)}")
    return fig


def lost_figure(cells: dict[tuple[str, str], Cell], plan: Plan) -> Figure:
    """Fraction of non-zero proposed updates lost (weight unchanged) in the last epoch against
    bits, a panel per network, a colour per adjacent layer pair; solid: nearest, dashed:
    stochastic rounding."""
    with rc_context(STYLE):
        fig = new_figure(figsize=(2.9 * len(plan.networks) + 1.4, 3.2))
        axes = fig.subplots(1, len(plan.networks), squeeze=False, sharey=True)[0]
        n_pairs = 0
        for ax, network in zip(axes, plan.networks, strict=True):
            for rounding, style in zip(ROUNDINGS, ("-", "--"), strict=True):
                ks = list(plan.bits.get(rounding, ()))
                if not ks:
                    continue
                lost = np.array(
                    [cells[(network, point_name(k, rounding))].mean("lost_updates") for k in ks]
                )
                if lost.ndim != 2:
                    continue
                n_pairs = max(n_pairs, lost.shape[1])
                for pair in range(lost.shape[1]):
                    ax.plot(ks, 100 * lost[:, pair], ls=style, marker="o", ms=3,
                            color=f"C{pair % 10}")  # fmt: skip
            ax.set_title(network)
            ax.set_xlabel("bits per weight (k)")
            ax.set_xticks(sorted({k for ks in plan.bits.values() for k in ks}))
            ax.set_ylim(-3, 103)
        axes[0].set_ylabel("updates lost, last epoch (%)")
        handles = [
            Line2D([], [], color=f"C{k % 10}", label=f"layers {k}-{k + 1}") for k in range(n_pairs)
        ]
        handles += [
            Line2D([], [], color="0.3", ls="-", label="nearest"),
            Line2D([], [], color="0.3", ls="--", label="stochastic"),
        ]
        outside_legend(axes[-1], handles, title="pair (0 = input)")
    return fig


# -- results.md -------------------------------------------------------------------------------
def mean_sd(cell: Cell | None, key: str, index: int = 0) -> str:
    """``mean ± sd (n)`` of ``key`` over the seeds, in percent; an en dash without runs."""
    if cell is None or not cell.seeds:
        return "–"
    mean, sd = cell.mean(key)[index], cell.std(key)[index]
    if not math.isfinite(mean):
        return "–"
    spread = f" ± {100 * sd:.2f}" if math.isfinite(sd) else ""
    return f"{100 * mean:.2f}{spread} ({cell.seeds})"


def error_table(cells: dict[tuple[str, str], Cell], plan: Plan, key: str) -> str:
    """A row per network and rounding: float32, then every ``k`` of the plan."""
    all_bits = sorted({k for ks in plan.bits.values() for k in ks})
    rows = []
    for network in plan.networks:
        reference = mean_sd(cells.get((network, FLOAT)), key)
        for rounding in ROUNDINGS:
            row = [network, rounding, reference]
            for k in all_bits:
                cell = cells.get((network, point_name(k, rounding)))
                row.append(mean_sd(cell, key) if k in plan.bits.get(rounding, ()) else "")
            rows.append(row)
    return pr.table(["network", "rounding", FLOAT, *(f"k = {k}" for k in all_bits)], rows)


def needed_table(cells: dict[tuple[str, str], Cell], plan: Plan) -> str:
    """Bits needed per network, criterion and rounding (:func:`bits_needed`), with the
    float32 errors they are measured against."""
    rows = []
    header = ["network"]
    header += [f"float32 {words} (%)" for words in CRITERIA.values()]
    header += [f"{words}: bits needed, {r}" for words in CRITERIA.values() for r in ROUNDINGS]
    for network in plan.networks:
        reference = cells.get((network, FLOAT))
        row = [network, *(mean_sd(reference, key) for key in CRITERIA)]
        for key in CRITERIA:
            for rounding in ROUNDINGS:
                k = bits_needed(cells, network, rounding, key)
                top = max(plan.bits.get(rounding, (0,)))
                row.append(str(k) if k is not None else f"> {top}")
        rows.append(row)
    return pr.table(header, rows)


def lost_table(cells: dict[tuple[str, str], Cell], plan: Plan) -> str:
    """Per network, rounding and ``k``: the lost fraction of each pair (input side first),
    of the intralayer and skip edges, of the biases, and the saturated fraction of the most
    saturated pair; means over the seeds of the last epoch."""
    rows = []
    for network in plan.networks:
        for rounding in ROUNDINGS:
            for k in plan.bits.get(rounding, ()):
                cell = cells[(network, point_name(k, rounding))]
                if not cell.seeds:
                    rows.append([network, rounding, str(k), "–", "–", "–", "–"])
                    continue
                pairs = " / ".join(pr.pct(v, 1) for v in cell.mean("lost_updates"))
                other = (
                    pr.pct(float(cell.mean("lost_updates_other")[0]), 1)
                    if any("lost_updates_other" in r for r in cell.records)
                    else "no such edges"
                )
                biases = pr.pct(float(cell.mean("lost_updates_biases")[0]), 1)
                saturated = pr.pct(float(np.max(cell.mean("saturated"))), 2)
                rows.append([network, rounding, str(k), pairs, other, biases, saturated])
    header = [
        "network",
        "rounding",
        "k",
        "lost per pair (input -> output)",
        "lost, intralayer + skip",
        "lost, biases",
        "saturated (most, a pair)",
    ]
    return pr.table(header, rows)


def _top(cells: dict[tuple[str, str], Cell], network: str, rounding: str) -> int:
    return max((c.bits for c in cells.values() if (c.network, c.rounding) == (network, rounding)),
               default=0)  # fmt: skip


@dataclass(frozen=True)
class FewerBits:
    """Network ``skip`` needs fewer bits than ``layered`` on the held-out error
    (:func:`bits_needed`) with both roundings (``partly``: with one)."""

    layered: str
    skip: str

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        cells = collect(runs.values())
        missing = [
            n
            for n in (self.layered, self.skip)
            if (n, FLOAT) not in cells or not cells[(n, FLOAT)].seeds
        ]
        if missing:
            return Verdict(NOT_YET, f"no complete float32 run of {', '.join(missing)} yet")
        lower, parts = 0, []
        for rounding in ROUNDINGS:
            needed = [bits_needed(cells, n, rounding) for n in (self.layered, self.skip)]
            shown = [
                str(k) if k is not None else f"more than {_top(cells, n, rounding)}"
                for k, n in zip(needed, (self.layered, self.skip), strict=True)
            ]
            kl, ks = needed
            lower += ks is not None and (kl is None or ks < kl)
            parts.append(f"{rounding}: {self.layered} {shown[0]}, {self.skip} {shown[1]}")
        verdict = HOLDS if lower == len(ROUNDINGS) else PARTLY if lower else FAILS
        return Verdict(verdict, "bits needed, " + "; ".join(parts))


CLAIMS = tuple(
    Claim(
        "Gradients spanning several orders of magnitude could be hard to represent in analog "
        "implementations with limited bit depth, so layer-skipping, which makes the layers' "
        f"training rates uniform, should lower the bits per weight needed (here: {skip} needs "
        f"fewer bits than {layered} to come within {100 * TOLERANCE:g} points of its float32 "
        "held-out error, with nearest and with stochastic rounding)",
        "Gammell, Nam & McCaughan 2020 (ICONS), section 2.2"
        + ("" if layered == "B" else "; the networks of the journal version"),
        "full: the presets' epochs, k in {4, ..., 16}, 3 seeds",
        FewerBits(layered, skip),
    )
    for layered, skip in PAIRS
)


def context_lines(cells: dict[tuple[str, str], Cell], plan: Plan) -> list[str]:
    """Plain statements: where a network's float32 error varies between seeds by more than
    the tolerance, and the deepest pair's lost fraction at the largest ``k`` with nearest
    rounding, for each layered network and its skip counterpart."""
    lines = []
    pairs = [(a, b) for a, b in PAIRS if a in plan.networks and b in plan.networks]
    for layered, skip in pairs:
        for network in (layered, skip):
            for key, words in CRITERIA.items():
                sd = float(cells[(network, FLOAT)].std(key)[0]) if (network, FLOAT) in cells else 0
                if sd > TOLERANCE:
                    lines.append(
                        f"- Caution: {network}'s float32 {words} varies by {100 * sd:.1f} points "
                        f"(sd) between seeds, more than the {100 * TOLERANCE:g}-point tolerance: "
                        f"its bits needed on the {words} is not determined by this many seeds."
                    )
        top = max(plan.bits.get("nearest", (0,)), default=0)
        if top:
            lost = [cells[(n, point_name(top, "nearest"))].mean("lost_updates")[0]
                    for n in (layered, skip)]  # fmt: skip
            lines.append(
                f"- At k = {top}, nearest rounding, the deepest pair (input side) loses "
                f"{pr.pct(lost[0], 1)} of its updates in {layered} and {pr.pct(lost[1], 1)} "
                f"in {skip}."
            )
    return lines


def render(scale: str, results: list[pr.RunResult], departures: Departures | None = None) -> str:
    """The text of ``results.md``."""
    cells, plan = collect(results), PLANS[scale]
    seeds = ", ".join(map(str, plan.seeds))
    bits = "; ".join(f"{r}: k in {{{', '.join(map(str, ks))}}}" for r, ks in plan.bits.items())
    references = [r for r in results if r.name.endswith(f"-{FLOAT}-s{plan.seeds[0]}")]
    protocol = [
        f"Networks {', '.join(plan.networks)} (the paper presets; "
        + "; ".join(
            f"{n}: {network_label(r.config)}"
            for n, r in zip(plan.networks, references, strict=False)
        )  # fmt: skip
        + f"), float32 and {bits}; seeds {seeds} (`train.seed`: initial weights, signs of "
        "beta, rounding draws; the topology's seed is the preset's).",
        "",
        "Storage: `k` bits per weight and bias on a symmetric grid of 2^k - 1 values "
        "(zero exact) over [-r, r]; r fixed before training from the initialisation: "
        f"{DEFAULT_RANGE_SCALE:g} x the Glorot bound of each adjacent layer pair, "
        f"{DEFAULT_RANGE_SCALE:g} x `a` for intralayer and skip edges, "
        f"{DEFAULT_RANGE_SCALE:g} x the incoming pair's Glorot bound for biases. The initial "
        "weights are rounded to the grid; each update is applied as Q(w + dw), to nearest or "
        "stochastically (up with probability equal to the fractional part). A lost update: a "
        "non-zero proposed correction that leaves the weight unchanged (rounded away, or at "
        "+-r pushing outwards).",
    ]
    if scale == "quick":
        protocol += [
            "",
            "Also departs from the presets in the free phase: FISTA to a fixed-point residual "
            "of 1e-3 (at most 1,000 steps) instead of the fixed steps.",
        ]
    parts = [
        f"# Bit depth (issue 16, study 1), scale `{scale}`",
        "",
        "## Question",
        "",
        "How many bits per weight does each topology need to reach a given error, and does "
        "layer-skipping lower it, as the ICONS paper's motivation (uniform training rates "
        "across depth) implies? How many updates are lost to rounding per layer pair?",
        "",
        "## Protocol",
        "",
        *pr.header_lines(
            "Protocol details",
            scale,
            REDUCTIONS.get(scale),
            pr.departure_lines(departures, results),
        )[4:],
        *protocol,
        "",
        pr.protocol_table(references),
        "",
        *claims_section(CLAIMS, {r.name: r for r in results}, scale),
        "## Bits needed",
        "",
        f"Bits needed: the smallest k from which on (k and every larger k measured) the mean "
        f"error over the seeds is within {100 * TOLERANCE:g} points of the same network's "
        "float32 mean; read on the held-out error after the last epoch and, as a second "
        "criterion less noisy at small scales, on the training error of the last epoch (the "
        "free-phase errors over all its training examples).",
        "",
        *context_lines(cells, plan),
        "",
        needed_table(cells, plan),
        "",
        "## Held-out error after the last epoch (%, mean ± sd over seeds (seeds))",
        "",
        error_table(cells, plan, HELD_OUT_ERROR),
        "",
        "## Training error of the last epoch (%, mean ± sd over seeds (seeds))",
        "",
        error_table(cells, plan, "train_error"),
        "",
        "## Updates lost to rounding, last epoch (mean over seeds)",
        "",
        lost_table(cells, plan),
        "",
        "![Held-out error against bits](error_vs_bits.png)",
        "",
        "![Updates lost per layer pair against bits](lost_updates.png)",
        "",
        "## Runs",
        "",
        *pr.status_lines(results),
        "",
    ]
    return "\n".join(parts)
