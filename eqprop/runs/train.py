"""Training a run directory: every check first, then the epochs, each ending with a
checkpoint, its metrics and, when it is the best so far, ``best.pt``."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from eqprop import arithmetic
from eqprop.config import CONV, FILE
from eqprop.data import Dataset
from eqprop.errors import ConfigError, DivergenceError, EqpropError, Interrupted
from eqprop.metrics import TEST_ERROR, VALID_ERROR, held_out_error, held_out_key, held_out_label
from eqprop.runs.build import build_network, build_trainer, run_topology
from eqprop.runs.checkpoints import (
    config_record,
    load_best,
    not_fitting,
    read_checkpoint,
    save_best,
    save_checkpoint,
)
from eqprop.runs.checks import RunOptions, check_run
from eqprop.runs.directory import _check_same_data, _deferred_stop, _run_lock, require_tensorboard
from eqprop.runs.files import (
    BEST,
    CHECKPOINT,
    CONFIG,
    DATA_DIR,
    METRICS,
    RATES,
    STEPS,
    STOP_REQUEST,
    _first_line,
    _is_leftover,
    _parse_metrics,
    _save_epoch,
    _write_metrics,
    _writing,
    atomic_write_bytes,
    read_config,
)
from eqprop.runs.progress import Progress
from eqprop.training import DeadOutputMonitor


def _status(text: str, options: RunOptions) -> None:
    """One line on stderr about a step that may take a while (not with ``quiet``)."""
    if not options.quiet:
        print(f"eqprop: {text}", file=sys.stderr, flush=True)


def _divergence(exc: DivergenceError, saved: bool) -> DivergenceError:
    """The trainer's divergence message with the fix the command line allows (a resumed run
    keeps its config, so it would diverge again)."""
    what = str(exc).split(";")[0]
    fix = "start a new run with a lower update.lr (or free.eps and nudged.eps)"
    if saved:
        fix = f"the run keeps its last good checkpoint, but resuming it would diverge again: {fix}"
    return DivergenceError(f"{what}; {fix}")


def train_run(
    run_dir: str | Path,
    options: RunOptions | None = None,
    *,
    epochs: int | None = None,
    device: str | None = None,
) -> list[dict]:
    """Train (or resume) the run in ``run_dir`` until its configured epochs are done.

    ``epochs`` changes the run's total number of epochs (``train.epochs`` in its
    ``config.toml``, written only once every check has passed); it cannot be below the epochs
    the checkpoint has finished. ``device`` moves the run to another device (``cpu``,
    ``cuda``, ``cuda:N``; ``train.device``, written the same way): it goes on from its
    checkpoint there, with a note that the rounding, so the result, is no longer bit for bit
    that of a run never moved. Returns the per-epoch metrics. Raises
    :class:`~eqprop.errors.DivergenceError` if the run diverges; the last checkpoint then
    stays as it was.
    """
    options = options or RunOptions()
    run_dir = Path(run_dir)
    recorded = config = read_config(run_dir)
    with _run_lock(run_dir):
        options = _recorded_data_dir(run_dir, options)
        # -- checks: nothing is written until all of them pass --------------------------
        if epochs is not None:
            config = config.override({"train.epochs": epochs})
        if device is not None:
            config = config.override({"train.device": device})  # checked by check_run
        _check_kinds(run_dir)
        data = check_run(config, options, run_dir)
        summary_writer = require_tensorboard() if options.tensorboard else None
        _check_same_data(run_dir, data)
        held = data.held_out
        ckpt_path = run_dir / CHECKPOINT
        state = read_checkpoint(run_dir, config, len(data.train), len(held))
        # a run trained before (these are written as training starts) with no checkpoint
        restarted = state is None and any(
            os.path.lexists(run_dir / name) for name in (METRICS, RATES, STEPS)
        )
        if os.path.lexists(run_dir / BEST):
            load_best(run_dir, config)
        if state is not None:
            done = state["trainer"]["epoch"]
            if config.train.epochs < done:
                raise ConfigError(
                    f"{run_dir} has finished {done} epochs; train.epochs (the total, not the "
                    f"number to add) must be at least {done}"
                )
        if options.announce:
            where = ""
            if state is not None:
                trainer_state = state["trainer"]
                where = f" (resuming after epoch {done}, batch {trainer_state['position']})"
            print(f"run directory: {run_dir}{where}", file=sys.stderr, flush=True)
        if restarted:
            tqdm.write(
                f"eqprop: note: {run_dir} has no {CHECKPOINT} and no finished epoch (the run "
                "stopped before its first checkpoint, or the checkpoint was deleted); training "
                "starts from the beginning",
                file=sys.stderr,
            )
        # -- building -------------------------------------------------------------------
        device = torch.device(config.train.device)
        computing = arithmetic.describe(device)  # read once: it reads /proc/cpuinfo
        dtype = getattr(torch, config.train.dtype)
        x, y = data.train.x.to(device, dtype), data.train.y.to(device)
        hx, hy = held.x.to(device, dtype), held.y.to(device)
        if config.topology.family not in ("layered", CONV):
            _status(f"building the {config.topology.family} topology", options)
        try:
            network = build_network(config, run_topology(config, run_dir))
            trainer = build_trainer(config, network, len(x))
        except (MemoryError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "alloc" not in str(exc).lower():
                raise
            raise EqpropError(
                f"not enough memory to build the network of {run_dir / CONFIG}; use smaller "
                f"topology.sizes"
            ) from None
        test_particles = network.zero_state(len(hx)) if config.train.test_persistent else None
        wall = 0.0
        records: list[dict] | None = None
        if state is not None:
            try:
                trainer.load_state_dict(state["trainer"])
                if test_particles is not None:
                    test_particles.copy_(state["test_particles"])
            except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as exc:
                raise not_fitting(ckpt_path, f" ({_first_line(exc)})") from None
            wall = float(state["wall"])
            records = state.get("records")
            before = state.get("arithmetic")
            if before is not None and before != computing:  # older checkpoints lack it
                tqdm.write(
                    f"eqprop: note: {ckpt_path} was written computing with {before}; this "
                    f"process computes with {computing}. Training goes on, but rounding "
                    "differs, so it is not bit for bit what the first would give",
                    file=sys.stderr,
                )
        # -- writes ---------------------------------------------------------------------
        resume_fix = f"continue with: eqprop train --resume {run_dir}"
        with _writing(run_dir, resume_fix):
            if recorded != config:  # train.epochs or train.device changed
                atomic_write_bytes(run_dir / CONFIG, config.to_toml().encode())
            if records is None:  # a checkpoint without metrics (older), or none
                on_disk, torn = _parse_metrics(run_dir / METRICS)
                records = [r for r in on_disk if r["epoch"] <= trainer.epoch]
                lost = sorted(set(range(1, trainer.epoch + 1)) - {r["epoch"] for r in records})
                if lost:
                    tqdm.write(
                        f"eqprop: warning: {run_dir / METRICS} lacks the records of epoch(s) "
                        f"{', '.join(map(str, lost))} (damaged); training goes on without them",
                        file=sys.stderr,
                    )
            _write_metrics(run_dir, records)
            if options.data_dir is not None and config.data.dataset not in ("digits", FILE):
                where = f"{Path(options.data_dir).resolve()}\n"
                data_dir_file = run_dir / DATA_DIR
                if not data_dir_file.is_file() or data_dir_file.read_text() != where:
                    atomic_write_bytes(data_dir_file, where.encode())
            _drop_stale(run_dir, trainer.epoch)

        def checkpoint() -> None:
            state = {
                "trainer": trainer.state_dict(),
                "wall": wall,
                "test_particles": test_particles,
                "records": list(records),
                "arithmetic": computing,
                **config_record(config),
            }
            with _writing(ckpt_path, resume_fix):
                save_checkpoint(ckpt_path, state)

        monitor = DeadOutputMonitor(config.nudged.nudging)
        stop_request = run_dir / STOP_REQUEST
        n_batches = -(-len(x) // config.train.batch_size)
        n_eval = -(-len(hx) // 1000)  # Trainer.evaluate's batches
        # a resumed run keeps the key its first epochs were recorded under, so one
        # metrics.jsonl never mixes keys (runs written before valid_error have test_error)
        held_key = held_out_key(records[0]) if records else _held_out_key(data)
        tensorboard = (  # closed however the loop ends
            contextlib.closing(summary_writer(str(run_dir / "tensorboard")))
            if summary_writer is not None
            else contextlib.nullcontext()
        )
        with tensorboard as writer, _deferred_stop() as interrupted:
            while trainer.epoch < config.train.epochs:
                epoch = trainer.epoch + 1
                progress = Progress(
                    n_batches,
                    f"epoch {epoch}/{config.train.epochs}",
                    initial=trainer.position,
                    enabled=not options.quiet,
                )
                started = time.perf_counter()

                def on_batch(result, progress=progress) -> None:
                    nonlocal wall, started
                    warning = monitor.update(result.layer_rates)
                    if warning:
                        tqdm.write(warning, file=sys.stderr)
                    error = trainer.errors / trainer.seen if trainer.seen else None
                    progress.update(f"train error {error:.2%}" if error is not None else "")
                    every = config.train.checkpoint_every
                    due = every and trainer.position % every == 0
                    if not interrupted[0] and stop_request.exists():
                        interrupted[0] = signal.SIGTERM
                    if due or interrupted[0]:
                        now = time.perf_counter()
                        wall, started = wall + now - started, now
                        checkpoint()
                    if interrupted[0]:
                        stop_request.unlink(missing_ok=True)  # honoured
                        raise Interrupted(interrupted[0])

                try:
                    result = trainer.train_epoch(x, y, on_batch)
                except DivergenceError as exc:
                    raise _divergence(exc, ckpt_path.exists()) from None
                finally:  # also on Ctrl-C, so the message that follows starts on a clean line
                    progress.close()
                held_error = _evaluate(
                    trainer, hx, hy, test_particles, n_eval, epoch, config, options
                )
                record = {
                    "epoch": result.epoch,
                    "train_error": result.train_error,
                    held_key: held_error,
                    "layer_rates": result.layer_rates.double().mean(0).tolist(),
                    "free_steps": result.mean_free_steps,
                    "relaxation_steps": n_batches * (result.mean_free_steps + config.nudged.steps),
                    **result.metrics,
                }
                if config.train.evaluate_test and data.valid is not None and data.test is not None:
                    tx, ty = data.test.x.to(device, dtype), data.test.y.to(device)
                    record["official_test_error"] = _evaluate(
                        trainer, tx, ty, None, -(-len(tx) // 1000), epoch, config, options
                    )
                wall += time.perf_counter() - started
                record["wall_time"] = wall
                with _writing(run_dir, resume_fix):
                    _save_epoch(run_dir, RATES, result.epoch, result.layer_rates.float().numpy())
                    _save_epoch(run_dir, STEPS, result.epoch, result.free_steps.numpy())
                    if writer is not None:
                        _log_epoch(writer, record)
                    earlier = [held_out_error(r) for r in records]
                    if not earlier or held_error < min(earlier):
                        best = {held_key: held_error}
                        save_best(run_dir / BEST, network, result.epoch, best, config)
                records.append(record)
                checkpoint()
                # the epoch's record goes on disk after the checkpoint that holds it, so a
                # directory whose metrics hold an epoch has had a checkpoint (read_checkpoint)
                with _writing(run_dir, resume_fix):
                    _write_metrics(run_dir, records)
                tqdm.write(_epoch_line(record, config.train.epochs))
                if not interrupted[0] and stop_request.exists():  # asked during evaluation
                    interrupted[0] = signal.SIGTERM
                stop_request.unlink(missing_ok=True)
                if interrupted[0] and trainer.epoch < config.train.epochs:
                    raise Interrupted(interrupted[0])
    return records


def _check_kinds(run_dir: Path) -> None:
    """A one-line error unless the run's directories are writable directories and its files
    (where they exist) regular files."""
    for path in (run_dir, run_dir / RATES, run_dir / STEPS):
        if os.path.lexists(path) and not path.is_dir():
            raise EqpropError(
                f"{path} should be a directory of the run but is not; move it away (or "
                f"restore the run directory from a copy), then resume"
            )
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise EqpropError(
                f"cannot write into {path} (read-only or permission denied); make it "
                f"writable, or copy the run directory and resume the copy"
            )
    for name in (METRICS, BEST):
        path = run_dir / name
        if os.path.lexists(path) and not path.is_file():
            raise EqpropError(
                f"{path} should be a file of the run but is not; move it away (or restore "
                f"the run directory from a copy), then resume"
            )


def _drop_stale(run_dir: Path, done: int) -> None:
    """Remove what the checkpoint (``done`` epochs) does not hold: per-epoch files of later
    epochs, temporary files a crash left, and a stop request of the past."""
    for kind in (RATES, STEPS):
        (run_dir / kind).mkdir(exist_ok=True)
        for f in (run_dir / kind).iterdir():
            number = f.name[len("epoch_") : -len(".npy")]
            stale = f.name.startswith("epoch_") and number.isdigit()
            if _is_leftover(f.name) or (stale and int(number) > done):
                f.unlink()
    for f in run_dir.iterdir():
        if _is_leftover(f.name) or f.name == STOP_REQUEST:
            f.unlink()


def _recorded_data_dir(run_dir: Path, options: RunOptions) -> RunOptions:
    """``options`` with the run's recorded data directory (:data:`DATA_DIR`) where neither
    ``options.data_dir`` nor ``$EQPROP_DATA_DIR`` names one."""
    from eqprop.data import DATA_DIR_ENV

    recorded = run_dir / DATA_DIR
    if options.data_dir is not None or os.environ.get(DATA_DIR_ENV) or not recorded.is_file():
        return options
    return dataclasses.replace(options, data_dir=recorded.read_text().strip())


def _held_out_key(data: Dataset) -> str:
    """The key of a new run's held-out error: :data:`~eqprop.metrics.VALID_ERROR` when it
    evaluates on a validation split, :data:`~eqprop.metrics.TEST_ERROR` on the test set."""
    return VALID_ERROR if data.valid is not None else TEST_ERROR


def _evaluate(trainer, x, y, particles, n_eval, epoch, config, options) -> float:
    """The held-out error, with its own progress (it can take as long as many batches)."""
    progress = Progress(
        n_eval, f"epoch {epoch}/{config.train.epochs} evaluation", enabled=not options.quiet
    )
    try:
        return trainer.evaluate(x, y, particles=particles, on_relax=lambda _: progress.update())
    finally:
        progress.close()


def _log_epoch(writer, record: dict) -> None:
    step = record["epoch"]
    for key in ("train_error", VALID_ERROR, TEST_ERROR, "official_test_error", "free_steps"):
        if key in record:
            writer.add_scalar(key, record[key], step)
    for pair, rate in enumerate(record["layer_rates"], start=1):
        writer.add_scalar(f"layer_rate/pair_{pair}", rate, step)
    writer.flush()


def _epoch_line(record: dict, epochs: int) -> str:
    rates = " ".join(f"{r:.2e}" for r in record["layer_rates"])
    held = held_out_label(held_out_key(record))
    return (
        f"epoch {record['epoch']}/{epochs}  train error {record['train_error']:.2%}  "
        f"{held} {held_out_error(record):.2%}  free steps {record['free_steps']:.0f}  "
        f"rates [{rates}]  {record['wall_time']:.0f}s"
    )
