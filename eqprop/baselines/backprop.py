"""Backpropagation (Rumelhart et al. 1986): exact gradients of the cross-entropy by autograd.

In a dense network the chain rule sums over every direct path, ``dL/dh_l = sum_{k > l}
(dh_k/dh_l)^T dL/dh_k`` (seed section 2), which autograd does on its own.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from eqprop.baselines.rule import LearningRule


class Backprop(LearningRule):
    """Gradient of the mean cross-entropy with respect to every weight and bias."""

    name = "BP"

    def compute_gradients(self, x: Tensor, y: Tensor) -> dict[str, float]:
        loss = F.cross_entropy(self.network(x), y)
        loss.backward()
        return {"loss": loss.item()}
