"""``eqprop sweep`` on a real local Ray instance (2 CPUs): a digits grid whose trials equal
``eqprop train`` runs bit for bit, two trials at once, a worker killed mid-trial that
resumes from its checkpoint, a diverging trial reported and not retried, an interrupted
sweep continued without repeating finished trials; and bad sweep files rejected in one
line before anything runs (these, and the spec and table tests, need no Ray)."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from eqprop import cli
from eqprop.errors import ConfigError, EqpropError
from eqprop.metrics import held_out_error
from eqprop.runs import CHECKPOINT, read_config, read_metrics
from eqprop.sweeps import results as res
from eqprop.sweeps.command import run_sweep
from eqprop.sweeps.spec import load_sweep, sweep_from_dict, trial_names
from eqprop.sweeps.trial import read_events

GRID_SWEEP = """
description = "test: lr x width x seed on digits"
preset = "digits"
[set]
"train.epochs" = 2
[grid]
"update.lr" = [0.05, 0.1]
"topology.sizes" = [[64, 64, 10], [64, 128, 10]]
"train.seed" = [0, 1]
[options]
trials_at_once = 2
cpus_per_trial = 1
retries = 2
"""


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray instance with 2 CPUs, shut down after the module's tests, with the
    signal handlers it found put back."""
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed (the sweep tests need pip install 'eqprop[ray]')"
    )
    pytest.importorskip("ray.tune", reason="Ray Tune is missing: pip install 'eqprop[ray]'")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()
    for sig, handler in handlers.items():  # Ray Tune installs its own; later tests need ours
        signal.signal(sig, handler)


def _spec(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _reference(sweep, trial, out: Path) -> Path:
    """The trial's config trained one by one by ``eqprop train`` (in this process, one
    torch thread): the sweep's base preset, its [set] and the trial's grid values."""
    args = ["train", "--preset", sweep.preset, "--out", str(out), "--quiet"]
    for key, value in {**sweep.fixed, **trial.overrides}.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    assert cli.main(args) == 0
    return out


def _without_wall(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]


def _same_run(trial_dir: Path, ref_dir: Path) -> None:
    """Config, every epoch record (but wall time) and the final weights are identical."""
    assert read_config(trial_dir).to_dict() == read_config(ref_dir).to_dict()
    assert _without_wall(read_metrics(trial_dir)) == _without_wall(read_metrics(ref_dir))
    a = torch.load(trial_dir / CHECKPOINT, weights_only=True)["trainer"]
    b = torch.load(ref_dir / CHECKPOINT, weights_only=True)["trainer"]
    for wa, wb in zip(a["weights"], b["weights"], strict=True):
        assert torch.equal(wa, wb)
    assert torch.equal(a["biases"], b["biases"])


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _interval(run_dir: Path) -> tuple[float, float]:
    events = read_events(run_dir)
    start = [e["time"] for e in events if e["event"] == "start"][-1]
    done = [e["time"] for e in events if e["event"] == "done"][-1]
    return start, done


# -- with Ray -------------------------------------------------------------------------------
def test_grid_sweep_equals_train_runs_two_at_once(tmp_path, ray_local, one_thread):
    sweep = load_sweep(_spec(tmp_path, GRID_SWEEP), out=tmp_path / "sw")
    lines: list[str] = []
    report = run_sweep(sweep, echo=lines.append)

    rows = _rows(tmp_path / "sw" / "results.csv")
    assert len(rows) == 8 == len(sweep.trials)
    assert {r["status"] for r in rows} == {"done"}
    assert report.count("done") == 8
    keys = {(r["update.lr"], r["topology.sizes"], r["train.seed"]) for r in rows}
    assert len(keys) == 8

    for trial, row in zip(sweep.trials, rows, strict=True):
        run_dir = sweep.run_dir(trial)
        ref = _reference(sweep, trial, tmp_path / "ref" / trial.name)
        _same_run(run_dir, ref)
        last = read_metrics(ref)[-1]
        assert float(row["final_held_out_error"]) == held_out_error(last)
        assert float(row["final_train_error"]) == last["train_error"]
        best = min(held_out_error(r) for r in read_metrics(ref))
        assert float(row["best_held_out_error"]) == best
        assert json.loads(row["topology.sizes"]) == list(trial.config.topology.sizes)
        assert [e["threads"] for e in read_events(run_dir) if e["event"] == "start"] == [1]

    intervals = sorted(_interval(sweep.run_dir(t)) for t in sweep.trials)
    overlapping = any(
        b_start < a_end for (_, a_end), (b_start, _) in zip(intervals, intervals[1:], strict=False)
    )
    assert overlapping, f"no two trials ran at once: {intervals}"

    finished = [ln for ln in lines if ln.startswith("[")]
    assert len(finished) == 8
    assert "7 left, ETA" in finished[0] and "none left" in finished[-1]

    agg = _rows(tmp_path / "sw" / "aggregate.csv")
    assert len(agg) == 4 and {a["seeds"] for a in agg} == {"2"}
    for a in agg:
        members = [
            float(r["final_held_out_error"])
            for r in rows
            if (r["update.lr"], r["topology.sizes"]) == (a["update.lr"], a["topology.sizes"])
        ]
        assert float(a["final_held_out_error_mean"]) == pytest.approx(sum(members) / 2)
    assert report.plot is not None and report.plot.stat().st_size > 0

    # running the same sweep again trains nothing
    again: list[str] = []
    run_sweep(sweep, echo=again.append)
    assert again[0].endswith("all 8 trials already finished")
    for trial in sweep.trials:
        assert sum(e["event"] == "start" for e in read_events(sweep.run_dir(trial))) == 1


FAULT_SWEEP = """
preset = "digits"
[set]
"train.epochs" = 8
"train.checkpoint_every" = 10
[grid]
"update.lr" = [0.1, 1e30]
[options]
trials_at_once = 2
retries = 2
"""


def test_killed_worker_resumes_and_diverging_trial_is_not_retried(tmp_path, ray_local, one_thread):
    sweep = load_sweep(_spec(tmp_path, FAULT_SWEEP), out=tmp_path / "sw")
    target = sweep.run_dir(next(t for t in sweep.trials if t.overrides["update.lr"] == 0.1))
    killed: list[int] = []

    def kill_mid_trial() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            starts = [e for e in read_events(target) if e["event"] == "start"]
            if starts and (target / CHECKPOINT).exists() and len(read_metrics(target)) < 8:
                os.kill(starts[0]["pid"], signal.SIGKILL)
                killed.append(starts[0]["pid"])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_mid_trial, daemon=True)
    killer.start()
    lines: list[str] = []
    report = run_sweep(sweep, echo=lines.append)
    killer.join(timeout=5)
    assert killed, "the trial finished before its worker could be killed"

    by_lr = {float(r["update.lr"]): r for r in _rows(report.table)}
    assert by_lr[0.1]["status"] == "done" and by_lr[0.1]["attempts"] == "2"
    starts = [e for e in read_events(target) if e["event"] == "start"]
    assert starts[0]["pid"] == killed[0] and starts[1]["pid"] != killed[0]
    resumed = starts[1]
    assert resumed["checkpoint"] and (resumed["from_epoch"], resumed["from_batch"]) != (0, 0)
    assert any("retry 1 of 2" in ln for ln in lines)
    trial = next(t for t in sweep.trials if t.overrides["update.lr"] == 0.1)
    _same_run(target, _reference(sweep, trial, tmp_path / "ref"))

    diverged = by_lr[1e30]
    assert diverged["status"] == "failed" and diverged["attempts"] == "1"
    assert "diverged" in diverged["error"]
    assert any("FAILED" in ln and "diverged" in ln for ln in lines)
    assert report.count("done") == 1 and report.count("failed") == 1


def _crash_seed_1(config: dict) -> None:
    """A trainable whose trial ``seed=1`` raises something that is not an EqpropError (it is
    pickled by value, see below, so Ray's workers run this very function)."""
    import os as _os

    from eqprop.sweeps.engine import run_task
    from eqprop.sweeps.trial import append_event

    if config["trial"] != "seed=1":
        return run_task(config)
    run_dir = config["tasks"][config["trial"]]["kwargs"]["run_dir"]
    append_event(run_dir, "start", pid=_os.getpid())
    raise RuntimeError("boom: an unexpected bug")


def test_unexpected_exception_is_retried_then_reported_failed(tmp_path, ray_local, monkeypatch):
    from ray import cloudpickle

    from eqprop.sweeps import engine

    spec = '[set]\n"train.epochs" = 1\n[grid]\n"train.seed" = [0, 1]\n[options]\nretries = 1\n'
    sweep = load_sweep(_spec(tmp_path, spec), out=tmp_path / "sw")
    monkeypatch.setattr(engine, "run_task", _crash_seed_1)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        lines: list[str] = []
        report = run_sweep(sweep, echo=lines.append)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    rows = {r["trial"]: r for r in report.rows}
    assert rows["seed=0"]["status"] == "done"
    crashed = rows["seed=1"]
    assert crashed["status"] == "failed" and crashed["attempts"] == 2  # 1 + retries
    assert "RuntimeError: boom" in crashed["error"]
    assert any("retry 1 of 1" in ln for ln in lines)
    assert any(ln.startswith("[") and "seed=1: FAILED" in ln for ln in lines)
    assert report.count("failed") == 1


INTERRUPT_SWEEP = """
preset = "digits"
[set]
"train.epochs" = 6
"train.checkpoint_every" = 10
[grid]
"train.seed" = [0, 1, 2]
[options]
trials_at_once = 1
"""


def test_interrupted_sweep_continues_without_repeating_finished_trials(
    tmp_path, ray_local, one_thread
):
    spec = _spec(tmp_path, INTERRUPT_SWEEP)
    out = tmp_path / "sw"
    sweep = load_sweep(spec, out=out)
    first, second = (sweep.run_dir(t) for t in sweep.trials[:2])
    address = ray_local.get_runtime_context().gcs_address
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "eqprop.cli", "sweep", str(spec), "--out", str(out)]
    proc = subprocess.Popen(
        command + ["--address", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (second / CHECKPOINT).exists():
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (stdout, stderr)
    assert "continue with: eqprop sweep" in stderr
    assert [r["status"] for r in _rows(out / "results.csv")][0] == "done"
    finished_before = {t.name for t in sweep.trials if len(read_metrics(sweep.run_dir(t))) == 6}
    assert first.name in finished_before and len(finished_before) < 3

    lines: list[str] = []
    report = run_sweep(sweep, echo=lines.append)
    assert report.count("done") == 3
    assert f"{len(finished_before)} already finished" in lines[0]
    for trial in sweep.trials:
        starts = [e for e in read_events(sweep.run_dir(trial)) if e["event"] == "start"]
        if trial.name in finished_before:
            assert len(starts) == 1, trial.name  # not repeated
        else:
            assert len(starts) >= 1
    second_trial = sweep.trials[1]
    _same_run(second, _reference(sweep, second_trial, tmp_path / "ref"))


# -- without Ray ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('preset = "digits"\n[grid]\n"update.lrr" = [0.1]\n', "unknown config key 'update.lrr'"),
        ('preset = "digits"\n[grid]\n', "the grid is empty"),
        ('preset = "digits"\n', "the grid is empty"),
        ('preset = "digits"\n[grid]\n"train.seed" = []\n', "has no values"),
        ('preset = "digitz"\n[grid]\n"train.seed" = [0, 1]\n', "unknown preset 'digitz'"),
        ('preset = "digits"\ngird = 1\n[grid]\n"train.seed" = [0]\n', "unknown sweep key"),
        ('preset = "digits"\n[grid]\n"update.lr" = [0.1, -1.0]\n', "lr=-1.0"),
        ('[grid]\n"train.seed" = [0]\n[options]\nretries = -1\n', "options.retries"),
        ('[grid]\n"train.seed" = 3\n', "must be a list"),
        ("[grid\n", "invalid TOML"),
    ],
)
def test_bad_sweep_file_is_one_line_exit_2_before_anything(tmp_path, capsys, text, message):
    spec = _spec(tmp_path, text)
    out = tmp_path / "sw"
    assert cli.main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eqprop: error: ") and message in err
    assert not out.exists()


def test_without_ray_one_line_install_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    spec = _spec(tmp_path, GRID_SWEEP)
    assert cli.main(["sweep", str(spec), "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'eqprop[ray]'" in err
    assert not (tmp_path / "sw").exists()


def test_spec_trials_names_and_nested_tables(tmp_path):
    sweep = sweep_from_dict(
        {
            "set": {"train": {"epochs": 3}},
            "grid": {"update": {"lr": [0.05, 0.1]}, "free.eps": [0.5], "nudged.eps": [0.5]},
        },
        source=str(tmp_path / "s.toml"),
    )
    assert sweep.preset == "digits" and sweep.keys == ["update.lr", "free.eps", "nudged.eps"]
    assert [t.name for t in sweep.trials] == [
        "lr=0.05,free.eps=0.5,nudged.eps=0.5",
        "lr=0.1,free.eps=0.5,nudged.eps=0.5",
    ]
    assert all(t.config.train.epochs == 3 for t in sweep.trials)
    assert sweep.out == Path("sweeps") / "s" and sweep.plot_key == "update.lr"
    names = trial_names([{"k": "a/b"}, {"k": "a_b"}])
    assert len(set(names)) == 2 and all("/" not in n for n in names)
    with pytest.raises(ConfigError, match="both set"):
        sweep_from_dict({"set": {"train.seed": 1}, "grid": {"train.seed": [0]}})
    with pytest.raises(ConfigError, match="gpus_per_trial"):
        sweep_from_dict({"set": {"train.device": "cuda"}, "grid": {"train.seed": [0]}})


# -- experiments' runs as tasks --------------------------------------------------------------
def test_experiment_runs_on_ray_equal_the_same_runs_in_this_process(
    tmp_path, ray_local, one_thread, capsys
):
    from eqprop.experiments import driver, fig5
    from eqprop.sweeps.placement import Placement

    driver.run(fig5, "smoke", tmp_path / "here", None)
    capsys.readouterr()
    placement = Placement(ray=True, trials_at_once=2)
    driver.run(fig5, "smoke", tmp_path / "ray", None, placement=placement)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ray")]
    names = [name for name, _ in fig5.planned("smoke")]
    for name in names:
        _same_run(tmp_path / "ray" / name, tmp_path / "here" / name)
        assert [e["event"] for e in read_events(tmp_path / "ray" / name)] == ["start", "done"]

    # the same results, but for the measured wall times (0 or 1 s on a busy machine)
    def results(where):
        text = (tmp_path / where / "results.md").read_text()
        return re.sub(r"wall time \d+ s", "wall time N s", text)

    assert "wall time N s" in results("ray") and results("ray") == results("here")
    assert lines[0] == f"ray: {len(names)} task(s) on Ray, up to 2 at once, 1 CPU(s) each"
    assert lines[-1].endswith("none left") and len(lines) == len(names) + 1
    intervals = sorted(_interval(tmp_path / "ray" / name) for name in names)
    # two ran at once: some run started before the one started just before it had ended
    assert any(b[0] < a[1] for a, b in zip(intervals, intervals[1:], strict=False))
    again = driver.run(fig5, "smoke", tmp_path / "ray", None, placement=placement)  # all complete
    assert again.exists()
    assert all(len(read_events(tmp_path / "ray" / name)) == 2 for name in names)


def test_an_experiment_run_failing_on_ray_is_reported_and_the_others_finish(tmp_path, ray_local):
    from eqprop import config as cfg
    from eqprop.experiments import paper_runs as pr
    from eqprop.experiments.paper_runs.running import _on_ray
    from eqprop.sweeps.placement import Placement

    good = cfg.from_dict(cfg.preset("digits")).override({"train.epochs": 1, "free.steps": 5})
    bad = good.override({"data.dataset": "mnist"})  # no MNIST files in the empty data dir
    (tmp_path / "empty").mkdir()
    planned, out = [("good", good), ("bad", bad)], tmp_path / "out"
    with pytest.raises(EqpropError, match="mnist: missing"):  # execute checks first
        pr.execute(planned, out, tmp_path / "empty", Placement(ray=True))
    assert not out.exists()
    # a run that fails on its worker all the same (its data gone after the checks)
    out.mkdir()
    statuses = _on_ray(planned, out, tmp_path / "empty", Placement(ray=True), None)
    assert statuses["good"] == "started" and len(read_metrics(out / "good")) == 1
    assert statuses["bad"].startswith("failed (") and "mnist" in statuses["bad"].lower()
    assert read_metrics(out / "bad") == []


def test_aggregate_mean_and_spread_over_seeds():
    rows = [
        {"status": "done", "lr": 0.1, "seed": s, "final_held_out_error": e, "wall_time": 1.0}
        for s, e in ((0, 0.1), (1, 0.3))
    ] + [{"status": "failed", "lr": 0.2, "seed": 0}]
    agg = res.aggregate(rows, ["lr"], ["seed"])
    assert agg[0]["seeds"] == 2 and agg[0]["final_held_out_error_mean"] == pytest.approx(0.2)
    assert agg[0]["final_held_out_error_std"] == pytest.approx(0.1414213562373095)
    assert agg[1]["seeds"] == 0 and agg[1]["failed"] == 1
    assert "final_held_out_error_mean" not in agg[1]


def test_sigterm_to_a_sweep_on_ray_stops_its_worker_with_a_checkpoint(
    tmp_path, ray_local, one_thread
):
    """What a batch scheduler does at a job's time limit: the driver is sent SIGTERM; the
    running trial stops after its batch with a checkpoint (not at its last periodic one),
    the driver exits with 143, and the trial continues to the uninterrupted run's end."""
    spec = _spec(
        tmp_path,
        INTERRUPT_SWEEP.replace('"train.checkpoint_every" = 10', '"train.checkpoint_every" = 0'),
    )
    out = tmp_path / "sw"
    sweep = load_sweep(spec, out=out)
    first = sweep.run_dir(sweep.trials[0])
    address = ray_local.get_runtime_context().gcs_address
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "eqprop.cli", "sweep", str(spec), "--out", str(out)]
    proc = subprocess.Popen(
        [*command, "--address", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # a background job
    )
    try:
        deadline = time.monotonic() + 120
        metrics = first / "metrics.jsonl"
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and metrics.read_text().count("\n") >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, (stdout, stderr)
    assert "stopped by SIGTERM" in stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr
    events = [e["event"] for e in read_events(first)]
    assert events == ["start", "stopped"], events
    state = torch.load(first / CHECKPOINT, weights_only=False)["trainer"]
    assert 2 <= state["epoch"] < 6  # checkpoint_every = 0: only a stop writes one mid-run
    assert not (first / "stop-request").exists()

    run_sweep(sweep, echo=lambda line: None)
    _same_run(first, _reference(sweep, sweep.trials[0], tmp_path / "ref"))
