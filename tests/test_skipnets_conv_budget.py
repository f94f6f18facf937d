"""benchmarks/skipnets_conv_budget.py: the ConvNet grid it plans is the full scale's, its
measurements resume, and its estimate is batches x runs x measured seconds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "skipnets_conv_budget.py"
_SPEC = importlib.util.spec_from_file_location("skipnets_conv_budget", _PATH)
budget = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(budget)


def test_the_grid_is_the_papers_convnet_grid():
    """3 rules x 2 architectures x 11 (activation, depth) configurations; 3 learning rates
    each, times 3 seeds at sigmoid 3 and 7 and ReLU 5 and 10: 342 runs of 2,344 batches."""
    runs = budget.grid()
    assert len(runs) == 66
    assert runs[("DTP", "DenseConvNet", "relu", 10)] == 9
    assert runs[("BP", "ConvNet", "sigmoid", 4)] == 3
    assert sum(runs.values()) == 342
    assert budget.BATCHES_PER_RUN == 2344  # 300,000 examples at 128


def test_measurements_resume_and_estimate(tmp_path: Path, capsys):
    out = tmp_path / "budget.jsonl"
    args = ["--out", str(out), "--max-depth", "3", "--channels-per-depth", "1"]
    budget.main(args)
    lines = out.read_text().splitlines()
    assert len(lines) == 6  # 3 rules x 2 architectures at sigmoid depth 3
    first = json.loads(lines[0])
    assert first["channels_per_depth"] == 1 and first["cpu_s"] > 0
    budget.main(args)  # nothing left at these depths: nothing is measured again
    assert out.read_text().splitlines() == lines
    measured = budget.read_measurements(out, 1)
    assert budget.read_measurements(out, 16) == {}  # another width is another measurement
    capsys.readouterr()
    budget.main([*args[:2], "--estimate", "--channels-per-depth", "1"])
    table = capsys.readouterr().out
    total = sum(3 * 3 * budget.BATCHES_PER_RUN * s for s in measured.values()) / 3600
    assert f"In all {total:,.0f} CPU hours for 342 runs; not measured: BP ConvNet relu 5," in table
    assert "| BP | 0 CPU h (10 configurations not measured) |" in table  # 11, one measured


def test_a_damaged_file_is_one_line(tmp_path: Path):
    out = tmp_path / "budget.jsonl"
    out.write_text('{"rule": "BP"}\n')
    with pytest.raises(SystemExit, match=r"budget.jsonl line 1 is not a measurement; move it"):
        budget.main(["--out", str(out), "--estimate"])


def test_the_estimate_is_seconds_times_batches_times_runs():
    """One second per batch everywhere: 342 runs x 2,344 batches = 222.7 hours in all, and a
    rule on one architecture has 57 runs (11 configurations x 3 rates, plus 2 seeds x 4 end
    depths x 3 rates): 37.1 hours."""
    table = budget.estimate(dict.fromkeys(budget.grid(), 1.0))
    assert "| BP | 37 CPU h | 37 CPU h |" in table
    assert table.endswith("In all 223 CPU hours for 342 runs")


def test_only_measures_the_named_configurations(tmp_path: Path):
    out = tmp_path / "budget.jsonl"
    tiny = ["--out", str(out), "--channels-per-depth", "1"]
    with pytest.raises(SystemExit, match=r"--only DTP-DenseConvNet-relu-4 is not a configuration"):
        budget.main([*tiny, "--only", "BP-ConvNet-sigmoid-3", "--only", "DTP-DenseConvNet-relu-4"])
    assert not out.exists()  # checked before anything is measured
    budget.main([*tiny, "--only", "FA-DenseConvNet-sigmoid-3"])
    assert list(budget.read_measurements(out, 1)) == [("FA", "DenseConvNet", "sigmoid", 3)]


def test_batches_keeps_the_least_and_is_checked(tmp_path: Path):
    out = tmp_path / "budget.jsonl"
    tiny = ["--out", str(out), "--channels-per-depth", "1", "--only", "BP-ConvNet-sigmoid-3"]
    with pytest.raises(SystemExit, match="--batches must be at least 1, got 0"):
        budget.main([*tiny, "--batches", "0"])
    assert not out.exists()
    budget.main([*tiny, "--batches", "3"])
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["batches"] == 3 and record["cpu_s"] > 0


def test_batch_seconds_is_the_least_of_the_timed_batches(monkeypatch):
    """Three batches timed 5, 2 and 7 s (a scripted clock): the reading is 2 s."""
    readings = iter([0.0, 5.0, 10.0, 12.0, 20.0, 27.0])
    monkeypatch.setattr(budget.time, "process_time", lambda: next(readings))
    assert budget.batch_seconds("FA", "ConvNet", "sigmoid", 3, channels_per_depth=1, batches=3) == 2
