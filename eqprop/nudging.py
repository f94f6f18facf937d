"""Nudging: the cost and how it enters a weakly-clamped step (``docs/science.md`` section 1).

A relaxation step first computes the drive ``h = W rho(s) + W_in x + b`` (the network's
job, gain included: ``rho'(s) h`` for a smooth activation), then *finishes* the step in place.
The free phase finishes with ``s <- clip((1 - eps) s + eps h)``; a weakly-clamped phase
finishes with its nudging's kernel, which also pulls the outputs towards the target ``d``.
``clip`` is the activation's projection ``P`` (:mod:`eqprop.activation`): the hard sigmoid's
clip to ``[0, 1]``, the identity for a smooth activation, passed to every kernel as
``project``; the pulls are written for both:

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
nudging is one class here plus one line in :data:`NUDGINGS`. A scheme pulls any group of
neurons towards its own target with its own signed beta (:meth:`Nudging.pull_kernel`); the
outputs are the one group of :meth:`Nudging.kernel`.

**Target-linked hidden neurons** (:class:`TargetLinked`, ``docs/science.md`` section 1): the
weakly-clamped step also pulls the first ``k_l`` neurons ``H_l`` of chosen hidden layers
``l`` towards a target ``t_l = d P_l``, where ``P_l`` (shape ``(n_out, k_l)``) has entries
drawn once, uniform in ``[0, 1)``, from a seeded generator (:func:`hidden_codes`): a fixed
random code of each class, so ``t_l`` is in ``[0, 1]``. The pull is the scheme's own, with
the signed ``beta_H = hidden_beta * beta`` (so it follows the sign of ``beta`` under the
random-sign and centered estimators): ``gradient`` adds ``beta_H (t_l - s_H)`` to the drive
``h_H``; ``icons`` does ``s'_H += 2 eps beta_H (t_l - s'_H)`` on the updated state before the
clip. The free phase is unchanged. For small ``beta`` the nudged fixed point is that of
``E + beta (C(s_out, d) + hidden_beta sum_l C(s_H_l, t_l))``, ``C`` the scheme's cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from eqprop.errors import ConfigError

Kernel = Callable[[], None]
#: an activation's projection ``P``, in place (:meth:`eqprop.activation.Activation.project_`)
Projection = Callable[[torch.Tensor], torch.Tensor]


def clip_unit(s: torch.Tensor) -> torch.Tensor:
    """The hard sigmoid's projection: ``s`` clipped to ``[0, 1]`` in place."""
    return s.clamp_(0.0, 1.0)


def free_kernel(
    s: torch.Tensor, h: torch.Tensor, eps: float, project: Projection = clip_unit
) -> Kernel:
    """The free-phase finish ``s <- P((1 - eps) s + eps h)``, in place."""
    keep = 1.0 - eps

    def finish() -> None:
        project(s.mul_(keep).add_(h, alpha=eps))

    return finish


class Pull(NamedTuple):
    """One group of neurons a weakly-clamped step pulls: their state-coordinate slice, their
    target (shape ``(batch, group size)``, read at every step) and the signed beta."""

    neurons: slice
    target: torch.Tensor
    beta: float


class Nudging:
    """How the target enters a weakly-clamped step; subclasses define ``cost``, ``cost_grad``
    and ``pull_kernel``."""

    name = ""

    def cost(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The cost whose gradient the EP estimate follows as ``beta -> 0``, per example."""
        raise NotImplementedError

    def cost_grad(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``dC/ds_out`` (of :meth:`cost`)."""
        raise NotImplementedError

    def pull_kernel(
        self,
        s: torch.Tensor,
        h: torch.Tensor,
        pulls: Sequence[Pull],
        eps: float,
        project: Projection = clip_unit,
    ) -> Kernel:
        """The in-place finish of one weakly-clamped step that pulls each group of ``pulls``
        (in order) towards its target, given the drive in ``h``, then projects with
        ``project``."""
        raise NotImplementedError

    def kernel(
        self,
        s: torch.Tensor,
        h: torch.Tensor,
        output: slice,
        target: torch.Tensor,
        eps: float,
        beta: float,
        project: Projection = clip_unit,
    ) -> Kernel:
        """The in-place finish of one weakly-clamped step, given the drive in ``h``: the
        outputs pulled towards ``target``."""
        return self.pull_kernel(s, h, [Pull(output, target, beta)], eps, project)


class GradientNudging(Nudging):
    """One gradient step on ``E + beta/2 |s_out - d|^2`` (module docs)."""

    name = "gradient"

    def cost(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((s_out - target) ** 2).sum(1)

    def cost_grad(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return s_out - target

    def pull_kernel(
        self,
        s: torch.Tensor,
        h: torch.Tensor,
        pulls: Sequence[Pull],
        eps: float,
        project: Projection = clip_unit,
    ) -> Kernel:
        groups = [(h[:, p.neurons], s[:, p.neurons], p.target, p.beta) for p in pulls]
        free = free_kernel(s, h, eps, project)

        def finish() -> None:
            for h_g, s_g, target, beta in groups:
                h_g.add_(target - s_g, alpha=beta)
            free()

        return finish


class IconsNudging(Nudging):
    """The authors' step: free update, then ``2 eps beta (d - s'_out)`` (module docs)."""

    name = "icons"

    def cost(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((s_out - target) ** 2).sum(1)

    def cost_grad(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 2.0 * (s_out - target)

    def pull_kernel(
        self,
        s: torch.Tensor,
        h: torch.Tensor,
        pulls: Sequence[Pull],
        eps: float,
        project: Projection = clip_unit,
    ) -> Kernel:
        keep = 1.0 - eps
        groups = [(s[:, p.neurons], p.target, 2.0 * eps * p.beta) for p in pulls]

        def finish() -> None:
            s.mul_(keep).add_(h, alpha=eps)
            for s_g, target, pull in groups:
                # s' + pull (d - s') written as (1 - pull) s' + pull d: exactly d when pull = 1
                s_g.mul_(1.0 - pull).add_(target, alpha=pull)
            project(s)

        return finish


@dataclass(frozen=True, eq=False)
class HiddenCode:
    """The fixed random code of one nudged hidden layer: its first ``codes.shape[1]``
    neurons (``neurons``, state coordinates) are pulled towards ``d @ codes``."""

    neurons: slice
    codes: torch.Tensor


def hidden_codes(
    layer_slices: Sequence[slice],
    counts: dict[int, int],
    n_out: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> list[HiddenCode]:
    """The codes ``P_l`` of the hidden layers ``l`` in ``counts`` (layer -> number of nudged
    neurons ``k_l``), in increasing ``l``: drawn in float64 on the CPU from a generator
    seeded with ``seed``, one ``(n_out, k_l)`` uniform ``[0, 1)`` matrix per layer, so the
    same seed gives the same codes on every device and dtype. ``layer_slices`` as
    :attr:`eqprop.network.Network.layer_slices`."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for layer in sorted(counts):
        k, start = counts[layer], layer_slices[layer].start
        codes = torch.rand(n_out, k, generator=generator, dtype=torch.float64)
        out.append(HiddenCode(slice(start, start + k), codes.to(dtype=dtype, device=device)))
    return out


class TargetLinked(Nudging):
    """``base``'s step, which also pulls target-linked hidden neurons: layer ``l``'s coded
    neurons towards ``t_l = d P_l`` with the signed beta ``hidden_beta * beta`` (module docs).
    Its :meth:`cost` is ``base``'s output cost, the one training is judged by; the hidden
    pulls add ``hidden_beta sum_l C(s_H_l, t_l)`` to the cost the estimate follows."""

    def __init__(self, base: Nudging, codes: Sequence[HiddenCode], hidden_beta: float) -> None:
        self.base, self.codes, self.hidden_beta = base, list(codes), float(hidden_beta)
        self.name = f"{base.name}+hidden"

    def cost(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.base.cost(s_out, target)

    def cost_grad(self, s_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.base.cost_grad(s_out, target)

    def pull_kernel(
        self,
        s: torch.Tensor,
        h: torch.Tensor,
        pulls: Sequence[Pull],
        eps: float,
        project: Projection = clip_unit,
    ) -> Kernel:
        return self.base.pull_kernel(s, h, pulls, eps, project)

    def kernel(
        self,
        s: torch.Tensor,
        h: torch.Tensor,
        output: slice,
        target: torch.Tensor,
        eps: float,
        beta: float,
        project: Projection = clip_unit,
    ) -> Kernel:
        # t_l recomputed from the target at every step (a (batch, n_out) @ (n_out, k_l)
        # product), so a captured CUDA graph follows a new target copied into ``target``
        hidden = [
            (torch.empty(len(s), c.codes.shape[1], dtype=s.dtype, device=s.device), c)
            for c in self.codes
        ]
        pulls = [Pull(output, target, beta)]
        pulls += [Pull(c.neurons, t, self.hidden_beta * beta) for t, c in hidden]
        inner = self.base.pull_kernel(s, h, pulls, eps, project)

        def finish() -> None:
            for t, c in hidden:
                torch.mm(target, c.codes, out=t)
            inner()

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
