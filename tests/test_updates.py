"""Updates and training: hand-computed updates, per-layer rates (eq. 2), bias rates, masks,
torch.optim, batch orders, particles, seeds."""

import numpy as np
import pytest
import torch

from eqprop import config as cfg
from eqprop import topology
from eqprop.data import load_dataset
from eqprop.errors import ConfigError, EqpropError
from eqprop.estimators import Estimate, RandomSign, correlation_difference
from eqprop.metrics import log_spread, smooth_rates
from eqprop.network import Network
from eqprop.nudging import GradientNudging
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import Trainer
from eqprop.updates import LearningRates, MaskedSGD, OptimizerUpdate


def apply_ep(net, rates, x, s0, sb, beta, update_cls=MaskedSGD):
    """The EP update of one nudged phase at signed ``beta``, applied with ``rates``."""
    weights, biases = correlation_difference(net, x, sb, s0)
    estimate = Estimate(weights, biases, 1.0 / (beta * x.shape[0]))
    return MaskedSGD(net, rates).apply(estimate)


# sizes (2, 2, 2): inputs 0-1, hidden 2-3, outputs 4-5; plus one intralayer edge (2, 3) and
# one skip edge (0, 4): both must be excluded from the per-layer rates.
TINY_EDGES = np.array(
    [[0, 2], [0, 3], [0, 4], [1, 2], [1, 3], [2, 3], [2, 4], [2, 5], [3, 4], [3, 5]]
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
    rates = apply_ep(net, LearningRates(lr=lr), x, s0, sb, beta)
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
    x = torch.rand(5, 3, dtype=torch.float64)
    s0 = torch.rand(5, 6, dtype=torch.float64)
    sb = torch.rand(5, 6, dtype=torch.float64)
    beta = 0.8
    apply_ep(net, LearningRates(lr=rates), x, s0, sb, beta)
    mean_diff = ((sb - s0).mean(0) / beta).numpy()
    expected = mean_diff * np.repeat(rates, 2)
    np.testing.assert_allclose(net.biases.numpy(), expected, rtol=1e-12)
    # the unscaled value differs, so a silently unscaled bias update fails the check above
    assert not np.allclose(mean_diff, expected)


def test_one_bias_rate_for_all_biases_as_the_authors_code():
    """bias_lr: every bias at that rate, whatever the per-pair weight rates (ICONS network A
    as published: bias rate 1)."""
    net = Network(topology.layered([3, 2, 2, 2]), seed=0, dtype=torch.float64)
    x = torch.rand(5, 3, dtype=torch.float64)
    s0, sb = torch.rand(5, 6, dtype=torch.float64), torch.rand(5, 6, dtype=torch.float64)
    before = net.dense_weights().clone()
    apply_ep(net, LearningRates(lr=(0.4, 0.1, 0.025), bias_lr=1.0), x, s0, sb, 0.8)
    np.testing.assert_allclose(net.biases.numpy(), ((sb - s0).mean(0) / 0.8).numpy(), rtol=1e-12)
    # weights still take their pair's rate
    u0 = np.concatenate([x.numpy(), s0.numpy()], 1)
    ub = np.concatenate([x.numpy(), sb.numpy()], 1)
    d = (net.dense_weights() - before).numpy()
    assert d[5, 7] == pytest.approx(
        0.025 / 0.8 * np.mean(ub[:, 5] * ub[:, 7] - u0[:, 5] * u0[:, 7])
    )


def test_per_pair_rates_scale_weight_updates():
    net = Network(topology.layered([3, 2, 2]), seed=0, dtype=torch.float64)
    before = net.dense_weights().clone()
    x = torch.rand(4, 3, dtype=torch.float64)
    s0, sb = torch.rand(4, 4, dtype=torch.float64), torch.rand(4, 4, dtype=torch.float64)
    apply_ep(net, LearningRates(lr=(0.5, 0.05)), x, s0, sb, 1.0)
    d = (net.dense_weights() - before).numpy()
    u0 = np.concatenate([x.numpy(), s0.numpy()], 1)
    ub = np.concatenate([x.numpy(), sb.numpy()], 1)
    assert d[0, 3] == pytest.approx(0.5 * np.mean(ub[:, 0] * ub[:, 3] - u0[:, 0] * u0[:, 3]))
    assert d[3, 5] == pytest.approx(0.05 * np.mean(ub[:, 3] * ub[:, 5] - u0[:, 3] * u0[:, 5]))


def test_skip_rate_is_configurable_and_required_with_per_pair_rates():
    net = tiny_network()
    with pytest.raises(ConfigError, match="set lr_skip"):
        MaskedSGD(net, LearningRates(lr=(0.1, 0.2)))
    before = net.dense_weights().clone()
    x = torch.ones(1, 2, dtype=torch.float64)
    s0 = torch.zeros(1, 4, dtype=torch.float64)
    sb = torch.full((1, 4), 0.5, dtype=torch.float64)
    apply_ep(net, LearningRates(lr=(0.1, 0.2), lr_skip=0.7), x, s0, sb, 1.0)
    d = net.dense_weights() - before
    assert float(d[0, 4]) == pytest.approx(0.7 * 0.5)  # skip edge: x_0 * sb_4
    assert float(d[2, 3]) == pytest.approx(0.7 * 0.25)  # intralayer edge
    assert float(d[0, 2]) == pytest.approx(0.1 * 0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -0.1}, "lr must be >= 0"),
        ({"lr_skip": -1.0}, "lr_skip must be >= 0"),
        ({"bias_lr": float("nan")}, "bias_lr must be >= 0"),
    ],
)
def test_rate_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LearningRates(**kwargs)


def test_beta_validation():
    with pytest.raises(ConfigError, match="beta must be a non-zero number"):
        RandomSign(beta=0.0)


def test_wrong_number_of_pair_rates():
    net = Network(topology.layered([3, 2, 2]))
    with pytest.raises(ConfigError, match="2 adjacent layer pairs"):
        MaskedSGD(net, LearningRates(lr=(0.1, 0.2, 0.3)))


def small_trainer(family="icons", seed=0, dtype=torch.float32, update=None, n_train=100, **options):
    sizes = [16, 12, 12, 4]
    topo = topology.icons(sizes, n=30, seed=1) if family == "icons" else topology.layered(sizes)
    net = Network(topo, seed=seed, dtype=dtype)
    update = update(net) if update else MaskedSGD(net, LearningRates(lr=0.1))
    return Trainer(
        net,
        RandomSign(1.0),
        update,
        free=FixedSteps(steps=30),
        nudged=FixedSteps(steps=6),
        nudging=GradientNudging(),
        n_train=n_train,
        batch_size=5,
        seed=seed,
        **options,
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


@pytest.mark.parametrize("batch_order", ["reshuffle", "shuffled-once"])
def test_trainer_reads_n_train_from_the_data(batch_order):
    x, y = toy_data()
    given = small_trainer(batch_order=batch_order)
    read = small_trainer(batch_order=batch_order, n_train=None)
    assert read.n_train is None and read.particles is None
    with pytest.raises(ConfigError, match="give n_train, or start with train_epoch"):
        read.train_batch(x[:5], y[:5], torch.arange(5))
    for _ in range(2):
        a, b = given.train_epoch(x, y), read.train_epoch(x, y)
        assert a.train_error == b.train_error
    assert read.n_train == 100
    assert torch.equal(given.particles, read.particles)
    for wa, wb in zip(given.network.weights, read.network.weights, strict=True):
        assert torch.equal(wa, wb)
    restored = small_trainer(batch_order=batch_order, n_train=None)
    restored.load_state_dict(read.state_dict())  # sized by the saved particles
    assert restored.n_train == 100 and torch.equal(restored.particles, read.particles)
    with pytest.raises(ConfigError, match="built for 100 examples, got 40"):
        read.train_epoch(x[:40], y[:40])


def test_trainer_relaxers_are_keywords():
    net = Network(topology.layered([4, 3, 2]))
    update = MaskedSGD(net, LearningRates(lr=0.1))
    relaxers = FixedSteps(steps=5), FixedSteps(steps=2)
    with pytest.raises(TypeError, match="positional"):
        Trainer(net, RandomSign(1.0), update, *relaxers, GradientNudging())


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


def test_persistent_particles_store_free_equilibria():
    trainer = small_trainer()
    x, y = toy_data()
    trainer.train_epoch(x, y)
    net = trainer.network
    assert torch.count_nonzero(trainer.particles.sum(1)) == 100  # every example visited
    # the next free phase of examples 0-4 starts from their particles, with the weights as
    # they are before the batch's update; what is stored afterwards is that free equilibrium
    index = torch.arange(5)
    start = trainer.particles[index].clone()
    expected = FixedSteps(steps=30).relax(net, start, net.input_drive(x[index])).state
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


def visited(trainer, x, y):
    """The examples of each batch of one epoch, in visiting order."""
    seen = []
    original = trainer.train_batch

    def spy(xb, yb, index):
        seen.append(index.tolist())
        return original(xb, yb, index)

    trainer.train_batch = spy
    try:
        trainer.train_epoch(x, y)
    finally:
        del trainer.train_batch
    return seen


def test_batch_orders():
    x, y = toy_data()
    fixed = small_trainer(batch_order="fixed")
    first, second = visited(fixed, x, y), visited(fixed, x, y)
    assert first == second == [list(range(k, k + 5)) for k in range(0, 100, 5)]
    once = small_trainer(batch_order="shuffled-once", seed=2)
    first, second = visited(once, x, y), visited(once, x, y)
    assert first == second  # the same order every epoch
    assert sorted(first) == [list(range(k, k + 5)) for k in range(0, 100, 5)]  # fixed batches
    assert first != sorted(first)  # visited in a shuffled order
    again = small_trainer(batch_order="shuffled-once", seed=2)
    assert visited(again, x, y) == first  # drawn from the seed
    fresh = small_trainer(batch_order="reshuffle")
    first, second = visited(fresh, x, y), visited(fresh, x, y)
    assert first != second
    assert sorted(sum(first, [])) == list(range(100))
    with pytest.raises(ConfigError, match="batch_order must be one of"):
        small_trainer(batch_order="sorted")


def test_evaluation_reads_and_writes_back_test_particles():
    """With particles, each held-out example relaxes from its particle and the new free
    equilibrium is stored back (the authors' protocol); without, from zeros."""
    trainer = small_trainer()
    x, y = toy_data()
    trainer.train_epoch(x, y)
    net = trainer.network
    start = torch.rand(100, net.n_state, generator=torch.Generator().manual_seed(9))
    particles = start.clone()
    error = trainer.evaluate(x, y, particles=particles, batch_size=30)
    expected = FixedSteps(steps=30).relax(net, start.clone(), net.input_drive(x)).state
    torch.testing.assert_close(particles, expected, rtol=0, atol=1e-6)
    assert error == pytest.approx(float((expected[:, net.output].argmax(1) != y).double().mean()))
    from_zero = FixedSteps(steps=30).relax(net, net.zero_state(100), net.input_drive(x)).state
    cold = trainer.evaluate(x, y)
    assert cold == pytest.approx(float((from_zero[:, net.output].argmax(1) != y).double().mean()))


def test_torch_sgd_through_grad_matches_the_built_in_update_bit_for_bit():
    """With a power-of-two rate the two orders of the same multiplications round alike."""
    x, y = toy_data()
    built_in = small_trainer(update=lambda n: MaskedSGD(n, LearningRates(lr=0.125)))
    optim = small_trainer(
        update=lambda n: OptimizerUpdate(n, lambda p: torch.optim.SGD(p, lr=0.125))
    )
    a, b = built_in.train_epoch(x, y), optim.train_epoch(x, y)
    for wa, wb in zip(built_in.network.weights, optim.network.weights, strict=True):
        assert torch.equal(wa, wb)
    assert torch.equal(built_in.network.biases, optim.network.biases)
    assert torch.equal(built_in.particles, optim.particles)
    # rates: from w_after - w_before here, so equal up to the rounding of that difference
    torch.testing.assert_close(a.layer_rates, b.layer_rates, rtol=1e-3, atol=0)


@pytest.mark.parametrize(
    "given",
    [
        lambda net: torch.optim.SGD,  # a class: its defaults, besides lr
        lambda net: lambda p: torch.optim.SGD(p, lr=0.125),  # a factory
        lambda net: torch.optim.SGD(net.parameters(), lr=0.125),  # an instance
    ],
    ids=["class", "factory", "instance"],
)
def test_optimizer_update_takes_a_class_a_factory_or_an_instance(given):
    x, y = toy_data()
    reference = small_trainer(update=lambda n: MaskedSGD(n, LearningRates(lr=0.125)))
    trainer = small_trainer(update=lambda n: OptimizerUpdate(n, given(n)))
    assert isinstance(trainer.update.optimizer, torch.optim.SGD)
    for group in trainer.update.optimizer.param_groups:  # the class: from SGD's default rate
        group["lr"] = 0.125
    reference.train_epoch(x, y)
    trainer.train_epoch(x, y)
    for a, b in zip(reference.network.weights, trainer.network.weights, strict=True):
        assert torch.equal(a, b)


def test_a_torch_optimiser_resumes_exactly(tmp_path):
    """The optimiser's momenta and step counts are in the trainer's state: stopping after
    one epoch and resuming from a saved state trains the same weights as no stop."""
    x, y = toy_data()

    def adam(net):
        return OptimizerUpdate(net, lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2))

    straight = small_trainer(update=adam)
    for _ in range(2):
        straight.train_epoch(x, y)
    first = small_trainer(update=adam)
    first.train_epoch(x, y)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = small_trainer(update=adam)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    resumed.train_epoch(x, y)
    for a, b in zip(straight.network.weights, resumed.network.weights, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(straight.network.biases, resumed.network.biases)


def test_optimizer_update_refuses_an_optimiser_of_other_parameters_in_one_line():
    net, other = Network(topology.layered([4, 3, 2])), Network(topology.layered([4, 3, 2]))
    with pytest.raises(EqpropError, match="not this network's parameters") as info:
        OptimizerUpdate(net, torch.optim.Adam([*net.parameters(), *other.parameters()]))
    assert "\n" not in str(info.value) and "3 tensor(s)" in str(info.value)
    with pytest.raises(EqpropError, match="got str$"):
        OptimizerUpdate(net, "adam")


def test_adam_learns_digits_and_never_touches_a_missing_edge():
    data = load_dataset("digits", "standard")
    sizes = [64, 40, 40, 10]
    net = Network(topology.icons(sizes, n=300, seed=0), seed=0)
    trainer = Trainer(
        net,
        RandomSign(1.0),
        OptimizerUpdate(net, lambda p: torch.optim.Adam(p, lr=2e-3)),
        free=FixedSteps(steps=30),
        nudged=FixedSteps(steps=8),
        nudging=GradientNudging(),
        n_train=len(data.train.x),
        batch_size=20,
    )
    missing = ~torch.as_tensor(net.topology.adjacency())
    for _ in range(3):
        trainer.train_epoch(data.train.x, data.train.y)
        assert torch.all(net.dense_weights()[missing] == 0)
    w = net.dense_weights()
    assert torch.equal(w, w.T)
    assert trainer.evaluate(data.held_out.x, data.held_out.y) < 0.25


@pytest.mark.parametrize("name", sorted(cfg.usable_optimizers().values()))
def test_every_optimiser_a_config_accepts_takes_a_training_batch(name):
    from eqprop.runs import build_network, build_trainer, load_data

    config = cfg.resolve(
        "digits",
        None,
        [f"update.optimizer={name.lower()}", "update.lr=0.01", "data.limit=40", "free.steps=10"],
    )
    assert config.update.optimizer == name  # names are case-insensitive, stored as the class's
    data = load_data(config, None)
    net = build_network(config)
    trainer = build_trainer(config, net, len(data.train.x))
    before = [w.clone() for w in net.weights]
    trainer.train_batch(data.train.x[:20], data.train.y[:20], torch.arange(20))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.weights, strict=True))


def test_optimizer_args_reach_the_optimiser():
    from eqprop.runs import build_network, build_update

    config = cfg.resolve(
        "digits",
        None,
        ["update.optimizer=SGD", "update.lr=0.1", "update.optimizer_args={weight_decay=0.5}"],
    )
    net = build_network(config)
    update = build_update(config, net)
    assert update.optimizer.defaults["weight_decay"] == 0.5
    before = [w.clone() for w in net.weights]
    zero = Estimate([torch.zeros_like(w) for w in net.weights], torch.zeros_like(net.biases), 1.0)
    update.apply(zero)  # no gradient: only the decay, w <- w - lr * wd * w
    for w, b in zip(net.weights, before, strict=True):
        torch.testing.assert_close(w, b * (1 - 0.1 * 0.5), rtol=1e-6, atol=0)
    adam = cfg.resolve(
        "digits", None, ["update.optimizer=adam", "update.optimizer_args={betas=[0.8, 0.9]}"]
    )
    assert build_update(adam, net).optimizer.defaults["betas"] == (0.8, 0.9)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["update.optimizer=rmsprop", "update.optimizer_args={betas=[0.8, 0.9]}"],
            "'betas', which torch.optim.RMSprop does not take; it takes alpha, eps, "
            "weight_decay, momentum, centered",
        ),
        (["update.optimizer_args={weight_decay=0.1}"], "not to update.optimizer = 'masked-sgd'"),
        (["update.optimizer=sgd", "update.optimizer_args={lr=0.1}"], "set it as update.lr"),
        (["update.optimizer=sgd", "update.optimizer_args=0.1"], "must be a table such as"),
        (
            ["update.optimizer=sgd", "update.optimizer_args={weight_decay=-1.0}"],
            "refused by torch.optim.SGD: Invalid weight_decay value: -1.0",
        ),
    ],
)
def test_bad_optimizer_args_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        cfg.resolve("digits", None, overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["LBFGS", "Optimizer", "SparseAdam", "Muon", "nope"])
def test_optimisers_that_cannot_update_are_refused_with_the_valid_ones(name):
    with pytest.raises(ConfigError, match="choose among: ASGD, .*Adam, .*SGD$"):
        cfg.resolve("digits", None, [f"update.optimizer={name}"])
