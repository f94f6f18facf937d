"""One trial of a sweep: an ordinary run directory, trained by :func:`eqprop.runs.train_run`
on a Ray worker (:func:`train_trial`, the task that :func:`eqprop.sweeps.engine.run_task`
calls there), plus two files of its own beside the run's files:

- ``attempts.jsonl``: one JSON line per event of the trial. The worker writes ``start``
  (its process id, host, torch threads, and the checkpoint's epoch and batch it resumes
  from), then ``done``, ``stopped`` (its driver was stopped by SIGTERM and asked it to stop:
  it did so after its batch, with a checkpoint) or ``failed`` (the trial's own
  :class:`~eqprop.errors.EqpropError`: divergence, a config its worker cannot run, missing
  data); the driver writes ``error``
  when Ray gave up on a trial whose worker died or raised something else too many times;
- ``output.log``: what the training printed (one line per epoch), attempt after attempt.

The state of a trial is read from its directory alone (:func:`trial_state`), so a sweep
run again after any interruption knows which trials are finished without asking Ray.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

ATTEMPTS = "attempts.jsonl"
LOG = "output.log"
#: how long a trial waits for a dying worker of the same trial to release its run directory
LOCK_WAIT_S = 60.0

#: the states of a trial directory
NEW, UNFINISHED, DONE, FAILED = "not started", "unfinished", "done", "failed"


def append_event(run_dir: str | Path, event: str, **fields: Any) -> None:
    """Append one event line to ``run_dir/attempts.jsonl`` (flushed and fsynced)."""
    record = {"event": event, "time": time.time(), **fields}
    with open(Path(run_dir) / ATTEMPTS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_events(run_dir: str | Path) -> list[dict]:
    """The events of ``run_dir/attempts.jsonl`` (a torn last line, from a worker killed
    while writing it, is ignored)."""
    path = Path(run_dir) / ATTEMPTS
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events


def trial_state(run_dir: str | Path, epochs: int | None = None) -> str:
    """:data:`DONE` when the run has all its configured epochs (or ``epochs``, where given),
    :data:`FAILED` when its last attempt failed, :data:`NEW` when it has no directory yet,
    :data:`UNFINISHED` otherwise."""
    from eqprop.runs import CONFIG, read_config, read_metrics

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        return NEW
    epochs = epochs if epochs is not None else read_config(run_dir).train.epochs
    records = read_metrics(run_dir)
    if records and records[-1]["epoch"] >= epochs:
        return DONE
    ends = [e for e in read_events(run_dir) if e["event"] in ("start", "failed", "error")]
    if ends and ends[-1]["event"] in ("failed", "error"):
        return FAILED
    return UNFINISHED


def last_error(run_dir: str | Path) -> str:
    """The message of the trial's last failure ('' if none)."""
    for event in reversed(read_events(run_dir)):
        if event["event"] in ("failed", "error"):
            return event.get("error", "")
        if event["event"] == "start":
            return ""
    return ""


def _resume_point(run_dir: Path) -> dict:
    """The epoch and batch the run's checkpoint continues from (0, 0 without one)."""
    import torch

    from eqprop.runs import CHECKPOINT

    path = run_dir / CHECKPOINT
    if not os.path.lexists(path):
        return {"checkpoint": False, "from_epoch": 0, "from_batch": 0}
    if not path.is_file():  # a FIFO or a device would hang the read: train_run reports it
        return {"checkpoint": True, "from_epoch": None, "from_batch": None}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["trainer"]
    except Exception:  # unreadable: train_run reports it, as a failure of the trial
        return {"checkpoint": True, "from_epoch": None, "from_batch": None}
    return {"checkpoint": True, "from_epoch": state["epoch"], "from_batch": state["position"]}


def wait_for_run_lock(run_dir: Path, timeout: float = LOCK_WAIT_S) -> None:
    """Wait (up to ``timeout`` seconds) until no process holds the run directory's lock (an
    ``flock`` on the directory, taken by :func:`eqprop.runs.train_run`). A retried trial can
    start while the worker it replaces is still being killed; without the wait its
    ``train_run`` would refuse the directory as in use, which is not the trial's fault."""
    deadline = time.monotonic() + timeout
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return  # train_run says who holds it
                time.sleep(0.2)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
    finally:
        os.close(fd)


def train_trial(run_dir: str, data_dir: str | None) -> dict:
    """Train (or resume) the run directory ``run_dir``: the task of a sweep's trial.

    Records a ``start`` event (with the checkpoint it resumes from), sends what the
    training prints to ``output.log``, and records ``done``, or ``failed`` before
    re-raising the trial's own :class:`~eqprop.errors.EqpropError`, or ``stopped`` when its
    driver asked it to stop (:data:`eqprop.runs.STOP_REQUEST`: the batch finished, the
    checkpoint written). Returns the last epoch's numbers (what Ray Tune is told)."""
    import torch

    from eqprop.errors import EqpropError, Interrupted
    from eqprop.metrics import held_out_error
    from eqprop.runs import RunOptions, train_run

    run_dir_path = Path(run_dir)
    wait_for_run_lock(run_dir_path)
    append_event(
        run_dir_path,
        "start",
        pid=os.getpid(),
        host=socket.gethostname(),
        threads=torch.get_num_threads(),
        **_resume_point(run_dir_path),
    )
    options = RunOptions(data_dir=data_dir, quiet=True)
    try:
        with (
            open(run_dir_path / LOG, "a") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            records = train_run(run_dir_path, options)
    except EqpropError as exc:
        append_event(run_dir_path, "failed", pid=os.getpid(), error=str(exc))
        raise
    except Interrupted:  # its driver asked it to stop (a stop request): checkpoint written
        append_event(run_dir_path, "stopped", pid=os.getpid())
        return {"stopped": True}
    append_event(run_dir_path, "done", pid=os.getpid())
    last = records[-1] if records else {}
    return {
        "epochs_done": last.get("epoch", 0),
        "train_error": last.get("train_error"),
        "held_out_error": held_out_error(last) if last else None,
    }
