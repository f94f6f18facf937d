"""The papers' protocol: a fixed number of discrete steps ``s <- clip(s - eps dF/ds)`` (the
clip: the activation's projection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from eqprop.relaxation import Relaxer, RelaxResult

if TYPE_CHECKING:
    from eqprop.energy_network import EnergyNetwork
    from eqprop.nudging import Nudge


@dataclass(frozen=True)
class FixedSteps(Relaxer):
    """Exactly ``steps`` steps (module docs); ``converged`` is ``None`` (no stopping rule)."""

    def relax(
        self,
        network: EnergyNetwork,
        state: torch.Tensor,
        drive: torch.Tensor,
        nudge: Nudge | None = None,
    ) -> RelaxResult:
        network.activation.project_(state)
        h = torch.empty_like(state)
        step = network.stepper(state, drive, h, self.kernel(network, state, h, nudge))
        for _ in range(self.steps):
            step()
        return RelaxResult(state, self.steps, None)
