"""What the engine benchmark measures: the ICONS paper's protocol, the speed targets, the
options and a preset's benchmark config."""

from __future__ import annotations

import dataclasses

import torch

from eqprop import config as cfg

DEFAULT_PRESETS = ("icons-layered", "icons-skip")
#: The ICONS paper's protocol: batch, step size of both phases, free and nudged steps.
PAPER = {"batch_size": 20, "eps": 0.5, "free_steps": 500, "nudged_steps": 8}
#: What the naive engine is, printed and recorded beside every speedup against it.
NAIVE_ENGINE = (
    "the naive engine (eqprop.reference) multiplies by the whole N x N matrix including the "
    "inputs at every step and builds per-example outer products for the update; measured by "
    "us, it is 2-3x slower than the authors' actual ICONS code (which does a paper-protocol "
    "batch in about 1.5 s on the 2-core machine of docs/performance.md), so speedups against "
    "it overstate speedups against the authors' code by that factor"
)
EPOCH_EXAMPLES = 50_000
#: Speed targets of the "fast relaxation" issue: minimum speedup over the naive engine per
#: preset, and the largest step / lower-bound ratio.
SPEEDUP_TARGETS = {"icons-layered": 12.0, "icons-skip": 6.0}
BOUND_TARGET = 1.3


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """What to measure.

    Attributes:
        batches: timed training batches of ours (after one untimed warm-up batch).
        naive_batches: timed batches of the naive engine.
        steps: free steps (default the paper's 500); nudged steps stay at 8.
        naive_steps: time the naive engine with this many free steps and scale its free
            phase linearly to ``steps`` (default: time it at ``steps``, no scaling).
        repeats, step_window: the step timing runs ``repeats`` times ``step_window`` steps.
        device: ``cpu`` or ``cuda``.
        threads: torch threads; 0 picks the fastest of 1..cores on a probe matmul.
        memory: measure peak memory in a subprocess; ``memory_examples`` random examples.
        layouts: also time the other layouts.
        call_cost_rounds: rounds of :func:`~eqprop.bench.call_costs.measure_call_costs` (CPU only).
        conv: also time the conv networks' step (:data:`~eqprop.bench.conv_steps.CONV_NETWORKS`,
            :func:`~eqprop.bench.conv_steps.conv_step_timing`).
    """

    batches: int = 3
    naive_batches: int = 1
    steps: int | None = None
    naive_steps: int | None = None
    repeats: int = 5
    step_window: int = 100
    device: str = "cpu"
    threads: int = 0
    memory: bool = True
    memory_examples: int = EPOCH_EXAMPLES
    layouts: bool = True
    call_cost_rounds: int = 10
    conv: bool = False


def bench_config(preset: str | cfg.RunConfig, options: BenchOptions) -> cfg.RunConfig:
    """The preset at the paper's settings (``--steps`` overrides the free steps), fixed-step
    free phase, float32; the preset's nudging, estimator and rates are kept."""
    config = cfg.resolve(preset) if isinstance(preset, str) else preset
    steps = options.steps if options.steps is not None else PAPER["free_steps"]
    return config.override(
        {
            "train.batch_size": PAPER["batch_size"],
            "free.solver": "fixed",
            "free.tol": None,
            "free.eps": PAPER["eps"],
            "free.steps": steps,
            "nudged.eps": PAPER["eps"],
            "nudged.steps": PAPER["nudged_steps"],
            "train.device": options.device,
            "train.dtype": "float32",
        }
    )


def random_data(
    n: int, n_in: int, n_out: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded random inputs in [0, 1) of ``n_in`` features and labels of ``n_out`` classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, n_in, generator=g).to(device)
    y = torch.randint(0, n_out, (n,), generator=g).to(device)
    return x, y
