"""Even/odd layer sweeps: exact block updates where no edge joins two layers of the same
parity (the layered networks; what the fastest EP codes use).

With no edge inside the odd layers' set nor inside the even layers' set, the energy restricted
to the box is, for fixed even layers, a separable quadratic in the odd layers, minimised
exactly by ``s_odd = clip(h_odd(s))`` (step size 1), and likewise for the even layers. One
sweep updates the odd layers, then the even ones: block Gauss-Seidel, which never increases
the energy. A sweep costs one drive (each layer-pair product runs once, in the half-sweep of
its destination; :meth:`~eqprop.network.Network.pair_plan`, so a block the step's plan runs as
one product is split here). The drive of the even layers does not depend on them, so after a
sweep the whole state's residual is read from the odd layers' drive (computed at the start of
the next sweep) and the even layers' drive of the half-sweep just done.

:class:`LayerSweep` takes the exact updates; :class:`~eqprop.relaxation.sor.OverRelaxed`
moves each half past them by a factor (projected SOR). Each example stops at its first
swept state below ``tol`` (:class:`~eqprop.relaxation.residual.ResidualStop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqprop.errors import ConfigError
from eqprop.relaxation.residual import Iterate, ResidualStop


def _layer_of(network, part: slice) -> int:
    """The layer (>= 1) whose state slice contains ``part``; -1 if it spans several."""
    for k in range(1, network.n_layers):
        layer = network.layer_slices[k]
        if layer.start <= part.start and part.stop <= layer.stop:
            return k
    return -1


def _products_by_parity(network) -> dict[int, list]:
    """The step's layer-pair products (:meth:`~eqprop.network.Network.pair_plan`, whatever
    :meth:`~eqprop.network.Network.product_plan` merges) grouped by the parity of their
    destination layer; a one-line error if a product joins two layers of the same parity."""
    by = {1: [], 0: []}
    for p in network.pair_plan():
        src, dst = _layer_of(network, p.rows), _layer_of(network, p.cols)
        if src < 0 or dst < 0 or src % 2 == dst % 2:
            raise ConfigError(
                "the layer-sweep solvers need a topology with no edge between two layers of "
                "the same parity (a layered network); use free.solver = 'fista'"
            )
        by[dst % 2].append(p)
    return by


class _Half:
    """One parity's layers on a batch: their state slices, drive buffers (``h``, one per
    layer) and the closure computing that drive from the other parity."""

    def __init__(self, network, products, parity: int, s, base, h=None) -> None:
        layers = [k for k in range(1, network.n_layers) if k % 2 == parity]
        self.cols = [network.layer_slices[k] for k in layers]
        self.h = h or [s.new_empty(s.shape[0], c.stop - c.start) for c in self.cols]
        index = {k: i for i, k in enumerate(layers)}
        self.base = [base[:, c] for c in self.cols]
        self.work = []
        for p in products:
            k = _layer_of(network, p.cols)
            start = network.layer_slices[k].start
            local = slice(p.cols.start - start, p.cols.stop - start)
            # CSR values gathered once: the weights do not change within a phase
            csr = None if p.sparse is None else p.csr()
            self.work.append((self.h[index[k]][:, local], s[:, p.rows], p.weight, csr))

    def compute(self) -> None:
        for buffer, base in zip(self.h, self.base, strict=True):
            buffer.copy_(base)
        for out, src, weight, csr in self.work:
            if csr is None:
                out.addmm_(src, weight)
            else:
                out.add_(torch.mm(csr, src.T.contiguous()).T)

    def update(self, s: torch.Tensor, omega: float) -> None:
        """``s <- clip(s + omega (h - s))`` on this parity's layers."""
        for h, c in zip(self.h, self.cols, strict=True):
            s[:, c] = torch.lerp(s[:, c], h, omega).clamp_(0.0, 1.0)

    def residuals(self, s: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [
                (torch.clamp(h, 0.0, 1.0) - s[:, c]).abs_().amax(1)
                for h, c in zip(self.h, self.cols, strict=True)
            ]
        ).amax(0)


class _SweepIterate:
    """Sweeps on a batch: ``current`` the state; the even drive is kept between sweeps."""

    def __init__(self, network, products, omega, s, base, even_h=None) -> None:
        self.network, self.products, self.omega, self.base = network, products, omega, base
        self.current = s
        self.odd = _Half(network, products[1], 1, s, base)
        self.even = _Half(network, products[0], 0, s, base, even_h)
        if even_h is None:
            self.even.compute()

    def residuals(self) -> torch.Tensor:
        self.odd.compute()
        s = self.current
        return torch.maximum(self.odd.residuals(s), self.even.residuals(s))

    def advance(self) -> None:
        self.odd.update(self.current, self.omega)
        self.even.compute()
        self.even.update(self.current, self.omega)

    def subset(self, keep: torch.Tensor) -> _SweepIterate:
        even_h = [h[keep] for h in self.even.h]
        return _SweepIterate(
            self.network, self.products, self.omega, self.current[keep], self.base[keep], even_h
        )


@dataclass(frozen=True)
class LayerSweep(ResidualStop):
    """Even/odd sweeps with exact block updates (module docs), stopped on the residual; at
    most ``steps`` sweeps. ``eps`` is not used (each half-sweep is an exact minimisation)."""

    @property
    def omega(self) -> float:
        """The factor each half-sweep moves by, relative to the exact block update."""
        return 1.0

    def start(self, network, state, drive) -> Iterate:
        return _SweepIterate(
            network, _products_by_parity(network), self.omega, state.clone(), drive
        )
