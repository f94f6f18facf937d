"""A whole run configuration, :class:`RunConfig`, and how one is read: from a nested dict, a TOML
file or text, ``--set`` overrides, and the flat format of version 1 (:func:`migrate`)."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from eqprop.errors import ConfigError

if TYPE_CHECKING:
    pass

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from eqprop.config.sections import (
    CONV,
    FORMAT_VERSION,
    MAX_INT,
    SECTIONS,
    DataSection,
    EstimatorSection,
    FreeSection,
    NetworkSection,
    NudgedSection,
    TopologySection,
    TrainSection,
    UpdateSection,
    _with_section,
)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run: a ``description`` and one record per section
    (module docs)."""

    description: str = ""
    data: DataSection = field(default_factory=DataSection)
    topology: TopologySection = field(default_factory=TopologySection)
    network: NetworkSection = field(default_factory=NetworkSection)
    free: FreeSection = field(default_factory=FreeSection)
    nudged: NudgedSection = field(default_factory=NudgedSection)
    estimator: EstimatorSection = field(default_factory=EstimatorSection)
    update: UpdateSection = field(default_factory=UpdateSection)
    train: TrainSection = field(default_factory=TrainSection)

    def __post_init__(self) -> None:
        if self.topology.family == CONV:
            self._check_conv()
        lr = self.update.lr
        if self.topology.family == CONV:
            pairs = len(self.topology.layer_sizes()) - 1
            if isinstance(lr, tuple) and len(lr) != pairs:
                raise ConfigError(
                    f"update.lr has {len(lr)} values but the conv network has {pairs} layer "
                    f"pairs ({len(self.topology.channels)} conv, {len(self.topology.sizes)} "
                    f"dense); give one rate per pair or a single rate"
                )
        elif isinstance(lr, tuple) and len(lr) != len(self.topology.sizes) - 1:
            raise ConfigError(
                f"update.lr has {len(lr)} values but topology.sizes has "
                f"{len(self.topology.sizes) - 1} layer pairs"
            )
        self.nudged.hidden_counts(self.topology.sizes)
        _with_section("free", lambda: self.free.build().check_activation(self.network.build()))

    def _check_conv(self) -> None:
        """The options of the other sections that do not apply to a conv network, refused."""
        conv = f"with topology.family = {CONV!r}"
        if self.nudged.hidden_layers is not None:
            raise ConfigError(
                f"nudged.hidden_layers (target-linked hidden neurons) does not apply {conv}; "
                f"leave it out"
            )
        if self.update.lr_skip is not None:
            raise ConfigError(
                f"update.lr_skip does not apply {conv} (it has no intralayer or skip "
                f"weights); leave it out"
            )
        if self.update.bits is not None:
            raise ConfigError(
                f"update.bits (quantised weights) does not apply {conv}; leave it out"
            )
        if self.train.layout != "auto":
            raise ConfigError(
                f"train.layout = {self.train.layout!r} chooses the weight storage of a fully "
                f"connected network and does not apply {conv}; leave it out"
            )

    def to_dict(self) -> dict[str, Any]:
        """The nested dict of the configuration (absent values left out, tuples as lists; a
        section with no value set, such as the default ``[network]``, left out)."""
        out: dict[str, Any] = {"format_version": FORMAT_VERSION, "description": self.description}
        for name in SECTIONS:
            values = asdict(getattr(self, name))
            section = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in values.items()
                if v is not None
            }
            if section:
                out[name] = section
        return out

    def to_toml(self) -> str:
        """The configuration as TOML text (every set field, so a run directory is complete)."""
        return tomli_w.dumps(self.to_dict())

    def override(self, changes: dict[str, Any]) -> RunConfig:
        """A validated copy with ``changes`` (``section.key`` or bare keys, as ``--set``)."""
        values = self.to_dict()
        for key, value in changes.items():
            _assign(values, key, value)
        return from_dict(values)


#: the flat keys of version 1 (and ``--set`` aliases): old name -> (section, key)
LEGACY = {
    "dataset": ("data", "dataset"),
    "split": ("data", "split"),
    "limit": ("data", "limit"),
    "sizes": ("topology", "sizes"),
    "topology": ("topology", "family"),
    "n": ("topology", "n"),
    "p": ("topology", "p"),
    "p_formula": ("topology", "p_formula"),
    "topology_seed": ("topology", "seed"),
    "a": ("topology", "a"),
    "activation": ("network", "activation"),
    "n_free": ("free", "steps"),
    "n_clamped": ("nudged", "steps"),
    "nudging": ("nudged", "nudging"),
    "beta": ("estimator", "beta"),
    "estimator": ("estimator", "kind"),
    "lr": ("update", "lr"),
    "lr_skip": ("update", "lr_skip"),
    "bias_lr": ("update", "bias_lr"),
    "optimizer": ("update", "optimizer"),
    **{
        k: ("train", k)
        for k in (
            "epochs",
            "batch_size",
            "batch_order",
            "persistent",
            "test_persistent",
            "evaluate_test",
            "seed",
            "checkpoint_every",
            "device",
            "dtype",
            "layout",
        )
    },
}


def _assign(values: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (``section.key``, a unique bare key, or a version-1 name) in ``values``."""
    if key == "description":
        values["description"] = value
        return
    section, dot, name = key.partition(".")
    if not dot:
        if key == "eps":  # one step size of version 1, for both phases
            for section in ("free", "nudged"):
                values.setdefault(section, {})["eps"] = value
            return
        if key == "tol":  # version 1: tol > 0 was the adaptive free phase, 0 off
            free = values.setdefault("free", {})
            free.update(solver="tolerance", tol=value) if value else free.pop("tol", None)
            return
        if key == "random_sign":
            if not isinstance(value, bool):
                raise ConfigError(f"random_sign must be true or false, got {value!r}")
            values.setdefault("estimator", {})["kind"] = "random-sign" if value else "positive"
            return
        if key not in LEGACY:
            raise ConfigError(
                f"unknown config key {key!r}; use section.key with a section among "
                f"{', '.join(SECTIONS)} (docs/usage.md lists their keys)"
            )
        section, name = LEGACY[key]
    if section not in SECTIONS:
        raise ConfigError(
            f"unknown config section {section!r} in {key!r}; sections: {', '.join(SECTIONS)}"
        )
    allowed = [f.name for f in fields(SECTIONS[section])]
    if name not in allowed:
        raise ConfigError(f"unknown config key {key!r}; [{section}] has {', '.join(allowed)}")
    values.setdefault(section, {})[name] = value


_KIND = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
#: fields that hold a list of integers -> an example value for the message
_INTEGER_LISTS = {
    "topology.sizes": "[784, 500, 10]",
    "topology.input_shape": "[1, 28, 28]",
    "topology.channels": "[16, 32]",
    "topology.kernels": "[5, 5]",
    "topology.paddings": "[0, 0]",
    "topology.pools": "[2, 2]",
    "nudged.hidden_layers": "[1, 2]",
}


def _coerce(label: str, value: Any, default: Any, optional_kind: type | None) -> Any:
    """Bring a TOML value to the field's type, or raise a one-line ConfigError."""
    if label == "update.lr":
        if isinstance(value, (list, tuple)):
            return tuple(_coerce("update.lr[]", v, 0.0, None) for v in value)
        return _coerce("update.lr[]", value, 0.0, None)
    if label == "update.optimizer_args":
        if not isinstance(value, dict):
            raise ConfigError(
                f"update.optimizer_args must be a table such as {{weight_decay = 1e-4}}, "
                f"got {value!r}"
            )
        return dict(value)
    if label in _INTEGER_LISTS:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(
                f"{label} must be a list of integers such as {_INTEGER_LISTS[label]}, got {value!r}"
            )
        return tuple(value)
    want = optional_kind or type(default)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ConfigError(
            f"{label.rstrip('[]')} = {value} does not fit in 64 bits (TOML integers are "
            f"64-bit signed)"
        )
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, want) and not (want in (int, float) and isinstance(value, bool)):
        if want is float and not math.isfinite(value):
            raise ConfigError(f"{label.rstrip('[]')} must be a finite number, got {value!r}")
        return value
    kind = _KIND.get(want, want.__name__)
    raise ConfigError(f"{label.rstrip('[]')} must be {kind}, got {value!r}")


#: fields whose default is None: the type of a value when one is given
_OPTIONAL = {
    ("data", "limit"): int,
    ("data", "path"): str,
    ("topology", "path"): str,
    ("topology", "n"): int,
    ("topology", "p"): float,
    ("topology", "a"): float,
    ("topology", "remove_after"): int,
    ("network", "activation"): str,
    ("free", "tol"): float,
    ("update", "lr_skip"): float,
    ("update", "bias_lr"): float,
    ("update", "bits"): int,
    ("update", "rounding"): str,
    ("update", "range_scale"): float,
    ("nudged", "hidden_fraction"): float,
    ("nudged", "hidden_beta"): float,
    ("nudged", "hidden_seed"): int,
}


def from_dict(values: dict[str, Any]) -> RunConfig:
    """Build a validated config from a nested dict (as read from TOML); a flat version-1
    dict is migrated first (:func:`migrate`)."""
    values = dict(values)
    version = values.pop("format_version", None)
    if version is None and not any(isinstance(v, dict) for v in values.values()) and values:
        values = migrate(values)
    elif version not in (None, FORMAT_VERSION):
        raise ConfigError(
            f"config format_version {version!r} is not one this eqprop reads "
            f"({FORMAT_VERSION}); use the eqprop version that wrote it"
        )
    description = values.pop("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"description must be a string, got {description!r}")
    sections = {}
    for name, raw in values.items():
        if name not in SECTIONS:
            if name in LEGACY or name in ("eps", "random_sign"):
                raise ConfigError(
                    f"config key {name!r} belongs in a section (e.g. "
                    f"[{LEGACY.get(name, ('free',))[0]}]); see eqprop/presets/*.toml"
                )
            raise ConfigError(f"unknown config section {name!r}; sections: {', '.join(SECTIONS)}")
        if not isinstance(raw, dict):
            raise ConfigError(f"[{name}] must be a table of keys, got {raw!r}")
        cls = SECTIONS[name]
        defaults = {f.name: f.default for f in fields(cls)}
        coerced = {}
        for key, value in raw.items():
            if value is None:  # programmatic "unset": the default
                continue
            if key not in defaults:
                raise ConfigError(
                    f"unknown config key '{name}.{key}'; [{name}] has {', '.join(defaults)}"
                )
            coerced[key] = _coerce(
                f"{name}.{key}", value, defaults[key], _OPTIONAL.get((name, key))
            )
        sections[name] = cls(**coerced)
    return RunConfig(description=description, **sections)


def migrate(flat: dict[str, Any]) -> dict[str, Any]:
    """A version-1 flat config as a nested dict: ``-1`` (unset) and ``tol = 0`` (off)
    dropped, ``tol > 0`` the ``tolerance`` solver, ``random_sign`` the estimator kind,
    and ``gradient`` nudging (the only step version 1 had)."""
    values: dict[str, Any] = {"nudged": {"nudging": "gradient"}}
    for key, value in flat.items():
        if key in ("n", "p", "a", "lr_skip") and value == -1:
            continue
        if key == "limit" and value == 0:
            continue
        _assign(values, key, value)
    return values


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a one-line ConfigError naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML ({exc}); fix the syntax") from None


def load_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a TOML file (a config, or ``what`` it is, for the messages) into a dict; one-line
    errors for an unreadable, non-UTF-8 or invalid file."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    return parse_toml(text, str(path))


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` (TOML value syntax; a bare word is taken as a string; nothing after the
    ``=`` is None: the key is unset, to its default)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    if not raw.strip():
        return key, None
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def canonical_key(key: str) -> str:
    """``section.key`` for a bare version-1 name (``epochs`` -> ``train.epochs``); other keys
    as given (the names that set several fields, such as ``eps``, stay bare)."""
    if "." in key or key not in LEGACY:
        return key
    section, name = LEGACY[key]
    return f"{section}.{name}"


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Several ``--set`` items as one dict (:func:`parse_override` each); a one-line error
    for a key given twice with different values, or given both bare and sectioned
    (``epochs=1`` and ``train.epochs=2``)."""
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for item in items:
        key, value = parse_override(item)
        name = canonical_key(key)
        if name in spelled:
            if spelled[name] != key:
                raise ConfigError(
                    f"--set gives {name} twice, as {spelled[name]!r} and as {key!r}; give it "
                    f"once, as {name}"
                )
            if out[key] != value:
                raise ConfigError(
                    f"--set gives {key} twice with different values ({out[key]!r} and "
                    f"{value!r}); give it once"
                )
        spelled[name] = key
        out[key] = value
    return out


def flat_items(config: RunConfig) -> dict[str, Any]:
    """The set fields of ``config`` as ``{"section.key": value}`` (and ``description``)."""
    return _flatten(config.to_dict())


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    """``{"free": {"steps": 5}}`` as ``{"free.steps": 5}`` (flat version-1 keys kept)."""
    values = dict(values)
    values.pop("format_version", None)
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out
