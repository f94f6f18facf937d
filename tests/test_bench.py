"""The fast engine against the naive dense formulation, and the benchmark harness.

``benchmarks/naive.py`` rewrites EP the way the paper authors' code works (one masked dense
``N x N`` matrix over all neurons, per-example outer products for the update). Training with
it and with :class:`eqprop.training.Trainer` from the same initial weights and seeds must give
the same states, weights, biases, beta signs, errors and layer rates.
"""

from __future__ import annotations

import json

import pytest
import torch

from eqprop import bench, topology
from eqprop import config as cfg
from eqprop.cli import main
from eqprop.network import Network
from eqprop.rules import EPConfig, EquilibriumPropagation
from eqprop.training import Relaxation, Trainer

naive = bench.naive_module()

SIZES = [30, 20, 20, 5]
# each family with the learning-rate form that exercises it: per-pair rates (and per-layer
# bias rates) on the layered net, per-pair plus lr_skip on ICONS, one rate on rewired
CASES = {
    "layered": (lambda: topology.layered(SIZES), EPConfig(lr=(0.2, 0.1, 0.05))),
    "icons": (
        lambda: topology.icons(SIZES, n=150, seed=2),
        EPConfig(lr=(0.2, 0.1, 0.05), lr_skip=0.08),
    ),
    "icons-add": (lambda: topology.icons(SIZES, n=100, mode="add", seed=4), EPConfig(lr=0.1)),
    "rewired": (lambda: topology.rewired(SIZES, p=0.3, seed=3), EPConfig(lr=0.15)),
}
N_TRAIN, BATCH = 50, 20  # batches of 20, 20, 10 per epoch (a ragged last batch)


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: one thread avoids OpenMP overhead on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_data(dtype):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(N_TRAIN, SIZES[0], generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, SIZES[-1], (N_TRAIN,), generator=g)
    return x, y


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("layout", ["blocks", "dense"])
@pytest.mark.parametrize("family", CASES)
def test_trainer_equals_naive_engine(family, layout, dtype):
    make_topology, ep = CASES[family]
    topo = make_topology()
    net = Network(topo, seed=7, dtype=dtype, layout=layout)
    rule = EquilibriumPropagation(net, ep)
    relax = Relaxation(eps=0.5, n_free=25, n_clamped=5)
    trainer = Trainer(net, rule, relax, n_train=N_TRAIN, batch_size=BATCH, seed=11)
    ref = naive.NaiveEP(net, rule, relax, n_train=N_TRAIN, batch_size=BATCH, seed=11)
    # the same seed gives the same initial weights, built independently
    twin = Network(topo, seed=7, dtype=dtype, layout=layout)
    assert torch.equal(ref.W, twin.dense_weights())
    x, y = toy_data(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}

    if family.startswith("icons"):  # the sparse skip pairs really take the CSR path
        assert any(p.sparse is not None for p in net.product_plan())
    ours, theirs, coins = [], [], []
    for _ in range(2):  # the second epoch starts every free phase from a persistent particle
        ours.append(trainer.train_epoch(x, y, on_batch=lambda r: coins.append(r.beta)))
        theirs.append(ref.train_epoch(x, y))
        torch.testing.assert_close(trainer.particles, ref.state_particles(), **tol)
        torch.testing.assert_close(net.dense_weights(), ref.W, **tol)
        torch.testing.assert_close(net.biases, ref.biases(), **tol)
    naive_batches = [b for batches in theirs for b in batches]
    assert coins == [b.beta for b in naive_batches]  # the same fair coins, signs of both kinds
    assert set(coins) == {1.0, -1.0}
    for epoch, batches in zip(ours, theirs, strict=True):
        assert epoch.train_error == sum(b.errors for b in batches) / N_TRAIN
        torch.testing.assert_close(
            epoch.layer_rates, torch.stack([b.layer_rates for b in batches]), **tol
        )
    # the update really moved the weights (the comparison is not between two initial states)
    start = Network(topo, seed=7, dtype=dtype).dense_weights()
    assert (net.dense_weights() - start).abs().max() > 1e-3


def test_naive_engine_follows_adaptive_free_phase():
    topo = topology.layered(SIZES)
    net = Network(topo, seed=1, dtype=torch.float64)
    rule = EquilibriumPropagation(net, EPConfig(lr=0.1))
    relax = Relaxation(n_free=300, n_clamped=4, tol=1e-2)
    trainer = Trainer(net, rule, relax, n_train=N_TRAIN, batch_size=BATCH, seed=0)
    ref = naive.NaiveEP(net, rule, relax, n_train=N_TRAIN, batch_size=BATCH, seed=0)
    x, y = toy_data(torch.float64)
    epoch = trainer.train_epoch(x, y)
    batches = ref.train_epoch(x, y)
    assert epoch.mean_free_steps == sum(b.free_steps for b in batches) / len(batches)
    assert epoch.free_steps.tolist() == [b.free_steps for b in batches]
    assert epoch.mean_free_steps < 300
    torch.testing.assert_close(net.dense_weights(), ref.W, rtol=1e-10, atol=1e-12)


# -- the benchmark harness ---------------------------------------------------------------------
def tiny_config() -> cfg.RunConfig:
    return cfg.from_dict(
        {"sizes": [30, 20, 20, 5], "topology": "icons", "n": 150, "lr": 0.05, "dataset": "digits"}
    )


def test_bench_record_structure():
    options = bench.BenchOptions(
        batches=2,
        naive_batches=1,
        steps=4,
        repeats=2,
        step_window=4,
        threads=1,
        memory_examples=300,
    )
    record = bench.run_benchmark([("tiny", tiny_config())], options)
    assert record["machine"]["torch_threads"] == 1
    assert record["settings"]["n_free"] == 4 and record["settings"]["n_clamped"] == 8
    (entry,) = record["presets"]
    assert entry["preset"] == "tiny" and entry["neurons"] == 75
    for key in ("ms_per_step", "lower_bound_ms", "step_over_bound", "s_per_batch", "speedup"):
        assert entry[key] > 0
    assert len(entry["s_per_batch_all"]) == 2
    assert entry["s_per_epoch"] == pytest.approx(entry["s_per_batch"] * 50_000 / 20)
    assert entry["naive"]["batches_timed"] == 1 and not entry["naive"]["scaled"]
    assert entry["speedup"] == pytest.approx(entry["naive"]["s_per_batch"] / entry["s_per_batch"])
    assert set(entry["layouts"]) == {"blocks", "dense"}
    memory = entry["memory"]
    assert memory["examples"] == 300 and memory["peak_rss_mib"] >= memory["rss_after_imports_mib"]
    assert 0 < memory["vm_hwm_mib"] <= memory["peak_rss_mib"] + 1
    targets = [(t["what"], t["clock"]) for t in entry["targets"]]
    assert targets == [("relaxation step / matmul lower bound", c) for c in ("wall", "cpu")]
    cpu = entry["cpu"]  # the same measurements in process CPU time
    for key in ("ms_per_step", "lower_bound_ms", "s_per_batch", "naive_s_per_batch", "speedup"):
        assert cpu[key] > 0
    assert cpu["speedup"] == pytest.approx(cpu["naive_s_per_batch"] / cpu["s_per_batch"])
    table = bench.format_table(record)
    assert "tiny" in table and "naive batches timed in full" in table
    json.dumps(record)  # the record is plain JSON


def test_naive_timing_can_be_scaled_from_fewer_steps():
    config = bench.bench_config(tiny_config(), bench.BenchOptions(steps=6))
    options = bench.BenchOptions(batches=1, naive_batches=1, steps=6, naive_steps=2)
    result = bench.training_timing(config, topology.icons([30, 20, 20, 5], n=150), options)
    assert result["naive"]["scaled"] and result["naive"]["free_steps_timed"] == 2
    assert "scaled linearly" in result["naive"]["note"]


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--preset", "digits", "--steps", "3", "--batches", "1", "--threads", "1"]
    assert main([*argv, "--no-memory", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [e["preset"] for e in record["presets"]] == ["digits"]
    assert "memory" not in record["presets"][0]
    assert "digits" in capsys.readouterr().out


def test_cli_bench_without_naive_engine_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "NAIVE_PATH", tmp_path / "benchmarks" / "naive.py")
    assert main(["bench", "--preset", "digits", "--steps", "2", "--no-memory"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eqprop: error: the naive reference engine") and err.count("\n") == 1


def test_cli_bench_rejects_unknown_preset(capsys):
    assert main(["bench", "--preset", "nope", "--no-memory"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


# -- CUDA graphs -------------------------------------------------------------------------------
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU: the CUDA-graph relaxation runs only there"
)
def test_cuda_graph_relaxation_equals_eager_loop():
    topo = topology.icons([30, 20, 20, 5], n=150, seed=2)
    graphed = Network(topo, seed=3, device="cuda")
    eager = Network(topo, seed=3, device="cuda")
    eager.cuda_graphs = False
    x = torch.rand(8, 30, device="cuda")
    target = torch.eye(5, device="cuda")[torch.arange(8) % 5]
    for net in (graphed, eager):
        net.s = net.relax(net.zero_state(8), net.input_drive(x), 40)
        net.c = net.relax(net.s.clone(), net.input_drive(x), 6, 0.5, -1.0, target)
    torch.testing.assert_close(graphed.s, eager.s, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(graphed.c, eager.c, rtol=1e-6, atol=1e-6)
    assert len(graphed._graphs) == 2
    # in-place weight updates are seen by the captured graph on the next replay
    for net in (graphed, eager):
        net.weights[1].mul_(0.5)
        net.s2 = net.relax(net.zero_state(8), net.input_drive(x), 40)
    torch.testing.assert_close(graphed.s2, eager.s2, rtol=1e-6, atol=1e-6)
    assert len(graphed._graphs) == 2
