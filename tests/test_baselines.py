"""Baselines of Im, Patil & Branson: architectures, BP / FA / DTP, training protocol."""

from __future__ import annotations

import dataclasses
import math
import sys

import pytest
import torch
import torch.nn.functional as F

from eqprop.baselines import (
    ArchitectureConfig,
    Backprop,
    DifferenceTargetPropagation,
    DTPConfig,
    FeedbackAlignment,
    FeedforwardNetwork,
    TrainConfig,
    TrainingData,
    TrainResult,
    make_rule,
    train,
)
from eqprop.baselines.architectures import edge_key
from eqprop.data import load_dataset
from eqprop.errors import ConfigError, EqpropError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> TrainingData:
    """sklearn's digits, icons split: 1,150 train / 287 valid / 360 test, 8x8."""
    return TrainingData.from_dataset(load_dataset("digits", split="icons"))


def _net(
    architecture: str, depth: int = 3, activation: str = "sigmoid", **kw
) -> FeedforwardNetwork:
    conv = "Conv" in architecture
    shape = (1, 8, 8) if conv else (64,)
    return FeedforwardNetwork(
        ArchitectureConfig(architecture, depth, activation, **kw), shape, 10, seed=1
    )


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return torch.rand(n, 64, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def _grads(rule, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    for p in rule.parameters():
        p.grad = None
    rule.compute_gradients(x, y)
    return {name: p.grad.clone() for name, p in rule.network.named_parameters()}


# --- architectures ---------------------------------------------------------------------------


def test_dense_layer_receives_every_earlier_layer_and_plain_only_the_previous() -> None:
    dense, plain = _net("DN", depth=4, width=32), _net("NN", depth=4, width=32)
    assert dense.sources == ((), (0,), (0, 1), (0, 1, 2), (0, 1, 2, 3), (0, 1, 2, 3, 4))
    assert plain.sources == ((), (0,), (1,), (2,), (3,), (4,))
    for layer in range(1, 6):
        out_units = 10 if layer == 5 else 32
        for source in range(layer):
            in_units = 64 if source == 0 else 32
            assert dense.edge(layer, source).weight.shape == (out_units, in_units)
    assert len(dense.edges) == 1 + 2 + 3 + 4 + 5 and len(plain.edges) == 5
    _, states = dense.forward_pass(torch.rand(7, 64))
    assert [tuple(h.shape) for h in states] == [(7, 64)] + [(7, 32)] * 4 + [(7, 10)]


def test_dense_output_jacobian_wrt_h1_includes_the_direct_skip_weights() -> None:
    """d logits / d h_1 of a 3-hidden-layer DN equals the chain rule summed over all four paths
    h1->out, h1->h2->out, h1->h3->out and h1->h2->h3->out; with the paths through h2 and h3
    cut it is exactly the skip matrix W_{4,1}."""
    net = _net("DN", depth=3, width=16)
    x = torch.rand(1, 64)
    _, states = net.forward_pass(x)

    def logits_of(h1: torch.Tensor) -> torch.Tensor:
        hs = [states[0], h1.unsqueeze(0)]
        for layer in (2, 3, 4):
            hs.append(net.activate(layer, net.preactivation(layer, hs)))
        return hs[-1].squeeze(0)

    jac = torch.autograd.functional.jacobian(logits_of, states[1].detach().squeeze(0))
    w = {(t, s): net.edge(t, s).weight.detach() for t in range(1, 5) for s in net.sources[t]}
    d2 = torch.diag((states[2] * (1 - states[2])).detach().squeeze(0))  # sigmoid'
    d3 = torch.diag((states[3] * (1 - states[3])).detach().squeeze(0))
    dh2 = d2 @ w[(2, 1)]
    dh3 = d3 @ (w[(3, 1)] + w[(3, 2)] @ dh2)
    expected = w[(4, 1)] + w[(4, 2)] @ dh2 + w[(4, 3)] @ dh3
    torch.testing.assert_close(jac, expected, rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        net.edge(2, 1).weight.zero_()
        net.edge(3, 1).weight.zero_()
    jac_cut = torch.autograd.functional.jacobian(logits_of, states[1].detach().squeeze(0))
    torch.testing.assert_close(jac_cut, w[(4, 1)], rtol=1e-6, atol=1e-7)
    assert w[(4, 1)].abs().sum() > 0


def test_conv_networks_keep_the_image_size_with_depth_times_16_channels() -> None:
    for architecture in ("ConvNet", "DenseConvNet"):
        net = _net(architecture, depth=2, channels_per_depth=3)
        _, states = net.forward_pass(torch.rand(5, 64))
        assert [tuple(h.shape) for h in states] == [(5, 1, 8, 8), (5, 6, 8, 8), (5, 6, 8, 8)] + [
            (5, 10)
        ]
        assert net.edge(2, 1).weight.shape == (6, 6, 3, 3)
    assert ArchitectureConfig("ConvNet", 5).convolutional
    assert FeedforwardNetwork(ArchitectureConfig("ConvNet", 5), (1, 8, 8), 10).shapes[1] == (
        80,
        8,
        8,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"architecture": "ResNet"}, "architecture"),
        ({"depth": -1}, "depth"),
        ({"depth": 2.5}, "depth"),
        ({"activation": "tanh"}, "activation"),
        ({"width": 0}, "width"),
    ],
)
def test_architecture_config_rejects_bad_fields(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"ArchitectureConfig.{field}") as info:
        ArchitectureConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_other_configs_and_rule_names_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"TrainConfig.learning_rate must be a number in"):
        TrainConfig(learning_rate=0.0)
    with pytest.raises(ConfigError, match=r"TrainConfig.early_stop_start .* \[0, 10\]"):
        TrainConfig(early_stop_start=20, max_examples=10)
    with pytest.raises(ConfigError, match="DTPConfig.noise_std"):
        DTPConfig(noise_std=-1.0)
    with pytest.raises(ConfigError, match="rule must be one of BP, FA, DTP"):
        make_rule("EP", _net("NN"))


# --- feedback alignment ----------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["NN", "DN", "ConvNet", "DenseConvNet"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_fa_with_feedback_equal_to_forward_weights_gives_bp_gradients(
    architecture: str, activation: str
) -> None:
    x, y = _batch()
    net = _net(architecture, depth=3, activation=activation, width=24, channels_per_depth=2)
    fa = FeedbackAlignment(net, seed=5)
    assert set(fa.feedback) == set(net.edges.keys())  # every matrix, skip ones included
    for key, edge in net.edges.items():
        fa.feedback[key] = edge.weight.detach().clone()
    bp_grads, fa_grads = _grads(Backprop(net), x, y), _grads(fa, x, y)
    assert bp_grads.keys() == fa_grads.keys()
    for name in bp_grads:
        if "Conv" in architecture:  # conv2d_input vs autograd's conv backward: same math
            torch.testing.assert_close(fa_grads[name], bp_grads[name], rtol=1e-5, atol=1e-7)
        else:
            assert torch.equal(fa_grads[name], bp_grads[name]), name


def test_fa_with_random_feedback_differs_from_bp_below_the_output_only() -> None:
    x, y = _batch()
    net = _net("DN", depth=3, width=24)
    bp_grads, fa_grads = _grads(Backprop(net), x, y), _grads(FeedbackAlignment(net, seed=5), x, y)
    for name in bp_grads:
        same = torch.allclose(fa_grads[name], bp_grads[name])
        # output-layer weights and bias (the last edges and bias) see the true error
        into_output = name.startswith("edges.") and name.split(".")[1].endswith("to4")
        assert same == (into_output or name == "biases.3"), name


def _conv_loops(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution (stride 1, zero padding 1) by explicit sums over the kernel taps:
    ``out[n, o, i, j] = sum_{c, u, v} kernel[o, c, u, v] x_pad[n, c, i + u, j + v]``."""
    n, _, height, width = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    out = torch.zeros(n, kernel.shape[0], height, width, dtype=x.dtype)
    for u in range(3):
        for v in range(3):
            window = padded[:, :, u : u + height, v : v + width]
            out += torch.einsum("oc,ncij->noij", kernel[:, :, u, v], window)
    return out


def _conv_input_grad_loops(delta: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The error a convolution sends back to its input through ``kernel``, by explicit loops:
    ``e[n, c, p, q] = sum_{o, u, v} kernel[o, c, u, v] delta[n, o, p - u + 1, q - v + 1]``
    over the positions inside the image."""
    n, _, height, width = delta.shape
    out = torch.zeros(n, kernel.shape[1], height, width, dtype=delta.dtype)
    for p in range(height):
        for q in range(width):
            for u in range(3):
                for v in range(3):
                    i, j = p - u + 1, q - v + 1
                    if 0 <= i < height and 0 <= j < width:
                        out[:, :, p, q] += delta[:, :, i, j] @ kernel[:, :, u, v]
    return out


def _conv_weight_grad_loops(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """A convolution's weight gradient as the correlation of its input and its error:
    ``g[o, c, u, v] = sum_{n, i, j} delta[n, o, i, j] x_pad[n, c, i + u, j + v]``."""
    _, _, height, width = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    grad = torch.zeros(delta.shape[1], x.shape[1], 3, 3, dtype=x.dtype)
    for u in range(3):
        for v in range(3):
            window = padded[:, :, u : u + height, v : v + width]
            grad[:, :, u, v] = torch.einsum("noij,ncij->oc", delta, window)
    return grad


def _small_conv_net(architecture: str, activation: str) -> FeedforwardNetwork:
    """2 hidden conv layers of 2 channels on 1x4x4 images, 3 classes, in float64."""
    config = ArchitectureConfig(architecture, 2, activation, channels_per_depth=1)
    return FeedforwardNetwork(config, (1, 4, 4), 3, seed=2).double()


def _derivative(activation: str, a: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1 - s) if activation == "sigmoid" else (a > 0).to(a.dtype)


@pytest.mark.parametrize("architecture", ["ConvNet", "DenseConvNet"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("rule_name", ["BP", "FA"])
def test_bp_and_fa_conv_updates_equal_the_hand_computed_formula(
    architecture: str, activation: str, rule_name: str
) -> None:
    """A 2-hidden-layer (Dense)ConvNet: the output error ``e = softmax(logits) - onehot``
    (over the batch size) goes back through each edge's *feedback* kernel (FA: the fixed random
    one; BP: the forward weight itself), summed over every layer a source feeds, times the
    activation derivative; each weight's update is the correlation of its input with the
    error of its target layer. Computed here by explicit loops over positions and taps."""
    net = _small_conv_net(architecture, activation)
    generator = torch.Generator().manual_seed(4)
    x = torch.rand(5, 16, generator=generator, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    rule = make_rule(rule_name, net, seed=7)
    if rule_name == "FA":  # drawn in float32; this test runs in float64
        rule.feedback = {k: b.double() for k, b in rule.feedback.items()}
    grads = _grads(rule, x, y)
    if rule_name == "FA":
        feedback = rule.feedback
        assert all(not torch.equal(feedback[k], e.weight) for k, e in net.edges.items())
    else:
        feedback = {k: e.weight.detach() for k, e in net.edges.items()}

    with torch.no_grad():  # the forward pass by hand
        weights = {k: e.weight.detach() for k, e in net.edges.items()}
        h, pre = [x.reshape(5, 1, 4, 4)], [None]
        for layer in (1, 2):
            a = net.biases[layer - 1].detach() + sum(
                _conv_loops(h[s], weights[edge_key(layer, s)]) for s in net.sources[layer]
            )
            pre.append(a)
            h.append(torch.sigmoid(a) if activation == "sigmoid" else torch.relu(a))
        logits = net.biases[2].detach() + sum(
            h[s].flatten(1) @ weights[edge_key(3, s)].t() for s in net.sources[3]
        )
        error = {3: (torch.softmax(logits, 1) - F.one_hot(y, 3)) / 5}
        expected = {"biases.2": error[3].sum(0)}
        for s in net.sources[3]:
            expected[f"edges.{edge_key(3, s)}.weight"] = error[3].t() @ h[s].flatten(1)
        for layer in (2, 1):
            back = torch.zeros_like(h[layer])
            if layer in net.sources[3]:  # the output's edge from this layer: a matrix
                back += (error[3] @ feedback[edge_key(3, layer)]).reshape(back.shape)
            if layer == 1:  # the conv edge 1 -> 2
                back = back + _conv_input_grad_loops(error[2], feedback[edge_key(2, 1)])
            error[layer] = back * _derivative(activation, pre[layer])
            expected[f"biases.{layer - 1}"] = error[layer].sum((0, 2, 3)).reshape(-1, 1, 1)
            for s in net.sources[layer]:
                expected[f"edges.{edge_key(layer, s)}.weight"] = _conv_weight_grad_loops(
                    h[s], error[layer]
                )
    assert expected.keys() == grads.keys()
    for name, value in expected.items():
        torch.testing.assert_close(grads[name], value, rtol=1e-10, atol=1e-12, msg=name)


# --- target propagation ----------------------------------------------------------------------


def _train_dtp(
    rule: DifferenceTargetPropagation, params: list, data: TrainingData, epochs: int
) -> list[float]:
    """Adam on ``params`` with DTP's updates; returns the per-batch reconstruction loss."""
    optimizer = torch.optim.Adam(params, lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    history = []
    for _ in range(epochs):
        for batch in torch.randperm(len(data.train_y), generator=generator).split(128):
            optimizer.zero_grad()
            stats = rule.compute_gradients(data.train_x[batch], data.train_y[batch])
            optimizer.step()
            history.append(stats["reconstruction"])
    return history


@pytest.mark.parametrize("architecture", ["NN", "DN"])
def test_dtp_reconstruction_loss_decreases_during_training(
    architecture: str, digits: TrainingData
) -> None:
    """The inverses learn: with the forward weights fixed the reconstruction loss falls by more
    than 40%; after full DTP training (forward and inverses together) the learned inverses
    reconstruct the trained network's layers far better than freshly initialised ones."""
    net = FeedforwardNetwork(
        ArchitectureConfig(architecture, 3, "sigmoid", width=32), (64,), 10, seed=0
    )
    rule = DifferenceTargetPropagation(net, seed=0)
    if architecture == "DN":  # one inverse per hidden-to-hidden edge: 2->1, 3->1, 3->2
        assert set(rule.inverses.keys()) == {edge_key(2, 1), edge_key(3, 1), edge_key(3, 2)}
    inverse_params = [*rule.inverses.parameters(), *rule.inverse_biases.parameters()]
    history = _train_dtp(rule, inverse_params, digits, epochs=5)
    first, last = sum(history[:3]) / 3, sum(history[-3:]) / 3
    # measured about 0.47 x; the corruption noise itself sets a floor (0.32 here)
    assert last < 0.6 * first, (first, last)

    _train_dtp(rule, rule.parameters(), digits, epochs=10)
    x, y = digits.valid_x, digits.valid_y
    learned = rule.compute_gradients(x, y)["reconstruction"]
    fresh = DifferenceTargetPropagation(net, seed=1).compute_gradients(x, y)["reconstruction"]
    assert learned < 0.5 * fresh, (learned, fresh)  # measured 0.15 x (NN), 0.22 x (DN)


def test_dtp_targets_move_hidden_layers_against_the_loss() -> None:
    """A small target step makes the targets of the top hidden layer a gradient step:
    training one hidden layer on its target lowers the loss."""
    x, y = _batch(64)
    net = _net("NN", depth=1, width=24)
    rule = DifferenceTargetPropagation(net, seed=0, config=DTPConfig(target_step=0.1))
    loss_before = F.cross_entropy(net(x), y).item()
    optimizer = torch.optim.SGD(net.edge(1, 0).parameters(), lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        rule.compute_gradients(x, y)
        optimizer.step()
    assert F.cross_entropy(net(x), y).item() < loss_before


@pytest.mark.parametrize("architecture", ["ConvNet", "DenseConvNet"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_dtp_conv_targets_and_inverse_loss_equal_the_hand_computed_formulas(
    architecture: str, activation: str
) -> None:
    """A 2-hidden-layer (Dense)ConvNet under DTP, by hand with explicit convolution loops:

    - output edges get the true gradient of the cross-entropy;
    - top target (Lee et al.'s step 2) of every layer the output reads:
      ``t_l = h_l - eta W_{3,l}^T (softmax - onehot)``, the per-example gradient step;
    - difference correction through the inverse ``g(h) = f(conv(h, V) + c)`` of edge 1 -> 2:
      ``t_1 = h_1 + g(t_2) - g(h_2)`` (plus the step above where the output reads h_1);
    - each hidden layer descends ``mean_n ||h_l - t_l||^2`` with its inputs fixed;
    - the inverse descends ``mean_n ||g(f(W (h_1 + e) + b)) - (h_1 + e)||^2`` with the noise
      ``e`` drawn from the rule's generator, whose state the test copies beforehand."""
    net = FeedforwardNetwork(
        ArchitectureConfig(architecture, 2, activation, channels_per_depth=1), (1, 4, 4), 3, seed=2
    )
    config = DTPConfig(target_step=0.3, noise_std=0.2)
    rule = DifferenceTargetPropagation(net, seed=6, config=config)
    assert list(rule.inverses.keys()) == [edge_key(2, 1)]  # the only hidden-to-hidden edge
    generator = torch.Generator().manual_seed(4)
    x = torch.rand(5, 16, generator=generator)
    y = torch.tensor([0, 2, 1, 1, 0])
    noise_state = rule.state_dict()["noise_generator"]
    stats = rule.compute_gradients(x, y)
    grads = {name: p.grad for name, p in net.named_parameters()}

    def f(a: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(a) if activation == "sigmoid" else torch.relu(a)

    with torch.no_grad():
        w = {k: e.weight.detach() for k, e in net.edges.items()}
        b = [p.detach() for p in net.biases]
        inverse_kernel = rule.inverses[edge_key(2, 1)].weight.detach()
        inverse_bias = rule.inverse_biases[edge_key(2, 1)].detach()

        def g(h2: torch.Tensor) -> torch.Tensor:
            return f(_conv_loops(h2, inverse_kernel) + inverse_bias)

        h, pre = [x.reshape(5, 1, 4, 4)], [None]
        for layer in (1, 2):
            a = b[layer - 1] + sum(
                _conv_loops(h[s], w[edge_key(layer, s)]) for s in net.sources[layer]
            )
            pre.append(a)
            h.append(f(a))
        logits = b[2] + sum(h[s].flatten(1) @ w[edge_key(3, s)].t() for s in net.sources[3])
        error = (torch.softmax(logits, 1) - F.one_hot(y, 3)) / 5
        expected = {"biases.2": error.sum(0)}
        for s in net.sources[3]:
            expected[f"edges.{edge_key(3, s)}.weight"] = error.t() @ h[s].flatten(1)

        def step(layer: int) -> torch.Tensor:  # eta times the per-example gradient
            if layer not in net.sources[3]:
                return torch.zeros_like(h[layer])
            return config.target_step * (5 * error @ w[edge_key(3, layer)]).reshape(h[layer].shape)

        targets = {2: h[2] - step(2)}
        targets[1] = h[1] - step(1) + g(targets[2]) - g(h[2])
        layer_loss = 0.0
        for layer in (1, 2):
            layer_loss += (h[layer] - targets[layer]).pow(2).sum((1, 2, 3)).mean()
            delta = 2 * (h[layer] - targets[layer]) * _derivative(activation, pre[layer]) / 5
            expected[f"biases.{layer - 1}"] = delta.sum((0, 2, 3)).reshape(-1, 1, 1)
            for s in net.sources[layer]:
                expected[f"edges.{edge_key(layer, s)}.weight"] = _conv_weight_grad_loops(
                    h[s], delta
                )

        noise_generator = torch.Generator()
        noise_generator.set_state(noise_state)
        noisy = h[1] + config.noise_std * torch.randn(h[1].shape, generator=noise_generator)
        corrupted = f(pre[2] + _conv_loops(noisy - h[1], w[edge_key(2, 1)]))
        a_inv = _conv_loops(corrupted, inverse_kernel) + inverse_bias
        reconstructed = f(a_inv)
        reconstruction = (reconstructed - noisy).pow(2).sum((1, 2, 3)).mean()
        delta = 2 * (reconstructed - noisy) * _derivative(activation, a_inv) / 5

    assert expected.keys() == grads.keys()
    for name, value in expected.items():
        torch.testing.assert_close(grads[name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert stats["layer_loss"] == pytest.approx(layer_loss.item(), rel=1e-5)
    assert stats["reconstruction"] == pytest.approx(reconstruction.item(), rel=1e-5)
    torch.testing.assert_close(
        rule.inverses[edge_key(2, 1)].weight.grad,
        _conv_weight_grad_loops(corrupted, delta),
        rtol=1e-4,
        atol=1e-6,
    )
    torch.testing.assert_close(
        rule.inverse_biases[edge_key(2, 1)].grad,
        delta.sum((0, 2, 3)).reshape(-1, 1, 1),
        rtol=1e-4,
        atol=1e-6,
    )


# --- training --------------------------------------------------------------------------------


#: (rule, architecture, activation, depth, learning rate, asserted minimum test accuracy);
#: measured: 96.9, 94.4, 91.4, 95.6, 95.6, 96.4%. Plain networks for every rule, since a dense
#: network's direct input-to-output matrix alone is a linear classifier.
TRAINING_CASES = [
    ("BP", "NN", "relu", 3, 1e-3, 0.90),
    ("FA", "NN", "relu", 3, 1e-3, 0.85),
    ("DTP", "NN", "sigmoid", 2, 1e-2, 0.80),
    ("BP", "DN", "sigmoid", 3, 1e-2, 0.90),
    ("FA", "DN", "sigmoid", 3, 1e-2, 0.85),
    ("DTP", "DN", "sigmoid", 3, 1e-2, 0.85),
]


@pytest.mark.parametrize(("rule", "arch", "act", "depth", "lr", "minimum"), TRAINING_CASES)
def test_each_rule_trains_a_small_network_on_digits_well_above_chance(
    digits: TrainingData, rule: str, arch: str, act: str, depth: int, lr: float, minimum: float
) -> None:
    config = TrainConfig(
        learning_rate=lr, early_stop_start=11_500, patience=3, max_examples=11_500, eval_every=2_300
    )

    def run() -> tuple:
        net = FeedforwardNetwork(ArchitectureConfig(arch, depth, act, width=64), (64,), 10, seed=0)
        result = train(make_rule(rule, net, seed=0), digits, config)
        return result.evaluations, result.select()

    evaluations, chosen = run()
    assert chosen.test_accuracy > minimum, chosen  # chance is 10%
    assert evaluations == run()[0]  # deterministic with fixed seeds


def test_selection_from_a_longer_run_equals_a_run_with_that_starting_point(
    digits: TrainingData,
) -> None:
    net_config = ArchitectureConfig("NN", 2, "sigmoid", width=32)

    def run(start: int):
        net = FeedforwardNetwork(net_config, (64,), 10, seed=0)
        config = TrainConfig(
            learning_rate=3e-2,
            early_stop_start=start,
            patience=1,
            max_examples=23_000,
            eval_every=1_150,
        )
        return train(Backprop(net), digits, config)

    short, long = run(2_300), run(23_000)
    assert len(short.evaluations) < len(long.evaluations)  # early stopping did stop it
    assert short.evaluations == long.evaluations[: len(short.evaluations)]
    assert long.select(2_300) == short.select()
    # the test accuracy is measured exactly where the validation accuracy beats every earlier
    # checkpoint: the only checkpoints selection can return
    best = -1.0
    for evaluation in long.evaluations:
        assert math.isnan(evaluation.test_accuracy) == (evaluation.valid_accuracy <= best)
        best = max(best, evaluation.valid_accuracy)
    assert not any(math.isnan(long.select(s).test_accuracy) for s in (0, 2_300, 11_500, 23_000))
    with pytest.raises(ConfigError, match="exceeds the run's own"):
        short.select(23_000)


def test_training_data_requires_a_validation_split() -> None:
    with pytest.raises(ConfigError, match='split="icons"'):
        TrainingData.from_dataset(load_dataset("digits", split="standard"))


def test_input_shape_keeps_colour_channels_and_adds_one_to_grey_images(
    digits: TrainingData,
) -> None:
    assert digits.input_shape(True) == (1, 8, 8) and digits.input_shape(False) == (64,)
    rgb = dataclasses.replace(digits, image_shape=(3, 32, 32))  # CIFAR-10's
    assert rgb.input_shape(True) == (3, 32, 32) and rgb.input_shape(False) == (3072,)


def test_divergence_is_recorded_not_raised(digits: TrainingData) -> None:
    net = FeedforwardNetwork(ArchitectureConfig("NN", 2, "relu", width=32), (64,), 10, seed=0)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1e30)
    result = train(Backprop(net), digits, TrainConfig(max_examples=2_300, early_stop_start=0))
    assert result.diverged
    assert result.select().examples == 0


# --- progress ----------------------------------------------------------------------------------


def _small_run(digits: TrainingData, **kw) -> TrainResult:
    net = FeedforwardNetwork(ArchitectureConfig("NN", 1, "relu", width=16), (64,), 10, seed=0)
    config = TrainConfig(max_examples=2_300, early_stop_start=2_300, eval_every=1_150)
    return train(Backprop(net), digits, config, **kw)


def _same(a: TrainResult, b: TrainResult) -> None:
    assert a.evaluations == b.evaluations and a.diverged == b.diverged


@pytest.mark.parametrize(("n_train", "batch_size", "cap"), [(1150, 128, 2300), (10, 3, 25)])
def test_progress_total_is_the_batches_up_to_max_examples(
    n_train: int, batch_size: int, cap: int
) -> None:
    from eqprop.baselines.training import _batches_to_cap

    seen = batches = 0
    while seen < cap:  # train's loop without early stopping
        for start in range(0, n_train, batch_size):
            seen += min(batch_size, n_train - start)
            batches += 1
            if seen >= cap:
                break
    config = TrainConfig(max_examples=cap, early_stop_start=0, batch_size=batch_size)
    assert _batches_to_cap(n_train, config) == batches


def test_training_progress_off_a_terminal_is_plain_lines_on_stderr(
    digits: TrainingData, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eqprop.runs.progress

    quiet = _small_run(digits, progress=False)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(eqprop.runs.progress, "PLAIN_PROGRESS_EVERY_S", 0.0)  # a line every batch
    _same(_small_run(digits, desc="tiny"), quiet)
    out, err = capsys.readouterr()
    assert out == "" and "\r" not in err
    lines = err.splitlines()
    assert lines and all(line.startswith("tiny: batch ") for line in lines)
    assert lines[-1] == f"tiny: batch 18/18, valid {quiet.evaluations[-1].valid_accuracy:.2%}"


def test_training_progress_on_a_terminal_is_a_bar_on_stderr(
    digits: TrainingData, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = _small_run(digits, progress=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    _same(_small_run(digits, desc="tiny"), quiet)
    out, err = capsys.readouterr()
    assert out == "" and "\r" in err and "tiny:" in err and "0/18" in err


def test_run_progress_prints_one_line_per_finished_run_off_a_terminal(
    capsys: pytest.CaptureFixture,
) -> None:
    from eqprop.baselines.training import RunProgress

    progress = RunProgress(3, "grid", initial=1)
    progress.update("a done")
    progress.update()
    progress.close()
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and "\r" not in err and len(lines) == 2
    assert lines[0].startswith("grid: run 2/3 done: a done; 1 left, about ")
    assert lines[1] == "grid: run 3/3 done: none left"


def test_run_progress_on_a_terminal_is_a_bar_over_runs(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eqprop.baselines.training import RunProgress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    progress = RunProgress(2, "grid")
    progress.update("a done")
    progress.close()
    out, err = capsys.readouterr()
    assert out == "" and "\r" in err and "run" in err and "done:" not in err


# --- checkpoints -------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


def _checkpointed_rule(name: str, fail_after: int | None = None):
    """A small network's rule that counts its batches (``rule.calls``); with ``fail_after``,
    its training stops with an error after that many, as a crash would."""
    net = FeedforwardNetwork(ArchitectureConfig("DN", 2, "sigmoid", width=16), (64,), 10, seed=0)
    rule = make_rule(name, net, seed=0)
    rule.calls, compute = 0, rule.compute_gradients

    def counted(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        if fail_after is not None and rule.calls >= fail_after:
            raise _Interrupted
        rule.calls += 1
        return compute(x, y)

    rule.compute_gradients = counted
    return rule


@pytest.mark.parametrize("rule_name", ["BP", "FA", "DTP"])
@pytest.mark.parametrize(
    ("eval_every", "fail_after"),
    # 1,150 training examples in batches of 128: 9 batches an epoch; evaluations every 500
    # examples fall inside epochs, every 1,150 on an epoch's last batch (checkpoint at 9)
    [(500, 6), (500, 17), (1_150, 12)],
)
def test_an_interrupted_baseline_run_resumes_bit_for_bit(
    digits: TrainingData, tmp_path, rule_name: str, eval_every: int, fail_after: int
) -> None:
    config = TrainConfig(
        learning_rate=1e-2,
        early_stop_start=0,
        patience=50,
        max_examples=4_000,
        eval_every=eval_every,
    )
    path = tmp_path / "run.pt"
    whole_rule = _checkpointed_rule(rule_name)
    whole = train(whole_rule, digits, config, progress=False)
    with pytest.raises(_Interrupted):
        train(
            _checkpointed_rule(rule_name, fail_after),
            digits,
            config,
            progress=False,
            checkpoint=path,
        )
    saved = torch.load(path, weights_only=True)["trainer"]
    assert not saved["finished"] and 0 < saved["batches"] < fail_after
    if eval_every == 1_150:  # saved on the epoch's last batch: the next epoch not drawn yet
        assert saved["batches"] == 9 and saved["position"] == 9
    resumed_rule = _checkpointed_rule(rule_name)
    resumed = train(resumed_rule, digits, config, progress=False, checkpoint=path)
    assert resumed_rule.calls == whole_rule.calls - saved["batches"]  # it went on, not again
    assert repr(resumed.evaluations) == repr(whole.evaluations)  # NaN where no test was run
    assert 4_000 <= resumed.evaluations[-1].examples < 4_000 + 128  # ran on to the cap
    for mine, theirs in zip(resumed_rule.parameters(), whole_rule.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    # the finished run's file gives its result again without training, and is only read
    finished = path.read_bytes()
    again = train(
        _checkpointed_rule(rule_name, fail_after=0),
        digits,
        config,
        progress=False,
        checkpoint=path,
    )
    assert repr(again.evaluations) == repr(whole.evaluations)
    assert path.read_bytes() == finished


def test_a_baseline_checkpoint_of_other_settings_is_refused_in_one_line(
    digits: TrainingData, tmp_path
) -> None:
    path = tmp_path / "run.pt"
    config = TrainConfig(max_examples=1_000, early_stop_start=0, eval_every=500)
    train(_checkpointed_rule("BP"), digits, config, progress=False, checkpoint=path)
    other = TrainConfig(max_examples=1_000, early_stop_start=0, eval_every=500, seed=1)
    with pytest.raises(EqpropError, match=r"other training settings \(seed\); delete it") as err:
        train(_checkpointed_rule("BP"), digits, other, progress=False, checkpoint=path)
    assert "\n" not in str(err.value)
    with pytest.raises(EqpropError, match="not a checkpoint of this FA run"):
        train(_checkpointed_rule("FA"), digits, config, progress=False, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(EqpropError, match="is damaged"):
        train(_checkpointed_rule("BP"), digits, config, progress=False, checkpoint=path)
