"""Projected gradient descent with Nesterov (FISTA) momentum and adaptive restart.

Inside the box ``[0, 1]`` the free energy is the quadratic ``E(s) = 1/2 |s|^2 - 1/2 s^T W s -
s^T (W_in x + b)`` with gradient ``s - h(s)``; the papers' dynamics are projected gradient
steps ``s <- clip(s - eps grad E(s))``. FISTA takes the same step from an extrapolated point
``y = clip(s_k + m_k (s_k - s_{k-1}))``, ``m_k = (t_{k-1} - 1) / t_k``,
``t_k = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2``, and restarts an example's momentum (``t = 1``)
whenever its gradient points against its last move, ``grad E(y) . (s_{k+1} - s_k) > 0``
(O'Donoghue & Candes 2015, gradient restart): this keeps the method monotone in practice on a
non-convex energy. Each step costs one drive ``h(y)``; the residual of ``y`` is read from it,
and each example stops at its first ``y`` below ``tol``
(:class:`~eqprop.relaxation.residual.ResidualStop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqprop.relaxation.residual import DriveIterate, Iterate, ResidualStop


class _FistaIterate(DriveIterate):
    """FISTA on a batch: the extrapolated point ``y`` (``current``), the last step's state
    ``s`` and each example's ``t``."""

    def __init__(self, solver: Fista, network, y, s, t, drive) -> None:
        super().__init__(solver, network, y, drive)
        self.s, self.t = s, t

    def advance(self) -> None:
        y, s, h, move = self.current, self.s, self.h, self.scratch
        # s_{k+1} = clip(y + eps (h(y) - y)); restart where grad(y) . (s_{k+1} - s_k) > 0
        new = torch.lerp(y, h, self.solver.eps).clamp_(0.0, 1.0)
        torch.sub(new, s, out=move)
        restart = torch.linalg.vecdot(y - h, move, dim=1).unsqueeze(1) > 0
        t = self.t
        t_next = (1.0 + torch.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum = torch.where(restart, 0.0, (t - 1.0) / t_next)
        self.t = torch.where(restart, 1.0, t_next)
        # y = clip(s_{k+1} + m (s_{k+1} - s_k))
        s.copy_(new)
        torch.addcmul(new, move, momentum, out=y).clamp_(0.0, 1.0)

    def subset(self, keep: torch.Tensor) -> _FistaIterate:
        return _FistaIterate(
            self.solver,
            self.network,
            self.current[keep],
            self.s[keep],
            self.t[keep],
            self.base[keep],
        )


@dataclass(frozen=True)
class Fista(ResidualStop):
    """FISTA with gradient restart (module docs), each example stopped at its first
    extrapolated point with residual below ``tol``; at most ``steps`` drives. Momentum is kept
    per example."""

    def start(self, network, state, drive) -> Iterate:
        t = torch.ones(state.shape[0], 1, dtype=state.dtype, device=state.device)
        return _FistaIterate(self, network, state.clone(), state.clone(), t, drive)
