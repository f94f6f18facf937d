"""Convolutional networks through the run machinery: the ``conv`` config family and its
one-line refusals, the ``conv-mnist`` and ``conv-fashion`` presets, run directories that
resume bit for bit, ``load_run``, ``torch.optim`` updates, ``check-gradient`` and sweeps."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from eqprop import cli, gradcheck, nudging, runs
from eqprop import config as cfg
from eqprop.conv import ConvNetwork, ConvSGD, conv_mnist
from eqprop.data import own_dataset
from eqprop.errors import ConfigError, Interrupted
from eqprop.metrics import held_out_error
from eqprop.runs.checks import _check_conv_data
from eqprop.saved import load_run
from eqprop.sweeps.spec import sweep_from_dict
from eqprop.training import Trainer, one_hot
from eqprop.updates import OptimizerUpdate

#: a tiny conv net on the bundled 8x8 digits: 1x8x8 -> 4 maps (3x3, padding 1, 2x2 pool) -> 10
TINY = """
[data]
dataset = "digits"
limit = 100

[topology]
family = "conv"
input_shape = [1, 8, 8]
channels = [4]
kernels = [3]
paddings = [1]
pools = [2]
sizes = [10]

[free]
steps = 15

[nudged]
nudging = "icons"
steps = 4

[estimator]
kind = "centered"
beta = 0.5

[update]
lr = [0.2, 0.05]

[train]
epochs = 2
batch_size = 20
checkpoint_every = 2
"""


def tiny(*sets: str) -> cfg.RunConfig:
    """The tiny conv config, with ``--set`` overrides."""
    return cfg.from_dict(cfg.parse_toml(TINY, "TINY")).override(cfg.parse_overrides(sets))


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]


# -- the config -----------------------------------------------------------------------------
def test_the_conv_presets_describe_the_conv_mnist_network():
    for name, dataset in (("conv-mnist", "mnist"), ("conv-fashion", "fashion-mnist")):
        config = cfg.resolve(name)
        assert config.data.dataset == dataset
        assert config.topology.layer_shapes() == ((1, 28, 28), (16, 12, 12), (32, 4, 4), (10,))
        assert config.topology.layer_sizes() == (784, 2304, 512, 10)
        assert config.topology.conv_weights() == 16 * 25 + 32 * 16 * 25 + 512 * 10
        # Laborieux et al.'s cost 1/2 |s_out - d|^2: with icons' |s_out - d|^2 the centered
        # estimator's phase at beta = -0.5 would leave the outputs no curvature (docs/science.md)
        assert (config.free.steps, config.nudged.steps, config.nudged.nudging) == (
            60,
            10,
            "gradient",
        )
        assert (config.estimator.kind, config.estimator.beta) == ("centered", 0.5)
        assert not config.train.persistent and "relaxes from zeros" in config.description
        assert config.update.lr == (0.1, 0.05, 0.02) and config.train.batch_size == 32
        assert cfg.from_dict(cfg.parse_toml(config.to_toml(), "x")) == config
    assert "topology.channels" in cfg.flat_items(tiny())


def test_the_cifar10_preset_is_laborieux_et_als_network(tmp_path, capsys):
    config = cfg.resolve("conv-cifar10")
    assert config.topology.layer_shapes() == (
        (3, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 1, 1),
        (10,),
    )
    assert (config.free.steps, config.nudged.steps, config.estimator.kind) == (250, 30, "centered")
    assert not config.train.persistent  # from zeros, as theirs (particles would be 11.6 GB)
    assert config.update.optimizer_kwargs() == {"lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4}
    out = tmp_path / "run"
    code = cli.main(
        ["train", "--preset", "conv-cifar10", "--data-dir", str(tmp_path), "--out", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cifar-10" in err.lower()
    assert not out.exists()  # the missing data is found before anything is written


def test_conv_mnist_is_the_trainer_of_the_preset():
    trainer = conv_mnist(64, seed=3, free_steps=7)
    config = cfg.resolve("conv-mnist", None, ["train.seed=3", "free.steps=7"])
    net = runs.build_network(config)
    for a, b in zip(trainer.network.weights, net.weights, strict=True):
        assert torch.equal(a, b)
    assert isinstance(trainer.update, ConvSGD)
    assert trainer.update.weight_rates == (0.1, 0.05, 0.02)
    assert (trainer.free.steps, trainer.nudged.steps, trainer.batch_size) == (7, 10, 32)
    assert trainer.estimator == config.estimator.build()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["topology.input_shape=[1, 8]"], "needs topology.input_shape = [channels, height, width]"),
        (["topology.channels=[]"], "needs topology.channels"),
        (["topology.kernels=[3, 3]"], "topology.kernels has 2 values but topology.channels has 1"),
        (["topology.pools=[0]"], "topology.pools must be >= 1 each"),
        (["topology.paddings=[-1]"], "topology.paddings must be >= 0 each"),
        (
            ["topology.kernels=[9]", "topology.paddings=[0]"],
            "conv layer 1 of input_shape [1, 8, 8]: a 9x9 kernel with padding 0 and 2x2 "
            "pooling does not fit a 8x8 map",
        ),
        (["topology.sizes=[]"], "topology.sizes must be >= 1 positive layer sizes"),
        (["topology.p=0.1"], "topology.p does not apply to topology.family = 'conv'"),
        (["topology.a=0.1"], "topology.a does not apply"),
        (["topology.remove_after=1"], "topology.remove_after does not apply"),
        (["topology.p_formula=exact"], "topology.p_formula does not apply"),
        (["topology.input_shape=[1, 8, 8, 1]"], "needs topology.input_shape"),
        (["nudged.hidden_layers=[1]"], "nudged.hidden_layers (target-linked hidden neurons)"),
        (["update.lr_skip=0.1", "update.lr=0.1"], "update.lr_skip does not apply"),
        (["update.bits=4", "update.lr=0.1"], "update.bits (quantised weights) does not apply"),
        (["train.layout=dense"], "train.layout = 'dense' chooses the weight storage"),
        (["update.lr=[0.1, 0.1, 0.1]"], "update.lr has 3 values but the conv network has 2"),
        (["topology.channels=[4.5]"], "topology.channels must be a list of integers"),
    ],
)
def test_what_does_not_apply_to_a_conv_net_is_a_one_line_error(sets, message):
    with pytest.raises(ConfigError) as error:
        tiny(*sets)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("solver", ["layer-sweep", "sor"])
def test_the_layer_sweeping_solvers_run_a_conv_config(tmp_path, solver):
    eps = {"layer-sweep": 1.0, "sor": 1.5}[solver]
    config = tiny(f"free.solver={solver}", "free.tol=1e-4", "free.steps=200", f"free.eps={eps}")
    run_dir = runs.start_run(config.override({"train.epochs": 1}), tmp_path / solver)
    runs.train_run(run_dir)
    (record,) = runs.read_metrics(run_dir)
    assert 0 < record["free_steps"] < 200  # stopped on the residual, not on the cap
    assert 0 <= record["train_error"] < 1


def test_a_conv_config_over_a_dense_preset_must_give_its_dense_sizes(tmp_path):
    no_sizes = "\n".join(line for line in TINY.splitlines() if not line.startswith("sizes"))
    (tmp_path / "conv.toml").write_text(no_sizes)
    with pytest.raises(ConfigError, match=r"needs topology.sizes.*preset 'digits'"):
        cfg.resolve("digits", tmp_path / "conv.toml")
    assert cfg.resolve(
        "digits", tmp_path / "conv.toml", ["topology.sizes=[10]"]
    ).topology.sizes == (10,)
    assert cfg.resolve("conv-mnist", None, ["topology.channels=[8, 16]"]).topology.sizes == (10,)


def test_conv_keys_on_a_fully_connected_family_are_refused():
    with pytest.raises(ConfigError, match=r"topology.channels applies only with .*'conv'"):
        cfg.resolve("digits", None, ["topology.channels=[4]"])


def test_the_data_is_checked_against_the_input_shape_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    for sets, message in [
        (
            "topology.input_shape=[1,4,16]",
            "topology.input_shape = [1, 4, 16] but digits has images of shape 8x8 (64 values); "
            "use --set topology.input_shape=[1,8,8]",
        ),
        ("topology.sizes=[12]", "topology.sizes ends with 12 outputs but digits has 10 classes"),
    ]:
        out = tmp_path / "run"
        args = ["train", "--config", str(tmp_path / "tiny.toml"), "--set", sets]
        assert cli.main([*args, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
        assert not out.exists()


def test_own_images_fit_their_own_shape_and_flat_features_any_of_as_many_values():
    data = runs.load_data(tiny(), None)
    assert runs.image_shape(data) == (1, 8, 8)
    x, y = data.train.x.numpy(), data.train.y.numpy()
    images = own_dataset((x.reshape(-1, 2, 4, 8), y))  # flattened C x H x W, as conv reads
    kept = images.train.x  # the first examples (the last ones are held out)
    assert runs.image_shape(images) == (2, 4, 8) and torch.equal(kept, data.train.x[: len(kept)])
    _check_conv_data(tiny("topology.input_shape=[2, 4, 8]"), images)
    with pytest.raises(ConfigError, match=r"use --set topology.input_shape=\[2,4,8\]$"):
        _check_conv_data(tiny(), images)
    flat = own_dataset((x, y))
    assert runs.image_shape(flat) == (64,)
    _check_conv_data(tiny("topology.input_shape=[4, 4, 4]"), flat)
    with pytest.raises(
        ConfigError, match=r"set topology.input_shape to a \[C, H, W\] of 64 values"
    ):
        _check_conv_data(tiny("topology.input_shape=[1, 4, 4]"), flat)


# -- run directories ------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["masked-sgd", "Adam"])
def test_an_interrupted_conv_run_resumes_bit_for_bit(tmp_path, monkeypatch, optimizer):
    sets = [f"update.optimizer={optimizer}"]
    if optimizer != "masked-sgd":
        sets.append("update.lr=0.01")
    reference = runs.start_run(tiny(*sets), tmp_path / "ref")
    runs.train_run(reference, runs.RunOptions(quiet=True))
    assert {p.name for p in reference.iterdir()} >= {
        "config.toml", "metrics.jsonl", "checkpoint.pt", "best.pt", "layer_rates", "free_steps"
    }  # fmt: skip

    run = runs.start_run(tiny(*sets), tmp_path / "run")
    calls = 0
    original = Trainer.train_batch

    def train_batch(self, *args):
        nonlocal calls
        calls += 1
        if calls == 7:  # mid-epoch 2 (5 batches an epoch), after a checkpoint at batch 6
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args)

    monkeypatch.setattr(Trainer, "train_batch", train_batch)
    with pytest.raises(Interrupted):
        runs.train_run(run, runs.RunOptions(quiet=True))
    state = torch.load(run / runs.CHECKPOINT, weights_only=True)["trainer"]
    assert (state["epoch"], state["position"]) == (1, 2)
    if optimizer == "Adam":
        assert state["update"]["optimizer"]["state"][0]["step"] == 7
    monkeypatch.undo()
    runs.train_run(run, runs.RunOptions(quiet=True))

    ref = torch.load(reference / runs.CHECKPOINT, weights_only=True)["trainer"]
    res = torch.load(run / runs.CHECKPOINT, weights_only=True)["trainer"]
    for key in ("weights",):
        for a, b in zip(ref[key], res[key], strict=True):
            assert torch.equal(a, b)
    assert torch.equal(ref["biases"], res["biases"])
    assert torch.equal(ref["particles"], res["particles"])
    assert _strip(runs.read_metrics(reference)) == _strip(runs.read_metrics(run))


def test_load_run_returns_the_trained_conv_network(tmp_path):
    run = runs.start_run(tiny(), tmp_path / "run")
    records = runs.train_run(run, runs.RunOptions(quiet=True))
    held = runs.load_data(tiny(), None).held_out
    latest = load_run(run)
    assert isinstance(latest.network, ConvNetwork) and latest.epoch == 2
    assert latest.error(held.x, held.y) == pytest.approx(held_out_error(records[-1]), abs=1e-12)
    state = torch.load(run / runs.CHECKPOINT, weights_only=True)["trainer"]
    for w, saved in zip(latest.network.weights, state["weights"], strict=True):
        assert torch.equal(w, saved)
    best = load_run(run, "best")
    best_record = min(records, key=lambda r: (held_out_error(r), r["epoch"]))
    assert best.epoch == best_record["epoch"]
    assert best.error(held.x, held.y) == pytest.approx(held_out_error(best_record), abs=1e-12)


def test_train_preset_conv_mnist_runs_on_mnist(tmp_path, real_data_dir, capsys):
    sets = ["data.limit=40", "free.steps=2", "nudged.steps=2", "train.epochs=1"]
    args = ["train", "--preset", "conv-mnist", "--data-dir", str(real_data_dir), "--quiet"]
    assert (
        cli.main([*args, "--out", str(tmp_path / "run"), *sum([["--set", s] for s in sets], [])])
        == 0
    )
    assert "done: 1 epochs" in capsys.readouterr().out
    config = runs.read_config(tmp_path / "run")
    assert config.topology.channels == (16, 32) and len(runs.read_metrics(tmp_path / "run")) == 1
    assert load_run(tmp_path / "run").network.shapes[1] == (16, 12, 12)


# -- updates --------------------------------------------------------------------------------
def test_one_adam_step_is_adam_on_the_negative_ep_estimate():
    """The first step of Adam moves each weight by ``lr * e / (|e| + eps)`` for the estimate
    ``e`` (its bias-corrected moments are ``-e`` and ``e**2``), computed here by hand."""
    config = tiny("update.optimizer=Adam", "update.lr=0.01", "train.dtype=float64")
    net = runs.build_network(config)
    trainer = runs.build_trainer(config, net, 100)
    assert isinstance(trainer.update, OptimizerUpdate)
    seen = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def betas(self, generator):
            return self.inner.betas(generator)

        def estimate(self, *args):
            seen.append(self.inner.estimate(*args))
            return seen[-1]

    trainer.estimator = Spy(trainer.estimator)
    data = runs.load_data(config, None)
    before = [w.clone() for w in net.weights] + [net.biases.clone()]
    trainer.train_batch(data.train.x[:20].double(), data.train.y[:20], torch.arange(20))
    weights, biases = seen[0].descent(net)
    for w, b, e in zip([*net.weights, net.biases], before, [*weights, biases], strict=True):
        assert float(e.abs().max()) > 0
        assert torch.allclose(w - b, 0.01 * e / (e.abs() + 1e-8), rtol=1e-9, atol=1e-15)


# -- check-gradient -------------------------------------------------------------------------
def test_the_conv_true_gradient_equals_finite_differences():
    net = runs.build_network(tiny("train.dtype=float64", "network.activation=logistic"))
    data = runs.load_data(tiny(), None)
    x, y = data.train.x[:3].double(), data.train.y[:3]
    target = one_hot(y, 10, torch.float64)
    scheme = nudging.get("icons")

    def cost() -> float:
        s = net.zero_state(len(x))
        gradcheck._relax_until_still(net, s, net.input_drive(x))
        return float(scheme.cost(s[:, net.output], target).mean())

    s = net.zero_state(len(x))
    gradcheck._relax_until_still(net, s, net.input_drive(x))
    true_w, true_b = gradcheck.true_gradient_conv(net, x, s, target, scheme)
    h = 1e-5
    kernel = net.weights[0].numel()  # the matrix's entries follow the kernel's in true_w
    for tensor, index, got in [
        (net.weights[0], 7, true_w[7]),
        (net.weights[1], 50, true_w[kernel + 50]),
        (net.biases, 3, true_b[3]),
        (net.biases, 13, true_b[13]),
    ]:
        with torch.no_grad():
            tensor.view(-1)[index] += h
            up = cost()
            tensor.view(-1)[index] -= 2 * h
            down = cost()
            tensor.view(-1)[index] += h
        expected = -(up - down) / (2 * h)
        assert abs(expected) > 1e-6 and got == pytest.approx(expected, rel=1e-5)


def test_check_gradient_on_a_conv_config(tmp_path, capsys):
    result = gradcheck.check_config(tiny(), examples=4)
    assert result.cosine_weights > 0.99999 and result.cosine_biases > 0.99999
    assert abs(result.norm_ratio_weights - 1) < 1e-3 and abs(result.norm_ratio_biases - 1) < 1e-3
    wrong = gradcheck.check_config(tiny(), examples=4, beta=2.0)  # large beta: biased
    assert abs(wrong.norm_ratio_weights - 1) > 0.01
    (tmp_path / "tiny.toml").write_text(TINY)
    assert (
        cli.main(["check-gradient", "--config", str(tmp_path / "tiny.toml"), "--examples", "2"])
        == 0
    )
    assert "weights: cosine 1.0000" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--preset", "conv-mnist", "--set", "data.dataset=digits"],
            "topology.input_shape = [1, 28, 28] but digits has images of shape 8x8",
        ),
        (
            ["--preset", "digits", "--set", "topology.sizes=[100, 32, 10]"],
            "topology.sizes starts with 100 inputs but digits has 64 features",
        ),
        (["--preset", "conv-cifar10"], "over one example's 57,866 state units"),
    ],
)
def test_check_gradient_refuses_data_or_sizes_that_do_not_fit(argv, message, capsys):
    assert cli.main(["check-gradient", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


# -- sweeps ---------------------------------------------------------------------------------
def test_a_sweep_takes_a_conv_config_as_its_base(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    text = 'config = "tiny.toml"\n[grid]\n"topology.channels" = [[2], [4]]\n"train.seed" = [0, 1]\n'
    (tmp_path / "sweep.toml").write_text(text)
    sweep = sweep_from_dict(cfg.parse_toml(text, "s"), source="s", base_dir=tmp_path)
    assert [t.config.topology.channels for t in sweep.trials] == [(2,), (2,), (4,), (4,)]
    assert all(t.config.topology.family == "conv" for t in sweep.trials)
    out = tmp_path / "sw"
    assert cli.main(["sweep", str(tmp_path / "sweep.toml"), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("not started") for line in lines)
    bad = text.replace("[[2], [4]]", "[[2], [4, 4]]")
    (tmp_path / "bad.toml").write_text(bad)
    assert cli.main(["sweep", str(tmp_path / "bad.toml"), "--out", str(out), "--dry-run"]) == 2
    assert "topology.channels has 2 conv layer(s)" in capsys.readouterr().err
    assert not out.exists()


def test_eqprop_topology_prints_a_conv_networks_layers(capsys):
    assert cli.main(["topology", "--preset", "conv-mnist"]) == 0
    out = capsys.readouterr().out
    assert "1x28x28-16x12x12-32x4x4-10" in out and "18320" in out and "58" in out
    net = conv_mnist(1).network
    assert sum(w.numel() for w in net.weights) == 18320 and net.biases.numel() == 58
    assert np.sum(net.sizes) == 3610
