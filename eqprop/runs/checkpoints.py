"""Checkpoints and ``best.pt``: written with a checksum of their content, verified on
reading (their zip CRCs, the checksum, the config they record, their shapes)."""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import zipfile
from pathlib import Path

import torch

from eqprop.config import RunConfig, flat_items, from_dict, parse_toml
from eqprop.energy_network import EnergyNetwork
from eqprop.errors import ConfigError, EqpropError
from eqprop.runs.files import (
    BEST,
    CHECKPOINT,
    CONFIG,
    METRICS,
    _parse_metrics,
    atomic_write,
    check_regular_file,
)


def _feed(h, value) -> None:
    """Feed a canonical encoding of a checkpoint value into hash ``h``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}|".encode())
        for key in sorted(value, key=str):
            _feed(h, str(key))
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}|".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, str):
        data = value.encode()
        h.update(f"S{len(data)}|".encode() + data)
    elif isinstance(value, bool):
        h.update(b"B1" if value else b"B0")
    elif isinstance(value, int):
        h.update(f"I{value}|".encode())
    elif isinstance(value, float):
        h.update(b"F" + struct.pack(">d", value))
    elif value is None:
        h.update(b"N")
    else:
        raise TypeError(f"cannot checksum a {type(value).__name__} in a checkpoint")


def state_digest(state: dict) -> str:
    """SHA-256 of a checkpoint's content (every tensor's bytes, every number), independent of
    how ``torch.save`` lays the file out."""
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` with its :func:`state_digest` atomically to ``path``."""
    buffer = io.BytesIO()  # serialised first: a failing write is then a plain OSError
    torch.save({**state, "digest": state_digest(state)}, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def config_digest(config: RunConfig) -> str:
    """SHA-256 of the resolved config (its TOML text, as ``config.toml`` holds it)."""
    return hashlib.sha256(config.to_toml().encode()).hexdigest()


def config_record(config: RunConfig) -> dict[str, str]:
    """What a checkpoint and ``best.pt`` record of the config they were trained with: its
    TOML text (``config``) and its :func:`config_digest` (``config_sha256``)."""
    return {"config": config.to_toml(), "config_sha256": config_digest(config)}


def save_best(
    path: Path, network: EnergyNetwork, epoch: int, held_out: dict[str, float], config: RunConfig
) -> None:
    """Write the network's weights (``state_dict``) with the epoch, its held-out error
    ``held_out`` (one item: the error under the key the run's records hold it,
    :func:`~eqprop.metrics.held_out_key`) and the config it was trained with
    (:func:`config_record`), and a SHA-256 of all of them as a checkpoint has
    (:func:`state_digest`), atomically."""
    payload = {
        "network": network.state_dict(),
        "epoch": epoch,
        **held_out,
        **config_record(config),
    }
    save_checkpoint(path, payload)


def start_over(run_dir: Path) -> str:
    """The command that trains a run's config again from the start, in a new directory."""
    return f"start the run over with: eqprop train --config {run_dir / CONFIG} --out NEW_DIR"


def _damaged(path: Path, why: str, fix: str) -> EqpropError:
    return EqpropError(f"{path} is damaged ({why}); {fix}")


#: the fix for a damaged checkpoint outside a run directory of ``eqprop train`` (a baseline's)
_RETRAIN = "delete it to train the run again from the start"


#: the fix for a damaged ``best.pt``
_BEST_FIX = (
    "restore it from a copy, or delete it (the next epoch better than all before writes it again)"
)


def _load_verified(path: Path, what: str, fix: str) -> dict:
    """The content of ``path`` (a ``what``: a checkpoint or ``best.pt``), verified: a regular
    file, its zip CRCs, then (where it has one; older files do not) its stored checksum;
    loaded with ``weights_only=True``, so a crafted file cannot run code. One-line
    :class:`~eqprop.errors.EqpropError` ending with ``fix`` otherwise."""
    check_regular_file(path, fix)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise _damaged(path, f"not a complete {what} archive: {exc}", fix) from None
    except OSError as exc:
        raise EqpropError(f"cannot read {path} ({exc.strerror}); {fix}") from None
    if bad is not None:
        raise _damaged(path, f"CRC mismatch in {bad}", fix)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error: not a checkpoint, or one that runs code
        first = " ".join(str(exc).split("\n")[0].split())[:160]
        raise EqpropError(
            f"{path} is not an eqprop {what} (it holds something else than tensors and "
            f"numbers: {first}); {fix}"
        ) from None
    if not isinstance(state, dict):
        raise EqpropError(f"{path} is not an eqprop {what} (not a dictionary); {fix}")
    digest = state.pop("digest", None)
    if digest is not None and digest != state_digest(state):
        raise _damaged(path, "its content does not match its stored checksum", fix)
    return state


def load_checkpoint(path: str | Path, fix: str = _RETRAIN) -> dict:
    """The verified content of a checkpoint (:func:`_load_verified`); ``fix`` ends a
    one-line :class:`~eqprop.errors.EqpropError`."""
    path = Path(path)
    state = _load_verified(path, "checkpoint", fix)
    if not isinstance(state.get("trainer"), dict):
        raise EqpropError(f"{path} is not an eqprop checkpoint (no trainer state); {fix}")
    return state


def not_fitting(path: Path, detail: str) -> EqpropError:
    """The one-line error for a checkpoint or ``best.pt`` at ``path`` that does not fit its
    run's ``config.toml``; ``detail`` (``": ..."`` or ``" (...)"``) says how."""
    config = path.parent / CONFIG
    return EqpropError(
        f"{path} does not fit {config}{detail}; {config} was edited or {path.name} is another "
        f"run's: restore the run's own files, or {start_over(path.parent)}"
    )


#: the keys a resume may change: the run's length and where it computes
RESUME_MAY_CHANGE = ("train.epochs", "train.device")


def check_trained_with(path: Path, saved: dict, config: RunConfig) -> None:
    """A one-line error naming the keys (with both values) in which the config a checkpoint
    or ``best.pt`` (``saved``, read from ``path``) records differs from ``config``, the run's
    ``config.toml``. ``train.epochs`` may differ: a resume may extend a run; so may
    ``train.device``: it says where the run computes, not what (a resume elsewhere says once
    that the rounding then differs). Files written before eqprop recorded the config (no
    ``config_sha256``) are not checked: they resume as before, with their shapes still
    checked against the config."""
    digest = saved.get("config_sha256")
    if digest is None or digest == config_digest(config):
        return
    try:
        recorded = flat_items(from_dict(parse_toml(saved["config"], str(path))))
    except (KeyError, TypeError, ConfigError) as exc:
        raise EqpropError(
            f"{path} records a config this eqprop cannot read ({exc}); it was written by "
            f"another version of eqprop: resume it with that version"
        ) from None
    current = flat_items(config)
    keys = [
        key
        for key in sorted(set(recorded) | set(current))
        if key not in RESUME_MAY_CHANGE and recorded.get(key) != current.get(key)
    ]
    if not keys:
        return

    def value(values: dict, key: str) -> str:
        text = repr(values[key]) if key in values else "unset"
        return text if len(text) <= 60 else f"{text[:56]}..."

    shown = ", ".join(
        f"{key} is {value(recorded, key)} in {path.name} but {value(current, key)} in {CONFIG}"
        for key in keys[:4]
    )
    more = f" (and {len(keys) - 4} more keys)" if len(keys) > 4 else ""
    raise not_fitting(path, f": {shown}{more}")


_TRAINER_KEYS = ("weights", "biases", "particles", "generator", "epoch", "order", "position")


def _check_state(
    path: Path, state: dict, config: RunConfig, n_train: int | None, n_held: int | None
) -> None:
    """The checkpoint fits the config: the shapes of biases and (given the data's sizes
    ``n_train`` and ``n_held``) of the particles, the counters."""
    trainer = state["trainer"]
    missing = [k for k in (*_TRAINER_KEYS, "counters", "epoch_rates", "epoch_steps")
               if k not in trainer]  # fmt: skip
    if missing or "wall" not in state:
        raise EqpropError(f"{path} is not an eqprop checkpoint (no {(missing or ['wall'])[0]})")
    shapes = config.topology.layer_shapes()
    n_state = sum(math.prod(shape) for shape in shapes[1:])
    n_biases = sum(shape[0] for shape in shapes[1:])  # one per channel of a conv layer
    expected = {"biases": (trainer["biases"], (n_biases,))}
    if n_train is not None and n_held is not None:
        expected["particles"] = (
            trainer["particles"],
            (n_train, n_state) if config.train.persistent else None,
        )
        expected["test particles"] = (
            state.get("test_particles"),
            (n_held, n_state) if config.train.test_persistent else None,
        )
    for name, (value, shape) in expected.items():
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else value
        if got != shape:
            raise not_fitting(path, f" ({name} of shape {got}, the config needs {shape})")
    epoch, position = trainer["epoch"], trainer["position"]
    if not (isinstance(epoch, int) and isinstance(position, int) and epoch >= 0 <= position):
        raise EqpropError(f"{path} is not an eqprop checkpoint (epoch {epoch!r})")


def read_checkpoint(
    run_dir: Path, config: RunConfig, n_train: int | None = None, n_held: int | None = None
) -> dict | None:
    """The verified state of the checkpoint of ``run_dir``, checked against ``config`` (its
    ``config.toml``): the config the checkpoint records (:func:`check_trained_with`), its
    trainer state and shapes (the particles' where the data's sizes ``n_train`` and
    ``n_held`` are given). None for a run that never reached its first checkpoint. A run
    whose ``metrics.jsonl`` holds finished epochs did reach it (an epoch's record is
    written after the checkpoint that holds it), so a checkpoint missing there is a
    one-line error, as is a dangling link."""
    path = run_dir / CHECKPOINT
    if not os.path.lexists(path):
        done = [r["epoch"] for r in _parse_metrics(run_dir / METRICS)[0]]
        if done:
            raise EqpropError(
                f"{run_dir} has finished {max(done)} epoch(s) ({METRICS}) but has no "
                f"{CHECKPOINT} to continue from (deleted or lost); restore {path} from a "
                f"copy, or {start_over(run_dir)}"
            )
        return None
    state = load_checkpoint(path, f"restore it from a copy, or {start_over(run_dir)}")
    check_trained_with(path, state, config)
    _check_state(path, state, config, n_train, n_held)
    return state


def load_best(run_dir: Path, config: RunConfig) -> dict:
    """The verified content of ``run_dir``'s ``best.pt`` (its checksum, its epoch, the config
    it records against ``config``): ``network`` (a ``state_dict``), ``epoch`` and the
    held-out error (read it with :func:`~eqprop.metrics.held_out_error`). One-line
    :class:`~eqprop.errors.EqpropError` otherwise."""
    path = run_dir / BEST
    saved = _load_verified(path, BEST, _BEST_FIX)
    for key, kind in (("network", dict), ("epoch", int)):
        if not isinstance(saved.get(key), kind) or isinstance(saved.get(key), bool):
            raise EqpropError(f"{path} is not an eqprop {BEST} (no {key}); {_BEST_FIX}")
    check_trained_with(path, saved, config)
    return saved
