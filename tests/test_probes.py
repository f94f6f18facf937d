"""The probes behind claims in the docs: they read finished run directories and write only
their own output."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from small_run import small_config

from eqprop.metrics import held_out_error
from eqprop.relaxation.fista import Fista
from eqprop.runs import (
    RunOptions,
    build_network,
    load_data,
    read_metrics,
    start_run,
    train_run,
)
from eqprop.saved import load_run

PROBES = Path(__file__).resolve().parents[1] / "docs" / "results" / "solvers-full" / "probes"


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_held_out_drift_measures_the_final_weights_then_trains_on_without_writing(tmp_path):
    config = small_config()
    run_dir = start_run(config, tmp_path / "run")
    train_run(run_dir, RunOptions(quiet=True))
    before = _digest(run_dir)
    out = tmp_path / "drift.json"
    command = [sys.executable, str(PROBES / "held_out_drift.py"), str(run_dir)]
    options = ["--batches", "6", "--every", "3", "--out", str(out)]
    subprocess.run(command + options, check=True, timeout=300, capture_output=True)

    rows = json.loads(out.read_text())
    assert [r["batch"] for r in rows] == [0, 3, 6]
    # row 0: the final weights at the fixed point, from zeros, as computed here
    held = load_data(config, None).held_out
    predicted = load_run(run_dir).network.predict(held.x, Fista(eps=0.5, steps=20_000, tol=1e-5))
    assert rows[0]["held_out"] == float((predicted != held.y).double().mean())
    # the later rows come from weights trained further: the running training error is a
    # fraction of 3 batches of 10 examples
    for row in rows[1:]:
        assert 0 <= row["train_error"] <= 1 and (30 * row["train_error"]).is_integer()
    assert torch.tensor([r["held_out"] for r in rows]).unique().numel() > 1
    assert _digest(run_dir) == before  # the run directory is only read


def test_plot_held_out_drift_draws_one_panel_per_network(tmp_path):
    rows = [{"batch": 0, "held_out": 0.1}, {"batch": 5, "held_out": 0.08, "train_error": 0.1}]
    files = []
    for name in ("C-paper-seed0", "C-fista-seed0", "B-sor-seed0"):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(rows))
    out = tmp_path / "drift.png"
    command = [sys.executable, str(PROBES / "plot_held_out_drift.py"), *map(str, files)]
    subprocess.run([*command, "--out", str(out)], check=True, timeout=120, capture_output=True)
    data = out.read_bytes()
    assert data[:4] == b"\x89PNG" and len(data) <= 300_000
    width = int.from_bytes(data[16:20], "big")
    one = tmp_path / "one.png"
    subprocess.run(
        [sys.executable, str(PROBES / "plot_held_out_drift.py"), str(files[0]), "--out", str(one)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert width > 1.5 * int.from_bytes(one.read_bytes()[16:20], "big")  # two panels, one


def test_held_out_drift_on_a_missing_run_says_so_in_one_line(tmp_path):
    command = [sys.executable, str(PROBES / "held_out_drift.py"), str(tmp_path / "nothing")]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "d.json")], timeout=120, capture_output=True, text=True
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"held_out_drift: {tmp_path / 'nothing'} does not exist; pass a directory written by "
        "'eqprop train'"
    ]
    assert not (tmp_path / "d.json").exists()


def _swap(run_dir: Path, other: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(PROBES / "evaluator_swap.py"), str(run_dir)]
    options = ["--other", str(other), "--epochs", "1", "--block", "1", "--out", str(out)]
    return subprocess.run(command + options, timeout=300, capture_output=True, text=True)


def test_evaluator_swap_retrains_the_run_and_measures_its_weights_three_ways(tmp_path):
    config = small_config("epochs=1", "train.test_persistent=true", "batch_order='fixed'")
    run_dir = start_run(config, tmp_path / "run")
    train_run(run_dir, RunOptions(quiet=True))
    other_config = config.override({"free.solver": "fista", "free.steps": 400, "free.tol": 1e-4})
    other = start_run(other_config, tmp_path / "other")  # only its config is read
    before = _digest(run_dir)
    out = tmp_path / "swap.json"
    assert _swap(run_dir, other, out).returncode == 0

    [row] = json.loads(out.read_text())
    [record] = read_metrics(run_dir)
    assert row["epoch"] == 1 and row["own"] == held_out_error(record)
    assert row["train_error"] == record["train_error"]
    # the retrained weights are the run's: its final (epoch-1) network, measured here
    network = load_run(run_dir).network
    held = load_data(config, None).held_out
    fixed_point = network.predict(held.x, Fista(eps=0.5, steps=20_000, tol=1e-5))
    assert row["fixed_point"] == float((fixed_point != held.y).double().mean())
    # epoch 1: the other protocol's test particles start at zeros
    s = network.zero_state(len(held.x))
    drive = network.input_drive(held.x)
    other_config.free.build().relax(network, s, drive)
    assert row["other"] == float((s[:, network.output].argmax(1) != held.y).double().mean())
    h = network.drive(s, drive, torch.empty_like(s)).clamp_(0.0, 1.0)
    # (the probe's process may multiply with another thread count: equal to rounding)
    assert row["other_max_residual"] == pytest.approx(float((s - h).abs().max()), abs=1e-6)
    assert row["other_max_residual"] <= 1e-4
    # the first training batch (examples 0-9 in file order) from zeros at the initial weights
    data = load_data(config, None)
    fresh = build_network(config)
    s = fresh.zero_state(10)
    drive = fresh.input_drive(data.train.x[:10])
    config.free.build().relax(fresh, s, drive)
    h = fresh.drive(s, drive, torch.empty_like(s)).clamp_(0.0, 1.0)
    blocks = row["train_residual_blocks"]
    assert len(blocks) == -(-len(data.train.x) // 10)
    assert blocks[0] == pytest.approx(float((s - h).abs().max()), abs=1e-6)
    assert _digest(run_dir) == before  # the run directory is only read


def test_evaluator_swap_refuses_records_the_retrained_run_does_not_reproduce(tmp_path):
    config = small_config("epochs=1", "train.test_persistent=true")
    run_dir = start_run(config, tmp_path / "run")
    train_run(run_dir, RunOptions(quiet=True))
    metrics = run_dir / "metrics.jsonl"
    record = json.loads(metrics.read_text())
    record["train_error"] += 0.25
    metrics.write_text(json.dumps(record) + "\n")
    out = tmp_path / "swap.json"
    done = _swap(run_dir, run_dir, out)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("evaluator_swap: epoch 1 of the retrained run gives training ")
    assert line.endswith(": not the run's weights")
    assert not out.exists()


def _probe(name: str):
    if str(PROBES) not in sys.path:  # the probes import their shared _probe module
        sys.path.insert(0, str(PROBES))
    spec = importlib.util.spec_from_file_location(name, PROBES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_criterion_pass_rate_agrees_with_exchangeability_and_a_direct_count():
    probe = _probe("criterion_pass_rate")
    rng = np.random.default_rng(1)
    # two paper seeds, no floor: the compared run and the second paper run are exchangeable
    # around the first, so one comparison passes with probability exactly 1/2
    passed = probe.within(2, 1, 1.0, 0.0, 200_000, rng)
    assert abs(passed[:, 0, 0].mean() - 0.5) < 0.005
    # a floor far above the noise lets every comparison pass
    assert probe.within(3, 3, 1.0, 100.0, 1000, rng).all()
    # one simulated experiment, counted by hand from the same draws
    draws = np.random.default_rng(7)
    paper, compared = draws.normal(0, 2.0, (1, 1, 3)), draws.normal(0, 2.0, (1, 1, 3))
    allowance = max(paper.max() - paper.min(), 0.5)
    expected = [abs(compared[0, 0, k] - paper[0, 0, k]) <= allowance for k in range(3)]
    got = probe.within(3, 1, 2.0, 0.5, 1, np.random.default_rng(7))
    assert got[0, 0].tolist() == expected


def test_criterion_pass_rate_needs_a_pair_of_paper_seeds():
    done = subprocess.run(
        [sys.executable, str(PROBES / "criterion_pass_rate.py"), "--seeds", "1"],
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "criterion_pass_rate: --seeds must be at least 2 (one pair of paper runs)"
    )


def test_early_free_phase_without_changes_is_the_runs_own_training(tmp_path):
    config = small_config("epochs=2", "train.test_persistent=true")
    run_dir = start_run(config, tmp_path / "run")
    train_run(run_dir, RunOptions(quiet=True))
    before = _digest(run_dir)
    results = {}
    for first in (0, 3):
        out = tmp_path / f"early{first}.json"
        command = [sys.executable, str(PROBES / "early_free_phase.py"), str(run_dir)]
        options = ["--first-batches", str(first), "--epochs", "2", "--out", str(out)]
        subprocess.run(command + options, check=True, timeout=300, capture_output=True)
        results[first] = json.loads(out.read_text())
    unchanged = results[0]
    records = read_metrics(run_dir)
    assert [row["epoch"] for row in unchanged["epochs"]] == [1, 2]
    for row, record in zip(unchanged["epochs"], records, strict=True):
        assert row["train_error"] == record["train_error"]
        assert row["own"] == held_out_error(record)  # from the persistent test particles
    assert unchanged["first_batches_largest_residual"] == []
    network = load_run(run_dir).network
    held = load_data(config, None).held_out
    fixed_point = network.predict(held.x, Fista(eps=0.5, steps=20_000, tol=1e-5))
    assert unchanged["epochs"][-1]["fixed_point"] == float((fixed_point != held.y).double().mean())
    # three changed batches, in the first epoch only, each taken to the fixed point
    largest = results[3]["first_batches_largest_residual"]
    assert len(largest) == 3 and max(largest) < 1e-5
    assert _digest(run_dir) == before  # the run directory is only read
    refused = subprocess.run(command + ["--epochs", "0", "--out", str(out)], capture_output=True)
    assert refused.returncode == 1
    assert refused.stderr.decode().strip() == "early_free_phase: --epochs is 0; give at least 1"
    refused = subprocess.run(
        command + ["--first-batches", "-1", "--out", str(out)], capture_output=True
    )
    assert refused.returncode == 1
    batches = -(-len(load_data(config, None).train.x) // config.train.batch_size)
    assert refused.stderr.decode().strip() == (
        f"early_free_phase: --first-batches is -1; give 0 to {batches} (the batches of one epoch"
        f" of {run_dir})"
    )


def _early_result(path: Path, errors: list[tuple[float, float]]) -> Path:
    epochs = [
        {"epoch": e, "train_error": train, "own": held_out, "fixed_point": held_out}
        for e, (train, held_out) in enumerate(errors, 1)
    ]
    path.write_text(json.dumps({"first_batches": 125, "epochs": epochs}))
    return path


def _run_records(folder: Path, errors: list[tuple[float, float]]) -> Path:
    folder.mkdir()
    rows = [
        {"epoch": e, "train_error": train, "test_error": held_out}
        for e, (train, held_out) in enumerate(errors, 1)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_within_noise_judges_each_seed_against_its_reference_with_the_noise_runs_spread(tmp_path):
    # references at two seeds, one an early_free_phase result and one a run directory
    reference = [
        _early_result(tmp_path / "e0.json", [(0.30, 0.12), (0.13, 0.100)]),
        _run_records(tmp_path / "e1", [(0.30, 0.14), (0.13, 0.101)]),
    ]
    # epoch 1 held-out: +0.019 and -0.021; epoch 2 held-out: +0.006 and 0; training +0.004
    # and +0.006 at epoch 1; epoch 3 is not finished by the references and is left out
    compared = [
        _run_records(tmp_path / "r0", [(0.304, 0.139), (0.13, 0.106), (0.1, 0.1)]),
        _run_records(tmp_path / "r1", [(0.306, 0.119), (0.13, 0.101), (0.1, 0.1)]),
    ]
    probe = _probe("within_noise")
    reference = [probe.records(p) for p in reference]
    compared = [probe.records(d) for d in compared]
    head = (
        "| epoch | training, seed 4 | training, seed 5 | held-out, seed 4 | held-out, seed 5 | "
        "allowed, training | allowed, held-out |"
    )
    # the references as the noise: held-out spread 0.02 at epoch 1, 0.001 (so the floor, 0.5
    # points) at epoch 2; the training spreads are below the floor
    lines = probe.table(reference, compared, reference, [4, 5])
    assert lines[0] == head
    assert lines[2:] == [
        "| 1 | +0.40 (ok) | +0.60 (OUT) | +1.90 (ok) | -2.10 (OUT) | 0.50 | 2.00 |",
        "| 2 | +0.00 (ok) | +0.00 (ok) | +0.60 (OUT) | +0.00 (ok) | 0.50 | 0.50 |",
        "5 of 8 comparisons within",
    ]
    # other noise runs: training spread 0.01 at both epochs, held-out 0.03 and 0.001
    noise = [
        probe.records(_run_records(tmp_path / "n0", [(0.29, 0.10), (0.12, 0.100)])),
        probe.records(_run_records(tmp_path / "n1", [(0.30, 0.13), (0.13, 0.101)])),
        probe.records(_run_records(tmp_path / "n2", [(0.30, 0.12), (0.13, 0.100)])),
    ]
    assert probe.table(reference, compared, noise, [4, 5])[2:] == [
        "| 1 | +0.40 (ok) | +0.60 (ok) | +1.90 (ok) | -2.10 (ok) | 1.00 | 3.00 |",
        "| 2 | +0.00 (ok) | +0.00 (ok) | +0.60 (OUT) | +0.00 (ok) | 1.00 | 0.50 |",
        "7 of 8 comparisons within",
    ]


def test_within_noise_refuses_unpaired_or_foreign_inputs_in_one_line(tmp_path):
    early = _early_result(tmp_path / "e0.json", [(0.3, 0.1)])
    run_dir = _run_records(tmp_path / "r0", [(0.3, 0.1)])
    empty = tmp_path / "empty"
    empty.mkdir()
    command = [sys.executable, str(PROBES / "within_noise.py")]
    cases = {
        ("--reference", str(early), str(early), "--compared", str(run_dir)): (
            "2 references, 1 compared runs and 2 seeds; give one of each per seed, in the "
            "same order"
        ),
        ("--reference", str(early), "--compared", str(run_dir)): (
            "1 noise run; give at least two seeds to measure noise"
        ),
        ("--reference", str(tmp_path / "none.json"), "--compared", str(run_dir)): (
            f"cannot read {tmp_path / 'none.json'} (No such file or directory)"
        ),
        ("--reference", str(run_dir / "metrics.jsonl"), "--compared", str(run_dir)): (
            f"{run_dir / 'metrics.jsonl'} is neither a run directory nor an early_free_phase "
            "result (KeyError('epochs'))"
        ),
        ("--reference", str(empty), "--compared", str(run_dir)): (
            f"{empty} has no finished epoch (no metrics.jsonl records)"
        ),
    }
    for arguments, message in cases.items():
        done = subprocess.run(command + list(arguments), capture_output=True, text=True)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip() == f"within_noise: {message}"
