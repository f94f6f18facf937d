"""Equal learning with a fast free-phase solver: networks B and C trained with the paper
protocol and with each network's fastest solver (projected SOR by even/odd layers for the
layered B, FISTA for C), at seeds 0 and 1 (and 2 at the full scale), side by side; for C
also the paper's own damped step stopped like the fast solver (a check of where a difference
comes from: the solver's dynamics or stopping at the residual), and FISTA stopped 10 and 100
times closer to the fixed point.

The free phase only has to reach the fixed point; the weakly-clamped phase keeps the paper's
8 steps. The question is whether a solver that stops at a residual ``tol`` learns what the
paper's 500 fixed steps learn: per epoch and seed, the fast run's training and held-out
errors are compared with the paper protocol's at the same seed, against the larger of the
paper protocol's seed-to-seed noise in that epoch (the largest difference between two of
its seeds) and 0.5 points. With a third seed, the paper protocol is also held to the
two-seed criterion itself: its seed 2 against its seed 0, within the noise of seeds 0 and 1
alone, and each protocol's mean over the seeds is compared with the paper protocol's, in
standard errors (a second reading, beside the issue's criterion). Since training turns any
difference into seed-like noise, the difference in the learning signal itself is measured
too: at the final state of each network's paper run at seed 0, each free phase's EP
estimate against the one at the fixed point (:mod:`eqprop.estimate_error`).

Scales:

- ``smoke``: the bundled digits, 64-32-32-32-10, first 300 examples, 20 free steps for the
  paper protocol, 2 epochs (seconds; no download).
- ``quick``: MNIST, the first 10,000 images of each split, the paper protocol (500 free +
  8 nudged steps), 5 epochs.
- ``full``: the first 50,000 training images and the 10,000 held-out ones, 3 epochs.

Run directories ``out/<network>-<protocol>-seed<k>``; rerunning resumes. Outputs:
``results.md`` (per-epoch table, verdicts, the held-out error of the final weights at the
fixed point, the estimate errors, free steps per batch and wall time of each run),
``errors_C.png``, ``errors_B.png`` (for a network with a finished epoch),
``fixed_point.json`` and ``estimate_error.json``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from eqprop import config as cfg
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict, claims_section
from eqprop.metrics import HELD_OUT_ERROR, record_metric
from eqprop.plots import ERRORS_TITLE, data_caption, errors_figure, network_label, solver_label
from eqprop.relaxation import Relaxer
from eqprop.relaxation.fixed import FixedSteps
from eqprop.runs import atomic_write_bytes

if TYPE_CHECKING:
    from eqprop.network import Network

SCALES = pr.SCALES
#: network label -> preset
NETWORKS = {"C": "icons-skip", "B": "icons-layered"}


@dataclass(frozen=True)
class Protocol:
    """A free phase compared with the paper protocol: its run-name part, its config changes
    and its description."""

    key: str
    changes: dict
    description: str


#: per network, the free phases compared with the paper protocol, the fastest first; C's
#: others are checks: the paper's own dynamics stopped like the fast solver, and the fast
#: solver stopped 10x closer to the fixed point
PROTOCOLS = {
    "C": (
        Protocol("fista", pr.FAST_FREE, "FISTA (step 0.5)"),
        Protocol(
            "damped",
            {**pr.FAST_FREE, "free.solver": "residual"},
            "the paper's damped step, each example stopped at residual < 1e-3",
        ),
        Protocol(
            "fista-tol1e-4",
            {**pr.FAST_FREE, "free.tol": 1e-4},
            "FISTA (step 0.5), each example stopped at residual < 1e-4",
        ),
        Protocol(
            "fista-tol1e-5",
            {**pr.FAST_FREE, "free.tol": 1e-5},
            "FISTA (step 0.5), each example stopped at residual < 1e-5",
        ),
    ),
    "B": (
        Protocol(
            "sor",
            {**pr.FAST_FREE, "free.solver": "sor", "free.eps": 1.7},
            "projected SOR by even/odd layers (factor 1.7)",
        ),
    ),
}
#: seeds per scale: the full scale has a third, so that the paper protocol's seed-to-seed
#: noise is measured from more than one pair
SEEDS = {"smoke": (0, 1), "quick": (0, 1), "full": (0, 1, 2)}
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, epochs=2, small=True),
    "quick": pr.Reduction(limit=10_000, epochs=5),
    "full": pr.Reduction(epochs=3),
}
#: the floor of the "within noise" criterion, in error fraction (0.5 points)
FLOOR = 0.005
#: how a difference that is not within the noise names the error it is in
_WORD = {"train_error": "train", HELD_OUT_ERROR: "test"}


def run_name(net: str, protocol: str, seed: int) -> str:
    """``<network>-<protocol>-seed<k>``; ``protocol`` is ``paper`` or a :class:`Protocol`
    key."""
    return f"{net}-{protocol}-seed{seed}"


def planned(scale: str) -> list[tuple[str, cfg.RunConfig]]:
    """Per network: the paper protocol at each seed, then each compared protocol at each
    seed."""
    runs = []
    for net, preset in NETWORKS.items():
        paper = pr.scaled(cfg.resolve(preset), scale, REDUCTIONS)
        for key, changes in (("paper", {}), *((p.key, p.changes) for p in PROTOCOLS[net])):
            for seed in SEEDS[scale]:
                config = paper.override({**changes, "train.seed": seed})
                runs.append((run_name(net, key, seed), config))
    return runs


def figured(results: list[pr.RunResult]) -> list[str]:
    """The networks that get an error figure: those with a run that has finished an epoch."""
    return [n for n in NETWORKS if any(r.records for r in results if r.name.startswith(f"{n}-"))]


def figure_name(net: str) -> str:
    """The error curves of network ``net``'s runs."""
    return f"errors_{net}.png"


def run(scale: str, out: Path, data_dir: Path | None) -> Path:
    """Run (or resume) the declared runs at ``scale`` into ``out``; return ``results.md``."""
    pr.check_scale(scale)
    out = Path(out)
    results = pr.execute(planned(scale), out, data_dir)
    title = f"{ERRORS_TITLE}\n{data_caption(r.config for r in results)}"
    for net in figured(results):
        mine = [r for r in results if r.name.startswith(f"{net}-")]
        curves = [(curve_label(r), r.records) for r in mine if r.records]
        pr.save_png(errors_figure(curves, title=title), out / figure_name(net))
    fixed = fixed_point_errors(results, out / FIXED_POINT_FILE, data_dir)
    estimates = estimate_errors(scale, results, out / ESTIMATE_FILE, data_dir)
    path = out / "results.md"
    atomic_write_bytes(path, render(scale, results, fixed, estimates).encode())
    return path


#: cache of :func:`fixed_point_errors` (run name -> {"epoch", "error"})
FIXED_POINT_FILE = "fixed_point.json"
#: the held-out examples relax to this fixed-point residual, from zeros, for that measure
FIXED_POINT_TOL = 1e-5


def fixed_point_error(network: Network, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """The error of ``network`` on ``x, y`` at the free fixed point: each example from zeros
    to a residual below :data:`FIXED_POINT_TOL` by FISTA with step ``eps``, 1,000 at a
    time."""
    from eqprop.relaxation.fista import Fista

    solver = Fista(eps=eps, steps=20_000, tol=FIXED_POINT_TOL)
    parts = [network.predict(x[k : k + 1000], solver) for k in range(0, len(x), 1000)]
    return float((torch.cat(parts).cpu() != y).double().mean())


def fixed_point_errors(
    results: list[pr.RunResult], cache: Path, data_dir: Path | None
) -> dict[str, dict]:
    """Held-out error of each finished run's final weights at the free fixed point, reached
    from zeros by FISTA to a residual below :data:`FIXED_POINT_TOL` (the same measure for
    every protocol, independent of how each run evaluated itself); cached in ``cache``."""
    from eqprop.runs import load_data
    from eqprop.saved import load_run

    declared = {r.name for r in results}
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    known = {name: entry for name, entry in cached.items() if name in declared}
    if known != cached:
        atomic_write_bytes(cache, (json.dumps(known, indent=1) + "\n").encode())
    for r in results:
        if not r.complete or known.get(r.name, {}).get("epoch") == r.config.train.epochs:
            continue
        trained = load_run(r.run_dir)
        if trained.epoch != r.config.train.epochs:
            continue  # trained past the declared epochs: the final weights are not those
        held = load_data(r.config, data_dir).held_out
        # the network's own step size, which its nudged phase keeps in every protocol (the
        # free eps of SOR is its relaxation factor, not a step)
        eps = r.config.nudged.eps
        error = fixed_point_error(trained.network, held.x, held.y, eps)
        known[r.name] = {"epoch": trained.epoch, "error": error, "eps": eps}
        atomic_write_bytes(cache, (json.dumps(known, indent=1) + "\n").encode())
    return known


#: cache of :func:`estimate_errors` (network -> {"run", "epoch", "reference_steps",
#: "free_phases", "reference_residual", "rows"})
ESTIMATE_FILE = "estimate_error.json"
#: batches measured by :func:`estimate_errors`, spread evenly over the training set
ESTIMATE_BATCHES = 20
#: a free phase stopped this close to the fixed point is also measured there, as the
#: fastest solver's closest setting
TIGHT_TOL, TIGHT_NAME = 1e-5, "tol1e-5"


def estimate_relaxers(net: str, paper: cfg.RunConfig) -> dict[str, Relaxer]:
    """The free phases :func:`estimate_errors` compares, by name: the paper protocol's,
    each compared protocol's, and the fastest solver stopped at :data:`TIGHT_TOL`."""
    relaxers = {
        "paper": paper.free.build(),
        **{p.key: paper.override(p.changes).free.build() for p in PROTOCOLS[net]},
    }
    fastest = PROTOCOLS[net][0]
    tight = paper.override({**fastest.changes, "free.tol": TIGHT_TOL}).free.build()
    if tight not in relaxers.values():
        relaxers[f"{fastest.key}-{TIGHT_NAME}"] = tight
    return relaxers


def reference_steps(scale: str) -> int:
    """Fixed steps of the reference free phase of :func:`estimate_errors`: 5,000 (the solver
    contract tests' reference), 2,000 on the small smoke network."""
    return 2_000 if scale == "smoke" else 5_000


def estimate_errors(
    scale: str, results: list[pr.RunResult], cache: Path, data_dir: Path | None
) -> dict[str, dict]:
    """Per network, at the final weights and particles of its paper run at seed 0: each
    free phase's EP estimate against the one at the fixed point
    (:mod:`eqprop.estimate_error`), on :data:`ESTIMATE_BATCHES` training batches; cached in
    ``cache`` (measured again when the run, its epochs or the free phases change)."""
    known = json.loads(cache.read_text()) if cache.exists() else {}
    by_name = {r.name: r for r in results}
    for net in NETWORKS:
        paper = by_name.get(run_name(net, "paper", SEEDS[scale][0]))
        if paper is None or not paper.complete:
            continue
        relaxers = estimate_relaxers(net, paper.config)
        wanted = {
            "run": paper.name,
            "epoch": paper.config.train.epochs,
            "reference_steps": reference_steps(scale),
            "free_phases": list(relaxers),
        }
        if {k: known.get(net, {}).get(k) for k in wanted} == wanted:
            continue
        measured = _measure_estimates(paper, relaxers, wanted["reference_steps"], data_dir)
        if measured is not None:
            known[net] = {**wanted, **measured}
            atomic_write_bytes(cache, (json.dumps(known, indent=1) + "\n").encode())
    return known


def _measure_estimates(
    paper: pr.RunResult, relaxers: dict[str, Relaxer], steps: int, data_dir
) -> dict | None:
    """:func:`eqprop.estimate_error.estimate_errors` at the final checkpoint of ``paper``
    against ``steps`` fixed steps (None when the run trained past its declared epochs)."""
    from eqprop.estimate_error import estimate_errors as measure
    from eqprop.saved import load_trainer

    data, trainer = load_trainer(paper.run_dir, data_dir)
    if trainer.epoch != paper.config.train.epochs:
        return None
    size = paper.config.train.batch_size
    n_batches = len(data.train.x) // size
    every = max(n_batches // ESTIMATE_BATCHES, 1)
    batches = [torch.arange(k * size, (k + 1) * size) for k in range(0, n_batches, every)]
    reference = FixedSteps(eps=paper.config.free.eps, steps=steps)
    rows, residual = measure(
        trainer, data.train.x, data.train.y, batches[:ESTIMATE_BATCHES], relaxers, reference
    )
    return {
        "reference_residual": residual,
        "rows": {name: asdict(row) for name, row in rows.items()},
    }


def estimate_lines(estimates: dict[str, dict]) -> list[str]:
    """Markdown: the estimate error of each free phase, per network."""
    lines = [
        "## How close each free phase's learning signal is to the fixed point's",
        "",
        "Training runs amplify any difference into seed-like noise; this measures the "
        "difference itself. At the final weights and persistent particles of each network's "
        f"paper run at seed 0, on {ESTIMATE_BATCHES} training batches spread over the set: "
        "each free phase runs from the particles, the paper's weakly-clamped phase from its "
        "result (the same beta for all), and its EP estimate d is compared with the estimate "
        "r from a reference free phase of many fixed steps (at the fixed point): "
        "||d - r|| / ||r|| over the network's edges, overall and per adjacent layer pair "
        "(layer 0 is the input), the mean over the batches (the median in brackets: the "
        "mean is led by the few batches whose examples relax slowest).",
        "",
    ]
    for net, entry in estimates.items():
        rows = entry["rows"]
        n_pairs = len(next(iter(rows.values()))["pairs"])
        header = [
            "free phase",
            "free steps (mean / max)",
            "largest residual",
            "error, all edges (median)",
        ] + [f"layers {k}-{k + 1}" for k in range(n_pairs)]
        body = [
            [
                name,
                f"{row['steps_mean']:.1f} / {row['steps_max']}",
                f"{row['residual']:.1e}",
                f"{row['overall']:.1e} ({row['overall_median']:.1e})",
            ]
            + [f"{v:.1e}" for v in row["pairs"]]
            for name, row in rows.items()
        ]
        lines += [
            f"Network {net} (`{entry['run']}` after epoch {entry['epoch']}; reference: "
            f"{entry['reference_steps']:,} fixed steps, largest residual "
            f"{entry['reference_residual']:.1e}):",
            "",
            pr.table(header, body),
            "",
        ]
    return lines


def curve_label(result: pr.RunResult) -> str:
    """A run's legend entry, from the config it ran with: its name, then the network and the
    free-phase solver on a second line."""
    return f"{result.name}\n{network_label(result.config)}; {solver_label(result.config)}"


def spread(values: list[float]) -> float:
    """The seed-to-seed noise of one error over seeds: the largest difference between two of
    them (``|s1 - s0|`` for two seeds)."""
    return max(values) - min(values)


def per_seed(
    results: list[pr.RunResult], net: str, protocol: str, seeds: tuple[int, ...]
) -> list[dict[int, dict]]:
    """Per seed, the epoch records of run ``net``-``protocol`` by epoch (empty when the run is
    not among ``results`` or has no finished epoch)."""
    by = {r.name: r.records for r in results}
    return [{x["epoch"]: x for x in by.get(run_name(net, protocol, s), [])} for s in seeds]


def judged(diff: float, allowed: float) -> tuple[str, bool]:
    """A difference against its allowance: the table cell (in points) and whether it is
    within."""
    ok = abs(diff) <= allowed
    return f"{100 * diff:+.2f} ({'ok' if ok else 'OUT'})", ok


def comparison(
    results: list[pr.RunResult], net: str, protocol: str, seeds: tuple[int, ...]
) -> tuple[list[list[str]], list[str]]:
    """Per-epoch rows (the paper protocol and ``protocol`` at each seed, and the latter's
    differences from the paper run of its seed) and the verdict lines, for network ``net``.
    The allowance of an epoch is the larger of the paper protocol's spread over ``seeds``
    and :data:`FLOOR`. A seed of ``protocol`` with no finished epoch is shown as ``–`` and
    not compared (the issue's minimum is one seed of the fast solver beside two of the paper
    protocol)."""
    c = compare(results, net, protocol, seeds)
    if not c.epochs:
        return c.rows, [f"- {net}: no epoch finished by the paper runs and a {protocol} run yet."]
    verdict = (
        "within the seed-to-seed noise (or 0.5 points) at every epoch and seed, training and "
        "held-out"
        if not c.misses
        else f"outside the noise at {', '.join(c.misses)}"
    )
    lines = [
        f"- {net}, {len(c.epochs)} epochs compared at seed{'s' * (len(c.compared) > 1)} "
        f"{listed(seeds[k] for k in c.compared)}: "
        f"the {protocol} runs are {verdict} ({c.checks - len(c.misses)} of {c.checks} "
        "comparisons within)."
    ]
    if len(c.compared) == len(seeds):
        paper, fast = (
            per_seed(results, net, "paper", seeds),
            per_seed(results, net, protocol, seeds),
        )
        lines.append(spread_line(paper, fast, c.epochs, protocol))
        lines += mean_lines(paper, fast, c.epochs, protocol)
    return c.rows, lines


@dataclass(frozen=True)
class Comparison:
    """A compared protocol against the paper protocol, per epoch and seed: the table rows,
    the epochs every paper seed and every compared seed finished, the indices of the
    compared seeds (those with a finished epoch), the comparisons outside the allowance
    (``"epoch 2 test (seed 1)"``) and how many comparisons were made."""

    rows: list[list[str]]
    epochs: list[int]
    compared: list[int]
    misses: list[str]

    @property
    def checks(self) -> int:
        """Training and held-out, per compared seed and epoch."""
        return 2 * len(self.compared) * len(self.epochs)


def compare(
    results: list[pr.RunResult], net: str, protocol: str, seeds: tuple[int, ...]
) -> Comparison:
    """:func:`comparison`'s measurements, before they are put in words."""
    paper, fast = per_seed(results, net, "paper", seeds), per_seed(results, net, protocol, seeds)
    compared = [k for k, run in enumerate(fast) if run]
    finished = [set(run) for run in paper] + [set(fast[k]) for k in compared]
    epochs = sorted(set.intersection(*finished)) if compared else []
    rows, misses = [], []
    for e in epochs:
        cells = [str(e)]
        for key in ("train_error", HELD_OUT_ERROR):
            allowed = max(spread([record_metric(r[e], key) for r in paper]), FLOOR)
            cells += [pr.pct(record_metric(r[e], key)) if e in r else "–" for r in paper + fast]
            for k, (seed, ref, run) in enumerate(zip(seeds, paper, fast, strict=True)):
                if k not in compared:
                    cells.append("–")
                    continue
                cell, ok = judged(record_metric(run[e], key) - record_metric(ref[e], key), allowed)
                if not ok:
                    misses.append(f"epoch {e} {_WORD[key]} (seed {seed})")
                cells.append(cell)
            cells.append(f"{100 * allowed:.2f}")
        rows.append(cells)
    return Comparison(rows, epochs, compared, misses)


@dataclass(frozen=True)
class WithinNoise:
    """Network ``net``'s runs with free phase ``protocol`` are within the paper protocol's
    seed-to-seed noise (or 0.5 points) of the paper run at the same seed, at every epoch and
    seed, training and held-out (:func:`compare`; ``partly``: at least half of the
    comparisons). Reads the seeds from the paper runs among the results."""

    net: str
    protocol: str

    def __call__(self, runs: Mapping[str, pr.RunResult]) -> Verdict:
        results = list(runs.values())
        prefix = run_name(self.net, "paper", 0).removesuffix("0")
        seeds = tuple(sorted(r.config.train.seed for r in results if r.name.startswith(prefix)))
        c = compare(results, self.net, self.protocol, seeds)
        if not c.epochs:
            return Verdict(NOT_YET, f"{self.net}: no epoch finished by every run compared")
        within = c.checks - len(c.misses)
        measured = (
            f"{self.net}-{self.protocol}: {within} of {c.checks} comparisons within over "
            f"{len(c.epochs)} epochs at seeds {listed(seeds[k] for k in c.compared)}"
            + (f" (outside at {', '.join(c.misses)})" if c.misses else "")
        )
        verdict = HOLDS if not c.misses else PARTLY if 2 * within >= c.checks else FAILS
        return Verdict(verdict, measured)


CLAIMS = tuple(
    Claim(
        "Equilibrium propagation is applicable to any network whose dynamics evolve to a fixed "
        "point of an energy function, so the free phase only has to reach that fixed point "
        f"(here: on network {net}, {PROTOCOLS[net][0].description} stopped at a fixed-point "
        "residual below 1e-3 learns what the paper's fixed free steps learn: within the paper "
        "protocol's seed-to-seed noise, or 0.5 points, at every epoch and seed)",
        "Gammell, Nam & McCaughan 2020 (ICONS), section 2.1, after Scellier & Bengio 2017 "
        '("Equilibrium Propagation: Bridging the Gap between Energy-Based Models and '
        'Backpropagation")',
        "full: the first 50,000 training images, 3 epochs, 3 seeds",
        WithinNoise(net, PROTOCOLS[net][0].key),
    )
    for net in NETWORKS
)
#: what the comparisons' allowance is made of
CLAIMS_NOTE = (
    "The allowance of each comparison is the paper protocol's own seed-to-seed spread in that "
    "epoch (at least 0.5 points); the sections below give every comparison, and a second "
    "reading of the means over the seeds where there are three."
)


#: a difference of seed means this many standard errors from zero is called a difference
MEAN_SE = 2.0


def mean_lines(paper: list[dict], fast: list[dict], epochs: list[int], protocol: str) -> list[str]:
    """Markdown: a second reading of the same runs, beside the issue's criterion. Per epoch,
    each protocol's mean over its seeds (sample standard deviation in brackets) and the
    difference of the means with its standard error ``sqrt(sd_paper^2 / n + sd_this^2 / n)``;
    a difference within :data:`MEAN_SE` standard errors is not told from seed noise. Only
    with three or more seeds (two give no usable spread)."""
    if len(paper) < 3:
        return []
    header = ["epoch"]
    for what in ("training", "held-out"):
        header += [f"{what}: paper", "this", "this - paper (s.e.)"]
    rows, apart = [], []
    for e in epochs:
        cells = [str(e)]
        for key in ("train_error", HELD_OUT_ERROR):
            theirs, ours = (
                [100 * record_metric(run[e], key) for run in runs] for runs in (paper, fast)
            )
            mean_theirs, mean_ours = statistics.fmean(theirs), statistics.fmean(ours)
            diff = mean_ours - mean_theirs
            se = math.sqrt((statistics.variance(ours) + statistics.variance(theirs)) / len(ours))
            if abs(diff) > MEAN_SE * se:
                apart.append(f"epoch {e} {_WORD[key]}")
            cells += [
                f"{mean_theirs:.2f} ({statistics.stdev(theirs):.2f})",
                f"{mean_ours:.2f} ({statistics.stdev(ours):.2f})",
                f"{diff:+.2f} ({se:.2f})",
            ]
        rows.append(cells)
    verdict = (
        f"the means differ by more than {MEAN_SE:g} standard errors at {', '.join(apart)}"
        if apart
        else f"every difference of the means is within {MEAN_SE:g} standard errors"
    )
    return [
        "",
        f"Mean over the {len(paper)} seeds, in % (standard deviation over the seeds), and the "
        "difference of the means in points (its standard error):",
        "",
        pr.table(header, rows),
        "",
        f"- {protocol}: {verdict} ({2 * len(epochs) - len(apart)} of {2 * len(epochs)}).",
    ]


def listed(items: Sequence[object]) -> str:
    """``0``, ``0 and 1``, ``0, 1 and 2``."""
    words = [str(x) for x in items]
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def spread_line(paper: list[dict], fast: list[dict], epochs: list[int], protocol: str) -> str:
    """Markdown: the largest seed-to-seed difference of each protocol over ``epochs``, for
    the training and the held-out error (the criterion's noise comes from the paper
    protocol's seeds; the compared protocol's own seeds are a second sample of it)."""

    def largest(runs: list[dict], key: str) -> str:
        diffs = {e: spread([record_metric(run[e], key) for run in runs]) for e in epochs}
        e = max(diffs, key=diffs.get)
        return f"{100 * diffs[e]:.2f} (epoch {e})"

    return (
        f"- Largest seed-to-seed difference, training / held-out, in points: paper "
        f"{largest(paper, 'train_error')} / {largest(paper, HELD_OUT_ERROR)}; {protocol} "
        f"{largest(fast, 'train_error')} / {largest(fast, HELD_OUT_ERROR)}."
    )


def self_check_lines(results: list[pr.RunResult], net: str, seeds: tuple[int, ...]) -> list[str]:
    """Markdown: the paper protocol held to the two-seed criterion itself. Each paper seed
    beyond the first two is compared, as if it were a compared protocol, with the paper run
    at the first seed, against the allowance of the first two seeds alone (a table and a
    verdict per such seed; nothing with two seeds)."""
    first, second, *others = per_seed(results, net, "paper", seeds)
    header = ["epoch", "training: difference", "allowed", "held-out: difference", "allowed"]
    lines = []
    for seed, run in zip(seeds[2:], others, strict=True):
        epochs = sorted(set(first) & set(second) & set(run))
        if not epochs:
            continue
        rows, misses = [], []
        for e in epochs:
            cells = [str(e)]
            for key in ("train_error", HELD_OUT_ERROR):
                allowed = max(
                    abs(record_metric(second[e], key) - record_metric(first[e], key)), FLOOR
                )
                cell, ok = judged(
                    record_metric(run[e], key) - record_metric(first[e], key), allowed
                )
                if not ok:
                    misses.append(f"epoch {e} {_WORD[key]}")
                cells += [cell, f"{100 * allowed:.2f}"]
            rows.append(cells)
        checks = 2 * len(epochs)
        lines += [
            f"Paper seed {seed} minus paper seed {seeds[0]}, against the allowance of seeds "
            f"{seeds[0]} and {seeds[1]} alone, in points:",
            "",
            pr.table(header, rows),
            "",
            f"- {net}: the paper protocol's seed {seed} is within the two-seed criterion in "
            f"{checks - len(misses)} of {checks} comparisons"
            + (f" (outside at {', '.join(misses)})." if misses else "."),
            "",
        ]
    return lines


def cost_rows(results: list[pr.RunResult]) -> list[list[str]]:
    """Per run: mean free steps per batch (each epoch) and training wall time."""
    rows = []
    for r in results:
        steps = " / ".join(f"{x['free_steps']:.0f}" for x in r.records) or "–"
        wall = r.records[-1]["wall_time"] if r.records else float("nan")
        rows.append(
            [r.name, f"{r.epochs_done}/{r.config.train.epochs}", steps, pr.num(wall, ".0f")]
        )
    return rows


def fixed_point_lines(fixed: dict[str, dict], seeds: tuple[int, ...]) -> list[str]:
    """Markdown: the fixed-point held-out errors of the final weights, per network."""
    lines = [
        "## What the weights learned: held-out error at the fixed point",
        "",
        "Each protocol evaluates itself with its own free phase (the paper's fixed steps "
        "from the test particles, or the solver): early held-out errors then mix what was "
        "learned with how far the evaluation relaxed. Here the final weights of every run "
        f"are evaluated the same way: each held-out example from zeros to a fixed-point "
        f"residual below {FIXED_POINT_TOL:g} (FISTA).",
        "",
    ]
    rows = []
    for net in NETWORKS:
        for key in ("paper", *(p.key for p in PROTOCOLS[net])):
            cells = [net, key]
            for seed in seeds:
                entry = fixed.get(run_name(net, key, seed))
                cells.append(f"{pr.pct(entry['error'])} (epoch {entry['epoch']})" if entry else "–")
            rows.append(cells)
    lines.append(pr.table(["network", "free phase", *(f"seed {s}" for s in seeds)], rows))
    return lines + [""]


def render(
    scale: str,
    results: list[pr.RunResult],
    fixed: dict[str, dict] | None = None,
    estimates: dict[str, dict] | None = None,
) -> str:
    """The text of ``results.md``."""
    seeds = SEEDS[scale]
    runs_header = [
        *(f"paper s{s}" for s in seeds),
        *(f"this s{s}" for s in seeds),
        f"this - paper s{seeds[0]}",
        *(f"s{s}" for s in seeds[1:]),
    ]
    header = [
        "epoch",
        *(f"train, {h}" if i == 0 else h for i, h in enumerate(runs_header)),
        "allowed",
        *(f"held-out, {h}" if i == 0 else h for i, h in enumerate(runs_header)),
        "allowed",
    ]
    compared = "; ".join(
        f"{net}: {', '.join(f'`{p.key}`, {p.description}' for p in PROTOCOLS[net])}"
        for net in NETWORKS
    )
    parts = [
        *pr.header_lines(
            "Equal learning with a fast free-phase solver", scale, REDUCTIONS.get(scale)
        ),
        f"Each network (B = `icons-layered`, C = `icons-skip`, the paper's protocol with the "
        f"authors' step) trained with the paper's fixed free steps and with each free phase "
        f"compared, at seeds {listed(seeds)}; the compared ones take each example to a fixed-point "
        f"residual below 1e-3 unless said otherwise (at most 1,000 steps; evaluation with the "
        f"same solver). "
        f"Compared: {compared}. "
        "Seeds change the initial weights and the signs of beta; batches are in file order. "
        "Criterion, per epoch and seed k: |this seed k - paper seed k| <= allowed = "
        "max(the paper protocol's seed-to-seed noise, 0.5 points), for the training error "
        "(during the epoch) and the held-out error (after it); the noise is the largest "
        f"difference between two of the paper protocol's seeds ({listed(seeds)}) in that "
        "epoch; differences in points.",
        "",
        *pr.runs_section(results),
        "",
        *claims_section(CLAIMS, {r.name: r for r in results}, scale, CLAIMS_NOTE),
    ]
    for net in NETWORKS:
        for p in PROTOCOLS[net]:
            rows, verdict = comparison(results, net, p.key, seeds)
            title = f"## Network {net}: `{p.key}` ({p.description}) beside the paper protocol"
            parts += [title, "", pr.table(header, rows), "", *verdict, ""]
        if checks := self_check_lines(results, net, seeds):
            parts += [
                f"## Network {net}: the paper protocol against its own noise",
                "",
                *checks,
                "",
            ]
    parts += [
        *fixed_point_lines(fixed or {}, seeds),
        *estimate_lines(estimates or {}),
        "## Cost",
        "",
        pr.table(
            ["run", "epochs", "mean free steps per batch (per epoch)", "training wall time (s)"],
            cost_rows(results),
        ),
        "",
        "Wall times are of a shared 2-core machine (other jobs running), one torch thread "
        "per run: compare steps, and see `docs/performance.md` for timings on an idle machine.",
        "",
        *(
            f"![Network {net}: training (solid) and held-out (dashed) error per epoch]"
            f"({figure_name(net)})"
            for net in figured(results)
        ),
        "",
    ]
    return "\n".join(parts)
