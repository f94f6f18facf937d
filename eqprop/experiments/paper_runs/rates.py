"""The rate statistics of Figures 4 and 5: each layer pair's mean rate (eq. 2) over a run's
first batches, their spread and their ratios."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from eqprop.metrics import log_spread

#: "first batches" window of the rate statistics (the start of training)
FIRST_BATCHES = 50


@dataclass(frozen=True)
class RateSummary:
    """Per-pair statistics of a run's per-batch rates.

    ``mean``: mean over the batches whose rate is finite and positive (NaN if none);
    ``first``: the same over the first :data:`FIRST_BATCHES` batches; ``zero_output``:
    fraction of batches whose output-pair rate is zero (or not finite); ``batches``.
    """

    mean: np.ndarray
    first: np.ndarray
    zero_output: float
    batches: int

    def to_json(self) -> str:
        """The summary as JSON (a mean that is NaN is ``null``)."""

        def listed(values: np.ndarray) -> list[float | None]:
            return [float(v) if np.isfinite(v) else None for v in values]

        record = {
            "mean": listed(self.mean),
            "first": listed(self.first),
            "zero_output": self.zero_output,
            "batches": self.batches,
        }
        return json.dumps(record, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RateSummary:
        """The summary :meth:`to_json` wrote."""
        record = json.loads(text)

        def array(values: list[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            array(record["mean"]),
            array(record["first"]),
            float(record["zero_output"]),
            int(record["batches"]),
        )


#: a published run's summary of its per-batch rates (:class:`RateSummary`), written by
#: ``--publish`` for the experiments that judge claims on the rates: the per-batch files stay
#: in the run directory, so the committed stage keeps what its claims read
RATE_SUMMARY = "rate_summary.json"


def _positive_mean(rates: np.ndarray) -> np.ndarray:
    good = np.isfinite(rates) & (rates > 0)
    counts = good.sum(axis=0)
    sums = np.where(good, rates, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def summarize_rates(rates: np.ndarray, first: int = FIRST_BATCHES) -> RateSummary | None:
    """:class:`RateSummary` of ``rates`` ``(batches, pairs)``; None when there are none."""
    rates = np.asarray(rates, dtype=np.float64)
    if rates.size == 0:
        return None
    output = rates[:, -1]
    zero = float(np.mean(~(np.isfinite(output) & (output > 0))))
    return RateSummary(_positive_mean(rates), _positive_mean(rates[:first]), zero, len(rates))


def spread(means: np.ndarray) -> float:
    """Log-spread (std of log10) of per-pair mean rates; NaN if any is not positive."""
    means = np.asarray(means, dtype=np.float64)
    if len(means) == 0 or not np.all(np.isfinite(means) & (means > 0)):
        return math.nan
    return log_spread(means[None, :])


def ratios(means: np.ndarray) -> np.ndarray:
    """``means[k + 1] / means[k]``: how much faster each pair trains than the next deeper one
    (pair 0 is the input pair)."""
    means = np.asarray(means, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return means[1:] / means[:-1]


def plottable(rates: np.ndarray) -> np.ndarray:
    """Rates with non-finite entries set to 0, so the eq. 3 moving average stays finite."""
    return np.nan_to_num(np.asarray(rates, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
