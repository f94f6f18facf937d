"""Datasets: MNIST, Fashion-MNIST, scikit-learn's digits, and logic-gate truth tables."""

from __future__ import annotations

import itertools

import torch

from eqprop.errors import ConfigError

# Output of each gate as a function of its input bits (a tuple of 0/1 ints).
_GATES = {
    "AND": (2, lambda bits: bits[0] & bits[1]),
    "OR": (2, lambda bits: bits[0] | bits[1]),
    "XOR": (2, lambda bits: bits[0] ^ bits[1]),
    "NOT": (1, lambda bits: 1 - bits[0]),
    "IDENTITY": (1, lambda bits: bits[0]),
}


def logic_gate(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the full truth table of a logic gate.

    Args:
        name: one of AND, OR, XOR (two inputs), NOT, identity (one input); case-insensitive.

    Returns:
        ``(x, y)``: float64 inputs of shape ``(2**k, k)`` with values in {0, 1}, rows in binary
        counting order (00, 01, 10, 11), and float64 targets of shape ``(2**k, 1)``.
    """
    key = name.strip().upper()
    if key not in _GATES:
        valid = ", ".join(gate.lower() for gate in _GATES)
        raise ConfigError(f"unknown logic gate {name!r}; valid gates: {valid}")
    n_inputs, gate = _GATES[key]
    rows = list(itertools.product((0, 1), repeat=n_inputs))
    x = torch.tensor(rows, dtype=torch.float64)
    y = torch.tensor([[gate(row)] for row in rows], dtype=torch.float64)
    return x, y
