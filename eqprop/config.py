"""Run configurations: one flat, validated record per training run, and the presets.

A configuration is a flat TOML table (see ``eqprop/presets/*.toml``); every field can be
overridden on the command line with ``--set key=value`` (the value in TOML syntax, e.g.
``--set lr=[0.128,0.032,0.008,0.002]``). Unknown keys and out-of-range values raise
:class:`~eqprop.errors.ConfigError` with one line naming the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from eqprop.data import DATASETS, SPLITS
from eqprop.errors import ConfigError
from eqprop.network import LAYOUTS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOPOLOGIES = ("layered", "icons", "icons-add", "rewired")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run (SPEC sections 1, 2 and 4).

    Data: ``dataset``, ``split`` (``icons``: first 50k train / last 10k evaluation;
    ``standard``), ``limit`` (keep only the first examples of each split).
    Topology: ``sizes``, ``topology``, ``n`` or ``p`` (ICONS replacements or probability;
    ``p`` also the rewiring probability), ``p_formula``, ``topology_seed``, ``a``. For ``n``,
    ``p``, ``a`` and ``lr_skip`` the value -1 means unset (TOML has no null).
    Dynamics: ``eps``, ``n_free``, ``n_clamped``, ``tol`` (adaptive free phase, 0 = off).
    Rule: ``lr`` (one rate or one per layer pair), ``lr_skip`` (-1 = same as ``lr``), ``beta``,
    ``random_sign``.
    Training: ``epochs``, ``batch_size``, ``persistent``, ``test_persistent`` (keep particles
    for evaluation examples too, as the paper authors' code did), ``evaluate_test``
    (also report the official test set of the ``icons`` split), ``seed``,
    ``checkpoint_every`` (batches), ``device``, ``dtype``, ``layout``.
    """

    description: str = ""
    dataset: str = "digits"
    split: str = "standard"
    limit: int = 0
    sizes: tuple[int, ...] = (64, 128, 10)
    topology: str = "layered"
    n: int = -1
    p: float = -1.0
    p_formula: str = "simple"
    topology_seed: int = 0
    a: float = -1.0
    eps: float = 0.5
    n_free: int = 500
    n_clamped: int = 8
    tol: float = 0.0
    lr: float | tuple[float, ...] = 0.02
    lr_skip: float = -1.0
    beta: float = 1.0
    random_sign: bool = True
    epochs: int = 1
    batch_size: int = 20
    persistent: bool = True
    test_persistent: bool = False
    evaluate_test: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    device: str = "cpu"
    dtype: str = "float32"
    layout: str = "auto"

    def __post_init__(self) -> None:
        choices = {
            "dataset": DATASETS,
            "split": SPLITS,
            "topology": TOPOLOGIES,
            "p_formula": ("simple", "exact"),
            "dtype": ("float32", "float64"),
            "layout": LAYOUTS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} = {getattr(self, name)!r} is not allowed; choose one of "
                    f"{', '.join(allowed)}"
                )
        if len(self.sizes) < 2 or any(s < 1 for s in self.sizes):
            raise ConfigError(f"sizes must be >= 2 positive layer sizes, got {list(self.sizes)}")
        for name in ("eps", "n_free", "n_clamped", "epochs", "batch_size"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.beta == 0 or not math.isfinite(self.beta):
            raise ConfigError(f"beta must be non-zero, got {self.beta}")
        for name in ("limit", "tol", "checkpoint_every", "topology_seed", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr_skip", "a"):
            if getattr(self, name) < 0 and getattr(self, name) != -1:
                raise ConfigError(
                    f"{name} must be >= 0 (or -1 for the default), got {getattr(self, name)}"
                )
        rates = self.lr if isinstance(self.lr, tuple) else (self.lr,)
        if any(not math.isfinite(r) or r < 0 for r in rates):
            raise ConfigError(f"lr must be >= 0, got {self.lr}")
        if isinstance(self.lr, tuple) and len(self.lr) != len(self.sizes) - 1:
            raise ConfigError(
                f"lr has {len(self.lr)} values but sizes has {len(self.sizes) - 1} layer pairs"
            )
        if self.topology.startswith("icons"):
            if (self.n >= 0) == (self.p >= 0):
                raise ConfigError(f"topology {self.topology!r} needs exactly one of n and p")
            if self.p >= 1:
                raise ConfigError(f"p must be in [0, 1), got {self.p}")
        if self.topology == "rewired" and not 0 <= self.p <= 1:
            raise ConfigError(f"topology 'rewired' needs p in [0, 1], got {self.p}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    def to_toml(self) -> str:
        """The configuration as TOML text (every field, so a run directory is complete)."""
        lines = []
        for f in fields(self):
            lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied and validated."""
        return from_dict({**dataclasses.asdict(self), **changes})


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Bring a TOML value to the field's type, or raise a one-line ConfigError."""
    want = type(default)
    if name == "lr":
        if isinstance(value, (list, tuple)):
            return tuple(_coerce("lr[]", v, 0.0) for v in value)
        return _coerce("lr[]", value, 0.0)
    if name == "sizes":
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(
                f"sizes must be a list of integers such as [784, 500, 10], got {value!r}"
            )
        return tuple(value)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is float and isinstance(value, float):
        return value
    if isinstance(value, want) and not (want is int and isinstance(value, bool)):
        return value
    label = name.rstrip("[]")
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    raise ConfigError(f"{label} must be {kind.get(want, want.__name__)}, got {value!r}")


def from_dict(values: dict[str, Any]) -> RunConfig:
    """Build a validated config from a flat dict (as read from TOML)."""
    defaults = {f.name: f.default for f in fields(RunConfig)}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; valid keys: {', '.join(defaults)}")
    return RunConfig(**{k: _coerce(k, v, defaults[k]) for k, v in values.items()})


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a one-line ConfigError naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML ({exc}); fix the syntax") from None


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a flat dict."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return parse_toml(text, str(path))


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` (TOML value syntax; a bare word is taken as a string)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


# -- presets --------------------------------------------------------------------------------
def preset_names() -> list[str]:
    """Names of the bundled presets."""
    folder = resources.files("eqprop") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset(name: str) -> dict[str, Any]:
    """The flat dict of preset ``name``."""
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(names)}")
    text = (resources.files("eqprop") / "presets" / f"{name}.toml").read_text()
    return parse_toml(text, f"preset {name}")


def resolve(
    preset_name: str | None = "digits",
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunConfig:
    """Preset, then config file, then ``--set`` overrides, validated together."""
    values: dict[str, Any] = preset(preset_name) if preset_name else {}
    if config_file is not None:
        values.update(load_file(config_file))
    for item in overrides:
        key, value = parse_override(item)
        values[key] = value
    return from_dict(values)
