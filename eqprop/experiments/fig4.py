"""Figure 4 of the ICONS paper: per-layer training rates (eq. 2, smoothed with eq. 3, n = 5)
of networks A, B, C, and of the journal version's deeper 784-100x5-10 networks (layered and
rewired skip).

For each network the per-batch rates of every adjacent layer pair are summarised as:

- the mean rate of each pair over the batches where it is finite and positive (some batches
  have an output-pair rate of exactly 0: with the authors' step at ``beta = -1`` outputs at 0
  stay at 0, ``clip(2 * 0 - d) = 0``, so a batch whose free outputs are all 0 gives the output
  pair no correction; with the ``gradient`` step, a dead output layer. They are left out of
  the mean and their fraction is reported), and the same over the first
  :data:`~eqprop.experiments.paper_runs.FIRST_BATCHES` (50) batches only;
- the ratio between consecutive pairs' means (pair k+1 over pair k, pair 0 at the input);
- the log-spread (std of log10 of the means) over all pairs and over the deeper pairs (all
  but the output pair).

``results.md`` prints three checks as PASS/FAIL lines: (1) in B each deeper pair trains
slower than the next shallower one by a factor >= 2; (2) A's log-spread is at most half of
B's; (3) C's deeper pairs have a smaller log-spread than B's deeper pairs.

Scales:

- ``smoke``: bundled 8x8 digits, hidden layers of 32, first 300 examples, at most 20 free
  steps, 2 epochs (seconds; no download).
- ``quick``: MNIST, first 5,000 examples of each split, free steps / 5 (100 for A, B, C; 200
  for the deep networks), 2 epochs (500 batches per network); about 15 minutes on 2 idle CPU
  cores (per epoch: A, B about 80 s each, C 180 s, deep layered 10 s, deep skip 50 s, of
  which evaluating the 5,000 held-out examples is about half).
- ``full``: the presets unchanged (A, B, C: 250 epochs, icons split; deep networks: 100
  epochs, standard split). A, B, C are the same runs as ``fig3 --scale full``: symlink
  ``out/A``, ``out/B``, ``out/C`` to fig3's run directories to reuse them.

Run directories: ``out/<network>``; rerunning resumes. Outputs: ``layer_rates.png`` (a
panel per network), ``rate_profile.png`` (mean rate per pair) and ``results.md``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.departures import Departures
from eqprop.plots import (
    STYLE,
    data_caption,
    layer_rates_figure,
    log_axis,
    network_label,
    new_figure,
    outside_legend,
)
from eqprop.sweeps.tasks import Placement

SCALES = pr.SCALES
ORDER = ("A", "B", "C", "deep-layered", "deep-skip")
REDUCTIONS = {
    "smoke": pr.Reduction(limit=300, max_free=20, epochs=2, small=True),
    "quick": pr.Reduction(limit=5_000, free_divisor=5, epochs=2),
}
#: eq. 3 half-window of the plots
SMOOTH = 5
#: factor of check (1)
MIN_RATIO = 2.0
PAPER = (
    "In B the rate falls by about 4x per layer away from the output (deepest pair about 1% of "
    "the shallowest); A is uniform; C makes the three deeper pairs uniform, the output pair "
    "still faster. The journal version adds deeper 784-100x5-10 networks (layered and skip)."
)


def planned(scale: str) -> list[tuple[str, RunConfig]]:
    """The declared runs of ``scale``."""
    return [(name, pr.scaled(pr.paper_config(name), scale, REDUCTIONS)) for name in ORDER]


def run(
    scale: str,
    out: Path,
    data_dir: Path | None,
    placement: Placement | None = None,
    departures: Departures | None = None,
    results_only: bool = False,
) -> Path:
    """Run (or resume) the five networks at ``scale`` into ``out``; return ``results.md``."""
    pr.check_scale(scale)
    out = Path(out)
    results = pr.execute(planned(scale), out, data_dir, placement, departures, results_only)
    rates = {r.name: r.rates for r in results}
    summaries = {name: pr.summarize_rates(x) for name, x in rates.items()}
    panels = [(panel_title(r.name, r.config), pr.plottable(r.rates)) for r in results]
    title = (
        f"Per-layer training rates (eq. 3 smoothing, n = {SMOOTH}), "
        f"{data_caption(r.config for r in results)}"
    )
    pr.save_png(layer_rates_figure(panels, smooth=SMOOTH, title=title), out / "layer_rates.png")
    labels = {r.name: label(r.name, r.config) for r in results}
    pr.save_png(profile_figure(summaries, labels), out / "rate_profile.png")
    path = out / "results.md"
    pr.atomic_write_bytes(path, render(scale, results, summaries, departures=departures).encode())
    return path


def label(name: str, config: RunConfig) -> str:
    """A network's label, from the config it ran with: ``"B: 64-32x3-10 layered"``."""
    return f"{name}: {network_label(config)}"


def panel_title(name: str, config: RunConfig) -> str:
    """:func:`label` on two lines (name and sizes, then the topology), for a narrow panel."""
    sizes, topology = network_label(config).split(" ", 1)
    return f"{name}: {sizes}\n{topology}"


def profile_figure(summaries: dict[str, pr.RateSummary | None], labels: dict[str, str]) -> Figure:
    """Mean rate per layer pair (log scale), a line per network (labelled by ``labels``);
    left: all batches with a positive rate, right: the first batches. The legend is outside
    the panels."""
    with rc_context(STYLE):
        fig = new_figure(figsize=(9.4, 3.2))
        axes = fig.subplots(1, 2, sharey=True)
        handles = []
        for ax, field, title in (
            (axes[0], "mean", "all batches (finite positive rates)"),
            (axes[1], "first", f"first {pr.FIRST_BATCHES} batches"),
        ):
            for k, (name, s) in enumerate(summaries.items()):
                style = {"color": f"C{k % 10}", "marker": "o", "ms": 4}
                if ax is axes[0]:
                    handles.append(Line2D([], [], label=labels.get(name, name), **style))
                if s is None:
                    continue
                values = getattr(s, field)
                ax.plot(np.arange(len(values)), values, **style)
            ax.set_xlabel("layer pair (0 = input side)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(title)
        for ax in axes:
            log_axis(ax.yaxis)
        axes[0].set_ylabel("mean RMS correction per batch")
        outside_legend(axes[-1], handles)
    return fig


def _stats(s: pr.RateSummary | None, field: str) -> tuple[np.ndarray, float, float]:
    """(per-pair means, log-spread of all pairs, log-spread of the deeper pairs)."""
    if s is None:
        return np.zeros(0), math.nan, math.nan
    means = getattr(s, field)
    return means, pr.spread(means), pr.spread(means[:-1])


def _joined(values: np.ndarray) -> str:
    return " / ".join(pr.num(v, ".2e") for v in values) if len(values) else "–"


def rate_table(summaries: dict[str, pr.RateSummary | None], field: str) -> str:
    """Markdown table of the per-pair means, consecutive ratios and log-spreads."""
    rows = []
    for name, s in summaries.items():
        means, all_pairs, deeper = _stats(s, field)
        rows.append(
            [
                name,
                str(min(s.batches, pr.FIRST_BATCHES) if field == "first" else s.batches)
                if s
                else "0",
                _joined(means),
                " / ".join(pr.num(v, ".2f") for v in pr.ratios(means)) or "–",
                pr.num(all_pairs, ".3f"),
                pr.num(deeper, ".3f"),
                pr.pct(s.zero_output, 1) if s else "–",
            ]
        )
    header = [
        "network",
        "batches",
        "mean rate per pair (input -> output)",
        "ratio pair k+1 / pair k",
        "log-spread (all pairs)",
        "log-spread (deeper pairs)",
        "batches with zero output-pair rate (whole run)",
    ]
    return pr.table(header, rows)


def _verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else "PASS" if ok else "FAIL"


def checks(summaries: dict[str, pr.RateSummary | None], field: str) -> list[tuple[str, str]]:
    """The three checks on the ``field`` means: (verdict, explanation) each."""
    a, b, c = (_stats(summaries.get(n), field) for n in ("A", "B", "C"))
    out = []
    r = pr.ratios(b[0])
    ok = None if not len(r) or not np.all(np.isfinite(r)) else bool(np.all(r >= MIN_RATIO))
    out.append(
        (
            _verdict(ok),
            f"(1) in B each deeper pair trains slower than the next shallower one by >= "
            f"{MIN_RATIO:g}x: ratios {' / '.join(pr.num(v, '.2f') for v in r) or '–'}",
        )
    )
    ok = None if math.isnan(a[1]) or math.isnan(b[1]) else a[1] <= 0.5 * b[1]
    out.append(
        (
            _verdict(ok),
            f"(2) A's log-spread <= half of B's: A {pr.num(a[1], '.3f')}, B {pr.num(b[1], '.3f')}",
        )
    )
    ok = None if math.isnan(c[2]) or math.isnan(b[2]) else c[2] < b[2]
    out.append(
        (
            _verdict(ok),
            f"(3) C's deeper pairs have a smaller log-spread than B's deeper pairs: "
            f"C {pr.num(c[2], '.3f')}, B {pr.num(b[2], '.3f')}",
        )
    )
    return out


def check_lines(summaries: dict[str, pr.RateSummary | None]) -> list[str]:
    """One line per check, starting with PASS, FAIL or SKIP (no data), on the means over all
    batches; the verdict on the first batches follows in brackets."""
    lines = []
    first = checks(summaries, "first")
    for (verdict, text), (early, early_text) in zip(checks(summaries, "mean"), first, strict=True):
        detail = early_text.split(": ", 1)[1]
        lines.append(f"{verdict} {text} [first {pr.FIRST_BATCHES} batches: {early}, {detail}]")
    return lines


def render(
    scale: str,
    results: list[pr.RunResult],
    summaries: dict[str, pr.RateSummary | None],
    departures: Departures | None = None,
) -> str:
    """The text of ``results.md``."""
    b = summaries.get("B")
    extra = []
    if b is not None and len(b.mean) > 1:
        extra.append(
            f"- B: deepest pair / output pair = {pr.num(b.mean[0] / b.mean[-1], '.3g')} "
            f"(paper: about 1%, i.e. 0.01); mean factor per layer "
            f"{pr.num((b.mean[-1] / b.mean[0]) ** (1 / (len(b.mean) - 1)), '.2f')} "
            "(paper: about 4)."
        )
    parts = [
        *pr.header_lines(
            "Figure 4 (ICONS): per-layer training rates",
            scale,
            REDUCTIONS.get(scale),
            pr.departure_lines(departures, results),
        ),
        "Rate of a layer pair in a batch (eq. 2): RMS of the corrections applied to the pair's "
        "adjacent-layer edges (skip and intralayer edges ignored). Means are over the batches "
        f"where the rate is finite and positive; 'first {pr.FIRST_BATCHES} batches' uses only "
        "the start of training. A zero output-pair rate (last column) is a batch whose free "
        "outputs are all 0 nudged at beta = -1: the authors' step leaves them at "
        "clip(2 * 0 - d) = 0, so the output pair gets no correction (with the `gradient` step "
        "it would be a dead output layer). Log-spread: population std of log10 of the pairs' "
        "means; deeper pairs = all pairs but the output pair.",
        "",
        *pr.runs_section(results),
        "",
        "## Checks",
        "",
        "\n\n".join(check_lines(summaries)),
        "",
        f"Paper: {PAPER}",
        "",
        *extra,
        "",
        "## Rates over all batches (finite positive)",
        "",
        rate_table(summaries, "mean"),
        "",
        f"## Rates over the first {pr.FIRST_BATCHES} batches",
        "",
        rate_table(summaries, "first"),
        "",
        "![Per-layer rates, a panel per network](layer_rates.png)",
        "",
        "![Mean rate per layer pair](rate_profile.png)",
        "",
        "Reading the plots: `layer_rates.png` has a panel per network (titled with the "
        "network's sizes and topology as it ran) and a line per adjacent layer pair (0 = input "
        "side; pair k has the same colour in every panel, so the output pair's colour depends "
        f"on the depth; eq. 3 moving average over {2 * SMOOTH + 1} batches, log axis; a line "
        "that drops out of the panel has reached 0). Lines far apart mean layers "
        "that train at very different speeds; close lines mean uniform training. "
        "`rate_profile.png` shows each network's mean rate per pair: a flat profile is uniform, "
        "a steep one uneven.",
        "",
    ]
    return "\n".join(parts)
