"""The papers' damped steps, stopped on the fixed-point residual.

The free fixed point is ``s* = clip(W rho(s*) + W_in x + b)``; the residual of a state is
``r(s) = max |s - clip(h(s))|`` with ``h(s) = W rho(s) + W_in x + b``, zero exactly at the
fixed point whatever the solver. Every step computes ``h(s)`` anyway, so the residual of the
current state costs one reduction, no extra product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqprop.errors import ConfigError
from eqprop.nudging import free_kernel
from eqprop.relaxation import Relaxer, RelaxResult


def _noop() -> None:
    return None


@dataclass(frozen=True)
class ResidualStop(Relaxer):
    """Base of the solvers that stop on the residual: ``tol`` (> 0), and the helpers to
    build a drive-only step and read the residual from it."""

    tol: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ConfigError(f"tol must be a number > 0, got {self.tol!r}")

    @staticmethod
    def drive(network, s: torch.Tensor, base: torch.Tensor, h: torch.Tensor):
        """A closure computing ``h = W rho(s) + base`` in place (no state update)."""
        return network.stepper(s, base, h, _noop)

    @staticmethod
    def residual(s: torch.Tensor, h: torch.Tensor, scratch: torch.Tensor) -> float:
        """``max |s - clip(h)|`` (``scratch``: a buffer shaped like ``s``)."""
        torch.clamp(h, 0.0, 1.0, out=scratch)
        return float(scratch.sub_(s).abs_().max())

    def free_only(self, nudge) -> None:
        """Adaptive solvers find the free fixed point; nudged phases keep fixed steps."""
        if nudge is not None:
            raise ConfigError(
                f"{type(self).__name__} relaxes the free phase only; the nudged phase runs "
                f"fixed steps"
            )


@dataclass(frozen=True)
class Residual(ResidualStop):
    """The papers' damped step ``s <- clip((1 - eps) s + eps h(s))``, stopped at the first
    state whose residual is below ``tol`` (at most ``steps`` steps); ``steps`` in the result
    is the number of updates made, ``converged`` whether the residual fell below ``tol``."""

    def relax(self, network, state, drive, nudge=None) -> RelaxResult:
        self.free_only(nudge)
        state.clamp_(0.0, 1.0)
        h, scratch = torch.empty_like(state), torch.empty_like(state)
        compute = self.drive(network, state, drive, h)
        finish = free_kernel(state, h, self.eps)
        for taken in range(self.steps + 1):
            compute()
            if self.residual(state, h, scratch) < self.tol:
                return RelaxResult(state, taken, True)
            if taken == self.steps:
                break
            finish()
        return RelaxResult(state, self.steps, False)
