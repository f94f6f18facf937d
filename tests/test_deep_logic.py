"""Smoke test of the deep-logic experiment: files, table structure, resumability."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from md_tables import claim_verdicts

from eqprop.data import logic_gate
from eqprop.directed import (
    DirectedConfig,
    apply_update,
    complete_network,
    deep_update,
    initial_state,
    relax,
)
from eqprop.errors import ConfigError
from eqprop.experiments import deep_logic, experiment
from eqprop.experiments.claims import NOT_YET

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
        for method in deep_logic.ablations("smoke"):
            record = json.loads((out / "runs" / f"{gate.lower()}-{method.name}.json").read_text())
            assert [run["seed"] for run in record["runs"]] == list(seeds)
    search_methods, search_seeds = deep_logic.searches("smoke")
    for method in search_methods:
        name = f"xor-{method.name}-seeds{search_seeds[0]}-{search_seeds[-1]}.json"
        record = json.loads((out / "runs" / name).read_text())
        assert [run["seed"] for run in record["runs"]] == list(search_seeds)


def test_results_table_structure(smoke: Path) -> None:
    assert claim_verdicts(smoke.read_text()) == [NOT_YET] * len(deep_logic.CLAIMS)  # smoke
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


def test_notebook_section_lists_every_comparison(smoke: Path) -> None:
    text = smoke.read_text()
    section = text[text.index("## Our protocol against the authors' notebook") :]
    section = section[: section.index("## Choices")]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    labels = {row.strip("|").split("|")[0].strip() for row in rows}
    for method in deep_logic.ablations("smoke"):
        assert f"authors' protocol, {method.label}" in labels
    for method, _ in zip(*deep_logic.searches("smoke"), strict=False):
        assert method.label in labels
    assert "DEEP, authors' protocol" in labels and "prune_permanent" in section


def test_authors_preset_has_the_notebooks_values() -> None:
    a = deep_logic.AUTHORS
    assert (a.eps, a.beta, a.free_steps, a.nudged_steps, a.epochs) == (0.05, 10.0, 1000, 1000, 200)
    assert (a.prune_threshold, a.temperature, a.init_scale, a.state_init_scale) == (
        0.01,
        5.0,
        0.05,
        0.1,
    )
    assert (a.init_distribution, a.prune_normalisation) == ("normal", "column")
    assert not a.input_edges and not a.prune_permanent and a.batch_size is None
    assert a.lr == pytest.approx(100 * a.beta) and a.lr * a.l1 == pytest.approx(1.5e-4)
    all_methods, _ = deep_logic.methods("full")
    assert {m.name: m.config for m in all_methods}["deep-authors"] == a
    # the notebook as committed switches L1 and pruning off; each other ablation sets one
    # point (one or two fields) of the notebook's protocol to our value
    committed, *others = deep_logic.ablations("full")
    assert committed.config == replace(a, l1=0.0, prune_threshold=0.0)
    for method in others:
        changed = {k for k, v in asdict(method.config).items() if v != getattr(a, k)}
        assert 1 <= len(changed) <= 2
        assert all(
            getattr(method.config, k) == getattr(deep_logic.protocol._DEEP, k) for k in changed
        )
    assert {"prune_permanent", "input_edges", "state_init_scale"} <= {
        k for m in others for k, v in asdict(m.config).items() if v != getattr(a, k)
    }


def test_one_epoch_of_the_preset_is_the_notebooks_epoch() -> None:
    """The notebook's epoch restated on its own node order (x1, x2, the bias as a third
    clamped input, 5 hidden, the output): Euler steps of ``ds = s W - s rowsum(W)`` on the
    free neurons, clipped to [0, 1]; the nudge ``beta (y - s_out)``; then
    ``W + dt_W <s_i(t) (s_j(t) - s_j(t - 1))> - reg_W sign(W)`` with ``dt_W = 100``,
    ``reg_W = 1.5e-4``, ``<.>`` the mean over the second phase's steps and the examples.
    Short phases here; the arithmetic does not depend on their length."""
    a = replace(deep_logic.AUTHORS, free_steps=30, nudged_steps=40)
    x, y = logic_gate("XOR")
    generator = torch.Generator().manual_seed(0)
    w = 0.3 * torch.randn(9, 9, generator=generator, dtype=torch.float64)
    w.fill_diagonal_(0.0)
    w[:3, :3] = 0.0  # nothing between clamped neurons
    w[3:, :3] = 0.0  # nothing into them
    start = 0.1 * torch.rand(4, 6, generator=generator, dtype=torch.float64)
    s = torch.cat([x.double(), torch.ones(4, 1, dtype=torch.float64), start], dim=1)

    def step(s: torch.Tensor, nudge: bool) -> torch.Tensor:
        ds = s @ w - s * w.sum(dim=1)
        if nudge:
            ds[:, -1:] += a.beta * (y - s[:, -1:])
        s = s.clone()
        s[:, 3:] = (s[:, 3:] + a.eps * ds[:, 3:]).clamp(0.0, 1.0)
        return s

    for _ in range(a.free_steps):
        s = step(s, nudge=False)
    path = [s]
    for _ in range(a.nudged_steps):
        path.append(step(path[-1], nudge=True))
    trajectory = torch.stack(path)
    mean = torch.einsum("tbi,tbj->ij", trajectory[1:], trajectory.diff(dim=0))
    expected = w + 100.0 * mean / (4 * a.nudged_steps) - 1.5e-4 * w.sign()
    expected.fill_diagonal_(0.0)
    expected[3:, :3] = 0.0
    # the package's order: x1, x2, hidden, output, then the bias neuron
    order = [0, 1, 3, 4, 5, 6, 7, 8, 2]
    net = complete_network(2, 5, 1, 0.0, generator, input_edges=a.input_edges)
    net = net.with_weights(w[order][:, order])
    assert torch.equal(net.weights, w[order][:, order])  # the same graph
    free = relax(net, initial_state(net, x, start), a.free_steps, a.eps)
    ours = relax(net, free, a.nudged_steps, a.eps, "deep", a.beta, y, keep_trajectory=True)
    assert torch.allclose(ours, trajectory[..., order], rtol=0, atol=1e-14)
    updated = apply_update(net, deep_update(ours, a.beta), a.lr, a.l1)
    assert torch.allclose(updated.weights, expected[order][:, order], rtol=0, atol=1e-14)
    assert (updated.weights - net.weights).abs().max() > 1e-3  # the step is not negligible


def test_old_run_files_without_the_new_fields_resume(smoke: Path, tmp_path: Path) -> None:
    """A run file written before the notebook's options existed resumes, its missing fields
    read as the defaults."""
    record = json.loads((smoke.parent / "runs" / "and-deep.json").read_text())
    defaults = asdict(DirectedConfig())
    for name in ("init_distribution", "state_init_scale", "prune_normalisation"):
        assert record["config"][name] == defaults[name]
        del record["config"][name]
    del record["config"]["prune_permanent"]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "and-deep.json").write_text(json.dumps(record))
    method = {m.name: m for m in deep_logic.methods("smoke")[0]}["deep"]
    loaded = deep_logic._run_file(tmp_path, "AND", method, deep_logic.methods("smoke")[1])
    assert loaded["runs"] == record["runs"] and loaded["seconds"] == record["seconds"]
