"""Command-line options that several ``eqprop`` commands share, each defined once.

``eqprop train``, ``topology``, ``check-gradient``, ``reproduce`` and ``sweep`` take
``--set``; the commands that read datasets take ``--data-dir``; ``eqprop reproduce`` and
``eqprop sweep`` run their trials on Ray and take the Ray options.
"""

from __future__ import annotations

import argparse


def add_set_option(parser: argparse.ArgumentParser, of: str = "", note: str = "") -> None:
    """``--set KEY=VALUE`` (repeatable, collected in a list): a config field overridden for
    ``of`` (e.g. ``" of every run"``), with ``note`` added inside the help's parentheses."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one field{of}, TOML value syntax (repeatable{note})",
    )


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: where the datasets are (else ``$EQPROP_DATA_DIR``, else the cache)."""
    parser.add_argument("--data-dir", help="directory of the datasets (or set EQPROP_DATA_DIR)")


def add_ray_options(parser: argparse.ArgumentParser, description: str) -> argparse._ArgumentGroup:
    """The options of trials run on Ray (``--address``, ``--trials-at-once``,
    ``--cpus-per-trial``, ``--retries``), in a help section titled "Ray" that starts with
    ``description``; returns the group, for a command's own Ray options."""
    group = parser.add_argument_group("Ray", description)
    group.add_argument(
        "--address",
        help="run the trials on this Ray cluster (from 'ray start --head'; default: a local "
        "Ray instance)",
    )
    group.add_argument(
        "--trials-at-once",
        type=int,
        metavar="N",
        help="at most N trials together (default 0: as many as fit)",
    )
    group.add_argument(
        "--cpus-per-trial", type=int, metavar="N", help="CPUs (torch threads) per trial (1)"
    )
    group.add_argument(
        "--retries", type=int, metavar="N", help="retries of a trial whose worker died (2)"
    )
    return group
