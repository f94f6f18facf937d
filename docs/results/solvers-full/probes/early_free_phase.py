"""Does a run's learning depend on how far its first free phases got?

A one-off measurement behind a claim in ``docs/performance.md``. At the initial weights the
paper protocol's 500 steps from zero particles stop far from the free fixed point, and after
the first batches they get close. This probe retrains a finished run's first ``--epochs``
epochs from its config, in memory (the run directory is only read), with one change: the
free phases of the first ``--first-batches`` batches of epoch 1 are taken to the fixed
point (FISTA with the run's nudged step, each example to a residual below 1e-5, at most
20,000 steps); every later batch, the nudged phases and the evaluation are the run's own.
With ``--first-batches 0`` it is the run's own training. Writes one JSON object, rewritten
after each epoch: the largest residual of each changed batch, and per epoch the training
error and the held-out error with the run's own evaluator (from its persistent test
particles, zeros before the first evaluation, as the run) and at the fixed point.

    python early_free_phase.py RUN_DIR --first-batches 125 --epochs 3 \\
        --data-dir ../shared/data --out early.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _probe import Recorded, run

from eqprop.errors import EqpropError
from eqprop.experiments.solvers import FIXED_POINT_TOL, fixed_point_error
from eqprop.relaxation.fista import Fista
from eqprop.runs import atomic_write_bytes, build_network, build_trainer, load_data, read_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--first-batches", type=int, default=125)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    run("early_free_phase", parser, measure)


def measure(args: argparse.Namespace) -> None:
    """The measurement of the module docs, for the parsed arguments."""
    if args.epochs < 1:
        raise EqpropError(f"--epochs is {args.epochs}; give at least 1")
    config = read_config(args.run_dir)
    data = load_data(config, args.data_dir)
    network = build_network(config)
    trainer = build_trainer(config, network, len(data.train.x))
    per_epoch = -(-len(data.train.x) // config.train.batch_size)
    if not 0 <= args.first_batches <= per_epoch:
        raise EqpropError(
            f"--first-batches is {args.first_batches}; give 0 to {per_epoch} (the batches of "
            f"one epoch of {args.run_dir})"
        )
    own_free, eps = trainer.free, config.nudged.eps
    changed = Recorded(Fista(eps=eps, steps=20_000, tol=FIXED_POINT_TOL))
    if args.first_batches > 0:
        trainer.free = changed

    def on_batch(_) -> None:  # called with the position already advanced
        if trainer.position == args.first_batches:
            trainer.free = own_free

    held = data.held_out
    particles = network.zero_state(len(held.x)) if config.train.test_persistent else None
    result = {"first_batches": args.first_batches, "epochs": []}
    start = time.perf_counter()
    for _ in range(args.epochs):
        epoch = trainer.train_epoch(data.train.x, data.train.y, on_batch)
        row = {
            "epoch": epoch.epoch,
            "train_error": epoch.train_error,
            "own": trainer.evaluate(held.x, held.y, particles=particles),
            "fixed_point": fixed_point_error(network, held.x, held.y, eps),
            "seconds": time.perf_counter() - start,
        }
        result["epochs"].append(row)
        result["first_batches_largest_residual"] = changed.largest()
        print(f"{args.run_dir.name}: {row}", flush=True)
        atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
