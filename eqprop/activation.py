"""Activations: the neuron's nonlinearity ``rho`` and what it makes of the energy and the step
(``docs/science.md`` section 1, "Activations").

The energy is Scellier & Bengio's (2017) for every activation,
``E(s) = 1/2 sum_i s_i^2 - sum_{i<j} W_ij rho(s_i) rho(s_j) - sum_i b_i rho(s_i)``, and a step
is written from the drive ``h = W rho(s) + W_in x + b`` in one form,

    s <- P((1 - eps) s + eps G(s, h))        fixed point   s = P(G(s, h(s)))

with a *gain* ``G`` and a *projection* ``P`` that the activation supplies:

- ``hard-sigmoid`` (:class:`HardSigmoid`, the default, the papers'): ``rho(s) = clip(s, 0, 1)``.
  States are kept in the box ``[0, 1]`` (``P = clip``), where ``rho(s) = s`` and
  ``rho' = 1``, so ``G(s, h) = h``: the step is a projected gradient step on ``E``.
- a smooth activation (:class:`Smooth`; built in: ``smooth-sigmoid``,
  ``1 / (1 + e^(-4 (s - 1/2)))``, and ``logistic``, ``1 / (1 + e^-s)``):
  states are free (``P`` the identity) and ``G(s, h) = rho'(s) h``, so the step is a plain
  gradient step ``s <- s - eps dE/ds`` with ``dE/ds = s - rho'(s) h``.

The EP estimate is the same for both, with ``rho(s)`` in the correlations
(:mod:`eqprop.estimators`). A new activation is a :class:`Smooth` (a name, the function and
its derivative, checked against autograd) passed as ``Network(..., activation=...)``; added to
:data:`ACTIVATIONS` it can be named in a config's ``[network] activation``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from eqprop.errors import ConfigError

#: the derivative given for a smooth activation must match autograd's to this (float64)
DERIVATIVE_RTOL = 1e-6


class Activation:
    """The interface the network, the relaxers, the estimators and the gradient check use.

    Attributes:
        name: how a config names it.
        projected: ``True`` for the projection form (states kept in ``[0, 1]`` where
            ``rho(s) = s``; the products of a step read the state itself); ``False`` for the
            gradient form (the products read ``rho(s)``, computed at every step).
    """

    name: str
    projected: ClassVar[bool] = False

    def rho(self, s: torch.Tensor) -> torch.Tensor:
        """``rho(s)``, elementwise, a new tensor."""
        raise NotImplementedError

    def rho_prime(self, s: torch.Tensor) -> torch.Tensor:
        """``rho'(s)``, elementwise, a new tensor."""
        raise NotImplementedError

    def rates(self, s: torch.Tensor) -> torch.Tensor:
        """``rho(s)`` of a state the relaxers produced: in the projection form the state
        itself (it is in the box, where ``rho(s) = s``), else :meth:`rho`."""
        return s if self.projected else self.rho(s)

    def rho_second(self, s: torch.Tensor) -> torch.Tensor:
        """``rho''(s)``, elementwise (the gradient check's Hessian); by autograd of
        :meth:`rho_prime`."""
        x = s.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.rho_prime(x).sum(), x)
        return grad

    def project_(self, s: torch.Tensor) -> torch.Tensor:
        """``P``: the state projected in place (the identity in the gradient form)."""
        return s

    def gain_(self, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``G``: the drive ``h`` turned in place into the force's drive term, ``rho'(s) h``."""
        return h.mul_(self.rho_prime(s))


class HardSigmoid(Activation):
    """``rho(s) = clip(s, 0, 1)`` in the projection form (module docs): states in ``[0, 1]``,
    ``G(s, h) = h``, ``P = clip``. Its ``rho'`` is 1 strictly inside the box and 0 outside
    (a saturated unit is locally constant)."""

    name = "hard-sigmoid"
    projected = True

    def rho(self, s: torch.Tensor) -> torch.Tensor:
        return torch.clamp(s, 0.0, 1.0)

    def rho_prime(self, s: torch.Tensor) -> torch.Tensor:
        return ((s > 0.0) & (s < 1.0)).to(s.dtype)

    def rho_second(self, s: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(s)

    def project_(self, s: torch.Tensor) -> torch.Tensor:
        return s.clamp_(0.0, 1.0)

    def gain_(self, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return h


@dataclass(frozen=True, eq=False)
class Smooth(Activation):
    """A smooth activation in the gradient form (module docs), from its ``function`` and its
    ``derivative`` (elementwise torch functions). The derivative is checked against autograd
    of the function at construction (a one-line :class:`ConfigError` if they disagree): a
    wrong one would make the dynamics follow no energy and EP no gradient.

    Example:
        >>> softsign = Smooth("softsign", lambda s: 0.5 + 0.5 * s / (1 + s.abs()),
        ...                   lambda s: 0.5 / (1 + s.abs()) ** 2)
        >>> float(softsign.rho(torch.zeros(1)))
        0.5
    """

    name: str
    function: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]

    def __post_init__(self) -> None:
        s = torch.linspace(-6.0, 6.0, 241, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            (want,) = torch.autograd.grad(self.function(s).sum(), s)
        got = self.derivative(s.detach())
        error = float((got - want).abs().max())
        if not error <= DERIVATIVE_RTOL * max(1.0, float(want.abs().max())):
            raise ConfigError(
                f"activation {self.name!r}: its derivative differs from autograd's derivative "
                f"of its function by up to {error:.3g} on [-6, 6]; give rho' of rho"
            )

    def rho(self, s: torch.Tensor) -> torch.Tensor:
        return self.function(s)

    def rho_prime(self, s: torch.Tensor) -> torch.Tensor:
        return self.derivative(s)


def _logistic_prime(s: torch.Tensor) -> torch.Tensor:
    r = torch.sigmoid(s)
    return r * (1.0 - r)


def _smooth_sigmoid(s: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(4.0 * (s - 0.5))


def _smooth_sigmoid_prime(s: torch.Tensor) -> torch.Tensor:
    r = _smooth_sigmoid(s)
    return 4.0 * r * (1.0 - r)


HARD_SIGMOID = HardSigmoid()
#: ``1 / (1 + e^(-4 (s - 1/2)))``: the logistic sigmoid with the hard sigmoid's centre and
#: slope (``rho(1/2) = 1/2``, ``rho'(1/2) = 1``), so the hard sigmoid's rates and step sizes
#: carry over
SMOOTH_SIGMOID = Smooth("smooth-sigmoid", _smooth_sigmoid, _smooth_sigmoid_prime)
#: the plain logistic sigmoid ``1 / (1 + e^-s)`` (``rho' <= 1/4``: a weak learning signal at
#: the hard sigmoid's rates)
LOGISTIC = Smooth("logistic", torch.sigmoid, _logistic_prime)
DEFAULT = HARD_SIGMOID.name

#: name -> activation (a new built-in is one line here; see the module docs for your own)
ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (HARD_SIGMOID, SMOOTH_SIGMOID, LOGISTIC)}


def get(name: str | Activation) -> Activation:
    """The activation called ``name`` (an :class:`Activation` is returned as it is)."""
    if isinstance(name, Activation):
        return name
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]
