"""Nudging: the cost and how it enters a weakly-clamped step (``docs/science.md`` section 1).

A relaxation step first computes the drive ``h = W rho(s) + W_in x + b`` (the network's
job), then *finishes* the step in place. The free phase finishes with
``s <- clip((1 - eps) s + eps h)``; a weakly-clamped phase finishes with its nudging's
kernel, which also pulls the outputs towards the target ``d``:

- ``gradient`` (the theory, Scellier & Bengio 2017): one gradient step on
  ``F = E + beta C`` with ``C = 1/2 |s_out - d|^2``, both terms from the old state:
  ``s_out <- clip((1 - eps) s_out + eps (h_out + beta (d - s_out)))``. As ``beta -> 0`` the EP
  estimate tends to ``-dC/dW``.
- ``icons`` (the ICONS and journal authors' code): the free step first,
  ``s' = (1 - eps) s + eps h``, then the nudge from the *updated* outputs,
  ``s'_out += 2 eps beta (d - s'_out)``, then ``s <- clip(s')``. At ``eps = 1/2, beta = +1``
  the outputs land exactly on the target (a hard clamp). Its small-beta fixed point is that
  of ``E + beta |s_out - d|^2`` (no 1/2), so the EP estimate tends to ``-2 dC/dW``: its
  :meth:`Nudging.cost` is ``|s_out - d|^2``.

A kernel is a closure built once per phase (no per-step branching in the hot loop). A new
nudging is one class here plus one line in :data:`NUDGINGS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from eqprop.errors import ConfigError

Kernel = Callable[[], None]


def free_kernel(s: torch.Tensor, h: torch.Tensor, eps: float) -> Kernel:
    """The free-phase finish ``s <- clip((1 - eps) s + eps h)``, in place."""
    keep = 1.0 - eps

    def finish() -> None:
        s.mul_(keep).add_(h, alpha=eps).clamp_(0.0, 1.0)

    return finish


class Nudging:
    """How the target enters a weakly-clamped step; subclasses define the three methods."""

    name = ""

    def cost(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The cost whose gradient the EP estimate follows as ``beta -> 0``, per example."""
        raise NotImplementedError

    def cost_grad(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``dC/ds_out`` (of :meth:`cost`)."""
        raise NotImplementedError

    def kernel(
        self,
        s: torch.Tensor,
        h: torch.Tensor,
        output: slice,
        target: torch.Tensor,
        eps: float,
        beta: float,
    ) -> Kernel:
        """The in-place finish of one weakly-clamped step, given the drive in ``h``."""
        raise NotImplementedError


class GradientNudging(Nudging):
    """One gradient step on ``E + beta/2 |s_out - d|^2`` (module docs)."""

    name = "gradient"

    def cost(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((s_out - target) ** 2).sum(1)

    def cost_grad(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return s_out - target

    def kernel(self, s, h, output, target, eps, beta) -> Kernel:
        h_out, s_out = h[:, output], s[:, output]
        free = free_kernel(s, h, eps)

        def finish() -> None:
            h_out.add_(target - s_out, alpha=beta)
            free()

        return finish


class IconsNudging(Nudging):
    """The authors' step: free update, then ``2 eps beta (d - s'_out)`` (module docs)."""

    name = "icons"

    def cost(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((s_out - target) ** 2).sum(1)

    def cost_grad(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 2.0 * (s_out - target)

    def kernel(self, s, h, output, target, eps, beta) -> Kernel:
        keep, pull = 1.0 - eps, 2.0 * eps * beta
        s_out = s[:, output]

        def finish() -> None:
            s.mul_(keep).add_(h, alpha=eps)
            # s' + pull (d - s') written as (1 - pull) s' + pull d: exactly d when pull = 1
            s_out.mul_(1.0 - pull).add_(target, alpha=pull)
            s.clamp_(0.0, 1.0)

        return finish


#: name -> nudging class (a new scheme is one class above plus one line here)
NUDGINGS: dict[str, type[Nudging]] = {"gradient": GradientNudging, "icons": IconsNudging}


def get(name: str) -> Nudging:
    """The nudging called ``name``."""
    if name not in NUDGINGS:
        raise ConfigError(f"unknown nudging {name!r}; choose one of {', '.join(NUDGINGS)}")
    return NUDGINGS[name]()


@dataclass(frozen=True, eq=False)
class Nudge:
    """One weakly-clamped phase's nudging: the scheme, the signed ``beta`` and the target
    (one-hot, shape ``(batch, n_out)``)."""

    nudging: Nudging
    beta: float
    target: torch.Tensor
