"""Declaring the ICONS-paper runs: each a ``(name, RunConfig)`` pair derived from a bundled
preset (:func:`paper_config`), and the :class:`Reduction` that turns the paper's protocol into
a cheaper scale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eqprop import config as cfg
from eqprop.errors import ConfigError
from eqprop.topology import p_from_n

SCALES = ("smoke", "quick", "full")


#: network label -> bundled preset (ICONS section 4 and the journal version)
NETWORKS = {
    "A": "icons-layered-perlayer",
    "A-authors": "icons-layered-perlayer-authors",
    "B": "icons-layered",
    "C": "icons-skip",
    "deep-layered": "frontiers-layered-deep",
    "deep-skip": "frontiers-skip-deep",
}


#: smoke scale: layer sizes on the 8x8 digits (input 64, every hidden layer 32, 10 classes)
SMOKE_INPUT, SMOKE_HIDDEN = 64, 32


#: the maps of each conv block of a ``small`` reduction (8x8 digits)
SMOKE_CHANNELS = 4


#: the fast free phase of the studies' quick scales (a departure they state):
#: FISTA to a fixed-point residual below 1e-3, at most 1,000 steps
FAST_FREE = {"free.solver": "fista", "free.tol": 1e-3, "free.steps": 1000}


FAST_FREE_NOTE = (
    "Free phase: FISTA to a fixed-point residual below 1e-3 (at most 1,000 steps) instead of "
    "the paper's 500 fixed steps."
)


def paper_config(network: str) -> cfg.RunConfig:
    """The validated config of a paper network (a key of :data:`NETWORKS`), unchanged."""
    return cfg.from_dict(cfg.preset(NETWORKS[network]))


@dataclass(frozen=True)
class Reduction:
    """How a cheaper scale departs from the paper protocol; every other field stays the
    preset's.

    Attributes:
        limit: keep the first ``limit`` examples of each split (0: all).
        free_divisor: free-phase steps are the preset's divided by this.
        epochs: epochs of every run (None: as declared).
        small: train on the bundled 8x8 digits with hidden layers of :data:`SMOKE_HIDDEN`
            neurons (same depth); an ICONS ``n`` is converted to the ``p`` it has in the
            paper-sized network, so the small network gets the same fraction of skips.
        max_free: cap on free-phase steps (0: none).
    """

    limit: int = 0
    free_divisor: int = 1
    epochs: int | None = None
    small: bool = False
    max_free: int = 0

    def apply(self, config: cfg.RunConfig) -> cfg.RunConfig:
        """The reduced config."""
        changes: dict[str, Any] = {"data.limit": self.limit or None}
        n_free = max(1, config.free.steps // self.free_divisor)
        changes["free.steps"] = min(n_free, self.max_free) if self.max_free else n_free
        if self.epochs is not None:
            changes["train.epochs"] = self.epochs
        if self.small and config.topology.family == "conv":
            changes.update(_smoke_conv(config.topology))
        elif self.small:
            top = config.topology
            hidden = [SMOKE_HIDDEN] * (len(top.sizes) - 2)
            changes["data.dataset"] = "digits"
            changes["topology.sizes"] = [SMOKE_INPUT, *hidden, top.sizes[-1]]
            if top.family.startswith("icons") and top.n is not None:
                changes["topology.p"] = p_from_n(top.n, top.sizes, top.p_formula)
                changes["topology.n"] = None
        return config.override(changes)

    def describe(self) -> str:
        """One Markdown sentence: what this scale changes."""
        parts = []
        if self.small:
            parts.append(
                f"the bundled 8x8 `digits` data, each network shrunk to fit it (fully "
                f"connected: hidden layers of {SMOKE_HIDDEN} neurons, same depth, an ICONS `n` "
                f"converted to its equivalent `p`; conv: blocks of {SMOKE_CHANNELS} maps, 3x3 "
                "kernels, padding 1 and 2x2 pooling)"
            )
        if self.limit:
            parts.append(f"only the first {self.limit:,} examples of each split")
        if self.free_divisor > 1:
            parts.append(f"free-phase steps divided by {self.free_divisor}")
        if self.max_free:
            parts.append(f"at most {self.max_free} free-phase steps")
        if self.epochs is not None:
            parts.append(f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} per run")
        if not parts:
            return "The paper protocol: the presets unchanged."
        return "Departs from the paper protocol (presets) only in: " + "; ".join(parts) + "."


def _smoke_conv(top: cfg.TopologySection) -> dict[str, Any]:
    """The changes that fit a conv network's blocks to the 8x8 digits (at most three blocks:
    8x8 maps halve with each pooling)."""
    blocks = len(top.channels or ())
    if blocks > 3:
        raise ConfigError(
            f"a smoke-scale conv network has at most 3 blocks on 8x8 digits; got {blocks}"
        )
    return {
        "data.dataset": "digits",
        "topology.input_shape": [1, 8, 8],
        "topology.channels": [SMOKE_CHANNELS] * blocks,
        "topology.kernels": [3] * blocks,
        "topology.paddings": [1] * blocks,
        "topology.pools": [2] * blocks,
    }


def scaled(config: cfg.RunConfig, scale: str, reductions: dict[str, Reduction]) -> cfg.RunConfig:
    """``config`` at ``scale``: reduced by ``reductions[scale]``, or unchanged for ``full``."""
    check_scale(scale)
    return reductions[scale].apply(config) if scale in reductions else config


def check_scale(scale: str) -> None:
    """ConfigError unless ``scale`` is one of :data:`SCALES`."""
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
