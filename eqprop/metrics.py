"""Measurements of training: error rates and per-layer training rates (docs/science.md section 3).

The per-batch rates themselves (eq. 2 of the ICONS paper) are computed by
:meth:`eqprop.rules.EquilibriumPropagation.update` from the corrections it applies.
"""

from __future__ import annotations

import numpy as np
import torch


def error_rate(output_states: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of examples whose most active output neuron is not the label."""
    return float((output_states.argmax(1) != labels).float().mean())


def smooth_rates(rates: np.ndarray, n: int = 5) -> np.ndarray:
    """Centred moving average over ``2n + 1`` batches (eq. 3 of the ICONS paper).

    ``rates`` has shape ``(batches, pairs)``. Near the ends, where the window would leave the
    record, the average runs over the batches that exist (the window is truncated, not padded).
    """
    rates = np.asarray(rates, dtype=np.float64)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    padded = np.concatenate([np.zeros((1, rates.shape[1])), np.cumsum(rates, axis=0)])
    idx = np.arange(len(rates))
    lo, hi = np.maximum(idx - n, 0), np.minimum(idx + n + 1, len(rates))
    return (padded[hi] - padded[lo]) / (hi - lo)[:, None]


def log_spread(rates: np.ndarray) -> float:
    """Standard deviation (population) of ``log10`` of each pair's mean rate (journal version):
    one number for how unevenly the layers train. ``rates`` has shape ``(batches, pairs)``."""
    means = np.asarray(rates, dtype=np.float64).mean(axis=0)
    return float(np.std(np.log10(means)))
