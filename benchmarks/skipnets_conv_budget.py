"""The CPU cost of the ConvNet grid of Im, Patil & Branson, "Are skip connections necessary for
biologically plausible learning rules?", measured one training batch at a time.

For each (rule, architecture, activation, depth) of the paper's ConvNet grid (the ``full``
scale of ``eqprop reproduce skipnets``: BP, FA and DTP on ConvNet and DenseConvNet, sigmoid
depths 3-7 and ReLU depths 5-10, 16 x depth channels), this builds the network and rule as a
run does, warms up on a batch of 2 examples, then times a training batch of 128 random
MNIST-shaped examples (the rule's update, Adam with L2 1e-5) in process CPU time, one torch
thread (``--batches N``: the least of N timed batches, steadier on a loaded machine). Each
measurement is appended to ``--out`` (JSON lines) as soon as it is taken, so a stopped
measurement goes on where it was; the cheapest configurations run first.

``--estimate`` reads ``--out`` and prints the grid's cost: per configuration, seconds per
batch x 2,344 batches per run (the 300k-example cap every ConvNet run reaches, evaluations
not counted) x its runs (3 learning rates; 3 seeds at the shallowest and deepest depth, 1
between), summed per rule and architecture; configurations not measured are named::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/skipnets_conv_budget.py --out budget.jsonl
    PYTHONPATH=. python benchmarks/skipnets_conv_budget.py --out budget.jsonl --estimate
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from eqprop.baselines import ArchitectureConfig, FeedforwardNetwork, make_rule
from eqprop.errors import EqpropError
from eqprop.experiments.skipnets.protocol import PROTOCOLS, RULE_NAMES, planned_runs

#: the paper's ConvNet pair
CONV = ("ConvNet", "DenseConvNet")
BATCH = 128
#: batches of a ConvNet run: the 300k-example cap of the full scale at batch 128
BATCHES_PER_RUN = -(-PROTOCOLS["full"].max_examples["conv"] // BATCH)


def grid() -> dict[tuple[str, str, str, int], int]:
    """(rule, architecture, activation, depth) -> its runs in the full scale's ConvNet grid."""
    runs: dict[tuple[str, str, str, int], int] = {}
    for rule, arch, act, depth, _, _ in planned_runs(PROTOCOLS["full"]):
        if arch in CONV:
            runs[(rule, arch, act, depth)] = runs.get((rule, arch, act, depth), 0) + 1
    return runs


def _work(key: tuple[str, str, str, int]) -> float:
    """A rough order of the cost, to measure the cheapest first: 16 x depth channels make a
    layer cost depth^2, so a ConvNet depth^3 and a DenseConvNet (depth x more input channels)
    depth^4; DTP adds its inverses."""
    rule, arch, _, depth = key
    return depth**3 * (depth if arch == "DenseConvNet" else 1) * (3 if rule == "DTP" else 1)


def batch_seconds(
    rule: str,
    architecture: str,
    activation: str,
    depth: int,
    channels_per_depth: int = 16,
    batches: int = 1,
) -> float:
    """Process CPU seconds of a training batch of 128 (after a warm-up batch of 2): the least
    of ``batches`` timed batches, the reading other jobs on the machine disturb least."""
    arch = ArchitectureConfig(
        architecture, depth, activation, channels_per_depth=channels_per_depth
    )
    network = FeedforwardNetwork(arch, (1, 28, 28), 10, seed=0)
    learner = make_rule(rule, network, seed=0)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3, weight_decay=1e-5)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(BATCH, 784, generator=g), torch.randint(0, 10, (BATCH,), generator=g)

    def step(n: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        learner.compute_gradients(x[:n], y[:n])
        optimizer.step()

    step(2)
    least = math.inf
    for _ in range(batches):
        start = time.process_time()
        step(BATCH)
        least = min(least, time.process_time() - start)
    return least


def read_measurements(
    path: Path, channels_per_depth: int = 16
) -> dict[tuple[str, str, str, int], float]:
    """The measurements in ``path`` at ``channels_per_depth`` (none if it does not exist)."""
    if not path.exists():
        return {}
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            m = json.loads(line)
            if m["channels_per_depth"] == channels_per_depth:
                out[(m["rule"], m["architecture"], m["activation"], m["depth"])] = m["cpu_s"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise EqpropError(f"{path} line {number} is not a measurement; move it away") from None
    return out


def estimate(measured: dict[tuple[str, str, str, int], float]) -> str:
    """The grid's CPU hours per rule and architecture, from the measured configurations."""
    runs = grid()
    lines = ["| | " + " | ".join(CONV) + " |", "|---|---:|---:|"]
    total = 0.0
    for rule in RULE_NAMES:
        cells = []
        for arch in CONV:
            keys = [k for k in runs if k[:2] == (rule, arch)]
            seconds = sum(measured[k] * BATCHES_PER_RUN * runs[k] for k in keys if k in measured)
            total += seconds / 3600
            missing = sum(k not in measured for k in keys)
            note = f" ({missing} configurations not measured)" if missing else ""
            cells.append(f"{seconds / 3600:,.0f} CPU h{note}")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    missing = sorted(k for k in runs if k not in measured)
    lines.append(
        f"In all {total:,.0f} CPU hours for {sum(runs.values())} runs"
        + (f"; not measured: {', '.join(' '.join(map(str, k)) for k in missing)}" * bool(missing))
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure the configurations not yet in ``--out``, or print the estimate from it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines of measurements")
    parser.add_argument("--estimate", action="store_true", help="print the grid's cost")
    parser.add_argument("--max-depth", type=int, default=10, help="measure depths up to this")
    parser.add_argument(
        "--only",
        action="append",
        metavar="RULE-ARCHITECTURE-ACTIVATION-DEPTH",
        help="measure only these configurations (e.g. DTP-DenseConvNet-relu-10; repeatable)",
    )
    parser.add_argument(
        "--batches",
        type=int,
        default=1,
        help="time this many batches per configuration and keep the least (default 1)",
    )
    parser.add_argument("--channels-per-depth", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        measured = read_measurements(args.out, args.channels_per_depth)
        if args.estimate:
            print(estimate(measured))
            return
        names = {"-".join(map(str, key)): key for key in grid()}
        unknown = [name for name in args.only or () if name not in names]
        if unknown:
            raise EqpropError(
                f"--only {unknown[0]} is not a configuration of the grid; names look like "
                "DTP-DenseConvNet-relu-10 (rules BP, FA, DTP; ConvNet or DenseConvNet; sigmoid "
                "depths 3-7, relu 5-10)"
            )
        if args.batches < 1:
            raise EqpropError(f"--batches must be at least 1, got {args.batches}")
        chosen = {names[name] for name in args.only} if args.only else set(grid())
        torch.set_num_threads(1)
        todo = sorted(
            (k for k in chosen if k not in measured and k[3] <= args.max_depth), key=_work
        )
        for key in todo:
            seconds = batch_seconds(
                *key, channels_per_depth=args.channels_per_depth, batches=args.batches
            )
            record = dict(zip(("rule", "architecture", "activation", "depth"), key, strict=True))
            record.update(
                cpu_s=round(seconds, 4),
                batches=args.batches,
                channels_per_depth=args.channels_per_depth,
                processor=platform.processor() or platform.machine(),
                torch=torch.__version__,
            )
            with args.out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{' '.join(map(str, key))}: {seconds:.2f} s per batch", flush=True)
    except (EqpropError, OSError) as exc:
        sys.exit(f"skipnets_conv_budget: {exc}")


if __name__ == "__main__":
    main()
