"""The ``eqprop`` console command's entry point.

Importing the command line pulls in PyTorch, which takes about a second; a Ctrl-C in that
second would otherwise end in a traceback from inside the import. This module, which
imports nothing heavy, ignores that case cleanly: until the command line's own handling is
in place, SIGINT ends the process with the usual one line and exit status 130.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    sys.stderr.write("eqprop: interrupted while starting; nothing was changed\n")
    sys.stderr.flush()
    os._exit(130)


def main() -> int:
    """Run ``eqprop`` with a quiet Ctrl-C during start-up."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # e.g. a background job
    if not ignored:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    from eqprop.cli import main as cli_main

    if not ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return cli_main()
