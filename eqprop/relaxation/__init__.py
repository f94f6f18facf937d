"""Relaxation: running a network's dynamics towards an equilibrium, behind one interface.

A *relaxer* takes the network, a state (updated in place), the batch's input drive
(:meth:`~eqprop.network.Network.input_drive`) and an optional :class:`~eqprop.nudging.Nudge`
(``None``: the free phase), and returns a :class:`RelaxResult`: the final state, the steps
taken and whether its stopping rule was met. The relaxer never mutates itself; what it did is
in the result.

Steps are written for the hard sigmoid below; with a smooth activation the drive takes its
gain ``rho'(s) h`` and ``clip`` (the projection) is the identity, so ``s <- s - eps dF/ds``
(:mod:`eqprop.activation`, ``docs/science.md`` section 1).

Solvers (one file each, registered in :data:`SOLVERS` by name):

- ``fixed`` (:class:`~eqprop.relaxation.fixed.FixedSteps`): exactly ``steps`` discrete steps
  ``s <- clip(s - eps dF/ds)``, the papers' protocol; on CUDA wrapped by
  :class:`~eqprop.relaxation.cuda_graph.CudaGraphs` (one captured graph per phase, of any
  network's :meth:`~eqprop.energy_network.EnergyNetwork.stepper`, conv networks included).
- ``tolerance`` (:class:`~eqprop.relaxation.tolerance.Tolerance`): the same steps, stopping
  once the largest state change of a step is below ``tol`` (at most ``steps``).

Free-phase solvers stopped on the fixed-point residual ``max |s - clip(W rho(s) + W_in x +
b)|`` below ``tol`` (:func:`fixed_point_residual`; at most ``steps`` steps, one drive each):

- ``residual`` (:class:`~eqprop.relaxation.residual.Residual`): the papers' damped step;
- ``fista`` (:class:`~eqprop.relaxation.fista.Fista`): projected gradient with Nesterov
  momentum and gradient restart;
- ``layer-sweep`` (:class:`~eqprop.relaxation.layer_sweep.LayerSweep`): exact even/odd layer
  updates, for topologies with no edge between layers of the same parity, and conv networks
  (with max pooling between state layers a majorise-minimise update);
- ``sor`` (:class:`~eqprop.relaxation.sor.OverRelaxed`): the same sweeps over-relaxed by the
  factor ``eps`` (projected SOR); the fastest free phase measured on the layered network B.

The two layer-sweep solvers need the hard sigmoid (their exact block update ``clip(h)`` is the
minimiser of a box-constrained quadratic); with any other activation they refuse with a
one-line :class:`~eqprop.errors.ConfigError` (:meth:`Relaxer.check_activation`, also run by
the config). Every other solver works with every activation.

These stop each example at its own first iterate below ``tol``, and continue on the others
only (:class:`~eqprop.relaxation.residual.ResidualStop`).

A new solver is a :class:`Relaxer` subclass in its own file plus one line in
:data:`SOLVERS`; the contract tests (``tests/test_relaxation.py``) then run on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from eqprop.errors import ConfigError
from eqprop.nudging import Kernel, Nudge, free_kernel

if TYPE_CHECKING:
    from eqprop.activation import Activation
    from eqprop.energy_network import EnergyNetwork


@dataclass(frozen=True, eq=False)
class RelaxResult:
    """What a relaxation did: the final ``state`` (the tensor passed in, updated in place),
    the ``steps`` taken, and whether the stopping rule was met (``None`` for solvers without
    one, such as fixed steps)."""

    state: torch.Tensor
    steps: int
    converged: bool | None


@dataclass(frozen=True)
class Relaxer:
    """Base of the solvers: the step size ``eps`` (> 0) of the discrete dynamics and
    ``steps``, the number of steps (fixed solvers) or the cap on them (adaptive solvers)."""

    eps: float = 0.5
    steps: int = 500
    #: whether the solver relies on the hard sigmoid's box projection (module docs)
    hard_sigmoid_only: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise ConfigError(f"eps must be a number > 0, got {self.eps!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be an integer >= 1, got {self.steps!r}")

    def relax(
        self,
        network: EnergyNetwork,
        state: torch.Tensor,
        drive: torch.Tensor,
        nudge: Nudge | None = None,
    ) -> RelaxResult:
        """Relax ``state`` in place from the batch's input ``drive``; see the module docs."""
        raise NotImplementedError

    def kernel(
        self, network: EnergyNetwork, s: torch.Tensor, h: torch.Tensor, nudge: Nudge | None
    ) -> Kernel:
        """The finish of one step: free, or the nudge's scheme (:mod:`eqprop.nudging`),
        with the network's projection."""
        project = network.activation.project_
        if nudge is None:
            return free_kernel(s, h, self.eps, project)
        return nudge.nudging.kernel(
            s, h, network.output, nudge.target, self.eps, nudge.beta, project
        )

    def check_activation(self, activation: Activation) -> None:
        """A one-line :class:`ConfigError` if this solver cannot relax a network with
        ``activation`` (module docs)."""
        if self.hard_sigmoid_only and not activation.projected:
            name = next((k for k, v in SOLVERS.items() if v is type(self)), type(self).__name__)
            raise ConfigError(
                f"the {name!r} solver needs the hard sigmoid (its exact layer update is a "
                f"clip), not activation {activation.name!r}; use solver 'fista', 'residual' "
                f"or 'fixed'"
            )


def fixed_point_residual(network: EnergyNetwork, state: torch.Tensor, drive: torch.Tensor) -> float:
    """``max |s - P(G(s, W rho(s) + drive))|`` (``max |s - clip(W s + drive)|`` for the hard
    sigmoid; :mod:`eqprop.activation`): how far ``state`` is from the free fixed point (0
    exactly at it, whatever the solver)."""
    act = network.activation
    h = act.gain_(state, network.drive(state, drive, torch.empty_like(state)))
    return float((state - act.project_(h)).abs().max())


def _solvers() -> dict[str, type[Relaxer]]:
    from eqprop.relaxation.fista import Fista
    from eqprop.relaxation.fixed import FixedSteps
    from eqprop.relaxation.layer_sweep import LayerSweep
    from eqprop.relaxation.residual import Residual
    from eqprop.relaxation.sor import OverRelaxed
    from eqprop.relaxation.tolerance import Tolerance

    return {
        "fixed": FixedSteps,
        "tolerance": Tolerance,
        "residual": Residual,
        "fista": Fista,
        "layer-sweep": LayerSweep,
        "sor": OverRelaxed,
    }


#: name -> solver class (a new solver is one file plus one line in :func:`_solvers`)
SOLVERS: dict[str, type[Relaxer]] = _solvers()
