"""What the experiments' pages write: PNG figures under a size limit, number formats and
Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

#: largest PNG written (bytes); a larger one is re-rendered at a lower resolution
MAX_PNG_BYTES = 300_000


def save_png(fig: Figure, path: Path, max_bytes: int = MAX_PNG_BYTES) -> Path:
    """Write ``fig`` as PNG no larger than ``max_bytes`` (lowering the resolution if needed).

    ``fig`` is a :class:`~matplotlib.figure.Figure` of the object-oriented API (as made by
    :func:`eqprop.plots.new_figure`): it is not registered with matplotlib's state machine,
    so there is nothing to close."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for dpi in (150, 120, 96, 72, 56):
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        if path.stat().st_size <= max_bytes:
            break
    return path


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value, NaN for none)."""
    arr = np.asarray(values, dtype=np.float64)
    if not len(arr):
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage, or an en dash when missing."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{100 * value:.{digits}f}%"


def num(value: float | None, fmt: str = ".3g") -> str:
    """A number, or an en dash when missing or not finite."""
    if value is None or not math.isfinite(value):
        return "–"
    return format(value, fmt)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
