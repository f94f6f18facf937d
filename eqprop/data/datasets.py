"""The named datasets, split: :func:`load_dataset` (scikit-learn's digits, MNIST, Fashion-MNIST,
CIFAR-10; the ICONS paper's split or the standard one) and logic-gate truth tables."""

from __future__ import annotations

import itertools
import os

import numpy as np
import torch

from eqprop.data.directories import (
    SPLITS,
    _cache_root,
    _check_directory,
    _check_name,
    resolve_data_dir,
)
from eqprop.data.idx import _SOURCES, _load_idx_files, _locate_or_download
from eqprop.data.splits import Dataset, Split, _carve_valid, _limit
from eqprop.errors import ConfigError

# The icons split (paper, section 4) holds out the last 10,000 official training images;
# for digits the same role is played by the last 287 of its 1,437 training examples, for
# CIFAR-10 by the last 5,000 of its 50,000 (the second half of data_batch_5).
_ICONS_VALID_SIZE = {"mnist": 10_000, "fashion-mnist": 10_000, "digits": 287, "cifar10": 5_000}


_DIGITS_N_TEST = 360


_DIGITS_SEED = 0


_DIGITS_MAX_PIXEL = 16.0


# Output of each gate as a function of its input bits (a tuple of 0/1 ints).
_GATES = {
    "AND": (2, lambda bits: bits[0] & bits[1]),
    "OR": (2, lambda bits: bits[0] | bits[1]),
    "XOR": (2, lambda bits: bits[0] ^ bits[1]),
    "NOT": (1, lambda bits: 1 - bits[0]),
    "IDENTITY": (1, lambda bits: bits[0]),
}


def load_dataset(
    name: str,
    split: str = "standard",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    limit: int | None = None,
) -> Dataset:
    """Load a dataset, verified and split.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"icons"``: train on the first 50,000 official training images and hold out the
            remaining 10,000 as ``valid`` (for digits: 1,150 / 287; for CIFAR-10: 45,000 /
            5,000); ``"standard"``: train on all 60,000 (digits: 1,437, CIFAR-10: 50,000), no
            ``valid``. ``test`` is always the official test set (digits: 360 examples of a
            fixed permutation with seed 0).
        data_dir: where the IDX files (CIFAR-10: ``cifar-10-batches-py/`` or
            ``cifar-10-python.tar.gz``, :mod:`eqprop.cifar`) are; see :func:`resolve_data_dir`.
            Unused for digits, which ships with scikit-learn.
        download: when files are missing, download them into the cache directory
            (``$EQPROP_CACHE_DIR``, default ``~/.cache/eqprop``).
        limit: keep only the first ``limit`` examples of each split, for quick experiments.

    Raises:
        ConfigError: unknown name or split, or a limit that is not a positive integer.
        DataError: missing, corrupt or unverifiable files.
    """
    _check_name(name)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")

    if name == "digits":
        dataset = _load_digits()
    else:
        directory = resolve_data_dir(name, data_dir)
        _check_directory(name, directory)
        if name == "cifar10":
            from eqprop.cifar import load_cifar10  # it builds on this module

            dataset = load_cifar10(directory, _cache_root() / name if download else None)
        else:
            files = _locate_or_download(name, directory, download)
            dataset = _load_idx_files(files, name, _SOURCES[name].sha256)

    if split == "icons":
        dataset = _carve_valid(dataset, _ICONS_VALID_SIZE[name])
    if limit is not None:
        dataset = _limit(dataset, limit)
    return dataset


def _load_digits() -> Dataset:
    # Imported here: scikit-learn is slow to import and only digits needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(_DIGITS_SEED).permutation(len(bunch.target))
    x = torch.from_numpy(bunch.data[order] / _DIGITS_MAX_PIXEL).to(torch.float32)
    y = torch.from_numpy(bunch.target[order].astype(np.int64))
    n_train = len(y) - _DIGITS_N_TEST
    return Dataset(
        name="digits",
        train=Split(x[:n_train], y[:n_train]),
        valid=None,
        test=Split(x[n_train:], y[n_train:]),
        n_classes=10,
        image_shape=(8, 8),
    )


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
