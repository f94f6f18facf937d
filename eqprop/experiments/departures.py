"""What a user changes in an experiment's protocol from the command line (``eqprop reproduce
EXP --set KEY=VALUE --fast``), applied to every equilibrium-propagation run it declares and
named at the top of its ``results.md``.

- ``--set KEY=VALUE`` (repeatable): any config field, with the syntax and validation of
  ``eqprop train --set``; applied last, so it can also adjust what ``--fast`` chose.
- ``--fast``: the free phase validated on the full data in ``docs/results/solvers-full``
  (training error within the paper protocol's seed noise at every epoch; held-out error
  within it over seeds and epochs), in place of the papers' fixed steps. Networks whose
  layers allow even/odd sweeps (no edge between two hidden layers of the same parity:
  :attr:`eqprop.topology.Topology.alternates_parity`) get projected SOR with factor 1.7
  (:data:`FAST_SOR`); the others FISTA with step 0.5 (:data:`FAST_FISTA`). Both stop each
  example at a fixed-point residual below 1e-3, at most 1,000 steps. The nudged phase and the
  held-out evaluation keep the protocol's steps and the run's free solver respectively.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eqprop import config as cfg
from eqprop.errors import ConfigError, EqpropError

#: ``--fast`` on networks with even/odd layers (as validated on network B)
FAST_SOR: dict[str, Any] = {
    "free.solver": "sor",
    "free.eps": 1.7,
    "free.tol": 1e-3,
    "free.steps": 1000,
}
#: ``--fast`` on the others (as validated on network C)
FAST_FISTA: dict[str, Any] = {
    "free.solver": "fista",
    "free.eps": 0.5,
    "free.tol": 1e-3,
    "free.steps": 1000,
}


def _cache_file() -> Path:
    """Where the answers of :func:`_alternates_parity` are kept between processes."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "eqprop" / "parity.json"


@functools.lru_cache(maxsize=64)
def _alternates_parity(section: cfg.TopologySection) -> bool:
    """Whether the topology a section describes allows even/odd layer sweeps. Building an
    ICONS topology takes up to a minute (Figure 5's p = 0.9), and the answer is a function of
    the section alone (its seed included) and the version of eqprop, so it is kept in a small
    cache file under that key (:func:`_cache_file`; a cache that cannot be read or written is
    simply not used)."""
    from eqprop import __version__
    from eqprop.runs import atomic_write_bytes, build_topology

    key, path = f"{__version__} {section!r}", _cache_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict) or not isinstance(known.get(key), bool):
        known = known if isinstance(known, dict) else {}
        known[key] = build_topology(cfg.RunConfig(topology=section)).alternates_parity
        with contextlib.suppress(OSError, EqpropError):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(known, indent=0).encode())
    return known[key]


def fast_free(config: cfg.RunConfig) -> dict[str, Any]:
    """The ``--fast`` free phase of ``config``'s network: :data:`FAST_SOR` or
    :data:`FAST_FISTA` (module docs); a one-line ConfigError for a conv network, on which
    neither was validated to learn as the fixed steps do."""
    if config.topology.family == cfg.CONV:
        raise ConfigError(
            "--fast is the free phase validated on the papers' fully connected networks; "
            "a conv network has none: leave --fast out, or choose a solver with --set "
            "free.solver=..."
        )
    return FAST_SOR if _alternates_parity(config.topology) else FAST_FISTA


@dataclass(frozen=True)
class Departures:
    """The command line's changes to an experiment's protocol (module docs).

    ``sets`` are ``KEY=VALUE`` strings as given to ``--set``, checked for syntax when the
    object is built; their values are validated when applied to a run's config
    (:meth:`apply`), before anything is written.
    """

    sets: tuple[str, ...] = ()
    fast: bool = False
    changes: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sets", tuple(self.sets))
        object.__setattr__(self, "changes", cfg.parse_overrides(self.sets))

    def __bool__(self) -> bool:
        return bool(self.sets) or self.fast

    def apply(self, config: cfg.RunConfig) -> cfg.RunConfig:
        """``config`` with ``--fast`` (if asked) and then the ``--set`` changes, validated
        (a :class:`~eqprop.errors.ConfigError` names a bad key or value)."""
        if self.fast:
            config = config.override(fast_free(config))
        return config.override(self.changes) if self.changes else config

    def apply_all(
        self, planned: Iterable[tuple[str, cfg.RunConfig]]
    ) -> list[tuple[str, cfg.RunConfig]]:
        """:meth:`apply` on every declared ``(name, config)``."""
        return [(name, self.apply(config)) for name, config in planned]

    def lines(self, planned: Sequence[tuple[str, cfg.RunConfig]]) -> list[str]:
        """Markdown paragraph(s) for the top of ``results.md``: the departures from the
        paper's protocol asked on the command line (none: an empty list). ``planned``: the
        runs as they ran (after :meth:`apply`), to say which free solver each got."""
        if not self:
            return []
        parts = []
        if self.fast:
            by_solver: dict[str, list[str]] = {}
            for name, config in planned:
                free = config.free
                solver = _FAST_NAMES.get(free.solver, "{}").format(free.eps)
                by_solver.setdefault(solver, []).append(f"`{name}`")
            solvers = "; ".join(
                f"{solver} for {', '.join(names)}" for solver, names in by_solver.items()
            )
            parts.append(
                "`--fast`: the free phase (training and evaluation) stops each example at a "
                "fixed-point residual below 1e-3 (at most 1,000 steps) instead of running the "
                f"paper's fixed steps: {solvers}. These are the settings validated on the full "
                "data in docs/results/solvers-full."
            )
        if self.sets:
            shown = ", ".join(f"`{s}`" for s in self.sets)
            parts.append(f"`--set` (every run): {shown}.")
        title = "**Departures from the paper's protocol, asked on the command line.**"
        return [" ".join([title, *parts]), ""]


#: how results.md names the solvers ``--fast`` chooses (the step or factor filled in)
_FAST_NAMES = {"sor": "projected SOR (factor {:g})", "fista": "FISTA (step {:g})"}
