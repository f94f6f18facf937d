"""Masks that hold whatever touches the parameters: a ``torch.optim`` optimiser used directly
(with weight decay), ``load_state_dict`` of dense tensors, eqprop's own updates."""

import copy

import pytest
import torch

from eqprop import config as cfg
from eqprop import topology
from eqprop.data import load_dataset
from eqprop.estimators import RandomSign
from eqprop.network import Network
from eqprop.nudging import IconsNudging, Nudge
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import one_hot

#: torch.optim optimisers a user may run on ``net.parameters()``, each with weight decay
OPTIMISERS = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2},
    "Adam": {"lr": 2e-3, "weight_decay": 1e-2},
    "AdamW": {"lr": 2e-3, "weight_decay": 1e-1},
    "RMSprop": {"lr": 1e-3, "momentum": 0.5, "weight_decay": 1e-2},
    "Adagrad": {"lr": 1e-2, "weight_decay": 1e-2},
    "Adamax": {"lr": 2e-3, "weight_decay": 1e-2},
    "NAdam": {"lr": 2e-3, "weight_decay": 1e-2},
    "RAdam": {"lr": 2e-3, "weight_decay": 1e-2},
    "ASGD": {"lr": 0.05, "weight_decay": 1e-2},
    "Adadelta": {"lr": 1.0, "weight_decay": 1e-2},
}
SIZES = [64, 16, 16, 10]


def icons_network(seed: int = 0) -> Network:
    """A small layer-skipping network on the digits' 64 inputs: most pairs are missing."""
    return Network(topology.icons(SIZES, n=150, seed=1), seed=seed)


def missing_edges(net: Network) -> torch.Tensor:
    """True where the dense weight matrix has no edge."""
    return ~torch.as_tensor(net.topology.adjacency())


def digits(limit: int = 100):
    return load_dataset("digits", "standard", limit=limit)


def train_directly(net: Network, optimizer: torch.optim.Optimizer, epochs: int = 3) -> int:
    """EP by hand, as a user's own loop would do it: the raw estimate of every stored block
    (dense, so non-zero on missing edges too) as ``-grad``, then ``optimizer.step()``. Returns
    how many gradient entries fell on missing edges (so the test has something to hold)."""
    data = digits()
    free, nudged, beta = FixedSteps(steps=20), FixedSteps(steps=4), 1.0
    estimator = RandomSign(beta)
    generator = torch.Generator().manual_seed(0)
    off_mask = 0
    for _ in range(epochs):
        for x, y in zip(data.train.x.split(20), data.train.y.split(20), strict=True):
            base = net.input_drive(x)
            s = net.zero_state(len(x))
            free.relax(net, s, base)
            betas = estimator.betas(generator)
            target = one_hot(y, SIZES[-1], net.dtype)
            sb = nudged.relax(net, s.clone(), base, Nudge(IconsNudging(), betas[0], target))
            estimate = estimator.estimate(net, x, s, [sb.state], betas)
            for w, raw, mask in zip(net.weights, estimate.weights, net.masks, strict=True):
                w.grad = raw.mul(-estimate.scale)
                off_mask += int(torch.count_nonzero(w.grad * (1 - mask)))
            net.biases.grad = estimate.biases.mul(-estimate.scale)
            optimizer.step()
    return off_mask


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_optimiser_used_directly_with_weight_decay_keeps_every_missing_edge_zero(name):
    net = icons_network()
    missing = missing_edges(net)
    before = net.dense_weights().clone()
    optimizer = getattr(torch.optim, name)(net.parameters(), **OPTIMISERS[name])
    off_mask = train_directly(net, optimizer)
    assert off_mask > 1000, "the gradients reached missing edges: the masks had work to do"
    after = net.dense_weights()
    assert torch.all(after[missing] == 0)
    assert not torch.equal(after[~missing], before[~missing]), "it trained"
    assert torch.equal(after, after.T)


def test_a_copied_network_keeps_its_masks_too():
    net = copy.deepcopy(icons_network())
    train_directly(net, torch.optim.SGD(net.parameters(), lr=0.05, weight_decay=0.1), epochs=1)
    assert torch.all(net.dense_weights()[missing_edges(net)] == 0)


@pytest.mark.parametrize("assign", [False, True])
def test_load_state_dict_of_dense_tensors_keeps_the_mask(assign):
    net, source = icons_network(), icons_network(seed=5)
    dense = {k: torch.randn_like(v) for k, v in source.state_dict().items()}
    for block, key in zip(net.blocks, list(dense)[1:], strict=True):
        if block.is_diagonal:  # symmetric, as a diagonal block's weights are
            dense[key] = dense[key] + dense[key].T
    assert list(dense) == ["biases"] + [f"blocks_weights.{i}" for i in range(len(net.blocks))]
    net.load_state_dict(dense, assign=assign)
    missing = missing_edges(net)
    after = net.dense_weights()
    assert torch.all(after[missing] == 0)
    for w, loaded, mask in zip(net.weights, list(dense.values())[1:], net.masks, strict=True):
        assert torch.equal(w, loaded * mask)  # existing edges exactly as loaded
    # the step's products read the loaded tensors (assign=True replaces them)
    x = digits(5).train.x
    s = net.zero_state(len(x))
    h = net.drive(s.uniform_(0, 1), net.input_drive(x), torch.empty_like(s))
    u = torch.cat([x, s], 1)
    expected = (u @ after)[:, net.n_input :] + net.biases
    torch.testing.assert_close(h, expected)


@pytest.mark.parametrize(
    "overrides",
    [
        [],  # masked SGD: rate 0 on missing edges
        ["update.bits=6"],  # quantised masked SGD
        ["update.optimizer=sgd", "update.optimizer_args={momentum=0.9, weight_decay=0.1}"],
    ],
    ids=["masked-sgd", "quantized", "sgd"],
)
def test_eqprops_own_updates_keep_every_missing_edge_zero(overrides):
    from eqprop.runs import build_network, build_trainer

    config = cfg.resolve(
        "digits",
        None,
        [
            "topology.family=icons",
            f"topology.sizes={SIZES}",
            "topology.n=150",
            "free.steps=20",
            "update.lr=0.05",
            *overrides,
        ],
    )
    data = digits()
    net = build_network(config)
    trainer = build_trainer(config, net, len(data.train.x))
    for _ in range(3):
        trainer.train_epoch(data.train.x, data.train.y)
    assert torch.all(net.dense_weights()[missing_edges(net)] == 0)
