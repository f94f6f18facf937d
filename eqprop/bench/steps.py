"""ms per relaxation step of a network against its matrix-product lower bound."""

from __future__ import annotations

from collections.abc import Callable

import torch

from eqprop import network
from eqprop.bench.settings import (
    PAPER,
    BenchOptions,
)
from eqprop.bench.timing import (
    alternate,
    clock,
    ms_per_step,
    step_over_bound,
    warm_start,
)
from eqprop.product_plan import Product
from eqprop.relaxation.cuda_graph import CudaGraphs
from eqprop.relaxation.fixed import FixedSteps


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


def step_timing(
    net: network.Network, batch: int, options: BenchOptions, eps: float = PAPER["eps"]
) -> dict:
    """ms per relaxation step, per step of its products alone and per step of one dense
    product per stored block (:func:`whole_block_products`; repeats alternate between the
    three, so all see the same machine load). The bound of a repeat is the faster of the
    two product timings. The steps are free steps of :class:`FixedSteps` (on CUDA its
    captured graph, :class:`CudaGraphs`, as in training)."""
    now = clock(net.device)
    g, base, s = warm_start(net, batch, eps)
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
    steps, plans, *rest = alternate(
        now, options.repeats, window, lambda: relaxer.relax(net, s, base), alone
    )
    wholes = rest[0] if rest else plans
    bounds = [(min(p[0], w[0]), min(p[1], w[1])) for p, w in zip(plans, wholes, strict=True)]

    def timing(k: int) -> dict[str, float]:
        return {
            **step_over_bound(steps, bounds, window, k),
            "plan_bound_ms": ms_per_step(plans, window, k),
            "whole_blocks_bound_ms": ms_per_step(wholes, window, k),
        }

    return {
        **timing(0),
        "cpu": timing(1),
        "products": len(plan),
        "csr_products": sum(p.sparse is not None for p in plan),
    }
