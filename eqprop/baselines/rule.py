"""The interface every learning rule of the baselines shares (one module per rule)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from eqprop.baselines.architectures import FeedforwardNetwork


class LearningRule(ABC):
    """Computes parameter updates for a :class:`FeedforwardNetwork` from one mini-batch.

    The training loop owns the optimiser: it zeroes the gradients of :meth:`parameters`, calls
    :meth:`compute_gradients`, and steps. A rule writes its update direction into each
    parameter's ``.grad`` (the gradient of a loss for BP, a pseudo-gradient for FA and DTP).

    Args:
        network: the forward network being trained.
        seed: seed of whatever randomness the rule adds (feedback matrices, inverse
            initialisation, reconstruction noise); unused by backprop.
    """

    #: short name used in tables and file names ("BP", "FA", "DTP")
    name: ClassVar[str]

    def __init__(self, network: FeedforwardNetwork, seed: int = 0) -> None:
        self.network = network
        self.seed = seed

    def parameters(self) -> list[nn.Parameter]:
        """Everything the optimiser updates (forward weights, plus inverses for DTP)."""
        return list(self.network.parameters())

    def state_dict(self) -> dict:
        """What training changes in the rule, for a checkpoint: the value of every parameter
        (a rule with randomness of its own during training adds that generator's state)."""
        return {"parameters": [p.detach().clone() for p in self.parameters()]}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (of a rule built the same way)."""
        with torch.no_grad():
            for parameter, value in zip(self.parameters(), state["parameters"], strict=True):
                parameter.copy_(value)

    @abstractmethod
    def compute_gradients(self, x: Tensor, y: Tensor) -> dict[str, float]:
        """Set ``.grad`` of every parameter for the batch ``(x, y)``.

        Args:
            x: flat inputs, shape ``(n, features)``.
            y: class labels, shape ``(n,)``.

        Returns:
            Scalars describing the batch; always includes ``"loss"`` (mean cross-entropy of
            the forward network's logits).
        """
