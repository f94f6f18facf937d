"""What every energy-based network of eqprop provides: :class:`EnergyNetwork`.

What the relaxers, nudgings, estimators, updates and trainer use of a network:
:class:`eqprop.network.Network` (the Hopfield network over a topology) and
:class:`eqprop.conv.ConvNetwork` implement it (``docs/science.md`` section 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch

from eqprop.activation import Activation
from eqprop.nudging import Kernel, Nudge

if TYPE_CHECKING:
    from eqprop.relaxation import Relaxer


class LayerTerm(NamedTuple):
    """One directed drive term of a step, for the solvers that update layer by layer
    (:mod:`eqprop.relaxation.layer_sweep`): ``run()`` adds the term into the drive of layer
    ``into`` from the rates of layer ``source``; ``reads_into`` says whether it also reads
    layer ``into``'s own rates (a max-pooled conv block's feedback, whose pool maxima are
    taken at its source layer)."""

    into: int
    source: int
    reads_into: bool
    run: Callable[[], None]


class EnergyNetwork(torch.nn.Module):
    """What the relaxers, nudgings, estimators, updates and trainer use of a network, and the
    parts of it that follow from the rest: a state ``s`` of shape ``(batch, n_state)`` (every
    non-input neuron, layer by layer), the energy ``E(s)`` whose gradient is ``s - G(s, h)``
    with the drive ``h`` of :meth:`drive` (``docs/science.md`` section 1), and parameters
    that the EP estimate reaches through :meth:`correlation_difference`.

    A subclass sets ``activation``, ``sizes`` (flat layer sizes, input first), ``n_state``,
    ``output`` (the output layer's state slice), ``dtype``, ``device``, ``weights`` (a list of
    parameters) and ``biases`` (one flat parameter), and implements the methods that raise
    ``NotImplementedError`` here. :class:`Network` is the fully connected Hopfield network;
    :class:`eqprop.conv.ConvNetwork` mixes convolutional and dense layers.
    """

    activation: Activation
    sizes: tuple[int, ...]
    n_state: int
    output: slice
    dtype: torch.dtype
    device: torch.device

    # -- what a network implements -----------------------------------------------------------
    def energy(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``E(s)`` per example, for inputs ``x``."""
        raise NotImplementedError

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """The constant part of the drive (inputs and biases), computed once per batch."""
        raise NotImplementedError

    def drive(self, s: torch.Tensor, base: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The drive ``h(s)`` (``base`` plus the interactions' terms, before the gain) into
        ``out``."""
        raise NotImplementedError

    def stepper(
        self, s: torch.Tensor, base: torch.Tensor, h: torch.Tensor, finish: Kernel
    ) -> Kernel:
        """One in-place step: the drive into ``h``, the activation's gain, then ``finish()``
        (:mod:`eqprop.nudging`)."""
        raise NotImplementedError

    def correlation_difference(
        self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per weight tensor and for the biases, ``sum_batch (dPhi/dtheta (a) - dPhi/dtheta
        (b))`` with ``Phi = 1/2 |s|^2 - E`` (the raw sums of :class:`eqprop.estimators.
        Estimate`)."""
        raise NotImplementedError

    def on_edges(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Tensors shaped like :attr:`weights` (an estimate) kept to the network's existing
        weights: new tensors, zero where there is no weight."""
        raise NotImplementedError

    def pair_views(self) -> list[tuple[int, slice, slice, int]]:
        """For each adjacent layer pair (input side first), the weight tensor holding its
        weights, the row and column slices of its weights in that tensor and their number:
        what the per-layer rates of eq. 2 are taken over (:mod:`eqprop.updates`)."""
        raise NotImplementedError

    def layer_terms(
        self,
        rates: Callable[[int], torch.Tensor],
        drive: Callable[[int], torch.Tensor],
    ) -> list[LayerTerm]:
        """Every state-state term of the drive as one :class:`LayerTerm` per direction, on
        views ``rates(k)`` and ``drive(k)`` (shape ``(batch, sizes[k])``, from any state
        layout) of layer ``k``'s rates and drive; the input's term is in :meth:`input_drive`.
        The layer-sweep solvers build their half-sweeps from it."""
        raise NotImplementedError

    # -- what follows ------------------------------------------------------------------------
    def zero_state(self, batch: int) -> torch.Tensor:
        """An all-zero state, the starting point of a first free phase."""
        return torch.zeros(batch, self.n_state, dtype=self.dtype, device=self.device)

    def equilibrium(
        self, x: torch.Tensor, relaxer: Relaxer | None = None, state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The whole free state at the equilibrium of inputs ``x`` (shape ``(batch, M)``, layer
        order, inputs excluded), reached by ``relaxer`` (default: FISTA to a fixed-point
        residual below 1e-5) from ``state`` (default zeros; updated in place when given). No
        gradient is recorded; ``x`` is moved to the network's device and dtype."""
        from eqprop.relaxation.fista import Fista

        relaxer = relaxer if relaxer is not None else Fista(steps=10_000, tol=1e-5)
        x = torch.as_tensor(x).to(self.device, self.dtype)
        s = self.zero_state(len(x)) if state is None else state
        with torch.no_grad():
            relaxer.relax(self, s, self.input_drive(x))
        return s

    def forward(self, x: torch.Tensor, relaxer: Relaxer | None = None) -> torch.Tensor:
        """The output units' states at the free equilibrium of ``x``, shape ``(batch, n_out)``
        (:meth:`equilibrium`; ``net(x)``): what the cost compares with the target (for the
        hard sigmoid also their activations, ``rho(s) = s`` in ``[0, 1]``)."""
        return self.equilibrium(x, relaxer)[:, self.output]

    def predict(
        self, x: torch.Tensor, relaxer: Relaxer | None = None, state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predicted classes of ``x``: the argmax of the outputs at the free equilibrium
        (:meth:`equilibrium`, from ``state`` when given)."""
        return self.equilibrium(x, relaxer, state)[:, self.output].argmax(1)

    def error(self, x: torch.Tensor, y: torch.Tensor, relaxer: Relaxer | None = None) -> float:
        """The fraction of ``x`` whose predicted class (:meth:`predict`) is not ``y``."""
        y = torch.as_tensor(y).to(self.device)
        return float((self.predict(x, relaxer) != y).float().mean())

    def total_energy(
        self, s: torch.Tensor, x: torch.Tensor, nudge: Nudge | None = None
    ) -> torch.Tensor:
        """``F = E + beta C`` per example, ``C`` the cost of ``nudge``'s scheme (``E`` alone
        without a nudge)."""
        f = self.energy(s, x)
        if nudge is None:
            return f
        return f + nudge.beta * nudge.nudging.cost(s[:, self.output], nudge.target)

    def _step(
        self,
        products: Callable[[], None],
        finish: Callable[[], None],
        s: torch.Tensor,
        h: torch.Tensor,
        rates: torch.Tensor,
    ) -> Callable[[], None]:
        """One step from a network's ``products`` (``h`` from ``rates``) and its ``finish``:
        for the hard sigmoid (``rates`` is ``s`` itself) just the two; for a smooth
        activation ``rates = rho(s)`` first and ``h`` times ``rho'(s)`` after."""
        act = self.activation
        if act.projected:

            def step() -> None:
                products()
                finish()

        else:

            def step() -> None:
                rates.copy_(act.rho(s))
                products()
                act.gain_(s, h)
                finish()

        return step

    def grad_F(self, s: torch.Tensor, x: torch.Tensor, nudge: Nudge | None = None) -> torch.Tensor:
        """``dF/ds`` as the ``gradient`` step uses it, ``s - G(s, h)`` (the hard sigmoid's
        ``rho' = 1`` inside ``[0, 1]``; ``rho'(s) h`` for a smooth activation)."""
        h = self.drive(s, self.input_drive(x), torch.empty_like(s))
        g = s - self.activation.gain_(s, h)
        if nudge is not None:
            out = self.output
            g[:, out] += nudge.beta * nudge.nudging.cost_grad(s[:, out], nudge.target)
        return g
