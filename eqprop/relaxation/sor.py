"""Projected successive over-relaxation (SOR) by even/odd layers, for the layered networks
and the conv networks.

The layer sweeps of :mod:`eqprop.relaxation.layer_sweep` with each half-sweep moved past the
exact block update by the factor ``omega = eps``: ``s_odd <- clip(s_odd + eps (h_odd(s) -
s_odd))``, then the same for the even layers. For a positive definite quadratic over a box,
projected SOR converges for ``0 < eps < 2`` (Cryer 1971, for the pointwise method); ``eps = 1``
is the exact sweep. A state the sweeps leave unchanged satisfies ``s = clip(h(s))``, so their
fixed points are those of the damped step (on a non-convex energy they may reach another of
them than the damped step does from the same start: on a conv network with max pooling
between state layers, :mod:`eqprop.relaxation.layer_sweep`, they often do). Measured on
network B of the paper (``docs/performance.md``), ``eps = 1.7`` needs about 2.4x fewer sweeps
than FISTA and 4x fewer than the exact sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from eqprop.errors import ConfigError
from eqprop.relaxation.layer_sweep import LayerSweep


@dataclass(frozen=True)
class OverRelaxed(LayerSweep):
    """Projected SOR by even/odd layers (module docs), relaxation factor ``eps`` in
    ``(0, 2)``; stopped on the residual, at most ``steps`` sweeps."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.eps < 2:
            raise ConfigError(
                f"the sor solver's eps is its relaxation factor and must be below 2 (1: exact "
                f"layer sweeps; about 1.7 was fastest on network B), got {self.eps!r}"
            )

    @property
    def omega(self) -> float:
        """The over-relaxation factor (the step size ``eps``)."""
        return float(self.eps)
