"""Clocks and timed windows: wall-clock and CPU time, the thread count, and windows of relaxation
steps alternated with their bound so that both see the same machine load."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch

from eqprop.relaxation.fixed import FixedSteps


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


def warm_start(net, batch: int, eps: float) -> tuple[torch.Generator, torch.Tensor, torch.Tensor]:
    """A seeded generator, the drive of a random input batch and a state warmed up by 10
    free steps (inside [0, 1]), for timing steps of ``net``."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, net.n_input, generator=g).to(net.device, net.dtype)
    base = net.input_drive(x)
    s = net.zero_state(batch)
    FixedSteps(eps, 10).relax(net, s, base)
    return g, base, s


Times = list[tuple[float, float]]  # (wall, cpu) seconds per window


def alternate(
    now: Callable[[], tuple[float, float]],
    repeats: int,
    window: int,
    steps: Callable[[], None],
    alone: list[Callable[[], None]],
) -> list[Times]:
    """``repeats`` rounds of one call of ``steps`` (``window`` relaxation steps), then
    ``window`` calls of each of ``alone`` in turn, each timed: the times of ``steps`` and of
    each of ``alone``, per round. Alternating makes all see the same machine load."""
    times: list[Times] = [[] for _ in range(1 + len(alone))]
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


def ms_per_step(times: Times, window: int, k: int) -> float:
    """The median window of ``times`` in ms per step, by clock ``k`` (0 wall, 1 CPU)."""
    return statistics.median(t[k] for t in times) / window * 1e3


def step_over_bound(steps: Times, bounds: Times, window: int, k: int) -> dict[str, float]:
    """ms per step, its bound and their ratio by clock ``k``: the ratio is the median of the
    per-round ratios (each pair saw the same load)."""
    pairs = zip(steps, bounds, strict=True)
    return {
        "ms_per_step": ms_per_step(steps, window, k),
        "lower_bound_ms": ms_per_step(bounds, window, k),
        "step_over_bound": statistics.median(a[k] / max(b[k], 1e-12) for a, b in pairs),
    }
