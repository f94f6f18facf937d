"""``eqprop reproduce`` with departures from the paper's protocol (``--set``, ``--fast``) and
``--status``: what each run's config becomes, how results.md names it, and what is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from md_tables import claim_verdicts

from eqprop import config as cfg
from eqprop.cli import main
from eqprop.errors import ConfigError
from eqprop.experiments import EXPERIMENTS, fig3
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import NOT_YET
from eqprop.experiments.departures import FAST_FISTA, FAST_SOR, Departures
from eqprop.metrics import held_out_error
from eqprop.runs import read_config, read_metrics, start_run, train_run

SOLVERS_FULL = Path(__file__).resolve().parents[1] / "docs/results/solvers-full/runs"


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch, one_thread):
    """One torch thread (conftest), and no run selection from the environment."""
    monkeypatch.delenv(pr.ONLY_ENV, raising=False)


def tree(path: Path) -> dict[str, str]:
    """SHA-256 of every file under ``path``."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("preset", "fast"),
    [
        ("icons-skip", FAST_FISTA),  # network C: skip edges between hidden layers
        ("icons-layered", FAST_SOR),  # network B
        ("icons-layered-perlayer", FAST_SOR),  # network A
        ("frontiers-skip-deep", FAST_FISTA),  # the journal's rewired 784-100x5-10
        ("frontiers-layered-deep", FAST_SOR),
    ],
)
def test_fast_resolves_to_the_validated_solver_of_each_topology(preset, fast):
    config = Departures(fast=True).apply(cfg.from_dict(cfg.preset(preset)))
    free = cfg.flat_items(config)
    assert {key: free[key] for key in fast} == fast
    # nothing else changes
    assert pr.differing_keys(config, cfg.from_dict(cfg.preset(preset))) == sorted(
        k for k in fast if cfg.flat_items(cfg.from_dict(cfg.preset(preset))).get(k) != fast[k]
    )


@pytest.mark.parametrize(("network", "validated"), [("C", "C-fista-seed0"), ("B", "B-sor-seed0")])
def test_fast_is_exactly_what_the_full_scale_solver_study_validated(network, validated):
    """The free phase of --fast equals that of the committed runs of docs/results/solvers-full."""
    if not (SOLVERS_FULL / validated).is_dir():
        pytest.skip(f"{SOLVERS_FULL / validated} is not in this checkout")
    ran = read_config(SOLVERS_FULL / validated).free
    fast = Departures(fast=True).apply(pr.paper_config(network)).free
    assert fast == ran


def test_set_and_fast_change_every_run_and_are_named_in_results(tmp_path, capsys):
    out = tmp_path / "fig3"
    args = ["reproduce", "fig3", "--out", str(out), "--no-ray", "--fast"]
    args += ["--set", "train.epochs=1", "--set", "update.lr=0.05"]
    assert main(args) == 0, capsys.readouterr().err
    configs = {name: read_config(out / name) for name in fig3.ORDER}
    assert all(c.train.epochs == 1 and c.update.lr == 0.05 for c in configs.values())
    assert all(len(read_metrics(out / name)) == 1 for name in fig3.ORDER)
    # the smoke networks of A and B are layered (SOR), C has skip edges (FISTA)
    assert {n: c.free.solver for n, c in configs.items()} == {
        "C": "fista",
        "A": "sor",
        "A-authors": "sor",
        "B": "sor",
    }
    text = (out / "results.md").read_text()
    top = text.split("## Protocol", 1)[1].split("\n\n")[1]
    assert top.startswith("**Departures from the paper's protocol, asked on the command line.**")
    assert "projected SOR (factor 1.7) for `A`, `A-authors`, `B`" in top
    assert "FISTA (step 0.5) for `C`" in top
    assert "`train.epochs=1`, `update.lr=0.05`" in top


def test_a_run_directory_of_another_protocol_is_one_line_naming_the_keys(tmp_path, capsys):
    declared = dict(fig3.planned("smoke"))
    out = tmp_path / "fig3"
    start_run(declared["B"].override({"free.eps": 0.3, "update.lr": 0.07}), out / "B")
    before = tree(out)
    assert main(["reproduce", "fig3", "--out", str(out), "--no-ray", "--fast"]) == 2
    line = one_error_line(capsys)
    assert f"{out / 'B'} holds a run with" in line
    for key in ("free.eps = 0.3", "free.solver = 'fixed'", "update.lr = 0.07"):
        assert key in line, line
    assert "free.eps = 1.7" in line and "free.solver = 'sor'" in line
    assert tree(out) == before  # not even C, the first run in order, was started
    assert sorted(p.name for p in out.iterdir()) == ["B"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "free.tol=abc"], "free.tol must be a number, got 'abc'"),
        (["--set", "nokey"], "--set expects key=value, got 'nokey'"),
        (["--fast", "--set", "free.eps=-1"], "eps must be a number > 0"),
        (["--set", "train.no_such_key=1"], "no_such_key"),
    ],
)
def test_bad_set_values_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "fig3"
    assert main(["reproduce", "fig3", "--out", str(out), "--no-ray", *args]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_experiments_without_ep_runs_refuse_departures_in_one_line(tmp_path, capsys):
    assert main(["reproduce", "skipnets", "--out", str(tmp_path / "s"), "--fast"]) == 2
    line = one_error_line(capsys)
    assert "experiment 'skipnets' has no --fast" in line and "fig3" in line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("flag", ["--status", "--results-only"])
def test_a_refused_progress_flag_names_the_experiments_that_have_it(tmp_path, capsys, flag):
    """smallworld has no --status or --results-only; skipnets (a study with its own run) has
    both, and is named beside the experiments of the shared driver."""
    assert main(["reproduce", "smallworld", "--out", str(tmp_path / "w"), flag]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"eqprop: error: experiment 'smallworld' has no {flag} ")
    have = line.split("these have: ")[1].split(", ")
    assert "skipnets" in have and "fig3" in have
    assert "smallworld" not in have and "deep-logic" not in have
    assert not (tmp_path / "w").exists()


def test_reproduce_help_lists_every_experiment(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapped (argparse breaks at hyphens)
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert f"one of: {', '.join(sorted(EXPERIMENTS))}" in text


def test_status_of_a_half_finished_experiment(tmp_path, capsys):
    declared = dict(fig3.planned("smoke"))  # 3 epochs each
    out = tmp_path / "fig3"
    start_run(declared["C"].override({"train.epochs": 2}), out / "C")
    train_run(out / "C")  # C: 2 of 3 epochs; B: started, nothing finished
    start_run(declared["B"], out / "B")
    start_run(declared["A"].override({"free.steps": 7}), out / "A")  # another protocol
    records = read_metrics(out / "C")
    before = tree(out)
    capsys.readouterr()  # what the training printed
    assert main(["reproduce", "fig3", "--out", str(out), "--status"]) == 0
    text = capsys.readouterr().out
    assert tree(out) == before  # nothing trained or written
    rows = {line.split()[0]: line for line in text.splitlines()[2:6]}
    c = rows["C"].split()
    assert c[:5] == [
        "C",
        "fixed",
        "2/3",
        f"{100 * records[-1]['train_error']:.2f}%",
        f"{100 * held_out_error(records[-1]):.2f}%",
    ]
    per_epoch = (records[1]["wall_time"]) / 2
    assert float(c[5]) == pytest.approx(per_epoch, abs=0.5)
    assert rows["C"].endswith("stopped")
    assert rows["B"].split()[2] == "0/3" and rows["B"].endswith("stopped")
    assert rows["A"].endswith("holds another protocol (free.steps)")
    assert rows["A-authors"].endswith("not started")
    assert text.splitlines()[-1].startswith("0 of 4 runs complete; about ")
    # with departures the declared runs change: C now holds another protocol
    assert main(["reproduce", "fig3", "--out", str(out), "--status", "--fast"]) == 0
    text = capsys.readouterr().out
    assert "fig3, scale smoke --fast" in text.splitlines()[0]
    c_line = next(line for line in text.splitlines() if line.startswith("C "))
    assert "fista" in c_line and "holds another protocol (free.eps, free.solver" not in c_line
    assert c_line.endswith("holds another protocol (free.solver, free.steps, free.tol)")


def test_status_says_when_a_run_is_training_now(tmp_path):
    import fcntl
    import os

    out = tmp_path / "fig3"
    start_run(dict(fig3.planned("smoke"))["C"], out / "C")
    fd = os.open(out / "C", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as train_run holds it
        status = pr.run_status("C", dict(fig3.planned("smoke"))["C"], out / "C")
    finally:
        os.close(fd)
    assert status.state == "training"
    assert pr.run_status("C", dict(fig3.planned("smoke"))["C"], out / "C").state == "stopped"


def test_departures_parse_their_sets_when_built():
    with pytest.raises(ConfigError, match="--set expects key=value"):
        Departures(("free.tol",))
    assert not Departures() and Departures(fast=True) and Departures(("a=1",))
    assert Departures().lines([]) == []


def test_journal_smoke_runs_four_networks_and_compares_them_per_dataset(tmp_path, capsys):
    from eqprop.experiments import journal

    out = tmp_path / "journal"
    assert main(["reproduce", "journal", "--out", str(out), "--no-ray"]) == 0
    names = [name for name, _ in journal.planned("smoke")]
    assert names == ["layered-mnist", "skip-mnist", "layered-fashion", "skip-fashion"]
    for name in names:
        assert [r["epoch"] for r in read_metrics(out / name)] == [1, 2, 3]
    full = dict(journal.planned("full"))
    assert full["skip-fashion"].data.dataset == "fashion-mnist"
    assert full["skip-fashion"].topology.family == "rewired"
    assert full["layered-mnist"].train.epochs == 100 and full["layered-mnist"].update.lr == 0.015
    text = (out / "results.md").read_text()
    records = read_metrics(out / "layered-mnist")
    mean_train = sum(r["train_error"] for r in records) / 3
    line = next(x for x in text.splitlines() if x.startswith("- mnist, epochs 1-3 (mean):"))
    assert f"training error {100 * mean_train:.2f}% layered" in line
    assert claim_verdicts(text) == [NOT_YET] * len(journal.CLAIMS)  # smoke: not the paper's
    for png in ("errors.png", "layer_rates.png"):
        assert 0 < (out / png).stat().st_size <= pr.MAX_PNG_BYTES


def test_conv_ep_smoke_trains_both_conv_presets_and_judges_them_by_the_anchors(tmp_path):
    from types import SimpleNamespace

    from eqprop.experiments import conv_ep
    from eqprop.experiments.claims import FAILS, HOLDS

    out = tmp_path / "conv-ep"
    assert main(["reproduce", "conv-ep", "--out", str(out), "--no-ray"]) == 0
    for name, config in conv_ep.planned("smoke"):
        assert config.topology.family == "conv" and config.data.dataset == "digits"
        assert config.topology.input_shape == (1, 8, 8)
        assert [r["epoch"] for r in read_metrics(out / name)] == [1, 2]
    full = dict(conv_ep.planned("full"))
    assert (
        full["fashion"].data.dataset == "fashion-mnist" and full["mnist"].data.split == "standard"
    )
    assert full["mnist"].topology.channels == (16, 32) and full["mnist"].train.epochs == 10
    text = (out / "results.md").read_text()
    assert claim_verdicts(text) == [NOT_YET] * len(conv_ep.CLAIMS)  # smoke: not the anchors'
    assert "| mnist | 2/2 |" in text and "Lin, Bal & Sengupta 2024" in text
    assert 0 < (out / "errors.png").stat().st_size <= pr.MAX_PNG_BYTES

    def runs(test_errors):  # hand-built metrics of a full-scale mnist run
        records = [{"epoch": i + 1, "test_error": e} for i, e in enumerate(test_errors)]
        return {"mnist": SimpleNamespace(records=records, epochs_done=len(records))}

    mnist = conv_ep.CLAIMS[0]
    assert mnist.check(runs([0.05, 0.014])).verdict == HOLDS  # 1.4% <= 1% + 0.5 points
    assert mnist.check(runs([0.05] * 10)).verdict == FAILS
    assert mnist.check(runs([0.05] * 9)).verdict == NOT_YET


def test_fast_on_a_conv_network_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "conv-ep"
    assert main(["reproduce", "conv-ep", "--fast", "--out", str(out), "--no-ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a conv network has none" in err
    assert not out.exists()


def test_results_only_renders_what_the_runs_hold_and_trains_nothing(tmp_path, capsys):
    declared = dict(fig3.planned("smoke"))
    out = tmp_path / "fig3"
    start_run(declared["C"].override({"train.epochs": 2}), out / "C")
    train_run(out / "C")
    before = tree(out)
    assert main(["reproduce", "fig3", "--out", str(out), "--results-only"]) == 0
    after = tree(out)
    assert {k: v for k, v in after.items() if k.startswith("C/")} == before  # C untouched
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["C"]  # nothing started
    text = (out / "results.md").read_text()
    assert "- `C` (C/): 2/3 epochs, not trained (results only)" in text
    assert "- `A` (A/): 0/3 epochs, not trained (results only)" in text
    assert (out / "errors.png").stat().st_size > 0


def test_publish_copies_a_stage_and_generates_the_claims_index(tmp_path, capsys):
    from eqprop.experiments import report

    declared = dict(fig3.planned("smoke"))
    out, docs = tmp_path / "fig3", tmp_path / "docs"
    start_run(declared["C"].override({"train.epochs": 2}), out / "C")
    train_run(out / "C")
    args = ["reproduce", "fig3", "--out", str(out), "--publish", str(docs / "fig3-smoke")]
    assert main(args) == 0, capsys.readouterr().err
    stage = docs / "fig3-smoke"
    assert sorted(p.name for p in (stage / "runs").iterdir()) == ["C"]  # the runs that exist
    assert sorted(p.name for p in (stage / "runs" / "C").iterdir()) == [
        "config.toml",
        "metrics.jsonl",
    ]
    assert (stage / "runs/C/metrics.jsonl").read_bytes() == (out / "C/metrics.jsonl").read_bytes()
    assert {"results.md", "errors.png", "experiment.toml"} <= {p.name for p in stage.iterdir()}
    index = (docs / "README.md").read_text()
    rows = [line for line in index.splitlines() if line.endswith("(fig3-smoke/results.md) |")]
    assert len(rows) == len(fig3.CLAIMS)
    assert all("**not yet measured**" in row for row in rows)  # smoke: not the paper's scale
    assert "`smoke`; epochs C 2/3, A 0/3, A-authors 0/3, B 0/3" in rows[0]
    assert report.index_text(docs) == index  # regenerated from the stage alone: the same
    # a stage whose runs are missing is refused in one line, nothing published
    capsys.readouterr()
    assert (
        main(["reproduce", "fig3", "--out", str(tmp_path / "none"), "--publish", str(docs / "x")])
        == 2
    )
    assert "holds none of the runs of fig3" in one_error_line(capsys)
    assert not (tmp_path / "none").exists() and not (docs / "x").exists()


def test_the_committed_claims_index_is_up_to_date():
    from eqprop.experiments import report

    root = Path(__file__).resolve().parents[1] / "docs" / "results"
    assert (root / "README.md").read_text() == report.index_text(root), (
        "docs/results/README.md is stale; regenerate it with "
        "python -c 'from eqprop.experiments.report import write_index; "
        'write_index("docs/results")\''
    )


def test_the_parity_of_a_topology_is_built_once_and_cached(tmp_path, monkeypatch):
    from eqprop.experiments import departures

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    departures._alternates_parity.cache_clear()
    section = pr.paper_config("C").topology
    first = departures._alternates_parity(section)
    assert first is False and (tmp_path / "cache/eqprop/parity.json").is_file()
    departures._alternates_parity.cache_clear()

    def no_build(config):
        raise AssertionError("built again")

    monkeypatch.setattr("eqprop.runs.build_topology", no_build)
    assert departures._alternates_parity(section) is False  # from the file
    (tmp_path / "cache/eqprop/parity.json").write_text("{not json")
    departures._alternates_parity.cache_clear()
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert departures._alternates_parity(section) is False  # a damaged cache is rebuilt
    departures._alternates_parity.cache_clear()


@pytest.mark.parametrize(
    "name",
    [
        "fig3",
        "fig4",
        "fig5",
        "fig5-fashion",
        "journal",
        "bitdepth",
        "hidden-nudge",
        "skip-removal",
        "solvers",
        "skipnets",
    ],
)
def test_missing_data_is_one_line_before_anything_is_written(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EQPROP_CACHE_DIR", "/nonexistent/eqprop-cache")  # no download either
    new, kept = tmp_path / "new", tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    before = tree(kept)
    for out in (new, kept):
        args = ["reproduce", name, "--scale", "quick", "--out", str(out)]
        args += ["--data-dir", str(tmp_path / "missing")] + ["--no-ray"] * (name != "solvers")
        assert main(args) == 2
        assert ": missing train-images-idx3-ubyte" in one_error_line(capsys)
    assert not new.exists() and tree(kept) == before


def test_an_experiment_whose_dependency_is_missing_is_one_line_naming_it(monkeypatch):
    """A broken installation (a required package gone) names the package and how to get it,
    rather than claiming the experiment does not exist."""
    import importlib

    from eqprop.errors import ConfigError
    from eqprop.experiments import experiment

    def without_matplotlib(name: str):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(importlib, "import_module", without_matplotlib)
    with pytest.raises(ConfigError, match="'fig3' needs the package 'matplotlib'.*pip install"):
        experiment("fig3")


def test_conv_ep_says_how_far_each_run_is_from_its_anchor_and_what_the_records_measure():
    from eqprop.experiments import conv_ep
    from eqprop.experiments.paper_runs import RunResult

    config = dict(conv_ep.planned("full"))["mnist"]

    def result(errors):
        records = [{"epoch": i + 1, "test_error": e} for i, e in enumerate(errors)]
        return RunResult("mnist", config, Path("mnist"), records, "done")

    short = conv_ep._shortfall(result([0.06, 0.05, 0.035]))
    assert "3.50% at best in 3 epochs against 1.00% (Ernoult et al. 2019), 2.50 points short" in (
        short
    )
    assert "Epochs: ours 3, theirs 40; over our last epoch the test error still fell by 1.50" in (
        short
    )
    flat = conv_ep._shortfall(result([0.03, 0.03]))
    assert "it did not fall over our last epoch" in flat
    assert conv_ep._shortfall(result([0.02, 0.0149])).endswith("within 0.5 points of it.")


def test_rate_summary_round_trips_through_json_with_nan_means():
    import numpy as np

    summary = pr.summarize_rates(np.array([[1e-5, 2e-4, 0.0], [3e-5, 4e-4, 0.0]]))
    back = pr.RateSummary.from_json(summary.to_json())
    assert np.isnan(back.mean[2]) and back.mean[:2] == pytest.approx([2e-5, 3e-4])
    assert np.array_equal(back.first, summary.first, equal_nan=True)
    assert (back.zero_output, back.batches) == (1.0, 2)


def test_a_published_fig4_stage_keeps_what_its_claims_read(tmp_path):
    """Figure 4's claims read per-batch rates, which a committed stage does not keep: the
    stage gets each run's rate summary, and its claims' checks read what the runs gave."""
    from eqprop.experiments import fig4, report

    out, dest = tmp_path / "fig4", tmp_path / "docs" / "fig4"
    assert main(["reproduce", "fig4", "--out", str(out), "--no-ray"]) == 0
    assert main(["reproduce", "fig4", "--out", str(out), "--publish", str(dest)]) == 0
    live = {
        name: pr.RunResult(name, config, out / name, read_metrics(out / name), "trained")
        for name, config in fig4.planned("smoke")
    }
    published = {r.name: r for r in report.stage_results(dest)}
    for name, run in live.items():
        assert not (dest / "runs" / name / "layer_rates").exists()
        assert published[name].rate_summary.batches == len(run.rates) > 0
    verdicts = [(c.check(published), c.check(live)) for c in fig4.CLAIMS]
    assert all(stage == runs for stage, runs in verdicts)
    assert all(stage.verdict != NOT_YET for stage, _ in verdicts)  # every check had its rates
