"""The examples of a dataset: :class:`Split` (features and labels of one split) and
:class:`Dataset` (its splits, classes and image shape), and what builds and cuts them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch


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


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, spaces collapsed (its type name if empty)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def pixel_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """The split of byte images (one per row, or per leading index) and integer labels."""
    x = torch.from_numpy(images.reshape(len(images), -1)).to(torch.float32).div_(255.0)
    return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))


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
