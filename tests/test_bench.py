"""The fast engine against the naive dense formulation, and the benchmark harness.

:mod:`eqprop.reference` rewrites EP the way the paper authors' code works (one masked dense
``N x N`` matrix over all neurons, per-example outer products for the update, both nudging
schemes written out from their formulas). Training with it and with
:class:`eqprop.training.Trainer` from the same initial weights and seeds must give the same
states, weights, biases, beta signs, errors and layer rates.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eqprop
from eqprop import config as cfg
from eqprop import product_plan, reference, topology
from eqprop.bench import conv_steps, engine, report
from eqprop.bench import settings as bench_settings
from eqprop.bench import timing as bench_timing
from eqprop.bench.training import training_timing
from eqprop.cli import main
from eqprop.estimators import Positive, RandomSign
from eqprop.network import Network
from eqprop.nudging import GradientNudging, IconsNudging, Nudge
from eqprop.relaxation.fixed import FixedSteps
from eqprop.relaxation.tolerance import Tolerance
from eqprop.runs import build_network, build_topology, build_trainer
from eqprop.training import Trainer
from eqprop.updates import LearningRates, MaskedSGD

SIZES = [30, 20, 20, 5]
NUDGINGS = {"gradient": GradientNudging, "icons": IconsNudging}
# each family with the rates, estimator and batch order that exercise it: per-pair rates and
# per-layer bias rates on the layered net; per-pair plus lr_skip plus one bias rate on ICONS,
# in file order; one rate and a bias rate on ICONS-add; one rate and the positive estimator
# on rewired, in file order (shuffled-once: test_shuffled_once_*)
CASES = {
    "layered": (
        lambda: topology.layered(SIZES),
        LearningRates(lr=(0.2, 0.1, 0.05)),
        RandomSign(beta=1.0),
        "reshuffle",
    ),
    "icons": (
        lambda: topology.icons(SIZES, n=150, seed=2),
        LearningRates(lr=(0.2, 0.1, 0.05), lr_skip=0.08, bias_lr=0.25),
        RandomSign(beta=1.0),
        "fixed",
    ),
    "icons-add": (
        lambda: topology.icons(SIZES, n=100, mode="add", seed=4),
        LearningRates(lr=0.1, bias_lr=0.05),
        RandomSign(beta=1.0),
        "reshuffle",
    ),
    "rewired": (
        lambda: topology.rewired(SIZES, p=0.3, seed=3),
        LearningRates(lr=0.15),
        Positive(beta=0.5),
        "fixed",
    ),
}
N_TRAIN, BATCH, SEED = 50, 20, 11  # batches of 20, 20, 10 per epoch (a ragged last batch)


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: one thread avoids OpenMP overhead on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_data(dtype, n=N_TRAIN):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(n, SIZES[0], generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, SIZES[-1], (n,), generator=g)
    return x, y


def tolerances(dtype) -> dict:
    if dtype == torch.float32:
        return {"rtol": 1e-5, "atol": 1e-5}
    return {"rtol": 1e-10, "atol": 1e-12}


def build_pair(
    family, nudging, dtype=torch.float64, layout="auto", free=None, seed=SEED, **changes
):
    """A trainer of the case and the naive engine following it, from the same weights;
    ``changes`` override ``n_train`` and ``batch_order``."""
    make_topology, rates, estimator, order = CASES[family]
    order = changes.get("batch_order", order)
    n_train = changes.get("n_train", N_TRAIN)
    net = Network(make_topology(), seed=7, dtype=dtype, layout=layout)
    trainer = Trainer(
        net,
        estimator,
        MaskedSGD(net, rates),
        free=free or FixedSteps(eps=0.5, steps=25),
        nudged=FixedSteps(eps=0.5, steps=5),
        nudging=NUDGINGS[nudging](),
        n_train=n_train,
        batch_size=BATCH,
        batch_order=order,
        seed=seed,
    )
    return trainer, reference.NaiveEP.from_trainer(trainer, seed=seed)


def train_both(trainer, ref, x, y, epochs, tol):
    """Train both engines ``epochs`` epochs, comparing particles, weights and biases after
    each; returns both engines' epochs and the trainer's betas."""
    net = trainer.network
    ours, theirs, betas = [], [], []
    for _ in range(epochs):
        ours.append(trainer.train_epoch(x, y, on_batch=lambda r: betas.append(r.betas)))
        theirs.append(ref.train_epoch(x, y))
        torch.testing.assert_close(trainer.particles, ref.state_particles(), **tol)
        torch.testing.assert_close(net.dense_weights(), ref.W, **tol)
        torch.testing.assert_close(net.biases, ref.biases(), **tol)
    return ours, theirs, betas


@pytest.mark.parametrize("nudging", NUDGINGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("layout", ["blocks", "dense"])
@pytest.mark.parametrize("family", CASES)
def test_trainer_equals_naive_engine(family, layout, dtype, nudging, monkeypatch):
    if family.startswith("icons"):  # the multiply-add model alone, so these small networks
        monkeypatch.setattr(product_plan, "DENSE_CALL_COST", 0.0)  # split into pairs, some CSR
        monkeypatch.setattr(product_plan, "CSR_CALL_COST", 0.0)
    trainer, ref = build_pair(family, nudging, dtype, layout)
    net = trainer.network
    topo = net.topology
    # the same seed gives the same initial weights, built independently
    twin = Network(topo, seed=7, dtype=dtype, layout=layout)
    assert torch.equal(ref.W, twin.dense_weights())
    if family.startswith("icons"):  # the sparse skip pairs really take the CSR path
        assert any(p.sparse is not None for p in net.product_plan())
    x, y = toy_data(dtype)
    tol = tolerances(dtype)

    # the second epoch starts every free phase from a persistent particle
    ours, theirs, betas = train_both(trainer, ref, x, y, 2, tol)
    naive_batches = [b for batches in theirs for b in batches]
    assert betas == [b.betas for b in naive_batches]  # the same coins, signs of both kinds
    beta = CASES[family][2].beta
    if isinstance(CASES[family][2], RandomSign):
        assert set(betas) == {(beta,), (-beta,)}
    else:
        assert set(betas) == {(beta,)}
    for epoch, batches in zip(ours, theirs, strict=True):
        assert epoch.train_error == sum(b.errors for b in batches) / N_TRAIN
        torch.testing.assert_close(
            epoch.layer_rates, torch.stack([b.layer_rates for b in batches]), **tol
        )
    # the update really moved the weights and biases (not a comparison of initial states)
    start = Network(topo, seed=7, dtype=dtype).dense_weights()
    assert (net.dense_weights() - start).abs().max() > 1e-3
    assert net.biases.abs().max() > 1e-3


def test_cases_differ_in_what_they_exercise():
    """The nudgings, bias_lr and batch orders each change the outcome, so the equivalence
    tests above compare different computations, not one computation several times."""
    x, y = toy_data(torch.float64)

    def weights_after(family, nudging, **changes) -> torch.Tensor:
        _, ref = build_pair(family, nudging)
        if changes:
            settings = reference.Settings(**{**ref.settings.__dict__, **changes})
            net = Network(CASES[family][0](), seed=7, dtype=torch.float64)
            ref = reference.NaiveEP(net, settings, n_train=N_TRAIN)
        ref.train_epoch(x, y)
        return torch.cat([ref.W.flatten(), ref.b])

    base = weights_after("icons", "gradient")  # bias_lr set, fixed order
    for changed in (
        weights_after("icons", "icons"),
        weights_after("icons", "gradient", bias_lr=None),
        weights_after("icons", "gradient", batch_order="reshuffle"),
        weights_after("icons", "gradient", batch_order="shuffled-once"),
    ):
        assert (changed - base).abs().max() > 1e-3
    # fixed: file-order batches; shuffled-once: the same batches, whole, in another order
    _, ref = build_pair("icons", "gradient")
    file_order = [list(range(k, min(k + BATCH, N_TRAIN))) for k in range(0, N_TRAIN, BATCH)]
    assert [b.tolist() for b in ref.epoch_batches()] == file_order
    _, ref = build_pair("icons", "gradient", batch_order="shuffled-once")
    once = [b.tolist() for b in ref.epoch_batches()]
    assert once != file_order and sorted(once) == file_order
    assert [b.tolist() for b in ref.epoch_batches()] == once  # every epoch the same


@pytest.mark.parametrize("nudging", NUDGINGS)
def test_shuffled_once_equals_naive_engine(nudging):
    """Shuffled-once batch order, 60 examples in 3 whole batches of 20."""
    trainer, ref = build_pair("icons-add", nudging, batch_order="shuffled-once", n_train=60)
    x, y = toy_data(torch.float64, 60)
    ours, theirs, _ = train_both(trainer, ref, x, y, 2, tolerances(torch.float64))
    assert [e.train_error for e in ours] == [sum(b.errors for b in t) / 60 for t in theirs]


def test_shuffled_once_with_a_ragged_batch_equals_naive_engine():
    """50 examples in batches of 20: the full batches are shuffled, the short one stays last
    and whole (each batch keeps its file-order examples)."""
    trainer, ref = build_pair("icons-add", "gradient", batch_order="shuffled-once")
    batches = [b.tolist() for b in ref.epoch_batches()]
    assert batches[-1] == list(range(40, 50))
    assert sorted(batches[:-1]) == [list(range(0, 20)), list(range(20, 40))]
    x, y = toy_data(torch.float64)
    train_both(trainer, ref, x, y, 1, tolerances(torch.float64))


def test_naive_engine_follows_adaptive_free_phase():
    free = Tolerance(eps=0.5, steps=300, tol=1e-2)
    trainer, ref = build_pair("layered", "gradient", free=free, seed=0)
    x, y = toy_data(torch.float64)
    epoch = trainer.train_epoch(x, y)
    batches = ref.train_epoch(x, y)
    assert epoch.mean_free_steps == sum(b.free_steps for b in batches) / len(batches)
    assert epoch.free_steps.tolist() == [b.free_steps for b in batches]
    assert epoch.mean_free_steps < 300
    torch.testing.assert_close(trainer.network.dense_weights(), ref.W, rtol=1e-10, atol=1e-12)


def test_naive_engine_from_config_equals_built_trainer():
    """An ICONS-protocol config (icons nudging, file-order batches, per-pair rates with one
    bias rate) through ``runs.build_trainer`` and through ``NaiveEP.from_config``."""
    config = cfg.from_dict(
        {
            "topology": {"family": "icons", "sizes": SIZES, "n": 150, "seed": 2},
            "free": {"steps": 20},
            "nudged": {"nudging": "icons", "steps": 4},
            "update": {"lr": [0.1, 0.05, 0.02], "lr_skip": 0.04, "bias_lr": 0.1},
            "train": {"batch_size": BATCH, "batch_order": "fixed", "dtype": "float64"},
        }
    )
    net = build_network(config)
    trainer = build_trainer(config, net, N_TRAIN)
    ref = reference.NaiveEP.from_config(build_network(config), config, n_train=N_TRAIN)
    assert ref.settings == reference.settings_from_trainer(trainer, config.train.seed)
    x, y = toy_data(torch.float64)
    _, _, betas = train_both(trainer, ref, x, y, 2, tolerances(torch.float64))
    assert set(betas) == {(1.0,), (-1.0,)}


def test_naive_engine_rejects_what_it_does_not_implement():
    with pytest.raises(eqprop.errors.ConfigError, match="estimator"):
        reference.Settings(estimator="centered")
    with pytest.raises(eqprop.errors.ConfigError, match="masked-sgd"):
        reference.settings_from_config(cfg.RunConfig().override({"update.optimizer": "Adam"}))


# -- the benchmark harness ---------------------------------------------------------------------
def tiny_config() -> cfg.RunConfig:
    return cfg.from_dict(
        {
            "data": {"dataset": "digits"},
            "topology": {"family": "icons", "sizes": SIZES, "n": 150},
            "nudged": {"nudging": "icons"},
            "update": {"lr": 0.05},
        }
    )


def test_bench_config_sets_the_paper_protocol():
    config = bench_settings.bench_config(
        tiny_config().override({"free.solver": "tolerance", "free.tol": 1e-2}),
        bench_settings.BenchOptions(steps=7),
    )
    assert (config.free.solver, config.free.tol, config.free.steps) == ("fixed", None, 7)
    assert (config.free.eps, config.nudged.eps, config.nudged.steps) == (0.5, 0.5, 8)
    assert (config.train.batch_size, config.train.dtype) == (20, "float32")
    assert config.nudged.nudging == "icons"  # the preset's own nudging is kept


def test_bench_record_structure():
    options = bench_settings.BenchOptions(
        batches=2,
        naive_batches=1,
        steps=4,
        repeats=2,
        step_window=4,
        threads=1,
        memory_examples=300,
        call_cost_rounds=1,
    )
    record = engine.run_benchmark([("tiny", tiny_config())], options)
    assert record["machine"]["torch_threads"] == 1
    settings = record["settings"]
    assert settings["free_steps"] == 4 and settings["nudged_steps"] == 8
    assert "2-3x slower than the authors' actual ICONS code" in record["naive_engine"]
    (entry,) = record["presets"]
    assert entry["preset"] == "tiny" and entry["neurons"] == 75
    assert entry["nudging"] == "icons" and entry["estimator"] == "random-sign"
    for key in ("ms_per_step", "lower_bound_ms", "step_over_bound", "s_per_batch", "speedup"):
        assert entry[key] > 0
    assert len(entry["s_per_batch_all"]) == 2
    assert entry["s_per_epoch"] == pytest.approx(entry["s_per_batch"] * 50_000 / 20)
    naive = entry["naive"]
    assert naive["batches_timed"] == 1 and not naive["scaled"]
    assert naive["engine"] == record["naive_engine"]
    assert entry["speedup"] == pytest.approx(naive["s_per_batch"] / entry["s_per_batch"])
    assert set(entry["layouts"]) == {"blocks", "dense"}
    # the bound is the faster of the plan's products and one dense product per stored block
    for timing in (entry, entry["cpu"], *entry["layouts"].values()):
        bound = timing["lower_bound_ms"]
        assert 0 < bound <= min(timing["plan_bound_ms"], timing["whole_blocks_bound_ms"]) + 1e-9
    costs = record["cost_model"]  # measured here, beside the calibrated constants
    assert costs["batch"] == 20 and costs["threads"] == 1 and costs["rounds"] == 1
    assert costs["calibrated"] == {
        "dense_call": product_plan.DENSE_CALL_COST,
        "csr_call": product_plan.CSR_CALL_COST,
        "sparse_cost": product_plan.SPARSE_COST,
        "batch": product_plan.COST_BATCH,
    }
    assert costs["csr_call_us"] > 0 and costs["ns_per_multiply_add_per_example"] > 0
    memory = entry["memory"]
    assert memory["examples"] == 300 and memory["peak_rss_mib"] >= memory["rss_after_imports_mib"]
    assert memory["free_steps"] == 4
    assert 0 < memory["vm_hwm_mib"] <= memory["peak_rss_mib"] + 1
    targets = [(t["what"], t["clock"]) for t in entry["targets"]]
    assert targets == [("relaxation step / matmul lower bound", c) for c in ("wall", "cpu")]
    cpu = entry["cpu"]  # the same measurements in process CPU time
    for key in ("ms_per_step", "lower_bound_ms", "s_per_batch", "naive_s_per_batch", "speedup"):
        assert cpu[key] > 0
    assert cpu["speedup"] == pytest.approx(cpu["naive_s_per_batch"] / cpu["s_per_batch"])
    table = report.format_table(record)
    assert "tiny" in table and "naive batches timed in full" in table
    assert "4 free + 8 nudged steps" in table
    # the note on what the naive engine is stands right under the speedup columns
    lines = table.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("tiny "))
    assert "speedup" in lines[row + 1] and "overstate" in lines[row + 1]
    cost_line = next(line for line in lines if line.startswith("cost model"))
    assert (
        f"calibrated {product_plan.DENSE_CALL_COST:,.0f} and {product_plan.CSR_CALL_COST:,.0f}"
        in (cost_line)
    )
    json.dumps(record)  # the record is plain JSON


def test_naive_timing_can_be_scaled_from_fewer_steps():
    config = bench_settings.bench_config(tiny_config(), bench_settings.BenchOptions(steps=6))
    options = bench_settings.BenchOptions(batches=1, naive_batches=1, steps=6, naive_steps=2)
    result = training_timing(config, build_topology(config), options)
    assert result["naive"]["scaled"] and result["naive"]["free_steps_timed"] == 2
    assert "scaled linearly" in result["naive"]["note"]


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--preset", "digits", "--steps", "3", "--batches", "1", "--threads", "1"]
    assert main([*argv, "--no-memory", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [e["preset"] for e in record["presets"]] == ["digits"]
    assert "memory" not in record["presets"][0]
    assert "overstate" in record["presets"][0]["naive"]["engine"]
    assert "digits" in capsys.readouterr().out


def test_bench_runs_from_an_installed_copy_of_the_package(tmp_path):
    """``eqprop bench`` needs nothing outside the package: a copy of ``eqprop/`` alone (no
    ``benchmarks/`` next to it, as in a non-editable install) runs it."""
    site = tmp_path / "site"
    shutil.copytree(
        Path(eqprop.__file__).parent, site / "eqprop", ignore=shutil.ignore_patterns("__pycache__")
    )
    code = (
        "import eqprop, eqprop.reference; from eqprop.cli import main; "
        "print(eqprop.__file__); "
        "raise SystemExit(main(['bench', '--preset', 'digits', '--steps', '2', '--batches', "
        "'1', '--threads', '1', '--no-memory']))"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == str(site / "eqprop" / "__init__.py")
    assert "digits" in done.stdout


def test_bench_times_the_conv_step_against_its_convolutions():
    """The conv case: both networks, each step's wall and CPU time against its bound, the
    ratio; the dense presets' parts (cost model, table header) only when presets are timed."""
    options = bench_settings.BenchOptions(
        repeats=2, step_window=2, threads=1, memory=False, conv=True
    )
    record = engine.run_benchmark([], options)
    assert record["presets"] == [] and record["cost_model"] is None
    entries = {e["network"]: e for e in record["conv"]}
    assert set(entries) == {"conv-mnist", "conv-32-64"}
    assert entries["conv-mnist"]["shapes"] == [[1, 28, 28], [16, 12, 12], [32, 4, 4], [10]]
    assert entries["conv-32-64"]["shapes"] == [[1, 28, 28], [32, 12, 12], [64, 4, 4], [10]]
    for entry in entries.values():
        assert (entry["batch"], entry["dtype"]) == (32, "float32")
        for timing in (entry, entry["cpu"]):
            assert timing["ms_per_step"] > 0 and timing["lower_bound_ms"] > 0
            assert timing["step_over_bound"] > 0
    table = report.format_table(record)
    assert "preset " not in table and "cost model" not in table
    line = next(line for line in table.splitlines() if "conv-mnist (" in line)
    assert "(1x28x28 -> 16x12x12 -> 32x4x4 -> 10)" in line and "ratio" in line
    json.dumps(record)


def test_step_windows_alternate_and_are_timed_one_after_another():
    """The timing loop of the step and conv-step benchmarks: per round one window of steps,
    then each bound's window, every window timed from the end of the one before, on both
    clocks; the ratio is the median of per-round ratios, not a ratio of medians."""
    calls: list[str] = []
    ticks = iter(range(0, 1000, 2))

    def now() -> tuple[float, float]:  # wall advances 2 per reading, CPU 1
        t = next(ticks)
        return float(t), t / 2

    def record(name: str):
        return lambda: calls.append(name)

    times = bench_timing.alternate(now, 3, 4, record("steps"), [record("a"), record("b")])
    assert calls == (["steps"] + ["a"] * 4 + ["b"] * 4) * 3
    assert times == [[(2.0, 1.0)] * 3] * 3  # 4 readings a round: no window skips one
    steps, bounds = [(3.0, 1.0), (8.0, 2.0), (4.0, 9.0)], [(1.0, 1.0), (2.0, 1.0), (4.0, 3.0)]
    summary = bench_timing.step_over_bound(steps, bounds, 2, 0)
    assert summary == {"ms_per_step": 2000.0, "lower_bound_ms": 1000.0, "step_over_bound": 3.0}
    assert bench_timing.step_over_bound(steps, bounds, 2, 1)["step_over_bound"] == 2.0


def test_conv_bound_runs_the_steps_convolutions_and_products():
    """The bound's operations are the step's: one conv2d and one conv_transpose2d per conv
    block between state layers, two matrix products per dense pair."""
    from eqprop.conv import ConvBlock, ConvNetwork

    net = ConvNetwork((1, 12, 12), [ConvBlock(2, 3), ConvBlock(3, 3, pool=1)], [4, 3])
    with torch.profiler.profile() as prof:
        conv_steps._convolutions_alone(net, 4, torch.Generator().manual_seed(0))()
    calls = {e.key: e.count for e in prof.key_averages()}
    assert calls["aten::conv2d"] == 2  # one to make the transposed input, one in the bound
    assert calls["aten::conv_transpose2d"] == 1 and calls["aten::addmm_"] == 4


def test_cli_bench_conv_alone(tmp_path, capsys, monkeypatch):
    from eqprop.conv import ConvBlock

    tiny = ((1, 8, 8), (ConvBlock(2, 3, padding=1), ConvBlock(2, 3, padding=1)), (3,))
    monkeypatch.setattr(conv_steps, "CONV_NETWORKS", {"tiny-conv": tiny})
    out = tmp_path / "bench.json"
    assert main(["bench", "--conv", "--threads", "1", "--no-memory", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["presets"] == [] and [e["network"] for e in record["conv"]] == ["tiny-conv"]
    printed = capsys.readouterr().out
    assert "tiny-conv (1x8x8 -> 2x4x4 -> 2x2x2 -> 3)" in printed and "s/batch" not in printed


def test_cli_bench_rejects_unknown_preset(capsys):
    assert main(["bench", "--preset", "nope", "--no-memory"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


# -- CUDA graphs -------------------------------------------------------------------------------
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU: the CUDA-graph relaxation runs only there"
)
def test_cuda_graph_relaxation_equals_eager_loop():
    from eqprop.relaxation.cuda_graph import CudaGraphs

    topo = topology.icons(SIZES, n=150, seed=2)
    net = Network(topo, seed=3, device="cuda")
    x = torch.rand(8, 30, device="cuda")
    target = torch.eye(5, device="cuda")[torch.arange(8) % 5]
    graphed_free, eager_free = CudaGraphs(0.5, 40), FixedSteps(0.5, 40)
    graphed_nudged, eager_nudged = CudaGraphs(0.5, 6), FixedSteps(0.5, 6)

    def phases(free, nudged, nudging, beta):
        base = net.input_drive(x)
        s = free.relax(net, net.zero_state(8), base).state
        c = nudged.relax(net, s.clone(), base, Nudge(nudging, beta, target)).state
        return s, c

    for nudging in (GradientNudging(), IconsNudging()):
        for beta in (1.0, -0.5):
            graphed = phases(graphed_free, graphed_nudged, nudging, beta)
            eager = phases(eager_free, eager_nudged, nudging, beta)
            for a, b in zip(graphed, eager, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert len(graphed_free._graphs) == 1 and len(graphed_nudged._graphs) == 4
    # in-place weight updates are seen by the captured graphs on the next replay
    net.weights[1].mul_(0.5)
    graphed = phases(graphed_free, graphed_nudged, IconsNudging(), 1.0)
    eager = phases(eager_free, eager_nudged, IconsNudging(), 1.0)
    for a, b in zip(graphed, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert len(graphed_free._graphs) == 1 and len(graphed_nudged._graphs) == 4
