"""The free-phase solver benchmark (``eqprop bench-solvers``): what a real epoch costs.

For each preset (default: ICONS networks B and C) and each solver:

1. a first epoch with the solver, from zero particles (a warm-up that also makes the
   persistent particles of a real epoch), then the evaluation of the held-out examples;
2. the **measured epoch**: a second epoch with the same solver, timed, plus the evaluation
   of the held-out examples (with the preset's test particles when it keeps them), timed;
   free steps per batch (mean, median, max), the fraction of batches that hit the step cap,
   and the largest fixed-point residual of the final free states of a sample of batches;
3. the **paper protocol on the same state**: ``sample`` batches of the next epoch and one
   evaluation batch relaxed with the papers' fixed steps from the same particles (weights
   restored afterwards), timed; the paper's epoch time is extrapolated from them (the
   number of batches times the seconds per batch, plus the evaluation batches), and the
   residual its fixed steps reach is measured on the same batches.

Timings are wall-clock and process CPU time (``time.process_time``, all threads of this
process), from one run; ``speedup`` is the paper protocol's extrapolated epoch over the
solver's measured one. This needs the real data (``--data-dir``) for the MNIST presets.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from eqprop import arithmetic, runs
from eqprop import config as cfg
from eqprop.bench.timing import clock, since
from eqprop.errors import ConfigError
from eqprop.relaxation import fixed_point_residual
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import Trainer

if TYPE_CHECKING:
    from eqprop.energy_network import EnergyNetwork

DEFAULT_PRESETS = ("icons-layered", "icons-skip")
#: solver specs, ``NAME`` (the preset's step size) or ``NAME:EPS``; each runs on the presets
#: it applies to (the layer sweeps only on layered networks)
DEFAULT_SOLVERS = ("sor:1.7", "fista")
#: the spec of the free phase ``eqprop reproduce --fast`` picks for each preset's network
FAST = "fast"


def parse_solver(spec: str) -> tuple[str, float | None]:
    """``"sor:1.7"`` -> ``("sor", 1.7)``, ``"fista"`` -> ``("fista", None)``, ``"fast"`` ->
    ``("fast", None)``; a one-line error for an unknown solver or a step size that is not a
    number."""
    from eqprop.relaxation import SOLVERS

    name, _, eps = spec.partition(":")
    if name not in SOLVERS and name != FAST:
        choices = ", ".join([*SOLVERS, FAST])
        raise ConfigError(f"unknown solver {name!r}; choose among {choices}")
    if name == FAST and eps:
        raise ConfigError(f"solver {spec!r}: 'fast' takes its step size from --fast's choice")
    try:
        return name, float(eps) if eps else None
    except ValueError:
        raise ConfigError(
            f"solver {spec!r}: the part after ':' is the step size eps and must be a number"
        ) from None


@dataclass(frozen=True)
class SolverBenchOptions:
    """Settings of the solver benchmark (module docs)."""

    solvers: tuple[str, ...] = DEFAULT_SOLVERS
    tol: float = 1e-3
    cap: int = 1000
    sample: int = 20
    limit: int | None = None
    threads: int = 2
    data_dir: str | Path | None = None
    quiet: bool = False


_now = clock(torch.device("cpu"))


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return since(start, _now())


def solver_config(preset: str, solver: str, options: SolverBenchOptions) -> cfg.RunConfig:
    """The preset with the free phase of ``solver`` (a spec of :func:`parse_solver`; the
    papers' ``fixed`` keeps its steps; ``fast``: SOR or FISTA as ``eqprop reproduce --fast``
    picks for the network)."""
    name, eps = parse_solver(solver)
    changes: dict[str, Any] = {"train.epochs": 2, "data.limit": options.limit}
    if name == FAST:
        from eqprop.experiments.departures import fast_free

        chosen = fast_free(cfg.resolve(preset))
        name, eps = chosen["free.solver"], chosen["free.eps"]
    if name != "fixed":
        changes.update({"free.solver": name, "free.tol": options.tol, "free.steps": options.cap})
    if eps is not None:
        changes["free.eps"] = eps
    return cfg.resolve(preset).override(changes)


def skip_reason(config: cfg.RunConfig, net: EnergyNetwork) -> str | None:
    """Why the config's free-phase solver cannot run on ``net`` (``None``: it can); tried on
    one step of one example."""
    x = torch.zeros(1, net.n_input, dtype=net.dtype, device=net.device)
    try:
        replace(config.free.build(), steps=1).relax(net, net.zero_state(1), net.input_drive(x))
    except ConfigError as exc:
        return str(exc)
    return None


def _evaluate(trainer: Trainer, data, particles) -> tuple[float, tuple[float, float], list[int]]:
    steps: list[int] = []
    start = _now()
    error = trainer.evaluate(
        data.held_out.x,
        data.held_out.y,
        particles=particles,
        on_relax=lambda r: steps.append(r.steps),
    )
    return error, _since(start), steps


def measure(preset: str, solver: str, options: SolverBenchOptions) -> dict[str, Any]:
    """One preset and solver: the measured second epoch and the paper protocol beside it (or,
    for a solver that does not apply to the preset's network, why it was skipped)."""
    config = solver_config(preset, solver, options)
    data = runs.load_data(config, options.data_dir)
    x, y = data.train.x, data.train.y
    net = runs.build_network(config)
    reason = skip_reason(config, net)
    if reason is not None:
        return {"preset": preset, "solver": solver, "skipped": reason}
    trainer = runs.build_trainer(config, net, len(x))
    test_particles = net.zero_state(len(data.held_out.x)) if config.train.test_persistent else None
    bars = not options.quiet

    def epoch(label: str):
        bar = tqdm(total=-(-len(x) // config.train.batch_size), desc=label, disable=not bars)
        start = _now()
        result = trainer.train_epoch(x, y, lambda _: bar.update(1))
        bar.close()
        return result, _since(start)

    epoch(f"{preset} {solver}: warm-up epoch")
    _evaluate(trainer, data, test_particles)
    result, train_time = epoch(f"{preset} {solver}: measured epoch")
    error, eval_time, eval_steps = _evaluate(trainer, data, test_particles)
    steps = result.free_steps.tolist()

    # the paper protocol from the same particles and weights, on the next epoch's batches
    protocol = cfg.resolve(preset).free
    paper = FixedSteps(eps=protocol.eps, steps=protocol.steps)
    saved = trainer.state_dict()
    fast = trainer.free
    b = config.train.batch_size
    sample = [torch.arange(k * b, (k + 1) * b) for k in range(min(options.sample, len(x) // b))]
    residual = {}
    for name, relaxer in (("solver", fast), ("paper", paper)):
        worst = 0.0
        for index in sample[:5]:
            s = trainer.particles[index].clone()
            base = net.input_drive(x[index])
            relaxer.relax(net, s, base)
            worst = max(worst, fixed_point_residual(net, s, base))
        residual[name] = worst
    trainer.free = paper
    start = _now()
    for index in sample:
        trainer.train_batch(x[index], y[index], index)
    paper_batch = _since(start)
    eval_batch = min(1000, len(data.held_out.x))
    start = _now()
    trainer.evaluate(data.held_out.x[:eval_batch], data.held_out.y[:eval_batch])
    paper_eval = _since(start)
    trainer.free = fast
    trainer.load_state_dict(saved)

    n_batches, n_eval = len(steps), -(-len(data.held_out.x) // eval_batch)
    paper_epoch = [
        paper_batch[k] / len(sample) * n_batches + paper_eval[k] * n_eval for k in range(2)
    ]
    solver_epoch = [train_time[k] + eval_time[k] for k in range(2)]
    return {
        "preset": preset,
        "solver": solver if solver != FAST else f"{FAST}:{config.free.solver}",
        "tol": options.tol if solver != "fixed" else None,
        "examples": len(x),
        "held_out": len(data.held_out.x),
        "free_steps_mean": statistics.fmean(steps),
        "free_steps_median": statistics.median(steps),
        "free_steps_max": max(steps),
        "at_cap": sum(s >= config.free.steps for s in steps) / len(steps),
        "eval_steps_mean": statistics.fmean(eval_steps),
        "residual_solver": residual["solver"],
        "residual_paper": residual["paper"],
        "train_s": train_time[0],
        "eval_s": eval_time[0],
        "epoch_s": solver_epoch[0],
        "epoch_cpu_s": solver_epoch[1],
        "train_error": result.train_error,
        "held_out_error": error,
        "paper_s_per_batch": paper_batch[0] / len(sample),
        "paper_epoch_s": paper_epoch[0],
        "paper_epoch_cpu_s": paper_epoch[1],
        "speedup": paper_epoch[0] / solver_epoch[0],
        "speedup_cpu": paper_epoch[1] / solver_epoch[1],
        "paper_sample_batches": len(sample),
        "paper_free": {"eps": protocol.eps, "steps": protocol.steps},
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """The benchmark as a fixed-width table."""
    head = (
        f"{'preset':15s} {'solver':11s} {'steps':>6s} {'med':>5s} {'max':>5s} {'eval st':>7s} "
        f"{'resid':>8s} {'paper r':>8s} {'train s':>8s} {'eval s':>7s} {'epoch s':>8s} "
        f"{'paper s':>8s} {'speedup':>8s}"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['preset']:15s} {r['solver']:11s} {r['free_steps_mean']:6.1f} "
            f"{r['free_steps_median']:5.0f} {r['free_steps_max']:5d} {r['eval_steps_mean']:7.1f} "
            f"{r['residual_solver']:8.1e} {r['residual_paper']:8.1e} {r['train_s']:8.1f} "
            f"{r['eval_s']:7.1f} {r['epoch_s']:8.1f} {r['paper_epoch_s']:8.0f} "
            f"{r['speedup']:7.1f}x"
        )
    return "\n".join(lines)


def main(presets: list[str], options: SolverBenchOptions, out: str | None) -> list[dict]:
    """Run the benchmark, print the table, write JSON to ``out`` (checked writable first)."""
    if out is not None:
        runs.check_writable_file(out)
    torch.set_num_threads(options.threads)
    load_before = os.getloadavg()
    measured = [measure(p, s, options) for p in presets for s in options.solvers]
    load_after = os.getloadavg()
    rows = [r for r in measured if "skipped" not in r]
    skipped = [r for r in measured if "skipped" in r]
    if not rows:
        raise ConfigError("no solver applies to these presets; see eqprop bench-solvers --help")
    print(format_table(rows))
    for r in skipped:
        print(f"skipped {r['solver']} on {r['preset']}: {r['skipped']}")
    print(
        f"steps: free-phase steps per batch of the measured (second) epoch; eval st: per "
        f"evaluation batch of 1,000; resid / paper r: largest fixed-point residual of 5 "
        f"batches after the solver / after the paper's fixed steps; paper s: the paper "
        f"protocol's epoch extrapolated from {rows[0]['paper_sample_batches']} batches and one "
        f"evaluation batch; {options.threads} torch threads."
    )
    machine = {
        "computing": arithmetic.describe(torch.device("cpu")),
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
    }
    print(
        f"machine: {machine['computing']}; load average {load_before[0]:.2f} before / "
        f"{load_after[0]:.2f} after"
    )
    if out is not None:
        record = {
            "machine": machine,
            "threads": options.threads,
            "tol": options.tol,
            "results": rows,
            "skipped": skipped,
        }
        runs.atomic_write_bytes(Path(out), (json.dumps(record, indent=1) + "\n").encode())
    return rows
