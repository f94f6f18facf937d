"""Even/odd layer sweeps: block updates where no interaction joins two layers of the same
parity (the layered networks and the conv networks; what the fastest EP codes use).

With no edge inside the odd layers' set nor inside the even layers' set, the energy restricted
to the box is, for fixed even layers, a separable quadratic in the odd layers, minimised
exactly by ``s_odd = clip(h_odd(s))`` (step size 1), and likewise for the even layers. One
sweep updates the odd layers, then the even ones: block Gauss-Seidel, which never increases
the energy. A sweep costs one drive: each directed term of the drive
(:meth:`~eqprop.energy_network.EnergyNetwork.layer_terms`; for a
:class:`~eqprop.network.Network` its layer-pair products,
:meth:`~eqprop.network.Network.pair_plan`, so a block the step's plan runs as one product is
split here) runs once, in the half-sweep of the layer it drives. The drive of the even
layers does not depend on them, so after a sweep the whole state's residual is read from the
odd layers' drive (computed at the start of the next sweep) and the even layers' drive of
the half-sweep just done.

Conv networks (:class:`~eqprop.conv.ConvNetwork`, ``docs/science.md`` section 7): their
layers interact in adjacent pairs only, so the parities do not couple (a conv block's drive
into layer ``k`` reads layer ``k - 1`` only; its feedback into ``k - 1`` reads layer ``k``,
and the pool's maxima). Where no max pooling follows a convolution between state layers, the
update is exact as above. Where one does, the feedback ``w^T * P^-1(rho(s_k))`` into layer
``k - 1`` takes the pool's maxima at layer ``k - 1``'s own state: the term
``rho(s_k) . P(w * rho(s_{k-1}))`` of ``Phi`` is convex in ``rho(s_{k-1})`` (a maximum of
linear functions, weighted by ``rho(s_k) >= 0``), so that layer's energy is a separable
quadratic minus a convex function. The half-sweep ``clip(h)``, with the maxima at the current
state, minimises the separable quadratic that bounds it from above (the convex term replaced
by its linearisation there, equal at the current state): a majorise-minimise step (the
convex-concave procedure of Yuille & Rangarajan, "The Concave-Convex Procedure"), so the
energy still never increases, and an over-relaxed one (factor in ``(0, 2)``) does not
increase that bound either. The fixed points are those of the damped step, but with the
pools' concave kinks they need not be unique, and different solvers may reach different
ones. Such a term reads the layer it drives, so a sweep computes the drive of an even layer
that has one again after updating it (an odd layer's is computed at the start of the next
sweep anyway): the residual is the current state's.

:class:`LayerSweep` takes the exact updates; :class:`~eqprop.relaxation.sor.OverRelaxed`
moves each half past them by a factor (projected SOR). Each example stops at its first
swept state below ``tol`` (:class:`~eqprop.relaxation.residual.ResidualStop`).

Both need the hard sigmoid: with a smooth activation the energy of one parity's layers is
still separable but no longer quadratic, and its minimiser no clip; they refuse any other
activation with a one-line error, and a network without
:meth:`~eqprop.energy_network.EnergyNetwork.layer_terms` with another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqprop.energy_network import EnergyNetwork
from eqprop.errors import ConfigError
from eqprop.relaxation.residual import Iterate, ResidualStop


def _checked_terms(network, rates, drive) -> list:
    """The network's directed drive terms (:meth:`~eqprop.energy_network.EnergyNetwork.layer_terms`,
    for a :class:`~eqprop.network.Network` its layer pairs whatever its step's plan merges);
    a one-line error if a term joins two layers of the same parity."""
    if type(network).layer_terms is EnergyNetwork.layer_terms:  # the base's: not split
        raise ConfigError(
            f"the layer-sweep solvers do not apply to a {type(network).__name__} (it does not "
            f"split its drive by layer); use free.solver = 'fista'"
        )
    terms = network.layer_terms(rates, drive)
    if any(t.source % 2 == t.into % 2 for t in terms):
        raise ConfigError(
            "the layer-sweep solvers need a topology with no edge between two layers of "
            "the same parity (a layered network); use free.solver = 'fista'"
        )
    return terms


class _Parity:
    """Where the layers of each parity lie in the solver's own state layout: every odd layer,
    then every even one, each layer contiguous (so a half-sweep's residual and update are one
    operation each over its parity's block, not one per layer). ``order`` takes a state in the
    network's layer order to this layout; ``inverse`` brings it back."""

    def __init__(self, network) -> None:
        self.layers = {
            parity: [k for k in range(1, network.n_layers) if k % 2 == parity] for parity in (1, 0)
        }
        self.slice_of: dict[int, slice] = {}
        order, at = [], 0
        for parity in (1, 0):
            for k in self.layers[parity]:
                c = network.layer_slices[k]
                self.slice_of[k] = slice(at, at + c.stop - c.start)
                order.append(torch.arange(c.start, c.stop))
                at += c.stop - c.start
        self.n_odd = sum(c.stop - c.start for k, c in self.slice_of.items() if k % 2)
        device = network.device
        self.order = torch.cat(order).to(device)
        self.inverse = torch.empty_like(self.order)
        self.inverse[self.order] = torch.arange(len(self.order), device=device)

    def block(self, parity: int) -> slice:
        """This parity's columns in the solver's layout."""
        return slice(0, self.n_odd) if parity else slice(self.n_odd, len(self.order))

    def within(self, k: int) -> slice:
        """Layer ``k``'s columns within its parity's block."""
        at = self.slice_of[k].start - self.block(k % 2).start
        return slice(at, at + self.slice_of[k].stop - self.slice_of[k].start)


class _Half:
    """One parity's layers on a batch (in the solver's layout, :class:`_Parity`): their state
    block ``s``, drive ``h`` and the terms that compute that drive."""

    def __init__(self, s, base, h, terms) -> None:
        self.s, self.base, self.h, self.terms = s, base, h, terms
        self.scratch = torch.empty_like(self.s)

    def compute(self) -> None:
        self.h.copy_(self.base)
        for run in self.terms:
            run()

    def update(self, omega: float) -> None:
        """``s <- clip(s + omega (h - s))`` on this parity's layers."""
        self.s.lerp_(self.h, omega).clamp_(0.0, 1.0)

    def residuals(self) -> torch.Tensor:
        torch.clamp(self.h, 0.0, 1.0, out=self.scratch)
        return self.scratch.sub_(self.s).abs_().amax(1)


class _SweepIterate:
    """Sweeps on a batch, in the solver's layout (``s``: odd layers, then even ones); the
    even drive is kept between sweeps. ``current`` is the state in the network's layout."""

    def __init__(self, network, layout, omega, s, base, even_h=None) -> None:
        self.network, self.layout, self.omega = network, layout, omega
        self.s, self.base = s, base
        halves = {p: (s[:, layout.block(p)], base[:, layout.block(p)]) for p in (1, 0)}
        h = {1: torch.empty_like(halves[1][0])}
        h[0] = even_h if even_h is not None else torch.empty_like(halves[0][0])

        def rates(k: int) -> torch.Tensor:
            return s[:, layout.slice_of[k]]

        def drive(k: int) -> torch.Tensor:
            return h[k % 2][:, layout.within(k)]

        terms = _checked_terms(network, rates, drive)
        self.odd, self.even = (
            _Half(*halves[p], h[p], [t.run for t in terms if t.into % 2 == p]) for p in (1, 0)
        )
        # an even layer's drive that reads the layer itself (a max-pooled conv block's
        # feedback) is computed again after its update, so the residual is the state's own
        self.even_reads_itself = any(t.reads_into for t in terms if t.into % 2 == 0)
        if even_h is None:
            self.even.compute()

    @property
    def current(self) -> torch.Tensor:
        return self.s.index_select(1, self.layout.inverse)

    def residuals(self) -> torch.Tensor:
        self.odd.compute()
        return torch.maximum(self.odd.residuals(), self.even.residuals())

    def advance(self) -> None:
        self.odd.update(self.omega)
        self.even.compute()
        self.even.update(self.omega)
        if self.even_reads_itself:
            self.even.compute()

    def subset(self, keep: torch.Tensor) -> _SweepIterate:
        return _SweepIterate(
            self.network,
            self.layout,
            self.omega,
            self.s[keep],
            self.base[keep],
            self.even.h[keep],
        )


@dataclass(frozen=True)
class LayerSweep(ResidualStop):
    """Even/odd sweeps with exact block updates (module docs), stopped on the residual; at
    most ``steps`` sweeps. ``eps`` is not used (each half-sweep is an exact minimisation).
    Hard sigmoid only (:meth:`~eqprop.relaxation.Relaxer.check_activation`)."""

    hard_sigmoid_only = True

    @property
    def omega(self) -> float:
        """The factor each half-sweep moves by, relative to the exact block update."""
        return 1.0

    def start(self, network: EnergyNetwork, state: torch.Tensor, drive: torch.Tensor) -> Iterate:
        layout = _Parity(network)
        return _SweepIterate(
            network,
            layout,
            self.omega,
            state.index_select(1, layout.order),
            drive.index_select(1, layout.order),
        )
