"""Progress of long work: a bar on a terminal, plain lines in a log."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

#: a plain progress line at most this often (seconds) when stderr is not a terminal
PLAIN_PROGRESS_EVERY_S = 30.0


class Progress:
    """A progress bar on a terminal; elsewhere (a log file, a pipe) a plain line at most every
    :data:`PLAIN_PROGRESS_EVERY_S` seconds, so that logs stay readable."""

    def __init__(self, total: int, desc: str, *, initial: int = 0, enabled: bool = True) -> None:
        self.total, self.desc, self.n, self.postfix = total, desc, initial, ""
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit="batch", leave=False, file=sys.stderr
            )
        self.last = time.monotonic()

    def update(self, postfix: str = "") -> None:
        """One more unit done; ``postfix`` (kept until replaced) follows the count."""
        self.n += 1
        self.postfix = postfix or self.postfix
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)
        elif self.enabled and time.monotonic() - self.last >= PLAIN_PROGRESS_EVERY_S:
            self.last = time.monotonic()
            extra = f", {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: batch {self.n}/{self.total}{extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Remove the bar from the terminal (nothing to do for plain lines)."""
        if self.bar is not None:
            self.bar.close()
