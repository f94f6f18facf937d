"""Target-linked hidden neurons: the nudged step against its formula, written out densely in
float64 (independent of the block plan and of the kernels), the feature off, the sign of
beta, the untouched free phase, determinism, config errors, and the study at smoke scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from md_tables import claim_verdicts, table_rows
from nudge_case import SIZES, random_case

from eqprop import config as cfg
from eqprop import topology
from eqprop.errors import ConfigError
from eqprop.estimators import RandomSign
from eqprop.experiments import experiment, hidden_nudge, runner
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import NOT_YET
from eqprop.metrics import held_out_error
from eqprop.network import Network
from eqprop.nudging import IconsNudging, Nudge, TargetLinked
from eqprop.relaxation.fixed import FixedSteps
from eqprop.runs import read_layer_rates, read_metrics
from eqprop.training import Trainer
from eqprop.updates import LearningRates, MaskedSGD

#: hidden layer 1 has 5 neurons, layer 2 has 4: fraction 0.6 links round(3.0) = 3 and
#: round(2.4) = 2 of them, which are state indices 0..2 and 5..6 (layer 1 starts at 0,
#: layer 2 at 5, the outputs at 9)
FRACTION, LINKED = 0.6, {1: range(0, 3), 2: range(5, 7)}
OUTPUTS = range(9, 12)
EPS = 0.3


def section(nudging="icons", hidden_beta=0.5, seed=7, layers=(1, 2)) -> cfg.NudgedSection:
    return cfg.NudgedSection(
        nudging=nudging,
        hidden_layers=layers,
        hidden_fraction=FRACTION,
        hidden_beta=hidden_beta,
        hidden_seed=seed,
    )


def setup(seed=0):
    return random_case(topology.layered(SIZES), seed)


def codes_by_definition(seed: int) -> dict[int, torch.Tensor]:
    """P_l as docs/science.md defines them: one (n_out, k_l) uniform [0, 1) float64 matrix
    per linked layer, in increasing l, from a generator seeded with the seed."""
    g = torch.Generator().manual_seed(seed)
    return {
        layer: torch.rand(3, len(LINKED[layer]), generator=g, dtype=torch.float64)
        for layer in (1, 2)
    }


def dense_drive(net, x, s):
    """W rho(s) + W_in x + b from the dense matrix."""
    u = torch.cat([x, s.clamp(0, 1)], 1)
    return (u @ net.dense_weights())[:, net.n_input :] + net.biases


def one_step(net, x, s, nudging, beta, target, eps=EPS):
    nudge = Nudge(nudging, beta, target)
    return FixedSteps(eps=eps, steps=1).relax(net, s.clone(), net.input_drive(x), nudge).state


def pull_groups(target, beta, hidden_beta, codes):
    """(indices, target, signed beta) of the outputs, then of each linked layer."""
    groups = [(list(OUTPUTS), target, beta)]
    for layer, idx in LINKED.items():
        groups.append((list(idx), target @ codes[layer], hidden_beta * beta))
    return groups


@pytest.mark.parametrize("beta", [1.0, -1.0, 0.37, -2.5])
def test_icons_hidden_step_is_the_formula(beta):
    """s' = s + eps (W rho(s) + b - s); s'_G += 2 eps beta_G (t_G - s'_G) for the outputs
    (t = d, beta_G = beta) and each linked layer (t = d P_l, beta_G = hidden_beta beta);
    s = clip(s')."""
    net, x, s, target = setup()
    expected = s + EPS * (dense_drive(net, x, s) - s)
    for idx, t, b in pull_groups(target, beta, 0.5, codes_by_definition(7)):
        expected[:, idx] = expected[:, idx] + 2 * EPS * b * (t - expected[:, idx])
    got = one_step(net, x, s, section().scheme(net), beta, target)
    torch.testing.assert_close(got, expected.clamp(0, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", [1.0, -0.6])
def test_gradient_hidden_step_is_the_formula(beta):
    """s = clip(s + eps (W rho(s) + b - s) - eps beta_G (s_G - t_G)), all from the old state."""
    net, x, s, target = setup(1)
    expected = s + EPS * (dense_drive(net, x, s) - s)
    for idx, t, b in pull_groups(target, beta, 0.5, codes_by_definition(7)):
        expected[:, idx] -= EPS * b * (s[:, idx] - t)
    got = one_step(net, x, s, section("gradient").scheme(net), beta, target)
    torch.testing.assert_close(got, expected.clamp(0, 1), rtol=1e-12, atol=1e-12)


def test_sign_follows_beta_at_the_paper_values():
    """eps = 1/2, hidden_beta = 1: at beta = +1 the linked neurons land on their codes (as the
    outputs land on d); at beta = -1 they go to clip(2 s' - t), pushed away."""
    net, x, s, target = setup(2)
    nudging = section(hidden_beta=1.0).scheme(net)
    codes = codes_by_definition(7)
    free = s + 0.5 * (dense_drive(net, x, s) - s)
    plus = one_step(net, x, s, nudging, 1.0, target, eps=0.5)
    minus = one_step(net, x, s, nudging, -1.0, target, eps=0.5)
    for layer, idx in LINKED.items():
        t = target @ codes[layer]
        torch.testing.assert_close(plus[:, list(idx)], t, rtol=1e-12, atol=1e-12)
        away = (2 * free[:, list(idx)] - t).clamp(0, 1)
        torch.testing.assert_close(minus[:, list(idx)], away, rtol=1e-12, atol=1e-12)
    unlinked = [i for i in range(9) if not any(i in r for r in LINKED.values())]
    torch.testing.assert_close(plus[:, unlinked], free[:, unlinked].clamp(0, 1))


def test_off_is_the_plain_scheme_and_writes_nothing_new():
    """Without hidden_layers the scheme is the registered one, unwrapped, and the run's
    config.toml holds no hidden field."""
    net, x, s, target = setup()
    plain = cfg.NudgedSection(nudging="icons").scheme(net)
    assert type(plain) is IconsNudging
    c = cfg.resolve("icons-layered")
    assert "hidden" not in c.to_toml()
    assert c.nudged.hidden_counts(c.topology.sizes) == {}


def test_free_phase_unchanged_and_training_deterministic():
    """Same network and batch with and without the hidden nudge: the same free equilibrium
    (stored as the particles, bit for bit) and the same errors; the updates differ. The same
    seed trains the same weights twice."""

    def trained(nudging_section):
        net, x, _, _ = setup(3)
        y = torch.tensor([0, 1, 2, 1, 0])
        trainer = Trainer(
            net,
            RandomSign(1.0),
            MaskedSGD(net, LearningRates(lr=0.1)),
            free=FixedSteps(0.5, 30),
            nudged=FixedSteps(0.5, 4),
            nudging=nudging_section.scheme(net),
            n_train=5,
            batch_size=5,
        )
        result = trainer.train_batch(x, y, torch.arange(5))
        return trainer.particles.clone(), result, [w.clone() for w in net.weights]

    plain = trained(cfg.NudgedSection(nudging="icons"))
    linked = trained(section(hidden_beta=1.0))
    again = trained(section(hidden_beta=1.0))
    assert torch.equal(plain[0], linked[0])
    assert plain[1].errors == linked[1].errors and plain[1].betas == linked[1].betas
    assert any(not torch.equal(a, b) for a, b in zip(plain[2], linked[2], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(linked[2], again[2], strict=True))


def test_kernel_reads_the_target_at_every_step():
    """The hidden targets come from the target tensor as it is when the step runs, so a
    kernel built once (a captured CUDA graph replays one) follows a new target copied in."""
    net, x, s, target = setup(4)
    nudging = section().scheme(net)
    other = torch.eye(3, dtype=torch.float64)[[2, 2, 0, 0, 1]]
    state, h, static = s.clone(), torch.empty_like(s), target.clone()
    step = net.stepper(
        state, net.input_drive(x), h, nudging.kernel(state, h, net.output, static, EPS, 0.7)
    )
    static.copy_(other)
    step()
    torch.testing.assert_close(state, one_step(net, x, s, nudging, 0.7, other), rtol=0, atol=0)


def test_codes_are_seeded_and_device_independent():
    net, *_ = setup()
    a, b = section(seed=7).scheme(net), section(seed=7).scheme(net)
    other = section(seed=8).scheme(net)
    assert isinstance(a, TargetLinked) and a.name == "icons+hidden"
    assert all(torch.equal(p.codes, q.codes) for p, q in zip(a.codes, b.codes, strict=True))
    assert not torch.equal(a.codes[0].codes, other.codes[0].codes)
    single = Network(topology.layered(SIZES), seed=0)  # float32: the float64 draw, rounded
    low = section(seed=7).scheme(single)
    assert torch.equal(low.codes[1].codes, a.codes[1].codes.float())
    assert [c.neurons for c in a.codes] == [slice(0, 3), slice(5, 7)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["nudged.hidden_fraction=0.5"], "nudged.hidden_fraction applies only with"),
        (["nudged.hidden_layers=[]"], "nudged.hidden_layers must be distinct"),
        (["nudged.hidden_layers=[1, 1]"], "nudged.hidden_layers must be distinct"),
        (
            ["nudged.hidden_layers=[4]"],
            "names layer 4, but topology.sizes has hidden layers 1 to 3",
        ),
        (["nudged.hidden_layers=[1]", "nudged.hidden_fraction=0"], "must be in \\(0, 1\\]"),
        (["nudged.hidden_layers=[1]", "nudged.hidden_beta=-1"], "hidden_beta must be > 0"),
        (["nudged.hidden_layers=[1]", "nudged.hidden_seed=-1"], "hidden_seed must be >= 0"),
        (["nudged.hidden_layers=1"], "must be a list of integers such as \\[1, 2\\]"),
    ],
)
def test_bad_hidden_config_is_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        cfg.resolve("icons-layered", overrides=overrides)
    assert "\n" not in str(info.value)


def test_config_round_trip():
    c = cfg.resolve(
        "icons-layered", overrides=["nudged.hidden_layers=[1, 3]", "nudged.hidden_beta=0.25"]
    )
    again = cfg.from_dict(cfg.parse_toml(c.to_toml(), "round trip"))
    assert again == c and again.nudged.hidden_layers == (1, 3)
    assert c.nudged.hidden_counts(c.topology.sizes) == {1: 500, 3: 500}


# -- the study at smoke scale --------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("hidden-nudge")
    try:
        path = runner(experiment("hidden-nudge"))("smoke", out, None)
    finally:
        torch.set_num_threads(threads)
    return out, path.read_text()


def test_smoke_files_and_tables(smoke):
    out, text = smoke
    for name in ("rate_profile.png", "layer_rates.png", "errors.png"):
        assert 0 < (out / name).stat().st_size <= pr.MAX_PNG_BYTES
    names = [name for name, _ in hidden_nudge.planned("smoke")]
    assert names == [
        hidden_nudge.run_name(s, seed) for s in hidden_nudge.SETTINGS for seed in (0, 1)
    ]
    runs = table_rows(text, "| run | setting |")
    assert [r[0] for r in runs] == names
    assert all(len(r) == len(hidden_nudge.RUN_HEADER) for r in runs)
    settings = table_rows(text, "| setting | seeds |")
    assert [r[0] for r in settings] == list(hidden_nudge.SETTINGS)
    assert all(r[1] == "2" for r in settings)
    assert "## Measured against B and C" in text
    assert claim_verdicts(text) == [NOT_YET] * len(hidden_nudge.CLAIMS)  # smoke: not the paper's


def test_smoke_values_are_the_runs_metrics(smoke):
    out, text = smoke
    rows = {r[0]: r for r in table_rows(text, "| run | setting |")}
    for name, config in hidden_nudge.planned("smoke"):
        run_dir = out / name
        last = read_metrics(run_dir)[-1]
        row = rows[name]
        assert row[7] == f"{100 * last['train_error']:.2f}%"
        assert row[8] == f"{100 * held_out_error(last):.2f}%"
        rates = read_layer_rates(run_dir, config.train.epochs).astype(np.float64)
        means = [r[r > 0].mean() for r in rates.T]
        assert row[3] == " / ".join(f"{m:.3e}" for m in means)
        assert row[4] == f"{means[0] / means[-1]:.3g}"
        linked = config.nudged.hidden_layers is not None
        assert linked == name.startswith("B-hidden")
    # the per-setting mean of the held-out error is the mean of its runs'
    setting_rows = {r[0]: r for r in table_rows(text, "| setting | seeds |")}
    for setting in hidden_nudge.SETTINGS:
        errors = [held_out_error(read_metrics(out / f"{setting}-s{s}")[-1]) for s in (0, 1)]
        mean, sd = 100 * np.mean(errors), 100 * np.std(errors, ddof=1)
        assert setting_rows[setting][7] == f"{mean:.2f} ± {sd:.2f} %"
        assert not math.isnan(mean)


def test_hidden_nudge_raises_the_deep_pairs_at_smoke_scale(smoke):
    """The mechanism at its strongest setting: the deepest pair's rate relative to the
    output pair's is higher with hidden_beta = 1 than without, in both seeds."""
    out, _ = smoke
    for seed in (0, 1):
        ratio = {}
        for setting in ("B", "B-hidden"):
            name = hidden_nudge.run_name(setting, seed)
            rates = read_layer_rates(out / name, 2).astype(np.float64)
            means = [r[r > 0].mean() for r in rates.T]
            ratio[setting] = means[0] / means[-1]
        assert ratio["B-hidden"] > ratio["B"]
