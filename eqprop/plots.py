"""Figures in the style of the ICONS paper: error curves (Fig. 3), per-layer rates (Fig. 4)."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator  # noqa: E402

from eqprop.errors import EqpropError  # noqa: E402
from eqprop.metrics import smooth_rates  # noqa: E402

STYLE = {
    "figure.dpi": 150,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}


def save_figure(fig: plt.Figure, path: str | Path, pdf: bool = False) -> list[Path]:
    """Write ``fig`` as PNG (and PDF) and close it; return the files written."""
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
    finally:
        plt.close(fig)
    return written


def errors_figure(runs: Sequence[tuple[str, list[dict]]], *, log: bool = False) -> plt.Figure:
    """Figure-3 style: training (solid) and test (dashed) error per epoch, a colour per run.

    ``runs`` pairs a label with the run's per-epoch metrics records.
    """
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        for k, (label, records) in enumerate(runs):
            color = f"C{k}"
            epochs = [r["epoch"] for r in records]
            ax.plot(
                epochs,
                [100 * r["train_error"] for r in records],
                color=color,
                lw=1.4,
                label=f"{label} (train)",
            )
            ax.plot(
                epochs,
                [100 * r["test_error"] for r in records],
                color=color,
                lw=1.4,
                ls="--",
                label=f"{label} (test)",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.legend(fontsize=7)
        ax.set_title("Training (solid) and test (dashed) error")
    return fig


def layer_rates_figure(runs: Sequence[tuple[str, np.ndarray]], *, smooth: int = 5) -> plt.Figure:
    """Figure-4 style: per-layer training rates (eq. 2) against batch, smoothed with eq. 3
    over ``2 * smooth + 1`` batches, log y axis, a panel per run, a line per layer pair."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(runs), figsize=(3.2 * len(runs) + 0.6, 3.0), squeeze=False, sharey=True
        )
        for ax, (label, rates) in zip(axes[0], runs, strict=True):
            if rates.size == 0:
                ax.set_title(f"{label}\n(no finished epoch)")
                continue
            smoothed = smooth_rates(rates, smooth)
            batches = np.arange(1, len(rates) + 1)
            cmap = plt.get_cmap("viridis")
            n_pairs = rates.shape[1]
            for k in range(n_pairs):
                ax.plot(
                    batches,
                    smoothed[:, k],
                    lw=1.0,
                    color=cmap(k / max(n_pairs - 1, 1)),
                    label=f"layers {k}-{k + 1}",
                )
            ax.set_yscale("log")
            ax.set_xlabel("batch")
            ax.set_title(label)
        axes[0][0].set_ylabel("RMS correction per batch")
        axes[0][-1].legend(fontsize=7, title="pair (0 = input)", title_fontsize=7)
    return fig
