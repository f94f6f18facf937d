"""Where an experiment stands (``--status``): each declared run's epochs, errors and time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqprop import config as cfg
from eqprop.experiments.paper_runs.formats import num, pct
from eqprop.experiments.paper_runs.run_dirs import DIVERGED, differing_keys
from eqprop.metrics import held_out_error
from eqprop.runs import (
    CONFIG,
    read_config,
    read_metrics,
)

#: epochs whose wall time gives the seconds per epoch of ``--status`` (the latest ones)
RECENT_EPOCHS = 5


@dataclass(frozen=True)
class RunStatus:
    """Where one declared run stands: ``state`` (``not started``, ``training``, ``stopped``,
    ``complete``, ``diverged``, or ``holds another protocol (keys)``), epochs done against
    planned, its last errors, seconds per epoch (mean of the latest :data:`RECENT_EPOCHS`)
    and the estimated seconds to finish."""

    name: str
    solver: str
    state: str
    done: int
    planned: int
    train_error: float | None = None
    held_out_error: float | None = None
    seconds_per_epoch: float | None = None

    @property
    def seconds_left(self) -> float | None:
        """The estimated seconds of the epochs left (None before a first epoch is timed)."""
        if self.seconds_per_epoch is None:
            return None
        return max(0, self.planned - self.done) * self.seconds_per_epoch


def run_status(name: str, config: cfg.RunConfig, run_dir: Path) -> RunStatus:
    """The :class:`RunStatus` of one declared run from its directory (read only)."""
    from eqprop.runs import in_use

    planned = config.train.epochs
    base = {"name": name, "solver": config.free.solver, "planned": planned}
    if not (run_dir / CONFIG).exists():
        return RunStatus(state="not started", done=0, **base)
    keys = differing_keys(read_config(run_dir), config)
    records = [r for r in read_metrics(run_dir) if r["epoch"] <= planned]
    done = max((r["epoch"] for r in records), default=0)
    if keys:
        state = f"holds another protocol ({', '.join(keys)})"
    elif (run_dir / DIVERGED).exists():
        state = "diverged"
    elif done >= planned:
        state = "complete"
    else:
        state = "training" if in_use(run_dir) else "stopped"
    if not records:
        return RunStatus(state=state, done=done, **base)
    last = records[-1]
    walls = [0.0] + [r.get("wall_time", math.nan) for r in records]
    recent = np.diff(walls)[-RECENT_EPOCHS:]
    per_epoch = float(np.mean(recent)) if np.all(np.isfinite(recent)) else None
    return RunStatus(
        state=state,
        done=done,
        train_error=last["train_error"],
        held_out_error=held_out_error(last),
        seconds_per_epoch=per_epoch,
        **base,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def status_text(planned: Sequence[tuple[str, cfg.RunConfig]], out: Path) -> str:
    """A table of where every declared run under ``out`` stands (:func:`run_status`), and
    the time left if the runs are trained one after the other."""
    rows = [run_status(name, config, Path(out) / name) for name, config in planned]
    header = ("run", "solver", "epochs", "train err", "held-out err", "s/epoch", "left", "state")
    cells = [
        (
            r.name,
            r.solver,
            f"{r.done}/{r.planned}",
            pct(r.train_error),
            pct(r.held_out_error),
            num(r.seconds_per_epoch, ".0f"),
            _duration(r.seconds_left),
            r.state,
        )
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *cells]
    ]
    left = [r.seconds_left for r in rows if r.state not in ("complete", "diverged")]
    known = [s for s in left if s is not None]
    summary = f"{sum(r.state == 'complete' for r in rows)} of {len(rows)} runs complete"
    if known:
        summary += f"; about {_duration(sum(known))} of training left, one run after another"
    if len(known) < len(left):
        summary += (
            f" (time left unknown for {len(left) - len(known)} run(s) until their first epoch ends)"
        )
    return "\n".join([*lines, summary])
