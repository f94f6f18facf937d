"""Fixed-step phases as captured CUDA graphs: one launch per phase instead of about five
kernel launches per step (more on a conv network). It uses only what every
:class:`~eqprop.energy_network.EnergyNetwork` has (its ``stepper``, activation and output slice), so
it captures the fully connected and the conv networks alike. On a CPU tensor it simply runs
the wrapped solver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from eqprop.relaxation import Relaxer, RelaxResult
from eqprop.relaxation.fixed import FixedSteps

if TYPE_CHECKING:
    from eqprop.energy_network import EnergyNetwork
    from eqprop.nudging import Nudge


#: graphs kept per wrapper (a handful of batch shapes and phases per run); oldest dropped
MAX_GRAPHS = 8


@dataclass(frozen=True)
class CudaGraphs(Relaxer):
    """:class:`FixedSteps` with ``eps`` and ``steps``, captured once per (network, batch
    size, nudging, beta) as a CUDA graph and replayed.

    The graph reads the weight tensors in place (the product plan holds views of them and
    learning updates them in place), so every update is seen. Inputs are copied into the
    graph's static tensors and the result copied back into the state.
    """

    _graphs: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def relax(
        self,
        network: EnergyNetwork,
        state: torch.Tensor,
        drive: torch.Tensor,
        nudge: Nudge | None = None,
    ) -> RelaxResult:
        if not state.is_cuda:
            return FixedSteps(self.eps, self.steps).relax(network, state, drive, nudge)
        network.activation.project_(state)
        key = (
            id(network),
            state.shape[0],
            None if nudge is None else (nudge.nudging.name, float(nudge.beta)),
        )
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(network, state, drive, nudge)
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = entry
        graph, static = entry
        static["s"].copy_(state)
        static["base"].copy_(drive)
        if nudge is not None:
            static["target"].copy_(nudge.target)
        graph.replay()
        state.copy_(static["s"])
        return RelaxResult(state, self.steps, None)

    def _capture(self, network, state, drive, nudge) -> tuple:
        static = {"s": state.clone(), "base": drive.clone(), "h": torch.empty_like(state)}
        static_nudge = None
        if nudge is not None:
            static["target"] = nudge.target.clone()
            static_nudge = type(nudge)(nudge.nudging, nudge.beta, static["target"])
        finish = self.kernel(network, static["s"], static["h"], static_nudge)
        step = network.stepper(static["s"], static["base"], static["h"], finish)
        side = torch.cuda.Stream(device=state.device)
        side.wait_stream(torch.cuda.current_stream(state.device))
        with torch.cuda.stream(side):  # warm-up (cuBLAS handles, workspaces) off-graph
            for _ in range(3):
                step()
        torch.cuda.current_stream(state.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(self.steps):
                step()
        return graph, static
