"""Measurements of training: error rates and per-layer training rates (docs/science.md section 3).

The per-batch rates themselves (eq. 2 of the ICONS paper) are computed by
:meth:`eqprop.rules.EquilibriumPropagation.update` from the corrections it applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def error_rate(output_states: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of examples whose most active output neuron is not the label."""
    return float((output_states.argmax(1) != labels).float().mean())


#: the half-window n of the ICONS paper's rate smoothing (eq. 3): 2n + 1 = 11 batches
SMOOTH = 5


def smooth_rates(rates: np.ndarray, n: int = SMOOTH) -> np.ndarray:
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


#: the key of a run's held-out error where the held-out split is a validation split (the
#: ``icons`` split's last 10,000 training images; own data evaluated on ``x_valid``)
VALID_ERROR = "valid_error"
#: the key of a run's held-out error where the held-out split is the test set (the
#: ``standard`` split; own data evaluated on ``x_test``), and in every run directory written
#: before :data:`VALID_ERROR` existed, whatever its split
TEST_ERROR = "test_error"
#: the name by which claims and tables ask for a record's held-out error, whichever of
#: :data:`VALID_ERROR` and :data:`TEST_ERROR` it is stored under (:func:`record_metric`)
HELD_OUT_ERROR = "held_out_error"


def held_out_key(record: Mapping[str, Any]) -> str:
    """The key under which a per-epoch record (a line of ``metrics.jsonl``) holds its
    held-out error: :data:`VALID_ERROR` when it has one, else :data:`TEST_ERROR`."""
    return VALID_ERROR if VALID_ERROR in record else TEST_ERROR


def held_out_error(record: Mapping[str, Any]) -> float:
    """A per-epoch record's held-out error, new (:data:`VALID_ERROR`) or old
    (:data:`TEST_ERROR`): the one way every consumer of run records reads it."""
    return record[held_out_key(record)]


def metric_key(record: Mapping[str, Any], metric: str) -> str:
    """The key of ``metric`` in ``record``: :func:`held_out_key` for :data:`HELD_OUT_ERROR`,
    else ``metric`` itself."""
    return held_out_key(record) if metric == HELD_OUT_ERROR else metric


def record_metric(record: Mapping[str, Any], metric: str) -> float:
    """``record[metric]``, where :data:`HELD_OUT_ERROR` reads :func:`held_out_error`."""
    return record[metric_key(record, metric)]


def held_out_label(key: str) -> str:
    """What the CLI and plots call the held-out error stored under ``key``: "validation
    error" for :data:`VALID_ERROR`, else the generic "held-out error" (a :data:`TEST_ERROR`
    is the test error on the ``standard`` split but the validation error in run directories
    of the ``icons`` split written before :data:`VALID_ERROR` existed)."""
    return "validation error" if key == VALID_ERROR else "held-out error"
