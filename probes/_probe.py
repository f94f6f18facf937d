"""What every probe that reads run directories does with its arguments: parse them and
measure, a bad input ending in one line (``<probe>: <what is wrong>``), never a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from eqprop.errors import EqpropError


def run(name: str, parser: argparse.ArgumentParser, measure: Callable) -> None:
    """Parse the command line with ``parser`` and call ``measure`` on the arguments."""
    args = parser.parse_args()
    try:
        measure(args)
    except EqpropError as exc:
        raise SystemExit(f"{name}: {exc}") from None
