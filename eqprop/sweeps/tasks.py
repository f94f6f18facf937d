"""Tasks, and where they run.

A :class:`Task` is one unit of work of a sweep or an experiment: a function named by its
module path, called with keyword arguments in the process that runs it (so it can be sent
to a Ray worker on another machine). Each task keeps its own state on disk (a run
directory, a result file) and can be called again after an interruption: it continues.

A :class:`Placement` says where the tasks of an experiment (``eqprop reproduce``) run:
one after another in this process (the library's default, and the command line's when
Ray is not installed or with ``--no-ray``), or as Ray Tune trials (:mod:`eqprop.sweeps.engine`)
on a local Ray instance sized to the machine, or on the cluster at ``address``.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass(frozen=True)
class Placement:
    """Where an experiment's tasks run.

    Attributes:
        ray: as Ray Tune trials (False: one after another in this process).
        address: the Ray cluster to join (None: a local instance sized to the machine).
        trials_at_once: at most this many tasks together (0: as many as the CPUs allow).
        cpus_per_trial: CPUs Ray reserves per task, which are its torch threads.
        retries: how often a task whose worker died is retried (from its checkpoint).
    """

    ray: bool = False
    address: str | None = None
    trials_at_once: int = 0
    cpus_per_trial: int = 1
    retries: int = 2

    def __post_init__(self) -> None:
        if self.address is not None and not self.ray:
            raise ConfigError("--address needs Ray; drop --no-ray")
        check_counts(self, lambda name: f"--{name.replace('_', '-')}")


#: tasks one after another in this process
IN_PROCESS = Placement()


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


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_tasks(
    tasks: Sequence[Task],
    placement: Placement | None,
    *,
    label: str,
    storage: Path,
    done_before: int = 0,
    echo: Callable[[str], None] = _echo,
) -> dict[str, str]:
    """Run ``tasks`` where ``placement`` says (None: in this process), one progress line
    each (``echo``, default stderr). On Ray, returns for every task that failed for a
    reason of its own (an :class:`~eqprop.errors.EqpropError`) or that Ray gave up on its
    one-line error, and the other tasks go on; in this process such an error propagates.
    ``storage`` holds Ray Tune's files; ``done_before`` counts the tasks already finished
    before this call (shown in the progress)."""
    placement = placement or IN_PROCESS
    countdown = Countdown(done_before + len(tasks), done_before)
    if not tasks:
        return {}
    errors: dict[str, str] = {}
    if not placement.ray:
        for task in tasks:
            started = time.monotonic()
            task.call()
            count, eta = countdown.finish_one()
            took = duration(time.monotonic() - started)
            echo(f"{label} {count} {task.name}: done in {took}; {eta}")
        return errors
    from eqprop.sweeps import engine

    resources = engine.Resources(
        cpus=placement.cpus_per_trial,
        trials_at_once=placement.trials_at_once,
        retries=placement.retries,
    )

    def finished(name: str, result: Mapping[str, Any]) -> None:
        if result.get("status") == "failed":
            errors[name] = str(result.get("error", ""))
        count, eta = countdown.finish_one()
        outcome = f"FAILED ({errors[name]})" if name in errors else "done"
        echo(f"{label} {count} {name}: {outcome}; {eta}")

    def retried(name: str, failures: int, error: str) -> None:
        echo(
            f"{label} {name}: its worker failed ({error}); retry {failures} of "
            f"{placement.retries}, continuing from what it saved"
        )

    def given_up(name: str, error: str) -> None:
        errors[name] = error

    with engine.connected(placement.address, needed=resources) as total:
        at_once = resources.at_once(total, len(tasks))
        echo(
            f"{label}: {len(tasks)} task(s) on Ray, up to {at_once} at once, "
            f"{placement.cpus_per_trial} CPU(s) each"
        )
        engine.run_tasks(
            tasks,
            storage,
            resources,
            on_finished=finished,
            on_retry=retried,
            on_given_up=given_up,
        )
    return errors
