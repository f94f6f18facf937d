"""Tasks: what the sweep machinery runs, wherever it runs it.

A :class:`Task` is one unit of work of a sweep or an experiment: a function named by its
module path, called with keyword arguments in the process that runs it (so it can be sent
to a Ray worker on another machine). Each task keeps its own state on disk (a run
directory, a result file) and can be called again after an interruption: it continues.

Beside it: the whole-number options of how tasks run (:func:`check_counts`) and the
progress count of a run of tasks (:class:`Countdown`). Where tasks run is
:mod:`eqprop.sweeps.placement`; how they run on Ray is :mod:`eqprop.sweeps.engine`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eqprop.errors import ConfigError

#: Ray Tune's files of the tasks run on Ray, under the output directory of what ran them
RAY_DIR = "ray"


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function`` ("package.module:name") called with ``kwargs``
    (plain values: they travel to the worker). ``name`` is unique among the tasks of a
    run and is what the progress lines show."""

    name: str
    function: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """The task without its name, as plain values (what a Ray worker is sent)."""
        return {"function": self.function, "kwargs": dict(self.kwargs)}

    def call(self) -> Any:
        """Run the task here; returns what its function returns."""
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)(**self.kwargs)


#: the whole-number options of how trials run (sweeps and experiments), and their least values
COUNTS = (("trials_at_once", 0), ("cpus_per_trial", 1), ("retries", 0))


def check_counts(options: Any, label: Callable[[str], str]) -> None:
    """A one-line ConfigError unless each of :data:`COUNTS` on ``options`` is an integer at
    least its least value; ``label(name)`` is how the user wrote the option."""
    for name, low in COUNTS:
        value = getattr(options, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{label(name)} must be an integer >= {low}, got {value!r}")


def duration(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Countdown:
    """How many tasks remain and when they will be done: the time per task finished so far
    in this run, times the tasks left."""

    def __init__(self, total: int, finished: int = 0) -> None:
        self.total, self.finished, self._here = total, finished, 0
        self._started = time.monotonic()

    def finish_one(self) -> tuple[str, str]:
        """Count one more finished task; ``"[k/N]"`` and ``"M left, ETA ..."``."""
        self.finished += 1
        self._here += 1
        left = self.total - self.finished
        if not left:
            return f"[{self.finished}/{self.total}]", "none left"
        per_task = (time.monotonic() - self._started) / self._here
        return f"[{self.finished}/{self.total}]", f"{left} left, ETA {duration(per_task * left)}"
