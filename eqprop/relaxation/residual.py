"""The papers' damped steps, stopped on the fixed-point residual; and the per-example stopping
rule every residual-stopped solver shares.

The free fixed point is ``s* = clip(W rho(s*) + W_in x + b)``; the residual of a state is
``r(s) = max |s - clip(h(s))|`` with ``h(s) = W rho(s) + W_in x + b``, zero exactly at the
fixed point whatever the solver. (With a smooth activation, ``h`` takes the gain ``rho'(s)``
and ``clip`` is the identity: ``r(s) = max |dE/ds|``; :mod:`eqprop.activation`.) Every step
computes ``h(s)`` anyway, so the residual of the current state costs one reduction, no extra
product.

The rule is applied **per example**: each example's state is kept at the first iterate whose
residual (its largest entry) is below ``tol``, and the examples still relaxing go on without
it. The examples of a batch do not interact, so this is what relaxing each alone would give;
once half of the examples the solver holds have stopped, it continues on the others only
(their states, momenta and drives gathered into a smaller batch), so a batch of 1,000
held-out examples costs what its examples need, not what its slowest one needs. The reported
``steps`` is the batch's largest (the steps of its slowest example).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from eqprop.errors import ConfigError
from eqprop.nudging import Nudge, Projection, clip_unit, free_kernel
from eqprop.relaxation import Relaxer, RelaxResult

if TYPE_CHECKING:
    from eqprop.energy_network import EnergyNetwork


def _noop() -> None:
    return None


class Iterate(Protocol):
    """A solver's iteration over a batch of examples (rows): what :meth:`ResidualStop.relax`
    drives. ``current`` is the iterate whose residual :meth:`residuals` reads."""

    current: torch.Tensor

    def residuals(self) -> torch.Tensor:
        """Compute the drive at ``current``; return each row's residual, shape ``(rows,)``."""

    def advance(self) -> None:
        """One step, from the drive :meth:`residuals` computed."""

    def subset(self, keep: torch.Tensor) -> Iterate:
        """The same iteration continued on the rows where ``keep`` is true only (called
        after :meth:`advance`: the new iterate computes its own drive)."""


def row_residuals(
    s: torch.Tensor, h: torch.Tensor, scratch: torch.Tensor, project: Projection = clip_unit
) -> torch.Tensor:
    """``max_i |s_i - P(h_i)|`` per row, ``P`` the activation's ``project`` (``scratch``: a
    buffer shaped like ``s``)."""
    project(scratch.copy_(h))
    return scratch.sub_(s).abs_().amax(1)


@dataclass(frozen=True)
class ResidualStop(Relaxer):
    """Base of the solvers stopped on the residual (module docs): ``tol`` (> 0). A solver
    supplies :meth:`start`, its :class:`Iterate` over a batch."""

    tol: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ConfigError(f"tol must be a number > 0, got {self.tol!r}")

    def start(self, network: EnergyNetwork, state: torch.Tensor, drive: torch.Tensor) -> Iterate:
        """The solver's iteration from ``state`` (projected, not modified)."""
        raise NotImplementedError

    @staticmethod
    def drive(
        network: EnergyNetwork, s: torch.Tensor, base: torch.Tensor, h: torch.Tensor
    ) -> Callable[[], None]:
        """A closure computing ``h = W rho(s) + base`` in place, with the activation's gain
        (no state update)."""
        return network.stepper(s, base, h, _noop)

    def free_only(self, nudge: Nudge | None) -> None:
        """Adaptive solvers find the free fixed point; nudged phases keep fixed steps."""
        if nudge is not None:
            raise ConfigError(
                f"{type(self).__name__} relaxes the free phase only; the nudged phase runs "
                f"fixed steps"
            )

    def relax(
        self,
        network: EnergyNetwork,
        state: torch.Tensor,
        drive: torch.Tensor,
        nudge: Nudge | None = None,
    ) -> RelaxResult:
        """Relax every example to its first iterate with residual below ``tol`` (module
        docs), at most ``steps`` steps; ``converged``: whether all examples got there."""
        self.free_only(nudge)
        self.check_activation(network.activation)
        network.activation.project_(state)
        rows = torch.arange(state.shape[0], device=state.device)  # of `state`, in `iterate`
        live = torch.ones_like(rows, dtype=torch.bool)  # rows of `iterate` still relaxing
        # each row's tolerance: 0 once stopped (no residual is below it), one test per step
        tol = torch.full(rows.shape, self.tol, dtype=state.dtype, device=state.device)
        n_live = len(rows)
        iterate = self.start(network, state, drive)
        for taken in range(self.steps + 1):
            stopped = iterate.residuals() < tol
            n_stopped = int(stopped.sum())
            if n_stopped:
                state[rows[stopped]] = iterate.current[stopped]
                live &= ~stopped
                tol.masked_fill_(stopped, 0.0)
                n_live -= n_stopped
                if not n_live:
                    return RelaxResult(state, taken, True)
            if taken == self.steps:
                break
            iterate.advance()
            if 2 * n_live <= len(rows):
                rows, iterate, tol = rows[live], iterate.subset(live), tol[live]
                live = torch.ones_like(rows, dtype=torch.bool)
        state[rows[live]] = iterate.current[live]
        return RelaxResult(state, self.steps, False)


class DriveIterate:
    """The part of an :class:`Iterate` that solvers stepping on the whole state share: the
    drive ``h = h(current)`` (computed in place by :meth:`residuals`) and the residuals read
    from it. A subclass adds ``advance`` and ``subset``."""

    def __init__(
        self,
        solver: ResidualStop,
        network: EnergyNetwork,
        current: torch.Tensor,
        drive: torch.Tensor,
    ) -> None:
        self.solver, self.network, self.base = solver, network, drive
        self.current = current
        self.h, self.scratch = torch.empty_like(current), torch.empty_like(current)
        self.compute = solver.drive(network, current, drive, self.h)
        self.project = network.activation.project_

    def residuals(self) -> torch.Tensor:
        """Each example's residual ``max |s - G(s, h(s))|`` at the current iterate."""
        self.compute()  # h = G(current, h(current))
        return row_residuals(self.current, self.h, self.scratch, self.project)


class _DampedIterate(DriveIterate):
    """The papers' damped step on a batch (:class:`Residual`)."""

    def __init__(
        self, solver: Residual, network: EnergyNetwork, s: torch.Tensor, drive: torch.Tensor
    ) -> None:
        super().__init__(solver, network, s, drive)
        self.advance = free_kernel(s, self.h, solver.eps, self.project)

    def subset(self, keep: torch.Tensor) -> _DampedIterate:
        return _DampedIterate(self.solver, self.network, self.current[keep], self.base[keep])


@dataclass(frozen=True)
class Residual(ResidualStop):
    """The papers' damped step ``s <- clip((1 - eps) s + eps h(s))``, each example stopped at
    its first state whose residual is below ``tol`` (at most ``steps`` steps); ``steps`` in
    the result is the largest number of updates an example took."""

    def start(self, network: EnergyNetwork, state: torch.Tensor, drive: torch.Tensor) -> Iterate:
        return _DampedIterate(self, network, state.clone(), drive)
