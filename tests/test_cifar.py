"""CIFAR-10 (eqprop.cifar) on synthetic files written the way the official python version's
were (Python 2 pickles of dicts, protocol 2): pixels, labels and channel order read back
exactly, through the folder, the archive and a download; corrupt, hostile and missing files
refused in one line naming them; the dataset through the config and the command line.

The official batches hold 10,000 images each; the synthetic ones hold 10 (``BATCH_ROWS`` is
lowered for these tests), and one test checks that the official count is required."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from eqprop import cifar, cli, data
from eqprop import config as cfg
from eqprop.data import datasets as named
from eqprop.data import load_dataset
from eqprop.errors import ConfigError, DataError
from eqprop.runs import RunOptions, read_metrics, start_run, train_run

ROWS = 10
OFFICIAL_ROWS = cifar.BATCH_ROWS  # before the tests lower it


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the official files: text and bytes as Python 2
    strings (SHORT_BINSTRING, BINSTRING), which are read back with ``encoding="latin1"``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_string(self, obj: str | bytes) -> None:
        raw = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_python2_string
    dispatch[bytes] = save_python2_string


def batch_bytes(batch: object, numpy_module: str = "numpy.core.multiarray") -> bytes:
    """``batch`` pickled as in the official files; numpy's array reconstructor named by
    ``numpy_module`` (numpy 1's, as in the official files, or numpy 2's)."""
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump(batch)
    here = np.ndarray.__reduce__(np.zeros(1))[0].__module__  # this numpy's module
    return out.getvalue().replace(
        f"c{here}\n_reconstruct\n".encode(), f"c{numpy_module}\n_reconstruct\n".encode()
    )


def make_planes(seed: int) -> tuple[np.ndarray, list[int]]:
    """``ROWS`` images as (image, channel, row, column) bytes, with 0 and 255 among them, and
    their labels."""
    rng = np.random.default_rng(seed)
    planes = rng.integers(0, 256, size=(ROWS, 3, 32, 32), dtype=np.uint8)
    planes[0, 0, 0, 0], planes[0, 2, 31, 31] = 0, 255
    return planes, [int(k) for k in rng.integers(0, 10, size=ROWS)]


def official_dict(planes: np.ndarray, labels: list[int], name: str) -> dict:
    """A batch as the CIFAR-10 page describes it: each row the 1,024 red values of an image
    (row by row), then the 1,024 green, then the 1,024 blue."""
    rows = np.concatenate([planes[:, c].reshape(len(planes), 1024) for c in range(3)], axis=1)
    return {
        "batch_label": f"synthetic {name}",
        "labels": labels,
        "data": rows,
        "filenames": [f"image_{k}.png" for k in range(len(labels))],
    }


@pytest.fixture
def batches() -> dict[str, tuple[np.ndarray, list[int]]]:
    """Planes and labels of each of the six batch files."""
    return {name: make_planes(seed) for seed, name in enumerate(cifar.BATCHES)}


def write_folder(folder: Path, batches: dict, numpy_module: str = "numpy.core.multiarray") -> Path:
    folder.mkdir(parents=True)
    for name, (planes, labels) in batches.items():
        (folder / name).write_bytes(batch_bytes(official_dict(planes, labels, name), numpy_module))
    return folder


def archive_bytes(batches: dict, skip: str | None = None) -> bytes:
    """A ``cifar-10-python.tar.gz`` of the batches (``skip`` left out)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, (planes, labels) in batches.items():
            if name == skip:
                continue
            content = batch_bytes(official_dict(planes, labels, name))
            info = tarfile.TarInfo(f"{cifar.FOLDER}/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def md5_of(content: bytes) -> str:
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


@pytest.fixture(autouse=True)
def isolated_environment(offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`offline` (conftest), and batches of ``ROWS`` images."""
    monkeypatch.setattr(cifar, "BATCH_ROWS", ROWS)


def assert_matches(dataset: data.Dataset, batches: dict) -> None:
    """Every pixel, channel and label of ``dataset`` is the batches'."""
    assert dataset.name == "cifar10" and dataset.n_classes == 10
    assert dataset.image_shape == (3, 32, 32) and dataset.n_features == 3072
    train = [batches[name] for name in cifar.TRAIN_BATCHES]
    expected = {
        "train": (np.concatenate([p for p, _ in train]), sum((y for _, y in train), [])),
        "test": batches[cifar.TEST_BATCH],
    }
    for split_name, (planes, labels) in expected.items():
        split = getattr(dataset, split_name)
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        images = split.x.numpy().reshape(-1, 3, 32, 32)
        for channel in range(3):  # 0 red, 1 green, 2 blue
            np.testing.assert_array_equal(images[:, channel], planes[:, channel] / np.float32(255))
        assert split.y.tolist() == labels
    assert float(dataset.train.x.min()) == 0.0 and float(dataset.train.x.max()) == 1.0


# --- reading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["folder", "files", "subdirectory", "archive"])
def test_reads_pixels_labels_and_channels_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, batches: dict, layout: str
) -> None:
    """The data directory may hold the extracted folder, its files, ``cifar10/`` with the
    folder, or the archive (read without extracting it)."""
    base = tmp_path / "data"
    if layout == "folder":
        write_folder(base / cifar.FOLDER, batches)
    elif layout == "files":
        write_folder(base, batches)
    elif layout == "subdirectory":
        write_folder(base / "cifar10" / cifar.FOLDER, batches)
    else:
        base.mkdir()
        content = archive_bytes(batches)
        (base / cifar.ARCHIVE).write_bytes(content)
        monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5_of(content))
    dataset = load_dataset("cifar10", data_dir=base, download=False)
    assert (len(dataset.train), dataset.valid, len(dataset.test)) == (5 * ROWS, None, ROWS)
    assert_matches(dataset, batches)


def test_reads_the_array_as_numpy_2_pickles_it(tmp_path: Path, batches: dict) -> None:
    write_folder(tmp_path / cifar.FOLDER, batches, numpy_module="numpy._core.multiarray")
    assert_matches(load_dataset("cifar10", data_dir=tmp_path, download=False), batches)


def test_icons_split_holds_out_the_last_training_images(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, batches: dict
) -> None:
    write_folder(tmp_path / cifar.FOLDER, batches)
    standard = load_dataset("cifar10", data_dir=tmp_path, download=False)
    monkeypatch.setitem(named._ICONS_VALID_SIZE, "cifar10", ROWS // 2)
    icons = load_dataset("cifar10", "icons", data_dir=tmp_path, download=False, limit=40)
    assert (len(icons.train), len(icons.valid), len(icons.test)) == (40, ROWS // 2, ROWS)
    assert icons.held_out is icons.valid
    torch.testing.assert_close(icons.train.x, standard.train.x[:40])
    torch.testing.assert_close(icons.valid.x, standard.train.x[-ROWS // 2 :])
    torch.testing.assert_close(icons.valid.y, standard.train.y[-ROWS // 2 :])
    torch.testing.assert_close(icons.test.y, standard.test.y)


def test_official_files_must_hold_10000_images_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, batches: dict
) -> None:
    monkeypatch.setattr(cifar, "BATCH_ROWS", OFFICIAL_ROWS)
    assert OFFICIAL_ROWS == 10_000 and named._ICONS_VALID_SIZE["cifar10"] == 5_000
    folder = write_folder(tmp_path / cifar.FOLDER, batches)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(info.value).startswith(
        f"{folder / 'data_batch_1'}: 10 images, expected 10,000; the file is not a CIFAR-10 "
        f"batch; extract cifar-10-python.tar.gz (from https://www.cs.toronto.edu/~kriz/"
        "cifar.html) again"
    )


# --- bad files -------------------------------------------------------------------------------


class RunsACommand:
    """Unpickles into a call of os.system, as a hostile batch file would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _hostile(sentinel: Path) -> bytes:
    return pickle.dumps({"data": RunsACommand(f"touch {sentinel}"), "labels": []}, protocol=2)


def _valid(planes: np.ndarray, labels: list[int]) -> dict:
    return official_dict(planes, labels, "bad")


CORRUPT = {
    "truncated": (
        lambda p, y, s: batch_bytes(_valid(p, y))[:5000],
        r"cannot be unpickled \(pickle data was truncated\)",
    ),
    "empty": (lambda p, y, s: b"", r"cannot be unpickled \(Ran out of input\)"),
    "not a dict": (lambda p, y, s: batch_bytes([1, 2, 3]), "holds a list, not a dict"),
    "no labels": (
        lambda p, y, s: batch_bytes({"data": _valid(p, y)["data"], "fine_labels": y}),
        "has no 'labels' entry",
    ),
    "float pixels": (
        lambda p, y, s: batch_bytes({**_valid(p, y), "data": _valid(p, y)["data"] / 255}),
        r"'data' is a float64 array of shape \(10, 3072\), expected uint8 rows of 3072 pixels",
    ),
    "grey images": (
        lambda p, y, s: batch_bytes({**_valid(p, y), "data": p[:, 0].reshape(ROWS, 1024)}),
        r"'data' is a uint8 array of shape \(10, 1024\)",
    ),
    "pixels as bytes": (
        lambda p, y, s: batch_bytes({**_valid(p, y), "data": b"\x00" * 3072}),
        "'data' is a str, expected",
    ),
    "one label short": (
        lambda p, y, s: batch_bytes({**_valid(p, y), "labels": y[:-1]}),
        r"'labels' holds int64 values of shape \(9,\), expected 10 integers",
    ),
    "text labels": (
        lambda p, y, s: batch_bytes({**_valid(p, y), "labels": ["cat"] * ROWS}),
        "'labels' holds <U3 values",
    ),
    "label 10": (
        lambda p, y, s: batch_bytes({**_valid(p, y), "labels": [0] * 7 + [10, -1, 3]}),
        r"label 10 \(image 7\) is not a class 0..9",
    ),
    "os.system": (
        lambda p, y, s: _hostile(s),
        r"cannot be unpickled \(it refers to \w+\.system, which a CIFAR-10 batch does not\)",
    ),
}


@pytest.mark.parametrize("kind", CORRUPT)
def test_a_bad_batch_file_is_one_line_naming_it(tmp_path: Path, batches: dict, kind: str) -> None:
    folder = write_folder(tmp_path / cifar.FOLDER, batches)
    make, message = CORRUPT[kind]
    sentinel = tmp_path / "ran"
    (folder / "data_batch_3").write_bytes(make(*batches["data_batch_3"], sentinel))
    with pytest.raises(DataError, match=message) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    text = str(info.value)
    assert text.startswith(f"{folder / 'data_batch_3'}: ") and "\n" not in text
    assert text.endswith(
        "the file is not a CIFAR-10 batch; extract cifar-10-python.tar.gz "
        "(from https://www.cs.toronto.edu/~kriz/cifar.html) again"
    )
    assert not sentinel.exists()


def test_the_hostile_pickle_would_run_its_command(tmp_path: Path) -> None:
    """The os.system case above refuses a file that does run a command when unpickled."""
    sentinel = tmp_path / "ran"
    pickle.loads(_hostile(sentinel))
    assert sentinel.exists()


def test_missing_files_are_named(tmp_path: Path, batches: dict) -> None:
    folder = write_folder(tmp_path / cifar.FOLDER, batches)
    (folder / "data_batch_2").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(info.value) == (
        f"cifar10: missing data_batch_2, test_batch in {folder}; extract cifar-10-python.tar.gz "
        "(from https://www.cs.toronto.edu/~kriz/cifar.html) there again"
    )


def test_a_folder_that_cannot_be_entered_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, batches: dict
) -> None:
    """As a folder without execute permission answers (root, who runs the tests, ignores
    permissions)."""
    folder = write_folder(tmp_path / cifar.FOLDER, batches)

    def denied(path: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(info.value) == (
        f"cannot read {folder} (Permission denied); make it readable (chmod a+rx)"
    )


def test_an_empty_directory_says_where_to_get_the_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(info.value) == (
        f"cifar10: missing cifar-10-batches-py (or cifar-10-python.tar.gz) in {tmp_path}; "
        "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
        f"extract it into {tmp_path}, or pass --data-dir / set EQPROP_DATA_DIR to the "
        "directory that holds cifar-10-batches-py"
    )
    assert not (tmp_path / "cache").exists()


def test_an_archive_that_is_not_the_official_one_is_refused(tmp_path: Path, batches: dict) -> None:
    (tmp_path / cifar.ARCHIVE).write_bytes(archive_bytes(batches))
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(info.value).startswith(
        f"{tmp_path / cifar.ARCHIVE}: checksum mismatch (expected MD5 c58f30108f71..., got "
    )
    assert "not the CIFAR-10 python archive; delete it and download it again" in str(info.value)


def test_an_archive_without_a_batch_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, batches: dict
) -> None:
    content = archive_bytes(batches, skip="test_batch")
    (tmp_path / cifar.ARCHIVE).write_bytes(content)
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5_of(content))
    with pytest.raises(DataError, match="holds no file cifar-10-batches-py/test_batch; delete it"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


# --- download ------------------------------------------------------------------------------------


def test_a_missing_dataset_is_downloaded_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, batches: dict
) -> None:
    content = archive_bytes(batches)
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5_of(content))
    requested = []

    def mirror(url: str, timeout: float) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO(content)

    monkeypatch.setattr(urllib.request, "urlopen", mirror)
    (tmp_path / "empty").mkdir()
    assert_matches(load_dataset("cifar10", data_dir=tmp_path / "empty"), batches)
    assert requested == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    cache = tmp_path / "cache" / "cifar10"
    assert [path.name for path in cache.iterdir()] == [cifar.ARCHIVE]
    assert_matches(load_dataset("cifar10"), batches)  # from the cache, no second download
    assert len(requested) == 1


def test_a_failed_download_says_why_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, batches: dict
) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(info.value).startswith(
        f"cifar10: missing cifar-10-batches-py (or cifar-10-python.tar.gz) in {tmp_path} and "
        "downloading it failed (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: "
        "<urlopen error network disabled in tests>); download "
    )
    assert not (tmp_path / "cache").exists()

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"wrong"))
    with pytest.raises(DataError, match=r"failed \(https://www\S+\.tar\.gz: checksum mismatch\)"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert list((tmp_path / "cache" / "cifar10").iterdir()) == []


# --- config and command line -------------------------------------------------------------------


def test_the_config_accepts_cifar10() -> None:
    config = cfg.resolve("digits", overrides=["data.dataset='cifar10'", "data.split='icons'"])
    assert (config.data.dataset, config.data.split) == ("cifar10", "icons")
    with pytest.raises(ConfigError, match="fashion-mnist, cifar10, file"):
        cfg.resolve("digits", overrides=["data.dataset='cifar100'"])


TINY_RUN = [
    "data.dataset='cifar10'",
    "topology.sizes=[3072, 8, 10]",
    "free.steps=5",
    "nudged.steps=2",
    "train.batch_size=10",
    "train.epochs=1",
]


def test_a_run_trains_on_cifar10(tmp_path: Path, batches: dict) -> None:
    write_folder(tmp_path / "data" / cifar.FOLDER, batches)
    run = start_run(cfg.resolve("digits", overrides=TINY_RUN), tmp_path / "run")
    train_run(run, RunOptions(data_dir=tmp_path / "data", quiet=True))
    (record,) = read_metrics(run)
    assert record["epoch"] == 1 and 0.0 <= record["train_error"] <= 1.0


def test_the_command_line_names_the_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [a for item in TINY_RUN for a in ("--set", item)]
    status = cli.main(["train", "--out", str(tmp_path / "run"), *args, "--data-dir", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("eqprop: error: cifar10: missing cifar-10-batches-py (or ")
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()
