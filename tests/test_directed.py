"""Tests of directed networks: DEEP dynamics and rule, asymmetric EP, pruning, propositions."""

from __future__ import annotations

import math

import pytest
import torch

from eqprop.data import logic_gate
from eqprop.directed import (
    DirectedConfig,
    DirectedNetwork,
    allowed_edges,
    apply_update,
    asymmetric_ep_update,
    check_proposition1,
    complete_network,
    deep_update,
    field,
    initial_state,
    jacobian,
    proposition2_holds,
    prune,
    relax,
    removal_probabilities,
    train,
)
from eqprop.errors import ConfigError

torch.set_num_threads(1)


def two_neuron_network(a: float, c: float, b0: float, b1: float) -> DirectedNetwork:
    """Neuron 0 (hidden) and neuron 1 (output), no inputs; node 2 is the bias neuron."""
    weights = torch.tensor(
        [[0.0, a, 0.0], [c, 0.0, 0.0], [b0, b1, 0.0]], dtype=torch.float64
    )  # W_01 = a, W_10 = c, biases b0, b1
    return DirectedNetwork(weights, allowed_edges(2, 0), n_inputs=0, n_outputs=1)


def test_complete_graph_has_the_papers_48_learnable_connections() -> None:
    allowed = allowed_edges(8, 2)
    assert allowed[:, 2:8].sum() == 48  # 6 free neurons x (7 other neurons + bias)
    assert allowed[:, :2].sum() == 12  # free neurons into the 2 inputs (leak only)
    assert not allowed[:2, :2].any() and not allowed[8, :2].any() and not allowed[:, 8].any()
    assert not allowed.diagonal().any()
    assert allowed_edges(8, 2, input_edges=False).sum() == 48
    net = complete_network(2, 5, 1, 0.5, torch.Generator().manual_seed(0))
    assert net.sparsity() == 0
    removed = net.with_weights(net.weights, net.mask & ~torch.eye(9, dtype=torch.bool).roll(1, 1))
    assert removed.sparsity().item() == pytest.approx(6 / 48)  # edges i -> i+1 into free ones


def test_one_step_of_eq1_matches_hand_computation() -> None:
    a, c, b0, b1, beta, y, eps = 0.3, -0.2, 0.1, 0.05, 0.5, 1.0, 0.1
    net = two_neuron_network(a, c, b0, b1)
    s0, s1 = 0.4, 0.6
    state = torch.tensor([[s0, s1, 1.0]], dtype=torch.float64)
    # eq. 1: ds_j = sum_i W_ij s_i + b_j - s_j sum_i W_ji - beta (s_j - y)[j output]
    v0 = c * s1 + b0 - s0 * a
    v1 = a * s0 + b1 - s1 * c - beta * (s1 - y)
    velocity = field(net, "deep", beta, torch.tensor([[y]]))(state)
    assert velocity[0].tolist() == pytest.approx([v0, v1, 0.0], abs=1e-15)
    stepped = relax(net, state, 1, eps, "deep", beta, torch.tensor([[y]]))
    assert stepped[0].tolist() == pytest.approx([s0 + eps * v0, s1 + eps * v1, 1.0], abs=1e-15)
    # the unit leak of asymmetric EP
    unit = field(net, "unit")(state)
    assert unit[0].tolist() == pytest.approx([c * s1 + b0 - s0, a * s0 + b1 - s1, 0.0])


def test_hard_sigmoid_clip_after_each_step() -> None:
    net = two_neuron_network(0.0, 0.0, 5.0, -5.0)  # strong biases push out of [0, 1]
    state = torch.tensor([[0.5, 0.5, 1.0]], dtype=torch.float64)
    assert relax(net, state, 1, 0.5)[0].tolist() == [1.0, 0.0, 1.0]


def test_deep_rule_on_two_neurons_matches_hand_computation() -> None:
    a, c, b0, b1, beta, y, eps = 0.3, -0.2, 0.1, 0.05, 0.5, 1.0, 0.1
    net = two_neuron_network(a, c, b0, b1)
    s = [(0.4, 0.6)]  # s(M_0), the free equilibrium stand-in
    for _ in range(2):  # M_beta = 2 nudged Euler steps of eq. 1, by hand
        h, o = s[-1]
        dh = c * o + b0 - h * a
        do = a * h + b1 - o * c - beta * (o - y)
        s.append((h + eps * dh, o + eps * do))
    (h0, o0), (h1, o1), (h2, o2) = s
    n = 2 * beta  # M_beta * beta
    expected_w01 = (h1 * (o1 - o0) + h2 * (o2 - o1)) / n  # s_i(m) (s_j(m) - s_j(m - 1))
    expected_w10 = (o1 * (h1 - h0) + o2 * (h2 - h1)) / n
    expected_b0 = ((h1 - h0) + (h2 - h1)) / n
    expected_b1 = ((o1 - o0) + (o2 - o1)) / n
    start = torch.tensor([[h0, o0, 1.0]], dtype=torch.float64)
    path = relax(net, start, 2, eps, "deep", beta, torch.tensor([[y]]), keep_trajectory=True)
    update = deep_update(path, beta)
    assert update[0, 1].item() == pytest.approx(expected_w01, rel=1e-12)
    assert update[1, 0].item() == pytest.approx(expected_w10, rel=1e-12)
    assert update[2, 0].item() == pytest.approx(expected_b0, rel=1e-12)
    assert update[2, 1].item() == pytest.approx(expected_b1, rel=1e-12)
    # apply: W <- W + lr (dW - l1 sign W), masked: nothing appears on absent edges
    stepped = apply_update(net, update, lr=0.5, l1=0.01)
    assert stepped.weights[0, 1].item() == pytest.approx(a + 0.5 * (expected_w01 - 0.01))
    assert stepped.weights[1, 0].item() == pytest.approx(c + 0.5 * (expected_w10 + 0.01))
    assert stepped.weights[0, 0] == 0 and stepped.weights[:, 2].abs().sum() == 0


def test_deep_rule_averages_over_the_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    path = torch.rand(4, 3, 5, generator=generator, dtype=torch.float64)  # M_beta=3, B=3
    batched = deep_update(path, 0.7)
    singles = torch.stack([deep_update(path[:, b : b + 1], 0.7) for b in range(3)]).mean(0)
    assert torch.allclose(batched, singles, rtol=1e-13)


def test_asymmetric_ep_rule() -> None:
    free = torch.tensor([[0.2, 0.5, 1.0], [0.4, 0.1, 1.0]], dtype=torch.float64)
    nudged = torch.tensor([[0.3, 0.7, 1.0], [0.4, 0.0, 1.0]], dtype=torch.float64)
    update = asymmetric_ep_update(free, nudged, 2.0)
    # dW_ij = mean_b s_i^0 (s_j^beta - s_j^0) / beta
    assert update[0, 1].item() == pytest.approx((0.2 * 0.2 + 0.4 * -0.1) / 2 / 2)
    assert update[2, 0].item() == pytest.approx((0.1 + 0.0) / 2 / 2)


def test_proposition1_sum_of_states_is_invariant() -> None:
    generator = torch.Generator().manual_seed(1)
    net = complete_network(2, 5, 1, 0.5, generator)
    # positive weights keep states >= 0 and so (the sum being conserved) below 1: no clipping
    net = net.with_weights(net.weights.abs())
    s = 0.15 * torch.rand(3, 9, generator=generator, dtype=torch.float64)
    check = check_proposition1(net, s, n_steps=1000, eps=0.01)
    assert not check.clipping_active
    assert check.max_relative_drift < 1e-9
    # the states do move, and with the inputs and bias active the sum is not conserved
    silent = s.clone()
    silent[:, [0, 1, 8]] = 0.0
    assert field(net, "deep")(silent).abs().max() > 1e-2
    assert field(net, "deep")(s).sum(dim=-1).abs().min() > 1e-2


def test_proposition1_reports_clipping() -> None:
    net = complete_network(2, 5, 1, 3.0, torch.Generator().manual_seed(2))
    s = torch.full((1, 9), 0.5, dtype=torch.float64)
    assert check_proposition1(net, s, n_steps=200, eps=0.1).clipping_active


def numerical_jacobian(net: DirectedNetwork) -> torch.Tensor:
    """Central differences of the free part of eq. 1 (linear, so exact up to rounding)."""
    velocity = field(net, "deep")
    base = torch.full((1, net.n_neurons + 1), 0.5, dtype=torch.float64)
    columns = []
    for k in range(net.n_inputs, net.n_neurons):
        delta = torch.zeros_like(base)
        delta[0, k] = 1e-4
        columns.append((velocity(base + delta) - velocity(base - delta))[0, net.free] / 2e-4)
    return torch.stack(columns, dim=-1)


def test_stability_checker_agrees_with_jacobian_eigenvalues() -> None:
    generator = torch.Generator().manual_seed(3)
    n_stable = 0
    for _ in range(300):
        net = complete_network(2, 4, 1, 0.4, generator)
        # strong positive edges into the inputs give large leaks, so that many networks pass
        weights = net.weights.clone()
        weights[:, :2] += 1.5 * torch.rand(8, 2, generator=generator, dtype=torch.float64)
        net = net.with_weights(weights)
        numeric = numerical_jacobian(net)
        assert torch.allclose(jacobian(net), numeric, atol=1e-9)
        if proposition2_holds(net):
            n_stable += 1
            assert torch.linalg.eigvals(numeric).real.max() < 0
    assert n_stable >= 30  # the condition was exercised


def test_proposition2_on_batched_networks_and_counterexample() -> None:
    net = complete_network(2, 3, 1, 1.0, torch.Generator().manual_seed(4), n_networks=7)
    assert proposition2_holds(net).shape == (7,)
    # a negative outgoing sum (anti-leak) makes neuron 2 unstable and fails the condition
    weights = torch.zeros(7, 7, dtype=torch.float64)
    weights[2, 3] = -1.0
    single = DirectedNetwork(weights, allowed_edges(6, 2), 2, 1)
    assert not proposition2_holds(single)
    assert torch.linalg.eigvals(jacobian(single)).real.max() > 0


def test_removal_probabilities_follow_eq3() -> None:
    net = complete_network(2, 2, 1, 0.5, torch.Generator().manual_seed(5))
    p = removal_probabilities(net, temperature=0.2)
    column = 3  # a free neuron: incoming from 0, 1, 2, 4 and the bias 5
    incoming = [0, 1, 2, 4, 5]
    boltzmann = [math.exp(-abs(net.weights[i, column].item()) / 0.2) for i in incoming]
    for i, value in zip(incoming, boltzmann, strict=True):
        assert p[i, column].item() == pytest.approx(value / sum(boltzmann), rel=1e-12)
    assert p[3, column] == 0 and p[[0, 1, 5], 0].abs().sum() == 0  # only free -> input
    assert torch.allclose(p[:, :5].sum(dim=0), torch.ones(5, dtype=torch.float64))
    assert p[:, 5].abs().sum() == 0  # nothing into the bias neuron


def test_pruning_removes_only_weak_weights_at_eq3_frequencies() -> None:
    generator = torch.Generator().manual_seed(6)
    net = complete_network(2, 3, 1, 0.2, generator)
    threshold, temperature, draws = 0.1, 0.05, 20_000
    weak = net.mask & (net.weights.abs() < threshold)
    assert 5 <= weak.sum() < net.mask.sum()  # both kinds present
    batch = DirectedNetwork(net.weights.expand(draws, -1, -1), net.mask.expand(draws, -1, -1), 2, 1)
    uniform = torch.rand(batch.weights.shape, generator=generator, dtype=torch.float64)
    removed = batch.mask & ~prune(batch, threshold, temperature, uniform).mask
    assert not (removed & ~weak).any()  # strong weights never go
    frequency = removed.double().mean(dim=0)
    p = torch.where(weak, removal_probabilities(net, temperature), 0.0)
    sigma = (p * (1 - p) / draws).sqrt()
    assert ((frequency - p).abs() <= 5 * sigma + 1e-12).all()
    assert p[weak].min() > 0.01  # the comparison is not between zeros


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="^beta must be non-zero"):
        DirectedConfig(beta=0.0)
    with pytest.raises(ConfigError, match="^rule must be one of"):
        DirectedConfig(rule="backprop")
    with pytest.raises(ConfigError, match="^eps must be in"):
        DirectedConfig(eps=1.5)
    with pytest.raises(ConfigError, match="^temperature must be > 0"):
        DirectedConfig(temperature=0.0)
    with pytest.raises(ConfigError, match="^batch_size must be <= 4"):
        train(DirectedConfig(batch_size=5), *logic_gate("AND"), seeds=[0])


def test_deep_learns_and_with_pruning_bookkeeping() -> None:
    config = DirectedConfig(epochs=100, free_steps=200, init_scale=0.5, beta=2.0, lr=10.0)
    result = train(config, *logic_gate("AND"), seeds=[0, 1, 2])
    assert result.mse.shape == (3, 101)
    assert result.success.all() and (result.max_error < 0.5).all()
    assert (result.converged_epoch >= 0).all() and (result.diverged_at == -1).all()
    assert (result.sparsity == 0).all()
    sparse = train(
        DirectedConfig(epochs=20, l1=0.05, prune_threshold=0.5, temperature=1.0),
        *logic_gate("OR"),
        seeds=[0],
    )
    assert sparse.sparsity.item() > 0.3
    assert (sparse.network.weights[~sparse.network.mask] == 0).all()


def test_runs_are_independent_of_their_companions() -> None:
    config = DirectedConfig(epochs=30, batch_size=1, prune_threshold=0.05, l1=1e-3)
    x, y = logic_gate("XOR")
    together = train(config, x, y, seeds=[7, 8])
    alone = train(config, x, y, seeds=[8])
    assert torch.equal(together.mse[1], alone.mse[0])
    assert torch.equal(together.network.mask[1], alone.network.mask[0])


def test_divergence_is_detected_per_run_not_raised() -> None:
    config = DirectedConfig(epochs=5, lr=1e308, beta=1e-300)  # overflows some runs
    x, y = logic_gate("XOR")
    result = train(config, x, y, seeds=[0, 1, 2, 3, 4, 5])
    bad = result.diverged_at >= 0
    assert bad.any() and not bad.all()
    assert result.mse[bad, 1:].isnan().all() and not result.success[bad].any()
    assert result.mse[~bad].isfinite().all()
    survivor = int((~bad).nonzero()[0])
    alone = train(config, x, y, seeds=[survivor])
    assert torch.equal(result.mse[survivor], alone.mse[0])  # unaffected by the others


def test_initial_state_clamps_inputs_and_bias() -> None:
    net = complete_network(2, 1, 1, 0.1, torch.Generator().manual_seed(0), n_networks=3)
    x, _ = logic_gate("XOR")
    s = initial_state(net, x)
    assert s.shape == (3, 4, 5)
    assert torch.equal(s[0, :, :2], x) and (s[..., -1] == 1).all() and (s[..., 2:4] == 0).all()


def test_normal_initial_weights_and_unchanged_uniform_ones() -> None:
    net = complete_network(2, 5, 1, 0.05, torch.Generator().manual_seed(0), 400, False, "normal")
    allowed = allowed_edges(8, 2, input_edges=False)
    values = net.weights[:, allowed]
    assert (net.weights[:, ~allowed] == 0).all()
    assert values.mean().abs() < 0.002 and values.std().item() == pytest.approx(0.05, rel=0.02)
    assert (values.abs() > 0.1).any()  # unbounded tails, not a uniform of half-width 0.05
    uniform = complete_network(2, 5, 1, 0.5, torch.Generator().manual_seed(1))
    draws = torch.rand(9, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(uniform.weights, (2.0 * draws - 1.0) * 0.5 * allowed_edges(8, 2))
    with pytest.raises(ConfigError, match="^distribution must be one of"):
        complete_network(2, 5, 1, 0.5, torch.Generator(), distribution="cauchy")


def test_initial_state_with_given_free_states() -> None:
    net = complete_network(2, 1, 1, 0.1, torch.Generator().manual_seed(0), n_networks=3)
    x, _ = logic_gate("XOR")
    free = torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s = initial_state(net, x, free)
    assert torch.equal(s[..., :2], x.expand(3, -1, -1).double())
    assert torch.equal(s[..., 2:4], free) and (s[..., -1] == 1).all()


def test_column_normalisation_counts_absent_sources_as_weight_zero() -> None:
    net = complete_network(2, 2, 1, 0.5, torch.Generator().manual_seed(5), input_edges=False)
    column, temperature = 3, 0.2
    mask = net.mask.clone()
    mask[4, column] = False  # a pruned connection 4 -> 3
    net = net.with_weights(net.weights, mask)
    p = removal_probabilities(net, temperature, over="column")
    # all 6 sources of the column: 0, 1, 2 and the bias 5 present, the self-loop 3 and the
    # pruned 4 absent, each absent one adding exp(0) = 1 to the sum
    present = [0, 1, 2, 5]
    boltzmann = [math.exp(-abs(net.weights[i, column].item()) / temperature) for i in present]
    total = sum(boltzmann) + 2.0
    for i, value in zip(present, boltzmann, strict=True):
        assert p[i, column].item() == pytest.approx(value / total, rel=1e-12)
    assert p[3, column] == 0 and p[4, column] == 0
    assert p[:, column].sum().item() == pytest.approx(sum(boltzmann) / total)
    over_present = removal_probabilities(net, temperature)
    assert over_present[:, column].sum().item() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="^over must be one of"):
        removal_probabilities(net, temperature, over="row")


def test_pruning_without_permanent_removal_zeroes_and_lets_weights_regrow() -> None:
    net = complete_network(2, 3, 1, 0.2, torch.Generator().manual_seed(6), input_edges=False)
    uniform = torch.zeros_like(net.weights)  # every weak connection is removed
    weak = net.mask & (net.weights.abs() < 0.1)
    assert weak.sum() >= 5
    kept = prune(net, 0.1, 0.05, uniform, permanent=False)
    assert torch.equal(kept.mask, net.mask)
    assert (kept.weights[weak] == 0).all()
    assert torch.equal(kept.weights[~weak], net.weights[~weak])
    gone = prune(net, 0.1, 0.05, uniform)
    assert torch.equal(gone.mask, net.mask & ~weak)
    step = torch.ones_like(net.weights)
    assert (apply_update(kept, step, lr=0.01, l1=0.0).weights[weak] == 0.01).all()  # regrown
    assert (apply_update(gone, step, lr=0.01, l1=0.0).weights[weak] == 0).all()


def test_state_init_scale_sets_the_start_of_the_first_phase() -> None:
    x, y = logic_gate("AND")  # targets 0, 0, 0, 1
    zero = dict(epochs=1, init_scale=0.0, lr=1e-12, free_steps=5, nudged_steps=1)  # s stays
    result = train(DirectedConfig(**zero, state_init_scale=0.1), x, y, seeds=[0, 1])
    # each example's output starts in [0, 0.1): (s - 0)^2 < 0.01 three times, (1 - s)^2 > 0.81
    assert ((result.mse > 0.81 / 4) & (result.mse < 1.03 / 4)).all()
    assert result.mse[0, 0] != result.mse[0, 1]  # drawn afresh for the final evaluation
    assert result.mse[0, 0] != result.mse[1, 0]  # and per run
    plain = train(DirectedConfig(**zero), x, y, seeds=[0])
    assert plain.mse[0, 0] == 0.25 and plain.mse[0, 1].item() == pytest.approx(0.25, abs=1e-9)
    with pytest.raises(ConfigError, match="^state_init_scale must be in"):
        DirectedConfig(state_init_scale=1.5)


def test_regrowth_mode_counts_zero_weights_as_absent() -> None:
    config = DirectedConfig(
        epochs=30, l1=1e-3, prune_threshold=0.05, input_edges=False, prune_permanent=False
    )
    result = train(config, *logic_gate("OR"), seeds=[0, 1])
    net = result.network
    allowed = allowed_edges(8, 2, input_edges=False)
    assert torch.equal(net.mask, allowed & (net.weights != 0))
    zeros = (net.weights[:, :, 2:8] == 0) & allowed[:, 2:8]
    assert zeros.any()
    assert torch.allclose(result.sparsity, zeros.sum(dim=(-2, -1)).double() / 48, rtol=1e-12)


def test_new_config_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match="^init_distribution must be one of"):
        DirectedConfig(init_distribution="laplace")
    with pytest.raises(ConfigError, match="^prune_normalisation must be one of"):
        DirectedConfig(prune_normalisation="row")
