"""Projected gradient descent with Nesterov (FISTA) momentum and adaptive restart.

Inside the box ``[0, 1]`` the free energy is the quadratic ``E(s) = 1/2 |s|^2 - 1/2 s^T W s -
s^T (W_in x + b)`` with gradient ``s - h(s)``; the papers' dynamics are projected gradient
steps ``s <- clip(s - eps grad E(s))``. FISTA takes the same step from an extrapolated point
``y = clip(s_k + m_k (s_k - s_{k-1}))``, ``m_k = (t_{k-1} - 1) / t_k``,
``t_k = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2``, and restarts an example's momentum (``t = 1``)
whenever its gradient points against its last move, ``grad E(y) . (s_{k+1} - s_k) > 0``
(O'Donoghue & Candes 2015, gradient restart): this keeps the method monotone in practice on a
non-convex energy. Each step costs one drive ``h(y)``; the residual of ``y`` is read from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqprop.relaxation import RelaxResult
from eqprop.relaxation.residual import ResidualStop


@dataclass(frozen=True)
class Fista(ResidualStop):
    """FISTA with gradient restart (module docs), stopped on the residual; at most ``steps``
    drives. Momentum is kept per example."""

    def relax(self, network, state, drive, nudge=None) -> RelaxResult:
        self.free_only(nudge)
        state.clamp_(0.0, 1.0)
        y = state.clone()
        h, scratch, previous = torch.empty_like(state), torch.empty_like(state), state.clone()
        compute = self.drive(network, y, drive, h)
        t = torch.ones(state.shape[0], 1, dtype=state.dtype, device=state.device)
        keep = 1.0 - self.eps
        for taken in range(self.steps):
            compute()  # h = h(y)
            if self.residual(y, h, scratch) < self.tol:
                state.copy_(y)
                return RelaxResult(state, taken, True)
            # s_{k+1} = clip((1 - eps) y + eps h(y)); restart where grad(y) . (s_{k+1} - s_k) > 0
            new = torch.mul(y, keep).add_(h, alpha=self.eps).clamp_(0.0, 1.0)
            grad = scratch.copy_(y).sub_(h)
            restart = (grad * (new - state)).sum(1, keepdim=True) > 0
            t_next = (1.0 + torch.sqrt(1.0 + 4.0 * t * t)) / 2.0
            momentum = torch.where(restart, 0.0, (t - 1.0) / t_next)
            t = torch.where(restart, torch.ones_like(t), t_next)
            previous.copy_(state)
            state.copy_(new)
            # y = clip(s_{k+1} + m (s_{k+1} - s_k))
            torch.sub(state, previous, out=y)
            y.mul_(momentum).add_(state).clamp_(0.0, 1.0)
        state.copy_(y)
        return RelaxResult(state, self.steps, False)
