"""Where the tasks of an experiment (``eqprop reproduce``) run, and running them there.

A :class:`Placement` says where: one after another in this process (the library's default,
and the command line's when Ray is not installed or with ``--no-ray``), or as Ray Tune
trials (:mod:`eqprop.sweeps.engine`) on a local Ray instance sized to the machine, or on
the cluster at ``address``. :func:`run_tasks` runs tasks (:class:`~eqprop.sweeps.tasks.Task`)
there, one progress line each.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqprop.errors import ConfigError
from eqprop.sweeps import engine
from eqprop.sweeps.tasks import Countdown, Task, check_counts, duration


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
    resources = engine.Resources(
        cpus=placement.cpus_per_trial,
        trials_at_once=placement.trials_at_once,
        retries=placement.retries,
    )

    def finished(name: str, result: Mapping[str, Any]) -> None:
        if result.get("status") == engine.FAILED:
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
