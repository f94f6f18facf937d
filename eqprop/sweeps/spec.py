"""Sweep files: a grid of config overrides, each point trained as an ordinary run
directory (:class:`Trial`), read and validated into a :class:`Sweep`.

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

A sweep is read and validated here (:func:`load_sweep`, :func:`sweep_from_dict`); it is run,
and its directory written, by :mod:`eqprop.sweeps.command`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eqprop import config as cfg
from eqprop.errors import ConfigError
from eqprop.sweeps import results as res
from eqprop.sweeps.tasks import check_counts

TRIALS = "trials"
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
