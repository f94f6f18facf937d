"""Files a user names (their own data, their own topology): read whole, or one line saying
why not."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from eqprop.errors import EqpropError


def read_user_file(
    path: str | os.PathLike, what: str, error: type[EqpropError] = EqpropError
) -> bytes:
    """The bytes of the regular file ``path``; otherwise ``error`` with one line naming
    ``what`` it is (``"data file"``) and why it cannot be read. A FIFO or a device is refused
    before it is opened (reading one could block or never end)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise error(
                f"{what} {path} does not exist; give the path of an existing file"
            ) from None
        raise error(f"cannot read {what} {path} ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise error(f"{what} {path} is a directory; give the path of a file")
    if not stat.S_ISREG(mode):
        raise error(f"{what} {path} is not a regular file; give the path of a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {path} ({exc.strerror})") from None
