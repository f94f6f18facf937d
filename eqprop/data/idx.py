"""MNIST and Fashion-MNIST from their four IDX files (gzip-compressed or not): found, downloaded
from a mirror when missing, verified against the SHA-256 of their content, and parsed."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import logging
import math
import os
import struct
import tempfile
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqprop.data.directories import DATA_DIR_ENV, _cache_root
from eqprop.data.splits import Dataset, one_line, pixel_split
from eqprop.errors import DataError

_logger = logging.getLogger(__name__)


# The four IDX files of MNIST and Fashion-MNIST, by stem; each may also be present as stem + ".gz".
TRAIN_IMAGES = "train-images-idx3-ubyte"


TRAIN_LABELS = "train-labels-idx1-ubyte"


TEST_IMAGES = "t10k-images-idx3-ubyte"


TEST_LABELS = "t10k-labels-idx1-ubyte"


IDX_FILES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


# Per socket operation, not per whole download: an unreachable mirror fails fast while a slow
# but working one can still deliver tens of megabytes.
_DOWNLOAD_TIMEOUT_S = 10.0


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
        _logger.info("downloading %s", url)
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
