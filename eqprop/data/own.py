"""Your own examples: from arrays, tensors or a ``torch.utils.data.Dataset``
(:func:`own_dataset`), or from an ``.npz`` file (:func:`load_npz`), checked as they are read."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from collections.abc import Iterable

import numpy as np
import torch
from numpy.typing import ArrayLike

from eqprop.data.splits import Dataset, Split, _limit, one_line
from eqprop.errors import DataError

#: the arrays of an own-data ``.npz`` file: examples and labels of each split
NPZ_SPLITS = {"train": ("x", "y"), "valid": ("x_valid", "y_valid"), "test": ("x_test", "y_test")}


#: the share of the examples (the last ones) held out for evaluation when own data has
#: neither a validation nor a test split
HELD_OUT_SHARE = 0.1


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
