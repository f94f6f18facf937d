"""Topology invariants, ICONS counts and the n <-> p formulas."""

import re

import numpy as np
import pytest

from eqprop import topology
from eqprop.errors import ConfigError

PAPER = [784, 500, 500, 500, 10]


def check_invariants(t: topology.Topology) -> None:
    a = t.adjacency()
    assert np.array_equal(a, a.T)
    assert not a.diagonal().any()
    n_in, n_out = t.sizes[0], t.sizes[-1]
    assert not a[:n_in, :n_in].any(), "input-input edge"
    assert not a[-n_out:, -n_out:].any(), "output-output edge"
    assert np.all(t.edges[:, 0] < t.edges[:, 1])
    assert len(np.unique(t.edges, axis=0)) == len(t.edges), "duplicate edge"


@pytest.fixture(scope="module")
def paper_icons():
    return topology.icons(PAPER, n=100_000, seed=0)


def test_paper_network_counts(paper_icons):
    c = paper_icons.counts()
    assert c["N_o"] == 1_271_250
    assert c["N_I"] == 1_051_840
    assert c["edges"] == 1_271_250  # replace keeps N_o edges
    assert round(c["p_simple"], 4) == 0.0756
    assert c["p_exact"] == pytest.approx(0.0756, abs=1e-4)
    assert c["adjacent"] + c["intralayer"] + c["skip"] == c["edges"]
    check_invariants(paper_icons)


def test_layered_counts():
    t = topology.layered(PAPER)
    c = t.counts()
    assert (c["edges"], c["adjacent"], c["intralayer"], c["skip"]) == (897_000, 897_000, 0, 0)
    assert c["adjacent_absent"] == 0.0
    check_invariants(t)


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_icons_small_invariants(mode):
    sizes = [20, 8, 8, 8, 5]
    t = topology.icons(sizes, n=150, mode=mode, seed=2)
    check_invariants(t)
    n_o, _ = topology.base_counts(sizes)
    assert len(t.edges) == (n_o if mode == "replace" else n_o + 150)
    assert t.counts()["skip"] > 0


def test_icons_replacement_statistics_match_markov_chain():
    """Brute force over seeds: the fraction of original edges absent after n replacements
    equals the Markov-chain value (N_I/(N_o+N_I)) (1 - r^n) of Algorithm 1 as specified
    (the removed edge is chosen among existing ones, removed pairs may be re-added)."""
    sizes = [6, 5, 5, 3]
    n = 40
    n_o, n_i = topology.base_counts(sizes)
    layered = topology.layered(sizes)
    base = {tuple(e) for e in layered.edges}
    off = layered.offsets
    for k in range(1, len(sizes) - 1):
        i, j = np.triu_indices(sizes[k], k=1)
        base |= {(a + off[k], b + off[k]) for a, b in zip(i, j, strict=False)}
    assert len(base) == n_o
    absent = [
        len(base - {tuple(e) for e in topology.icons(sizes, n=n, seed=s).edges}) / n_o
        for s in range(400)
    ]
    r = 1 - (n_o + n_i) / (n_o * n_i)
    expected = n_i / (n_o + n_i) * (1 - r**n)
    assert np.mean(absent) == pytest.approx(expected, abs=4 * np.std(absent) / np.sqrt(400))


def test_icons_is_seeded():
    a = topology.icons([20, 8, 8, 5], n=60, seed=4)
    b = topology.icons([20, 8, 8, 5], n=60, seed=4)
    c = topology.icons([20, 8, 8, 5], n=60, seed=5)
    assert np.array_equal(a.edges, b.edges)
    assert not np.array_equal(a.edges, c.edges)


def test_n_and_p_round_trip():
    for formula in ("simple", "exact"):
        p = topology.p_from_n(100_000, PAPER, formula)
        assert topology.n_from_p(p, PAPER, formula) == 100_000
    t = topology.icons([30, 10, 10, 4], p=0.1, seed=0)
    assert t.n == topology.n_from_p(0.1, [30, 10, 10, 4])


def test_simple_formula_value():
    n_o, _ = topology.base_counts(PAPER)
    assert topology.p_from_n(100_000, PAPER) == pytest.approx(1 - ((n_o - 1) / n_o) ** 100_000)


def test_rewired_fraction_within_binomial_tolerance():
    sizes = [100, 50, 50, 50, 10]
    p = 0.2
    t = topology.rewired(sizes, p, seed=0)
    check_invariants(t)
    c = t.counts()
    n_adj = topology.layered_edge_count(sizes)
    tol = 4 * np.sqrt(p * (1 - p) / n_adj)
    assert c["adjacent_absent"] == pytest.approx(p, abs=tol)
    assert c["edges"] == n_adj and c["intralayer"] == 0
    assert c["skip"] == n_adj - c["adjacent"]


def test_save_load_round_trip(tmp_path):
    t = topology.icons([20, 8, 8, 5], n=30, seed=1)
    t.save(tmp_path / "t.npz")
    u = topology.Topology.load(tmp_path / "t.npz")
    assert np.array_equal(t.edges, u.edges)
    assert (u.sizes, u.family, u.n, u.seed) == (t.sizes, t.family, t.n, t.seed)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: topology.layered([784]), "at least an input and an output"),
        (lambda: topology.layered([784, -5, 10]), "positive integer"),
        (lambda: topology.icons([10, 5, 3], n=3, p=0.1), "exactly one of n"),
        (lambda: topology.icons([10, 5, 3], p=1.5), "p must be in [0, 1)"),
        (lambda: topology.rewired([10, 5, 3], p=-0.1), "p must be in [0, 1]"),
        (lambda: topology.icons([10, 5, 3], n=3, mode="swap"), "mode must be"),
    ],
)
def test_bad_arguments_raise_one_line_errors(call, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        call()
