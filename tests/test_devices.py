"""Where a run computes: ``--device`` for new runs, and a run moved to another device on
resume (a CUDA-saved run continued on a CPU, simulated on the CPU by rewriting what its
directory records)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from small_run import small_config

from eqprop.cli import main
from eqprop.experiments import paper_runs as pr
from eqprop.runs import (
    CHECKPOINT,
    CONFIG,
    RunOptions,
    atomic_write_bytes,
    config_record,
    load_checkpoint,
    read_config,
    read_metrics,
    save_checkpoint,
    start_run,
    train_run,
)
from eqprop.saved import load_run

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
#: what a checkpoint written on a GPU records of its arithmetic (eqprop.arithmetic.describe)
GPU_ARITHMETIC = "cuda NVIDIA H100 80GB HBM3, torch 2.13.0+cu126"


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def as_if_trained_on_a_gpu(run_dir: Path) -> None:
    """Rewrite ``run_dir`` (trained on the CPU) as a GPU run leaves it: ``train.device =
    "cuda"`` in its config and in the config its checkpoint records, and the GPU's
    arithmetic in the checkpoint (tensors are saved to the CPU either way)."""
    config = read_config(run_dir).override({"train.device": "cuda"})
    atomic_write_bytes(run_dir / CONFIG, config.to_toml().encode())
    state = load_checkpoint(run_dir / CHECKPOINT)
    state.pop("digest", None)  # load_checkpoint verified it; save_checkpoint writes anew
    state.update(config_record(config), arithmetic=GPU_ARITHMETIC)
    save_checkpoint(run_dir / CHECKPOINT, state)


@pytest.fixture
def gpu_run(tmp_path) -> Path:
    run_dir = tmp_path / "run"
    start_run(small_config("epochs=1"), run_dir)
    train_run(run_dir, RunOptions(quiet=True))
    as_if_trained_on_a_gpu(run_dir)
    return run_dir


@NO_GPU
def test_a_gpu_run_on_a_cpu_machine_says_how_to_move_it_and_writes_nothing(gpu_run, capsys):
    before = digest(gpu_run)
    assert main(["train", "--resume", str(gpu_run), "--set", "train.epochs=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "eqprop: error: device 'cuda' requested but no CUDA GPU is available; use --device cpu"
    ]
    assert digest(gpu_run) == before


def test_a_gpu_run_resumes_on_the_cpu_with_a_note(gpu_run, capsys):
    args = ["train", "--resume", str(gpu_run), "--device", "cpu", "--set", "train.epochs=2"]
    assert main([*args, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"written computing with {GPU_ARITHMETIC}" in err
    assert "not bit for bit" in err
    assert read_config(gpu_run).train.device == "cpu"
    assert [r["epoch"] for r in read_metrics(gpu_run)] == [1, 2]
    assert load_run(gpu_run).epoch == 2  # the checkpoint fits the moved config


def test_moving_a_run_keeps_every_other_key_checked(gpu_run, capsys):
    """Only the device (and the epochs) may change on resume: an edited rate still stops."""
    config = read_config(gpu_run).override({"update.lr": 0.5})
    atomic_write_bytes(gpu_run / CONFIG, config.to_toml().encode())
    before = digest(gpu_run)
    assert main(["train", "--resume", str(gpu_run), "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "update.lr is 0.1 in checkpoint.pt but 0.5 in config.toml" in line
    assert digest(gpu_run) == before


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "--device must be cpu, cuda or cuda:N, got 'tpu'"),
        ("cuda:x", "--device must be cpu, cuda or cuda:N, got 'cuda:x'"),
        pytest.param(
            "cuda",
            "device 'cuda' requested but no CUDA GPU is available; use --device cpu",
            marks=NO_GPU,
        ),
    ],
)
def test_reproduce_checks_its_device_before_writing(tmp_path, capsys, device, message):
    out = tmp_path / "fig3"
    assert main(["reproduce", "fig3", "--scale", "smoke", "--out", str(out), "--device", device])
    assert capsys.readouterr().err.strip().splitlines() == [f"eqprop: error: {message}"]
    assert not out.exists()


def test_reproduce_device_is_refused_by_experiments_without_ep_runs(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["reproduce", "smallworld", "--out", str(out), "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "has no --device" in line
    assert not out.exists()


def test_a_declared_run_moves_to_the_device_asked_for(gpu_run):
    """``reproduce --device cpu`` on a directory whose run computed on a GPU: its config is
    moved to the CPU (nothing else changes) and the run resumes there."""
    declared = read_config(gpu_run).override({"train.device": "cpu", "train.epochs": 2})
    assert pr.prepare_run("run", declared, gpu_run, device="cpu") == "resume"
    assert read_config(gpu_run) == declared
    train_run(gpu_run, RunOptions(quiet=True))
    assert [r["epoch"] for r in read_metrics(gpu_run)] == [1, 2]


def test_a_declared_run_keeps_its_device_when_none_is_asked_for(gpu_run):
    declared = read_config(gpu_run).override({"train.device": "cpu", "train.epochs": 2})
    assert pr.prepare_run("run", declared, gpu_run) == "resume"
    assert read_config(gpu_run).train.device == "cuda"


def test_a_new_declared_run_starts_on_the_device_asked_for(tmp_path):
    run_dir = tmp_path / "new"
    assert pr.prepare_run("new", small_config(), run_dir, device="cpu") == "start"
    assert read_config(run_dir).train.device == "cpu"
