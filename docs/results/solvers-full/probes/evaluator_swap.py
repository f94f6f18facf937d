"""How much of a difference in held-out error between two protocols is the evaluation.

A one-off measurement behind a claim in ``docs/performance.md``. The solvers experiment
compares each protocol's held-out error as that protocol measures it: the paper protocol
with 500 fixed steps from the persistent test particles, a fast protocol with its own
solver to its residual tolerance. This probe separates the two. It retrains a finished run
from its config, in memory, for ``--epochs`` epochs (the run directory is only read), checks
that each epoch's training error and held-out error equal the run's own records bit for bit
(so the weights measured are the run's), and at the end of each epoch measures the held-out
error of those weights three ways:

- ``own``: the run's free relaxer from its persistent test particles (its record);
- ``other``: the free relaxer of ``--other`` (another run's config), from persistent test
  particles of its own, as that protocol would have evaluated these weights;
- ``fixed_point``: each example from zeros to a residual below 1e-5 (FISTA), the measure of
  the experiment's fixed-point table.

For ``other`` it also records the largest fixed-point residual of the held-out states and
the fraction of examples above 1e-3. And it records how far each training batch's free phase
got: the batch's largest fixed-point residual after the run's own free relaxer, at the
weights of that batch, averaged over blocks of ``--block`` batches. Writes one JSON list of
rows per epoch.

    python evaluator_swap.py RUN_DIR --other OTHER_RUN_DIR --epochs 1 \\
        --data-dir ../shared/data --out swap.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from _probe import Recorded, run

from eqprop.errors import EqpropError
from eqprop.experiments.solvers import fixed_point_error
from eqprop.metrics import held_out_error
from eqprop.runs import (
    atomic_write_bytes,
    build_network,
    build_trainer,
    load_data,
    read_config,
    read_metrics,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--other", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--block", type=int, default=125, help="batches per residual block")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    run("evaluator_swap", parser, measure)


def measure(args: argparse.Namespace) -> None:
    """The measurement of the module docs, for the parsed arguments."""
    config, other = read_config(args.run_dir), read_config(args.other)
    records = read_metrics(args.run_dir)
    if len(records) < args.epochs:
        raise EqpropError(f"{args.run_dir} has {len(records)} epochs, fewer than --epochs")
    if not config.train.test_persistent:
        raise EqpropError(f"{args.run_dir} does not keep test particles; this probe needs it")
    data = load_data(config, args.data_dir)
    network = build_network(config)
    trainer = build_trainer(config, network, len(data.train.x))
    held = data.held_out
    own_particles = network.zero_state(len(held.x))
    other_particles = network.zero_state(len(held.x))
    own_free, other_free = trainer.free, other.free.build()
    rows, start = [], time.perf_counter()
    for record in records[: args.epochs]:
        trainer.free = training = Recorded(own_free)
        result = trainer.train_epoch(data.train.x, data.train.y)
        trainer.free = own_free
        own = trainer.evaluate(held.x, held.y, particles=own_particles)
        if result.train_error != record["train_error"] or own != held_out_error(record):
            raise EqpropError(
                f"epoch {result.epoch} of the retrained run gives training {result.train_error}"
                f" and held-out {own}, the run's records {record['train_error']} and "
                f"{held_out_error(record)}: not the run's weights"
            )
        trainer.free = evaluating = Recorded(other_free)  # as the other protocol evaluates
        other_error = trainer.evaluate(held.x, held.y, particles=other_particles)
        residuals = torch.cat(evaluating.rows)
        largest = training.largest()
        row = {
            "epoch": result.epoch,
            "train_error": result.train_error,
            "own": own,
            "other": other_error,
            "other_max_residual": float(residuals.max()),
            "other_above_1e-3": float((residuals > 1e-3).double().mean()),
            "fixed_point": fixed_point_error(network, held.x, held.y, config.nudged.eps),
            "train_residual_blocks": [
                statistics.fmean(largest[k : k + args.block])
                for k in range(0, len(largest), args.block)
            ],
        }
        rows.append(row)
        print(f"{args.run_dir.name}: {row} ({time.perf_counter() - start:.0f} s)", flush=True)
        atomic_write_bytes(args.out, (json.dumps(rows, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
