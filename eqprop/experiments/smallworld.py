"""Small-world metrics of the paper's topologies (``docs/science.md`` section 3; ICONS
appendix, section 6.2).

For the layered network, the ICONS "replace" topology at several replacement probabilities
``p`` (including ``n = 0``: layered plus intralayer edges, and the paper's network C,
``n = 100,000``) and the journal version's rewired topology (``p = 10%``), the experiment
measures the characteristic path length ``L``, the clustering coefficient ``C`` and the
small-world coefficient ``sigma = (C/C_rand)/(L/L_rand)`` against Erdos-Renyi ``G(n, m)``
graphs with the same numbers of nodes and edges (:mod:`eqprop.smallworld`). Every neuron,
inputs included, is a node; every connection an undirected edge.

Outputs in ``out``:

- ``results.json``: one record per topology, written after each one (atomically); a rerun
  skips the topologies already there.
- ``smallworld.png``: ``L/L_rand``, ``C/C_rand`` and ``sigma`` against ``p``; the layered
  network, ICONS ``n = 0`` and the rewired network as reference lines and markers.
- ``results.md``: the table, the method and a short interpretation.

Timings use one BLAS thread (``threadpoolctl``); the 1-minute load average before each
topology is recorded, since the machine may be shared.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from eqprop import smallworld as sw
from eqprop import topology as topo
from eqprop.baselines.training import RunProgress
from eqprop.errors import ConfigError
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict, claims_section
from eqprop.runs import atomic_write_bytes

SCALES = ("smoke", "quick", "full")
PAPER_SIZES = (784, 500, 500, 500, 10)
#: replacements of the paper's network C (p = 7.56 %)
PAPER_N = 100_000
RESULTS_JSON = "results.json"
PLOT = "smallworld.png"


@dataclass(frozen=True)
class Plan:
    """What one scale measures.

    Attributes:
        sizes: layer sizes, input first.
        icons: ICONS "replace" points, each ``("p", value)`` (turned into ``n`` with the
            simple formula) or ``("n", value)``.
        rewired_p: rewiring probability of the journal version's topology.
        n_random: ``G(n, m)`` graphs per topology.
        sources, random_sources: sources for ``L`` of the topology and of each random graph
            (``None``: all, exact).
        cross_check: also compute the topology's exact ``L`` with scipy.sparse.csgraph
            (Floyd-Warshall) and record it and its time.
        seed: seed of every topology and of the random graphs.
    """

    sizes: tuple[int, ...]
    icons: tuple[tuple[str, float], ...]
    rewired_p: float
    n_random: int
    sources: int | None
    random_sources: int | None
    cross_check: bool
    seed: int = 0


_SWEEP = (("n", 0), ("p", 1e-4), ("p", 1e-3), ("p", 1e-2), ("p", 0.0756), ("p", 0.3))
PLANS: dict[str, Plan] = {
    # seconds: a 170-neuron network shaped like the paper's
    "smoke": Plan(
        sizes=(64, 32, 32, 32, 10),
        icons=_SWEEP,
        rewired_p=0.1,
        n_random=5,
        sources=None,
        random_sources=None,
        cross_check=True,
    ),
    # the paper's network, a few points, 2 random graphs each
    "quick": Plan(
        sizes=PAPER_SIZES,
        icons=(("n", 0), ("p", 1e-3), ("n", PAPER_N), ("p", 0.3)),
        rewired_p=0.1,
        n_random=2,
        sources=None,
        random_sources=None,
        cross_check=False,
    ),
    # the paper's network over five decades of p, 5 random graphs each, csgraph cross-check
    "full": Plan(
        sizes=PAPER_SIZES,
        icons=(
            ("n", 0),
            ("p", 1e-5),
            ("p", 1e-4),
            ("p", 1e-3),
            ("p", 1e-2),
            ("p", 0.03),
            ("n", PAPER_N),
            ("p", 0.3),
        ),
        rewired_p=0.1,
        n_random=5,
        sources=None,
        random_sources=None,
        cross_check=True,
    ),
}


@dataclass(frozen=True)
class Point:
    """One topology of a plan: a file-safe key, a label and how to build it."""

    key: str
    label: str
    family: str
    n: int | None = None
    p: float | None = None


def points(plan: Plan) -> list[Point]:
    """The topologies of ``plan``: layered, the ICONS points, rewired."""
    out = [Point("layered", "layered", "layered")]
    for kind, value in plan.icons:
        if kind == "n":
            n = int(value)
            label = "ICONS n = 0 (layered + intralayer)" if n == 0 else f"ICONS n = {n:,}"
        else:
            n = topo.n_from_p(float(value), plan.sizes)
            label = f"ICONS p = {value:g}"
        p = topo.p_from_n(n, plan.sizes)
        out.append(Point(f"icons-n{n}", label, "icons-replace", n=n, p=p))
    out.append(
        Point(
            f"rewired-p{plan.rewired_p:g}",
            f"rewired p = {plan.rewired_p:g}",
            "rewired",
            p=plan.rewired_p,
        )
    )
    return out


def _build(point: Point, plan: Plan) -> topo.Topology:
    if point.family == "layered":
        return topo.layered(plan.sizes)
    if point.family == "rewired":
        return topo.rewired(plan.sizes, float(point.p), seed=plan.seed)
    return topo.icons(plan.sizes, n=point.n, seed=plan.seed)


def _one_thread():
    """A context that limits BLAS to one thread (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _clean(value):
    """JSON-safe: NaN and infinities become None, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def measure(point: Point, plan: Plan) -> dict:
    """Build one topology and measure it; the record stored in ``results.json``."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with _one_thread():
        t0 = time.perf_counter()
        t = _build(point, plan)
        seconds_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = sw.small_world(
            t,
            n_random=plan.n_random,
            sources=plan.sources,
            random_sources=plan.random_sources,
            seed=plan.seed,
        )
        seconds_metrics = time.perf_counter() - t0
        local = sw.local_clustering(t)
        check = None
        if plan.cross_check:
            ref = sw.path_length(t, method="floyd-warshall")
            check = {"L": ref.value, "seconds": ref.seconds, "method": ref.method}
    layer = t.layer_of
    counts = t.counts()
    record = {
        "key": point.key,
        "label": point.label,
        "family": point.family,
        "n": point.n,
        "p": point.p,
        "edges": counts["edges"],
        "edges_by_kind": {k: counts[k] for k in topo.KIND_NAMES},
        "metrics": metrics.to_dict(),
        "L_ratio": metrics.L_ratio,
        "C_ratio": metrics.C_ratio,
        "C_by_layer": [float(local[layer == k].mean()) for k in range(len(plan.sizes))],
        "csgraph_check": check,
        "seconds_build": seconds_build,
        "seconds_metrics": seconds_metrics,
        "seconds_total": time.perf_counter() - start,
        "load_before": load,
        "threads": 1,
    }
    return _clean(record)


def _load(path: Path, scale: str, plan: Plan) -> dict:
    header = {"experiment": "smallworld", "scale": scale, "plan": _clean(asdict(plan))}
    if not path.exists():
        return {**header, "topologies": {}}
    data = json.loads(path.read_text())
    if data.get("plan") != header["plan"]:
        raise ConfigError(
            f"{path} was written for another plan (scale {data.get('scale')!r}); "
            "use a fresh --out directory or delete it"
        )
    return data


def stage_measured(directory: Path, scale: str) -> tuple[list[dict], str]:
    """What :data:`CLAIMS` read of a committed output directory (its topologies' records, in
    the plan's order) and what it reached, for the index of :mod:`eqprop.experiments.report`."""
    data = _load(Path(directory) / RESULTS_JSON, scale, PLANS[scale])
    planned = points(PLANS[scale])
    records = [data["topologies"][p.key] for p in planned if p.key in data["topologies"]]
    return records, f"{len(records)} of {len(planned)} topologies"


def run(scale: str, out: Path, data_dir: Path | None) -> Path:
    """Measure (or resume) every topology of ``scale`` into ``out``; return ``results.md``.

    ``data_dir`` is unused: no data are needed.
    """
    if scale not in PLANS:
        raise ConfigError(f"smallworld scale must be one of {', '.join(SCALES)}; got {scale!r}")
    plan = PLANS[scale]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_JSON
    data = _load(path, scale, plan)
    planned = points(plan)
    done = sum(p.key in data["topologies"] for p in planned)
    progress = RunProgress(len(planned), f"smallworld {scale} topologies", initial=done)
    try:
        for point in planned:
            if point.key in data["topologies"]:
                continue
            record = data["topologies"][point.key] = measure(point, plan)
            atomic_write_bytes(path, json.dumps(data, indent=1).encode())
            progress.update(f"{point.label} ({record['seconds_total']:.1f} s)")
    finally:
        progress.close()
    records = [data["topologies"][p.key] for p in planned]
    plot(records, out / PLOT)
    results = out / "results.md"
    atomic_write_bytes(results, render_results(scale, plan, records).encode())
    return results


# -- claims ---------------------------------------------------------------------------------
#: "small" L and C, read as: at most this multiple of the random graph's
NEAR_RANDOM = 1.1
#: a metric "tracks" performance along the ICONS sweep when its rank correlation with p has at
#: least this size over p >= :data:`TRACK_FROM` (where ICONS Figure 5's error falls with p)
TRACKS = 0.9
TRACK_FROM = 1e-3
#: the sweep points (p >= TRACK_FROM) a tracking claim needs
MIN_TRACKED = 4
#: the metrics of a record whose tracking is judged, and their names
TRACKED = (("L_ratio", "L/L_rand"), ("C_ratio", "C/C_rand"), ("sigma", "sigma"))


def _sweep(records: Sequence[Mapping]) -> list[Mapping]:
    """The ICONS replacement points with replacements (n > 0), in increasing p."""
    return sorted(
        (r for r in records if r["family"] == "icons-replace" and r["n"]), key=lambda r: r["p"]
    )


@dataclass(frozen=True)
class NotSmallWorld:
    """Topology ``key`` has small ``L`` and ``C``: ``L/L_rand`` and ``C/C_rand`` each at most
    :data:`NEAR_RANDOM` (``partly``: one of the two), so that ``sigma`` is near 1."""

    key: str

    def __call__(self, records: Sequence[Mapping]) -> Verdict:
        record = next((r for r in records if r["key"] == self.key), None)
        if record is None:
            return Verdict(NOT_YET, f"{self.key} not measured")
        small = [_ratio(record, name) <= NEAR_RANDOM for name in ("L_ratio", "C_ratio")]
        measured = (
            f"{record['label']}: `L/L_rand` {record['L_ratio']:.4f}, `C/C_rand` "
            f"{record['C_ratio']:.2f}, `sigma` {record['metrics']['sigma']:.2f}"
        )
        return Verdict(HOLDS if all(small) else PARTLY if any(small) else FAILS, measured)


@dataclass(frozen=True)
class TracksNone:
    """Along the ICONS sweep with p >= :data:`TRACK_FROM`, where the paper's one-epoch error
    falls steadily as p grows (ICONS Figure 5), none of ``L/L_rand``, ``C/C_rand`` and
    ``sigma`` moves with p: none has a Spearman rank correlation with p of size
    :data:`TRACKS` or more (``partly``: some do not; a constant metric does not track)."""

    def __call__(self, records: Sequence[Mapping]) -> Verdict:
        sweep = [r for r in _sweep(records) if r["p"] >= TRACK_FROM]
        if len(sweep) < MIN_TRACKED:
            return Verdict(NOT_YET, f"{len(sweep)} sweep points with p >= 0.1%")
        ps = [r["p"] for r in sweep]
        rhos = {}
        for key, name in TRACKED:
            values = [_ratio(r["metrics"] if key == "sigma" else r, key) for r in sweep]
            constant = max(values) == min(values)
            rhos[name] = 0.0 if constant else float(spearmanr(ps, values)[0])
        tracking = [name for name, rho in rhos.items() if abs(rho) >= TRACKS]
        measured = (
            f"rank correlation with p over {len(sweep)} points, p = {ps[0]:.2g} -> "
            f"{ps[-1]:.2g}: "
            + ", ".join(f"`{name}` {rho:+.2f}" for name, rho in rhos.items())
            + (f"; tracking: {', '.join(f'`{n}`' for n in tracking)}" if tracking else "")
        )
        verdict = FAILS if len(tracking) == len(rhos) else PARTLY if tracking else HOLDS
        return Verdict(verdict, measured)


_FULL = "full: the paper's 784-500x3-10 topologies, exact `L`"
CLAIMS = (
    Claim(
        f"Good performance was achieved with p of about 8% (network C, n = {PAPER_N:,}), "
        "which leads to a network with small L and C that was therefore not small-world "
        f"(here: `L/L_rand` and `C/C_rand` at most {NEAR_RANDOM:g})",
        "Gammell, Nam & McCaughan 2020 (ICONS), section 6.2",
        _FULL,
        NotSmallWorld(f"icons-n{PAPER_N}"),
    ),
    Claim(
        "A network's performance did not track closely with any of the small-world metrics "
        "(here: along the ICONS sweep from p = 0.1%, where ICONS Figure 5's error falls as p "
        f"grows, no metric's rank correlation with p of size {TRACKS:g} or more; performance "
        "is the paper's, no training is run here)",
        "Gammell, Nam & McCaughan 2020 (ICONS), section 6.2; Gammell, Nam & McCaughan 2021 "
        '("Layer-Skipping Connections Improve the Effectiveness of Equilibrium Propagation on '
        'Layered Networks"), footnote 1',
        _FULL,
        TracksNone(),
    ),
)
#: the metrics are exact or have the standard errors the method states
CLAIMS_NOTE = (
    "The metrics are measured, not trained: `L` is exact and `sigma`'s standard error is "
    "stated under Method, so these verdicts do not move from run to run."
)


# -- outputs -------------------------------------------------------------------------------
def _num(value: float | None, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _ratio(record: Mapping, name: str) -> float:
    value = record[name]
    return math.nan if value is None else float(value)


def plot(records: Sequence[Mapping], path: Path) -> None:
    """``L/L_rand``, ``C/C_rand`` and ``sigma`` against ``p`` (three panels)."""
    sweep = _sweep(records)
    refs = {r["key"]: r for r in records if r["family"] == "layered" or r["n"] == 0}
    for r in records:
        if r["family"] == "rewired":
            refs["rewired"] = r
    panels = (
        ("L_ratio", "L / L_rand"),
        ("C_ratio", "C / C_rand"),
        ("sigma", "sigma = (C/C_rand) / (L/L_rand)"),
    )
    fig = Figure(figsize=(12, 3.6), dpi=90)
    axes = fig.subplots(1, 3)

    def value(r: Mapping, name: str) -> float:
        return _ratio(r["metrics"], "sigma") if name == "sigma" else _ratio(r, name)

    for ax, (name, title) in zip(axes, panels, strict=True):
        xs = [r["p"] for r in sweep]
        ax.plot(xs, [value(r, name) for r in sweep], "o-", color="tab:blue", label="ICONS")
        for r in sweep:
            if r["n"] == PAPER_N:
                ax.plot(
                    r["p"],
                    value(r, name),
                    "o",
                    ms=11,
                    mfc="none",
                    color="tab:blue",
                    label=f"ICONS n = {PAPER_N:,} (network C)",
                )
        if "layered" in refs:
            ax.axhline(value(refs["layered"], name), color="grey", ls="--", label="layered")
        if "icons-n0" in refs:
            ax.axhline(value(refs["icons-n0"], name), color="tab:blue", ls=":", label="ICONS n = 0")
        if "rewired" in refs:
            r = refs["rewired"]
            ax.plot(r["p"], value(r, name), "*", ms=12, color="tab:red", label=r["label"])
        ax.axhline(1.0, color="black", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("p (replacement / rewiring probability)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


TABLE_HEADER = (
    "| topology | p | n | N_edges | L | L_rand | ln n / ln k | C | C_rand | k / n "
    "| L/L_rand | C/C_rand | sigma | time (s) |"
)


def format_table(records: Sequence[Mapping]) -> str:
    """The Markdown table: one row per topology."""
    lines = [TABLE_HEADER, "|---|---:|---:|---:|" + "---:|" * 10]
    for r in records:
        m = r["metrics"]
        p = "" if r["p"] is None else f"{r['p']:.3g}"
        n = "" if r["n"] is None else f"{r['n']:,}"
        l_value = _num(m["L"]) + ("" if m["L_exact"] else f" ± {_num(m['L_se'], '.4f')}")
        time_s = f"{r['seconds_build']:.2f} + {r['seconds_metrics']:.2f}"
        lines.append(
            f"| {r['label']} | {p} | {n} | {r['edges']:,} | {l_value} | {_num(m['L_rand'])} "
            f"| {_num(m['L_rand_analytic'])} | {_num(m['C'])} | {_num(m['C_rand'])} "
            f"| {_num(m['C_rand_analytic'])} | {_num(r['L_ratio'])} | {_num(r['C_ratio'])} "
            f"| {_num(m['sigma'], '.3f')} | {time_s} |"
        )
    return "\n".join(lines)


def _layer_table(records: Sequence[Mapping], sizes: Sequence[int]) -> str:
    names = ["input"] + [f"hidden {k}" for k in range(1, len(sizes) - 1)] + ["output"]
    lines = [
        "| topology | "
        + " | ".join(f"{a} ({b})" for a, b in zip(names, sizes, strict=True))
        + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for r in records:
        lines.append(f"| {r['label']} | " + " | ".join(f"{c:.3f}" for c in r["C_by_layer"]) + " |")
    return "\n".join(lines)


def _method_lines(plan: Plan, records: Sequence[Mapping]) -> list[str]:
    m0 = records[0]["metrics"]
    exact = all(r["metrics"]["L_exact"] for r in records)
    if exact and plan.random_sources is None:
        sampling = (
            "Every node is a source for `L` and `L_rand`, so both are exact (no sampling "
            "error). The sampled-source estimator of `eqprop.smallworld.path_length` "
            f"(standard error with finite-population correction, bound {sw.ERROR_BOUND_SE:g} "
            "SE) was not needed at this size."
        )
    else:
        sampling = (
            f"`L` from {plan.sources or 'all'} and `L_rand` from {plan.random_sources or 'all'}"
            " uniformly sampled sources per graph; the table gives `L ± 1 SE` (ratio "
            "estimator, finite-population correction); stated error bound "
            f"{sw.ERROR_BOUND_SE:g} SE."
        )
    checks = [r["csgraph_check"] for r in records if r.get("csgraph_check")]
    lines = [
        f"- Graph: every neuron ({m0['n_nodes']:,}, inputs included) is a node, every "
        "connection an undirected, unweighted edge.",
        "- `L`: mean shortest-path length over connected ordered pairs (every graph here is "
        "connected). Distances by breadth-first search from all sources at once, one dense "
        "0/1 matrix product per level (`eqprop.smallworld`, method `matrix`).",
        f"- {sampling}",
        "- `C`: mean over all nodes of the local clustering `2 T_i / (k_i (k_i - 1))`; nodes of "
        "degree < 2 count 0 (none here). Triangles exact: `T = rowsum((A @ A) * A) / 2`, with a "
        "dense BLAS product (the graphs are dense; same integers as the sparse product).",
        f"- `C_rand`, `L_rand`: means over {plan.n_random} Erdős–Rényi `G(n, m)` graphs with "
        f"the topology's numbers of nodes and edges (seeds `SeedSequence([{plan.seed}, r])`). "
        "`ln n / ln k` and `k / n` (`k = 2m/n`) are the textbook approximations, for "
        "comparison.",
        "- `sigma = (C/C_rand) / (L/L_rand)`. Its standard error (propagated from the spread of "
        "`C_rand` and `L_rand` over the random graphs) is at most "
        f"{max((r['metrics']['sigma_se'] or 0.0) for r in records):.1e}.",
        f"- Topologies built with seed {plan.seed} (`eqprop.topology`); ICONS points given as "
        "`p` use `n = n_from_p(p)` (simple formula), and the table's `p` is `p_from_n(n)`.",
        "- Time: building the topology + all metrics (its `L`, `C` and the random graphs), one "
        "BLAS thread, wall seconds. 1-minute load average before each topology: "
        + ", ".join(f"{r['load_before']:.1f}" for r in records)
        + f" (machine with {os.cpu_count()} cores, shared with other jobs).",
    ]
    if checks:
        worst = max(
            abs(c["L"] - r["metrics"]["L"]) for r in records if (c := r.get("csgraph_check"))
        )
        times = [c["seconds"] for c in checks]
        lines.append(
            "- Cross-check: the exact `L` recomputed with `scipy.sparse.csgraph.shortest_path` "
            f"(Floyd-Warshall, unit weights) for {len(checks)} topologies differs by at most "
            f"{worst:.1e}; it took {min(times):.1f}-{max(times):.1f} s per topology (not "
            "included in the time column)."
        )
    return lines


def _shape(values: Sequence[float], where: Sequence[str]) -> str:
    """How a sequence moves: "rises", "falls", "peaks at ... and then falls" or "varies"."""
    steps = [b - a for a, b in zip(values[:-1], values[1:], strict=True)]
    top = int(np.nanargmax(values))
    if all(d <= 0 for d in steps):
        return "falls monotonically"
    if all(d >= 0 for d in steps):
        return "rises monotonically"
    if all(d >= 0 for d in steps[:top]) and all(d <= 0 for d in steps[top:]):
        return f"rises to {values[top]:.2f} ({where[top]}) and then falls"
    return f"varies non-monotonically (largest {values[top]:.2f}, {where[top]})"


def interpretation(records: Sequence[Mapping], plan: Plan) -> list[str]:
    """Short remarks on the measured numbers (Markdown bullets); every number and trend named
    is read off ``records``."""
    by_key = {r["key"]: r for r in records}
    lines = []
    n_nodes = records[0]["metrics"]["n_nodes"]
    total_pairs = n_nodes * (n_nodes - 1) / 2
    densities = [r["metrics"]["n_edges"] / total_pairs for r in records]
    degrees = [r["metrics"]["mean_degree"] for r in records]
    diam = sorted({r["metrics"]["diameter"] for r in records})
    two_hop = all(
        abs(r["metrics"]["L_rand"] - (2.0 - d)) < 1e-9
        for r, d in zip(records, densities, strict=True)
    )
    lines.append(
        f"- These graphs are dense: {min(densities):.0%}-{max(densities):.0%} of all node pairs "
        f"are connected (mean degree {min(degrees):.0f}-{max(degrees):.0f} of {n_nodes - 1}), "
        "far from the sparse regime `n >> k >> ln n` in which small-world metrics are usually "
        f"read; diameters are {', '.join(map(str, diam))}. The textbook `L_rand ~ ln n / ln k` "
        "assumes `k << n` and is poor here"
        + (
            "; every random graph has diameter 2, so `L_rand = 2 - density` exactly (pairs are "
            "at distance 1 or 2), and `C_rand` is close to the density (`k / n`)."
            if two_hop
            else "."
        )
    )
    layered = by_key.get("layered")
    if layered:
        lm = layered["metrics"]
        lines.append(
            "- Layered: no triangles (edges only join adjacent layers, so the graph is "
            f"bipartite), `C = 0` and `sigma = 0`; `L = {lm['L']:.3f}` is "
            f"{layered['L_ratio']:.3f} x `L_rand` (diameter {lm['diameter']}, input to output)."
        )
    zero = by_key.get("icons-n0")
    if zero:
        zm, cl = zero["metrics"], zero["C_by_layer"]
        lines.append(
            "- ICONS before any replacement (`n = 0`): the intralayer cliques make the "
            "neighbourhood of every input and output neuron a clique (mean local clustering "
            f"{cl[0]:.2f} and {cl[-1]:.2f}; hidden layers {min(cl[1:-1]):.2f}-"
            f"{max(cl[1:-1]):.2f}), so `C = {zm['C']:.3f}` = {zero['C_ratio']:.2f} x `C_rand`; "
            f"`L = {zm['L']:.3f}` ({zero['L_ratio']:.3f} x `L_rand`), `sigma = {zm['sigma']:.2f}`."
        )
    sweep = _sweep(records)
    if sweep:
        lo, hi = sweep[0], sweep[-1]
        sigmas = [_ratio(r["metrics"], "sigma") for r in sweep]
        diameter_two = [r for r in sweep if r["metrics"]["diameter"] <= 2]
        shape = _shape(sigmas, [f"p = {r['p']:.2g}" for r in sweep])
        lines.append(
            f"- ICONS replacements, p = {lo['p']:.2g} -> {hi['p']:.2g}: `L/L_rand` "
            f"{lo['L_ratio']:.3f} -> {hi['L_ratio']:.3f}, `C/C_rand` {lo['C_ratio']:.2f} -> "
            f"{hi['C_ratio']:.2f}; `sigma` {shape}, ending at {hi['metrics']['sigma']:.2f}. "
            "Replacements remove clique edges, so `C` falls towards `C_rand`; the skip edges "
            "shorten the longest (input-to-output) paths, so `L` falls to `L_rand`"
            + (
                f", which it equals once the diameter is 2 (from p = {diameter_two[0]['p']:.2g};"
                " with the same edge count both are then `2 - density`)."
                if diameter_two and two_hop
                else "."
            )
        )
        paper = by_key.get(f"icons-n{PAPER_N}")
        if paper:
            pm = paper["metrics"]
            random_l = abs(paper["L_ratio"] - 1.0) < 1e-9
            if random_l and paper["C_ratio"] > 1.0:
                reading = (
                    "With the standard definitions used here `L` is indeed exactly that of a "
                    "random graph, but `C` is not small: the surviving intralayer cliques keep "
                    "it above `C_rand`, so `sigma` > 1 comes from `C` alone."
                )
            else:
                reading = (
                    f"Here `L/L_rand = {paper['L_ratio']:.4f}` and `C/C_rand = "
                    f"{paper['C_ratio']:.2f}`."
                )
            lines.append(
                f"- The paper's network C (n = {PAPER_N:,}, p = {paper['p']:.2%}): `L = "
                f"{pm['L']:.4f}` ({paper['L_ratio']:.4f} x `L_rand`, diameter {pm['diameter']})"
                f", `C = {pm['C']:.3f}` ({paper['C_ratio']:.2f} x `C_rand`), `sigma = "
                f"{pm['sigma']:.2f}`. ICONS section 6.2 says this network has small `L` and `C` "
                f'and is "therefore not small-world". {reading} The ICONS appendix that would '
                "say how the paper computed its metrics is missing from its text (it cites "
                "'Appendix ??'), so the "
                "difference cannot be traced."
            )
    rewired = next((r for r in records if r["family"] == "rewired"), None)
    if rewired:
        rm = rewired["metrics"]
        lines.append(
            f"- Rewired p = {rewired['p']:g} (journal version; no intralayer edges): skip "
            "edges close some triangles (adjacent-layer edges alone close none), but `C = "
            f"{rm['C']:.4f}` stays at {rewired['C_ratio']:.3f} x `C_rand`; `L = {rm['L']:.3f}` "
            f"({rewired['L_ratio']:.3f} x `L_rand`), `sigma = {rm['sigma']:.3f}`."
        )
    evidence = []
    if layered:
        evidence.append(
            "networks A and B of the paper share the layered topology (same `L` and `C`, "
            f"`sigma = {layered['metrics']['sigma']:.2f}`) yet train very differently"
        )
    if rewired:
        evidence.append(
            "the rewired network, the journal version's remedy for the vanishing gradient, has "
            "`sigma = "
            f"{rewired['metrics']['sigma']:.2f}`"
        )
    if sweep:
        evidence.append(
            "along the ICONS sweep, where training improves steadily with p above about 0.1 % "
            f"(ICONS Figure 5), `sigma` {shape}"
        )
        below = [r for r in sweep if r["p"] <= 1.001e-3]
        if len(below) >= 2:
            evidence.append(
                f"`L/L_rand` already falls from {below[0]['L_ratio']:.3f} (p = "
                f"{below[0]['p']:.2g}) to {below[-1]['L_ratio']:.3f} (p = {below[-1]['p']:.2g}), "
                "where Figure 5 shows little change in training"
            )
        floor = [r for r in sweep if abs(r["L_ratio"] - 1.0) < 1e-9]
        if floor and floor[0]["p"] < 0.07:
            evidence.append(
                f"`L/L_rand` reaches its floor of 1 at p = {floor[0]['p']:.2g}, before the range "
                "(about 7 % and above) where the ICONS networks overtake network B"
            )
    lines.append(
        "- Relation to performance (not measured here; no training was run): the journal "
        'version has "not observed a strong correlation between network performance and '
        "common metrics of small-worldness (characteristic path length, clustering "
        'coefficient, small-world coefficient)" (Gammell, Nam & McCaughan 2021, footnote 1), '
        'and ICONS section 6.2 says performance "did not track closely with any of the '
        'small-world metrics". '
        "Points to read against that: " + "; ".join(evidence) + "."
    )
    return lines


def render_results(scale: str, plan: Plan, records: Sequence[Mapping]) -> str:
    """The text of ``results.md``."""
    total = sum(r["seconds_total"] for r in records)
    slowest = max(records, key=lambda r: r["seconds_build"] + r["seconds_metrics"])
    parts = [
        f"# Small-world metrics of the paper's topologies, scale `{scale}`",
        "",
        f"Network {'-'.join(map(str, plan.sizes))} ({sum(plan.sizes):,} neurons). `L`: "
        "characteristic path length; `C`: clustering coefficient; `_rand`: mean over "
        f"{plan.n_random} `G(n, m)` random graphs; `ln n / ln k`, `k / n`: analytic "
        "approximations of `L_rand`, `C_rand`; time: build + metrics (s).",
        "",
        format_table(records),
        "",
        f"Slowest topology: {slowest['label']}, "
        f"{slowest['seconds_build'] + slowest['seconds_metrics']:.1f} s "
        f"({slowest['seconds_build']:.1f} s building it). Whole run (with cross-checks): "
        f"{total:.0f} s.",
        "",
        f"![small-world metrics against p]({PLOT})",
        "",
        "Mean local clustering by layer:",
        "",
        _layer_table(records, plan.sizes),
        "",
        *claims_section(CLAIMS, records, scale, CLAIMS_NOTE),
        "## Method",
        "",
        *_method_lines(plan, records),
        "",
        "## Interpretation",
        "",
        *interpretation(records, plan),
        "",
    ]
    return "\n".join(parts)
