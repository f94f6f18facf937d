"""Run directories: configs, checkpoints, exact resume after SIGKILL, divergence, plots."""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from small_run import small_config

from eqprop import config as cfg
from eqprop.errors import ConfigError, DivergenceError, EqpropError, Interrupted
from eqprop.metrics import held_out_error
from eqprop.plots import errors_figure, layer_rates_figure
from eqprop.runs import (
    CHECKPOINT,
    RunOptions,
    atomic_write,
    read_free_steps,
    read_layer_rates,
    read_metrics,
    start_run,
    train_run,
)
from eqprop.saved import load_run, load_trainer
from eqprop.training import Trainer


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_presets_load_and_match_the_paper():
    assert {
        "digits",
        "icons-layered",
        "icons-layered-perlayer",
        "icons-skip",
        "frontiers-layered-deep",
        "frontiers-skip-deep",
    } <= set(cfg.preset_names())
    a = cfg.resolve("icons-layered-perlayer")
    assert a.update.lr == (0.128, 0.032, 0.008, 0.002) and a.update.bias_lr is None
    authors = cfg.resolve("icons-layered-perlayer-authors")
    assert authors.update.lr == a.update.lr and authors.update.bias_lr == 1.0
    c = cfg.resolve("icons-skip")
    top = c.topology
    assert (top.family, top.n, top.a, c.update.lr) == ("icons", 100_000, 0.05, 0.02)
    assert (c.free.eps, c.nudged.eps, c.estimator.beta, c.estimator.kind) == (
        0.5,
        0.5,
        1.0,
        "random-sign",
    )
    assert (c.free.steps, c.nudged.steps, c.train.batch_size, c.train.epochs) == (500, 8, 20, 250)
    assert (c.data.split, c.train.batch_order, c.train.test_persistent) == ("icons", "fixed", True)
    deep = cfg.resolve("frontiers-skip-deep")
    assert deep.topology.sizes == (784, 100, 100, 100, 100, 100, 10)
    assert (deep.update.lr, deep.free.steps, deep.nudged.steps, deep.topology.p) == (
        0.015,
        1000,
        12,
        0.1,
    )
    assert deep.train.batch_order == "shuffled-once"


def test_every_paper_preset_uses_the_authors_step():
    paper = [n for n in cfg.preset_names() if n.startswith(("icons-", "frontiers-"))]
    assert len(paper) == 6
    assert {cfg.resolve(n).nudged.nudging for n in paper} == {"icons"}
    assert cfg.resolve("digits").nudged.nudging == "gradient"
    assert cfg.RunConfig().nudged.nudging == "gradient"  # the library default: the theory


def test_config_round_trips_through_toml():
    c = small_config('topology="icons"', "p=0.1", "lr_skip=0.05", "free.solver='tolerance'")
    c = c.override({"free.tol": 1e-3, "description": 'two\nlines "quoted"'})
    again = cfg.from_dict(cfg.parse_toml(c.to_toml(), "test"))
    assert again == c


def test_override_keeps_tuples_valid():
    paper = cfg.resolve("icons-layered-perlayer", None, [])
    changed = paper.override(
        {"train.epochs": 3, "topology.sizes": (784, 100, 10), "lr": (0.1, 0.01)}
    )
    assert (changed.train.epochs, changed.topology.sizes, changed.update.lr) == (
        3,
        (784, 100, 10),
        (0.1, 0.01),
    )
    assert paper.override({}) == paper
    with pytest.raises(ConfigError, match="train.epochs must be >= 1"):
        paper.override({"epochs": 0})


def test_section_keys_bare_keys_and_version_1_names_agree():
    a = cfg.resolve("digits", None, ["free.steps=33", "train.epochs=2", "nudged.steps=5"])
    b = cfg.resolve("digits", None, ["n_free=33", "epochs=2", "n_clamped=5"])
    assert a == b
    c = cfg.resolve("digits", None, ["random_sign=false", "tol=1e-3"])
    assert (c.estimator.kind, c.free.solver, c.free.tol) == ("positive", "tolerance", 1e-3)


def test_an_empty_set_value_unsets_a_key_to_its_default():
    config = cfg.resolve("icons-skip", None, ["topology.n=", "topology.p=0.05"])
    assert (config.topology.n, config.topology.p) == (None, 0.05)
    assert cfg.resolve("icons-skip", None, ["update.bias_lr=0.5", "update.bias_lr=0.5"])
    assert cfg.resolve("icons-skip", None, ["free.tol="]).free.tol is None


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["train.epochs=1", "epochs=2", "train.epochs=abc"],
            "--set gives train.epochs twice, as 'train.epochs' and as 'epochs'",
        ),
        (["epochs=1", "train.epochs=1"], "give it once, as train.epochs"),
        (["update.lr=0.1", "update.lr=0.2"], "update.lr twice with different values (0.1 and 0.2)"),
        (["topology.n=", "topology.n=5"], "topology.n twice with different values (None and 5)"),
    ],
)
def test_conflicting_set_items_are_one_line_errors(sets, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfg.resolve("icons-skip", None, sets)


def test_config_file_sections_apply_over_the_default_preset(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[free]\nsteps = 12\n\n[update]\nlr = 0.05\n")
    c = cfg.resolve("digits", path, [])
    assert (c.free.steps, c.update.lr, c.topology.sizes) == (12, 0.05, (64, 128, 10))


def _version_1_run(fixtures: Path, run: Path) -> None:
    """A run directory as version 1 left it after one epoch: its flat ``config.toml`` (written
    by that code, in ``fixtures/v1_run``), its ``metrics.jsonl``, and a checkpoint in its
    format (plain tensors; no metrics, no checksum). The checkpoint's content is trained here
    by this code, which trains every preset bit for bit as version 1 did
    (``test_refactor_identity.py``), so no binary is kept in the repository."""
    import shutil

    v1_text = (fixtures / "v1_run" / "config.toml").read_text()
    start_run(cfg.from_dict(cfg.parse_toml(v1_text, "v1")), run)
    train_run(run, RunOptions(quiet=True))
    state = torch.load(run / CHECKPOINT, weights_only=True)
    trainer = state["trainer"]
    trainer["weights"] = [w.detach().clone() for w in trainer["weights"]]
    trainer["biases"] = trainer["biases"].detach().clone()
    torch.save(
        {"trainer": trainer, "wall": state["wall"], "test_particles": None}, run / CHECKPOINT
    )
    (run / "best.pt").unlink()
    (run / "config.toml").write_text(v1_text)
    shutil.copy(fixtures / "v1_run" / "metrics.jsonl", run / "metrics.jsonl")


def test_a_version_1_run_directory_resumes_as_it_ran(tmp_path):
    """A run written before the sections (flat config.toml, gradient step) resumes with the
    same numbers the old code produced when it trained the second epoch itself."""
    from eqprop.cli import main

    fixtures = Path(__file__).parent / "fixtures"
    run = tmp_path / "v1"
    _version_1_run(fixtures, run)
    config = cfg.from_dict(cfg.load_file(run / "config.toml"))
    assert (config.nudged.nudging, config.train.batch_order) == ("gradient", "reshuffle")
    assert main(["train", "--resume", str(run), "--set", "epochs=2", "--quiet"]) == 0
    old = [json.loads(line) for line in (fixtures / "v1_two_epochs_metrics.jsonl").open()]
    new = read_metrics(run)
    assert [r["epoch"] for r in new] == [1, 2]
    for a, b in zip(old, new, strict=True):
        assert b["train_error"] == pytest.approx(a["train_error"], abs=1e-9)
        assert held_out_error(b) == pytest.approx(held_out_error(a), abs=1e-9)
        np.testing.assert_allclose(b["layer_rates"], a["layer_rates"], rtol=1e-4)


def test_resume_can_extend_the_epochs(tmp_path):
    from eqprop.cli import main

    run = start_run(small_config("epochs=1"), tmp_path / "run")
    train_run(run, RunOptions(quiet=True))
    assert main(["train", "--resume", str(run), "--set", "epochs=2", "--quiet"]) == 0
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


def test_a_resume_that_computes_otherwise_says_so_in_one_note(tmp_path, monkeypatch, capsys):
    from eqprop import arithmetic
    from eqprop.runs import load_checkpoint

    run = start_run(small_config("epochs=1"), tmp_path / "run")
    train_run(run, RunOptions(quiet=True))
    here = arithmetic.describe(torch.device("cpu"))
    assert load_checkpoint(run / CHECKPOINT)["arithmetic"] == here
    assert f"torch {torch.__version__}" in here and str(torch.get_num_threads()) in here
    threads = torch.get_num_threads()  # the count is its own last field, not a digit anywhere
    assert here.endswith(f"torch {torch.__version__}, {threads} thread{'s' * (threads != 1)}")
    capsys.readouterr()
    train_run(run, RunOptions(quiet=True), epochs=2)  # the same processor, build and threads
    assert "note" not in capsys.readouterr().err
    monkeypatch.setattr(arithmetic, "describe", lambda device: "Other CPU, torch 0, 3 threads")
    train_run(run, RunOptions(quiet=True), epochs=3)
    notes = [line for line in capsys.readouterr().err.splitlines() if "note" in line]
    assert notes == [
        f"eqprop: note: {run / CHECKPOINT} was written computing with {here}; this process "
        "computes with Other CPU, torch 0, 3 threads. Training goes on, but rounding differs, "
        "so it is not bit for bit what the first would give"
    ]
    assert load_checkpoint(run / CHECKPOINT)["arithmetic"] == "Other CPU, torch 0, 3 threads"
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]


def test_the_cpu_model_is_read_from_cpuinfo_or_else_from_platform(tmp_path, monkeypatch):
    import platform

    from eqprop import arithmetic

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: Vendor\nmodel name\t: Test CPU 9000\n")
    monkeypatch.setattr(arithmetic, "CPUINFO", info)
    assert arithmetic.cpu_model() == "Test CPU 9000"
    monkeypatch.setattr(arithmetic, "CPUINFO", tmp_path / "none")
    assert arithmetic.cpu_model() == (platform.processor() or platform.machine() or "unknown CPU")


@pytest.mark.parametrize(
    "override, message",
    [
        ("colour=3", "unknown config key 'colour'"),
        ("free.colour=3", "unknown config key 'free.colour'; [free] has solver, eps"),
        ("paint.steps=3", "unknown config section 'paint'"),
        ("sizes=[64, -5, 10]", "sizes must be >= 2 positive layer sizes"),
        ("beta=0", "[estimator] beta must be a non-zero number"),
        ("eps=0", "[free] eps must be a number > 0"),
        ("n_free=0", "[free] steps must be an integer >= 1"),
        ("free.tol=1e-3", "free.tol applies to adaptive solvers"),
        ("nudging='hard'", "nudged.nudging = 'hard' is not allowed; choose one of gradient"),
        ("estimator.kind='twice'", "estimator.kind = 'twice' is not allowed"),
        ("batch_order='sorted'", "train.batch_order = 'sorted' is not allowed"),
        ("update.optimizer='Magic'", "neither 'masked-sgd' nor a torch.optim optimiser"),
        ("update.bias_lr=-1", "[update] bias_lr must be >= 0"),
        ('topology="icons"', "needs exactly one of n and p"),
        ('dataset="cifar"', "dataset = 'cifar' is not allowed"),
        ("lr=[0.1, 0.2, 0.3]", "lr has 3 values but topology.sizes has 2 layer pairs"),
        ('epochs="many"', "train.epochs must be an integer"),
    ],
)
def test_bad_config_values_raise_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        cfg.resolve("digits", None, [override])
    assert "\n" not in str(e.value)


def test_rewired_p_out_of_range():
    with pytest.raises(ConfigError, match=r"needs p in \[0, 1\]"):
        cfg.resolve("digits", None, ['topology="rewired"', "p=2"])


def test_icons_p_out_of_range():
    with pytest.raises(ConfigError, match=r"topology.p must be in \[0, 1\)"):
        cfg.resolve("icons-skip").override({"topology.n": None, "topology.p": 1.5})
    with pytest.raises(ConfigError, match=r"needs exactly one of n and p"):
        cfg.resolve("icons-skip", None, ["p=0.5"])


def test_existing_run_directory_is_refused_and_unchanged(tmp_path):
    run = start_run(small_config(), tmp_path / "run")
    before = tree_digest(run)
    with pytest.raises(EqpropError, match="already exists; resume it with --resume"):
        start_run(small_config("lr=0.5"), run)
    assert tree_digest(run) == before


def test_run_writes_metrics_rates_and_checkpoint(tmp_path):
    run = start_run(small_config(), tmp_path / "run")
    records = train_run(run)
    assert [r["epoch"] for r in records] == [1, 2]
    on_disk = read_metrics(run)
    assert on_disk == records
    for r in records:
        assert set(r) >= {
            "train_error",
            "test_error",
            "layer_rates",
            "wall_time",
            "free_steps",
            "relaxation_steps",
        }
        assert len(r["layer_rates"]) == 2
        assert r["relaxation_steps"] == 20 * (20 + 4)
    rates = read_layer_rates(run)
    assert rates.shape == (40, 2)  # 20 batches an epoch, 2 layer pairs
    np.testing.assert_allclose(rates[:20].mean(0), records[0]["layer_rates"], rtol=1e-5)
    state = torch.load(run / CHECKPOINT, weights_only=False)
    assert state["trainer"]["epoch"] == 2
    assert read_free_steps(run).tolist() == [20] * 40  # fixed protocol: n_free every batch


def test_adaptive_relaxation_records_steps_per_batch(tmp_path):
    run = start_run(small_config("n_free=200", "tol=1e-3"), tmp_path / "run")
    records = train_run(run)
    steps = read_free_steps(run)
    assert steps.shape == (40,)
    assert steps.min() >= 1 and steps.max() <= 200
    assert steps[20:].mean() < 200  # persistent particles converge before the cap
    for epoch, record in enumerate(records):
        assert record["free_steps"] == pytest.approx(steps[20 * epoch : 20 * (epoch + 1)].mean())


def test_tensorboard_logs_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = start_run(small_config(), tmp_path / "run")
    records = train_run(run, RunOptions(tensorboard=True))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    train = [e.value for e in events.Scalars("train_error")]
    assert train == pytest.approx([r["train_error"] for r in records])
    assert "layer_rate/pair_2" in events.Tags()["scalars"]


def test_tensorboard_missing_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['torch.utils.tensorboard'] = None; "
            "from eqprop.cli import main; sys.exit(main(sys.argv[1:]))",
            "train",
            "--tensorboard",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "eqprop: error: --tensorboard needs the tensorboard package; install it with "
        "pip install 'eqprop[tensorboard]'"
    ]
    assert not (tmp_path / "run").exists()


def test_tensorboard_missing_stops_train_run_before_it_writes(tmp_path, monkeypatch):
    """Through the API too: a one-line error before the run directory changes."""
    run = start_run(small_config(), tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(EqpropError, match=r"^--tensorboard needs the tensorboard package"):
        train_run(run, RunOptions(tensorboard=True, quiet=True), epochs=5)
    assert sorted(p.name for p in run.iterdir()) == before
    assert "epochs = 5" not in (run / "config.toml").read_text()


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_write(path, lambda f: f.write(b"good"))

    def crash(f):
        f.write(b"half")
        raise OSError("disk died")

    with pytest.raises(OSError):
        atomic_write(path, crash)
    assert path.read_bytes() == b"good"


def _run_cli(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "eqprop.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_sigkill_and_resume_gives_identical_weights_and_metrics(tmp_path):
    epochs = 12
    sets = [
        "sizes=[64, 32, 10]",
        "limit=300",
        "n_free=60",
        "n_clamped=6",
        "batch_size=10",
        "lr=0.1",
        f"epochs={epochs}",
        "checkpoint_every=4",
    ]
    args = ["train", "--quiet"] + [a for s in sets for a in ("--set", s)]
    reference = _run_cli(args + ["--out", str(tmp_path / "ref")])
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()

    # Kill at a random moment inside a random early epoch: triggered by progress rather than
    # by wall time, so a fast machine cannot finish the run before the kill lands.
    rng = random.Random(0)
    kill_after_epochs = rng.randint(1, 4)
    killed = _run_cli(args + ["--out", str(tmp_path / "kill")])
    metrics = tmp_path / "kill" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (
        not metrics.exists() or metrics.read_bytes().count(b"\n") < kill_after_epochs
    ):
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.02))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "run finished before it could be killed"
    ckpt = tmp_path / "kill" / CHECKPOINT
    done_before = len(read_metrics(tmp_path / "kill"))
    assert kill_after_epochs <= done_before < epochs

    resumed = _run_cli(["train", "--quiet", "--resume", str(tmp_path / "kill")])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()

    ref = torch.load(tmp_path / "ref" / CHECKPOINT, weights_only=False)["trainer"]
    res = torch.load(ckpt, weights_only=False)["trainer"]
    for a, b in zip(ref["weights"], res["weights"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(ref["biases"], res["biases"])
    assert torch.equal(ref["particles"], res["particles"])

    def strip(records):
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]

    assert strip(read_metrics(tmp_path / "ref")) == strip(read_metrics(tmp_path / "kill"))
    assert np.array_equal(read_layer_rates(tmp_path / "ref"), read_layer_rates(tmp_path / "kill"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("stop_at", [7, 10])  # mid-epoch; the last batch of epoch 1
def test_a_stop_signal_checkpoints_the_batch_reached_and_resumes_exactly(
    tmp_path, monkeypatch, stop_at, signum
):
    """Ctrl-C (SIGINT) and SIGTERM (a batch scheduler's time limit) both finish the batch
    under way, write the checkpoint and raise Interrupted with the signal's number."""
    sets = ("batch_size=20", "checkpoint_every=1000", "epochs=2")  # 10 batches an epoch
    reference = start_run(small_config(*sets), tmp_path / "ref")
    train_run(reference)

    run = start_run(small_config(*sets), tmp_path / "run")
    calls = 0
    original = Trainer.train_batch

    def train_batch(self, *args):
        nonlocal calls
        calls += 1
        if calls == stop_at:  # the signal arrives while this batch is being computed
            os.kill(os.getpid(), signum)
        return original(self, *args)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(Trainer, "train_batch", train_batch)
    with pytest.raises(Interrupted) as stopped:
        train_run(run)
    assert stopped.value.signum == signum and stopped.value.exit_status == 128 + signum
    state = torch.load(run / CHECKPOINT, weights_only=False)["trainer"]
    assert state["epoch"] * 10 + state["position"] == stop_at  # no finished batch is lost
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert signal.getsignal(signal.SIGTERM) is before

    monkeypatch.undo()
    train_run(run)
    ref = torch.load(reference / CHECKPOINT, weights_only=False)["trainer"]
    res = torch.load(run / CHECKPOINT, weights_only=False)["trainer"]
    for a, b in zip(ref["weights"], res["weights"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(ref["particles"], res["particles"])

    def strip(records):
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]

    assert strip(read_metrics(reference)) == strip(read_metrics(run))


def test_ctrl_c_on_the_command_line_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = _run_cli(["train", "--set", "epochs=500", "--out", str(out)])
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.decode().replace("\r", "\n").splitlines() if line.strip()]
    assert proc.returncode == 130
    assert lines[-1] == f"eqprop: interrupted; continue with: eqprop train --resume {out}"
    assert "Traceback" not in err.decode()
    assert len(read_metrics(out)) < 500


def _background(args):
    """``eqprop`` as a background job of a non-interactive shell starts it: SIGINT ignored."""
    return _run_cli(args, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def test_sigterm_to_a_background_run_checkpoints_mid_epoch_and_resumes_bit_for_bit(tmp_path):
    sets = ["sizes=[64, 32, 10]", "limit=300", "n_free=60", "n_clamped=6", "batch_size=10"]
    sets += ["lr=0.1", "epochs=6", "checkpoint_every=1000"]  # 30 batches an epoch
    args = ["train", "--quiet"] + [a for s in sets for a in ("--set", s)]
    reference = _run_cli(args + ["--out", str(tmp_path / "ref")])
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()

    out = tmp_path / "run"
    proc = _background(args + ["--out", str(out)])
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or not metrics.read_bytes()):
        time.sleep(0.002)  # the first epoch is done: the signal lands inside a later one
    proc.send_signal(signal.SIGINT)  # ignored, as in any background job
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert proc.returncode == 143, err.decode()
    assert lines[-1] == f"eqprop: stopped by SIGTERM; continue with: eqprop train --resume {out}"
    assert "Traceback" not in err.decode()
    state = torch.load(out / CHECKPOINT, weights_only=False)["trainer"]
    # stopped inside epoch 2 or later (mid-epoch unless it landed in an evaluation)
    assert 1 <= state["epoch"] < 6 and state["epoch"] * 30 + state["position"] < 180

    resumed = _run_cli(["train", "--quiet", "--resume", str(out)])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    ref = torch.load(tmp_path / "ref" / CHECKPOINT, weights_only=False)["trainer"]
    res = torch.load(out / CHECKPOINT, weights_only=False)["trainer"]
    for a, b in zip(ref["weights"], res["weights"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(ref["particles"], res["particles"])

    def strip(records):
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]

    assert strip(read_metrics(tmp_path / "ref")) == strip(read_metrics(out))


def test_divergence_names_epoch_and_batch_and_keeps_last_checkpoint(tmp_path):
    run = start_run(small_config("lr=1e38", "checkpoint_every=1"), tmp_path / "run")
    with pytest.raises(DivergenceError, match=r"epoch 1, batch \d+") as e:
        train_run(run)
    assert "\n" not in str(e.value)
    if (run / CHECKPOINT).exists():
        state = torch.load(run / CHECKPOINT, weights_only=False)["trainer"]
        assert all(torch.isfinite(w).all() for w in state["weights"])


def test_plots_have_the_expected_panels(tmp_path):
    run = start_run(small_config(), tmp_path / "run")
    train_run(run)
    records, rates = read_metrics(run), read_layer_rates(run)
    fig = errors_figure([("a", records), ("b", records)])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4  # train and test per run
    assert [ln.get_linestyle() for ln in lines] == ["-", "--", "-", "--"]
    fig = layer_rates_figure([("a", rates), ("b", rates), ("c", rates)], smooth=2)
    assert len(fig.axes) == 3
    assert all(ax.get_yscale() == "log" and len(ax.get_lines()) == 2 for ax in fig.axes)


def test_digits_preset_learns_below_ten_percent(tmp_path):
    """The README's main job: the default preset reaches < 10% test error."""
    run = start_run(cfg.resolve("digits"), tmp_path / "run")
    records = train_run(run, None)
    assert held_out_error(records[-1]) < 0.10
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 10


def test_a_dead_output_layer_is_reported_once_in_one_line(tmp_path):
    """At rate 2 with the gradient step the digits network's outputs die (measured: output
    pair rate exactly 0 in every batch of epoch 3); the run says so once, with the fix."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "eqprop.cli",
            "train",
            "--quiet",
            "--set",
            "sizes=[64, 24, 10]",
            "--set",
            "lr=2.0",
            "--set",
            "epochs=3",
            "--set",
            "n_free=20",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "eqprop: warning: the output layer has stopped learning (its pair's rate was exactly 0 "
        "for 100 consecutive batches); this is the known collapse of the gradient step at "
        "large rates: use --set nudged.nudging=icons (the papers' step) or a lower update.lr"
    ]


def test_dead_output_monitor_needs_consecutive_zero_batches():
    from eqprop.training import DeadOutputMonitor

    monitor = DeadOutputMonitor("icons", patience=3)
    zero, alive = torch.tensor([1e-3, 0.0]), torch.tensor([1e-3, 1e-4])
    assert [monitor.update(r) for r in (zero, zero, alive, zero, zero)] == [None] * 5
    message = monitor.update(zero)
    assert message.startswith("eqprop: warning: the output layer has stopped learning")
    assert "lower update.lr" in message
    assert monitor.update(zero) is None  # once only


@pytest.mark.parametrize("solver", ["fista", "layer-sweep", "sor"])
def test_a_run_with_a_fast_solver_is_deterministic_and_resumes_bit_for_bit(tmp_path, solver):
    from eqprop.cli import main

    sets = (f"free.solver='{solver}'", "free.tol=1e-3", "free.steps=300", "checkpoint_every=7")
    whole = start_run(small_config(*sets), tmp_path / "whole")
    train_run(whole, RunOptions(quiet=True))
    again = start_run(small_config(*sets), tmp_path / "again")
    train_run(again, RunOptions(quiet=True))
    split = start_run(small_config(*sets, "epochs=1"), tmp_path / "split")
    train_run(split, RunOptions(quiet=True))
    assert main(["train", "--resume", str(split), "--set", "epochs=2", "--quiet"]) == 0
    states = [
        torch.load(r / CHECKPOINT, weights_only=False)["trainer"] for r in (whole, again, split)
    ]
    for other in states[1:]:
        for a, b in zip(states[0]["weights"], other["weights"], strict=True):
            assert torch.equal(a, b)
        assert torch.equal(states[0]["particles"], other["particles"])
    steps = read_free_steps(whole)
    assert steps.max() < 300 and np.array_equal(steps, read_free_steps(split))


def test_bench_solvers_reports_steps_residuals_and_the_paper_protocol(tmp_path):
    out = tmp_path / "solvers.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eqprop.cli",
            "bench-solvers",
            "--preset",
            "digits",
            "--solver",
            "fista",
            "--solver",
            "sor:1.7",
            "--threads",
            "1",
            "--sample",
            "5",
            "--quiet",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["results"]
    assert [(r["preset"], r["solver"], r["examples"], r["held_out"]) for r in rows] == [
        ("digits", "fista", 1437, 360),
        ("digits", "sor:1.7", 1437, 360),
    ]
    for row in rows:
        assert 1 <= row["free_steps_mean"] <= row["free_steps_max"] < 1000
        assert row["residual_solver"] < 1e-3  # every sampled batch stopped below tol
        assert row["paper_epoch_s"] > 0 and row["speedup"] == pytest.approx(
            row["paper_epoch_s"] / row["epoch_s"]
        )
    assert rows[1]["free_steps_mean"] < rows[0]["free_steps_mean"]  # SOR: fewer sweeps
    # the paper protocol beside SOR is the preset's own damped steps, not the SOR factor
    assert [r["paper_free"] for r in rows] == [{"eps": 0.5, "steps": 40}] * 2
    assert "digits" in result.stdout and "sor:1.7" in result.stdout


def test_bench_solvers_skips_a_solver_that_does_not_apply_to_the_network():
    from eqprop.bench.solvers import SolverBenchOptions, skip_reason, solver_config
    from eqprop.runs import build_network

    options = SolverBenchOptions()
    layered = solver_config("digits", "sor:1.7", options)
    assert layered.free.solver == "sor" and layered.free.eps == 1.7
    assert skip_reason(layered, build_network(layered)) is None
    icons = layered.override({"topology.family": "icons", "topology.n": 200, "topology.a": 0.05})
    reason = skip_reason(icons, build_network(icons))
    assert reason.startswith("the layer-sweep solvers need a topology with no edge between")
    assert cfg.resolve("digits").free.solver == "fixed"


def test_bench_solvers_fast_is_what_reproduce_fast_picks_for_each_preset():
    from eqprop.bench.solvers import SolverBenchOptions, parse_solver, solver_config
    from eqprop.experiments.departures import Departures

    options = SolverBenchOptions()
    for preset, solver in (("icons-skip", "fista"), ("frontiers-layered-deep", "sor")):
        config = solver_config(preset, "fast", options)
        assert config.free == Departures(fast=True).apply(cfg.resolve(preset)).free
        assert config.free.solver == solver
    with pytest.raises(ConfigError, match="'fast' takes its step size from --fast"):
        parse_solver("fast:1.5")
    with pytest.raises(ConfigError, match="choose among .*sor, fast"):
        parse_solver("fastest")


def test_bench_solvers_refuses_a_missing_output_directory_before_running(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "eqprop.cli", "bench-solvers", "--out", str(tmp_path / "no/x.json")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"eqprop: error: the directory of {tmp_path / 'no/x.json'} does not exist; "
        f"create {tmp_path / 'no'} first"
    )


def test_read_metrics_leaves_out_a_torn_last_line_and_refuses_a_damaged_one(tmp_path):
    good = json.dumps({"epoch": 1, "train_error": 0.5}) + "\n"
    (tmp_path / "metrics.jsonl").write_text(good + '{"epoch": 2, "train_e')
    assert read_metrics(tmp_path) == [{"epoch": 1, "train_error": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("{oops\n" + good)
    with pytest.raises(EqpropError, match="line 1 is damaged"):
        read_metrics(tmp_path)


def test_load_run_and_predict_reproduce_the_recorded_held_out_errors(tmp_path):
    import eqprop
    from eqprop.runs import BEST, load_data

    run = start_run(small_config("epochs=4"), tmp_path / "run")
    records = train_run(run, RunOptions(quiet=True))
    held = load_data(cfg.from_dict(cfg.load_file(run / "config.toml")), None).held_out
    latest = eqprop.load_run(run)
    assert latest.epoch == 4
    assert latest.error(held.x, held.y) == pytest.approx(held_out_error(records[-1]), abs=1e-12)
    best = eqprop.load_run(run, "best")
    best_record = min(records, key=lambda r: (held_out_error(r), r["epoch"]))
    assert best.epoch == best_record["epoch"]
    assert best.error(held.x, held.y) == pytest.approx(held_out_error(best_record), abs=1e-12)
    assert (run / BEST).exists()
    with pytest.raises(EqpropError, match="which must be 'latest' or 'best'"):
        eqprop.load_run(run, "first")


def test_a_run_not_trained_yet_has_no_trainer_or_latest_network_to_load(tmp_path):
    run_dir = start_run(small_config(), tmp_path / "run")
    message = f"{run_dir} has no checkpoint yet; train it first"
    with pytest.raises(EqpropError) as raised:
        load_trainer(run_dir, None)
    assert str(raised.value) == message
    with pytest.raises(EqpropError) as raised:
        load_run(run_dir)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("name", "make"),
    [("layer_rates", "file"), ("free_steps", "file"), ("metrics.jsonl", "dir"), ("best.pt", "dir")],
)
def test_a_run_file_of_the_wrong_kind_stops_a_resume_before_anything_is_written(
    tmp_path, name, make
):
    run = start_run(small_config("epochs=1"), tmp_path / "run")
    train_run(run)
    target = run / name
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    if make == "file":
        target.write_text("not a directory")
    else:
        target.mkdir()
    before = tree_digest(run)
    with pytest.raises(EqpropError, match=f"{re.escape(str(target))} should be a"):
        train_run(run, epochs=3)
    assert tree_digest(run) == before  # config.toml still says 1 epoch


@pytest.mark.data
def test_a_resume_finds_the_data_directory_the_run_was_trained_from(
    tmp_path, monkeypatch, real_data_dir
):
    monkeypatch.delenv("EQPROP_DATA_DIR", raising=False)
    config = small_config("dataset='mnist'", "sizes=[784, 16, 10]", "limit=100", "epochs=1")
    run = start_run(config, tmp_path / "run")
    train_run(run, RunOptions(data_dir=real_data_dir))
    assert (run / "data_dir").read_text() == f"{real_data_dir.resolve()}\n"
    train_run(run, epochs=2)  # no data directory given: the recorded one
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    (run / "data_dir").write_text(f"{tmp_path / 'gone'}\n")
    with pytest.raises(EqpropError, match="gone"):
        train_run(run, epochs=3)  # a recorded directory that is gone: its path in the error


@pytest.mark.parametrize("which", ["latest", "best"])
def test_load_run_refuses_a_fifo_in_one_line_without_hanging(tmp_path, which):
    run = start_run(small_config("epochs=1"), tmp_path / "run")
    train_run(run)
    path = run / ("checkpoint.pt" if which == "latest" else "best.pt")
    path.unlink()
    os.mkfifo(path)
    began = time.monotonic()
    with pytest.raises(EqpropError, match=r"is a FIFO \(named pipe\), not a file eqprop wrote"):
        load_run(run, which)
    assert time.monotonic() - began < 1.0


# -- a run directory proves what it is -----------------------------------------------------
def test_checkpoints_and_best_record_the_config_they_were_trained_with(tmp_path):
    from eqprop.runs import BEST, config_digest, load_best, load_checkpoint

    config = small_config("epochs=1")
    run = start_run(config, tmp_path / "run")
    train_run(run)
    state = load_checkpoint(run / CHECKPOINT)
    assert state["config"] == config.to_toml() == (run / "config.toml").read_text()
    assert state["config_sha256"] == config_digest(config)
    best = load_best(run, config)
    assert (best["epoch"], best["config_sha256"]) == (1, config_digest(config))
    assert "digest" in torch.load(run / BEST, weights_only=True)  # verified when read


def _without_config_record(path: Path) -> None:
    """Rewrite a checkpoint or best.pt as eqprop wrote them before they recorded their
    config (with a valid checksum of what is left)."""
    from eqprop.runs import save_checkpoint

    state = torch.load(path, weights_only=True)
    for key in ("config", "config_sha256", "digest"):
        state.pop(key)
    save_checkpoint(path, state)


def test_a_checkpoint_from_before_the_config_record_still_resumes(tmp_path):
    """Older checkpoints and best.pt files hold no config: a resume cannot compare it, so
    they resume as before (their shapes are still checked)."""
    run = start_run(small_config("epochs=1"), tmp_path / "run")
    train_run(run)
    _without_config_record(run / CHECKPOINT)
    _without_config_record(run / "best.pt")
    records = train_run(run, epochs=2)
    assert [r["epoch"] for r in records] == [1, 2]
    assert load_run(run, "best").epoch in (1, 2)


def test_an_old_checkpoint_of_other_shapes_is_the_same_line_from_load_run(tmp_path):
    other = start_run(small_config("epochs=1", "sizes=[64, 20, 10]"), tmp_path / "other")
    train_run(other)
    run = start_run(small_config("epochs=1"), tmp_path / "run")
    train_run(run)
    shutil.copy(other / CHECKPOINT, run / CHECKPOINT)
    _without_config_record(run / CHECKPOINT)
    with pytest.raises(EqpropError) as resumed:
        train_run(run, epochs=2)
    with pytest.raises(EqpropError) as loaded:
        load_run(run)
    assert str(loaded.value) == str(resumed.value)
    assert "checkpoint.pt does not fit" in str(resumed.value)
    assert "(biases of shape (30,), the config needs (34,))" in str(resumed.value)


@pytest.mark.parametrize("edit", ["epochs", "layout"])
def test_config_toml_may_extend_the_epochs_and_be_rewritten_with_the_same_values(tmp_path, edit):
    """Only the values count (not how the file is written), and train.epochs may grow: an
    extension whose new config.toml was written before its first checkpoint resumes."""
    run = start_run(small_config("epochs=1"), tmp_path / "run")
    train_run(run)
    path = run / "config.toml"
    if edit == "epochs":
        path.write_text(path.read_text().replace("epochs = 1", "epochs = 2"))
    else:
        path.write_text(
            "# my note\n" + path.read_text().replace("sizes = [\n    64,", "sizes = [64,")
        )
    records = train_run(run)
    assert records[-1]["epoch"] == (2 if edit == "epochs" else 1)


RESTART_NOTE = (
    "has no checkpoint.pt and no finished epoch (the run stopped before its first checkpoint, "
    "or the checkpoint was deleted); training starts from the beginning"
)


def test_a_run_that_never_reached_its_first_checkpoint_starts_again(tmp_path, capsys):
    """Killed after its first epoch's files but before the checkpoint that holds the epoch
    (whose record goes into metrics.jsonl only after it): the run starts from the beginning,
    says so, and ends as one never interrupted."""
    config = small_config("epochs=1", "checkpoint_every=0")
    reference = start_run(config, tmp_path / "reference")
    expected = train_run(reference)
    run = start_run(config, tmp_path / "run")
    train_run(run)
    (run / CHECKPOINT).unlink()
    (run / "metrics.jsonl").unlink()  # as the crash left it: epoch 1's files, no record
    capsys.readouterr()
    records = train_run(run)
    assert f"eqprop: note: {run} {RESTART_NOTE}\n" in capsys.readouterr().err
    assert [{**r, "wall_time": 0} for r in records] == [{**r, "wall_time": 0} for r in expected]
    assert torch.equal(
        load_run(run, "best").network.biases, load_run(reference, "best").network.biases
    )


def test_a_deleted_mid_epoch_checkpoint_restarts_the_run_with_one_note(
    tmp_path, monkeypatch, capsys
):
    """The only checkpoint, written mid-epoch 1 (Ctrl-C), deleted: the resume says in one
    line that the run starts from the beginning, and does; a new run says nothing of it."""
    from eqprop.cli import main

    config = small_config("batch_size=20", "checkpoint_every=1000", "epochs=1")
    reference = start_run(config, tmp_path / "reference")
    expected = train_run(reference)
    assert "note" not in capsys.readouterr().err  # a new run: no note
    run = start_run(config, tmp_path / "run")
    original = Trainer.train_batch

    def train_batch(self, *args):  # Ctrl-C while batch 5 of 10 of epoch 1 is computed
        if self.position == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args)

    monkeypatch.setattr(Trainer, "train_batch", train_batch)
    with pytest.raises(Interrupted):
        train_run(run)
    monkeypatch.undo()
    assert torch.load(run / CHECKPOINT, weights_only=False)["trainer"]["position"] == 5
    assert read_metrics(run) == []
    (run / CHECKPOINT).unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note" in line]
    assert notes == [f"eqprop: note: {run} {RESTART_NOTE}"]
    records = read_metrics(run)
    assert [{**r, "wall_time": 0} for r in records] == [{**r, "wall_time": 0} for r in expected]


def test_the_start_over_command_of_a_lost_checkpoint_trains_the_run_again(tmp_path):
    from eqprop.cli import main

    run = start_run(small_config("epochs=1"), tmp_path / "run")
    expected = train_run(run)
    (run / CHECKPOINT).unlink()
    with pytest.raises(EqpropError) as raised:
        train_run(run)
    command = str(raised.value).rpartition("start the run over with: ")[2]
    assert command == f"eqprop train --config {run / 'config.toml'} --out NEW_DIR"
    again = tmp_path / "again"
    args = command.replace("NEW_DIR", str(again)).split()[1:]
    assert main([*args, "--quiet"]) == 0
    assert [r["train_error"] for r in read_metrics(again)] == [r["train_error"] for r in expected]


def test_the_held_out_error_is_named_for_its_split(tmp_path):
    """``icons`` split: ``valid_error`` (per epoch, in ``best.pt``, in the CLI's line);
    ``standard`` split: ``test_error``; :func:`held_out_error` reads both."""
    from eqprop.metrics import held_out_key, held_out_label

    icons = start_run(small_config("epochs=1", "split=icons"), tmp_path / "icons")
    standard = start_run(small_config("epochs=1", "split=standard"), tmp_path / "standard")
    for run, key in ((icons, "valid_error"), (standard, "test_error")):
        records = train_run(run, RunOptions(quiet=True))
        assert [held_out_key(r) for r in records] == [key]
        assert key in json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        assert held_out_error(records[0]) == records[0][key]
        best = torch.load(run / "best.pt", weights_only=False)
        assert held_out_error(best) == records[0][key]
    assert held_out_label("valid_error") == "validation error"
    assert held_out_label("test_error") == "held-out error"


def test_an_old_icons_run_keeps_test_error_on_resume_and_still_plots(tmp_path):
    """A run directory written before ``valid_error`` (``test_error`` on the ``icons``
    split) resumes appending ``test_error``, never mixing keys, and still plots."""
    run = start_run(small_config("epochs=1", "split=icons"), tmp_path / "old")
    train_run(run, RunOptions(quiet=True))
    old = [
        {("test_error" if k == "valid_error" else k): v for k, v in r.items()}
        for r in read_metrics(run)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    from eqprop.cli import main
    from eqprop.runs import save_checkpoint

    state = torch.load(run / CHECKPOINT, weights_only=False)
    del state["digest"]
    save_checkpoint(run / CHECKPOINT, {**state, "records": old})  # as the old code saved it

    assert main(["train", "--resume", str(run), "--set", "epochs=2", "--quiet"]) == 0
    records = read_metrics(run)
    assert [sorted(k for k in r if k.endswith("_error")) for r in records] == [
        ["test_error", "train_error"]
    ] * 2
    assert records[0] == old[0]
    errors_figure([("old", records)])  # plots with the generic "held-out error"


@pytest.mark.parametrize("name", cfg.preset_names())
def test_presets_name_prints_a_config_file_that_is_the_preset(name, tmp_path, capsys):
    """``eqprop presets NAME`` prints every field; as a --config file it gives the preset."""
    from eqprop.cli import main

    assert main(["presets", name]) == 0
    path = tmp_path / "mine.toml"
    path.write_text(capsys.readouterr().out)
    assert cfg.resolve(None, path) == cfg.resolve(name)
    assert main(["presets", "nope"]) == 2
    assert "unknown preset 'nope'; choose one of: conv-cifar10" in capsys.readouterr().err


def test_plot_per_epoch_draws_a_long_runs_epoch_means(tmp_path, capsys):
    """``eqprop plot --per-epoch`` reads only config.toml and metrics.jsonl (a committed run
    of 300,000 batches has no per-batch files) and refuses --smooth beside it."""
    from eqprop.cli import main

    committed = Path(__file__).resolve().parents[1] / "docs/results/journal/runs/layered-mnist"
    run = tmp_path / "layered-mnist"
    shutil.copytree(committed, run)
    assert main(["plot", str(run), "--per-epoch", "--out", str(tmp_path / "p")]) == 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["errors.png", "layer_rates.png"]
    assert main(["plot", str(run), "--per-epoch", "--smooth", "3"]) == 2
    assert "--per-epoch draws epoch means: drop one" in capsys.readouterr().err
