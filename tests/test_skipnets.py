"""The skipnets experiment (Im, Patil & Branson): smoke scale end to end, resume, table and
claims."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from md_tables import claim_verdicts

from eqprop import config as cfg
from eqprop.arithmetic import describe
from eqprop.cli import main
from eqprop.config import from_dict, preset
from eqprop.errors import ConfigError
from eqprop.experiments import experiment, skipnets
from eqprop.experiments.claims import NOT_YET, Verdict
from eqprop.runs import start_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("skipnets")
    begin = time.process_time()  # CPU time: the machine may be shared
    results = skipnets.run("smoke", out, None)
    return results, time.process_time() - begin


def test_smoke_writes_results_table_and_plots(smoke: tuple[Path, float]) -> None:
    results, seconds = smoke
    assert seconds < 60
    out = results.parent
    assert results == out / "results.md"
    for plot in ("accuracy_vs_depth.png", "sensitivity.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / plot).stat().st_size < 300_000

    protocol = skipnets.PROTOCOLS["smoke"]
    n_depths = sum(len(d) for d in protocol.depths.values())
    baseline_runs = len(skipnets.RULE_NAMES) * len(protocol.architectures) * n_depths + 1
    assert protocol.ep is not None
    ep_runs = len(skipnets.EP_PRESETS) * len(protocol.ep.depths)
    expected_runs = baseline_runs + ep_runs  # + linear readout, + EP
    assert len(list((out / "runs").glob("*.json"))) == expected_runs

    text = results.read_text()
    header = (
        "| rule | architecture | activation | depth | seed | best hyperparameters "
        "| valid acc (%) | test acc (%) |"
    )
    lines = text.splitlines()
    start = lines.index(header)
    rows = [line for line in lines[start + 2 :] if line.startswith("| ")]
    # one row per rule x architecture x (activation, depth), plus the linear readout and EP
    assert len(rows) == expected_runs
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 8
        assert cells[0] in (*skipnets.RULE_NAMES, "EP") and cells[4] == "0"
        assert 0.0 <= float(cells[6]) <= 100.0 and 0.0 <= float(cells[7]) <= 100.0
        assert cells[5].startswith("lr=")
    # the ConvNets are part of the smoke scale, for every rule, with 2 x depth channels
    conv = {tuple(c.strip() for c in r.strip("|").split("|")[:3]) for r in rows if "Conv" in r}
    assert conv == {
        (rule, arch, act)
        for rule in skipnets.RULE_NAMES
        for arch in ("ConvNet", "DenseConvNet")
        for act in ("sigmoid", "relu")
    }
    assert "2 x depth channels in every ConvNet hidden layer (3x3 kernels, stride 1" in text
    # Figures 1 and 2: a row of panels per family (NN vs DN, ConvNet vs DenseConvNet) and
    # activation, a column per rule (and EP's column in Figure 1)
    for plot, columns in (("accuracy_vs_depth.png", 4), ("sensitivity.png", 3)):
        header_bytes = (out / plot).read_bytes()[16:24]
        width, height = (
            int.from_bytes(header_bytes[:4], "big"),
            int.from_bytes(header_bytes[4:], "big"),
        )
        assert (width, height) == (320 * columns, 260 * 4), plot
    assert "## The paper's claims" in text  # judged in test_smoke_renders_the_claims_unjudged

    # EP rows: layered and layer-skipping at every EP depth, after the baselines' rows, each
    # the best-validation epoch
    ep_rows = [row for row in rows if row.startswith("| EP |")]
    assert rows[-len(ep_rows) :] == ep_rows
    expected = [
        f"| EP | {arch} | hardsigmoid | {depth} | 0 | lr=0.015, epoch="
        for arch in ("NN", "skip")
        for depth in protocol.ep.depths
    ]
    assert [row[: len(e)] for row, e in zip(ep_rows, expected, strict=True)] == expected
    records = {
        (r["architecture"], r["depth"]): r
        for r in skipnets.load_records(out / "runs")
        if r["rule"] == "EP"
    }
    for row in ep_rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        record = records[(cells[1], int(cells[3]))]
        assert len(record["grid"]) == 2  # one grid point per epoch
        best = max(record["grid"], key=lambda g: g["valid_accuracy"])
        assert float(cells[6]) == pytest.approx(100 * best["valid_accuracy"], abs=0.006)
        assert float(cells[7]) == pytest.approx(100 * best["test_accuracy"], abs=0.006)
        assert record["valid_examples"] == 287 and record["test_examples"] == 360
    assert "## EP: layered vs layer-skipping" in text
    depth_lines = [line for line in lines if line.startswith(("- Depth 3:", "- Depth 4:"))]
    assert len(depth_lines) == 2 and all("layer-skipping (skip)" in x for x in depth_lines)
    assert any(line.startswith("- Depth 3 -> 4: NN ") for line in lines)
    assert any(
        line.startswith("- In short: with EP the layer-skipping network is") for line in lines
    )
    # EP run directories are scratch space under the output folder; each run file stores the
    # configuration it ran, which is the preset's step (icons nudging, shuffled-once order)
    for record in records.values():
        config = record["config"]
        name = f"EP-{record['architecture']}-hardsigmoid-d{record['depth']}-lr0.015"
        assert (out / "ep_runs" / name / "checkpoint.pt").exists()
        assert from_dict(config) == skipnets.ep_config(
            protocol, record["architecture"], record["depth"]
        )
        assert config["nudged"]["steps"] == 12 and config["train"]["evaluate_test"] is True
        assert config["nudged"]["nudging"] == "icons"
        assert config["train"]["batch_order"] == "shuffled-once"
        assert config["free"]["steps"] == 20 and config["train"]["epochs"] == 2
    # the protocol text states the nudging, batch order and held-out evaluation of the configs
    layered = skipnets.ep_config(protocol, "NN", 3)
    assert (
        f"- Nudging `{layered.nudged.nudging}` (the authors' step: the free update, then the "
        "outputs pulled 2 eps beta towards the target); batch order "
        f"`{layered.train.batch_order}` (fixed batches visited in one order drawn once from "
        "the seed, the journal authors' code)." in lines
    )
    (held_out,) = [line for line in lines if line.startswith("- Held-out evaluation: ")]
    assert layered.train.test_persistent and "validation examples keep particles" in held_out
    assert f"N_free = {layered.free.steps} steps" in held_out
    (given,) = [line for line in lines if line.startswith("- From the presets: ")]
    assert f"N_clamped {layered.nudged.steps}, batch {layered.train.batch_size}," in given
    assert "replaced for this scale: free.steps 20, train.epochs 2." in given


def test_rerun_resumes_without_training(smoke: tuple[Path, float]) -> None:
    results, _ = smoke
    runs = sorted((results.parent / "runs").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in runs]
    removed = runs[0]
    removed.unlink()
    assert skipnets.run("smoke", results.parent, None) == results
    assert [p.stat().st_mtime_ns for p in runs[1:]] == stamps[1:]  # untouched
    assert removed.exists()  # only the missing run was redone


def test_rerun_rebuilds_ep_row_from_its_run_directory(smoke: tuple[Path, float]) -> None:
    """An EP run file that is missing is rebuilt from the finished run directory: no
    training (the checkpoint is untouched), the same grid; other EP runs are skipped."""
    out = smoke[0].parent
    ep_files = sorted((out / "runs").glob("EP-*.json"))
    removed = ep_files[0]
    before = json.loads(removed.read_text())
    checkpoints = sorted((out / "ep_runs").glob("*/checkpoint.pt"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    others = [p.stat().st_mtime_ns for p in ep_files[1:]]
    removed.unlink()
    skipnets.run("smoke", out, None)
    after = json.loads(removed.read_text())
    assert after["grid"] == before["grid"] and after["history"] == before["history"]
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    assert [p.stat().st_mtime_ns for p in ep_files[1:]] == others


def test_ep_configs_derive_from_the_journal_presets(tmp_path: Path) -> None:
    quick = skipnets.PROTOCOLS["quick"]
    replaced = {
        "description",
        "data.dataset",
        "data.split",
        "data.limit",
        "topology.sizes",
        "train.evaluate_test",
        "train.seed",
        "free.steps",
        "free.solver",
        "free.tol",
        "train.epochs",
    }
    for arch, topology in (("NN", "layered"), ("skip", "rewired")):
        config = skipnets.ep_config(quick, arch, 5)
        assert config.topology.sizes == (784, 128, 128, 128, 128, 128, 10)
        assert (config.data.dataset, config.data.split, config.data.limit) == (
            "mnist",
            "icons",
            None,
        )
        assert config.topology.family == topology
        assert (config.update.lr, config.free.eps, config.nudged.eps) == (0.015, 0.5, 0.5)
        assert (config.estimator.kind, config.estimator.beta) == ("random-sign", 1.0)
        assert (config.free.solver, config.free.tol, config.free.steps) == ("fista", 1e-3, 1000)
        assert (config.nudged.steps, config.train.epochs) == (12, 2)
        assert (config.nudged.nudging, config.train.batch_order) == ("icons", "shuffled-once")
        assert config.train.persistent and config.train.evaluate_test
        # every field the scale does not replace is the preset's
        base = cfg.flat_items(from_dict(preset(skipnets.EP_PRESETS[arch])))
        mine = cfg.flat_items(config)
        kept = {k: v for k, v in base.items() if k not in replaced}
        assert kept and {k: mine.get(k) for k in kept} == kept
        assert set(mine) - set(base) <= replaced
    assert skipnets.ep_config(quick, "skip", 3).topology.p == 0.1
    full = skipnets.ep_config(skipnets.PROTOCOLS["full"], "NN", 7)
    assert (full.free.steps, full.nudged.steps, full.train.epochs) == (1000, 12, 100)
    with pytest.raises(ConfigError, match="EP architecture must be one of NN, skip"):
        skipnets.ep_config(quick, "DN", 3)

    # a run directory that holds another configuration is not silently reused
    smoke = skipnets.PROTOCOLS["smoke"]
    other = skipnets.ep_config(smoke, "NN", 3).override(
        {"topology.sizes": [64, 8, 10], "train.epochs": 1}
    )
    start_run(other, tmp_path / "ep_runs" / "EP-NN-hardsigmoid-d3-lr0.015")
    with pytest.raises(ConfigError, match="another configuration; delete it"):
        skipnets.run_ep(smoke, "NN", 3, tmp_path, None)


def test_ep_comparison_states_the_measured_difference() -> None:
    def row(arch: str, depth: int, acc: float) -> skipnets.Row:
        return skipnets.Row("EP", arch, "hardsigmoid", depth, {}, acc, acc)

    rows = [row("NN", 3, 0.95), row("skip", 3, 0.96), row("NN", 5, 0.90), row("skip", 5, 0.94)]
    lines = skipnets.ep_comparison(rows, 10_000)
    assert lines[0].startswith("- Depth 3: test accuracy layered (NN) 95.00%, layer-skipping")
    assert "(skip - NN = +1.00 points)" in lines[0]
    assert lines[2] == (
        "- Depth 3 -> 5: NN 95.00 -> 90.00% (-5.00 points), skip 96.00 -> 94.00% (-2.00 points)."
    )
    assert "ahead of the layered one at every depth measured" in lines[3]
    rows[1] = row("skip", 3, 0.93)
    assert (
        "ahead of the layered one at depth 5 and behind at depth 3"
        in (skipnets.ep_comparison(rows)[-1])
    )
    assert skipnets.ep_comparison(rows[:1]) == []


def test_extra_rows_from_other_rules_join_the_table(smoke: tuple[Path, float]) -> None:
    """The table is generic: a run file of the same schema (e.g. EP) becomes one more row."""
    records = skipnets.load_records(smoke[0].parent / "runs")
    extra = {
        "rule": "EP",
        "architecture": "DN",
        "activation": "sigmoid",
        "depth": 3,
        "grid": [
            {"hyperparameters": {"beta": 1.0}, "valid_accuracy": 0.5, "test_accuracy": 0.4},
            {"hyperparameters": {"beta": 0.5}, "valid_accuracy": 0.6, "test_accuracy": 0.55},
        ],
    }
    rows = skipnets.collect_rows([*records, json.loads(json.dumps(extra))])
    (ep,) = [r for r in rows if (r.rule, r.architecture) == ("EP", "DN")]
    assert ep.hyperparameters == {"beta": 0.5} and ep.test_accuracy == 0.55
    assert "| EP | DN | sigmoid | 3 | 0 | beta=0.5 | 60.00 | 55.00 |" in skipnets.format_table(rows)


def test_smoke_renders_the_claims_unjudged(smoke: tuple[Path, float]) -> None:
    """At smoke scale every claim is rendered with what was measured, not judged."""
    text = smoke[0].read_text()
    assert claim_verdicts(text) == [NOT_YET] * len(skipnets.CLAIMS)
    section = text.split("## The paper's claims")[1].split("Context:")[0]
    assert "at scale `smoke` only: FA: relu, depth 5 -> 6: DN " in section
    assert "Im, Patil & Branson" in text and "seed 003" not in text


def test_unknown_scale_is_a_one_line_config_error(tmp_path: Path) -> None:
    expected = "skipnets scale must be one of smoke, quick, mlp-budget, paper-mlp, full"
    with pytest.raises(ConfigError, match=expected):
        skipnets.run("huge", tmp_path, None)
    assert experiment("skipnets") is skipnets
    assert skipnets.SCALES == tuple(skipnets.PROTOCOLS)


def test_results_name_the_runs_without_a_result(smoke: tuple[Path, float], one_thread) -> None:
    results, _ = smoke
    protocol = skipnets.PROTOCOLS["smoke"]
    records = [
        r for r in skipnets.load_records(results.parent / "runs") if r["rule"] != skipnets.EP_RULE
    ]
    assert skipnets.coverage_lines(protocol, records) == []
    assert all(r["threads"] == 1 for r in records)  # the module sets one torch thread
    # each file names the processor, torch build and threads (here one) that computed it
    assert {r["arithmetic"] for r in records} == {describe(torch.device("cpu"))}
    dropped = next(r for r in records if r["rule"] == "FA" and r["architecture"] == "DN")
    kept = [r for r in records if r is not dropped]
    (line,) = skipnets.coverage_lines(protocol, kept)
    lr = dropped["grid"][0]["hyperparameters"]["learning_rate"]
    name = f"FA-DN-{dropped['activation']}-d{dropped['depth']}-lr{lr:g}"
    total = len(records)
    assert line.startswith(f"- Without a result (not run, interrupted or failed): 1 of {total} ")
    assert f"({name})" in line
    # its configuration has runs at other rates? then it is named as incompletely selected
    others = [r for r in kept if skipnets.record_key(r) == skipnets.record_key(dropped)]
    assert ("incomplete learning-rate grid" in line) == bool(others)


def test_an_interrupted_baseline_run_goes_on_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A baseline task stopped by a crash leaves its training state in
    ``baseline_checkpoints/``; the rerun goes on from it and writes the uninterrupted run's
    file (wall and CPU times aside), then removes the checkpoint."""
    run = {"rule": "FA", "architecture": "DN", "activation": "sigmoid", "depth": 3}
    args = {"scale": "smoke", **run, "learning_rate": 1e-2, "data_dir": None}
    name = skipnets.run_name(*run.values(), 1e-2)
    make_rule, calls = skipnets.training.make_rule, []

    def counted(*a, crash_after: int | None = None, **kw):
        rule = make_rule(*a, **kw)
        calls.append(0)
        compute = rule.compute_gradients

        def step(x, y):
            if crash_after is not None and calls[-1] >= crash_after:
                raise KeyboardInterrupt
            calls[-1] += 1
            return compute(x, y)

        rule.compute_gradients = step
        return rule

    monkeypatch.setattr(skipnets.training, "make_rule", counted)
    skipnets.train_baseline(**args, out=str(tmp_path / "whole"))
    whole = json.loads((tmp_path / "whole" / "runs" / name).read_text())

    out = tmp_path / "interrupted"
    # 9 batches an epoch, an evaluation every 1,150 examples: 30 batches are past three
    monkeypatch.setattr(
        skipnets.training, "make_rule", lambda *a, **kw: counted(*a, crash_after=30, **kw)
    )
    with pytest.raises(KeyboardInterrupt):
        skipnets.train_baseline(**args, out=str(out))
    checkpoint = out / skipnets.CHECKPOINT_DIR / name.replace(".json", ".pt")
    assert checkpoint.exists() and not (out / "runs" / name).exists()
    before = torch.load(checkpoint, weights_only=True)["trainer"]["batches"]
    monkeypatch.setattr(skipnets.training, "make_rule", counted)
    skipnets.train_baseline(**args, out=str(out))
    assert 0 < before < 30 and calls[-1] == calls[0] - before  # went on, not from the start
    resumed = json.loads((out / "runs" / name).read_text())
    timing = ("seconds", "cpu_seconds")
    assert {k: v for k, v in resumed.items() if k not in timing} == {
        k: v for k, v in whole.items() if k not in timing
    }
    assert not checkpoint.exists()
    # a checkpoint left by a stop between the run file and its removal goes on the next call
    checkpoint.write_bytes(b"left over")
    skipnets.train_baseline(**args, out=str(out))
    assert not checkpoint.exists() and json.loads((out / "runs" / name).read_text()) == resumed


def test_seeds_run_at_the_shallowest_and_deepest_depths_under_their_own_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scale with seeds (0, 1): seed 1 runs at depths 1 and 3 only, its files end in
    ``-s1`` (seed 0 keeps the one-seed names), each seed selects its own grid point, and
    results.md and the claims give the mean and [min-max] over seeds."""
    tiny = skipnets.Protocol(
        dataset="digits",
        train_limit=128,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN"),
        depths={"sigmoid": (1, 2, 3)},
        learning_rates=skipnets.same_rates((1e-2,), (1e-2,)),
        early_stop_starts={"mlp": (128, 256)},
        max_examples={"mlp": 256},
        eval_every=128,
        patience=1,
        seeds=(0, 1),
    )
    with pytest.raises(ConfigError, match=r"Protocol.seeds must be distinct seeds, got \(0, 0\)"):
        dataclasses.replace(tiny, seeds=(0, 0))
    monkeypatch.setitem(skipnets.PROTOCOLS, "tiny", tiny)
    assert tiny.seeds_at("sigmoid", 2) == (0,) and tiny.seeds_at("sigmoid", 3) == (0, 1)
    results = skipnets.run("tiny", tmp_path, None)
    names = {p.name for p in (tmp_path / "runs").glob("*.json")}
    expected = {"BP-linear-none-d0-lr0.01.json"} | {
        f"{rule}-{arch}-sigmoid-d{depth}-lr0.01{suffix}.json"
        for rule in skipnets.RULE_NAMES
        for arch in ("NN", "DN")
        for depth, suffix in ((1, ""), (2, ""), (3, ""), (1, "-s1"), (3, "-s1"))
    }
    assert names == expected
    records = {p.name: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")}
    assert records["FA-NN-sigmoid-d3-lr0.01-s1.json"]["seed"] == 1
    assert records["FA-NN-sigmoid-d3-lr0.01.json"]["seed"] == 0
    assert (
        records["FA-NN-sigmoid-d3-lr0.01-s1.json"]["history"]
        != records["FA-NN-sigmoid-d3-lr0.01.json"]["history"]
    )

    rows = skipnets.collect_rows(records.values())
    fa = [r for r in rows if (r.rule, r.architecture, r.depth) == ("FA", "DN", 3)]
    assert [r.seed for r in fa] == [0, 1]
    for row in fa:  # each seed's own best-validation grid point
        grid = records[skipnets.run_name("FA", "DN", "sigmoid", 3, 1e-2, row.seed)]["grid"]
        assert row.test_accuracy == max(grid, key=lambda g: g["valid_accuracy"])["test_accuracy"]
    mean = 100 * (fa[0].test_accuracy + fa[1].test_accuracy) / 2
    low, high = sorted(100 * r.test_accuracy for r in fa)
    text = results.read_text()
    assert "- Seeds 0, 1 at the shallowest and deepest depths (sigmoid 1 and 3), seed 0" in text
    assert f"| FA | DN | sigmoid | 3 | 2 | {mean:.2f} | {low:.2f} | {high:.2f} |" in text
    assert "| FA | DN | sigmoid | 2 | " not in text.split("Spread over seeds")[1]  # one seed
    section = text.split("## The paper's claims")[1].split("Context:")[0]
    assert "FA: sigmoid, depth 1 -> 3: DN " in section
    assert f"-> {mean:.2f} [{low:.2f}-{high:.2f}]% (BP " in section
    assert "means over seeds of the per-seed best test accuracy, [min-max] over seeds" in section


def test_paper_mlp_reuses_the_committed_mlp_budget_runs(capsys: pytest.CaptureFixture) -> None:
    """The committed `mlp-budget` run files are `paper-mlp`'s seed-0 runs at the shallowest
    and deepest depths: same names, same settings, so a rerun skips them; `paper-mlp` adds
    the middle depths (seed 0) and seeds 1-2 at the ends."""
    committed = Path(__file__).parent.parent / "docs" / "results" / "skipnets"
    budget, paper = skipnets.PROTOCOLS["mlp-budget"], skipnets.PROTOCOLS["paper-mlp"]
    planned = {skipnets.run_name(*run): run for run in skipnets.planned_runs(paper)}
    budget_names = {skipnets.run_name(*run) for run in skipnets.planned_runs(budget)}
    records = [
        r
        for path in sorted((committed / "runs").glob("*.json"))
        if path.name in budget_names
        for r in [json.loads(path.read_text())]
    ]
    assert len(records) == 75 == len(budget_names)  # every mlp-budget run is committed
    for record in records:
        lr = record["grid"][0]["hyperparameters"]["learning_rate"]
        key = (record["architecture"], record["activation"], record["depth"], lr)
        assert skipnets.run_name(record["rule"], *key) in planned
        assert skipnets.run_settings(paper, *key) == skipnets.run_settings(budget, *key)
    assert paper.depths == {"sigmoid": (3, 4, 5, 6, 7), "relu": (5, 6, 7, 8, 9, 10)}
    by_seed = {
        s: {r[2:4] for r in planned.values() if r[5] == s and r[1] != "linear"} for s in (0, 1, 2)
    }
    ends = {(a, d) for a, d in by_seed[0] if d in (min(paper.depths[a]), max(paper.depths[a]))}
    assert (
        by_seed[1]
        == by_seed[2]
        == ends
        == {("sigmoid", 3), ("sigmoid", 7), ("relu", 5), ("relu", 10)}
    )
    assert len(planned) == 3 + 2 * 3 * 3 * (5 + 6) + 2 * 2 * 3 * 3 * 4  # 345
    finished = sum(name in planned for name in os.listdir(committed / "runs"))
    status = ["reproduce", "skipnets", "--out", str(committed), "--status"]
    assert main([*status, "--scale", "paper-mlp"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    planned_line = f"345 baseline runs planned (seeds 0, 1, 2), {finished} finished"
    assert f"{planned_line}, {345 - finished} to run" in first
    assert main([*status, "--scale", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eqprop: error: experiment 'skipnets' has")


def test_claims_are_per_family_activation_and_rule() -> None:
    """Figure 1's claims per rule (FA, DTP), Figure 2's per rule (BP, FA, DTP), each per
    family and activation; a family without runs is not yet measured."""
    assert len(skipnets.CLAIMS) == 2 * 2 * (2 + 3)
    mlp = skipnets.DenseKeepsUp("FA", "MLP", "sigmoid")
    conv = skipnets.DenseKeepsUp("FA", "Conv", "sigmoid")
    records = [
        {"rule": rule, "architecture": arch, "activation": "sigmoid", "depth": d, "grid": [point]}
        for rule in ("BP", "FA")
        for arch in ("NN", "DN")
        for d in (3, 7)
        for point in [{"hyperparameters": {}, "valid_accuracy": 0.9, "test_accuracy": 0.9}]
    ]
    assert mlp(records).verdict == "does not hold"  # the plain network does not degrade
    assert conv(records) == Verdict(
        NOT_YET, "FA: no Conv sigmoid plain/dense pair measured at two depths"
    )
    fig2 = skipnets.DenseLessSensitive("FA", "Conv", "relu")(records)
    assert fig2.verdict == NOT_YET
    budget = [c for c in skipnets.CLAIMS if c.check == conv]
    assert len(budget) == 1 and budget[0].at_scale == ("full",)


def test_cpu_estimate_of_a_run_interpolates_the_finished_runs_in_depth() -> None:
    done = {("FA", "NN", "sigmoid", 3): [10.0, 20.0], ("FA", "NN", "sigmoid", 7): [55.0]}

    def estimate(arch: str, depth: int) -> float | None:
        return skipnets.estimate_cpu(("FA", arch, "sigmoid", depth, 1e-3, 1), done)

    assert estimate("NN", 3) == 15.0  # the mean at its depth
    assert estimate("NN", 5) == 35.0  # halfway between 15 (depth 3) and 55 (depth 7)
    assert estimate("NN", 9) == 55.0 and estimate("NN", 2) == 15.0  # the nearest depth
    assert estimate("DN", 5) is None  # no finished run of its architecture


def test_an_ep_run_file_of_another_scale_is_refused_not_reused(tmp_path: Path) -> None:
    """The scales' EP rows share names (`EP-NN-hardsigmoid-d3-lr0.015.json`): the committed
    file is `mlp-budget`'s short-budget run, which `full` must not count as its own."""
    committed = Path(__file__).parent.parent / "docs" / "results" / "skipnets"
    budget = skipnets.pending_tasks(skipnets.PROTOCOLS["mlp-budget"], "mlp-budget", committed, None)
    assert budget == []  # every committed file is the scale's own
    with pytest.raises(ConfigError, match=r"EP-NN-hardsigmoid-d3-lr0\.015\.json holds an EP run"):
        skipnets.pending_tasks(skipnets.PROTOCOLS["full"], "full", committed, None)


def test_a_baseline_run_file_of_another_scale_is_refused_not_reused(
    smoke: tuple[Path, float],
) -> None:
    """`quick` shares run names with `mlp-budget` but trains on a shorter budget: the
    committed `mlp-budget` files must not count as its runs."""
    committed = Path(__file__).parent.parent / "docs" / "results" / "skipnets"
    with pytest.raises(ConfigError, match="holds a run of other settings than scale 'quick'"):
        skipnets.pending_tasks(skipnets.PROTOCOLS["quick"], "quick", committed, None)
    results, _ = smoke
    record = json.loads(next((results.parent / "runs").glob("BP-*.json")).read_text())
    settings = skipnets.run_settings(
        skipnets.PROTOCOLS["smoke"],
        record["architecture"],
        record["activation"],
        record["depth"],
        record["grid"][0]["hyperparameters"]["learning_rate"],
        record["seed"],
    )
    assert record["settings"] == skipnets.settings_record(settings)


def committed_scale(committed: Path) -> str:
    """The scale of the committed skipnets stage (its experiment.toml)."""
    return cfg.load_file(committed / "experiment.toml")["scale"]


def reproduce(scale: str, out: Path, *flags: str) -> int:
    """``eqprop reproduce skipnets --scale SCALE --out OUT FLAGS...``; its exit status."""
    return main(["reproduce", "skipnets", "--scale", scale, "--out", str(out), *flags])


def test_results_only_rewrites_the_committed_results_from_their_run_files(
    tmp_path: Path,
) -> None:
    committed = Path(__file__).parent.parent / "docs" / "results" / "skipnets"
    shutil.copytree(committed / "runs", tmp_path / "runs")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert reproduce(committed_scale(committed), tmp_path, "--results-only") == 0
    assert (tmp_path / "results.md").read_text() == (committed / "results.md").read_text()
    for figure in ("accuracy_vs_depth.png", "sensitivity.png"):
        assert (tmp_path / figure).read_bytes() == (committed / figure).read_bytes()
    after = sorted(p.name for p in tmp_path.rglob("*"))  # nothing trained: no run added
    assert after == sorted([*before, "results.md", "accuracy_vs_depth.png", "sensitivity.png"])


def test_publish_copies_a_stage_and_indexes_its_claims(tmp_path: Path) -> None:
    committed = Path(__file__).parent.parent / "docs" / "results" / "skipnets"
    out, dest = tmp_path / "out", tmp_path / "results" / "skipnets"
    shutil.copytree(committed / "runs", out / "runs")
    assert reproduce(committed_scale(committed), out, "--publish", str(dest)) == 0
    assert (dest / "results.md").read_text() == (committed / "results.md").read_text()
    assert sorted(p.name for p in (dest / "runs").iterdir()) == sorted(
        p.name for p in (committed / "runs").iterdir()
    )
    assert (dest / "experiment.toml").read_text() == (committed / "experiment.toml").read_text()
    index = (tmp_path / "results" / "README.md").read_text()
    assert index.count("[skipnets](skipnets/results.md)") == len(skipnets.CLAIMS)


def test_status_prints_the_plan_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    assert reproduce("smoke", out, "--status") == 0
    protocol = skipnets.PROTOCOLS["smoke"]
    baseline = len(skipnets.planned_runs(protocol))
    ep = len(skipnets.planned_ep_runs(protocol))
    assert capsys.readouterr().out == (
        f"skipnets smoke in {out}: {baseline} baseline runs planned (seeds 0), 0 finished, "
        f"{baseline} to run; {ep} EP runs planned, {ep} to run.\n"
        f"Estimated CPU time of the 0 remaining baseline runs with an estimate: 0 s (0.0 CPU "
        "hours, one thread per run; from the CPU seconds of the finished runs of the same rule, "
        f"architecture and activation, interpolated in depth); {baseline} runs without an "
        "estimate (no finished run of their rule, architecture and activation).\n"
    )
    assert not out.exists()


def test_results_only_before_any_run_lists_every_run_as_without_a_result(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "s"
    out.mkdir()
    assert reproduce("smoke", out, "--results-only") == 0
    assert capsys.readouterr().out == f"{out / 'results.md'}\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy_vs_depth.png",
        "results.md",
        "sensitivity.png",
    ]  # no run trained, no run directory made
    text = (out / "results.md").read_text()
    planned = len(skipnets.planned_runs(skipnets.PROTOCOLS["smoke"]))
    assert f"- Without a result (not run, interrupted or failed): {planned} of {planned} " in text
    assert "- 0 EP runs; training time summed over runs 0 s wall" in text
    assert claim_verdicts(text) == [NOT_YET] * len(skipnets.CLAIMS)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--publish", "dest"], "holds no run files; nothing to publish"),
        (["--publish", "afile"], "--publish afile is a file, not a directory"),
        (["--set", "train.epochs=1"], "experiment 'skipnets' has no --set"),
        (["--device", "cpu", "--status"], "experiment 'skipnets' has no --device"),
    ],
)
def test_refused_flags_are_one_line_and_write_nothing(
    tmp_path: Path, capsys, monkeypatch, flags: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("x")
    assert reproduce("smoke", tmp_path / "s", *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eqprop: error: ") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("publish", [False, True])
def test_a_run_file_of_another_scale_is_refused_before_writing(
    tmp_path: Path, capsys, publish: bool
) -> None:
    """The committed files are `paper-mlp`'s; `quick` declares other settings for the same
    names: --results-only and --publish stop with one line, and neither the output directory
    nor DEST is written."""
    committed = Path(__file__).parent.parent / "docs" / "results" / "skipnets"
    out, dest = tmp_path / "out", tmp_path / "dest"
    shutil.copytree(committed / "runs", out / "runs")
    flags = ["--publish", str(dest)] if publish else ["--results-only"]
    assert reproduce("quick", out, *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a run of other settings than scale 'quick'" in err
    assert sorted(p.name for p in out.iterdir()) == ["runs"] and not dest.exists()


class _ClosedPipe(io.StringIO):
    """A stdout whose reader went away (as ``| head -0``), on descriptor ``fd``."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def write(self, text: str) -> int:
        raise BrokenPipeError

    def fileno(self) -> int:
        return self.fd


def test_a_closed_pipe_ends_the_status_quietly(tmp_path: Path, monkeypatch, capsys) -> None:
    """``eqprop reproduce skipnets --status | head -0``: exit status 141, nothing on stderr."""
    with open(tmp_path / "stdout", "w") as stdout:  # the descriptor main points at /dev/null
        monkeypatch.setattr(sys, "stdout", _ClosedPipe(stdout.fileno()))
        assert reproduce("smoke", tmp_path / "s", "--status") == 141
    assert capsys.readouterr().err == ""


def test_the_mlp_scales_draw_the_papers_convnet_panels_empty_saying_why():
    """Figures 1b and 2b (ConvNet vs DenseConvNet) are panels of the MLP-only scales too,
    empty, with the reason they were not run."""
    from eqprop.experiments.skipnets import figures
    from eqprop.experiments.skipnets.protocol import CONV_NOT_RUN, PROTOCOLS

    protocol = PROTOCOLS["paper-mlp"]
    assert figures._panel_rows(protocol)[-2:] == [("Conv", "sigmoid"), ("Conv", "relu")]
    _, panels = figures._panels(protocol, ["BP", "FA", "DTP"], "t")
    conv = [ax for (family, _, _), ax in panels.items() if family == "Conv"]
    assert len(conv) == 6
    for ax in conv:
        (text,) = ax.texts
        assert " ".join(text.get_text().split()) == (
            f"not run at this scale: {CONV_NOT_RUN['Conv']}"
        )
    assert all(not ax.texts for (family, _, _), ax in panels.items() if family == "MLP")
    _, full = figures._panels(PROTOCOLS["full"], ["BP", "FA", "DTP"], "t")  # plans ConvNets
    assert {f for f, _, _ in full} == {"MLP", "Conv"} and not any(ax.texts for ax in full.values())


def test_the_mlp_scales_list_the_papers_convnet_runs_as_not_run():
    """results.md of an MLP-only scale names the paper's ConvNet grid it leaves out, by count
    (3 rules x 2 architectures x 3 rates x 11 depths at seed 0, plus seeds 1 and 2 at the 4
    end depths: 198 + 144), and why; the full scale, which plans them, names none."""
    from eqprop.experiments.skipnets.protocol import CONV_NOT_RUN, PROTOCOLS
    from eqprop.experiments.skipnets.results import not_run_lines

    (line,) = not_run_lines(PROTOCOLS["paper-mlp"])
    assert line.startswith(
        "- Not run at this scale: the paper's Conv grid (ConvNet vs DenseConvNet)"
    )
    assert "the 342 runs of the `full` scale" in line
    assert "sigmoid depths 3-7; relu depths 5-10" in line
    assert line.endswith(f"Why: {CONV_NOT_RUN['Conv']}.")
    assert not_run_lines(PROTOCOLS["full"]) == []
