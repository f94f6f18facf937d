"""What the probes that read run directories share: their argument handling (parse, measure,
a bad input ending in one line ``<probe>: <what is wrong>``, never a traceback), and a free
relaxer that records how far each batch got."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from eqprop.errors import EqpropError


def run(name: str, parser: argparse.ArgumentParser, measure: Callable) -> None:
    """Parse the command line with ``parser`` and call ``measure`` on the arguments."""
    args = parser.parse_args()
    try:
        measure(args)
    except EqpropError as exc:
        raise SystemExit(f"{name}: {exc}") from None


@torch.no_grad()
def row_residuals(network, s: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """Each row's fixed-point residual ``max |s - clip(W s + drive)|``."""
    h = network.drive(s, drive, torch.empty_like(s)).clamp_(0.0, 1.0)
    return (s - h).abs().amax(1)


class Recorded:
    """A free relaxer that relaxes as ``inner`` does and, while ``on``, appends the largest
    residual of each batch it relaxed to ``largest`` (the states are not touched)."""

    def __init__(self, inner) -> None:
        self.inner, self.on, self.largest = inner, True, []

    def relax(self, network, s, drive, *args, **kwargs):
        result = self.inner.relax(network, s, drive, *args, **kwargs)
        if self.on:
            self.largest.append(float(row_residuals(network, s, drive).max()))
        return result
