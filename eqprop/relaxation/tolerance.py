"""Adaptive stopping on the state change: the fixed-step dynamics, stopped early once the
largest change of one step, ``max |s_t - s_{t-1}|``, falls below ``tol``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from eqprop.errors import ConfigError
from eqprop.relaxation import Relaxer, RelaxResult

if TYPE_CHECKING:
    from eqprop.energy_network import EnergyNetwork
    from eqprop.nudging import Nudge


@dataclass(frozen=True)
class Tolerance(Relaxer):
    """Steps of the papers' dynamics until a step changes no state by ``tol`` or more, at
    most ``steps``; ``converged`` says whether it stopped on ``tol``."""

    tol: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ConfigError(f"tol must be a number > 0, got {self.tol!r}")

    def relax(
        self,
        network: EnergyNetwork,
        state: torch.Tensor,
        drive: torch.Tensor,
        nudge: Nudge | None = None,
    ) -> RelaxResult:
        network.activation.project_(state)
        h, prev = torch.empty_like(state), torch.empty_like(state)
        step = network.stepper(state, drive, h, self.kernel(network, state, h, nudge))
        for taken in range(1, self.steps + 1):
            prev.copy_(state)
            step()
            if float((state - prev).abs().max()) < self.tol:
                return RelaxResult(state, taken, True)
        return RelaxResult(state, self.steps, False)
