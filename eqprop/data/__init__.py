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

The modules, imported in one direction: :mod:`~eqprop.data.splits` (:class:`Split` and
:class:`Dataset`) < :mod:`~eqprop.data.directories` (the dataset names and where their files
live) < :mod:`~eqprop.data.idx` (the IDX files) < :mod:`~eqprop.data.own` (your own
examples) < :mod:`~eqprop.data.datasets` (:func:`load_dataset`, logic gates). Their public
names are importable from :mod:`eqprop.data` itself.
"""

from __future__ import annotations

from eqprop.data.datasets import (
    load_dataset,
    logic_gate,
)
from eqprop.data.directories import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    DATASETS,
    DEFAULT_CACHE_DIR,
    SPLITS,
    path_problem,
    resolve_data_dir,
)
from eqprop.data.idx import (
    IDX_FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    load_idx_dataset,
    read_idx,
)
from eqprop.data.own import (
    HELD_OUT_SHARE,
    NPZ_SPLITS,
    Examples,
    load_npz,
    own_dataset,
    save_npz,
)
from eqprop.data.splits import (
    Dataset,
    Split,
    one_line,
    pixel_split,
)

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "DEFAULT_CACHE_DIR",
    "Dataset",
    "Examples",
    "HELD_OUT_SHARE",
    "IDX_FILES",
    "NPZ_SPLITS",
    "SPLITS",
    "Split",
    "TEST_IMAGES",
    "TEST_LABELS",
    "TRAIN_IMAGES",
    "TRAIN_LABELS",
    "load_dataset",
    "load_idx_dataset",
    "load_npz",
    "logic_gate",
    "one_line",
    "own_dataset",
    "path_problem",
    "pixel_split",
    "read_idx",
    "resolve_data_dir",
    "save_npz",
]
