"""The fixed cost of a product call on this machine, beside the plan's calibrated cost model."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from eqprop import product_plan
from eqprop.product_plan import Product

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


def measure_call_costs(rounds: int = 10, batch: int = product_plan.COST_BATCH) -> dict[str, Any]:
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
            madds = work * batch * (product_plan.SPARSE_COST if kind == "csr" else 1.0)
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
            "dense_call": product_plan.DENSE_CALL_COST,
            "csr_call": product_plan.CSR_CALL_COST,
            "sparse_cost": product_plan.SPARSE_COST,
            "batch": product_plan.COST_BATCH,
        },
    }
