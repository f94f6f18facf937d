"""Projected gradient descent with Nesterov (FISTA) momentum and adaptive restart.

Inside the box ``[0, 1]`` the free energy is the quadratic ``E(s) = 1/2 |s|^2 - 1/2 s^T W s -
s^T (W_in x + b)`` with gradient ``s - h(s)``; the papers' dynamics are projected gradient
steps ``s <- clip(s - eps grad E(s))``. FISTA takes the same step from an extrapolated point
``y = clip(s_k + m_k (s_k - s_{k-1}))``, ``m_k = (t_{k-1} - 1) / t_k``,
``t_k = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2``, and restarts an example's momentum (``t = 1``)
whenever its gradient points against its last move, ``grad E(y) . (s_{k+1} - s_k) > 0``
(O'Donoghue & Candes 2015, gradient restart): this keeps the method monotone in practice on a
non-convex energy. With a smooth activation ``clip`` is the identity and ``h`` takes the gain
``rho'(s)`` (:mod:`eqprop.activation`): plain accelerated gradient descent on ``E``, the
same restart rule. Each step costs one drive ``h(y)``; the residual of ``y`` is read from it,
and each example stops at its first ``y`` below ``tol``
(:class:`~eqprop.relaxation.residual.ResidualStop`).

An example's ``t`` depends only on the number of steps since its last restart, so the
momenta are read from a table (:func:`momenta`) indexed by that count, computed once with the
same operations in the same dtype as the recurrence: the same numbers, without a dozen small
tensor operations per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from eqprop.relaxation.residual import DriveIterate, Iterate, ResidualStop

if TYPE_CHECKING:
    from eqprop.energy_network import EnergyNetwork


#: (dtype, device) -> the momentum table computed so far (:func:`momenta`)
_MOMENTA: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _momentum_table(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``m[0] = 0`` and ``m[j] = (t_{j-1} - 1) / t_j`` for ``0 < j < length`` (``t_0 = 1``),
    each computed as the recurrence of the module docs computes it."""
    t = torch.ones(1, dtype=dtype, device=device)
    table = [torch.zeros_like(t)]
    for _ in range(length - 1):
        t_next = (1.0 + torch.sqrt(1.0 + 4.0 * t * t)) / 2.0
        table.append((t - 1.0) / t_next)
        t = t_next
    return torch.cat(table)


def momenta(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The momentum after ``j`` steps without restart, at index ``j`` (``0``: a restart); at
    least ``length`` entries, computed once per dtype and device (the table doubles when a
    longer one is asked for)."""
    key = (dtype, torch.device(device))
    table = _MOMENTA.get(key)
    if table is None or len(table) < length:
        known = 0 if table is None else len(table)
        table = _MOMENTA[key] = _momentum_table(max(length, 2 * known, 64), dtype, device)
    return table


class _FistaIterate(DriveIterate):
    """FISTA on a batch: the extrapolated point ``y`` (``current``), the last step's state
    ``s``, each example's ``streak`` (steps since its last restart, shape ``(rows, 1)``; its
    ``t`` is the recurrence's ``t`` after that many steps) and ``taken``, the batch's steps.

    Four buffers of the state's shape: ``y``, the drive ``h``, ``s`` and a spare one (the
    residual's scratch). A step writes ``s_{k+1}`` into the spare buffer, the move
    ``s_{k+1} - s_k`` over ``s_k`` and the gradient ``y - h`` over ``h`` (recomputed at the
    next step), then the new ``y``; ``s_{k+1}`` becomes ``s`` and the move's buffer the spare
    one."""

    def __init__(self, solver: Fista, network, y, s, streak, drive, taken: int = 0) -> None:
        super().__init__(solver, network, y, drive)
        self.s, self.streak, self.taken = s, streak, taken
        self.momenta = momenta(taken + 2, y.dtype, y.device)

    def advance(self) -> None:
        y, s, h = self.current, self.s, self.h
        # s_{k+1} = clip(y + eps (h(y) - y)); restart where grad(y) . (s_{k+1} - s_k) > 0
        new = self.project(torch.lerp(y, h, self.solver.eps, out=self.scratch))
        move = torch.sub(new, s, out=s)
        # the products and sums of linalg.vecdot(y - h, move), in place
        restart = torch.sub(y, h, out=h).mul_(move).sum(1, keepdim=True) > 0
        self.taken += 1
        if self.taken >= len(self.momenta):
            self.momenta = momenta(self.taken + 1, y.dtype, y.device)
        momentum = torch.take(self.momenta, self.streak.add_(1).masked_fill_(restart, 0))
        # y = clip(s_{k+1} + m (s_{k+1} - s_k))
        self.project(torch.addcmul(new, move, momentum, out=y))
        self.s, self.scratch = new, move

    def subset(self, keep: torch.Tensor) -> _FistaIterate:
        return _FistaIterate(
            self.solver,
            self.network,
            self.current[keep],
            self.s[keep],
            self.streak[keep],
            self.base[keep],
            self.taken,
        )


@dataclass(frozen=True)
class Fista(ResidualStop):
    """FISTA with gradient restart (module docs), each example stopped at its first
    extrapolated point with residual below ``tol``; at most ``steps`` drives. Momentum is kept
    per example."""

    def start(self, network: EnergyNetwork, state: torch.Tensor, drive: torch.Tensor) -> Iterate:
        streak = torch.zeros(state.shape[0], 1, dtype=torch.long, device=state.device)
        return _FistaIterate(self, network, state.clone(), state.clone(), streak, drive)
