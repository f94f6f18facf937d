"""How fast the relaxation engine is, measured against two references in the same run.

For each preset, at the paper's settings (batch 20, eps 0.5, 500 free + 8 clamped steps):

- **ms per relaxation step** of a fixed-step free phase
  (:class:`eqprop.relaxation.fixed.FixedSteps`; on CUDA the captured graph,
  :class:`eqprop.relaxation.cuda_graph.CudaGraphs`, that training uses);
- its **matmul lower bound**: the faster of the same products alone
  (:meth:`Network.product_plan`: same shapes, same weight tensors, ``addmm_`` into
  preallocated buffers) and one dense product per stored block and direction, timed
  alternately with the steps so all see the same machine load; the ratio is the median of
  the per-repeat ratios (each repeat's bound the faster of its two);
- **s per training batch** (:meth:`eqprop.training.Trainer.train_batch`: free and clamped
  phases with the preset's nudging, estimate, update, eq. 2 rates) and the projected
  **s per epoch** of 50,000 examples;
- the **naive formulation** (:mod:`eqprop.reference`: one masked dense ``N x N`` matrix over
  all neurons, per-example outer products) timed on the same batches, interleaved with ours,
  and the **speedup** naive / ours. The naive engine is not the authors' code: it is 2-3x
  slower than it (:data:`NAIVE_ENGINE`), so the speedup overstates the speedup over the
  authors' code by that factor;
- **peak resident memory** (``ru_maxrss``) of a short training run on random data of MNIST
  shape (50,000 examples) at batch 20, in a fresh subprocess started before this process
  allocates anything large: on Linux a child's ``ru_maxrss`` starts from its parent's
  resident size at the fork, so a late probe would report the parent. ``VmHWM`` (the child's
  own high-water mark) is recorded as a cross-check;
- per storage layout (``blocks``, ``dense``) the step, its bound, how many of its products
  run as ``torch.sparse`` CSR products, and the bound of the unsplit plan (one dense product
  per stored block and direction), which shows what layer-pair splitting and CSR save;
- with ``--conv``, ms per relaxation step of the conv networks (:data:`CONV_NETWORKS`:
  the ``conv-mnist`` preset's and Ernoult et al.'s wider MNIST one, batch 32) against
  their bound, the same step's ``conv2d``, ``conv_transpose2d`` and matrix products alone
  (:func:`conv_step_timing`);
- once per run (CPU, with presets to time), the fixed cost of a product call measured on
  this machine (:func:`measure_call_costs`) beside the constants the plan's cost model was
  calibrated with (:data:`eqprop.network.DENSE_CALL_COST`,
  :data:`~eqprop.network.CSR_CALL_COST`), so a user on another machine sees whether the
  model fits it.

``eqprop bench`` calls :func:`main`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from eqprop import config as cfg
from eqprop import network, reference
from eqprop.conv import ConvBlock, ConvNetwork
from eqprop.conv import preset as conv_preset
from eqprop.errors import EqpropError
from eqprop.network import Product
from eqprop.relaxation.cuda_graph import CudaGraphs
from eqprop.relaxation.fixed import FixedSteps

if TYPE_CHECKING:
    from eqprop.topology import Topology

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
        call_cost_rounds: rounds of :func:`measure_call_costs` (CPU only).
        conv: also time the conv networks' step (:data:`CONV_NETWORKS`,
            :func:`conv_step_timing`).
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


# -- helpers ----------------------------------------------------------------------------------
def clock(device: torch.device) -> Callable[[], tuple[float, float]]:
    """Wall-clock and process CPU time. CPU time counts only this process's work, so on a
    machine shared with other jobs it is the steadier measure (single-threaded runs)."""

    def now() -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter(), time.process_time()

    return now


def since(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """The (wall, CPU) seconds between two readings of :func:`clock`."""
    return end[0] - start[0], end[1] - start[1]


def choose_threads(requested: int, device: torch.device) -> tuple[int, dict[int, float]]:
    """Set torch's thread count: ``requested``, or (0) the fastest of 1..cores on a probe
    product of the paper's largest step shape (20 x 1510 by 1510 x 1510), timed here because a
    loaded machine can make more OpenMP threads several times slower, not faster."""
    if requested > 0 or device.type == "cuda":
        torch.set_num_threads(max(requested, 1) if requested > 0 else torch.get_num_threads())
        return torch.get_num_threads(), {}
    probe: dict[int, float] = {}
    g = torch.Generator().manual_seed(0)
    a, w = torch.rand(20, 1510, generator=g), torch.rand(1510, 1510, generator=g)
    out = torch.zeros(20, 1510)
    for threads in range(1, (os.cpu_count() or 1) + 1):
        torch.set_num_threads(threads)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                out.addmm_(a, w)
            times.append((time.perf_counter() - start) / 10 * 1e3)
        probe[threads] = statistics.median(times)
    best = min(probe, key=probe.get)
    torch.set_num_threads(best)
    return best, probe


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


def _random_data(n: int, n_in: int, n_out: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, n_in, generator=g).to(device)
    y = torch.randint(0, n_out, (n,), generator=g).to(device)
    return x, y


# -- measurements -----------------------------------------------------------------------------
def _products_alone(products, batch: int, net, g: torch.Generator) -> Callable[[], None]:
    """The products of a step on preallocated buffers, nothing else: dense ones as ``addmm_``
    of the same shapes with the same weight views, CSR ones as ``out^T += W^T s^T`` with a
    contiguous right-hand side (what a step multiplies, without its transposing copies)."""
    work = []
    for p in products:
        n_rows, n_cols = p.rows.stop - p.rows.start, p.cols.stop - p.cols.start
        if p.sparse is None:
            a = torch.rand(batch, n_rows, generator=g).to(net.device, net.dtype)
            out = torch.zeros(batch, n_cols, dtype=net.dtype, device=net.device)
            work.append((a, p.weight, out))
        else:
            a = torch.rand(n_rows, batch, generator=g).to(net.device, net.dtype)
            out = torch.zeros(n_cols, batch, dtype=net.dtype, device=net.device)
            work.append((p.csr(), a, out))

    def products_alone() -> None:
        for first, second, out in work:
            out.addmm_(first, second)

    return products_alone


def whole_block_products(net: network.Network) -> list[Product]:
    """One dense product per stored block and direction, as before layer-pair splitting and
    CSR: the reference that shows what the plan's splitting saves."""
    return [
        product
        for block, w in zip(net.blocks, net.weights, strict=True)
        if not block.is_input
        for product in block.whole_products(w)
    ]


def _same_products(a: list[Product], b: list[Product]) -> bool:
    """Whether two product lists run the same products (same slices, form and weights)."""

    def key(p: Product) -> tuple:
        w = p.weight
        return (p.rows, p.cols, p.sparse is None, w.data_ptr(), tuple(w.shape), w.stride())

    return len(a) == len(b) and all(key(p) == key(q) for p, q in zip(a, b, strict=True))


def _warm_start(net, batch: int, eps: float) -> tuple[torch.Generator, torch.Tensor, torch.Tensor]:
    """A seeded generator, the drive of a random input batch and a state warmed up by 10
    free steps (inside [0, 1]), for timing steps of ``net``."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, net.n_input, generator=g).to(net.device, net.dtype)
    base = net.input_drive(x)
    s = net.zero_state(batch)
    FixedSteps(eps, 10).relax(net, s, base)
    return g, base, s


_Times = list[tuple[float, float]]  # (wall, cpu) seconds per window


def _alternate(
    now: Callable[[], tuple[float, float]],
    repeats: int,
    window: int,
    steps: Callable[[], None],
    alone: list[Callable[[], None]],
) -> list[_Times]:
    """``repeats`` rounds of one call of ``steps`` (``window`` relaxation steps), then
    ``window`` calls of each of ``alone`` in turn, each timed: the times of ``steps`` and of
    each of ``alone``, per round. Alternating makes all see the same machine load."""
    times: list[_Times] = [[] for _ in range(1 + len(alone))]
    for _ in range(repeats):
        start = now()
        steps()
        end = now()
        times[0].append(since(start, end))
        for run, spent in zip(alone, times[1:], strict=True):
            start = end
            for _ in range(window):
                run()
            end = now()
            spent.append(since(start, end))
    return times


def _ms_per_step(times: _Times, window: int, k: int) -> float:
    """The median window of ``times`` in ms per step, by clock ``k`` (0 wall, 1 CPU)."""
    return statistics.median(t[k] for t in times) / window * 1e3


def _step_over_bound(steps: _Times, bounds: _Times, window: int, k: int) -> dict[str, float]:
    """ms per step, its bound and their ratio by clock ``k``: the ratio is the median of the
    per-round ratios (each pair saw the same load)."""
    pairs = zip(steps, bounds, strict=True)
    return {
        "ms_per_step": _ms_per_step(steps, window, k),
        "lower_bound_ms": _ms_per_step(bounds, window, k),
        "step_over_bound": statistics.median(a[k] / max(b[k], 1e-12) for a, b in pairs),
    }


def step_timing(
    net: network.Network, batch: int, options: BenchOptions, eps: float = PAPER["eps"]
) -> dict:
    """ms per relaxation step, per step of its products alone and per step of one dense
    product per stored block (:func:`whole_block_products`; repeats alternate between the
    three, so all see the same machine load). The bound of a repeat is the faster of the
    two product timings. The steps are free steps of :class:`FixedSteps` (on CUDA its
    captured graph, :class:`CudaGraphs`, as in training)."""
    now = clock(net.device)
    g, base, s = _warm_start(net, batch, eps)
    window = options.step_window
    relaxer = CudaGraphs(eps, window) if net.device.type == "cuda" else FixedSteps(eps, window)
    if net.device.type == "cuda":
        relaxer.relax(net, s, base)  # capture the graph outside the timed windows
    plan, whole = net.product_plan(), whole_block_products(net)
    products = _products_alone(plan, batch, net, g)
    # the plan may be exactly the unsplit products: then their timing is the plan's
    unsplit = None if _same_products(plan, whole) else _products_alone(whole, batch, net, g)

    products()
    if unsplit is not None:
        unsplit()
    alone = [products] if unsplit is None else [products, unsplit]
    steps, plans, *rest = _alternate(
        now, options.repeats, window, lambda: relaxer.relax(net, s, base), alone
    )
    wholes = rest[0] if rest else plans
    bounds = [(min(p[0], w[0]), min(p[1], w[1])) for p, w in zip(plans, wholes, strict=True)]

    def timing(k: int) -> dict[str, float]:
        return {
            **_step_over_bound(steps, bounds, window, k),
            "plan_bound_ms": _ms_per_step(plans, window, k),
            "whole_blocks_bound_ms": _ms_per_step(wholes, window, k),
        }

    return {
        **timing(0),
        "cpu": timing(1),
        "products": len(plan),
        "csr_products": sum(p.sparse is not None for p in plan),
    }


_CONV_MNIST = cfg.from_dict(cfg.preset(conv_preset.PRESET)).topology
#: The conv networks ``--conv`` times (input, conv blocks, dense sizes): the ``conv-mnist``
#: preset's, and Ernoult et al.'s MNIST widths ("Updates of Equilibrium Prop Match Gradients
#: of Backprop Through Time in an RNN with Static Input": 32 and 64 maps) on the same layout.
CONV_NETWORKS = {
    "conv-mnist": (_CONV_MNIST.input_shape, _CONV_MNIST.conv_blocks(), _CONV_MNIST.sizes),
    "conv-32-64": ((1, 28, 28), (ConvBlock(32, 5, pool=2), ConvBlock(64, 5, pool=2)), (10,)),
}
#: The conv step's batch (the ``conv-mnist`` preset's).
CONV_BATCH = 32


def _convolutions_alone(net, batch: int, g: torch.Generator) -> Callable[[], None]:
    """A conv network's step without its pooling, unpooling, copies and finish: per
    state-state conv block one ``conv2d`` and one ``conv_transpose2d`` of the step's shapes
    (the latter on maps of the convolution's size before pooling), per dense pair its two
    ``addmm_``, on preallocated random inputs with the network's weights."""
    work = []
    for k, block in enumerate(net.blocks[1:], start=1):
        w = net.weights[k]
        src = torch.rand(batch, *net.shapes[k], generator=g).to(net.device, net.dtype)
        maps = torch.nn.functional.conv2d(src, w, padding=block.padding)
        work.append(partial(torch.nn.functional.conv2d, src, w, padding=block.padding))
        work.append(partial(torch.nn.functional.conv_transpose2d, maps, w, padding=block.padding))
    for k in range(len(net.blocks), net.n_layers - 1):
        w = net.weights[k]
        for rows, cols, weight in ((w.shape[0], w.shape[1], w), (w.shape[1], w.shape[0], w.T)):
            a = torch.rand(batch, rows, generator=g).to(net.device, net.dtype)
            out = torch.zeros(batch, cols, dtype=net.dtype, device=net.device)
            work.append(partial(out.addmm_, a, weight))

    def convolutions_alone() -> None:
        for run in work:
            run()

    return convolutions_alone


def conv_step_timing(
    net: ConvNetwork,
    batch: int = CONV_BATCH,
    options: BenchOptions | None = None,
    eps: float = 0.5,
) -> dict[str, Any]:
    """ms per relaxation step of a :class:`~eqprop.conv.ConvNetwork` (free steps of
    :class:`FixedSteps`, on CUDA its graph) against its bound, the same step's convolutions
    and matrix products alone (:func:`_convolutions_alone`); windows alternate, the ratio is
    the median of the per-window ratios, as in :func:`step_timing`."""
    options = options or BenchOptions()
    now = clock(net.device)
    g, base, s = _warm_start(net, batch, eps)
    window = options.step_window
    relaxer = CudaGraphs(eps, window) if net.device.type == "cuda" else FixedSteps(eps, window)
    relaxer.relax(net, s, base)  # warm-up (and the graph's capture) outside the windows
    bound = _convolutions_alone(net, batch, g)
    bound()
    steps, bounds = _alternate(
        now, options.repeats, window, lambda: relaxer.relax(net, s, base), [bound]
    )
    return {
        **_step_over_bound(steps, bounds, window, 0),
        "cpu": _step_over_bound(steps, bounds, window, 1),
    }


def conv_benchmark(options: BenchOptions) -> list[dict[str, Any]]:
    """:func:`conv_step_timing` of every network of :data:`CONV_NETWORKS`, float32, batch
    :data:`CONV_BATCH`, on ``options.device``."""
    out = []
    for name, (shape, blocks, dense) in CONV_NETWORKS.items():
        net = ConvNetwork(shape, blocks, dense, seed=0, device=options.device)
        out.append(
            {
                "network": name,
                "shapes": [list(s) for s in net.shapes],
                "batch": CONV_BATCH,
                "dtype": "float32",
                **conv_step_timing(net, CONV_BATCH, options),
            }
        )
    return out


#: What :func:`measure_call_costs` times: dense products of these (rows, cols) shapes, in
#: both orientations of the stored block, and CSR products of the first 11 at these densities.
CALL_COST_SHAPES = (
    (10, 10),
    (10, 100),
    (100, 10),
    (100, 100),
    (10, 500),
    (500, 10),
    (100, 500),
    (500, 100),
    (300, 300),
    (500, 500),
    (510, 510),
    (1000, 1000),
    (1510, 1510),
)
CALL_COST_DENSITIES = (0.01, 0.03, 0.09, 0.3)


def _call_cases(batch: int) -> list[tuple[str, int, Callable[[], None]]]:
    """(kind, work, one product call) per case, each call exactly as :meth:`Network.stepper`
    runs it (work: the area of a dense product, the non-zeros of a CSR one)."""
    g = torch.Generator().manual_seed(0)
    n = 2400
    s, h = torch.rand(batch, n, generator=g), torch.zeros(batch, n)
    store = torch.rand(n, n, generator=g) - 0.5  # a stored block, contiguous

    def parts(r: int, c: int, transposed: bool):
        # the weights as a view of a stored block, or as the transpose of one (a product's
        # other direction); the output and state columns as views of h and s
        w = (
            store[200 : 200 + c, 300 : 300 + r].T
            if transposed
            else store[200 : 200 + r, 300 : 300 + c]
        )
        return w, h[:, 700 : 700 + c], s[:, 10 : 10 + r]

    cases = []
    for r, c in CALL_COST_SHAPES:
        for transposed in (False, True):
            w, out, state = parts(r, c, transposed)
            cases.append(("dense", r * c, lambda out=out, state=state, w=w: out.addmm_(state, w)))
    for r, c in CALL_COST_SHAPES[:11]:
        for density in CALL_COST_DENSITIES:
            for transposed in (False, True):
                w, out, state = parts(r, c, transposed)
                mask = (torch.rand(r, c, generator=g) < density).to(w.dtype)
                mask[0, 0] = 1.0
                pattern = Product.sparse_of(w, mask, store)
                csr = Product(slice(0, r), slice(0, c), w, store, pattern).csr()
                buffer = torch.empty(r, batch)

                def call(out=out, state=state, csr=csr, buffer=buffer) -> None:
                    buffer.copy_(state.T)
                    out.add_(torch.mm(csr, buffer).T)

                cases.append(("csr", int(mask.count_nonzero()), call))
    return cases


def _fit(work: list[int], seconds: list[float]) -> tuple[float, float]:
    """``seconds = fixed + slope * work``, least squares in relative error."""
    x, t = np.asarray(work, dtype=float), np.asarray(seconds, dtype=float)
    a = np.stack([np.ones_like(x), x], 1) / t[:, None]
    (fixed, slope), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    return float(fixed), float(slope)


def measure_call_costs(rounds: int = 10, batch: int = network.COST_BATCH) -> dict[str, Any]:
    """The plan's cost model measured on this machine (CPU, the current torch threads):
    every case of :func:`_call_cases` timed in process CPU time, ``rounds`` interleaved
    rounds, the least time per call of each; then ``time = fixed + slope * work`` fitted
    separately for dense and CSR calls, and the fixed times and the CSR slope expressed in
    the dense slope (one multiply-add per example at ``batch``), as the constants of
    :mod:`eqprop.network` are. The calibration of those constants ran this with 40 rounds."""
    cases = _call_cases(batch)
    best = [float("inf")] * len(cases)
    for _ in range(rounds):
        for i, (kind, work, call) in enumerate(cases):
            madds = work * batch * (network.SPARSE_COST if kind == "csr" else 1.0)
            calls = max(10, min(1000, int(1e7 / (madds + 2e5))))
            call()
            t0 = time.process_time()
            for _ in range(calls):
                call()
            best[i] = min(best[i], (time.process_time() - t0) / calls)
    fits = {}
    for kind in ("dense", "csr"):
        chosen = [i for i, case in enumerate(cases) if case[0] == kind]
        fits[kind] = _fit([cases[i][1] for i in chosen], [best[i] for i in chosen])
    (dense_fixed, unit), (csr_fixed, per_nnz) = fits["dense"], fits["csr"]
    return {
        "batch": batch,
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "clock": "process CPU time",
        "dense_call": dense_fixed / unit,
        "csr_call": csr_fixed / unit,
        "sparse_cost": per_nnz / unit,
        "dense_call_us": dense_fixed * 1e6,
        "csr_call_us": csr_fixed * 1e6,
        "ns_per_multiply_add_per_example": unit * 1e9,
        "calibrated": {
            "dense_call": network.DENSE_CALL_COST,
            "csr_call": network.CSR_CALL_COST,
            "sparse_cost": network.SPARSE_COST,
            "batch": network.COST_BATCH,
        },
    }


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
    x, y = _random_data(n_batches * b, sizes[0], sizes[-1], device)
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


def memory_probe(config: cfg.RunConfig, examples: int, batches: int = 2) -> dict[str, Any]:
    """Peak resident memory of a short training run in a fresh interpreter: random data of
    ``examples`` x input size (MNIST shape at the default), the preset's network, persistent
    particles for every example, ``batches`` batches (free steps capped at 50: memory does
    not depend on them)."""
    probe_config = config.override({"free.steps": min(config.free.steps, 50)})
    code = (
        "import json, sys; from eqprop.bench.engine import _memory_child; "
        "print(json.dumps(_memory_child(sys.stdin.read(), int(sys.argv[1]), int(sys.argv[2]), "
        "int(sys.argv[3]))))"
    )
    parent_rss = _status_mib("VmRSS")
    done = subprocess.run(
        [sys.executable, "-c", code, str(examples), str(batches), str(torch.get_num_threads())],
        input=probe_config.to_toml(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise EqpropError(f"the memory probe failed: {tail[0]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(
        batches=batches,
        free_steps=probe_config.free.steps,
        examples=examples,
        parent_rss_at_start_mib=parent_rss,
    )
    return result


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB; NaN off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return float("nan")  # pragma: no cover


def _memory_child(config_toml: str, examples: int, batches: int, threads: int) -> dict:
    from eqprop.runs import build_network, build_topology, build_trainer

    torch.set_num_threads(threads)
    config = cfg.from_dict(cfg.parse_toml(config_toml, "memory probe config"))
    device = torch.device(config.train.device)
    baseline = _status_mib("VmRSS")
    topology = build_topology(config)
    net = build_network(config, topology)
    trainer = build_trainer(config, net, examples)
    sizes, b = config.topology.sizes, config.train.batch_size
    x, y = _random_data(examples, sizes[0], sizes[-1], device)
    order = torch.randperm(examples, generator=torch.Generator().manual_seed(0)).to(device)
    for i in range(batches):
        idx = order[i * b : (i + 1) * b]
        trainer.train_batch(x[idx], y[idx], idx)
    # Linux reports ru_maxrss in KiB
    out = {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mib": baseline,
        "vm_hwm_mib": _status_mib("VmHWM"),
    }
    if device.type == "cuda":
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# -- the whole benchmark ----------------------------------------------------------------------
def run_benchmark(
    presets: list[str | tuple[str, cfg.RunConfig]],
    options: BenchOptions,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Measure every preset (a preset name, or ``(label, RunConfig)``); returns the JSON
    record (see the module docs)."""
    from eqprop.runs import build_network, build_topology

    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EqpropError("--device cuda requested but no CUDA GPU is available; use cpu")
    load_before = os.getloadavg()
    threads, probe = choose_threads(options.threads, device)
    log(f"torch threads: {threads}" + (f" (probe ms: {probe})" if probe else ""))
    call_costs = None
    if device.type == "cpu" and presets:  # the dense plan's cost model, a CPU one
        log("measuring the fixed cost of a product call (the plan's cost model)")
        call_costs = measure_call_costs(options.call_cost_rounds)
    record: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": str(device),
            "torch_threads": threads,
            "thread_probe_ms": probe,
            "load_average_before": list(load_before),
        },
        "settings": {
            **PAPER,
            "free_steps": options.steps if options.steps is not None else PAPER["free_steps"],
            "batches": options.batches,
            "naive_batches": options.naive_batches,
            "epoch_examples": EPOCH_EXAMPLES,
            "dtype": "float32",
        },
        "naive_engine": NAIVE_ENGINE,
        "cost_model": call_costs,
        "presets": [],
    }
    configs = []
    for item in presets:
        label, base = (item, item) if isinstance(item, str) else item
        configs.append((label, bench_config(base, options)))
    memory: dict[str, dict] = {}
    if options.memory:  # first, while this process is still small (see the module docs)
        for label, config in configs:
            log(f"[{label}] peak memory (subprocess)")
            memory[label] = memory_probe(config, options.memory_examples)
    for label, config in configs:
        log(f"[{label}] building topology")
        topology = build_topology(config)
        net = build_network(config, topology)
        entry: dict[str, Any] = {
            "preset": label,
            "sizes": list(config.topology.sizes),
            "topology": config.topology.family,
            "nudging": config.nudged.nudging,
            "estimator": config.estimator.kind,
            "edges": int(len(topology.edges)),
            "neurons": topology.n_neurons,
            "layout": net.layout,
            "blocks": [[b.row_group, b.col_group] for b in net.blocks],
        }
        log(f"[{label}] timing relaxation steps (layout {net.layout})")
        batch, eps = config.train.batch_size, config.free.eps
        steps = step_timing(net, batch, options, eps=eps)
        cpu = steps.pop("cpu")
        entry.update(steps)
        if options.layouts:
            entry["layouts"] = {}
            for layout in ("blocks", "dense"):
                other = build_network(config.override({"train.layout": layout}), topology)
                entry["layouts"][layout] = step_timing(other, batch, options, eps)
        log(f"[{label}] timing training batches, ours and naive")
        training = training_timing(config, topology, options)
        entry["cpu"] = {**cpu, **training.pop("cpu")}
        entry.update(training)
        if label in memory:
            entry["memory"] = memory[label]
        entry["targets"] = _targets(label, entry)
        record["presets"].append(entry)
        log(format_row(entry))
    if options.conv:
        log("timing the conv networks' relaxation step")
        record["conv"] = conv_benchmark(options)
        for entry in record["conv"]:
            log(format_conv_row(entry))
    record["machine"]["load_average_after"] = list(os.getloadavg())
    return record


def _targets(label: str, entry: dict) -> list[dict]:
    """The issue's targets, judged on wall-clock time and, as a second reading that other
    jobs on the machine disturb less, on process CPU time."""
    checks = [("relaxation step / matmul lower bound", "step_over_bound", "<=", BOUND_TARGET)]
    if label in SPEEDUP_TARGETS:
        checks.append(
            ("training batch speedup over naive", "speedup", ">=", SPEEDUP_TARGETS[label])
        )
    out = []
    for what, key, sense, goal in checks:
        for clock, source in (("wall", entry), ("cpu", entry["cpu"])):
            value = source[key]
            out.append(
                {
                    "what": what,
                    "clock": clock,
                    "target": f"{sense} {goal}",
                    "measured": round(value, 3),
                    "met": value <= goal if sense == "<=" else value >= goal,
                }
            )
    return out


# -- output -----------------------------------------------------------------------------------
HEADER = (
    f"{'preset':16s} {'layout':6s} {'ms/step':>8s} {'bound ms':>8s} {'ratio':>6s} "
    f"{'s/batch':>8s} {'s/epoch':>8s} {'naive s/b':>9s} {'speedup':>8s} {'cpu spd':>8s} "
    f"{'peak MiB':>8s}"
)


def format_row(entry: dict) -> str:
    """One table row of a preset."""
    memory = entry.get("memory", {}).get("peak_rss_mib")
    mem = f"{memory:8.0f}" if memory is not None else f"{'-':>8s}"
    return (
        f"{entry['preset']:16s} {entry['layout']:6s} {entry['ms_per_step']:8.3f} "
        f"{entry['lower_bound_ms']:8.3f} {entry['step_over_bound']:6.2f} "
        f"{entry['s_per_batch']:8.3f} {entry['s_per_epoch']:8.0f} "
        f"{entry['naive']['s_per_batch']:9.2f} {entry['speedup']:7.1f}x "
        f"{entry['cpu']['speedup']:7.1f}x {mem}"
    )


def format_table(record: dict) -> str:
    """The human-readable table of a benchmark record."""
    m, s = record["machine"], record["settings"]
    lines = [
        f"eqprop bench: torch {m['torch']}, device {m['device']}, {m['cpu_count']} CPU cores, "
        f"torch threads {m['torch_threads']}, load average {m['load_average_before'][0]:.2f} "
        f"before / {m['load_average_after'][0]:.2f} after",
    ]
    if record["presets"]:
        lines += [
            f"settings: batch {s['batch_size']}, eps {s['eps']}, {s['free_steps']} free + "
            f"{s['nudged_steps']} nudged steps, float32; epoch = {s['epoch_examples']} "
            f"examples; {s['batches']} timed batches (ours), {s['naive_batches']} (naive)",
            "wall-clock columns; 'cpu spd': the speedup in process CPU time (details below)",
            HEADER,
            *(format_row(e) for e in record["presets"]),
            f"'speedup', 'cpu spd': naive / ours, where {record['naive_engine']}",
            "",
            format_call_costs(record.get("cost_model")),
        ]
    for e in record["presets"]:
        c = e["cpu"]
        lines.append(
            f"{e['preset']} ({e['nudging']} nudging, {e['estimator']}): {e['naive']['note']}; "
            f"estimate + update {e['update_ms']:.1f} ms/batch"
        )
        lines.append(
            f"  CPU time: {c['ms_per_step']:.3f} ms/step, bound {c['lower_bound_ms']:.3f} ms, "
            f"ratio {c['step_over_bound']:.2f}, {c['s_per_batch']:.3f} s/batch, "
            f"{c['s_per_epoch']:.0f} s/epoch, naive {c['naive_s_per_batch']:.2f} s/batch, "
            f"speedup {c['speedup']:.1f}x"
        )
        for name, t in e.get("layouts", {}).items():
            lines.append(
                f"  layout {name:6s}: {t['ms_per_step']:.3f} ms/step (CPU "
                f"{t['cpu']['ms_per_step']:.3f}), bound {t['lower_bound_ms']:.3f} ms (CPU "
                f"{t['cpu']['lower_bound_ms']:.3f}), {t['products']} products "
                f"({t['csr_products']} CSR); one dense product per stored block: "
                f"{t['whole_blocks_bound_ms']:.3f} ms (CPU {t['cpu']['whole_blocks_bound_ms']:.3f})"
            )
        if "memory" in e:
            mem = e["memory"]
            lines.append(
                f"  peak RSS {mem['peak_rss_mib']:.0f} MiB (ru_maxrss; VmHWM "
                f"{mem['vm_hwm_mib']:.0f} MiB; {mem['rss_after_imports_mib']:.0f} MiB after "
                f"imports; {mem['examples']} examples, {mem['batches']} batches)"
            )
        for t in e["targets"]:
            verdict = "met" if t["met"] else "MISSED"
            lines.append(
                f"  target {t['what']} {t['target']} ({t['clock']} time): {t['measured']} {verdict}"
            )
    if "conv" in record:
        lines.append(
            f"conv networks (batch {CONV_BATCH}, float32, free steps): a step against its "
            f"convolutions and matrix products alone"
        )
        lines += [format_conv_row(e) for e in record["conv"]]
    return "\n".join(lines)


def format_conv_row(entry: dict) -> str:
    """One line of a conv network's step timing (wall clock, then process CPU time)."""
    c = entry["cpu"]
    maps = " -> ".join("x".join(map(str, shape)) for shape in entry["shapes"])
    return (
        f"  {entry['network']} ({maps}): {entry['ms_per_step']:.3f} ms/step, bound "
        f"{entry['lower_bound_ms']:.3f} ms, ratio {entry['step_over_bound']:.2f}; CPU time "
        f"{c['ms_per_step']:.3f} ms/step, bound {c['lower_bound_ms']:.3f} ms, ratio "
        f"{c['step_over_bound']:.2f}"
    )


def format_call_costs(costs: dict | None) -> str:
    """The details line of the plan's cost model: measured here against calibrated."""
    if costs is None:
        return "cost model: not measured (not on CPU; elsewhere the plan counts multiply-adds only)"
    c = costs["calibrated"]
    return (
        f"cost model (multiply-adds per example at batch {costs['batch']}, {costs['threads']} "
        f"thread{'s' * (costs['threads'] != 1)}, CPU time): a product call costs "
        f"{costs['dense_call']:,.0f} dense ({costs['dense_call_us']:.1f} us) and "
        f"{costs['csr_call']:,.0f} CSR ({costs['csr_call_us']:.1f} us) measured here, "
        f"calibrated {c['dense_call']:,.0f} and {c['csr_call']:,.0f}; a CSR non-zero "
        f"{costs['sparse_cost']:.1f}, calibrated {c['sparse_cost']:.1f}"
    )


def main(
    presets: list[str] | None = None,
    options: BenchOptions | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON record to ``out`` (if given)."""
    options = options or BenchOptions()
    record = run_benchmark(
        list(DEFAULT_PRESETS if presets is None else presets),
        options,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(record))
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {path}")
    return record
