"""How a step of a :class:`~eqprop.network.Network` is computed: its product plan.

A step (:meth:`eqprop.network.Network.product_plan`), independent of how the weights are
stored, is a list of matrix products ``out[:, cols] += s[:, rows] @ w`` on views of the
stored blocks. A stored block runs as one dense product (per direction), or split into its
layer pairs, skipping empty pairs and running sparse pairs (on CPU) as CSR products -- e.g.
the 8.8%-dense 500 x 500 skip pair of the ICONS network C. Of the two, the block takes the
one that :func:`plan_cost` says is cheaper. On CPU that model counts, besides the
multiply-adds, the fixed cost of each product call (Python dispatch, the CSR product's set-up, the
transposing copies of :meth:`Network.stepper`), which dominates on small blocks: the
784-100x5-10 rewired network runs one dense product over its 510 x 510 block, not 30 pair
products. The model's constants are calibrated once (:data:`CSR_CALL_COST`), never measured
at run time: the plan decides the rounding of every step, and runs resume bit for bit.
Within a split, each pair runs dense or as CSR by the same model, call included
(:func:`product_cost`): a CSR call's fixed cost exceeds a dense call's by 30,500 multiply-
adds, so small sparse pairs (C's 500 x 10 skip pairs to the output) run dense. Solvers that
work layer by layer take the split of every block whatever the model picks
(:meth:`Network.pair_plan`). The input block's product is done once per batch
(:meth:`Network.input_drive`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

# The plan's cost model (:func:`plan_cost`), in multiply-adds per example at batch
# COST_BATCH: a dense product of an r x c block costs ``DENSE_CALL_COST + r * c``, a CSR
# product ``CSR_CALL_COST + SPARSE_COST * nnz``. The call costs are calibrated constants, not
# measured per process (the plan decides every step's rounding; runs must resume bit for
# bit). Measured with eqprop.bench.call_costs.measure_call_costs(rounds=40): each product exactly as
# Network.stepper runs it (dense: ``addmm_`` into a view of ``h`` from a view of ``s``, by a
# view or transposed view of a stored block; CSR: ``buffer.copy_(s_rows.T)`` then
# ``out.add_(torch.mm(csr, buffer).T)``, csr from Product.csr()), 13 block shapes from 10 x 10
# to 1510 x 1510 in both orientations and CSR densities 1-30% on 11 of them, batch 20, one
# torch thread, process CPU time (least per call over 40 interleaved rounds); then
# ``time = fixed + slope * work`` fitted in relative error, and the fixed times divided by
# the dense slope (one multiply-add per example: 0.42-0.57 ns). Seven runs on an Intel Xeon
# (family 6 model 207, AVX512, KVM guest, 2 cores; torch 2.13.0+cpu), beside two training
# jobs: dense call 4,100-6,100 (median 4,430; 1.8-3.5 us), CSR call 33,300-40,500 (median
# 34,700; 14-23 us), a CSR non-zero 4.3-4.6 (SPARSE_COST's 5.0 kept). ``eqprop bench``
# measures them again on its machine and prints them beside these constants. ICONS network
# C's split (13 dense products; its 500 x 500 skip pair CSR, both directions) is modelled 6.8%
# cheaper than its one dense product (2.13 M against 2.28 M); a CSR call above 112,900 or a
# dense call above 17,400 would flip it (tests/test_network.py guards its plan).
#: The batch at which the cost constants are expressed (the papers' batch).
COST_BATCH = 20
#: A CSR product costs about this many dense multiply-adds per stored non-zero; within a
#: split, a pair runs as CSR where ``CSR_CALL_COST + SPARSE_COST * nnz`` is below
#: ``DENSE_CALL_COST + area`` (:func:`product_cost`; on CPU only).
SPARSE_COST = 5.0
#: The fixed cost of one dense product call (``addmm_``) in a step, in multiply-adds per
#: example at batch COST_BATCH (see the comment above).
DENSE_CALL_COST = 4_500.0
#: The fixed cost of one CSR product call in a step (the transposing copy, the CSR product's
#: set-up, the transposed add), in the same units.
CSR_CALL_COST = 35_000.0


@dataclass(frozen=True)
class Block:
    """A stored weight block between groups ``rows <= cols`` (group 0 is the input).

    ``rows``/``cols`` are slices in the coordinates of their side: input indices for the
    input group, state indices otherwise.
    """

    row_group: int
    col_group: int
    rows: slice
    cols: slice

    @property
    def is_input(self) -> bool:
        """Whether the block's rows are the input layer (a constant drive, not a state)."""
        return self.row_group == 0

    @property
    def is_diagonal(self) -> bool:
        """Whether the block joins a layer group to itself (intralayer edges)."""
        return self.row_group == self.col_group

    def whole_products(self, weight: torch.Tensor) -> list[Product]:
        """The block as one dense product per direction (one for a diagonal block)."""
        products = [Product(self.rows, self.cols, weight)]
        if not self.is_diagonal:
            products.append(Product(self.cols, self.rows, weight.T))
        return products


@dataclass(frozen=True, eq=False)
class Product:
    """One matrix product of a relaxation step: ``out[:, cols] += s[:, rows] @ weight``.

    ``rows``/``cols`` are state-coordinate slices; ``weight`` is a view of a stored block
    (possibly transposed), so in-place updates of the block are seen. With ``sparse`` set,
    the product runs as a CSR product with ``weight^T``: ``sparse`` holds its fixed pattern
    (CSR row pointers, column indices, and the flat positions of the values in ``source``,
    the stored block).
    """

    rows: slice
    cols: slice
    weight: torch.Tensor
    source: torch.Tensor | None = None
    sparse: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def csr(self) -> torch.Tensor:
        """``weight^T`` as a CSR tensor with the stored block's current values."""
        crow, col, flat = self.sparse
        values = self.source.reshape(-1).index_select(0, flat)
        shape = (self.cols.stop - self.cols.start, self.rows.stop - self.rows.start)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": used as documented
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
            warnings.filterwarnings("ignore", message="Sparse invariant checks")
            return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)

    @staticmethod
    def sparse_of(view: torch.Tensor, mask: torch.Tensor, source: torch.Tensor) -> tuple:
        """The CSR pattern of ``view^T`` where ``mask^T`` is non-zero; ``view`` is a view of
        the contiguous tensor ``source``."""
        r, c = torch.nonzero(mask.T != 0, as_tuple=True)  # row-major order, as CSR needs
        offset = view.storage_offset() - source.storage_offset()
        flat = offset + c * view.stride(0) + r * view.stride(1)  # view^T[r, c] = view[c, r]
        # int32 indices: the CPU CSR product converts int64 ones at every call (measured
        # 32 against 20 us for a 500 x 500 skip pair at batch 20; the same result)
        crow = torch.zeros(mask.shape[1] + 1, dtype=torch.int32, device=mask.device)
        crow[1:] = torch.bincount(r, minlength=mask.shape[1]).cumsum(0)
        return crow, c.to(torch.int32), flat.to(torch.int64)


def add_csr_product(out: torch.Tensor, csr: torch.Tensor, src: torch.Tensor) -> None:
    """``out += src @ W`` from ``csr = W^T`` (CSR @ dense wants a contiguous right-hand side)."""
    out.add_(torch.mm(csr, src.T.contiguous()).T)


def product_cost(area: int, nnz: int | None = None, calls: bool = True) -> float:
    """The modelled cost of one product of a step, in multiply-adds per example at batch
    :data:`COST_BATCH`: dense over ``area`` weights (``nnz`` None), or CSR with ``nnz``
    stored non-zeros; ``calls`` adds the fixed cost of the call (:data:`DENSE_CALL_COST`,
    :data:`CSR_CALL_COST`)."""
    if nnz is None:
        return (DENSE_CALL_COST if calls else 0.0) + area
    return (CSR_CALL_COST if calls else 0.0) + SPARSE_COST * nnz


def plan_cost(products: list[Product], calls: bool = True) -> float:
    """The modelled cost of running ``products`` once (:func:`product_cost` summed)."""
    total = 0.0
    for p in products:
        area = (p.rows.stop - p.rows.start) * (p.cols.stop - p.cols.start)
        total += product_cost(area, None if p.sparse is None else p.sparse[1].numel(), calls)
    return total
