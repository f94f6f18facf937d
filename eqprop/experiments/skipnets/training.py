"""Training the skipnets runs: one task per run whose file is missing
(:func:`pending_tasks`), a baseline run (:func:`train_baseline`, which goes on from its last
evaluation after an interruption), an EP run (:func:`train_ep`, :func:`run_ep`), and
:func:`run`, what ``eqprop reproduce skipnets`` calls."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from eqprop.arithmetic import describe
from eqprop.baselines import FeedforwardNetwork, TrainingData, make_rule
from eqprop.baselines import train as train_rule
from eqprop.config import RunConfig
from eqprop.data import load_dataset
from eqprop.errors import ConfigError, DivergenceError
from eqprop.experiments.skipnets.protocol import (
    EP_ACTIVATION,
    EP_RULE,
    PROTOCOLS,
    SCALES,
    Protocol,
    ep_config,
    planned_ep_runs,
    planned_runs,
)
from eqprop.experiments.skipnets.runfiles import (
    check_run_files,
    ep_name,
    run_name,
    run_settings,
    settings_record,
)
from eqprop.experiments.skipnets.stage import render_stage
from eqprop.metrics import held_out_error
from eqprop.runs import (
    CONFIG,
    RunOptions,
    atomic_write_bytes,
    load_data,
    read_config,
    read_metrics,
    start_run,
    train_run,
)
from eqprop.sweeps.placement import Placement, run_tasks
from eqprop.sweeps.tasks import RAY_DIR, Task

_LOG = logging.getLogger(__name__)
EP_DIR = "ep_runs"
#: the training state of unfinished baseline runs (see :func:`train_baseline`)
CHECKPOINT_DIR = "baseline_checkpoints"


def _train_one(
    protocol: Protocol,
    data: TrainingData,
    rule_name: str,
    architecture: str,
    activation: str,
    depth: int,
    learning_rate: float,
    checkpoint: Path | None = None,
    seed: int = 0,
) -> dict:
    """Train one network with ``seed`` and return its result record (the run file's content);
    with ``checkpoint``, an interrupted run goes on from that file
    (:func:`eqprop.baselines.train`)."""
    settings = run_settings(protocol, architecture, activation, depth, learning_rate, seed)
    arch, config, starts = settings.architecture, settings.train, settings.early_stop_starts
    network = FeedforwardNetwork(arch, data.input_shape(arch.convolutional), data.n_classes, seed)
    desc = Path(run_name(rule_name, architecture, activation, depth, learning_rate, seed)).stem
    rule = make_rule(rule_name, network, seed)
    result = train_rule(rule, data, config, desc=desc, checkpoint=checkpoint)
    grid = []
    for start in starts:
        chosen = result.select(start)
        grid.append(
            {
                "hyperparameters": {"learning_rate": learning_rate, "early_stop_start": start},
                "valid_accuracy": chosen.valid_accuracy,
                "test_accuracy": chosen.test_accuracy,
                "examples": chosen.examples,
            }
        )
    return {
        "rule": rule_name,
        "architecture": architecture,
        "activation": activation,
        "depth": depth,
        "seed": seed,
        "settings": settings_record(settings),
        "threads": torch.get_num_threads(),
        # what decides the rounding: the processor, torch build and threads that finished the
        # run (one resumed from a checkpoint may have begun elsewhere)
        "arithmetic": describe(torch.device("cpu")),
        "grid": grid,
        "diverged": result.diverged,
        "seconds": result.seconds,
        "cpu_seconds": result.cpu_seconds,
        "history": [
            {
                "examples": e.examples,
                "valid_accuracy": e.valid_accuracy,
                "test_accuracy": None if math.isnan(e.test_accuracy) else e.test_accuracy,
                "train_stats": e.train_stats,
            }
            for e in result.evaluations
        ],
    }


def _load_data(protocol: Protocol, data_dir: Path | None) -> TrainingData:
    dataset = load_dataset(protocol.dataset, split="icons", data_dir=data_dir)
    return TrainingData.from_dataset(
        dataset,
        train_limit=protocol.train_limit,
        valid_limit=protocol.valid_limit,
        test_limit=protocol.test_limit,
    )


def _ep_record(
    config: RunConfig,
    architecture: str,
    depth: int,
    metrics: Sequence[Mapping],
    cpu_seconds: float,
    diverged: bool,
    data_dir: Path | None,
) -> dict:
    """The run file of a finished (or diverged) EP run: one grid point per epoch."""
    data = load_data(config, data_dir)
    n_train, n_valid, n_test = len(data.train), len(data.held_out), len(data.test)
    lr = config.update.lr if isinstance(config.update.lr, float) else list(config.update.lr)
    grid, history = [], []
    for m in metrics:
        valid = round(1.0 - held_out_error(m), 6)
        test = round(1.0 - m["official_test_error"], 6)
        examples = m["epoch"] * n_train
        grid.append(
            {
                "hyperparameters": {"learning_rate": lr, "epoch": m["epoch"]},
                "valid_accuracy": valid,
                "test_accuracy": test,
                "examples": examples,
            }
        )
        history.append(
            {
                "epoch": m["epoch"],
                "examples": examples,
                "valid_accuracy": valid,
                "test_accuracy": test,
                "train_stats": {
                    "train_error": m["train_error"],
                    "free_steps": m["free_steps"],
                    "layer_rates": m["layer_rates"],
                },
                "wall_time": m["wall_time"],
            }
        )
    return {
        "rule": EP_RULE,
        "architecture": architecture,
        "activation": EP_ACTIVATION,
        "depth": depth,
        "grid": grid,
        "diverged": diverged,
        "seconds": metrics[-1]["wall_time"] if metrics else 0.0,
        "cpu_seconds": cpu_seconds,
        "examples_per_epoch": n_train,
        "valid_examples": n_valid,
        "test_examples": n_test,
        "config": config.to_dict(),
        "history": history,
    }


_CPU_FILE = "skipnets_cpu_seconds.json"


def run_ep(
    protocol: Protocol, architecture: str, depth: int, out: Path, data_dir: Path | None
) -> Path:
    """Train (or resume, or skip when done) one EP run of ``protocol`` and write its run file
    ``out/runs/EP-...json``; return that path.

    The run directory ``out/ep_runs/<name>`` resumes exactly (:func:`eqprop.runs.train_run`);
    it must hold this very configuration. CPU seconds spent on it are summed over invocations
    in the run directory.
    """
    config = ep_config(protocol, architecture, depth)
    name = ep_name(config, architecture, depth)
    path = Path(out) / "runs" / name
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(out) / EP_DIR / Path(name).stem
    if (run_dir / CONFIG).exists():
        if read_config(run_dir) != config:
            raise ConfigError(
                f"{run_dir} holds an EP run with another configuration; delete it to retrain"
            )
    else:
        start_run(config, run_dir)
    cpu_file = run_dir / _CPU_FILE
    spent = json.loads(cpu_file.read_text())["cpu_seconds"] if cpu_file.exists() else 0.0
    begin = time.process_time()
    diverged = False
    try:  # its epoch lines go to stderr, beside the progress: stdout has only results.md
        with contextlib.redirect_stdout(sys.stderr):
            train_run(run_dir, RunOptions(data_dir=data_dir, quiet=True))
    except DivergenceError as exc:
        _LOG.warning("skipnets %s diverged: %s", name, exc)
        diverged = True
    finally:
        spent += time.process_time() - begin
        atomic_write_bytes(cpu_file, json.dumps({"cpu_seconds": spent}).encode())
    metrics = read_metrics(run_dir)
    record = _ep_record(config, architecture, depth, metrics, spent, diverged, data_dir)
    atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    best = max((point["valid_accuracy"] for point in record["grid"]), default=math.nan)
    _LOG.info("skipnets %s: best valid %.4f (%.0f s)", path.stem, best, record["seconds"])
    return path


@functools.lru_cache(maxsize=2)
def _cached_data(scale: str, data_dir: str | None) -> TrainingData:
    """The baselines' data of ``scale``, loaded once per process (a Ray worker runs task
    after task)."""
    return _load_data(PROTOCOLS[scale], Path(data_dir) if data_dir else None)


def train_baseline(
    scale: str,
    rule: str,
    architecture: str,
    activation: str,
    depth: int,
    learning_rate: float,
    out: str,
    data_dir: str | None,
    seed: int = 0,
) -> dict:
    """The task of one baseline run (with ``seed``): train it and write its run file
    ``out/runs/NAME.json`` (nothing to do when the file exists). A run writes its file only
    when it has finished; until then it checkpoints at every evaluation into
    ``out/baseline_checkpoints/``, so one interrupted goes on from its last evaluation (the
    checkpoint is removed once the run file is written)."""
    name = run_name(rule, architecture, activation, depth, learning_rate, seed)
    path = Path(out) / "runs" / name
    checkpoint = Path(out) / CHECKPOINT_DIR / f"{path.stem}.pt"
    if not path.exists():
        data = _cached_data(scale, data_dir)
        protocol = PROTOCOLS[scale]
        for folder in (path.parent, checkpoint.parent):
            folder.mkdir(parents=True, exist_ok=True)
        record = _train_one(
            protocol, data, rule, architecture, activation, depth, learning_rate, checkpoint, seed
        )
        atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    checkpoint.unlink(missing_ok=True)  # also one left by a stop right after the run file
    record = json.loads(path.read_text())
    return {"best_valid": max(point["valid_accuracy"] for point in record["grid"])}


def train_ep(scale: str, architecture: str, depth: int, out: str, data_dir: str | None) -> dict:
    """The task of one EP run (:func:`run_ep`)."""
    data = Path(data_dir) if data_dir else None
    path = run_ep(PROTOCOLS[scale], architecture, depth, Path(out), data)
    record = json.loads(path.read_text())
    return {"best_valid": max((p["valid_accuracy"] for p in record["grid"]), default=math.nan)}


def pending_tasks(protocol: Protocol, scale: str, out: Path, data_dir: Path | None) -> list[Task]:
    """One task per run of ``protocol`` whose run file is missing, in the order of the
    protocol (the baselines, then EP); the run files present are checked first
    (:func:`~eqprop.experiments.skipnets.runfiles.check_run_files`)."""
    check_run_files(protocol, scale, out)
    runs_dir = out / "runs"
    data = str(Path(data_dir).resolve()) if data_dir is not None else None
    common = {"scale": scale, "out": str(out.resolve()), "data_dir": data}
    tasks = []
    for rule, arch, act, depth, lr, seed in planned_runs(protocol):
        name = run_name(rule, arch, act, depth, lr, seed)
        if not (runs_dir / name).exists():
            run = {"rule": rule, "architecture": arch, "activation": act, "depth": depth}
            kwargs = {**common, **run, "learning_rate": lr, "seed": seed}
            tasks.append(Task(Path(name).stem, f"{__name__}:train_baseline", kwargs))
    for arch, depth in planned_ep_runs(protocol):
        name = ep_name(ep_config(protocol, arch, depth), arch, depth)
        if not (runs_dir / name).exists():
            kwargs = {**common, "architecture": arch, "depth": depth}
            tasks.append(Task(Path(name).stem, f"{__name__}:train_ep", kwargs))
    return tasks


def run(
    scale: str,
    out: Path,
    data_dir: Path | None,
    placement: Placement | None = None,
    results_only: bool = False,
) -> Path:
    """Run (or resume) the experiment at ``scale`` into ``out``; return ``results.md``.

    Every run is a task (:mod:`eqprop.sweeps.tasks`): in this process one after another, or
    on Ray where ``placement`` asks for it (a run that fails there is reported, and the
    others go on). With ``results_only`` nothing is trained: the run files present are
    checked and the stage is drawn from them (:func:`render_stage`)."""
    if scale not in PROTOCOLS:
        raise ConfigError(f"skipnets scale must be one of {', '.join(SCALES)}; got {scale!r}")
    protocol = PROTOCOLS[scale]
    out = Path(out)
    if results_only:
        check_run_files(protocol, scale, out)
        return render_stage(scale, out)
    runs_dir = out / "runs"
    tasks = pending_tasks(protocol, scale, out, data_dir)
    if tasks:
        _load_data(protocol, data_dir)  # missing data is an error before the first write
    runs_dir.mkdir(parents=True, exist_ok=True)
    total = len(planned_runs(protocol)) + len(planned_ep_runs(protocol))
    errors = run_tasks(
        tasks,
        placement,
        label=f"skipnets {scale}",
        storage=out / RAY_DIR,
        done_before=total - len(tasks),
    )
    for name, error in errors.items():
        _LOG.warning("skipnets %s failed: %s", name, error)
    return render_stage(scale, out)
