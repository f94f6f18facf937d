"""The EP rule: hand-computed updates, per-layer rates (eq. 2), bias rates, masks, seeds."""

import numpy as np
import pytest
import torch

from eqprop import topology
from eqprop.errors import ConfigError
from eqprop.metrics import log_spread, smooth_rates
from eqprop.network import Network
from eqprop.rules import EPConfig, EquilibriumPropagation
from eqprop.training import Relaxation, Trainer

# sizes (2, 2, 2): inputs 0-1, hidden 2-3, outputs 4-5; plus one intralayer edge (2, 3) and
# one skip edge (0, 4): both must be excluded from the per-layer rates.
TINY_EDGES = np.array(
    [[0, 2], [0, 3], [1, 2], [1, 3], [2, 3], [2, 4], [2, 5], [3, 4], [3, 5], [0, 4]]
)


def tiny_network(layout="blocks"):
    t = topology.Topology(sizes=(2, 2, 2), edges=TINY_EDGES, family="icons-replace")
    return Network(t, seed=0, dtype=torch.float64, layout=layout)


@pytest.mark.parametrize("layout", ["blocks", "dense"])
def test_hand_computed_update_and_eq2_rates(layout):
    net = tiny_network(layout)
    x = torch.tensor([[1.0, 0.5], [0.2, 0.0]], dtype=torch.float64)
    s0 = torch.tensor([[0.1, 0.4, 0.3, 0.9], [0.5, 0.2, 0.0, 0.6]], dtype=torch.float64)
    sb = torch.tensor([[0.2, 0.3, 0.5, 0.7], [0.6, 0.2, 0.1, 0.6]], dtype=torch.float64)
    beta, lr = -0.5, 0.3
    before = net.dense_weights().clone()
    rates = EquilibriumPropagation(net, EPConfig(lr=lr)).update(x, s0, sb, beta)
    after = net.dense_weights()

    # by hand: u = (x, rho(s)); dW_ij = lr/beta * mean_batch(u_i^b u_j^b - u_i^0 u_j^0)
    u0 = np.concatenate([x.numpy(), s0.numpy()], axis=1)
    ub = np.concatenate([x.numpy(), sb.numpy()], axis=1)
    expected = {}
    for i, j in TINY_EDGES:
        expected[(i, j)] = lr / beta * np.mean(ub[:, i] * ub[:, j] - u0[:, i] * u0[:, j])
        assert float(after[i, j] - before[i, j]) == pytest.approx(expected[(i, j)], abs=1e-12)
    # eq. 2: RMS over the adjacent-layer edges of each pair only
    pair0 = [(0, 2), (0, 3), (1, 2), (1, 3)]
    pair1 = [(2, 4), (2, 5), (3, 4), (3, 5)]
    for k, pair in enumerate((pair0, pair1)):
        rms = np.sqrt(np.mean([expected[e] ** 2 for e in pair]))
        assert float(rates[k]) == pytest.approx(rms, rel=1e-12)
    # the skip and intralayer edges really changed, yet are not in the rates
    assert abs(expected[(0, 4)]) > 0 and abs(expected[(2, 3)]) > 0
    # nothing outside the topology moved
    adj = torch.as_tensor(net.topology.adjacency())
    assert torch.all(after[~adj] == 0)


def test_per_layer_rates_apply_to_biases():
    """Each neuron's bias uses the rate of its incoming adjacent pair (the paper authors'
    code silently skipped this)."""
    net = Network(topology.layered([3, 2, 2, 2]), seed=0, dtype=torch.float64)
    rates = (0.4, 0.1, 0.025)
    rule = EquilibriumPropagation(net, EPConfig(lr=rates))
    x = torch.rand(5, 3, dtype=torch.float64)
    s0 = torch.rand(5, 6, dtype=torch.float64)
    sb = torch.rand(5, 6, dtype=torch.float64)
    beta = 0.8
    rule.update(x, s0, sb, beta)
    mean_diff = ((sb - s0).mean(0) / beta).numpy()
    expected = mean_diff * np.repeat(rates, 2)
    np.testing.assert_allclose(net.biases.numpy(), expected, rtol=1e-12)


def test_per_pair_rates_scale_weight_updates():
    net = Network(topology.layered([3, 2, 2]), seed=0, dtype=torch.float64)
    before = net.dense_weights().clone()
    x = torch.rand(4, 3, dtype=torch.float64)
    s0, sb = torch.rand(4, 4, dtype=torch.float64), torch.rand(4, 4, dtype=torch.float64)
    EquilibriumPropagation(net, EPConfig(lr=(0.5, 0.05))).update(x, s0, sb, 1.0)
    d = (net.dense_weights() - before).numpy()
    u0 = np.concatenate([x.numpy(), s0.numpy()], 1)
    ub = np.concatenate([x.numpy(), sb.numpy()], 1)
    assert d[0, 3] == pytest.approx(0.5 * np.mean(ub[:, 0] * ub[:, 3] - u0[:, 0] * u0[:, 3]))
    assert d[3, 5] == pytest.approx(0.05 * np.mean(ub[:, 3] * ub[:, 5] - u0[:, 3] * u0[:, 5]))


def test_skip_rate_is_configurable_and_required_with_per_pair_rates():
    net = tiny_network()
    with pytest.raises(ConfigError, match="set lr_skip"):
        EquilibriumPropagation(net, EPConfig(lr=(0.1, 0.2)))
    before = net.dense_weights().clone()
    x = torch.ones(1, 2, dtype=torch.float64)
    s0 = torch.zeros(1, 4, dtype=torch.float64)
    sb = torch.full((1, 4), 0.5, dtype=torch.float64)
    EquilibriumPropagation(net, EPConfig(lr=(0.1, 0.2), lr_skip=0.7)).update(x, s0, sb, 1.0)
    d = net.dense_weights() - before
    assert float(d[0, 4]) == pytest.approx(0.7 * 0.5)  # skip edge: x_0 * sb_4
    assert float(d[2, 3]) == pytest.approx(0.7 * 0.25)  # intralayer edge
    assert float(d[0, 2]) == pytest.approx(0.1 * 0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta": 0.0}, "beta must be non-zero"),
        ({"lr": -0.1}, "lr must be >= 0"),
        ({"lr_skip": -1.0}, "lr_skip must be >= 0"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EPConfig(**kwargs)


def test_wrong_number_of_pair_rates():
    net = Network(topology.layered([3, 2, 2]))
    with pytest.raises(ConfigError, match="2 adjacent layer pairs"):
        EquilibriumPropagation(net, EPConfig(lr=(0.1, 0.2, 0.3)))


def small_trainer(family="icons", seed=0, dtype=torch.float32):
    sizes = [16, 12, 12, 4]
    topo = topology.icons(sizes, n=30, seed=1) if family == "icons" else topology.layered(sizes)
    net = Network(topo, seed=seed, dtype=dtype)
    rule = EquilibriumPropagation(net, EPConfig(lr=0.1))
    return Trainer(
        net, rule, Relaxation(n_free=30, n_clamped=6), n_train=100, batch_size=5, seed=seed
    )


def toy_data(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(100, 16, generator=g).to(dtype)
    return x, (x[:, :4].argmax(1))


def test_masks_and_symmetry_kept_after_many_updates():
    trainer = small_trainer()
    x, y = toy_data()
    for _ in range(3):
        trainer.train_epoch(x, y)
    w = trainer.network.dense_weights()
    adj = torch.as_tensor(trainer.network.topology.adjacency())
    assert torch.equal(w, w.T)
    assert torch.all(w[~adj] == 0)
    assert torch.all(torch.diagonal(w) == 0)


def test_same_seed_same_result_bitwise():
    x, y = toy_data()
    runs = []
    for _ in range(2):
        trainer = small_trainer(seed=3)
        trainer.train_epoch(x, y)  # 20 batches
        runs.append(trainer.network.dense_weights())
    assert torch.equal(runs[0], runs[1])
    other = small_trainer(seed=4)
    other.train_epoch(x, y)
    assert not torch.equal(runs[0], other.network.dense_weights())


def test_random_sign_of_beta_is_a_fair_coin():
    trainer = small_trainer()
    signs = [trainer.rule.draw_beta(trainer.generator) for _ in range(2000)]
    assert set(signs) == {1.0, -1.0}
    assert np.mean(np.array(signs) > 0) == pytest.approx(0.5, abs=0.05)
    fixed = EquilibriumPropagation(trainer.network, EPConfig(random_sign=False))
    assert {fixed.draw_beta(trainer.generator) for _ in range(50)} == {1.0}


def test_persistent_particles_store_free_equilibria():
    trainer = small_trainer()
    x, y = toy_data()
    trainer.train_epoch(x, y)
    net = trainer.network
    assert torch.count_nonzero(trainer.particles.sum(1)) == 100  # every example visited
    # the next free phase of examples 0-4 starts from their particles, with the weights as
    # they are before the batch's update; what is stored afterwards is that free equilibrium
    index = torch.arange(5)
    expected = net.relax(trainer.particles[index].clone(), net.input_drive(x[index]), 30)
    trainer.train_batch(x[index], y[index], index)
    assert torch.equal(trainer.particles[index], expected)
    assert not torch.equal(trainer.particles[5:10], expected)


def test_smoothing_eq3_and_log_spread():
    rates = np.arange(12, dtype=float).reshape(6, 2)
    sm = smooth_rates(rates, n=1)
    np.testing.assert_allclose(sm[2], rates[1:4].mean(0))
    np.testing.assert_allclose(sm[0], rates[0:2].mean(0))  # truncated window at the ends
    np.testing.assert_allclose(sm[-1], rates[4:6].mean(0))
    even = np.ones((10, 3))
    assert log_spread(even) == 0.0
    spread = np.tile([1.0, 10.0, 100.0], (5, 1))
    assert log_spread(spread) == pytest.approx(np.std([0.0, 1.0, 2.0]))
