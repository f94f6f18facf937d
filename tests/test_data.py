"""Tests for eqprop.data: IDX reading and validation, dataset loading, splits, logic gates."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from eqprop import data
from eqprop.data import (
    DATASETS,
    IDX_FILES,
    SPLITS,
    Dataset,
    Split,
    idx,
    load_dataset,
    load_idx_dataset,
    logic_gate,
    read_idx,
    resolve_data_dir,
)
from eqprop.errors import ConfigError, DataError

_TYPE_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array in the IDX format (big-endian, as in the MNIST files)."""
    header = bytes([0, 0, _TYPE_CODES[array.dtype.str[1:]], array.ndim])
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in .gz."""
    content = idx_bytes(array)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


@pytest.fixture(autouse=True)
def isolated_environment(offline: None) -> None:
    """Every test here runs :func:`offline` (conftest)."""


@pytest.fixture
def small_arrays() -> dict[str, np.ndarray]:
    """A tiny MNIST-like dataset: 6 training and 4 test images of 2x3 pixels, 3 classes."""
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, size=(6, 2, 3), dtype=np.uint8)
    train_images[0, 0, 0], train_images[0, 0, 1] = 0, 255
    return {
        data.TRAIN_IMAGES: train_images,
        data.TRAIN_LABELS: np.array([2, 0, 1, 1, 0, 2], dtype=np.uint8),
        data.TEST_IMAGES: rng.integers(0, 256, size=(4, 2, 3), dtype=np.uint8),
        data.TEST_LABELS: np.array([1, 0, 2, 0], dtype=np.uint8),
    }


@pytest.fixture
def small_dir(tmp_path: Path, small_arrays: dict[str, np.ndarray]) -> Path:
    """The tiny dataset on disk, images gzip-compressed and labels raw (both forms accepted)."""
    directory = tmp_path / "small"
    directory.mkdir()
    for stem, array in small_arrays.items():
        write_idx(directory / (f"{stem}.gz" if "images" in stem else stem), array)
    return directory


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(idx_bytes(array)).hexdigest()


# --- read_idx -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_round_trips_every_type(tmp_path: Path, suffix: str, dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    result = read_idx(write_idx(tmp_path / f"file{suffix}", array))
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    np.testing.assert_array_equal(result, array)


def test_read_idx_detects_gzip_without_the_suffix(tmp_path: Path) -> None:
    array = np.arange(5, dtype=np.uint8)
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x08\x03\x00\x00", "not an IDX file (magic bytes 08030000"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "not an IDX file"),
        (b"", "magic bytes none"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "IDX header truncated"),
        (b"\x00\x00\x08\x00", "without dimensions"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "size inconsistent with the IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "needs 1 bytes of data, the file has 2"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match="delete it and download it again") as info:
        read_idx(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_read_idx_rejects_truncated_gzip(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip file") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_idx_rejects_a_gz_file_that_is_not_gzip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "raw", np.arange(3, dtype=np.uint8)).rename(tmp_path / "x.gz")
    with pytest.raises(DataError, match=r"x\.gz: corrupt or truncated gzip file"):
        read_idx(path)


def test_read_idx_reports_an_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read the file"):
        read_idx(tmp_path)


# --- load_idx_dataset -------------------------------------------------------------------------


def test_load_idx_dataset_scales_and_flattens(
    small_dir: Path, small_arrays: dict[str, np.ndarray]
) -> None:
    dataset = load_idx_dataset(small_dir, "tiny")
    assert dataset.name == "tiny" and dataset.valid is None
    assert dataset.image_shape == (2, 3) and dataset.n_features == 6 and dataset.n_classes == 3
    assert dataset.held_out is dataset.test
    for split, images, labels in (
        (dataset.train, data.TRAIN_IMAGES, data.TRAIN_LABELS),
        (dataset.test, data.TEST_IMAGES, data.TEST_LABELS),
    ):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert len(split) == len(small_arrays[labels])
        expected = small_arrays[images].reshape(len(split), -1) / 255.0
        np.testing.assert_allclose(split.x.numpy(), expected, rtol=1e-6)
        np.testing.assert_array_equal(split.y.numpy(), small_arrays[labels])
    assert dataset.train.x.min() == 0.0 and dataset.train.x.max() == 1.0


def test_load_idx_dataset_verifies_checksums(
    small_dir: Path, small_arrays: dict[str, np.ndarray]
) -> None:
    checksums = {stem: sha256_of(array) for stem, array in small_arrays.items()}
    assert len(load_idx_dataset(small_dir, "tiny", checksums).train) == 6

    checksums[data.TEST_LABELS] = "0" * 64
    with pytest.raises(DataError) as info:
        load_idx_dataset(small_dir, "tiny", checksums)
    message = str(info.value)
    assert str(small_dir / data.TEST_LABELS) in message
    assert "checksum mismatch (expected 000000000000..., got " in message
    assert "not the tiny file; delete it and download it again" in message


def test_load_idx_dataset_rereads_files_that_changed(
    small_dir: Path, small_arrays: dict[str, np.ndarray]
) -> None:
    assert load_idx_dataset(small_dir, "tiny").train.y[0] == 2
    labels = small_arrays[data.TRAIN_LABELS].copy()
    labels[0] = 1
    write_idx(small_dir / data.TRAIN_LABELS, np.concatenate([labels, labels[:1]]))
    with pytest.raises(DataError, match="7 labels for 6 images"):
        load_idx_dataset(small_dir, "tiny")


def test_load_idx_dataset_rejects_swapped_files(
    small_dir: Path, small_arrays: dict[str, np.ndarray]
) -> None:
    write_idx(small_dir / f"{data.TRAIN_IMAGES}.gz", small_arrays[data.TRAIN_LABELS])
    with pytest.raises(DataError, match="expected 3-D unsigned-byte images, got 1-D"):
        load_idx_dataset(small_dir, "tiny")


def test_load_idx_dataset_rejects_inconsistent_image_shapes(small_dir: Path) -> None:
    write_idx(small_dir / f"{data.TEST_IMAGES}.gz", np.zeros((4, 3, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="do not belong to the same dataset"):
        load_idx_dataset(small_dir, "tiny")


def test_load_idx_dataset_lists_missing_files(small_dir: Path) -> None:
    (small_dir / data.TRAIN_LABELS).unlink()
    (small_dir / f"{data.TEST_IMAGES}.gz").unlink()
    with pytest.raises(DataError) as info:
        load_idx_dataset(small_dir, "tiny")
    assert str(info.value).startswith(
        f"tiny: missing train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz in {small_dir}"
    )


# --- load_dataset: files, downloads, errors -----------------------------------------------------


def test_load_dataset_without_download_lists_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "mnist: missing train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in {tmp_path / 'nowhere'}; "
        "download them from https://ossci-datasets.s3.amazonaws.com/mnist/"
    )
    assert "--data-dir" in message and "EQPROP_DATA_DIR" in message
    assert not (tmp_path / "cache").exists()


def test_load_dataset_offline_tries_every_mirror_then_explains(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("fashion-mnist: missing train-images-idx3-ubyte.gz, ")
    assert "downloading them failed (http://fashion-mnist.s3-website" in message
    assert "network disabled in tests" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ or pass" in message


@pytest.mark.parametrize("stem", IDX_FILES)
def test_a_failed_download_names_the_one_file_that_is_missing(tmp_path: Path, stem: str) -> None:
    """Only the files the data directory lacks are downloaded, so a failure names those
    (it named the training images when only a labels file was missing)."""
    for other in IDX_FILES:
        if other != stem:
            (tmp_path / f"{other}.gz").write_bytes(b"present")
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(f"mnist: missing {stem}.gz in {tmp_path} and downloading it failed (")
    assert f"/mnist/{stem}.gz: <urlopen error network disabled in tests>" in message
    assert [other for other in IDX_FILES if other != stem and other in message] == []
    assert not (tmp_path / "cache").exists()


@pytest.mark.data
def test_a_directory_lacking_one_file_is_completed_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_data_dir: Path
) -> None:
    requested = []

    def mirror(url: str, timeout: float) -> io.BytesIO:
        requested.append(url.rpartition("/")[2])
        return io.BytesIO((real_data_dir / "mnist" / url.rpartition("/")[2]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", mirror)
    partial = tmp_path / "partial"
    partial.mkdir()
    for stem in IDX_FILES[:1] + IDX_FILES[2:]:
        os.symlink(real_data_dir / "mnist" / f"{stem}.gz", partial / f"{stem}.gz")
    dataset = load_dataset("mnist", data_dir=partial, limit=10)
    assert requested == ["train-labels-idx1-ubyte.gz"]
    assert int(dataset.train.y[0]) == 5
    assert sorted(p.name for p in partial.iterdir()) == sorted(
        f"{s}.gz" for s in IDX_FILES[:1] + IDX_FILES[2:]
    )


def test_load_dataset_rejects_a_download_that_fails_its_checksum(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    requested = []

    def wrong_file(url: str, timeout: float) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO(gzip.compress(idx_bytes(np.zeros(3, dtype=np.uint8))))

    monkeypatch.setattr(urllib.request, "urlopen", wrong_file)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch"):
        load_dataset("mnist", download=True)
    assert requested[:2] == [
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
    ]
    # Nothing unverified, not even a partial file, lands in the cache.
    cache = tmp_path / "cache" / "mnist"
    assert not cache.exists() or not any(cache.iterdir())


def test_load_dataset_verifies_the_real_checksums(
    tmp_path: Path, small_arrays: dict[str, np.ndarray]
) -> None:
    # Files in a "mnist" subdirectory of the data directory are found, then rejected as not MNIST.
    directory = tmp_path / "data" / "mnist"
    directory.mkdir(parents=True)
    for stem, array in small_arrays.items():
        write_idx(directory / f"{stem}.gz", array)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path / "data", download=False)
    assert str(directory / "train-images-idx3-ubyte.gz") in str(info.value)
    assert "checksum mismatch (expected ba891046e650..." in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "cifar"},
            "unknown dataset 'cifar'; valid datasets: digits, mnist, fashion-mnist, cifar10",
        ),
        (
            {"name": "mnist", "split": "paper"},
            "unknown split 'paper'; valid splits: icons, standard",
        ),
        ({"name": "digits", "limit": 0}, "limit must be a positive integer or None, got 0"),
        ({"name": "digits", "limit": -3}, "got -3"),
        ({"name": "digits", "limit": 2.5}, "got 2.5"),
        ({"name": "digits", "limit": True}, "got True"),
        ({"name": "digits", "limit": "10"}, "got '10'"),
    ],
)
def test_load_dataset_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset(**kwargs)
    assert message in str(info.value)


def test_registries() -> None:
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10")
    assert SPLITS == ("icons", "standard")
    assert IDX_FILES[0] == "train-images-idx3-ubyte"


# --- resolve_data_dir -----------------------------------------------------------------------------


def test_resolve_data_dir_prefers_the_dataset_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    assert resolve_data_dir("mnist", tmp_path) == tmp_path / "mnist"
    assert resolve_data_dir("fashion-mnist", tmp_path) == tmp_path
    assert resolve_data_dir("mnist", str(tmp_path / "mnist")) == tmp_path / "mnist"


def test_resolve_data_dir_falls_back_to_env_then_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert resolve_data_dir("mnist", None) == tmp_path / "cache" / "mnist"
    monkeypatch.setenv("EQPROP_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir("mnist", None) == tmp_path / "env"
    assert resolve_data_dir("mnist", tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("EQPROP_DATA_DIR")
    monkeypatch.delenv("EQPROP_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir("mnist", None) == tmp_path / "home" / ".cache" / "eqprop" / "mnist"


def test_resolve_data_dir_rejects_unknown_datasets() -> None:
    with pytest.raises(ConfigError, match="valid datasets: digits, mnist, fashion-mnist, cifar10"):
        resolve_data_dir("emnist", None)


# --- digits -----------------------------------------------------------------------------------


def test_digits_standard_split() -> None:
    dataset = load_dataset("digits")
    assert (len(dataset.train), len(dataset.test), dataset.valid) == (1437, 360, None)
    assert dataset.image_shape == (8, 8) and dataset.n_features == 64 and dataset.n_classes == 10
    assert dataset.held_out is dataset.test
    for split in (dataset.train, dataset.test):
        assert split.x.shape[1] == 64 and split.x.dtype == torch.float32
        assert split.y.dtype == torch.int64
        assert split.x.min() == 0.0 and split.x.max() == 1.0
    assert set(dataset.train.y.tolist()) == set(range(10))


def test_digits_split_is_fixed_and_icons_carves_the_last_training_examples() -> None:
    standard = load_dataset("digits", "standard")
    icons = load_dataset("digits", "icons")
    assert (len(icons.train), len(icons.valid), len(icons.test)) == (1150, 287, 360)
    assert icons.held_out is icons.valid
    torch.testing.assert_close(torch.cat([icons.train.x, icons.valid.x]), standard.train.x)
    torch.testing.assert_close(torch.cat([icons.train.y, icons.valid.y]), standard.train.y)
    torch.testing.assert_close(icons.test.x, standard.test.x)


def test_limit_keeps_the_first_examples_of_each_split() -> None:
    full = load_dataset("digits", "icons")
    limited = load_dataset("digits", "icons", limit=300)
    assert (len(limited.train), len(limited.valid), len(limited.test)) == (300, 287, 300)
    torch.testing.assert_close(limited.train.x, full.train.x[:300])
    torch.testing.assert_close(limited.test.y, full.test.y[:300])


def test_split_rejects_wrong_types() -> None:
    with pytest.raises(ValueError, match="float32"):
        Split(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        Split(torch.zeros(2, 3), torch.zeros(3, dtype=torch.int64))


def test_dataset_without_valid_evaluates_on_test() -> None:
    split = Split(torch.zeros(1, 4), torch.zeros(1, dtype=torch.int64))
    dataset = Dataset("toy", split, None, split, 2, (2, 2))
    assert dataset.held_out is split and dataset.n_features == 4


# --- logic gates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "outputs"),
    [
        ("AND", [0, 0, 0, 1]),
        ("OR", [0, 1, 1, 1]),
        ("XOR", [0, 1, 1, 0]),
        ("NOT", [1, 0]),
        ("identity", [0, 1]),
    ],
)
def test_logic_gate_truth_tables(name: str, outputs: list[int]) -> None:
    x, y = logic_gate(name)
    n_inputs = 2 if len(outputs) == 4 else 1
    expected_x = [[0, 0], [0, 1], [1, 0], [1, 1]] if n_inputs == 2 else [[0], [1]]
    assert x.dtype == torch.float64 and y.dtype == torch.float64
    assert x.tolist() == expected_x
    assert y.shape == (len(outputs), 1) and y.flatten().tolist() == outputs


def test_logic_gate_names_are_case_insensitive() -> None:
    assert torch.equal(logic_gate("xor")[1], logic_gate("XOR")[1])


def test_logic_gate_rejects_unknown_gates() -> None:
    with pytest.raises(ConfigError, match="valid gates: and, or, xor, not, identity"):
        logic_gate("NAND")


# --- real MNIST / Fashion-MNIST -------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_icons(real_data_dir: Path) -> Dataset:
    return load_dataset("mnist", "icons", data_dir=real_data_dir, download=False)


@pytest.mark.data
def test_mnist_icons_split(mnist_icons: Dataset) -> None:
    assert (len(mnist_icons.train), len(mnist_icons.valid), len(mnist_icons.test)) == (
        50_000,
        10_000,
        10_000,
    )
    assert mnist_icons.held_out is mnist_icons.valid
    assert mnist_icons.image_shape == (28, 28) and mnist_icons.n_features == 784
    assert mnist_icons.n_classes == 10
    assert int(mnist_icons.train.y[0]) == 5
    assert mnist_icons.train.x.dtype == torch.float32
    assert float(mnist_icons.train.x.min()) == 0.0 and float(mnist_icons.train.x.max()) == 1.0


@pytest.mark.data
def test_real_files_fail_a_wrong_checksum(real_data_dir: Path) -> None:
    checksums = dict(idx._SOURCES["fashion-mnist"].sha256)
    with pytest.raises(DataError, match="checksum mismatch .* not the mnist file"):
        load_idx_dataset(real_data_dir / "mnist", "mnist", checksums)


@pytest.mark.data
def test_fashion_mnist_standard_split(real_data_dir: Path) -> None:
    dataset = load_dataset(
        "fashion-mnist", data_dir=real_data_dir / "fashion-mnist", download=False
    )
    assert (len(dataset.train), dataset.valid, len(dataset.test)) == (60_000, None, 10_000)
    assert dataset.held_out is dataset.test and dataset.n_classes == 10


@pytest.mark.data
def test_download_falls_back_to_the_next_mirror(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_data_dir: Path
) -> None:
    def second_mirror_only(url: str, timeout: float) -> io.BytesIO:
        mirror, _, filename = url.rpartition("/")
        if mirror != "https://storage.googleapis.com/cvdf-datasets/mnist":
            raise urllib.error.URLError("unreachable")
        return io.BytesIO((real_data_dir / "mnist" / filename).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", second_mirror_only)
    dataset = load_dataset("mnist", limit=10)
    assert int(dataset.train.y[0]) == 5
    cache = tmp_path / "cache" / "mnist"
    assert sorted(path.name for path in cache.iterdir()) == sorted(f"{s}.gz" for s in IDX_FILES)
