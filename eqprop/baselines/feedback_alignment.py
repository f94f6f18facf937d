"""Feedback alignment (Lillicrap et al. 2016), on plain and dense networks.

The error reaching ``h_j`` through edge ``W_{l,j}`` is ``B_{l,j}^T delta_l`` instead of
``W_{l,j}^T delta_l``, with ``B_{l,j}`` a fixed random matrix of the same shape. Every forward
weight tensor has its own feedback tensor, the dense skip matrices included (seed section 2:
"for FA, we can replace the transpose weight matrices with fixed random connections"); in a
dense network the error of ``h_j`` is the sum ``sum_{l > j} B_{l,j}^T delta_l`` over all the
layers it feeds. Weight updates keep their local form ``delta_l h_j^T``.

The swap is a custom autograd function, so the rest of the backward pass (activation
derivatives, sums over skip paths, cross-entropy) is autograd's, shared with backprop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from eqprop.baselines.architectures import Edge, FeedforwardNetwork, uniform_init
from eqprop.baselines.rule import LearningRule


class _FeedbackEdgeFunction(torch.autograd.Function):
    """``W h`` forward; backward sends ``B^T grad`` to ``h`` and ``grad h^T`` to ``W``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, feedback: Tensor, edge: Edge) -> Tensor:
        ctx.save_for_backward(x, feedback)
        ctx.edge = edge
        return edge.apply_weight(x, weight)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, feedback = ctx.saved_tensors
        edge: Edge = ctx.edge
        grad_x = edge.input_grad(grad_out, feedback, x.shape) if ctx.needs_input_grad[0] else None
        grad_w = edge.weight_grad(x, grad_out) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None


class FeedbackAlignment(LearningRule):
    """Backprop with every transposed forward weight replaced by a fixed random matrix.

    ``feedback[key]`` (see :func:`~eqprop.baselines.architectures.edge_key`) is drawn once from
    the same uniform distribution as the initial forward weight it stands for
    (:attr:`~eqprop.baselines.architectures.Edge.bound`), with its own generator seeded by
    ``seed``; it is never updated.
    """

    name = "FA"

    def __init__(self, network: FeedforwardNetwork, seed: int = 0) -> None:
        super().__init__(network, seed)
        generator = torch.Generator().manual_seed(seed)
        self.feedback: dict[str, Tensor] = {}
        for key, edge in network.edges.items():
            self.feedback[key] = uniform_init(edge.weight.shape, edge.bound, generator)

    def _edge_fn(self, key: str, edge: Edge, x: Tensor) -> Tensor:
        return _FeedbackEdgeFunction.apply(x, edge.weight, self.feedback[key], edge)

    def compute_gradients(self, x: Tensor, y: Tensor) -> dict[str, float]:
        _, states = self.network.forward_pass(x, self._edge_fn)
        loss = F.cross_entropy(states[-1], y)
        loss.backward()
        return {"loss": loss.item()}
