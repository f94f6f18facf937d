"""Removing the intralayer and skip edges mid-training (``topology.remove_after``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqprop import config as cfg
from eqprop import topology
from eqprop.errors import ConfigError
from eqprop.estimators import RandomSign
from eqprop.metrics import held_out_error
from eqprop.network import Network
from eqprop.nudging import IconsNudging
from eqprop.relaxation.fixed import FixedSteps
from eqprop.topology import ADJACENT
from eqprop.training import Trainer
from eqprop.updates import LearningRates, MaskedSGD

SIZES = (6, 5, 5, 3)


def _net(layout: str = "auto") -> Network:
    topo = topology.icons(list(SIZES), n=12, mode="add", seed=3)
    return Network(topo, seed=1, dtype=torch.float64, layout=layout)


def _adjacency(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """Brute force from the edge list: the 0/1 matrices of the adjacent-layer edges and of
    every other edge, both symmetric, N x N (inputs included)."""
    n = net.topology.n_neurons
    adjacent, other = np.zeros((n, n)), np.zeros((n, n))
    for (i, j), kind in zip(net.topology.edges, net.topology.kinds, strict=True):
        target = adjacent if kind == ADJACENT else other
        target[i, j] = target[j, i] = 1.0
    return adjacent, other


def test_keep_adjacent_only_zeroes_exactly_the_non_adjacent_edges():
    net = _net()
    adjacent, other = _adjacency(net)
    assert other.sum() > 0
    before = net.dense_weights().numpy().copy()
    net.keep_adjacent_only()
    after = net.dense_weights().numpy()
    np.testing.assert_array_equal(after, before * adjacent)
    masks = net.dense_weights(net.masks).numpy()
    np.testing.assert_array_equal(masks, adjacent)


def _trainer(net: Network, remove_after: int | None, seed: int = 0) -> Trainer:
    return Trainer(
        net,
        RandomSign(beta=1.0),
        MaskedSGD(net, LearningRates(lr=0.2)),
        free=FixedSteps(eps=0.5, steps=15),
        nudged=FixedSteps(eps=0.5, steps=4),
        nudging=IconsNudging(),
        n_train=40,
        batch_size=10,
        seed=seed,
        remove_after=remove_after,
    )


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(40, SIZES[0], generator=g, dtype=torch.float64), torch.arange(40) % 3


def test_after_removal_training_equals_the_layered_network_from_the_same_weights():
    x, y = _data()
    net = _net()
    trainer = _trainer(net, remove_after=1)
    trainer.train_epoch(x, y)
    adjacent, other = _adjacency(net)
    assert np.abs(net.dense_weights().numpy() * other).sum() > 0  # trained with the skips

    # an independent run of epoch 2: the plain layered network, given the masked weights,
    # the biases, the particles and the generator state of the trainer after epoch 1
    layered = Network(topology.layered(list(SIZES)), seed=0, dtype=torch.float64)
    dense = torch.as_tensor(net.dense_weights().numpy() * adjacent)
    edges = layered.topology.edges
    with torch.no_grad():
        for w, new in zip(
            layered.weights,
            layered.from_edges(dense[edges[:, 0], edges[:, 1]].numpy()),
            strict=True,
        ):
            w.copy_(new)
        layered.biases.copy_(net.biases)
    reference = _trainer(layered, remove_after=None)
    reference.particles.copy_(trainer.particles)
    reference.generator.set_state(trainer.generator.get_state())
    reference.epoch = 1

    trainer.train_epoch(x, y)
    reference.train_epoch(x, y)
    np.testing.assert_array_equal(net.dense_weights().numpy() * other, 0.0)
    np.testing.assert_allclose(
        net.dense_weights().numpy(), layered.dense_weights().numpy(), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(trainer.particles, reference.particles, rtol=0, atol=1e-12)


def test_a_trainer_restored_after_the_removal_continues_bit_for_bit():
    x, y = _data()
    straight = _trainer(_net(), remove_after=1)
    for _ in range(3):
        straight.train_epoch(x, y)

    first = _trainer(_net(), remove_after=1)
    first.train_epoch(x, y)
    first.train_epoch(x, y)
    state = first.state_dict()
    resumed = _trainer(_net(), remove_after=1)  # a fresh network, with all its edges
    resumed.load_state_dict(state)
    assert resumed.removed
    resumed.train_epoch(x, y)
    for a, b in zip(straight.network.weights, resumed.network.weights, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(straight.particles, resumed.particles)


def test_remove_after_needs_edges_to_remove():
    with pytest.raises(ConfigError, match="the 'layered' family has none"):
        cfg.from_dict(cfg.preset("digits")).override({"topology.remove_after": 1})
    with pytest.raises(ConfigError, match="remove_after"):
        cfg.from_dict(cfg.preset("icons-skip")).override({"topology.remove_after": -1})


def test_smoke_study_writes_the_table_of_its_runs(tmp_path):
    from eqprop.experiments import driver, experiment, skip_removal
    from eqprop.runs import read_config, read_metrics

    assert experiment("skip-removal") is skip_removal
    results = driver.run(skip_removal, "smoke", tmp_path, None)
    assert (tmp_path / "errors.png").stat().st_size < 300_000
    text = results.read_text()
    names = [name for name, _ in skip_removal.planned("smoke")]
    assert len(names) == 9
    removed = read_config(tmp_path / "add-remove-s0").topology.remove_after
    assert removed == skip_removal.REMOVE_AFTER["smoke"] == 2
    assert read_config(tmp_path / "add-s1").topology.family == "icons-add"

    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == skip_removal.EPOCHS["smoke"]
    assert rows[2].startswith("| 3 (first without skips) |")
    # the last row's held-out add-remove cell is the mean ± sd of the three runs' metrics
    last = [held_out_error(read_metrics(tmp_path / f"add-remove-s{s}")[-1]) for s in (0, 1, 2)]
    mean, sd = 100 * np.mean(last), 100 * np.std(last, ddof=1)
    assert rows[-1].split(" | ")[-1].rstrip(" |") == f"{mean:.2f} ± {sd:.2f}%"
    claims = text.split("## The paper's claims")[1]
    assert claims.count("**not yet measured**") == len(skip_removal.CLAIMS)  # smoke scale
    assert "held-out error add-remove" in claims  # measured all the same

    # after the removal the runs' non-adjacent weights are exactly zero, before it not
    from eqprop.saved import load_run

    net = load_run(tmp_path / "add-remove-s0").network
    adjacent, other = _adjacency(net)
    assert np.abs(net.dense_weights().double().numpy() * other).max() == 0.0
    kept = load_run(tmp_path / "add-s0").network
    _, other_kept = _adjacency(kept)
    assert np.abs(kept.dense_weights().double().numpy() * other_kept).max() > 0.0
