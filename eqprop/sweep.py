"""Sweeps: a grid of config overrides, each point trained as an ordinary run directory, on
Ray Tune (a local Ray instance by default, or a cluster's with ``--address``).

A sweep file (TOML)::

    description = "learning rate against width, 2 seeds"
    preset = "digits"                # the base: a bundled preset (default digits) ...
    # config = "base.toml"           # ... and/or a config file (relative to this file)
    # out = "lr-width"               # sweep directory (relative to this file;
                                     # default: sweeps/<file name> in the current directory)

    [set]                            # overrides of every trial (any config key)
    "train.epochs" = 5

    [grid]                           # every combination is one trial
    "update.lr" = [0.05, 0.1]
    "topology.sizes" = [[64, 64, 10], [64, 128, 10]]
    "train.seed" = [0, 1]

    [options]
    trials_at_once = 2               # 0 (default): as many as the CPUs and GPUs allow
    cpus_per_trial = 1               # torch threads of each trial
    gpus_per_trial = 0               # with train.device = "cuda" in [set]
    retries = 2                      # times a trial whose worker died is retried

    [results]
    seeds = ["train.seed"]           # default: the swept keys named *seed
    plot_metric = "final_held_out_error" # see eqprop.sweeps.results.AGGREGATED
    plot_key = "update.lr"           # default: the first swept key that is not a seed
    log_x = false

Keys are the ``--set`` keys of ``eqprop train`` (``section.key``, or a bare key naming one
field); values are TOML values, so a grid over a list-valued field is a list of lists. The
whole sweep is validated (every trial's config) before any trial starts: a problem is one
line, exit status 2.

The sweep directory holds ``sweep.toml`` (the sweep as run), ``trials/<name>/`` (one run
directory per trial, named after its grid values; see :mod:`eqprop.sweeps.trial`),
``results.csv`` (one row per trial), ``aggregate.csv`` (mean and spread over seeds),
``<metric>_vs_<key>.png``, and ``ray/`` (Tune's own files). Running the same command again
continues: finished trials are kept, unfinished ones resume from their checkpoints.

Python::

    from eqprop.sweep import load_sweep, run_sweep
    report = run_sweep(load_sweep("lr-width.toml"))   # or run_sweep("lr-width.toml")
    report.rows                                        # the rows of results.csv
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eqprop import config as cfg
from eqprop.errors import ConfigError, EqpropError
from eqprop.sweeps import results as res
from eqprop.sweeps.tasks import RAY_DIR, Countdown, Task, check_counts
from eqprop.sweeps.trial import DONE, FAILED, NEW, UNFINISHED, append_event, trial_state

TRIALS = "trials"
SPEC_COPY = "sweep.toml"
TABLE = "results.csv"
AGGREGATE = "aggregate.csv"
LOCK = ".lock"
SPEC_KEYS = ("description", "preset", "config", "out", "set", "grid", "options", "results")
RESULT_KEYS = ("seeds", "plot_metric", "plot_key", "log_x")


@dataclass(frozen=True)
class SweepOptions:
    """How trials run: at most ``trials_at_once`` together (0: as many as the resources
    allow), each with ``cpus_per_trial`` CPUs (and as many torch threads) and
    ``gpus_per_trial`` GPUs; a trial whose worker dies (or raises anything other than an
    :class:`~eqprop.errors.EqpropError`) is retried ``retries`` times."""

    trials_at_once: int = 0
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    retries: int = 2

    def __post_init__(self) -> None:
        check_counts(self, lambda name: f"options.{name}")
        gpus = self.gpus_per_trial
        if not isinstance(gpus, (int, float)) or isinstance(gpus, bool) or not gpus >= 0:
            raise ConfigError(f"options.gpus_per_trial must be a number >= 0, got {gpus!r}")


@dataclass(frozen=True)
class Trial:
    """One point of the grid: its directory name, its grid values and its full config."""

    name: str
    overrides: dict[str, Any]
    config: cfg.RunConfig


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: a base (preset and/or config file) with ``fixed`` overrides, a
    ``grid`` of values per key, the ``trials`` it makes, its directory ``out``, the
    options, and what the results aggregate (``seeds``) and plot."""

    source: str
    preset: str | None
    config_file: Path | None
    fixed: dict[str, Any]
    grid: dict[str, list]
    out: Path
    options: SweepOptions = field(default_factory=SweepOptions)
    seeds: tuple[str, ...] = ()
    plot_metric: str = "final_held_out_error"
    plot_key: str | None = None
    log_x: bool = False
    description: str = ""
    trials: tuple[Trial, ...] = ()

    @property
    def keys(self) -> list[str]:
        """The swept keys, in grid order."""
        return list(self.grid)

    @property
    def group_keys(self) -> list[str]:
        """The swept keys that are not seeds (what the aggregate groups by)."""
        return [k for k in self.grid if k not in self.seeds]

    def run_dir(self, trial: Trial) -> Path:
        """The run directory of ``trial``."""
        return self.out / TRIALS / trial.name

    def to_dict(self) -> dict[str, Any]:
        """The sweep as a sweep file's dict (``sweep.toml`` of the sweep directory)."""
        out: dict[str, Any] = {"description": self.description}
        if self.preset:
            out["preset"] = self.preset
        if self.config_file:
            out["config"] = str(self.config_file)
        out["set"] = dict(self.fixed)
        out["grid"] = {k: list(v) for k, v in self.grid.items()}
        out["options"] = {
            k: getattr(self.options, k)
            for k in ("trials_at_once", "cpus_per_trial", "gpus_per_trial", "retries")
        }
        results: dict[str, Any] = {"seeds": list(self.seeds), "plot_metric": self.plot_metric}
        if self.plot_key:
            results["plot_key"] = self.plot_key
        results["log_x"] = self.log_x
        out["results"] = results
        return out


# -- reading a sweep ------------------------------------------------------------------------
def _flat(table: Any, where: str, source: str) -> dict[str, Any]:
    """A ``[set]`` or ``[grid]`` table with nested tables (``update.lr = ...`` unquoted)
    flattened into dotted keys."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where}] must be a table of keys, got {table!r}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            for sub, inner in _flat(value, where, source).items():
                out[f"{key}.{sub}"] = inner
        else:
            out[key] = value
    return out


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """The name of each swept key in trial names: its last part, unless two share it."""
    last = {k: k.rsplit(".", 1)[-1] for k in keys}
    counts = {v: list(last.values()).count(v) for v in last.values()}
    return {k: last[k] if counts[last[k]] == 1 else k for k in keys}


def _name_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_name_value(v) for v in value)
    return res.format_value(value)


def _digest(point: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(point, sort_keys=True).encode()).hexdigest()[:8]


def trial_names(points: Sequence[dict[str, Any]]) -> list[str]:
    """Directory names of the grid points: ``key=value`` joined by commas (lists joined by
    ``-``; anything but letters, digits and ``.+-`` becomes ``_``), made unique with a short
    hash where two points would share a name, and shortened (with the hash) past 120
    characters."""
    if not points:
        return []
    short = _short_keys(list(points[0]))
    names = []
    for point in points:
        parts = [f"{short[k]}={_name_value(v)}" for k, v in point.items()]
        name = re.sub(r"[^A-Za-z0-9.+=,\-]", "_", ",".join(parts))
        if len(name) > 120:
            name = f"{name[:100]}~{_digest(point)}"
        names.append(name)
    for i, name in enumerate(list(names)):
        if names.count(name) > 1 or name.startswith("."):
            names[i] = f"{name}~{_digest(points[i])}"
    return names


def sweep_from_dict(
    values: dict[str, Any],
    *,
    source: str = "sweep",
    base_dir: str | Path = ".",
    out: str | Path | None = None,
    sets: Sequence[str] = (),
    options: dict[str, Any] | None = None,
) -> Sweep:
    """Validate a sweep given as the dict of a sweep file (module docs). ``base_dir`` is
    where relative ``config`` and ``out`` paths start; ``out`` (relative to the current
    directory) replaces the file's; ``sets`` (``--set`` strings) are added to ``[set]``;
    ``options`` replace the file's ``[options]``. Every trial's config is resolved here, so
    any error is raised before anything runs (a one-line :class:`ConfigError` prefixed
    with ``source``)."""
    try:
        return _sweep_from_dict(values, source, Path(base_dir), out, sets, options or {})
    except ConfigError as exc:
        message = str(exc)
        if not message.startswith(f"{source}:"):
            message = f"{source}: {message}"
        raise ConfigError(message) from None


def _sweep_from_dict(values, source, base_dir, out, sets, option_changes) -> Sweep:
    unknown = [k for k in values if k not in SPEC_KEYS]
    if unknown:
        raise ConfigError(
            f"unknown sweep key {unknown[0]!r}; a sweep file has {', '.join(SPEC_KEYS)}"
        )
    description = values.get("description", "")
    preset = values.get("preset")
    config_file = values.get("config")
    named = (("description", description), ("preset", preset), ("out", values.get("out")))
    for name, value in named + (("--out", out),):
        if value is not None and not isinstance(value, (str, Path)):
            raise ConfigError(f"{name} must be a string, got {value!r}")
    if config_file is not None:
        if not isinstance(config_file, str):
            raise ConfigError(f"config must be a path, got {config_file!r}")
        config_file = (base_dir / config_file).resolve()
    if preset is None and config_file is None:
        preset = "digits"
    fixed = _flat(values.get("set", {}), "set", source)
    fixed.update(cfg.parse_overrides(sets))
    grid = _flat(values.get("grid", {}), "grid", source)
    if not grid:
        raise ConfigError(
            "the grid is empty; add a [grid] table with a list of values per key, "
            "e.g. [grid] 'train.seed' = [0, 1]"
        )
    for key, choices in grid.items():
        if not isinstance(choices, list):
            raise ConfigError(
                f"[grid] {key} must be a list of values (a list of lists for a "
                f"list-valued field), got {choices!r}"
            )
        if not choices:
            raise ConfigError(f"[grid] {key} has no values; give at least one")
        if key in fixed:
            raise ConfigError(f"{key} is both set ([set] or --set) and swept ([grid]); keep one")
    raw_options = values.get("options", {})
    if not isinstance(raw_options, dict):
        raise ConfigError(f"[options] must be a table, got {raw_options!r}")
    raw_options = {**raw_options, **{k: v for k, v in option_changes.items() if v is not None}}
    known = [f for f in SweepOptions.__dataclass_fields__]
    for key in raw_options:
        if key not in known:
            raise ConfigError(f"unknown option {key!r}; [options] has {', '.join(known)}")
    options = SweepOptions(**raw_options)

    base = cfg.resolve(preset, config_file, ())
    try:
        base = base.override(fixed) if fixed else base
    except ConfigError as exc:
        raise ConfigError(f"[set] {exc}") from None
    for key in grid:  # an unknown key is named as such, before any trial's values
        try:
            cfg.RunConfig().override({key: None})  # None: the default, so only the key counts
        except ConfigError as exc:
            raise ConfigError(f"[grid] {exc}") from None
    points = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    names = trial_names(points)
    trials = []
    for name, point in zip(names, points, strict=True):
        try:
            config = base.override(point)
        except ConfigError as exc:
            raise ConfigError(f"[grid] trial {name}: {exc}") from None
        trials.append(Trial(name, point, config))
    if options.gpus_per_trial == 0:
        for trial in trials:
            if trial.config.train.device.startswith("cuda"):
                raise ConfigError(
                    f"trial {trial.name} trains on {trial.config.train.device} but "
                    f"options.gpus_per_trial = 0 (Ray gives such a trial no GPU); "
                    f"set gpus_per_trial = 1"
                )

    results = values.get("results", {})
    if not isinstance(results, dict):
        raise ConfigError(f"[results] must be a table, got {results!r}")
    for key in results:
        if key not in RESULT_KEYS:
            raise ConfigError(
                f"unknown results key {key!r}; [results] has {', '.join(RESULT_KEYS)}"
            )
    seeds = results.get("seeds")
    if seeds is None:
        seeds = [k for k in grid if k.rsplit(".", 1)[-1] in ("seed", "topology_seed")]
    if not isinstance(seeds, list) or any(k not in grid for k in seeds):
        raise ConfigError(
            f"results.seeds must list swept keys (of {', '.join(grid)}), got {seeds!r}"
        )
    metric = results.get("plot_metric", "final_held_out_error")
    metric = res.RENAMED.get(metric, metric)  # a sweep file of before the rename
    if metric not in res.AGGREGATED:
        raise ConfigError(
            f"results.plot_metric = {metric!r} is not a sweep metric; choose one of "
            f"{', '.join(res.AGGREGATED)}"
        )
    plot_key = results.get("plot_key")
    group = [k for k in grid if k not in seeds]
    if plot_key is None:
        plot_key = group[0] if group else None
    elif plot_key not in group:
        raise ConfigError(
            f"results.plot_key = {plot_key!r} must be a swept key that is not a seed "
            f"({', '.join(group) or 'none here'})"
        )
    log_x = results.get("log_x", False)
    if not isinstance(log_x, bool):
        raise ConfigError(f"results.log_x must be true or false, got {log_x!r}")

    if out is not None:
        out_dir = Path(out)
    elif values.get("out") is not None:
        out_dir = base_dir / values["out"]
    else:
        out_dir = Path("sweeps") / (Path(source).stem if source != "sweep" else "sweep")
    return Sweep(
        source=source,
        preset=preset,
        config_file=config_file,
        fixed=fixed,
        grid=grid,
        out=out_dir,
        options=options,
        seeds=tuple(seeds),
        plot_metric=metric,
        plot_key=plot_key,
        log_x=log_x,
        description=description,
        trials=tuple(trials),
    )


def load_sweep(
    path: str | Path,
    *,
    out: str | Path | None = None,
    sets: Sequence[str] = (),
    options: dict[str, Any] | None = None,
    plot_metric: str | None = None,
    plot_key: str | None = None,
) -> Sweep:
    """Read and validate the sweep file ``path`` (see :func:`sweep_from_dict`);
    ``plot_metric`` and ``plot_key`` replace the file's ``[results]`` ones."""
    path = Path(path)
    values = cfg.load_file(path, "sweep file")
    if plot_metric is not None or plot_key is not None:
        results = dict(values.get("results", {}) if isinstance(values.get("results"), dict) else {})
        if plot_metric is not None:
            results["plot_metric"] = plot_metric
        if plot_key is not None:
            results["plot_key"] = plot_key
        values = {**values, "results": results}
    return sweep_from_dict(
        values, source=str(path), base_dir=path.parent, out=out, sets=sets, options=options
    )


# -- the sweep directory --------------------------------------------------------------------
@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock``; a one-line error if another sweep command holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise EqpropError(
                f"another 'eqprop sweep' is running on {directory}; wait for it or stop it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _check_existing(sweep: Sweep, trial: Trial, *, extend: bool = True) -> None:
    """A trial directory from an earlier run of the sweep must hold the same config (only
    ``train.epochs`` may have grown: with ``extend`` the saved config is then extended, as
    ``eqprop train --resume --set train.epochs=N`` does)."""
    from eqprop.runs import CONFIG, atomic_write_bytes, read_config, read_metrics

    run_dir = sweep.run_dir(trial)
    if not (run_dir / CONFIG).exists():
        return
    saved = read_config(run_dir)
    old, new = cfg.flat_items(saved), cfg.flat_items(trial.config)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed and changed != ["train.epochs"]:
        key = next(k for k in changed if k != "train.epochs")
        raise EqpropError(
            f"{run_dir} was trained with {key} = {old.get(key)!r}, but the sweep now gives "
            f"{new.get(key)!r}; use another sweep directory (--out) or remove that trial"
        )
    if changed:
        records = read_metrics(run_dir)
        done = records[-1]["epoch"] if records else 0
        if trial.config.train.epochs < done:
            raise EqpropError(
                f"{run_dir} has already trained {done} epochs, more than the sweep's "
                f"train.epochs = {trial.config.train.epochs}; use another sweep directory"
            )
        if extend:
            atomic_write_bytes(run_dir / CONFIG, trial.config.to_toml().encode())


@dataclass
class SweepReport:
    """The results of a sweep: the rows of ``results.csv`` and ``aggregate.csv`` and the
    files written."""

    directory: Path
    rows: list[dict[str, Any]]
    aggregate: list[dict[str, Any]]
    table: Path
    aggregate_table: Path
    plot: Path | None

    def count(self, status: str) -> int:
        """How many trials have ``status`` (``done``, ``failed``, ``unfinished``, ...)."""
        return sum(r["status"] == status for r in self.rows)

    @property
    def unfinished(self) -> int:
        """Trials neither done nor failed."""
        return len(self.rows) - self.count(DONE) - self.count(FAILED)


def _rows(sweep: Sweep) -> list[dict[str, Any]]:
    root = sweep.out
    return [res.trial_row(t.name, t.overrides, sweep.run_dir(t), root) for t in sweep.trials]


def _write(path: Path, text: str) -> None:
    from eqprop.runs import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def write_results(sweep: Sweep) -> SweepReport:
    """Write ``results.csv``, ``aggregate.csv`` and the plot of the sweep from its trial
    directories (any trials that have run so far)."""
    from eqprop.runs import check_output_dir

    check_output_dir(sweep.out, "the sweep directory")
    rows = _rows(sweep)
    sweep.out.mkdir(parents=True, exist_ok=True)
    table = sweep.out / TABLE
    _write(table, res.table_csv(rows, sweep.keys))
    aggregated = res.aggregate(rows, sweep.group_keys, sweep.seeds)
    agg_path = sweep.out / AGGREGATE
    _write(agg_path, res.aggregate_csv(aggregated, sweep.group_keys))
    plot = None
    if sweep.plot_key is not None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{sweep.plot_metric}_vs_{sweep.plot_key}")
        others = [k for k in sweep.group_keys if k != sweep.plot_key]
        plot = res.plot(
            aggregated,
            sweep.plot_metric,
            sweep.plot_key,
            others,
            sweep.out / f"{safe}.png",
            log_x=sweep.log_x,
        )
    return SweepReport(sweep.out, rows, aggregated, table, agg_path, plot)


class _Progress:
    """One line per finished trial: its outcome, how many remain, and an ETA (the time per
    finished trial so far in this run, times the trials left)."""

    def __init__(self, sweep: Sweep, finished: int, echo: Callable[[str], None]) -> None:
        self.sweep, self.echo = sweep, echo
        self.by_name = {t.name: t for t in sweep.trials}
        self.countdown = Countdown(len(sweep.trials), finished)

    def trial_finished(self, name: str) -> None:
        trial = self.by_name[name]
        row = res.trial_row(name, trial.overrides, self.sweep.run_dir(trial), self.sweep.out)
        count, eta = self.countdown.finish_one()
        if row["status"] == DONE:
            wall = row.get("wall_time") or 0.0
            outcome = (
                f"done in {wall:.1f}s, held-out error "
                f"{row['final_held_out_error']:.2%} (best {row['best_held_out_error']:.2%} at "
                f"epoch {row['best_held_out_epoch']})"
            )
        else:
            outcome = f"FAILED ({row['error'] or row['status']})"
        self.echo(f"{count} {name}: {outcome}; {eta}")
        with contextlib.suppress(OSError):  # the table so far; rewritten at the end anyway
            _write(self.sweep.out / TABLE, res.table_csv(_rows(self.sweep), self.sweep.keys))

    def trial_retried(self, name: str, failures: int, error: str) -> None:
        retries = self.sweep.options.retries
        self.echo(
            f"{name}: the trial's worker failed ({error}); retry {failures} of {retries}, "
            f"resuming from its checkpoint"
        )


def _data_dir(data_dir: str | Path | None) -> str | None:
    """The data directory the trials are given: ``data_dir``, else ``$EQPROP_DATA_DIR``,
    as an absolute path (workers do not share the driver's working directory)."""
    chosen = data_dir if data_dir is not None else os.environ.get("EQPROP_DATA_DIR")
    return str(Path(chosen).resolve()) if chosen else None


def run_sweep(
    sweep: Sweep | str | Path,
    *,
    address: str | None = None,
    data_dir: str | Path | None = None,
    retry_failed: bool = False,
    echo: Callable[[str], None] | None = None,
) -> SweepReport:
    """Run (or continue) ``sweep`` (a :class:`Sweep` or the path of a sweep file) on Ray and
    write its results.

    Trials already done are kept; trials that failed before are kept as failed unless
    ``retry_failed``; the others are trained (resuming from their checkpoints). Ray is the
    instance this process is already connected to, else the cluster at ``address``, else
    a new local instance sized to the machine (shut down at the end). ``echo`` receives
    the progress lines (default: print to stdout)."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    echo = echo or (lambda line: print(line, flush=True))
    from eqprop.runs import check_output_dir, start_run
    from eqprop.sweeps import engine

    check_output_dir(sweep.out, "the sweep directory")
    with _locked(sweep.out):
        states = {}
        for trial in sweep.trials:
            _check_existing(sweep, trial)
            states[trial.name] = trial_state(sweep.run_dir(trial))
        runnable = (NEW, UNFINISHED, FAILED) if retry_failed else (NEW, UNFINISHED)
        to_run = [t for t in sweep.trials if states[t.name] in runnable]
        kept = len(sweep.trials) - len(to_run)
        if to_run:
            options = sweep.options
            resources = engine.Resources(
                cpus=options.cpus_per_trial,
                gpus=float(options.gpus_per_trial),
                trials_at_once=options.trials_at_once,
                retries=options.retries,
            )
            with engine.connected(address, needed=resources) as total:
                _write(sweep.out / SPEC_COPY, _toml(sweep.to_dict()))
                for trial in to_run:
                    if states[trial.name] == NEW:
                        start_run(trial.config, sweep.run_dir(trial))
                at_once = resources.at_once(total, len(to_run))
                resumed = sum(states[t.name] != NEW for t in to_run)
                echo(
                    f"sweep {sweep.out}: {len(sweep.trials)} trials, {kept} already finished; "
                    f"running {len(to_run)} ({resumed} resumed), up to {at_once} at once, "
                    f"{options.cpus_per_trial} CPU(s) each"
                )
                progress = _Progress(sweep, kept, echo)
                trials_dir = sweep.out / TRIALS
                data = _data_dir(data_dir)
                engine.run_tasks(
                    [
                        Task(
                            t.name,
                            "eqprop.sweeps.trial:train_trial",
                            {"run_dir": str(sweep.run_dir(t).resolve()), "data_dir": data},
                        )
                        for t in to_run
                    ],
                    sweep.out / RAY_DIR,
                    resources,
                    on_finished=lambda name, _result: progress.trial_finished(name),
                    on_retry=progress.trial_retried,
                    on_given_up=lambda name, error: append_event(
                        trials_dir / name, "error", error=error
                    ),
                )
        else:
            echo(f"sweep {sweep.out}: all {len(sweep.trials)} trials already finished")
        return write_results(sweep)


def _toml(values: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(values)


# -- command line ---------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``eqprop sweep`` options to ``parser``."""
    parser.add_argument("spec", metavar="SWEEP.toml", help="the sweep file (see docs/sweeps.md)")
    parser.add_argument(
        "--out", help="sweep directory (default: the file's 'out', else sweeps/NAME)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of every trial (repeatable; as eqprop train --set)",
    )
    parser.add_argument(
        "--address",
        help="join this Ray cluster (from 'ray start --head'; default: a local Ray instance)",
    )
    parser.add_argument("--trials-at-once", type=int, help="at most N trials together")
    parser.add_argument("--cpus-per-trial", type=int, help="CPUs (torch threads) per trial")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial")
    parser.add_argument("--retries", type=int, help="retries of a trial whose worker died")
    parser.add_argument("--data-dir", help="directory of the IDX files (or set EQPROP_DATA_DIR)")
    parser.add_argument(
        "--retry-failed", action="store_true", help="also run again the trials that failed"
    )
    parser.add_argument("--plot-metric", help="metric of the plot (default final_held_out_error)")
    parser.add_argument("--plot-key", help="swept key on the plot's x axis")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the trials and their states; run nothing"
    )
    parser.add_argument(
        "--results-only",
        action="store_true",
        help="only rewrite the tables and the plot from the trial directories",
    )


def run_from_cli(args: argparse.Namespace) -> int:
    """``eqprop sweep``: run the sweep of ``args.spec``. Exit status 0 when every trial is
    done, 1 when some failed, 130 when some are unfinished (interrupted: run the command
    again to continue), 2 for a problem with the sweep itself (nothing has run)."""
    options = {
        "trials_at_once": args.trials_at_once,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "retries": args.retries,
    }
    sweep = load_sweep(
        args.spec,
        out=args.out,
        sets=args.set,
        options=options,
        plot_metric=args.plot_metric,
        plot_key=args.plot_key,
    )
    from eqprop.runs import check_output_dir

    where = "--out" if args.out is not None else "the sweep directory"
    check_output_dir(sweep.out, where, writable=not args.dry_run)  # a dry run writes nothing
    if args.dry_run:
        for trial in sweep.trials:
            _check_existing(sweep, trial, extend=False)
            state = trial_state(sweep.run_dir(trial), epochs=trial.config.train.epochs)
            print(f"{state:12s} {sweep.run_dir(trial)}")
        return 0
    if args.results_only:
        report = write_results(sweep)
    else:
        from eqprop.sweeps.engine import require_ray

        require_ray()  # the install hint before anything is written
        report = run_sweep(sweep, address=args.address, data_dir=args.data_dir)
    written = [report.table, report.aggregate_table] + ([report.plot] if report.plot else [])
    done, failed, unfinished = report.count(DONE), report.count(FAILED), report.unfinished
    print(
        f"sweep {report.directory}: {done} done, {failed} failed, {unfinished} unfinished; "
        f"results: {', '.join(str(p) for p in written)}"
    )
    if unfinished and not args.results_only:
        print(
            f"eqprop: sweep interrupted; {unfinished} trial(s) keep their checkpoints; "
            f"continue with: eqprop sweep {args.spec}" + (f" --out {args.out}" if args.out else ""),
            file=sys.stderr,
        )
        return 130
    return 1 if failed else 0
