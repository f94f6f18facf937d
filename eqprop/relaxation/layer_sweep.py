"""Even/odd layer sweeps: exact block updates where no edge joins two layers of the same
parity (the layered networks; what the fastest EP codes use).

With no edge inside the odd layers' set nor inside the even layers' set, the energy restricted
to the box is, for fixed even layers, a separable quadratic in the odd layers, minimised
exactly by ``s_odd = clip(h_odd(s))`` (step size 1), and likewise for the even layers. One
sweep updates the odd layers, then the even ones: block Gauss-Seidel, which never increases
the energy. A sweep costs one drive (each product runs once, in the half-sweep of its
destination). After a sweep the even layers are exactly at their fixed point given the odd
ones, so the residual of the whole state is the odd layers' residual, read at the start of
the next sweep from the drive it computes anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqprop.errors import ConfigError
from eqprop.relaxation import RelaxResult
from eqprop.relaxation.residual import ResidualStop


def _layer_of(network, part: slice) -> int:
    """The layer (>= 1) whose state slice contains ``part``; -1 if it spans several."""
    for k in range(1, network.n_layers):
        layer = network.layer_slices[k]
        if layer.start <= part.start and part.stop <= layer.stop:
            return k
    return -1


@dataclass(frozen=True)
class LayerSweep(ResidualStop):
    """Even/odd sweeps (module docs), stopped on the residual; at most ``steps`` sweeps.
    ``eps`` is not used (each half-sweep is an exact minimisation)."""

    def relax(self, network, state, drive, nudge=None) -> RelaxResult:
        self.free_only(nudge)
        state.clamp_(0.0, 1.0)
        halves = self._halves(network, state, drive)
        (odd_drive, odd_cols, odd_h), (even_drive, even_cols, even_h) = halves
        for taken in range(self.steps + 1):
            odd_drive()
            residual = max(
                float((torch.clamp(h, 0.0, 1.0) - state[:, c]).abs().max())
                for h, c in zip(odd_h, odd_cols, strict=True)
            )
            if residual < self.tol:
                return RelaxResult(state, taken, True)
            if taken == self.steps:
                break
            for h, c in zip(odd_h, odd_cols, strict=True):
                state[:, c] = h.clamp(0.0, 1.0)
            even_drive()
            for h, c in zip(even_h, even_cols, strict=True):
                state[:, c] = h.clamp(0.0, 1.0)
        return RelaxResult(state, self.steps, False)

    @staticmethod
    def _halves(network, state, base):
        """Per parity: a closure computing the drive of that parity's layers, their state
        slices and the drive buffers."""
        parity_of = {}
        for p in network.product_plan():
            src, dst = _layer_of(network, p.rows), _layer_of(network, p.cols)
            if src < 0 or dst < 0 or src % 2 == dst % 2:
                raise ConfigError(
                    "the layer-sweep solver needs a topology with no edge between two layers "
                    "of the same parity (a layered network); use free.solver = 'fista'"
                )
            parity_of.setdefault(dst % 2, []).append(p)
        halves = []
        for parity in (1, 0):
            layers = [k for k in range(1, network.n_layers) if k % 2 == parity]
            cols = [network.layer_slices[k] for k in layers]
            h = [state.new_empty(state.shape[0], c.stop - c.start) for c in cols]
            index = {k: i for i, k in enumerate(layers)}
            work = []
            for p in parity_of.get(parity, []):
                k = _layer_of(network, p.cols)
                local = slice(
                    p.cols.start - network.layer_slices[k].start,
                    p.cols.stop - network.layer_slices[k].start,
                )
                work.append((h[index[k]][:, local], state[:, p.rows], p))

            def compute(h=h, cols=cols, work=work) -> None:
                for buffer, c in zip(h, cols, strict=True):
                    buffer.copy_(base[:, c])
                for out, src, p in work:
                    if p.sparse is None:
                        out.addmm_(src, p.weight)
                    else:
                        out.add_(torch.mm(p.csr(), src.T.contiguous()).T)

            halves.append((compute, cols, h))
        return halves
