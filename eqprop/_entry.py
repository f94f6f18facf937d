"""The ``eqprop`` console command's entry point.

Importing the command line pulls in PyTorch, which takes about a second; a Ctrl-C in that
second would otherwise end in a traceback from inside the import. This module, which
imports nothing heavy, ignores that case cleanly: until the command line's own handling is
in place, SIGINT ends the process with the usual one line and exit status 130, and SIGTERM
with one line and 143.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    sys.stderr.write(f"eqprop: {how} while starting; nothing was changed\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def main() -> int:
    """Run ``eqprop`` with a quiet Ctrl-C (or SIGTERM) during start-up."""
    handled = [
        s
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) is not signal.SIG_IGN  # SIGINT is ignored in background jobs
    ]
    for signum in handled:
        signal.signal(signum, _interrupted_while_starting)
    from eqprop.cli import main as cli_main

    if signal.SIGINT in handled:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.SIGTERM in handled:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the command line installs its own
    return cli_main()
