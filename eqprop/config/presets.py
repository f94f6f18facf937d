"""The bundled presets (``eqprop/presets/*.toml``) and resolving a preset or a config file with
overrides into a :class:`~eqprop.config.RunConfig`."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqprop.errors import ConfigError

if TYPE_CHECKING:
    pass

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

from eqprop.config.run_config import (
    RunConfig,
    _flatten,
    canonical_key,
    from_dict,
    load_file,
    parse_overrides,
    parse_toml,
)
from eqprop.config.sections import CONV, FORMAT_VERSION, PATHS


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    folder = resources.files("eqprop") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset(name: str) -> dict[str, Any]:
    """The dict of preset ``name``."""
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
    base = from_dict(preset(preset_name)) if preset_name else RunConfig()
    changes: dict[str, Any] = {}
    if config_file is not None:
        changes.update(_file_changes(config_file))
    changes.update(parse_overrides(overrides))
    given = {canonical_key(k): v for k, v in changes.items()}
    if given.get("topology.family") == CONV != base.topology.family and (
        "topology.sizes" not in given
    ):
        origin = f"the fully connected preset {preset_name!r}" if preset_name else "the defaults"
        raise ConfigError(
            f"topology.family = {CONV!r} needs topology.sizes, the dense layers after the conv "
            f"layers with the output last (e.g. [10]); {list(base.topology.sizes)} are "
            f"those of {origin}"
        )
    return base.override(changes)


def _file_changes(path: str | Path) -> dict[str, Any]:
    """The fields a ``--config`` file sets, flat; one-line errors for a ``format_version``
    this eqprop does not read and for a field given both bare and in its section."""
    values = load_file(path)
    version = values.get("format_version")
    if version is not None and version != FORMAT_VERSION:
        raise ConfigError(
            f"config file {path} has format_version = {version!r}; this eqprop reads "
            f"{FORMAT_VERSION}: use the eqprop version that wrote it, or drop the line"
        )
    flat = _flatten(values)
    for key in PATHS:  # relative to the config file, not to where the command runs
        if isinstance(flat.get(key), str) and flat[key]:
            flat[key] = str(Path(path).parent / Path(flat[key]).expanduser())
    seen: dict[str, str] = {}
    for key in flat:
        name = canonical_key(key)
        if name in seen:
            raise ConfigError(
                f"config file {path} sets {name} twice, as {seen[name]!r} and as {key!r}; keep one"
            )
        seen[name] = key
    return flat
