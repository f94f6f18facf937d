"""The small digits run the run-directory tests train (seconds on one core)."""

from __future__ import annotations

from eqprop import config as cfg

SMALL = [
    "sizes=[64, 24, 10]",
    "limit=200",
    "n_free=20",
    "n_clamped=4",
    "batch_size=10",
    "lr=0.1",
    "epochs=2",
    "checkpoint_every=3",
]


def small_config(*extra: str) -> cfg.RunConfig:
    """The small run's config, with ``extra`` ``--set`` overrides (over those of ``SMALL``)."""
    return cfg.resolve("digits", None, SMALL).override(cfg.parse_overrides(extra))
