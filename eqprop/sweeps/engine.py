"""Running tasks (a sweep's trials, an experiment's runs) on Ray Tune: one Tune trial per
:class:`~eqprop.sweeps.tasks.Task`, with its CPUs and GPUs, at most ``trials_at_once`` at a
time, retried ``retries`` times when its worker dies or raises something other than an
:class:`~eqprop.errors.EqpropError`.

The trial directories, not Tune's experiment state, are what a re-run reads: a new Tune
experiment is started on each run of the sweep over the trials that are not finished, and
each of those resumes from its own checkpoint (:func:`eqprop.runs.train_run`). Tune's own
files (one experiment directory per run of the command, with each trial's error traces)
are under ``SWEEP_DIR/ray``.

SIGTERM to the driver (a batch scheduler's time limit) stops the workers cleanly: each is
asked to stop after its batch (:func:`stop_workers`), writes its checkpoint, and the driver
waits for them before Ray is shut down. (Ray's own SIGTERM handler, which exits at once, is
replaced by eqprop's.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from eqprop.errors import EqpropError
from eqprop.sweeps.tasks import Task

INSTALL_HINT = "eqprop sweep needs Ray; install it with: pip install 'eqprop[ray]'"
#: how long a stopped sweep or experiment waits for its Ray workers to checkpoint (seconds):
#: a batch, or an evaluation of the held-out set, under way
STOP_WAIT_S = 300.0
#: the status a task reports to Tune when it ends: done, or failed for a reason of its own
DONE, FAILED = "done", "failed"


def require_ray() -> ModuleType:
    """The ``ray`` module; a one-line error naming the install command if it is missing."""
    try:
        import ray
        import ray.tune  # noqa: F401
    except ImportError:
        raise EqpropError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class Resources:
    """What each trial asks of Ray, and how many may run at once (0: as many as fit)."""

    cpus: int = 1
    gpus: float = 0.0
    trials_at_once: int = 0
    retries: int = 2

    def at_once(self, cluster: dict, trials: int) -> int:
        """How many of ``trials`` run together on a cluster with resources ``cluster``."""
        fit = int(cluster.get("CPU", 0) // self.cpus)
        return min(self.trials_at_once or fit, fit, trials)


@contextlib.contextmanager
def connected(address: str | None, *, needed: Resources) -> Iterator[dict]:
    """Ray, joined at ``address`` or started locally (sized to the machine) unless this
    process is already connected; yields the cluster's resources. A trial that asks for
    more CPUs or GPUs than the whole cluster has is a one-line error, before anything runs.
    A Ray instance started here is shut down on exit."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EqpropError(
                f"cannot start or join {where} ({first}); on the head node run "
                f"'ray start --head' and pass the address it prints to --address"
            ) from None
        finally:
            # Ray replaces SIGTERM's handler with one that exits at once; keep eqprop's,
            # which stops the workers after their batch, with a checkpoint (run_tasks)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, sigterm)
        started = True
    try:
        total = ray.cluster_resources()
        cpus, gpus = total.get("CPU", 0), total.get("GPU", 0)
        if needed.cpus > cpus:
            raise EqpropError(
                f"each trial asks for {needed.cpus} CPUs but the Ray cluster has {cpus:g}; "
                f"lower cpus_per_trial"
            )
        if needed.gpus > gpus:
            raise EqpropError(
                f"each trial asks for {needed.gpus:g} GPUs but the Ray cluster has {gpus:g}; "
                f"lower gpus_per_trial or join a cluster with GPUs (--address)"
            )
        yield total
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune's own reporting off (the sweep prints one line per finished trial): the
    classic reporter at verbosity 0, and Tune's per-failure tracebacks (kept in its
    experiment directory) out of the terminal."""
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    loggers = [logging.getLogger(n) for n in ("ray.tune", "ray.train", "ray.air")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if previous is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous


def _error_line(trial) -> str:
    """One line for the error of a Tune trial (the exception's last line)."""
    text = ""
    with contextlib.suppress(Exception):
        text = str(trial.get_error() or "")
    if not text and trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if line.startswith("ray.exceptions.") or "Error:" in line.split(" ")[0]:
            return line
    return lines[-1] if lines else "the trial's worker failed"


def run_task(config: dict) -> None:
    """The Ray Tune trainable: run the task named ``config["trial"]`` (a
    :class:`~eqprop.sweeps.tasks.Task` given as ``config["tasks"][name]``).

    ``config["threads"]`` (the CPUs the trial was given) is the number of torch threads,
    set before anything else. The task's own failures (:class:`~eqprop.errors.EqpropError`)
    are reported as a finished trial with ``status = "failed"``, so that Ray does not retry
    them; anything else (the worker killed, an unexpected exception) propagates, and Ray
    retries the trial, which resumes from its checkpoint.
    """
    import torch

    torch.set_num_threads(int(config["threads"]))
    from ray import tune

    task = Task(config["trial"], **config["tasks"][config["trial"]])
    try:
        result = task.call()
    except EqpropError as exc:
        tune.report({"status": FAILED, "error": str(exc)})
        return
    tune.report({"status": DONE, **(result or {})})


def run_tasks(
    tasks: Sequence[Task],
    storage: Path,
    resources: Resources,
    *,
    on_finished: Callable[[str, Mapping[str, Any]], None],
    on_retry: Callable[[str, int, str], None],
    on_given_up: Callable[[str, str], None],
) -> None:
    """Run ``tasks`` as one Tune experiment stored under ``storage``, one Tune trial each.
    ``on_finished(name, result)`` is called when a task ends (done, failed, or given up by
    Ray), with what the task reported last (``status``: ``done`` or ``failed``, ``error``);
    ``on_retry(name, failures, error)`` when Ray retries it; ``on_given_up(name, error)``
    just before ``on_finished`` when Ray gave up on it after ``resources.retries`` retries."""
    from ray import tune

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            on_finished(trial.config["trial"], trial.last_result or {})

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            on_retry(trial.config["trial"], trial.num_failures, _error_line(trial))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            name = trial.config["trial"]
            on_given_up(name, f"{_error_line(trial)} (after {trial.num_failures} attempt(s))")
            on_finished(name, {})

    trainable = tune.with_resources(run_task, {"cpu": resources.cpus, "gpu": resources.gpus})
    param_space = {
        "trial": tune.grid_search([t.name for t in tasks]),
        "tasks": {t.name: t.spec() for t in tasks},
        "threads": resources.cpus,
    }
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=resources.trials_at_once or None,
            reuse_actors=True,  # a worker (with torch imported) runs trial after trial
            trial_name_creator=lambda t: t.config["trial"],
            trial_dirname_creator=lambda t: t.config["trial"],
        ),
        run_config=tune.RunConfig(
            name=f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
            storage_path=str(storage.resolve()),
            verbose=0,
            callbacks=[Progress()],
            failure_config=tune.FailureConfig(max_failures=resources.retries),
        ),
    )
    with _quiet_tune():
        try:
            tuner.fit()
        except KeyboardInterrupt:  # SIGTERM (eqprop.errors.Interrupted), or a second Ctrl-C
            stop_workers([Path(t.kwargs["run_dir"]) for t in tasks if "run_dir" in t.kwargs])
            raise


def stop_workers(run_dirs: Sequence[Path], timeout: float = STOP_WAIT_S) -> None:
    """Ask the workers training ``run_dirs`` to stop after their batch with a checkpoint (a
    :data:`~eqprop.runs.STOP_REQUEST` in each) and wait, up to ``timeout`` seconds, until
    none holds its run's lock; the requests not taken up are then removed. A signal during
    the wait ends it at once."""
    from eqprop.runs import STOP_REQUEST, in_use

    run_dirs = [d for d in run_dirs if d.is_dir()]
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [d for d in run_dirs if in_use(d)]
            if not busy:
                break
            for d in busy:  # written again each time: a worker drops a request from before it
                (d / STOP_REQUEST).touch()
            time.sleep(0.2)
    finally:
        for d in run_dirs:
            (d / STOP_REQUEST).unlink(missing_ok=True)
