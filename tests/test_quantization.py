"""The k-bit quantiser (eqprop.quantization) against an independent computation: the grid
enumerated and searched by brute force, stochastic rounding's probabilities and mean against
the formula, lost-update counts worked out by hand, missing edges, exact resume."""

import math

import numpy as np
import pytest
import torch
from small_run import small_config

from eqprop import config as cfg
from eqprop import topology
from eqprop.errors import ConfigError
from eqprop.estimators import Estimate
from eqprop.network import Network
from eqprop.quantization import Quantization, QuantizedSGD, edge_ranges, rounding_seed
from eqprop.runs import CHECKPOINT, RunOptions, read_metrics, start_run, train_run
from eqprop.training import Trainer
from eqprop.updates import LearningRates

BITS = 3  # codes -3..3
SIZES = [2, 2, 1]


def hand_network(rounding: str) -> tuple[Network, QuantizedSGD, list[float]]:
    """A 2-2-1 layered network on a 3-bit grid of range = the Glorot bound (range_scale 1),
    rate 1, with known codes; returns it, its update and the grid step of each pair."""
    net = Network(topology.layered(SIZES), seed=0)
    update = QuantizedSGD(net, LearningRates(lr=1.0), Quantization(BITS, rounding, 1.0), seed=3)
    steps = [math.sqrt(6 / 4) / 3, math.sqrt(6 / 3) / 3]  # r / M per pair, M = 2**(3-1) - 1
    with torch.no_grad():
        net.weights[0].copy_(torch.tensor([[1.0, -2.0], [0.0, 3.0]]) * steps[0])
        net.weights[1].copy_(torch.tensor([[2.0], [-1.0]]) * steps[1])
        net.biases.zero_()
    return net, update, steps


#: proposed corrections of the hand example, in grid steps of their pair
PROPOSED_STEPS = (
    np.array([[0.3, 0.0], [-1.7, 0.6]]),  # pair 0: lost (0.3), none (0.0), -2, +1 -> clipped
    np.array([[2.4], [-0.6]]),  # pair 1: +2 -> clipped at 3, -1
)
BIAS_STEPS = np.array([0.2, -0.8, 1.49])  # in the biases' steps (Glorot bound of the pair in)


def hand_estimate(steps: list[float], bias_steps: torch.Tensor) -> Estimate:
    weights = [
        torch.tensor(p * s, dtype=torch.float32) for p, s in zip(PROPOSED_STEPS, steps, strict=True)
    ]
    biases = torch.tensor(BIAS_STEPS, dtype=torch.float32) * bias_steps
    return Estimate(weights, biases, 1.0)


def nearest_on_grid(value: float, step: float, levels: int) -> float:
    """Independent: enumerate the grid and take the closest value (no ties here)."""
    grid = np.arange(-levels, levels + 1) * step
    return float(grid[np.argmin(np.abs(grid - value))])


def test_nearest_rounding_of_a_hand_example_matches_the_enumerated_grid():
    net, update, steps = hand_network("nearest")
    before = [w.clone().double() for w in net.weights]
    update.apply(hand_estimate(steps, update.bias_steps))
    for k, (w, old, proposed) in enumerate(zip(net.weights, before, PROPOSED_STEPS, strict=True)):
        want = np.vectorize(lambda v, s=steps[k]: nearest_on_grid(v, s, 3))(
            old.numpy() + proposed * steps[k]
        )
        np.testing.assert_allclose(w.double().numpy(), want, rtol=0, atol=1e-6)
    # by hand: pair 0 codes [[1, -2], [0, 3]] + [[0.3, 0], [-1.7, 0.6]] -> [[1, -2], [-2, 3]]
    assert torch.equal(
        torch.round(net.weights[0] / steps[0]), torch.tensor([[1.0, -2.0], [-2.0, 3.0]])
    )
    # pair 1: [2, -1] + [2.4, -0.6] -> [3 (clipped from 4.4), -2 (from -1.6)]
    assert torch.equal(torch.round(net.weights[1] / steps[1]), torch.tensor([[3.0], [-2.0]]))
    assert torch.equal(torch.round(net.biases / update.bias_steps), torch.tensor([0.0, -1.0, 1.0]))


def test_lost_update_fractions_of_the_hand_example():
    net, update, steps = hand_network("nearest")
    update.apply(hand_estimate(steps, update.bias_steps))
    metrics = update.epoch_metrics()
    # pair 0: 3 proposed (0.3, -1.7, 0.6); lost: 0.3 (rounds to 0) and 0.6 at code 3 (clipped)
    # pair 1: 2 proposed; lost: none (2 -> 3, -1 -> -2)
    assert metrics["lost_updates"] == pytest.approx([2 / 3, 0.0])
    assert metrics["lost_updates_biases"] == pytest.approx(1 / 3)  # 0.2 rounds to 0
    assert "lost_updates_other" not in metrics  # a layered network has no skip edges
    assert metrics["saturated"] == pytest.approx([1 / 4, 1 / 2])  # codes at +-3
    again = update.epoch_metrics()  # counts start again each epoch
    assert again["lost_updates"] == [None, None]


def test_stochastic_rounding_probabilities_and_mean_follow_the_formula():
    """Each edge goes to the upper neighbour ``ceil(x)`` with probability ``x - floor(x)``
    (x in grid steps), so the mean update equals the proposed one."""
    net, update, steps = hand_network("stochastic")
    start = [w.clone() for w in net.weights]
    estimate = hand_estimate(steps, update.bias_steps)
    draws = 4000
    ups = [torch.zeros_like(w) for w in net.weights]
    total = [torch.zeros_like(w, dtype=torch.float64) for w in net.weights]
    for _ in range(draws):
        with torch.no_grad():
            for w, s in zip(net.weights, start, strict=True):
                w.copy_(s)
        update.apply(estimate)
        for k, (w, s) in enumerate(zip(net.weights, start, strict=True)):
            moved = torch.round((w - s) / steps[k])
            ups[k] += moved == torch.ceil(torch.as_tensor(PROPOSED_STEPS[k], dtype=w.dtype))
            total[k] += moved.double()
    for k, proposed in enumerate(PROPOSED_STEPS):
        codes = torch.round(start[k] / steps[k]).double().numpy()
        inside = np.abs(codes + np.ceil(proposed)) <= 3  # the upper neighbour is on the grid
        p = proposed - np.floor(proposed)
        frequency = ups[k].double().numpy() / draws
        sigma = np.sqrt(p * (1 - p) / draws) + 1e-12
        check = inside & (proposed != 0)
        assert np.all(np.abs(frequency - p)[check] <= 5 * sigma[check])
        mean = total[k].numpy() / draws
        unclipped = inside & (np.abs(codes + np.floor(proposed)) <= 3)
        assert np.all(np.abs(mean - proposed)[unclipped] <= 5 * sigma[unclipped] + 1e-9)
        assert np.all(mean[proposed == 0] == 0)  # no proposal, no change


def test_stochastic_rounding_is_reproducible_from_the_seed():
    results = []
    for _ in range(2):
        net, update, steps = hand_network("stochastic")
        for _ in range(5):
            update.apply(hand_estimate(steps, update.bias_steps))
        results.append([w.clone() for w in net.weights])
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_skip_network_stays_on_the_grid_symmetric_and_masked(rounding):
    top = topology.icons([8, 6, 6, 3], n=20, seed=1)
    net = Network(top, seed=0, layout="dense")
    update = QuantizedSGD(
        net, LearningRates(lr=0.5), Quantization(5, rounding), seed=rounding_seed(0)
    )
    missing = [m == 0 for m in net.masks]
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        raw = [torch.randn(w.shape, generator=g) * 0.05 for w in net.weights]
        update.apply(Estimate(raw, torch.randn(net.n_state, generator=g) * 0.05, 1.0))
    for w, step, gone in zip(net.weights, update.steps, missing, strict=True):
        assert torch.all(w[gone] == 0)
        codes = w[~gone] / step[~gone]
        assert torch.allclose(codes, codes.round(), atol=1e-4)
        assert codes.abs().max() <= 15
    dense = net.dense_weights()
    assert torch.equal(dense, dense.T)
    metrics = update.epoch_metrics()
    assert 0 <= metrics["lost_updates_other"] <= 1
    assert len(metrics["lost_updates"]) == 3


def test_ranges_are_the_initial_bounds_times_the_scale():
    top = topology.icons([8, 6, 6, 3], n=20, seed=1)
    net = Network(top, seed=0, a=0.05)
    edge_r, bias_r = edge_ranges(net, 2.0)
    layer = top.layer_of[top.edges]
    glorot = [math.sqrt(6 / 14), math.sqrt(6 / 12), math.sqrt(6 / 9)]
    adjacent = top.kinds == topology.ADJACENT
    np.testing.assert_allclose(
        edge_r[adjacent], [2 * glorot[k] for k in layer[adjacent].min(axis=1)]
    )
    np.testing.assert_allclose(edge_r[~adjacent], 0.1)
    np.testing.assert_allclose(bias_r, 2 * np.repeat(glorot, [6, 6, 3]))


def test_config_keys_validate_and_default_off():
    base = cfg.resolve("digits")
    assert base.update.quantization() is None
    assert "bits" not in base.to_toml()  # unquantised configs are written as before
    config = base.override({"update.bits": 6})
    assert config.update.quantization() == Quantization(6, "nearest", 2.0)
    for changes, message in (
        ({"update.rounding": "stochastic"}, "update.rounding applies only with update.bits"),
        ({"update.bits": 1}, r"bits must be an integer in \[2, 24\]"),
        ({"update.bits": 8, "update.rounding": "up"}, "rounding must be one of"),
        ({"update.bits": 8, "update.range_scale": 0.0}, "range_scale must be > 0"),
        ({"update.bits": 8, "update.optimizer": "Adam"}, "update.bits applies to"),
    ):
        with pytest.raises(ConfigError, match=message):
            base.override(changes)


def test_a_quantised_run_is_deterministic_and_resumes_bit_for_bit_mid_epoch(tmp_path, monkeypatch):
    config = small_config("update.bits=6", "update.rounding='stochastic'")
    whole = start_run(config, tmp_path / "whole")
    train_run(whole, RunOptions(quiet=True))
    again = start_run(config, tmp_path / "again")
    train_run(again, RunOptions(quiet=True))

    crashed = start_run(config, tmp_path / "crashed")
    calls, original = 0, Trainer.train_batch

    def train_batch(self, *args):
        nonlocal calls
        calls += 1
        if calls == 26:  # epoch 2, batch 6; the last checkpoint is after its batch 3
            raise RuntimeError("simulated crash")
        return original(self, *args)

    monkeypatch.setattr(Trainer, "train_batch", train_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(crashed, RunOptions(quiet=True))
    monkeypatch.undo()
    state = torch.load(crashed / CHECKPOINT, weights_only=False)["trainer"]
    assert (state["epoch"], state["position"]) == (1, 3)
    train_run(crashed, RunOptions(quiet=True))

    states = [torch.load(r / CHECKPOINT, weights_only=False)["trainer"] for r in (whole, again)]
    states.append(torch.load(crashed / CHECKPOINT, weights_only=False)["trainer"])
    for other in states[1:]:
        for a, b in zip(states[0]["weights"], other["weights"], strict=True):
            assert torch.equal(a, b)
        assert torch.equal(states[0]["biases"], other["biases"])
        assert torch.equal(states[0]["update"]["generator"], other["update"]["generator"])

    def strip(records):
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]

    records = strip(read_metrics(whole))
    assert records == strip(read_metrics(again)) == strip(read_metrics(crashed))
    assert all(0 < r["lost_updates"][0] < 1 for r in records)
    net = Network(topology.layered([64, 24, 10]), seed=0)
    update = QuantizedSGD(net, LearningRates(0.1), Quantization(6, "stochastic"), seed=0)
    final = states[0]["weights"][0]
    assert torch.allclose(final / update.steps[0], (final / update.steps[0]).round(), atol=1e-4)
