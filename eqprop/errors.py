"""User-facing errors.

Every problem a user can fix (a bad config value, a missing data file, an existing run
directory) raises :class:`EqpropError` with a one-line message that names what is wrong and
how to fix it. The command-line interface prints that line and exits with status 2; it never
shows a traceback for these.
"""


class EqpropError(Exception):
    """A problem in the user's input, described in one line with its fix."""


class ConfigError(EqpropError, ValueError):
    """An invalid configuration field or value."""


class DataError(EqpropError):
    """A missing, corrupt or unreadable data file."""


class DivergenceError(EqpropError):
    """Non-finite values appeared in states or weights during training."""


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGINT: Ctrl-C; SIGTERM: a batch
    scheduler's time limit, a shutdown, ``kill``). Raised where the work can stop cleanly
    (after the batch under way, with its checkpoint written), or at once when there is no
    such point. The command line exits with ``128 + signum`` (130 or 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """``128 + signum``, the shell's convention for a process ended by a signal."""
        return 128 + self.signum
