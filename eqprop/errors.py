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
