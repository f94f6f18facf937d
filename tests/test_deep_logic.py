"""Smoke test of the deep-logic experiment: files, table structure, resumability."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eqprop.errors import ConfigError
from eqprop.experiments import deep_logic, experiment

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deep-logic")
    return deep_logic.run("smoke", out, None)


def test_smoke_writes_results_and_figures(smoke: Path) -> None:
    out = smoke.parent
    assert smoke == out / "results.md"
    for name in ("fig1_mse.png", "fig2_pruned.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) < 300_000
    all_methods, seeds = deep_logic.methods("smoke")
    for gate in deep_logic.GATES:
        for method in all_methods:
            record = json.loads((out / "runs" / f"{gate.lower()}-{method.name}.json").read_text())
            assert [run["seed"] for run in record["runs"]] == list(seeds)
            assert set(record["bands"]) == {"min", "q25", "median", "q75", "max"}
            assert len(record["bands"]["median"]) == len(record["epochs"])


def test_results_table_structure(smoke: Path) -> None:
    lines = smoke.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| gate | method |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    assert columns[:3] == ["gate", "method", "MSE < 0.01"] and "sparsity" in columns
    assert "paper" in columns
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    all_methods, seeds = deep_logic.methods("smoke")
    assert len(rows) == len(all_methods) * len(deep_logic.GATES)
    assert {(row[0], row[1]) for row in rows} == {
        (gate, m.label) for gate in deep_logic.GATES for m in all_methods
    }
    for row in rows:
        assert len(row) == len(columns)
        assert row[2].endswith(f"/{len(seeds)}") and row[3].endswith(f"/{len(seeds)}")
    sparse_rows = [row for row in rows if "pruning" in row[1]]
    assert {row[-1] for row in sparse_rows if row[0] == "XOR"} == {"62.50% sparse"}


def test_smoke_resumes_without_retraining(smoke: Path) -> None:
    out = smoke.parent
    run_files = sorted((out / "runs").glob("*.json"))
    stamps = [path.stat().st_mtime_ns for path in run_files]
    assert deep_logic.run("smoke", out, None) == smoke
    assert [path.stat().st_mtime_ns for path in run_files] == stamps
    assert not list(out.rglob("*.tmp"))


def test_other_settings_in_the_folder_are_refused(smoke: Path, tmp_path: Path) -> None:
    source = smoke.parent / "runs" / "and-deep.json"
    record = json.loads(source.read_text())
    record["config"]["lr"] = 123.0
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "and-deep.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="other settings"):
        deep_logic.run("smoke", tmp_path, None)


def test_unknown_scale_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scale 'huge'"):
        deep_logic.run("huge", tmp_path, None)
    assert experiment("deep-logic") is deep_logic
    assert deep_logic.SCALES == ("smoke", "full")
