"""Datasets: MNIST, Fashion-MNIST, CIFAR-10, scikit-learn's digits, your own examples, and
logic-gate truth tables.

MNIST and Fashion-MNIST are read from the four original IDX files (gzip-compressed or not)
and verified against the SHA-256 of their uncompressed content, so that the same numbers are
obtained whatever the compression or the mirror the files came from. Where the files live is
decided by :func:`resolve_data_dir`; when they are missing, :func:`load_dataset` downloads them
into the cache directory. Every problem with the files raises :class:`~eqprop.errors.DataError`
with a one-line message naming the file and the fix. CIFAR-10 is read from the python
version of its files (:mod:`eqprop.cifar`), found in the same directories.

Your own examples come from arrays, tensors or a ``torch.utils.data.Dataset``
(:func:`own_dataset`), or from an ``.npz`` file (:func:`load_npz`; a config's
``[data] dataset = "file"``, ``eqprop train --data FILE.npz``) holding ``x`` (features, one row
per example) and ``y`` (integer class labels ``0..C-1``), and optionally ``x_valid``, ``y_valid``
and ``x_test``, ``y_test``. They are checked as they are read (one line naming the array and
the fix): numeric features, finite in float32; integer labels, not negative; one label per
example; the same features in every split. Features become float32, labels int64.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import gzip
import hashlib
import http.client
import io
import itertools
import logging
import math
import os
import stat
import struct
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike

from eqprop.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10")
SPLITS: tuple[str, ...] = ("icons", "standard")

# The four IDX files of MNIST and Fashion-MNIST, by stem; each may also be present as stem + ".gz".
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_FILES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

DATA_DIR_ENV = "EQPROP_DATA_DIR"
CACHE_DIR_ENV = "EQPROP_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/eqprop")

# The icons split (paper, section 4) holds out the last 10,000 official training images;
# for digits the same role is played by the last 287 of its 1,437 training examples, for
# CIFAR-10 by the last 5,000 of its 50,000 (the second half of data_batch_5).
_ICONS_VALID_SIZE = {"mnist": 10_000, "fashion-mnist": 10_000, "digits": 287, "cifar10": 5_000}
_DIGITS_N_TEST = 360
_DIGITS_SEED = 0
_DIGITS_MAX_PIXEL = 16.0

# Per socket operation, not per whole download: an unreachable mirror fails fast while a slow
# but working one can still deliver tens of megabytes.
_DOWNLOAD_TIMEOUT_S = 10.0

#: the arrays of an own-data ``.npz`` file: examples and labels of each split
NPZ_SPLITS = {"train": ("x", "y"), "valid": ("x_valid", "y_valid"), "test": ("x_test", "y_test")}
#: the share of the examples (the last ones) held out for evaluation when own data has
#: neither a validation nor a test split
HELD_OUT_SHARE = 0.1


@dataclass(frozen=True)
class _IdxSource:
    mirrors: tuple[str, ...]
    sha256: Mapping[str, str]  # file stem -> SHA-256 of the uncompressed content


_SOURCES = {
    "mnist": _IdxSource(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256={
            TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ),
    "fashion-mnist": _IdxSource(
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ),
}

# Output of each gate as a function of its input bits (a tuple of 0/1 ints).
_GATES = {
    "AND": (2, lambda bits: bits[0] & bits[1]),
    "OR": (2, lambda bits: bits[0] | bits[1]),
    "XOR": (2, lambda bits: bits[0] ^ bits[1]),
    "NOT": (1, lambda bits: 1 - bits[0]),
    "IDENTITY": (1, lambda bits: bits[0]),
}

# IDX type codes (third magic byte) and the big-endian numpy types they denote.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_REDOWNLOAD = "delete it and download it again"


# Splits are compared by identity: the generated field-wise __eq__ would compare tensors,
# whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class Split:
    """Examples of one split: flattened images in [0, 1] and their integer labels (a colour
    image channel by channel, each channel row by row)."""

    x: torch.Tensor  # float32, (n, n_features)
    y: torch.Tensor  # int64, (n,)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.x.ndim != 2:
            raise ValueError(
                f"Split.x must be a 2-D float32 tensor, got {self.x.dtype} {tuple(self.x.shape)}"
            )
        if self.y.dtype != torch.int64 or self.y.shape != self.x.shape[:1]:
            raise ValueError(
                f"Split.y must be an int64 tensor of shape ({self.x.shape[0]},), "
                f"got {self.y.dtype} {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset split into train, optional validation, and test examples.
    ``test`` is None only for own data without a test split; ``sha256`` is the SHA-256 of
    the file it was read from (:func:`load_npz`), else None. ``image_shape`` is
    ``(height, width)`` for grey images, ``(channels, height, width)`` for colour ones
    (CIFAR-10: ``(3, 32, 32)``), the shape of own data's examples otherwise."""

    name: str
    train: Split
    valid: Split | None  # held out for model selection: the paper's "test" error
    test: Split | None  # the official test set
    n_classes: int
    image_shape: tuple[int, ...]
    sha256: str | None = None

    @property
    def held_out(self) -> Split:
        """The split training runs evaluate on: ``valid`` when there is one, else ``test``."""
        return self.valid if self.valid is not None else self.test

    @property
    def n_features(self) -> int:
        """Number of input features (pixels) per example."""
        return math.prod(self.image_shape)


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


def load_idx_dataset(
    directory: str | os.PathLike, name: str, checksums: Mapping[str, str] | None = None
) -> Dataset:
    """Load the four IDX files of an MNIST-like dataset from one directory, standard split.

    Args:
        directory: holds the four :data:`IDX_FILES`, each gzip-compressed (``.gz``) or not.
        name: the dataset's name, used in messages and as ``Dataset.name``.
        checksums: SHA-256 of the uncompressed content of each file, keyed by file stem;
            ``None`` skips verification (for self-made files).

    Returns:
        The dataset with ``valid=None``; pixels scaled from 0..255 to [0, 1].

    Raises:
        DataError: a file is missing, unreadable, corrupt, fails its checksum, or its shape
            does not match the others.
    """
    directory = Path(directory)
    found, missing = _find_idx_files(directory)
    if missing:
        raise DataError(_missing_message(name, directory, missing, None))
    return _load_idx_files(found, name, checksums)


def _load_idx_files(
    found: Mapping[str, Path], name: str, checksums: Mapping[str, str] | None
) -> Dataset:
    """:func:`load_idx_dataset` of the file of each IDX stem (``found``)."""
    paths = tuple(found[stem].resolve() for stem in IDX_FILES)
    stamps = tuple((st.st_size, st.st_mtime_ns) for st in (path.stat() for path in paths))
    expected = None if checksums is None else tuple(checksums[stem] for stem in IDX_FILES)
    train_images, train_labels, test_images, test_labels = _read_verified(
        name, paths, stamps, expected
    )

    for images_path, images, labels_path, labels in (
        (paths[0], train_images, paths[1], train_labels),
        (paths[2], test_images, paths[3], test_labels),
    ):
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"{images_path}: expected 3-D unsigned-byte images, got {images.ndim}-D "
                f"{images.dtype}; the file is not an image file of {name}"
            )
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise DataError(
                f"{labels_path}: expected 1-D unsigned-byte labels, got {labels.ndim}-D "
                f"{labels.dtype}; the file is not a label file of {name}"
            )
        if len(labels) != len(images):
            raise DataError(
                f"{labels_path}: {len(labels)} labels for {len(images)} images in "
                f"{images_path.name}; the two files do not belong together"
            )
    if test_images.shape[1:] != train_images.shape[1:]:
        raise DataError(
            f"{paths[2]}: images of shape {test_images.shape[1:]}, but the training images are "
            f"{train_images.shape[1:]}; the files do not belong to the same dataset"
        )

    return Dataset(
        name=name,
        train=pixel_split(train_images, train_labels),
        valid=None,
        test=pixel_split(test_images, test_labels),
        n_classes=int(max(train_labels.max(initial=0), test_labels.max(initial=0))) + 1,
        image_shape=(int(train_images.shape[1]), int(train_images.shape[2])),
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not, into an array in native byte order.

    The header (magic number, dimensions) is validated against the file size; checksums are
    not verified here (see :func:`load_dataset`).

    Raises:
        DataError: unreadable file, corrupt gzip, bad magic number, or a size that does not
            match the header.
    """
    path = Path(path)
    return _parse_idx(path, _read_content(path))


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None) -> Path:
    """Return the directory where the files of dataset ``name`` are looked up.

    The base directory is ``data_dir``, else ``$EQPROP_DATA_DIR``, else the cache directory
    (``$EQPROP_CACHE_DIR``, default ``~/.cache/eqprop``). A subdirectory named after the
    dataset is used when it exists (so one base can hold ``mnist/``, ``fashion-mnist/`` and
    ``cifar10/``), and always for the cache; otherwise the base itself is expected to hold
    the files.
    """
    _check_name(name)
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return _cache_root() / name
    base = Path(data_dir).expanduser()
    try:
        subdirectory = (base / name).is_dir()
    except OSError:  # base cannot be entered: reported by load_dataset
        subdirectory = False
    return base / name if subdirectory else base


#: what :func:`own_dataset` takes for one split: an ``(x, y)`` pair (numpy arrays, tensors or
#: nested lists), or a ``torch.utils.data.Dataset`` (any iterable) of ``(features, label)``
Examples = tuple[ArrayLike, ArrayLike] | Iterable[tuple[ArrayLike, int]]


def own_dataset(
    train: Examples,
    valid: Examples | None = None,
    test: Examples | None = None,
    *,
    name: str = "own data",
) -> Dataset:
    """A validated :class:`Dataset` of your own examples.

    Args:
        train, valid, test: each an ``(x, y)`` tuple, or a ``torch.utils.data.Dataset`` (or
            any sequence or iterable) of ``(features, label)`` items. ``x``: numpy array, tensor or
            nested lists of shape ``(examples, features)`` (or ``(examples, *shape)``,
            flattened), of any real dtype; ``y``: integer class labels ``0..C-1``, shape
            ``(examples,)``.
        name: the dataset's name, used in messages.

    Returns:
        The dataset with float32 features and int64 labels; ``n_classes`` is the largest
        label plus one. Runs evaluate on ``valid`` when given, else on ``test``; given
        neither, the last :data:`HELD_OUT_SHARE` of ``train`` (at least one example)
        becomes ``valid``.

    Raises:
        DataError: one line naming the array and what is wrong with it.
    """
    given = {"train": train, "valid": valid, "test": test}
    arrays = {}
    for split, value in given.items():
        if value is None:
            continue
        x_name, y_name = NPZ_SPLITS[split]
        if isinstance(value, tuple) and len(value) == 2:
            x, y = value
        elif isinstance(value, Iterable) or hasattr(value, "__getitem__"):
            x, y = _unzip(name, split, value)
        else:
            raise DataError(
                f"{name}: {split} must be an (x, y) pair or a torch Dataset of (features, "
                f"label) items, got {type(value).__name__}"
            )
        arrays[x_name], arrays[y_name] = _as_array(name, x_name, x), _as_array(name, y_name, y)
    return _own_dataset(name, arrays)


def load_npz(path: str | os.PathLike, limit: int | None = None) -> Dataset:
    """Your own examples from an ``.npz`` file (module docs; ``numpy.savez(path, x=..., y=...,
    x_test=..., y_test=...)`` writes one), validated as by :func:`own_dataset`, with the
    file's SHA-256 in ``Dataset.sha256``.

    Args:
        path: the file; its name is the dataset's name.
        limit: keep only the first ``limit`` examples of each split.

    Raises:
        DataError: the file is missing, unreadable or not an ``.npz`` file, has an array
            this function does not read, lacks one, or an array is invalid.
    """
    from eqprop.userfiles import read_user_file

    raw = read_user_file(path, "data file", DataError)
    if not raw.startswith(b"PK"):
        raise DataError(
            f"data file {path} is not an .npz file (a zip of numpy arrays); write one with "
            f"numpy.savez(path, x=features, y=labels)"
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"data file {path} cannot be read as an .npz file of numeric arrays "
            f"({one_line(exc)}); write it again with numpy.savez"
        ) from None
    raw_members = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
    if raw_members:
        raise DataError(
            f"data file {path} cannot be read as an .npz file of numeric arrays (its member "
            f"{raw_members[0]!r} is not a .npy array); write it again with numpy.savez"
        )
    known = [key for pair in NPZ_SPLITS.values() for key in pair]
    unknown = [key for key in arrays if key not in known]
    if unknown:
        raise DataError(
            f"data file {path} holds an array {unknown[0]!r} that eqprop does not read; its "
            f"arrays are named {', '.join(known)}"
        )
    dataset = _own_dataset(str(path), arrays, hashlib.sha256(raw).hexdigest())
    return dataset if limit is None else _limit(dataset, limit)


def save_npz(dataset: Dataset, path: str | os.PathLike) -> None:
    """Write ``dataset`` as an ``.npz`` file that :func:`load_npz` (and ``eqprop train
    --data``) reads back as the same splits."""
    arrays = {}
    for split, (x_name, y_name) in NPZ_SPLITS.items():
        part = getattr(dataset, split)
        if part is not None:
            arrays[x_name], arrays[y_name] = part.x.numpy(), part.y.numpy()
    np.savez(path, **arrays)


def _unzip(name: str, split: str, items) -> tuple[np.ndarray, np.ndarray]:
    """The stacked features and labels of a torch Dataset (or iterable) of pairs."""
    if hasattr(items, "__len__") and hasattr(items, "__getitem__"):  # a map-style Dataset
        sequence = items
        items = (sequence[k] for k in range(len(sequence)))
    xs, ys = [], []
    for k, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise DataError(
                f"{name}: item {k} of the {split} examples is not a (features, label) pair"
            )
        xs.append(_as_array(name, f"the features of {split} item {k}", item[0]))
        ys.append(_as_array(name, f"the label of {split} item {k}", item[1]))
    if not xs:
        raise DataError(f"{name}: the {split} examples are empty; give at least one")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise DataError(
            f"{name}: the {split} examples have features of different shapes "
            f"({', '.join(str(s) for s in sorted(shapes)[:3])}); give them one shape"
        )
    return np.stack(xs), np.stack(ys).reshape(len(ys), *ys[0].shape)


def _as_array(name: str, what: str, value) -> np.ndarray:
    """``value`` (array, tensor, list, number) as a numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name}: {what} is not an array ({one_line(exc)})") from None


def _own_dataset(name: str, arrays: dict[str, np.ndarray], sha256: str | None = None) -> Dataset:
    """The :class:`Dataset` of the validated arrays named as in :data:`NPZ_SPLITS`."""
    splits: dict[str, Split] = {}
    for split, (x_name, y_name) in NPZ_SPLITS.items():
        if x_name not in arrays and y_name not in arrays:
            continue
        missing = y_name if x_name in arrays else x_name
        if missing not in arrays:
            other = x_name if missing == y_name else y_name
            raise DataError(f"{name} has {other} but no {missing}; give both or neither")
        splits[split] = _split(name, x_name, arrays[x_name], y_name, arrays[y_name])
    if "train" not in splits:
        raise DataError(f"{name} has no training examples: give x (features) and y (labels)")
    train = splits["train"]
    for split in ("valid", "test"):
        x_name = NPZ_SPLITS[split][0]
        if split in splits and splits[split].x.shape[1] != train.x.shape[1]:
            raise DataError(
                f"{name}: {x_name} has {splits[split].x.shape[1]} features per example but x "
                f"has {train.x.shape[1]}; every split needs the same features"
            )
    if "valid" not in splits and "test" not in splits:
        n_held = max(1, round(HELD_OUT_SHARE * len(train)))
        if n_held >= len(train):
            raise DataError(
                f"{name} has {len(train)} example(s) and no held-out split: too few to hold "
                f"out the last {HELD_OUT_SHARE:.0%}; add x_test and y_test (or more examples)"
            )
        cut = len(train) - n_held
        splits["train"] = Split(train.x[:cut], train.y[:cut])
        splits["valid"] = Split(train.x[cut:], train.y[cut:])
    n_classes = 1 + max(int(split.y.max()) for split in splits.values())
    shape = np.shape(arrays["x"])[1:]
    return Dataset(
        name=name,
        train=splits["train"],
        valid=splits.get("valid"),
        test=splits.get("test"),
        n_classes=n_classes,
        image_shape=tuple(int(n) for n in shape),
        sha256=sha256,
    )


def _split(name: str, x_name: str, x: np.ndarray, y_name: str, y: np.ndarray) -> Split:
    """One split's features (float32, flattened) and labels (int64), validated."""
    if x.dtype.kind not in "biuf":
        raise DataError(
            f"{name}: {x_name} holds {x.dtype} values; features must be numbers (bool, "
            f"integer or float)"
        )
    if x.ndim < 2:
        raise DataError(
            f"{name}: {x_name} has shape {x.shape}; give one row of features per example, "
            f"shape (examples, features)"
        )
    if x.shape[0] == 0 or x[0].size == 0:
        raise DataError(f"{name}: {x_name} is empty (shape {x.shape}); give at least one example")
    with np.errstate(over="ignore"):  # beyond float32's range: infinite, refused below
        features = x.reshape(len(x), -1).astype(np.float32)
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise DataError(
            f"{name}: {x_name} holds NaN, infinite or out-of-float32-range values (first in "
            f"example {int(np.argmax(bad))}); replace them with finite numbers"
        )
    if y.dtype.kind not in "iu":
        hint = " (one-hot? store the class numbers, y.argmax(1))" if y.ndim == 2 else ""
        raise DataError(
            f"{name}: {y_name} holds {y.dtype} values; labels must be integers 0..C-1 "
            f"(store them as integers){hint}"
        )
    if y.ndim != 1:
        hint = " (one-hot? store the class numbers, y.argmax(1))" if y.ndim == 2 else ""
        raise DataError(f"{name}: {y_name} has shape {y.shape}; give one label per example{hint}")
    if len(y) != len(x):
        raise DataError(
            f"{name}: {x_name} has {len(x)} examples but {y_name} has {len(y)} labels; give "
            f"one label per example"
        )
    if y.min() < 0:
        raise DataError(
            f"{name}: {y_name} holds the label {int(y.min())}; labels are class numbers 0..C-1"
        )
    return Split(torch.from_numpy(features), torch.from_numpy(y.astype(np.int64)))


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


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")


def path_problem(path: str | os.PathLike) -> str:
    """What is wrong with a path the system refused as too long or as a loop of links, as
    the end of a sentence (``"x... has a name of 300 characters; ..."``)."""
    text = os.fspath(path)
    short = text if len(text) <= 60 else f"{text[:40]}...{text[-12:]}"
    longest = max(text.split(os.sep), key=len, default="")
    if len(longest) > 255:
        return f"{short} has a name of {len(longest)} characters, more than the 255 allowed"
    if len(text) >= 4096:
        return f"{short} is {len(text)} characters long, more than the 4,095 allowed"
    return f"{short} is (or goes through) a symbolic link that points back to itself"


def _check_directory(name: str, directory: Path) -> None:
    """A one-line DataError when ``directory`` exists but cannot hold readable files: it is a
    file, or it cannot be listed or entered (a missing directory is reported with the files)."""
    fix = f"pass --data-dir / set {DATA_DIR_ENV} to the directory that holds the {name} files"
    unreadable = (
        f"cannot read the data directory {directory} (permission denied); make it readable "
        f"(chmod a+rx) or {fix}"
    )
    try:
        mode = os.stat(directory).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise DataError(f"data directory {path_problem(directory)}; {fix}") from None
        raise DataError(unreadable) from None
    if not stat.S_ISDIR(mode):
        raise DataError(f"data directory {directory} is a file, not a directory; {fix}")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise DataError(unreadable)


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _find_idx_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Map each IDX stem to its file in ``directory`` (``.gz`` preferred); list those absent."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for stem in IDX_FILES:
        candidates = [directory / f"{stem}.gz", directory / stem]
        path = next((candidate for candidate in candidates if candidate.is_file()), None)
        if path is None:
            missing.append(stem)
        else:
            found[stem] = path
    return found, missing


def _missing_message(name: str, directory: Path, missing: list[str], failure: str | None) -> str:
    files = ", ".join(f"{stem}.gz" for stem in missing)
    them = "them" if len(missing) > 1 else "it"
    failed = f" and downloading {them} failed ({failure})" if failure else ""
    mirror = _SOURCES[name].mirrors[0] if name in _SOURCES else "the dataset's website"
    return (
        f"{name}: missing {files} in {directory}{failed}; download {them} from {mirror} or "
        f"pass --data-dir / set {DATA_DIR_ENV} to a directory that holds {them}"
    )


def _locate_or_download(name: str, directory: Path, download: bool) -> dict[str, Path]:
    """The file of each IDX stem of ``name``: the one in ``directory``, else the cache's,
    downloaded there if allowed. Only the files ``directory`` lacks are downloaded (a
    failure names those), into the cache, never into a directory the user named, which may
    be shared or read-only.
    """
    found, missing = _find_idx_files(directory)
    if not missing:
        return found
    if not download:
        raise DataError(_missing_message(name, directory, missing, None))
    cache = _cache_root() / name
    cached, _ = _find_idx_files(cache)
    for stem in missing:
        if stem not in cached:
            try:
                _download(name, stem, cache)
            except (_DownloadError, OSError) as exc:
                failure = one_line(exc)
                raise DataError(_missing_message(name, directory, missing, failure)) from None
            cached[stem] = cache / f"{stem}.gz"
        found[stem] = cached[stem]
    return found


class _DownloadError(Exception):
    """No mirror delivered a verified copy of a file."""


def _download(name: str, stem: str, directory: Path) -> None:
    """Download ``stem``.gz from the first mirror that serves a verified copy."""
    expected = _SOURCES[name].sha256[stem]
    failures = []
    for mirror in _SOURCES[name].mirrors:
        url = f"{mirror}{stem}.gz"
        logger.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
            digest = hashlib.sha256(gzip.decompress(payload)).hexdigest()
        except (OSError, EOFError, zlib.error, http.client.HTTPException) as exc:
            failures.append(f"{url}: {one_line(exc)}")
            continue
        if digest != expected:
            failures.append(f"{url}: checksum mismatch")
            continue
        # Write beside the target and rename, so an interrupted download never leaves a
        # truncated file under the final name.
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
            os.replace(tmp, directory / f"{stem}.gz")
        except BaseException:
            os.unlink(tmp)
            raise
        return
    raise _DownloadError("; ".join(failures))


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, spaces collapsed (its type name if empty)."""
    return " ".join(str(exc).split()) or type(exc).__name__


@functools.lru_cache(maxsize=2)
def _read_verified(
    name: str,
    paths: tuple[Path, ...],
    stamps: tuple[tuple[int, int], ...],
    checksums: tuple[str, ...] | None,
) -> tuple[np.ndarray, ...]:
    """Read and verify IDX files; cached per process, ``stamps`` invalidating changed files.

    The cached arrays are uint8 and never handed out: callers convert them to new tensors.
    """
    del stamps  # only part of the cache key
    arrays = []
    for index, path in enumerate(paths):
        content = _read_content(path)
        if checksums is not None:
            digest = hashlib.sha256(content).hexdigest()
            if digest != checksums[index]:
                raise DataError(
                    f"{path}: checksum mismatch (expected {checksums[index][:12]}..., got "
                    f"{digest[:12]}...): the file is corrupt or not the {name} file; {_REDOWNLOAD}"
                )
        arrays.append(_parse_idx(path, content))
    return tuple(arrays)


def _read_content(path: Path) -> bytes:
    """Return the uncompressed bytes of a file, gunzipping it when it is gzip-compressed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if path.suffix != ".gz" and not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: corrupt or truncated gzip file ({one_line(exc)}); {_REDOWNLOAD}"
        ) from None


def _parse_idx(path: Path, content: bytes) -> np.ndarray:
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] not in _IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (magic bytes {content[:4].hex() or 'none'}, expected "
            f"0000, a type code and a dimension count); {_REDOWNLOAD}"
        )
    dtype = _IDX_TYPES[content[2]]
    n_dims = content[3]
    header_size = 4 + 4 * n_dims
    if n_dims == 0 or len(content) < header_size:
        raise DataError(
            f"{path}: IDX header truncated or without dimensions ({len(content)} bytes, "
            f"{n_dims} dimensions); {_REDOWNLOAD}"
        )
    shape = struct.unpack(f">{n_dims}I", content[4:header_size])
    expected = math.prod(shape) * dtype.itemsize
    actual = len(content) - header_size
    if actual != expected:
        raise DataError(
            f"{path}: size inconsistent with the IDX header (shape {shape} needs {expected} "
            f"bytes of data, the file has {actual}); {_REDOWNLOAD}"
        )
    data = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def pixel_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """The split of byte images (one per row, or per leading index) and integer labels."""
    x = torch.from_numpy(images.reshape(len(images), -1)).to(torch.float32).div_(255.0)
    return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))


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


def _carve_valid(dataset: Dataset, n_valid: int) -> Dataset:
    """Move the last ``n_valid`` training examples into ``valid``."""
    n_train = len(dataset.train) - n_valid
    train = dataset.train
    return dataclasses.replace(
        dataset,
        train=Split(train.x[:n_train], train.y[:n_train]),
        valid=Split(train.x[n_train:], train.y[n_train:]),
    )


def _limit(dataset: Dataset, limit: int) -> Dataset:
    def head(split: Split | None) -> Split | None:
        # Cloned so that the full-size tensors can be freed.
        if split is None:
            return None
        return Split(split.x[:limit].clone(), split.y[:limit].clone())

    return dataclasses.replace(
        dataset, train=head(dataset.train), valid=head(dataset.valid), test=head(dataset.test)
    )
