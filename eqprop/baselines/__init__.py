"""Baselines from Im, Patil & Branson, "Are skip connections necessary for biologically
plausible learning rules?": backprop, feedback alignment and difference target propagation
on plain and densely connected MLPs and ConvNets.

One module per learning rule, all implementing :class:`~eqprop.baselines.rule.LearningRule`:
``backprop`` (BP), ``feedback_alignment`` (FA), ``target_propagation`` (DTP). Architectures live
in ``architectures``, the training protocol (batch 128, L2, early stopping, validation-based
model selection) in ``training``.
"""

from __future__ import annotations

from eqprop.baselines.architectures import ARCHITECTURES, ArchitectureConfig, FeedforwardNetwork
from eqprop.baselines.backprop import Backprop
from eqprop.baselines.feedback_alignment import FeedbackAlignment
from eqprop.baselines.rule import LearningRule
from eqprop.baselines.target_propagation import DifferenceTargetPropagation, DTPConfig
from eqprop.baselines.training import TrainConfig, TrainingData, TrainResult, train
from eqprop.errors import ConfigError

#: rule name -> class; every class takes ``(network, seed)``
RULES: dict[str, type[LearningRule]] = {
    rule.name: rule for rule in (Backprop, FeedbackAlignment, DifferenceTargetPropagation)
}


def make_rule(name: str, network: FeedforwardNetwork, seed: int = 0) -> LearningRule:
    """The learning rule called ``name`` ("BP", "FA" or "DTP") for ``network``."""
    if name not in RULES:
        raise ConfigError(f"rule must be one of {', '.join(RULES)}; got {name!r}")
    return RULES[name](network, seed)


__all__ = [
    "ARCHITECTURES",
    "ArchitectureConfig",
    "Backprop",
    "DTPConfig",
    "DifferenceTargetPropagation",
    "FeedbackAlignment",
    "LearningRule",
    "FeedforwardNetwork",
    "RULES",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "make_rule",
    "train",
]
