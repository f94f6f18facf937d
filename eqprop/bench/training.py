"""s per training batch of ours against the naive engine (:mod:`eqprop.reference`)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import torch

from eqprop import config as cfg
from eqprop import reference
from eqprop.bench.settings import (
    EPOCH_EXAMPLES,
    NAIVE_ENGINE,
    BenchOptions,
    random_data,
)
from eqprop.bench.timing import (
    clock,
    since,
)

if TYPE_CHECKING:
    from eqprop.topology import Topology


def training_timing(
    config: cfg.RunConfig, topology: Topology | None, options: BenchOptions
) -> dict[str, Any]:
    """s per training batch of ours and of the naive engine (:mod:`eqprop.reference`),
    interleaved on the same data."""
    from eqprop.runs import build_network, build_trainer

    device = torch.device(config.train.device)
    now = clock(device)
    b = config.train.batch_size
    sizes = config.topology.sizes
    n_free = config.free.steps
    n_batches = max(options.batches, options.naive_batches) + 1
    x, y = random_data(n_batches * b, sizes[0], sizes[-1], device)
    net = build_network(config, topology)
    trainer = build_trainer(config, net, len(x))
    naive_steps = min(options.naive_steps or n_free, n_free)
    naive_config = config.override({"free.steps": naive_steps})
    # a network built from the same config has the same initial weights
    ref = reference.NaiveEP.from_config(
        build_network(config, topology), naive_config, n_train=len(x)
    )

    def index(i: int) -> torch.Tensor:
        return torch.arange(i * b, (i + 1) * b, device=device)

    trainer.train_batch(x[index(0)], y[index(0)], index(0))  # warm-up (allocations)
    ours, theirs = [], []
    for i in range(1, n_batches):
        idx = index(i)
        if i <= options.batches:
            t0 = now()
            trainer.train_batch(x[idx], y[idx], idx)
            ours.append(since(t0, now()))
        if i <= options.naive_batches:
            t0 = now()
            ref.train_batch(x[idx], y[idx], idx)
            theirs.append(since(t0, now()))
    naive_s = [statistics.median(v[k] for v in theirs) for k in (0, 1)]
    scaled = naive_steps < n_free
    if scaled:  # add the free steps not run, at the naive engine's measured cost per step
        s = torch.cat([x[index(1)], torch.rand(b, ref.n - sizes[0], device=device)], 1)
        t0 = now()
        ref.free_phase(s)
        per_step = since(t0, now())
        for k in (0, 1):
            naive_s[k] += (n_free - naive_steps) * per_step[k] / naive_steps

    # the estimate and update alone (both phases already done): their share of a batch
    s_free = trainer.particles[index(1)]
    s_clamped = s_free.clone().clamp_(0.0, 1.0)
    t0 = now()
    estimate = trainer.estimator.estimate(net, x[index(1)], s_free, [s_clamped], (1.0,))
    trainer.update.apply(estimate)
    update_ms = since(t0, now())[0] * 1e3
    s_per_batch = [statistics.median(v[k] for v in ours) for k in (0, 1)]
    return {
        "s_per_batch": s_per_batch[0],
        "s_per_batch_all": [v[0] for v in ours],
        "update_ms": update_ms,
        "s_per_epoch": s_per_batch[0] * EPOCH_EXAMPLES / b,
        "speedup": naive_s[0] / s_per_batch[0],
        "cpu": {
            "s_per_batch": s_per_batch[1],
            "s_per_epoch": s_per_batch[1] * EPOCH_EXAMPLES / b,
            "naive_s_per_batch": naive_s[1],
            "speedup": naive_s[1] / s_per_batch[1],
        },
        "naive": {
            "s_per_batch": naive_s[0],
            "batches_timed": len(theirs),
            "free_steps_timed": naive_steps,
            "scaled": scaled,
            "engine": NAIVE_ENGINE,
            "note": (
                f"naive free phase timed at {naive_steps} steps and scaled linearly to {n_free}"
                if scaled
                else "naive batches timed in full (no scaling)"
            ),
        },
    }
