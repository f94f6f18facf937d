"""The ``eqprop sweep`` command: a sweep (:mod:`eqprop.sweeps.spec`) run on Ray Tune (a
local Ray instance by default, or a cluster's with ``--address``), and its results written.

The sweep directory holds ``sweep.toml`` (the sweep as run), ``trials/<name>/`` (one run
directory per trial, named after its grid values; see :mod:`eqprop.sweeps.trial`),
``results.csv`` (one row per trial), ``aggregate.csv`` (mean and spread over seeds),
``<metric>_vs_<key>.png``, and ``ray/`` (Tune's own files). Running the same command again
continues: finished trials are kept, unfinished ones resume from their checkpoints.

Python::

    from eqprop.sweeps.command import run_sweep
    from eqprop.sweeps.spec import load_sweep
    report = run_sweep(load_sweep("lr-width.toml"))   # or run_sweep("lr-width.toml")
    report.rows                                        # the rows of results.csv
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqprop import config as cfg
from eqprop.cli_options import add_data_dir_option, add_ray_options, add_set_option
from eqprop.errors import EqpropError
from eqprop.sweeps import engine
from eqprop.sweeps import results as res
from eqprop.sweeps.spec import TRIALS, Sweep, Trial, load_sweep
from eqprop.sweeps.tasks import RAY_DIR, Countdown, Task
from eqprop.sweeps.trial import DONE, FAILED, NEW, UNFINISHED, append_event, trial_state

SPEC_COPY = "sweep.toml"
TABLE = "results.csv"
AGGREGATE = "aggregate.csv"
LOCK = ".lock"


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
    add_set_option(parser, " of every trial")
    ray = add_ray_options(
        parser, "an option not given: the sweep file's [options], else the default shown"
    )
    ray.add_argument("--gpus-per-trial", type=float, metavar="N", help="GPUs per trial (0)")
    add_data_dir_option(parser)
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
        engine.require_ray()  # the install hint before anything is written
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
