"""How much a run's held-out error moves within a few hundred batches of further training.

A one-off measurement behind a claim in ``docs/performance.md`` (the solvers experiment
compares held-out errors at the end of each epoch, one point in time per run). It reads a
finished run directory, never writes to it: the final checkpoint is loaded, training goes on
in memory with the run's own protocol (free phase, nudged phase, batch order of the next
epoch), and every ``--every`` batches the held-out error of the current weights is measured
at the free fixed point, each example from zeros to a residual below 1e-5 (FISTA, as the
experiment's fixed-point table). Writes one JSON list of ``{"batch", "held_out",
"train_error"}`` (``train_error``: the running error over the batches since the last row).

    python held_out_drift.py RUN_DIR --data-dir ../shared/data --out drift.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _probe import run

from eqprop.errors import EqpropError
from eqprop.experiments.solvers import fixed_point_error
from eqprop.runs import atomic_write_bytes
from eqprop.saved import load_trainer


class _Enough(Exception):
    """Raised from the batch callback to stop the epoch after ``--batches`` batches."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--every", type=int, default=125)
    parser.add_argument(
        "--eps", type=float, default=None, help="FISTA step (default: the run's nudged eps)"
    )
    parser.add_argument("--out", type=Path, required=True)
    run("held_out_drift", parser, measure)


def measure(args: argparse.Namespace) -> None:
    """The measurement of the module docs, for the parsed arguments."""
    data, trainer = load_trainer(args.run_dir, args.data_dir)
    if trainer.position:
        raise EqpropError(
            f"{args.run_dir} stopped in the middle of epoch {trainer.epoch + 1}; resume it to "
            f"the end of an epoch first (eqprop train --resume)"
        )
    held = data.held_out
    # the network's own step, as the experiment's fixed-point table takes it
    eps = args.eps if args.eps is not None else trainer.nudged.eps
    rows = [{"batch": 0, "held_out": fixed_point_error(trainer.network, held.x, held.y, eps)}]
    tally = {"batches": 0, "errors": 0, "seen": 0}
    start = time.perf_counter()

    def on_batch(result) -> None:
        tally["batches"] += 1
        tally["errors"] += result.errors
        tally["seen"] += result.size
        if tally["batches"] % args.every == 0:
            error = fixed_point_error(trainer.network, held.x, held.y, eps)
            train_error = tally["errors"] / tally["seen"]
            rows.append({"batch": tally["batches"], "held_out": error, "train_error": train_error})
            tally["errors"] = tally["seen"] = 0
            print(f"{args.run_dir.name}: {rows[-1]} ({time.perf_counter() - start:.0f} s)")
        if tally["batches"] == args.batches:
            raise _Enough

    try:  # the run's own next epoch (its batch order, its phases), stopped after --batches
        trainer.train_epoch(data.train.x, data.train.y, on_batch)
    except _Enough:
        pass
    atomic_write_bytes(args.out, (json.dumps(rows, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
