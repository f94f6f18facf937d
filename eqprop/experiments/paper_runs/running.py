"""Running the declared runs, each in ``out/<name>``: skipped when complete, resumed exactly,
or started; here or as tasks on Ray; every input checked before anything is written."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from eqprop import config as cfg
from eqprop.errors import ConfigError, DivergenceError
from eqprop.experiments.departures import Departures
from eqprop.experiments.paper_runs.run_dirs import (
    DIVERGED,
    RunResult,
    _check_compatible,
    check_planned,
)
from eqprop.experiments.paper_runs.status import run_status
from eqprop.runs import (
    CONFIG,
    RunOptions,
    atomic_write_bytes,
    read_config,
    read_metrics,
    start_run,
    train_run,
)
from eqprop.sweeps.placement import Placement, run_tasks
from eqprop.sweeps.tasks import RAY_DIR, Task

ONLY_ENV = "EQPROP_ONLY"


def only_names() -> set[str] | None:
    """Run names selected by ``EQPROP_ONLY`` (None: all)."""
    raw = os.environ.get(ONLY_ENV, "").strip()
    return {name.strip() for name in raw.split(",") if name.strip()} or None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
