"""Checks for the frozen configuration dataclasses of the baselines: one-line ConfigErrors."""

from __future__ import annotations

from collections.abc import Iterable

from eqprop.errors import ConfigError


def check_number(
    owner: str, field: str, value: object, low: float, high: float, *, integer: bool = False
) -> None:
    """Raise ConfigError unless ``low <= value <= high`` (and ``value`` is an int if asked)."""
    kind = "an integer" if integer else "a number"
    valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not valid_type or not low <= value <= high:  # type: ignore[operator]
        raise ConfigError(f"{owner}.{field} must be {kind} in [{low}, {high}], got {value!r}")


def check_choice(owner: str, field: str, value: object, choices: Iterable[str]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ConfigError(f"{owner}.{field} must be one of {', '.join(options)}; got {value!r}")
