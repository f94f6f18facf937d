"""The run files of the skipnets experiment (``out/runs/*.json``, schema in
:mod:`eqprop.experiments.skipnets`): their names (:func:`run_name`), the settings a baseline
run is trained with and records (:func:`run_settings`), reading them (:func:`load_records`)
and checking that a file present is the scale's own (:func:`check_baseline_file`,
:func:`check_ep_file`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from eqprop.baselines import ArchitectureConfig, TrainConfig
from eqprop.config import RunConfig, from_dict
from eqprop.errors import ConfigError
from eqprop.experiments.skipnets.protocol import (
    EP_ACTIVATION,
    EP_RULE,
    LINEAR,
    Protocol,
    ep_config,
    planned_ep_runs,
    planned_runs,
)


def _family(architecture: str) -> str:
    """Which early-stopping grid an architecture uses: "conv" or "mlp" (the linear readout)."""
    return "conv" if "Conv" in architecture else "mlp"


def run_name(
    rule: str, architecture: str, activation: str, depth: int, lr: float, seed: int = 0
) -> str:
    """The run file's name: ``RULE-ARCH-ACT-dDEPTH-lrLR.json``, with ``-sSEED`` before
    ``.json`` for seeds other than 0 (seed 0 keeps the names of the one-seed scales, so their
    run files count as this seed's)."""
    suffix = f"-s{seed}" if seed else ""
    return f"{rule}-{architecture}-{activation}-d{depth}-lr{lr:g}{suffix}.json"


def record_seed(record: Mapping) -> int:
    """The seed of a run file (files written before seeds were recorded: 0, their only seed)."""
    return int(record.get("seed", 0))


def record_key(record: Mapping) -> tuple[str, str, str, int]:
    """A run record's (rule, architecture, activation, depth): the cell it belongs to."""
    return record["rule"], record["architecture"], record["activation"], record["depth"]


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines one baseline run's training (besides the rule's name):
    two scales whose settings of a run name are equal can share its run file."""

    data: tuple[str, int | None, int | None, int | None]
    architecture: ArchitectureConfig
    train: TrainConfig
    early_stop_starts: tuple[int, ...]
    seed: int


def settings_record(settings: RunSettings) -> dict:
    """``settings`` as a run file records them (JSON values: tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def run_settings(
    protocol: Protocol,
    architecture: str,
    activation: str,
    depth: int,
    learning_rate: float,
    seed: int = 0,
) -> RunSettings:
    """The settings of the baseline run of ``protocol`` on ``architecture`` (or the linear
    readout, ``"linear"``) at ``depth`` with ``learning_rate`` and ``seed``."""
    family = _family(architecture)
    starts = tuple(protocol.early_stop_starts[family])
    if architecture == LINEAR[1]:
        arch = ArchitectureConfig("NN", depth=0)
    else:
        arch = ArchitectureConfig(
            architecture, depth, activation, channels_per_depth=protocol.channels_per_depth
        )
    config = TrainConfig(
        learning_rate=learning_rate,
        early_stop_start=max(starts),
        patience=protocol.patience,
        max_examples=protocol.max_examples[family],
        eval_every=protocol.eval_every,
        seed=seed,
    )
    data = (protocol.dataset, protocol.train_limit, protocol.valid_limit, protocol.test_limit)
    return RunSettings(data, arch, config, starts, seed)


def ep_name(config: RunConfig, architecture: str, depth: int) -> str:
    """The run name of an EP row (:func:`run_name` with EP's rule, activation and rate)."""
    lr = config.update.lr if isinstance(config.update.lr, float) else config.update.lr[0]
    return run_name(EP_RULE, architecture, EP_ACTIVATION, depth, lr)


def load_records(runs_dir: Path) -> list[dict]:
    """Every run file in ``runs_dir`` (sorted by name); a one-line ConfigError naming a file
    that is not one."""
    records = []
    for path in sorted(Path(runs_dir).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path} is not a readable run file ({exc}); delete it to retrain"
            ) from exc
        if not isinstance(record, dict) or "rule" not in record:
            raise ConfigError(f"{path} is not a run file (no rule); delete it to retrain")
        records.append(record)
    return records


def check_baseline_file(path: Path, protocol: Protocol, scale: str) -> None:
    """A one-line ConfigError unless the baseline run file ``path`` was trained with the
    settings ``protocol`` gives its run (scales share run names; a file written before
    settings were recorded is taken as it is)."""
    try:
        record = json.loads(path.read_text())
        key = record_key(record)
        recorded = record.get("settings")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path} is not a readable run file ({exc}); delete it to retrain"
        ) from exc
    if recorded is None:
        return
    lr = record["grid"][0]["hyperparameters"]["learning_rate"]
    declared = run_settings(protocol, key[1], key[2], key[3], lr, record_seed(record))
    if recorded != settings_record(declared):
        raise ConfigError(
            f"{path} holds a run of other settings than scale {scale!r} declares (its data, "
            f"budget or network); use another --out for this scale, or delete the file to "
            f"retrain it"
        )


def check_ep_file(path: Path, config: RunConfig, scale: str) -> None:
    """A one-line ConfigError unless the EP run file ``path`` was trained with ``config``
    (the scales' EP rows share names: ``full``'s depth-3 row is not ``quick``'s)."""
    try:
        recorded = from_dict(json.loads(path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ConfigError(
            f"{path} is not a readable EP run file ({exc}); delete it to retrain"
        ) from exc
    if recorded != config:
        raise ConfigError(
            f"{path} holds an EP run of other settings than scale {scale!r} declares; use "
            f"another --out for this scale, or delete the file to retrain it"
        )


def check_run_files(protocol: Protocol, scale: str, out: Path) -> None:
    """A one-line ConfigError if a run file in ``out/runs`` of a run ``protocol`` plans is
    unreadable or of other settings than ``scale`` declares (:func:`check_baseline_file`,
    :func:`check_ep_file`); writes nothing."""
    runs_dir = Path(out) / "runs"
    for run in planned_runs(protocol):
        path = runs_dir / run_name(*run)
        if path.exists():
            check_baseline_file(path, protocol, scale)
    for architecture, depth in planned_ep_runs(protocol):
        config = ep_config(protocol, architecture, depth)
        path = runs_dir / ep_name(config, architecture, depth)
        if path.exists():
            check_ep_file(path, config, scale)
