"""Shared machinery of the ICONS-paper experiments (``fig3``, ``fig4``, ``fig5``).

- **Declaring runs**: every run is a ``(name, RunConfig)`` pair derived from a bundled preset
  (:func:`paper_config`, one source of truth for the paper's numbers) by :func:`derive`; a
  :class:`Reduction` turns the paper protocol into a cheaper scale (``smoke``: the bundled
  8x8 digits and small layers, no download; ``quick``: MNIST with ``limit`` and fewer free
  steps). The ``full`` scale applies no reduction.
- **Running**: :func:`execute` runs the declared runs in order, each in ``out/<name>``, with
  the run-directory machinery of :mod:`eqprop.runs`: a directory whose metrics already hold
  every epoch is skipped, one with a saved config (and checkpoint) is resumed exactly by
  :func:`~eqprop.runs.train_run`, and a missing one is started. A directory whose saved
  config differs from the declared one in anything but operational fields (``description``,
  ``device``, ``checkpoint_every``, ``layout``; ``epochs`` is extended) is refused with a
  one-line error, so a run made at another scale is never continued by mistake. A run that
  diverges leaves a ``DIVERGED`` file (its message) and is not retried; delete the file to
  retry.
- **Collecting**: :class:`RunResult` (config, per-epoch metrics, per-batch rates) and the rate
  statistics of Figures 4 and 5 (:func:`summarize_rates`, :func:`spread`, :func:`ratios`).

Environment variables (read by :func:`execute`):

- ``EQPROP_ONLY``: comma-separated run names (e.g. ``C`` or ``C,A``); only those are trained,
  the others are reported from whatever their directories hold. For long ``full`` runs.

Where runs compute is ``device`` (``eqprop reproduce --device``): new runs start there, and
resumed ones move there (with the note of :func:`eqprop.runs.train_run`); without it a new
run computes on its preset's device and a resumed one where it ran before.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from eqprop import config as cfg
from eqprop.errors import ConfigError, DivergenceError
from eqprop.experiments.departures import Departures
from eqprop.metrics import held_out_error, log_spread
from eqprop.runs import (
    CONFIG,
    RunOptions,
    atomic_write_bytes,
    read_config,
    read_layer_rates,
    read_metrics,
    start_run,
    train_run,
)
from eqprop.sweeps.placement import Placement, run_tasks
from eqprop.sweeps.tasks import RAY_DIR, Task
from eqprop.topology import p_from_n

SCALES = ("smoke", "quick", "full")
#: network label -> bundled preset (ICONS section 4 and the journal version)
NETWORKS = {
    "A": "icons-layered-perlayer",
    "A-authors": "icons-layered-perlayer-authors",
    "B": "icons-layered",
    "C": "icons-skip",
    "deep-layered": "frontiers-layered-deep",
    "deep-skip": "frontiers-skip-deep",
}
ONLY_ENV = "EQPROP_ONLY"
DIVERGED = "DIVERGED"
#: config fields that do not change what a run computes (may differ on resume)
OPERATIONAL = ("description", "train.device", "train.checkpoint_every", "train.layout")
#: smoke scale: layer sizes on the 8x8 digits (input 64, every hidden layer 32, 10 classes)
SMOKE_INPUT, SMOKE_HIDDEN = 64, 32
#: the maps of each conv block of a ``small`` reduction (8x8 digits)
SMOKE_CHANNELS = 4
#: the fast free phase of the studies' quick scales (a departure they state):
#: FISTA to a fixed-point residual below 1e-3, at most 1,000 steps
FAST_FREE = {"free.solver": "fista", "free.tol": 1e-3, "free.steps": 1000}
FAST_FREE_NOTE = (
    "Free phase: FISTA to a fixed-point residual below 1e-3 (at most 1,000 steps) instead of "
    "the paper's 500 fixed steps."
)
#: largest PNG written (bytes); a larger one is re-rendered at a lower resolution
MAX_PNG_BYTES = 300_000


# -- declaring runs ---------------------------------------------------------------------------
def paper_config(network: str) -> cfg.RunConfig:
    """The validated config of a paper network (a key of :data:`NETWORKS`), unchanged."""
    return cfg.from_dict(cfg.preset(NETWORKS[network]))


@dataclass(frozen=True)
class Reduction:
    """How a cheaper scale departs from the paper protocol; every other field stays the
    preset's.

    Attributes:
        limit: keep the first ``limit`` examples of each split (0: all).
        free_divisor: free-phase steps are the preset's divided by this.
        epochs: epochs of every run (None: as declared).
        small: train on the bundled 8x8 digits with hidden layers of :data:`SMOKE_HIDDEN`
            neurons (same depth); an ICONS ``n`` is converted to the ``p`` it has in the
            paper-sized network, so the small network gets the same fraction of skips.
        max_free: cap on free-phase steps (0: none).
    """

    limit: int = 0
    free_divisor: int = 1
    epochs: int | None = None
    small: bool = False
    max_free: int = 0

    def apply(self, config: cfg.RunConfig) -> cfg.RunConfig:
        """The reduced config."""
        changes: dict[str, Any] = {"data.limit": self.limit or None}
        n_free = max(1, config.free.steps // self.free_divisor)
        changes["free.steps"] = min(n_free, self.max_free) if self.max_free else n_free
        if self.epochs is not None:
            changes["train.epochs"] = self.epochs
        if self.small and config.topology.family == "conv":
            changes.update(_smoke_conv(config.topology))
        elif self.small:
            top = config.topology
            hidden = [SMOKE_HIDDEN] * (len(top.sizes) - 2)
            changes["data.dataset"] = "digits"
            changes["topology.sizes"] = [SMOKE_INPUT, *hidden, top.sizes[-1]]
            if top.family.startswith("icons") and top.n is not None:
                changes["topology.p"] = p_from_n(top.n, top.sizes, top.p_formula)
                changes["topology.n"] = None
        return config.override(changes)

    def describe(self) -> str:
        """One Markdown sentence: what this scale changes."""
        parts = []
        if self.small:
            parts.append(
                f"the bundled 8x8 `digits` data, each network shrunk to fit it (fully "
                f"connected: hidden layers of {SMOKE_HIDDEN} neurons, same depth, an ICONS `n` "
                f"converted to its equivalent `p`; conv: blocks of {SMOKE_CHANNELS} maps, 3x3 "
                "kernels, padding 1 and 2x2 pooling)"
            )
        if self.limit:
            parts.append(f"only the first {self.limit:,} examples of each split")
        if self.free_divisor > 1:
            parts.append(f"free-phase steps divided by {self.free_divisor}")
        if self.max_free:
            parts.append(f"at most {self.max_free} free-phase steps")
        if self.epochs is not None:
            parts.append(f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} per run")
        if not parts:
            return "The paper protocol: the presets unchanged."
        return "Departs from the paper protocol (presets) only in: " + "; ".join(parts) + "."


def _smoke_conv(top: cfg.TopologySection) -> dict[str, Any]:
    """The changes that fit a conv network's blocks to the 8x8 digits (at most three blocks:
    8x8 maps halve with each pooling)."""
    blocks = len(top.channels or ())
    if blocks > 3:
        raise ConfigError(
            f"a smoke-scale conv network has at most 3 blocks on 8x8 digits; got {blocks}"
        )
    return {
        "data.dataset": "digits",
        "topology.input_shape": [1, 8, 8],
        "topology.channels": [SMOKE_CHANNELS] * blocks,
        "topology.kernels": [3] * blocks,
        "topology.paddings": [1] * blocks,
        "topology.pools": [2] * blocks,
    }


def scaled(config: cfg.RunConfig, scale: str, reductions: dict[str, Reduction]) -> cfg.RunConfig:
    """``config`` at ``scale``: reduced by ``reductions[scale]``, or unchanged for ``full``."""
    check_scale(scale)
    return reductions[scale].apply(config) if scale in reductions else config


def check_scale(scale: str) -> None:
    """ConfigError unless ``scale`` is one of :data:`SCALES`."""
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")


# -- running ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What one declared run holds on disk."""

    name: str
    config: cfg.RunConfig
    run_dir: Path
    records: list[dict]
    status: str

    @property
    def epochs_done(self) -> int:
        """The last epoch the run's records hold (0 before its first)."""
        return max((r["epoch"] for r in self.records), default=0)

    @property
    def complete(self) -> bool:
        """Whether the run has trained all its configured epochs."""
        return self.epochs_done >= self.config.train.epochs

    @functools.cached_property
    def rates(self) -> np.ndarray:
        """Per-batch per-pair rates (eq. 2) of the finished epochs, ``(batches, pairs)``
        (read once)."""
        return read_layer_rates(self.run_dir, self.config.train.epochs).astype(np.float64)

    @functools.cached_property
    def rate_summary(self) -> RateSummary | None:
        """:func:`summarize_rates` of :attr:`rates`; for a published run, which keeps no
        per-batch files, the :data:`RATE_SUMMARY` its publication wrote (None: neither)."""
        if self.rates.size:
            return summarize_rates(self.rates)
        path = self.run_dir / RATE_SUMMARY
        return RateSummary.from_json(path.read_text()) if path.is_file() else None


def only_names() -> set[str] | None:
    """Run names selected by ``EQPROP_ONLY`` (None: all)."""
    raw = os.environ.get(ONLY_ENV, "").strip()
    return {name.strip() for name in raw.split(",") if name.strip()} or None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def differing_keys(existing: cfg.RunConfig, declared: cfg.RunConfig) -> list[str]:
    """The fields in which a saved run's config differs from the declared one, beyond the
    operational ones and ``train.epochs`` (which a run may extend)."""
    skip = set(OPERATIONAL) | {"train.epochs"}
    old, new = cfg.flat_items(existing), cfg.flat_items(declared)
    return [
        key
        for key in sorted(set(old) | set(new))
        if key not in skip and old.get(key) != new.get(key)
    ]


def _check_compatible(existing: cfg.RunConfig, declared: cfg.RunConfig, run_dir: Path) -> None:
    keys = differing_keys(existing, declared)
    if keys:
        old, new = cfg.flat_items(existing), cfg.flat_items(declared)
        held = ", ".join(f"{key} = {old.get(key)!r}" for key in keys)
        needed = ", ".join(f"{key} = {new.get(key)!r}" for key in keys)
        raise ConfigError(
            f"{run_dir} holds a run with {held} but this experiment needs {needed} (another "
            f"scale, or other --set/--fast?); choose another --out or delete {run_dir}"
        )


def prepare_run(name: str, config: cfg.RunConfig, run_dir: Path, device: str | None = None) -> str:
    """Make ``run_dir`` ready to train to ``config.train.epochs``: ``"complete"`` (nothing to
    do), ``"diverged"`` (a ``DIVERGED`` file: not retried), ``"resume"`` (its config kept,
    the epochs extended and the ``device``, when given, set where needed) or ``"start"`` (a
    new run directory written, on ``device`` when given)."""
    run_dir = Path(run_dir)
    if (run_dir / DIVERGED).exists():
        return "diverged"
    if (run_dir / CONFIG).exists():
        existing = read_config(run_dir)
        _check_compatible(existing, config, run_dir)
        done = max((r["epoch"] for r in read_metrics(run_dir)), default=0)
        epochs = config.train.epochs
        if done >= epochs:
            return "complete"
        changed = existing.override(
            {"train.epochs": epochs, **({"train.device": device} if device else {})}
        )
        if changed != existing:
            atomic_write_bytes(run_dir / CONFIG, changed.to_toml().encode())
        _log(f"{name}: resuming {run_dir} after epoch {done} of {epochs}")
        return "resume"
    start_run(config.override({"train.device": device}) if device else config, run_dir)
    _log(f"{name}: started {run_dir} ({config.train.epochs} epochs)")
    return "start"


#: what :func:`prepare_run`'s answer becomes once the run has trained
_DONE = {"resume": "resumed", "start": "started"}


def _record_divergence(name: str, run_dir: Path, exc: DivergenceError) -> None:
    atomic_write_bytes(run_dir / DIVERGED, f"{exc}\n".encode())
    _log(f"{name}: diverged ({exc}); recorded in {run_dir / DIVERGED}")


def train_declared(name: str, run_dir: str, data_dir: str | None) -> dict:
    """The task of one declared run on a Ray worker: train ``run_dir`` (prepared by
    :func:`prepare_run`) as a sweep trial (:func:`eqprop.sweeps.trial.train_trial`: its
    events and output beside the run); a divergence is recorded in ``DIVERGED``."""
    from eqprop.sweeps.trial import train_trial

    try:
        return train_trial(run_dir, data_dir)
    except DivergenceError as exc:
        _record_divergence(name, Path(run_dir), exc)
        return {"diverged": str(exc)}


def ensure_run(
    name: str,
    config: cfg.RunConfig,
    run_dir: Path,
    data_dir: Path | None,
    device: str | None = None,
) -> str:
    """Bring one run to ``config.train.epochs`` in this process: skip, resume or start it.
    Returns what was done: ``"complete"`` (nothing to do), ``"resumed"``, ``"started"`` or
    ``"diverged"``."""
    run_dir = Path(run_dir)
    prepared = prepare_run(name, config, run_dir, device)
    if prepared in ("complete", "diverged"):
        return prepared
    options = RunOptions(data_dir=data_dir, quiet=not sys.stderr.isatty())
    try:
        train_run(run_dir, options)
    except DivergenceError as exc:
        _record_divergence(name, run_dir, exc)
        return "diverged"
    return _DONE[prepared]


def _on_ray(
    planned: Sequence[tuple[str, cfg.RunConfig]],
    out: Path,
    data_dir: Path | None,
    placement: Placement,
    only: set[str] | None,
    device: str | None = None,
) -> dict[str, str]:
    """Prepare the selected runs here and train those with work left as Ray tasks; the
    status of every selected run (a failure's one-line reason for those that failed)."""
    statuses, tasks = {}, []
    data = str(Path(data_dir).resolve()) if data_dir is not None else None
    for name, config in planned:
        if only is not None and name not in only:
            continue
        run_dir = (out / name).resolve()
        prepared = prepare_run(name, config, run_dir, device)
        statuses[name] = _DONE.get(prepared, prepared)
        if prepared in ("resume", "start"):
            kwargs = {"name": name, "run_dir": str(run_dir), "data_dir": data}
            tasks.append(Task(name, f"{__name__}:train_declared", kwargs))
    errors = run_tasks(
        tasks,
        placement,
        label=out.name,
        storage=out / RAY_DIR,
        done_before=len(statuses) - len(tasks),
    )
    for task in tasks:
        if (out / task.name / DIVERGED).exists():
            statuses[task.name] = "diverged"
        elif task.name in errors:
            statuses[task.name] = f"failed ({errors[task.name]})"
    return statuses


def execute(
    planned: Sequence[tuple[str, cfg.RunConfig]],
    out: Path,
    data_dir: Path | None,
    placement: Placement | None = None,
    departures: Departures | None = None,
    results_only: bool = False,
    device: str | None = None,
) -> list[RunResult]:
    """Run (skip, resume or start) every declared run, each in ``out/<name>``, and return
    what each holds afterwards: in order in this process, or as tasks on Ray where
    ``placement`` asks for it (:mod:`eqprop.sweeps.placement`; a run that fails there is reported
    and the others go on). ``departures`` (``--set``, ``--fast``) change every declared run.
    Runs not named in ``EQPROP_ONLY`` (when set) are not trained; with ``results_only`` none
    is, and no run directory is touched (what they hold is reported)."""
    if departures:
        planned = departures.apply_all(planned)
    out = Path(out)
    only = only_names()
    names = [name for name, _ in planned]
    if only is not None and not only <= set(names):
        unknown = ", ".join(sorted(only - set(names)))
        raise ConfigError(
            f"{ONLY_ENV} names unknown runs ({unknown}); choose among: {', '.join(names)}"
        )
    check_planned(planned, out)  # every run directory, before the first run trains
    if results_only:
        only = set()
    else:
        check_inputs(planned, out, data_dir, only, device)  # the data, before the first write
        out.mkdir(parents=True, exist_ok=True)
    if results_only:
        statuses = {}
    elif placement is not None and placement.ray:
        statuses = _on_ray(planned, out, data_dir, placement, only, device)
    else:
        statuses = {
            name: ensure_run(name, config, out / name, data_dir, device)
            for name, config in planned
            if only is None or name in only
        }
    results = []
    for name, config in planned:
        run_dir = out / name
        status = statuses.get(
            name, "not trained (results only)" if results_only else f"not selected ({ONLY_ENV})"
        )
        records = read_metrics(run_dir) if (run_dir / CONFIG).exists() else []
        # a directory trained further (e.g. by hand) is shown at the declared epochs
        records = [r for r in records if r["epoch"] <= config.train.epochs]
        result = RunResult(name, config, run_dir, records, status)
        if status.startswith("not "):
            result.status = "complete" if result.complete else status
        results.append(result)
    return results


def check_planned(planned: Sequence[tuple[str, cfg.RunConfig]], out: Path) -> None:
    """A one-line error naming the differing keys if any declared run's directory under
    ``out`` holds a run of another protocol; nothing is written."""
    for name, config in planned:
        run_dir = Path(out) / name
        if (run_dir / CONFIG).exists():
            _check_compatible(read_config(run_dir), config, run_dir)


def check_inputs(
    planned: Sequence[tuple[str, cfg.RunConfig]],
    out: Path,
    data_dir: Path | None,
    only: set[str] | None = None,
    device: str | None = None,
) -> None:
    """A one-line error, before anything is written, if a declared run that would train
    (named in ``only`` when given, neither complete nor diverged) cannot: its device, its
    data files under ``data_dir``, its layer sizes against the data, its memory
    (:func:`eqprop.runs.check_run`; each distinct data, network and device checked once)."""
    from eqprop.runs import check_run

    options = RunOptions(data_dir=data_dir)
    checked = set()
    for name, config in planned:
        run_dir = Path(out) / name
        if only is not None and name not in only:
            continue
        if run_status(name, config, run_dir).state in ("complete", "diverged"):
            continue
        if (run_dir / CONFIG).exists():
            config = read_config(run_dir)  # a resumed run keeps its device unless moved
        if device:
            config = config.override({"train.device": device})
        key = (config.data, config.topology.family, tuple(config.topology.sizes), config.train)
        if key not in checked:
            check_run(config, options)
            checked.add(key)


# -- where an experiment stands (--status) ---------------------------------------------------
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


# -- rates (Figures 4 and 5) ------------------------------------------------------------------
#: "first batches" window of the rate statistics (the start of training)
FIRST_BATCHES = 50


@dataclass(frozen=True)
class RateSummary:
    """Per-pair statistics of a run's per-batch rates.

    ``mean``: mean over the batches whose rate is finite and positive (NaN if none);
    ``first``: the same over the first :data:`FIRST_BATCHES` batches; ``zero_output``:
    fraction of batches whose output-pair rate is zero (or not finite); ``batches``.
    """

    mean: np.ndarray
    first: np.ndarray
    zero_output: float
    batches: int

    def to_json(self) -> str:
        """The summary as JSON (a mean that is NaN is ``null``)."""

        def listed(values: np.ndarray) -> list[float | None]:
            return [float(v) if np.isfinite(v) else None for v in values]

        record = {
            "mean": listed(self.mean),
            "first": listed(self.first),
            "zero_output": self.zero_output,
            "batches": self.batches,
        }
        return json.dumps(record, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RateSummary:
        """The summary :meth:`to_json` wrote."""
        record = json.loads(text)

        def array(values: list[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            array(record["mean"]),
            array(record["first"]),
            float(record["zero_output"]),
            int(record["batches"]),
        )


#: a published run's summary of its per-batch rates (:class:`RateSummary`), written by
#: ``--publish`` for the experiments that judge claims on the rates: the per-batch files stay
#: in the run directory, so the committed stage keeps what its claims read
RATE_SUMMARY = "rate_summary.json"


def _positive_mean(rates: np.ndarray) -> np.ndarray:
    good = np.isfinite(rates) & (rates > 0)
    counts = good.sum(axis=0)
    sums = np.where(good, rates, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def summarize_rates(rates: np.ndarray, first: int = FIRST_BATCHES) -> RateSummary | None:
    """:class:`RateSummary` of ``rates`` ``(batches, pairs)``; None when there are none."""
    rates = np.asarray(rates, dtype=np.float64)
    if rates.size == 0:
        return None
    output = rates[:, -1]
    zero = float(np.mean(~(np.isfinite(output) & (output > 0))))
    return RateSummary(_positive_mean(rates), _positive_mean(rates[:first]), zero, len(rates))


def spread(means: np.ndarray) -> float:
    """Log-spread (std of log10) of per-pair mean rates; NaN if any is not positive."""
    means = np.asarray(means, dtype=np.float64)
    if len(means) == 0 or not np.all(np.isfinite(means) & (means > 0)):
        return math.nan
    return log_spread(means[None, :])


def ratios(means: np.ndarray) -> np.ndarray:
    """``means[k + 1] / means[k]``: how much faster each pair trains than the next deeper one
    (pair 0 is the input pair)."""
    means = np.asarray(means, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return means[1:] / means[:-1]


def plottable(rates: np.ndarray) -> np.ndarray:
    """Rates with non-finite entries set to 0, so the eq. 3 moving average stays finite."""
    return np.nan_to_num(np.asarray(rates, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


# -- output -----------------------------------------------------------------------------------
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


#: the fields shown in the protocol table of every results.md (section.key, column title)
PROTOCOL_FIELDS = (
    ("data.dataset", "dataset"),
    ("data.split", "split"),
    ("data.limit", "limit"),
    ("topology.sizes", "sizes"),
    ("topology.family", "topology"),
    ("topology.n", "n"),
    ("topology.p", "p"),
    ("topology.a", "a"),
    ("update.lr", "lr"),
    ("update.bias_lr", "bias lr"),
    ("free.eps", "eps"),
    ("free.steps", "free steps"),
    ("nudged.steps", "nudged steps"),
    ("nudged.nudging", "nudging"),
    ("train.batch_order", "batch order"),
    ("train.test_persistent", "test particles"),
    ("train.batch_size", "batch"),
    ("train.epochs", "epochs"),
    ("train.seed", "seed"),
)


def _show(key: str, value: Any) -> str:
    if value is None:
        return {"data.limit": "all", "update.bias_lr": "incoming pair"}.get(key, "–")
    if isinstance(value, (tuple, list)):
        if key == "topology.sizes":
            return "-".join(map(str, value))
        return "/".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def protocol_table(results: Sequence[RunResult]) -> str:
    """The settings of every run (the fields of :data:`PROTOCOL_FIELDS`), a row per run."""
    rows = []
    for r in results:
        values = cfg.flat_items(r.config)
        rows.append([r.name, *(_show(k, values.get(k)) for k, _ in PROTOCOL_FIELDS)])
    return table(["run", *(title for _, title in PROTOCOL_FIELDS)], rows)


def runs_section(results: Sequence[RunResult]) -> list[str]:
    """The lines every ``results.md`` shows about its runs: the protocol table, a blank line,
    and one status line per run."""
    return [protocol_table(results), "", *status_lines(results)]


def status_lines(results: Sequence[RunResult]) -> list[str]:
    """Markdown bullets: each run's epochs done, status and training wall time."""
    lines = []
    for r in results:
        wall = r.records[-1].get("wall_time", math.nan) if r.records else math.nan
        status = _STATUS.get(r.status, r.status)
        lines.append(
            f"- `{r.name}` ({r.run_dir.name}/): {r.epochs_done}/{r.config.train.epochs} epochs, "
            f"{status}; training wall time {num(wall, '.0f')} s."
        )
    collapsed = [r.name for r in results if _output_collapsed(r)]
    if collapsed:
        lines.append(
            f"- Output layer collapsed in {', '.join(f'`{n}`' for n in collapsed)}: the output "
            "pair's rate is exactly 0 in most batches (every output clipped at 0 in both "
            "phases, chance-level error): what the `gradient` step does at large rates on these "
            "networks; see the repository's docs/results/output-collapse/README.md."
        )
    return lines


def _output_collapsed(result: RunResult) -> bool:
    """Whether the output pair's rate is exactly 0 in more than half of the run's batches."""
    rates = result.rates
    return rates.size > 0 and float((rates[:, -1] == 0).mean()) > 0.5


def departure_lines(departures: Departures | None, results: Sequence[RunResult]) -> list[str]:
    """The results.md lines naming the command line's departures (``--set``, ``--fast``)
    from the paper's protocol, for the runs as they ran; none without departures."""
    return departures.lines([(r.name, r.config) for r in results]) if departures else []


_STATUS = {
    "started": "started in this call",
    "resumed": "resumed in this call",
    "complete": "already complete (skipped)",
    "diverged": f"diverged (see its {DIVERGED} file)",
}


def header_lines(
    title: str,
    scale: str,
    reduction: Reduction | None,
    departures: Sequence[str] = (),
) -> list[str]:
    """Title and protocol sentence shared by the results files; ``departures``: the lines of
    :func:`departure_lines`, shown first under the protocol heading."""
    text = reduction.describe() if reduction else Reduction().describe()
    if departures:
        text = f"Otherwise: {text[0].lower()}{text[1:]}"
    lines = [f"# {title}, scale `{scale}`", "", "## Protocol", "", *departures, text]
    if scale != "full":
        lines += [
            "",
            "At this scale the numbers are not comparable with the paper's; they check the "
            "pipeline and show trends at a small budget only.",
        ]
    return lines + [""]
