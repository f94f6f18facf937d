"""Figures in the style of the ICONS paper: error curves (Fig. 3), per-layer rates (Fig. 4),
and the helpers the paper experiments share (log-axis ticks, labels built from run configs).

Every figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas (matplotlib's
object-oriented API): nothing here selects a backend or goes through matplotlib's
state-machine interface, so importing or using this module leaves the user's backend (and
any interactive session and its open figures) as it was.
"""

from __future__ import annotations

import errno
import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, Formatter, LogLocator, MaxNLocator, NullFormatter

from eqprop.errors import EqpropError
from eqprop.metrics import (
    SMOOTH,
    TEST_ERROR,
    held_out_error,
    held_out_key,
    held_out_label,
    smooth_rates,
)

STYLE = {
    "figure.dpi": 150,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
}
#: marker size of the per-epoch points (a one-epoch run is a single visible point)
MARKER_SIZE = 3.5
#: lines of at most this many points have their points marked (one epoch is then visible)
MARKED_POINTS = 30
#: colour map of the layer pairs (pair k has the same colour in every panel)
PAIR_CMAP = "viridis"


def new_figure(**kwargs: Any) -> Figure:
    """A :class:`~matplotlib.figure.Figure` with an Agg canvas and constrained layout, made
    outside matplotlib's state machine (the global backend is not touched). Create it inside
    ``matplotlib.rc_context(STYLE)`` to get the package's style."""
    kwargs.setdefault("layout", "constrained")
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, pdf: bool = False) -> list[Path]:
    """Write ``fig`` as PNG (and PDF); return the files written."""
    path = Path(path)
    written = [path] + ([path.with_suffix(".pdf")] if pdf else [])
    target = path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target in written:
            fig.savefig(target, bbox_inches="tight")
    except OSError as exc:
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else exc.strerror
        raise EqpropError(
            f"cannot write {exc.filename or target} ({reason}); choose another --out"
        ) from None
    return written


# -- log axes ---------------------------------------------------------------------------------
def _decimal(mantissa: int, exponent: int) -> float:
    return float(f"{mantissa}e{exponent}")


class LogTicks(LogLocator):
    """Major ticks of a base-10 log axis that are neither crowded nor missing: the decades
    when at least two are in view (every k-th decade when more than seven would be), else
    the 1-2-5 multiples, else 1 to 9 times each decade, else evenly spaced values."""

    MAX_DECADES = 7

    def __init__(self) -> None:
        super().__init__(base=10.0)

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        if vmax < vmin:
            vmin, vmax = vmax, vmin
        if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > 0):
            return np.array([])
        vmin = max(vmin, vmax * 1e-300)
        lo, hi = math.floor(math.log10(vmin)), math.ceil(math.log10(vmax))
        inside = (vmin * (1 - 1e-9), vmax * (1 + 1e-9))
        step = max(1, math.ceil((hi - lo) / self.MAX_DECADES))
        options = (((1,), step), ((1, 2, 5), 1), (tuple(range(1, 10)), 1))
        for subs, every in options:
            exponents = range(lo - lo % every, hi + 1, every)
            ticks = [_decimal(s, e) for e in exponents for s in subs]
            ticks = [t for t in ticks if inside[0] <= t <= inside[1]]
            if len(ticks) >= 2:
                return np.array(ticks)
        ticks = MaxNLocator(nbins=3).tick_values(vmin, vmax)
        return np.array([t for t in ticks if t > 0 and inside[0] <= t <= inside[1]])


class LogLabels(Formatter):
    """Labels of :class:`LogTicks`: plain numbers (``0.5``, ``20``) when every label on the
    axis lies in [0.001, 10000), else powers of ten (``10^-4``, ``2 x 10^-4``) on the whole
    axis, so one axis never mixes the two."""

    def __init__(self) -> None:
        self.plain = True

    def set_locs(self, locs: Sequence[float]) -> None:
        super().set_locs(locs)
        vmin, vmax = self.axis.get_view_interval() if self.axis is not None else (0, np.inf)
        lo, hi = min(vmin, vmax), max(vmin, vmax)
        shown = [v for v in locs if v > 0 and lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
        self.plain = all(1e-3 <= v < 1e4 for v in shown)

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not (math.isfinite(x) and x > 0):
            return ""
        if self.plain:
            return f"{x:.4g}"
        exponent = math.floor(math.log10(x) + 1e-9)
        mantissa = f"{x / 10.0**exponent:.3g}"
        if mantissa == "10":
            mantissa, exponent = "1", exponent + 1
        power = f"10^{{{exponent}}}"
        return f"${power}$" if mantissa == "1" else rf"${mantissa}\times{power}$"


def log_axis(axis: Axis) -> None:
    """Make ``axis`` (``ax.xaxis`` or ``ax.yaxis``) logarithmic with :class:`LogTicks`,
    :class:`LogLabels` and unlabelled minor ticks at 2 to 9 times each decade."""
    getattr(axis.axes, f"set_{axis.axis_name}scale")("log")
    axis.set_major_locator(LogTicks())
    axis.set_major_formatter(LogLabels())
    axis.set_minor_locator(LogLocator(base=10.0, subs=tuple(range(2, 10))))
    axis.set_minor_formatter(NullFormatter())


# -- labels from run configs ------------------------------------------------------------------
def sizes_label(sizes: Sequence[int]) -> str:
    """Layer sizes with runs of equal hidden layers folded: ``(784, 100, 100, 10)`` ->
    ``"784-100x2-10"``."""
    sizes = list(sizes)
    if len(sizes) <= 2:
        return "-".join(map(str, sizes))
    hidden = []
    for size, group in itertools.groupby(sizes[1:-1]):
        count = len(list(group))
        hidden.append(f"{size}x{count}" if count > 1 else str(size))
    return "-".join([str(sizes[0]), *hidden, str(sizes[-1])])


def topology_label(topology: Any, *, with_p: bool = True) -> str:
    """The family of a ``[topology]`` section in words, with its ``n`` or ``p``:
    ``"layered"``, ``"ICONS skip (p = 7.56%)"``, ``"rewired skip (p = 10%)"``."""
    family = topology.family
    name = {
        "layered": "layered",
        "icons": "ICONS skip",
        "icons-add": "ICONS skip (added edges)",
        "rewired": "rewired skip",
        "file": "own topology",
    }.get(family, family)
    if not with_p or family == "layered":
        return name
    if topology.n is not None:
        return f"{name} (n = {topology.n:,})"
    if topology.p is not None:
        return f"{name} (p = {100 * topology.p:.3g}%)"
    return name


def network_label(config: Any, *, with_p: bool = True) -> str:
    """A run's network as it ran, from its :class:`~eqprop.config.RunConfig`: sizes,
    topology family, and the rates when they are not one rate for everything, e.g.
    ``"64-32x3-10 layered, per-layer rates"``."""
    section = config.topology
    if section.family == "conv":  # its layers' shapes: "1x28x28-16x12x12-32x4x4-10 conv"
        shapes = "-".join("x".join(map(str, shape)) for shape in section.layer_shapes())
        text = f"{shapes} conv"
    else:
        text = f"{sizes_label(section.sizes)} {topology_label(section, with_p=with_p)}"
    update = config.update
    if isinstance(update.lr, (tuple, list)):
        text += ", per-layer rates"
    if update.bias_lr is not None:
        text += f", bias rate {update.bias_lr:g}"
    return text


def solver_label(config: Any) -> str:
    """The free phase of a run: ``"fixed, 20 steps"`` or ``"fista, tol 0.001, <= 1000 steps"``."""
    free = config.free
    if free.tol is None:
        return f"{free.solver}, {free.steps} steps"
    return f"{free.solver}, tol {free.tol:g}, <= {free.steps} steps"


_DATASETS = {
    "digits": "8x8 digits",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
}


def data_caption(configs: Iterable[Any]) -> str:
    """The data of a group of runs, e.g. ``"MNIST (icons split), first 10,000 examples of each
    split"``; settings that differ between the runs are listed, ``"icons / standard split"``."""
    configs = list(configs)

    def distinct(values: Iterable[Any]) -> list[Any]:
        return list(dict.fromkeys(values))

    datasets = distinct(
        Path(c.data.path).name if c.data.path else _DATASETS.get(c.data.dataset, c.data.dataset)
        for c in configs
    )
    splits = distinct(c.data.split for c in configs)
    limits = distinct(c.data.limit for c in configs)
    text = f"{' / '.join(datasets)} ({' / '.join(splits)} split)"
    if limits != [None]:
        shown = " / ".join("all" if n is None else f"{n:,}" for n in limits)
        text += f", first {shown} examples of each split"
    return text


def outside_legend(ax: Any, handles: Sequence[Any], **kwargs: Any) -> Any:
    """A legend to the right of the axes ``ax`` (the last panel of a row), top-aligned with
    it, so it never covers data; a constrained layout (or ``bbox_inches="tight"`` when
    saving) makes room for it."""
    kwargs.setdefault("loc", "upper left")
    kwargs.setdefault("bbox_to_anchor", (1.02, 1.0))
    kwargs.setdefault("borderaxespad", 0.0)
    return ax.legend(handles=list(handles), **kwargs)


# -- figures ----------------------------------------------------------------------------------
ERRORS_TITLE = "Training (solid) and held-out (dashed) error per epoch"


def errors_figure(
    runs: Sequence[tuple[str, list[dict]]], *, log: bool = False, title: str | None = None
) -> Figure:
    """Figure-3 style: training error (solid, filled markers) and held-out error
    (:func:`~eqprop.metrics.held_out_error`; dashed, open markers) per epoch, a colour per
    run, a marker per epoch. The legend names the held-out error by its key
    (:func:`~eqprop.metrics.held_out_label`): "validation error (valid_error)", or
    "held-out error (test_error)" for the test set and for older runs.

    ``runs`` pairs a label with the run's per-epoch metrics records; ``title`` defaults to
    :data:`ERRORS_TITLE`. The legend (one entry per run, then the two line styles) is
    outside the axes.
    """
    with rc_context(STYLE):
        # no layout engine: the axes keep their size and the legend outside them widens the
        # saved image (both savers use bbox_inches="tight")
        fig = new_figure(figsize=(5.0, 3.4), layout=None)
        ax = fig.add_subplot()
        handles = []
        for k, (label, records) in enumerate(runs):
            color = f"C{k % 10}"
            epochs = [r["epoch"] for r in records]
            style = {"color": color, "lw": 1.4, "marker": "o", "ms": MARKER_SIZE}
            ax.plot(epochs, [100 * r["train_error"] for r in records], **style)
            held = [100 * held_out_error(r) for r in records]
            ax.plot(epochs, held, ls="--", mfc="white", **style)
            handles.append(Line2D([], [], label=label, **style))
        keys = sorted({held_out_key(r) for _, records in runs for r in records}, reverse=True)
        held_label = " / ".join(f"{held_out_label(k)} ({k})" for k in keys or [TEST_ERROR])
        black = {"color": "0.2", "lw": 1.2, "marker": "o", "ms": MARKER_SIZE}
        handles += [
            Line2D([], [], label="training error", **black),
            Line2D([], [], ls="--", mfc="white", label=held_label, **black),
        ]
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log:
            log_axis(ax.yaxis)
        ax.set_title(ERRORS_TITLE if title is None else title)
        if runs:
            outside_legend(ax, handles)
    return fig


def pair_colors(n_pairs: int) -> list[Any]:
    """One colour per layer pair (pair 0 at the input), the same in every panel."""
    cmap = colormaps[PAIR_CMAP]
    return [cmap(k / max(n_pairs - 1, 1)) for k in range(n_pairs)]


def layer_rates_figure(
    runs: Sequence[tuple[str, np.ndarray]], *, smooth: int = SMOOTH, title: str | None = None
) -> Figure:
    """Figure-4 style: per-layer training rates (eq. 2) against batch, smoothed with eq. 3
    over ``2 * smooth + 1`` batches, log y axis, a panel per run, a line per layer pair
    (pair k has one colour in every panel; one legend, outside the panels)."""
    panels = [
        (label, np.arange(1, len(rates) + 1), smooth_rates(rates, smooth) if rates.size else rates)
        for label, rates in runs
    ]
    return _rates_figure(panels, "batch", "RMS correction per batch", title)


def epoch_rates_figure(
    runs: Sequence[tuple[str, Sequence[dict]]], *, title: str | None = None
) -> Figure:
    """Per-layer training rates of long runs: each layer pair's rate (eq. 2) averaged over
    each epoch's batches (the ``layer_rates`` of the run's per-epoch metrics records) against
    epoch, log y axis, a panel per run, a line per layer pair (one colour per pair in every
    panel; one legend, outside the panels). A mean that is not positive and finite (a
    diverged or silent pair) is a gap in its line. ``runs`` pairs a label with the run's
    metrics records (:func:`eqprop.runs.read_metrics`)."""
    panels = []
    for label, records in runs:
        kept = [r for r in records if r.get("layer_rates")]
        means = np.array([r["layer_rates"] for r in kept], dtype=np.float64)
        means[~(np.isfinite(means) & (means > 0))] = np.nan
        panels.append((label, np.array([r["epoch"] for r in kept]), means))
    return _rates_figure(panels, "epoch", "mean RMS correction per batch", title)


def _rates_figure(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    xlabel: str,
    ylabel: str,
    title: str | None,
) -> Figure:
    """A panel per ``(label, x, rates)`` with a line per layer pair (a column of ``rates``,
    ``(len(x), pairs)``) against ``x``, log y axis; points marked where a line has at most
    :data:`MARKED_POINTS` of them."""
    n_pairs = max((rates.shape[1] for _, _, rates in panels if rates.ndim == 2), default=0)
    colors = pair_colors(n_pairs)
    with rc_context(STYLE):
        fig = new_figure(figsize=(2.9 * len(panels) + 1.2, 3.1))
        axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
        for ax, (label, x, rates) in zip(axes, panels, strict=True):
            if rates.size == 0:  # no per-batch rates (no finished epoch), or no records
                ax.set_title(f"{label}\n(no finished epoch)")
                ax.set_xticks([])
                continue
            marker = {"marker": "o", "ms": 2.0} if len(x) <= MARKED_POINTS else {}
            for k in range(rates.shape[1]):
                ax.plot(x, rates[:, k], lw=1.0, color=colors[k], **marker)
            ax.set_xlabel(xlabel)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True, steps=[1, 2, 2.5, 5, 10]))
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 300000 -> 300k: no overlap
            ax.set_title(label)
        for ax in axes:
            log_axis(ax.yaxis)
        axes[0].set_ylabel(ylabel)
        if title:
            fig.suptitle(title)
        if n_pairs:
            handles = [
                Line2D([], [], color=c, lw=1.4, label=f"layers {k}-{k + 1}")
                for k, c in enumerate(colors)
            ]
            outside_legend(axes[-1], handles, title="pair (0 = input)")
    return fig
