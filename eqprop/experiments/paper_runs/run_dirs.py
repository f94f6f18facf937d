"""A declared run's directory against its declaration: what it holds (:class:`RunResult`), the
fields that may differ on resume, and a directory of another protocol refused."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqprop import config as cfg
from eqprop.errors import ConfigError
from eqprop.experiments.paper_runs.rates import RATE_SUMMARY, RateSummary, summarize_rates
from eqprop.runs import (
    CONFIG,
    read_config,
    read_layer_rates,
)

DIVERGED = "DIVERGED"


#: config fields that do not change what a run computes (may differ on resume)
OPERATIONAL = ("description", "train.device", "train.checkpoint_every", "train.layout")


@dataclass
class RunResult:
    """What one declared run holds on disk."""

    name: str
    config: cfg.RunConfig
    run_dir: Path
    records: list[dict]
    status: str

    @property
    def epochs_done(self) -> int:
        """The last epoch the run's records hold (0 before its first)."""
        return max((r["epoch"] for r in self.records), default=0)

    @property
    def complete(self) -> bool:
        """Whether the run has trained all its configured epochs."""
        return self.epochs_done >= self.config.train.epochs

    @functools.cached_property
    def rates(self) -> np.ndarray:
        """Per-batch per-pair rates (eq. 2) of the finished epochs, ``(batches, pairs)``
        (read once)."""
        return read_layer_rates(self.run_dir, self.config.train.epochs).astype(np.float64)

    @functools.cached_property
    def rate_summary(self) -> RateSummary | None:
        """:func:`summarize_rates` of :attr:`rates`; for a published run, which keeps no
        per-batch files, the :data:`RATE_SUMMARY` its publication wrote (None: neither)."""
        if self.rates.size:
            return summarize_rates(self.rates)
        path = self.run_dir / RATE_SUMMARY
        return RateSummary.from_json(path.read_text()) if path.is_file() else None


def differing_keys(existing: cfg.RunConfig, declared: cfg.RunConfig) -> list[str]:
    """The fields in which a saved run's config differs from the declared one, beyond the
    operational ones and ``train.epochs`` (which a run may extend)."""
    skip = set(OPERATIONAL) | {"train.epochs"}
    old, new = cfg.flat_items(existing), cfg.flat_items(declared)
    return [
        key
        for key in sorted(set(old) | set(new))
        if key not in skip and old.get(key) != new.get(key)
    ]


def _check_compatible(existing: cfg.RunConfig, declared: cfg.RunConfig, run_dir: Path) -> None:
    keys = differing_keys(existing, declared)
    if keys:
        old, new = cfg.flat_items(existing), cfg.flat_items(declared)
        held = ", ".join(f"{key} = {old.get(key)!r}" for key in keys)
        needed = ", ".join(f"{key} = {new.get(key)!r}" for key in keys)
        raise ConfigError(
            f"{run_dir} holds a run with {held} but this experiment needs {needed} (another "
            f"scale, or other --set/--fast?); choose another --out or delete {run_dir}"
        )


def check_planned(planned: Sequence[tuple[str, cfg.RunConfig]], out: Path) -> None:
    """A one-line error naming the differing keys if any declared run's directory under
    ``out`` holds a run of another protocol; nothing is written."""
    for name, config in planned:
        run_dir = Path(out) / name
        if (run_dir / CONFIG).exists():
            _check_compatible(read_config(run_dir), config, run_dir)
