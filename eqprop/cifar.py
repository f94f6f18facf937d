"""CIFAR-10 (Krizhevsky, 'Learning Multiple Layers of Features from Tiny Images', 2009): the
python version of its files, read without trusting them, and checked.

The data directory holds the folder ``cifar-10-batches-py`` (``cifar-10-python.tar.gz``
extracted), or that folder's files directly, or the archive itself, which is then read
without being extracted. The six batch files ``data_batch_1`` .. ``data_batch_5`` (training)
and ``test_batch`` are pickled dicts whose ``data`` is a uint8 array of 10,000 rows of 3,072
pixels (the 1,024 red values of a 32x32 image row by row, then the green, then the blue) and
whose ``labels`` are 10,000 class numbers 0..9. ``batches.meta`` (the class names) is not
read.

No checksum of the extracted files is published, so each batch is checked by its structure
(keys, dtype, shape, 10,000 rows, labels 0..9); the archive is verified against the MD5 that
the CIFAR-10 page publishes, and is what a missing dataset is downloaded as. Every problem
raises :class:`~eqprop.errors.DataError` with one line naming the file and the fix.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import logging
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from eqprop.data import DATA_DIR_ENV, Dataset, one_line, pixel_split
from eqprop.errors import DataError

logger = logging.getLogger(__name__)

NAME = "cifar10"
FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: the MD5 of ``cifar-10-python.tar.gz`` published on the CIFAR-10 page
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_BATCH = "test_batch"
BATCHES: tuple[str, ...] = (*TRAIN_BATCHES, TEST_BATCH)
#: images (rows) in every batch file of the official dataset
BATCH_ROWS = 10_000
IMAGE_SHAPE = (3, 32, 32)
N_CLASSES = 10

_PIXELS = 3 * 32 * 32
_DOWNLOAD_TIMEOUT_S = 10.0
_CHUNK = 1 << 20

# Unpickling calls whatever callable a file names (os.system among them), and a batch file is
# data from the internet: only the names that rebuild a numpy array are resolved (its
# reconstructor, in numpy 1's and numpy 2's module, the array type and its dtype), and every
# other global is refused. The rest of a batch is dicts, lists, strings and integers, which
# need no global.
_ARRAY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ARRAY_GLOBALS`."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which a CIFAR-10 batch does not"
            )
        return super().find_class(module, name)


def load_cifar10(directory: str | os.PathLike, cache: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10 from the files in ``directory`` (module docs), standard split: 50,000
    training and 10,000 test images.

    Args:
        directory: holds ``cifar-10-batches-py/`` (or its files, or ``cifar-10-python.tar.gz``).
        cache: where the archive is looked for, and downloaded to, when ``directory`` holds
            neither; ``None``: no download.

    Returns:
        The dataset with ``valid=None``; pixels scaled from 0..255 to [0, 1], each image
        flattened channel by channel (``image_shape`` is ``(3, 32, 32)``).

    Raises:
        DataError: a file is missing, unreadable or corrupt, the archive fails its checksum,
            or the download failed.
    """
    directory = Path(directory)
    paths = _locate(directory, None if cache is None else Path(cache))
    stamps = tuple((st.st_size, st.st_mtime_ns) for st in (path.stat() for path in paths))
    train_x, train_y, test_x, test_y = _read_batches(paths, stamps, BATCH_ROWS)
    return Dataset(
        name=NAME,
        train=pixel_split(train_x, train_y),
        valid=None,
        test=pixel_split(test_x, test_y),
        n_classes=N_CLASSES,
        image_shape=IMAGE_SHAPE,
    )


def _locate(directory: Path, cache: Path | None) -> tuple[Path, ...]:
    """The six batch files (extracted), or the archive alone; downloaded into ``cache``
    when ``directory`` holds neither and ``cache`` is given."""
    folder = directory / FOLDER if (directory / FOLDER).is_dir() else directory
    try:
        present = [name for name in BATCHES if (folder / name).is_file()]
    except OSError as exc:  # the folder cannot be entered
        raise DataError(
            f"cannot read {folder} ({exc.strerror or exc}); make it readable (chmod a+rx)"
        ) from None
    if present:
        missing = [name for name in BATCHES if name not in present]
        if missing:
            raise DataError(
                f"{NAME}: missing {', '.join(missing)} in {folder}; extract {ARCHIVE} (from "
                f"{PAGE}) there again"
            )
        return tuple(folder / name for name in BATCHES)
    for place in (directory, cache):
        if place is not None and (place / ARCHIVE).is_file():
            return (place / ARCHIVE,)
    failure = None
    if cache is not None:
        try:
            _download(cache / ARCHIVE)
            return (cache / ARCHIVE,)
        except (_DownloadError, OSError, http.client.HTTPException) as exc:
            failure = f"{ARCHIVE_URL}: {one_line(exc)}"
    failed = f" and downloading it failed ({failure})" if failure else ""
    raise DataError(
        f"{NAME}: missing {FOLDER} (or {ARCHIVE}) in {directory}{failed}; download {ARCHIVE} "
        f"from {PAGE} and extract it into {directory}, or pass --data-dir / set "
        f"{DATA_DIR_ENV} to the directory that holds {FOLDER}"
    )


class _DownloadError(Exception):
    """The download delivered a file that is not the archive."""


def _download(target: Path) -> None:
    """Download the archive to ``target``, verified, through a temporary file beside it (an
    interrupted or wrong download never leaves a file under the final name)."""
    logger.info("downloading %s", ARCHIVE_URL)
    with urllib.request.urlopen(ARCHIVE_URL, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{ARCHIVE}.", suffix=".part")
        try:
            digest = hashlib.md5(usedforsecurity=False)
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != ARCHIVE_MD5:
                raise _DownloadError("checksum mismatch")
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise


@functools.lru_cache(maxsize=1)
def _read_batches(
    paths: tuple[Path, ...], stamps: tuple[tuple[int, int], ...], rows: int
) -> tuple[np.ndarray, ...]:
    """Training images and labels, test images and labels, from the six batch files or the
    archive (``paths``); cached per process, ``stamps`` invalidating changed files. The
    cached arrays are never handed out: callers convert them to new tensors."""
    del stamps  # only part of the cache key
    if len(paths) == 1:
        contents = _archive_batches(paths[0])
    else:
        contents = [(str(path), _read_bytes(path)) for path in paths]
    batches = [_parse_batch(where, content, rows) for where, content in contents]
    train = batches[: len(TRAIN_BATCHES)]
    return (
        np.concatenate([images for images, _ in train]),
        np.concatenate([labels for _, labels in train]),
        *batches[-1],
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


def _archive_batches(path: Path) -> list[tuple[str, bytes]]:
    """The six batch files in the archive at ``path``, after checking its MD5."""
    redownload = f"delete it and download it again from {PAGE}"
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if digest.hexdigest() != ARCHIVE_MD5:
        raise DataError(
            f"{path}: checksum mismatch (expected MD5 {ARCHIVE_MD5[:12]}..., got "
            f"{digest.hexdigest()[:12]}...): the file is corrupt or not the CIFAR-10 python "
            f"archive; {redownload}"
        )
    contents = []
    try:
        with tarfile.open(path, "r:gz") as archive:
            for name in BATCHES:
                member = f"{FOLDER}/{name}"
                try:
                    file = archive.extractfile(member)
                except KeyError:
                    file = None
                if file is None:
                    raise DataError(f"{path}: holds no file {member}; {redownload}")
                contents.append((f"{path}:{member}", file.read()))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt archive ({one_line(exc)}); {redownload}") from None
    return contents


def _parse_batch(where: str, content: bytes, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The images (uint8, ``(rows, 3072)``) and labels (int64) of one batch file's bytes;
    ``where`` names the file in messages."""
    fix = f"the file is not a CIFAR-10 batch; extract {ARCHIVE} (from {PAGE}) again"
    try:
        # latin1 decodes the Python 2 strings of the official files, the array bytes among them.
        batch = _BatchUnpickler(io.BytesIO(content), encoding="latin1").load()
    except Exception as exc:  # whatever fails in decoding these bytes, the file is corrupt
        raise DataError(f"{where}: cannot be unpickled ({one_line(exc)}); {fix}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{where}: holds a {type(batch).__name__}, not a dict; {fix}")
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise DataError(f"{where}: has no {' or '.join(map(repr, missing))} entry; {fix}")
    images = batch["data"]
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 2
        or images.shape[1] != _PIXELS
    ):
        got = (
            f"a {images.dtype} array of shape {images.shape}"
            if isinstance(images, np.ndarray)
            else f"a {type(images).__name__}"
        )
        raise DataError(f"{where}: 'data' is {got}, expected uint8 rows of {_PIXELS} pixels; {fix}")
    if len(images) != rows:
        raise DataError(f"{where}: {len(images):,} images, expected {rows:,}; {fix}")
    try:
        labels = np.asarray(batch["labels"])
    except ValueError as exc:
        raise DataError(
            f"{where}: 'labels' is not a list of numbers ({one_line(exc)}); {fix}"
        ) from None
    if labels.dtype.kind not in "iu" or labels.shape != (rows,):
        raise DataError(
            f"{where}: 'labels' holds {labels.dtype} values of shape {labels.shape}, expected "
            f"{rows:,} integers; {fix}"
        )
    outside = (labels < 0) | (labels >= N_CLASSES)
    if outside.any():
        first = int(np.argmax(outside))
        raise DataError(
            f"{where}: label {int(labels[first])} (image {first}) is not a class 0..9; {fix}"
        )
    return images, labels.astype(np.int64)
