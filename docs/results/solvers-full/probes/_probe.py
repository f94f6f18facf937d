"""What the probes that read run directories share: their argument handling (parse, measure,
a bad input ending in one line ``<probe>: <what is wrong>``, never a traceback), and a free
relaxer that records how far each batch got."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from eqprop.errors import EqpropError
from eqprop.relaxation.residual import row_residuals


def run(name: str, parser: argparse.ArgumentParser, measure: Callable) -> None:
    """Parse the command line with ``parser`` and call ``measure`` on the arguments."""
    args = parser.parse_args()
    try:
        measure(args)
    except EqpropError as exc:
        raise SystemExit(f"{name}: {exc}") from None


class Recorded:
    """A free relaxer that relaxes as ``inner`` does and keeps, in ``rows``, each relaxed
    batch's per-example fixed-point residuals (``max |s - clip(W s + drive)|``; the states
    are not touched)."""

    def __init__(self, inner) -> None:
        self.inner, self.rows = inner, []

    def relax(self, network, s, drive, *args, **kwargs):
        result = self.inner.relax(network, s, drive, *args, **kwargs)
        with torch.no_grad():
            h = network.drive(s, drive, torch.empty_like(s))
            self.rows.append(row_residuals(s, h, torch.empty_like(s)))
        return result

    def largest(self) -> list[float]:
        """Each relaxed batch's largest residual, in order."""
        return [float(r.max()) for r in self.rows]
