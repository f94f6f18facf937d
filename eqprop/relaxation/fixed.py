"""The papers' protocol: a fixed number of discrete steps ``s <- clip(s - eps dF/ds)`` (the
clip: the activation's projection)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eqprop.relaxation import Relaxer, RelaxResult


@dataclass(frozen=True)
class FixedSteps(Relaxer):
    """Exactly ``steps`` steps (module docs); ``converged`` is ``None`` (no stopping rule)."""

    def relax(self, network, state, drive, nudge=None) -> RelaxResult:
        network.activation.project_(state)
        h = torch.empty_like(state)
        step = network.stepper(state, drive, h, self.kernel(network, state, h, nudge))
        for _ in range(self.steps):
            step()
        return RelaxResult(state, self.steps, None)
