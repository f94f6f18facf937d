"""Sweeps on Ray: a grid of config overrides run as trials (placeholder; being written)."""

from __future__ import annotations

import argparse

from eqprop.errors import EqpropError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``eqprop sweep`` options to ``parser``."""
    parser.add_argument("spec", help="the sweep file (TOML)")


def run_from_cli(args: argparse.Namespace) -> int:
    """``eqprop sweep``: run the sweep of ``args.spec``."""
    raise EqpropError("eqprop sweep is not available yet")
