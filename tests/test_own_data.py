"""Your own data: arrays, tensors and torch Datasets through the Python API, ``.npz`` files
through ``eqprop train --data`` and the config, with the whole run machinery (run
directories, bit-for-bit resume, the data's SHA-256, load_run, plot, sweeps), and bad data
refused in one line before anything is written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli_errors import assert_one_line_error, serve, snapshot

from eqprop import config as cfg
from eqprop.data import load_npz, own_dataset, save_npz
from eqprop.errors import DataError, EqpropError
from eqprop.metrics import held_out_error
from eqprop.runs import CHECKPOINT, DATA_SHA256, RunOptions, read_metrics, start_run, train_run
from eqprop.saved import load_run, load_trainer

N_FEATURES, N_CLASSES = 12, 3
#: a tiny run on the data of :func:`examples`: 15 batches an epoch, a checkpoint every 4
TINY = [
    f"topology.sizes=[{N_FEATURES}, 8, {N_CLASSES}]",
    "free.steps=15",
    "nudged.steps=4",
    "train.batch_size=10",
    "train.checkpoint_every=4",
]


def tiny_args(epochs: int = 2) -> list[str]:
    """``--set`` options of the tiny run of ``epochs`` epochs."""
    return [a for s in [*TINY, f"train.epochs={epochs}"] for a in ("--set", s)]


def examples(n: int = 180, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float64 features with a class signal, int32 labels: what numpy users have."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n).astype(np.int32)
    x = 0.3 * rng.random((n, N_FEATURES))
    x[np.arange(n), 4 * y] += 0.7
    return x, y


def write_data(path: Path, **changes) -> Path:
    """An ``.npz`` file of 150 training and 30 test examples, with ``changes`` (None drops
    an array)."""
    x, y = examples()
    arrays = {"x": x[:150], "y": y[:150], "x_test": x[150:], "y_test": y[150:], **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def tiny_config(data: Path, epochs: int = 2) -> cfg.RunConfig:
    sets = [*TINY, f"train.epochs={epochs}", "data.dataset='file'", f"data.path='{data}'"]
    return cfg.resolve("digits", None, sets)


def trainer_state(run: Path) -> dict:
    return torch.load(run / CHECKPOINT, weights_only=False)["trainer"]


def assert_same_training(a: Path, b: Path) -> None:
    """The two runs hold the same weights, biases, particles and metrics (wall time aside)."""
    sa, sb = trainer_state(a), trainer_state(b)
    for wa, wb in zip(sa["weights"], sb["weights"], strict=True):
        assert torch.equal(wa, wb)
    assert torch.equal(sa["biases"], sb["biases"])
    assert torch.equal(sa["particles"], sb["particles"])

    def strip(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]

    assert strip(read_metrics(a)) == strip(read_metrics(b))


# -- the Python entry point ------------------------------------------------------------
def test_numpy_tensors_and_a_torch_dataset_give_the_same_float32_int64_splits():
    x, y = examples(40)
    from_numpy = own_dataset((x[:30], y[:30]), test=(x[30:], y[30:]))
    from_tensors = own_dataset(
        (torch.from_numpy(x[:30]), torch.from_numpy(y[:30]).long()),
        test=(x[30:].tolist(), y[30:].tolist()),
    )
    items = torch.utils.data.TensorDataset(torch.from_numpy(x[:30]), torch.from_numpy(y[:30]))
    from_dataset = own_dataset(items, test=(x[30:], y[30:]))
    for data in (from_numpy, from_tensors, from_dataset):
        assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
        assert torch.equal(data.train.x, torch.from_numpy(x[:30]).float())
        assert torch.equal(data.test.y, torch.from_numpy(y[30:]).long())
        assert data.valid is None and data.held_out is data.test
        assert (data.n_features, data.n_classes) == (N_FEATURES, N_CLASSES)


def test_without_held_out_examples_the_last_tenth_is_held_out():
    x, y = examples(40)
    data = own_dataset((x, y))
    assert (len(data.train), len(data.valid), data.test) == (36, 4, None)
    assert torch.equal(data.valid.x, torch.from_numpy(x[36:]).float())
    images = own_dataset((x.reshape(40, 3, 4), y), valid=(x[:5].reshape(5, 3, 4), y[:5]))
    assert images.image_shape == (3, 4) and images.n_features == N_FEATURES


def test_own_data_trains_a_trainer_directly(tmp_path):
    """Numpy float64 input used to fail in one_hot (TypeError) or in a product (dtype)."""
    import eqprop

    x, y = examples(60)
    data = own_dataset((x, y))
    net = eqprop.Network(eqprop.topology.layered([N_FEATURES, 8, N_CLASSES]), seed=0)
    trainer = eqprop.Trainer(
        net,
        eqprop.RandomSign(beta=1.0),
        eqprop.MaskedSGD(net, eqprop.LearningRates(lr=0.1)),
        free=eqprop.FixedSteps(steps=10),
        nudged=eqprop.FixedSteps(steps=4),
        nudging=eqprop.GradientNudging(),
        batch_size=9,
    )
    epoch = trainer.train_epoch(data.train.x, data.train.y)
    assert 0 <= epoch.train_error <= 1
    assert 0 <= trainer.evaluate(data.held_out.x, data.held_out.y) <= 1


def test_save_npz_and_load_npz_round_trip_with_the_files_sha256(tmp_path):
    x, y = examples(50)
    data = own_dataset((x[:40], y[:40]), valid=(x[40:45], y[40:45]), test=(x[45:], y[45:]))
    save_npz(data, tmp_path / "d.npz")
    back = load_npz(tmp_path / "d.npz")
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(back, split).x, getattr(data, split).x)
        assert torch.equal(getattr(back, split).y, getattr(data, split).y)
    assert back.sha256 == hashlib.sha256((tmp_path / "d.npz").read_bytes()).hexdigest()
    assert len(load_npz(tmp_path / "d.npz", limit=3).train) == 3


BAD_ARRAYS: dict[str, tuple[Callable[[], dict], str]] = {
    "nan": (lambda: {"train": (np.full((3, 2), np.nan), [0, 1, 0])}, "NaN, infinite"),
    "beyond-float32": (lambda: {"train": (np.full((3, 2), 1e300), [0, 1, 0])}, "float32"),
    "float-labels": (lambda: {"train": (np.ones((3, 2)), [0.0, 1.5, 0.0])}, "integers 0..C-1"),
    "negative-label": (lambda: {"train": (np.ones((3, 2)), [0, -1, 0])}, "the label -1"),
    "lengths": (lambda: {"train": (np.ones((3, 2)), [0, 1])}, "has 3 examples but y has 2"),
    "ragged": (lambda: {"train": ([[1, 2], [3]], [0, 1])}, "x is not an array"),
    "not-a-pair": (lambda: {"train": [(np.ones(2), 0, 1)]}, "not a (features, label) pair"),
    "strings": (lambda: {"train": (np.array([["a"]]), [0])}, "features must be numbers"),
    "features-differ": (
        lambda: {"train": (np.ones((3, 2)), [0, 1, 0]), "test": (np.ones((1, 3)), [0])},
        "x_test has 3 features per example but x has 2",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_bad_arrays_are_one_line_data_errors(case):
    make, expected = BAD_ARRAYS[case]
    with pytest.raises(DataError) as info:
        own_dataset(**make())
    assert expected in str(info.value) and "\n" not in str(info.value)


# -- run directories from Python ---------------------------------------------------------
def test_an_own_data_run_resumes_bit_for_bit_and_loads_back(tmp_path):
    data = write_data(tmp_path / "mine.npz")
    whole = start_run(tiny_config(data), tmp_path / "whole")
    train_run(whole, RunOptions(quiet=True))
    split = start_run(tiny_config(data, epochs=1), tmp_path / "split")
    train_run(split, RunOptions(quiet=True))
    train_run(split, RunOptions(quiet=True), epochs=2)
    assert_same_training(whole, split)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert (whole / DATA_SHA256).read_text() == f"{digest}  {data}\n"

    trained = load_run(whole)
    held = load_npz(data).held_out
    assert trained.error(held.x, held.y) == held_out_error(read_metrics(whole)[-1])
    loaded, trainer = load_trainer(whole, None)
    assert loaded.sha256 == digest and trainer.epoch == 2


def test_a_resume_on_changed_data_is_refused_before_anything_is_written(tmp_path):
    data = write_data(tmp_path / "mine.npz")
    run = start_run(tiny_config(data, epochs=1), tmp_path / "run")
    train_run(run, RunOptions(quiet=True))
    x, y = examples()
    write_data(data, y=(y[:150] + 1) % N_CLASSES)
    before = snapshot(tmp_path)
    with pytest.raises(EqpropError, match="has changed since .* started"):
        train_run(run, RunOptions(quiet=True), epochs=2)
    assert snapshot(tmp_path) == before


def test_a_sweep_trains_own_data(tmp_path):
    from eqprop.sweeps.spec import sweep_from_dict
    from eqprop.sweeps.trial import DONE, train_trial, trial_state

    data = write_data(tmp_path / "mine.npz")
    fixed = dict(cfg.parse_override(s) for s in TINY)
    fixed.update({"data.dataset": "file", "data.path": "mine.npz", "train.epochs": 1})
    values = {"set": fixed, "grid": {"train.seed": [0, 1]}}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a --set path is relative to the current directory
    try:
        sweep = sweep_from_dict(values, out=tmp_path / "sweep")
    finally:
        os.chdir(cwd)
    trial = sweep.trials[0]
    assert trial.config.data.path == str(data)
    run = start_run(trial.config, sweep.run_dir(trial))
    train_trial(str(run), None)
    assert trial_state(run) == DONE


# -- the command line -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "own-data-logs")


def test_train_data_trains_resumes_bit_for_bit_and_refuses_changed_data(server, tmp_path):
    data = write_data(tmp_path / "mine.npz")
    whole = server.run(
        ["train", "--quiet", "--data", "mine.npz", "--out", "whole", *tiny_args()], tmp_path
    )
    assert whole.rc == 0, whole.err
    first = server.run(
        ["train", "--quiet", "--data", "mine.npz", "--out", "split", *tiny_args(1)], tmp_path
    )
    assert first.rc == 0, first.err
    config = cfg.from_dict(cfg.load_file(tmp_path / "split" / "config.toml"))
    assert (config.data.dataset, config.data.path) == ("file", str(data))

    original = data.read_bytes()
    write_data(data, x=examples()[0][:150] * 0.5)
    before = snapshot(tmp_path)
    refused = server.run(["train", "--resume", "split", "--set", "epochs=2"], tmp_path)
    assert_one_line_error(refused, "has changed since split started")
    assert snapshot(tmp_path) == before

    data.write_bytes(original)
    resumed = server.run(["train", "--quiet", "--resume", "split", "--set", "epochs=2"], tmp_path)
    assert resumed.rc == 0, resumed.err
    assert_same_training(tmp_path / "whole", tmp_path / "split")
    plotted = server.run(["plot", "split"], tmp_path)
    assert plotted.rc == 0 and (tmp_path / "split" / "errors.png").is_file()


def test_a_config_file_names_its_data_relative_to_itself(server, tmp_path):
    (tmp_path / "project").mkdir()
    write_data(tmp_path / "project" / "mine.npz")
    (tmp_path / "project" / "run.toml").write_text(
        '[data]\ndataset = "file"\npath = "mine.npz"\n'
        f"[topology]\nsizes = [{N_FEATURES}, 8, {N_CLASSES}]\n[train]\nepochs = 1\n"
    )
    result = server.run(
        [
            "train",
            "--quiet",
            "--config",
            "project/run.toml",
            "--out",
            "run",
            "--set",
            "free.steps=10",
        ],
        tmp_path,
    )
    assert result.rc == 0, result.err
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["epoch"] == 1


def _npz(name: str, **changes) -> Callable[[Path], object]:
    return lambda root: write_data(root / name, **changes)


def _truncated(root: Path) -> None:
    good = write_data(root / "cut.npz").read_bytes()
    (root / "cut.npz").write_bytes(good[: len(good) // 2])


def _object_array(root: Path) -> None:
    x, y = examples()
    np.savez(root / "objects.npz", x=np.array([None] * 3, dtype=object), y=y[:3])


def _zip_of_text(root: Path) -> None:
    with zipfile.ZipFile(root / "zip.npz", "w") as archive:
        archive.writestr("x.npy", "not an array")
        archive.writestr("y.npy", "nor this")


X, Y = examples()
#: (arguments after ``train``, setup of the workspace, the expected part of the error)
BAD_FILES: dict[str, tuple[list[str], Callable[[Path], object] | None, str]] = {
    "missing": (["--data", "gone.npz"], None, "gone.npz does not exist"),
    "directory": (["--data", "adir"], lambda r: (r / "adir").mkdir(), "adir is a directory"),
    "text": (
        ["--data", "notes.npz"],
        lambda r: (r / "notes.npz").write_text("1,2,3\n"),
        "is not an .npz file",
    ),
    "truncated": (["--data", "cut.npz"], _truncated, "cannot be read as an .npz file"),
    "zip-of-text": (["--data", "zip.npz"], _zip_of_text, "cannot be read as an .npz file"),
    "object-array": (["--data", "objects.npz"], _object_array, "cannot be read as an .npz file"),
    "no-y": (["--data", "d.npz"], _npz("d.npz", y=None), "has x but no y"),
    "y-test-alone": (["--data", "d.npz"], _npz("d.npz", x_test=None), "has y_test but no x_test"),
    "unknown-array": (["--data", "d.npz"], _npz("d.npz", X=X), "holds an array 'X'"),
    "nan": (["--data", "d.npz"], _npz("d.npz", x=np.where(X[:150] > 0.9, np.nan, X[:150])), "NaN"),
    "inf": (["--data", "d.npz"], _npz("d.npz", x_test=np.full((30, 12), np.inf)), "infinite"),
    "float-labels": (["--data", "d.npz"], _npz("d.npz", y=Y[:150] + 0.5), "must be integers"),
    "one-hot": (
        ["--data", "d.npz"],
        _npz("d.npz", y=np.eye(N_CLASSES, dtype=np.int64)[Y[:150]]),
        "one-hot? store the class numbers",
    ),
    "negative-label": (["--data", "d.npz"], _npz("d.npz", y_test=Y[150:] - 1), "the label -1"),
    "lengths": (["--data", "d.npz"], _npz("d.npz", y=Y[:149]), "has 150 examples but y has 149"),
    "empty": (["--data", "d.npz"], _npz("d.npz", x=X[:0], y=Y[:0]), "x is empty"),
    "one-dimensional-x": (["--data", "d.npz"], _npz("d.npz", x=X[:150, 0]), "one row of features"),
    "features-differ": (
        ["--data", "d.npz"],
        _npz("d.npz", x_test=X[150:, :-1]),
        f"x_test has {N_FEATURES - 1} features per example but x has {N_FEATURES}",
    ),
    "input-size": (
        ["--data", "d.npz"],
        _npz("d.npz", x=np.hstack([X[:150], X[:150]]), x_test=np.hstack([X[150:], X[150:]])),
        f"starts with {N_FEATURES} inputs but {{root}}/d.npz has {2 * N_FEATURES} features",
    ),
    "labels-beyond-outputs": (
        ["--data", "d.npz"],
        _npz("d.npz", y_test=np.full(30, 5)),
        "ends with 3 outputs but {root}/d.npz has 6 classes",
    ),
    "data-and-set-path": (
        ["--data", "d.npz", "--set", "data.path=e.npz"],
        _npz("d.npz"),
        "--data FILE sets data.path itself",
    ),
    "file-without-path": (["--set", "data.dataset=file"], None, "needs data.path"),
    "path-without-file": (["--set", "data.path=d.npz"], None, "data.path applies only with"),
    "file-with-icons-split": (
        ["--set", "data.dataset=file", "--set", "data.path=d.npz", "--set", "data.split=icons"],
        _npz("d.npz"),
        "a data file holds its own held-out examples",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_data_is_one_line_and_writes_nothing(case, server, tmp_path):
    args, setup, expected = BAD_FILES[case]
    if setup is not None:
        setup(tmp_path)
    before = snapshot(tmp_path)
    result = server.run(["train", "--out", "new", *tiny_args(), *args], tmp_path)
    assert_one_line_error(result, expected.format(root=tmp_path))
    assert snapshot(tmp_path) == before


def test_there_are_at_least_10_bad_data_files():
    assert len(BAD_FILES) >= 10


def test_resume_refuses_data_and_the_original_file_is_read_whatever_the_directory(server, tmp_path):
    write_data(tmp_path / "mine.npz")
    run = server.run(
        ["train", "--quiet", "--data", "mine.npz", "--out", "run", *tiny_args(1)], tmp_path
    )
    assert run.rc == 0, run.err
    before = snapshot(tmp_path)
    again = server.run(["train", "--resume", "run", "--data", "mine.npz"], tmp_path)
    assert_one_line_error(again, "drop --data")
    assert snapshot(tmp_path) == before
    (tmp_path / "elsewhere").mkdir()
    shutil.move(tmp_path / "run", tmp_path / "elsewhere" / "run")
    resumed = server.run(
        ["train", "--quiet", "--resume", "run", "--set", "epochs=2"], tmp_path / "elsewhere"
    )
    assert resumed.rc == 0, resumed.err
