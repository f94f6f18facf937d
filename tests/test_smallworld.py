"""Small-world metrics (eqprop.smallworld) against brute force, and the smallworld experiment."""

from __future__ import annotations

import itertools
import json
import math
from collections import deque

import numpy as np
import pytest
from md_tables import claim_verdicts

from eqprop import smallworld as sw
from eqprop import topology as topo
from eqprop.errors import ConfigError
from eqprop.experiments.claims import NOT_YET

PATH_METHODS = ("matrix", "dijkstra", "floyd-warshall")


# -- brute-force references -----------------------------------------------------------------
def _neighbours(edges: np.ndarray, n: int) -> list[set[int]]:
    nb: list[set[int]] = [set() for _ in range(n)]
    for i, j in edges.tolist():
        nb[i].add(j)
        nb[j].add(i)
    return nb


def brute_path_length(edges: np.ndarray, n: int) -> tuple[float, int]:
    """Mean BFS distance over connected ordered pairs, and the number of such pairs."""
    nb = _neighbours(edges, n)
    total = pairs = 0
    for s in range(n):
        dist = {s: 0}
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in nb[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        total += sum(dist.values())
        pairs += len(dist) - 1
    return (total / pairs if pairs else math.nan), pairs


def brute_clustering(edges: np.ndarray, n: int) -> np.ndarray:
    """Local clustering by counting linked neighbour pairs; 0 for degree < 2."""
    nb = _neighbours(edges, n)
    out = np.zeros(n)
    for i in range(n):
        k = len(nb[i])
        if k >= 2:
            links = sum(1 for a, b in itertools.combinations(nb[i], 2) if b in nb[a])
            out[i] = 2.0 * links / (k * (k - 1))
    return out


def ring_lattice(n: int, k: int) -> set[tuple[int, int]]:
    """Each node linked to its ``k/2`` nearest neighbours on each side."""
    return {tuple(sorted((i, (i + d) % n))) for i in range(n) for d in range(1, k // 2 + 1)}


def watts_strogatz(n: int, k: int, beta: float, seed: int) -> np.ndarray:
    """Ring lattice with each edge's far end rewired with probability ``beta`` (no self-loops
    or duplicates)."""
    rng = np.random.default_rng(seed)
    edges = ring_lattice(n, k)
    for i, j in sorted(edges):
        if rng.random() < beta:
            while True:
                t = int(rng.integers(n))
                new = tuple(sorted((i, t)))
                if t != i and new not in edges:
                    break
            edges.remove((i, j))
            edges.add(new)
    return np.array(sorted(edges), dtype=np.int64)


def random_edges(n: int, m: int, seed: int) -> np.ndarray:
    return sw.random_graph(n, m, seed)


# -- exact L and C --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,m,seed",
    [(30, 20, 0), (30, 45, 1), (40, 120, 2), (25, 250, 3), (12, 3, 4), (50, 60, 5)],
)
def test_exact_metrics_match_brute_force(n, m, seed):
    edges = random_edges(n, m, seed)
    ref_l, ref_pairs = brute_path_length(edges, n)
    ref_c = brute_clustering(edges, n)
    for method in PATH_METHODS:
        pl = sw.path_length(edges, n, method=method)
        assert pl.exact and pl.se == 0.0 and pl.sources == n
        assert pl.value == pytest.approx(ref_l, rel=1e-12)
        assert pl.connected_fraction == pytest.approx(ref_pairs / (n * (n - 1)))
    for method in ("sparse", "dense"):
        np.testing.assert_allclose(sw.local_clustering(edges, n, method), ref_c, atol=1e-12)
        assert sw.clustering(edges, n, method) == pytest.approx(ref_c.mean(), abs=1e-12)


def test_small_cases_by_hand():
    # a triangle 0-1-2 with a pendant 3 on 0, a path 4-5-6, and an isolated node 7
    edges = np.array([[0, 1], [1, 2], [0, 2], [0, 3], [4, 5], [5, 6]])
    n = 8
    local = sw.local_clustering(edges, n)
    np.testing.assert_allclose(local, [1 / 3, 1, 1, 0, 0, 0, 0, 0])
    assert sw.clustering(edges, n) == pytest.approx((1 / 3 + 2) / 8)
    # component {0,1,2,3}: distances 1,1,1,1,2,2 (pairs) ; component {4,5,6}: 1,1,2
    expected = (2 * (4 * 1 + 2 * 2) + 2 * (2 * 1 + 1 * 2)) / (2 * 6 + 2 * 3)
    for method in PATH_METHODS:
        pl = sw.path_length(edges, n, method=method)
        assert pl.value == pytest.approx(expected)
        assert pl.connected_fraction == pytest.approx(18 / 56)
        assert pl.diameter == 2


def test_empty_and_edge_input_conventions():
    empty = np.zeros((0, 2), dtype=np.int64)
    assert math.isnan(sw.path_length(empty, 5).value)
    assert sw.clustering(empty, 5) == 0.0
    # duplicates in either orientation count once; Topology and edge array agree
    t = topo.icons([6, 4, 4, 2], n=5, seed=3)
    doubled = np.concatenate([t.edges, t.edges[:, ::-1]])
    assert sw.adjacency(doubled, t.n_neurons).nnz == 2 * len(t.edges)
    assert sw.clustering(t) == sw.clustering(doubled, t.n_neurons)
    assert sw.path_length(t).value == sw.path_length(doubled, t.n_neurons).value
    with pytest.raises(ConfigError):
        sw.adjacency(np.array([[0, 0]]), 3)
    with pytest.raises(ConfigError):
        sw.adjacency(np.array([[0, 3]]), 3)
    with pytest.raises(ConfigError):
        sw.adjacency(np.array([[0, 1]]))


def test_layered_topology_metrics():
    # bipartite: no triangles; distances from the layer structure
    t = topo.layered([3, 2, 2])
    assert sw.clustering(t) == 0.0
    assert sw.path_length(t).value == pytest.approx(brute_path_length(t.edges, 7)[0])
    assert sw.path_length(t).diameter == 2


def test_random_graph_is_gnm():
    e = sw.random_graph(50, 300, seed=7)
    assert e.shape == (300, 2)
    assert np.all(e[:, 0] < e[:, 1]) and e.min() >= 0 and e.max() < 50
    assert len({tuple(x) for x in e.tolist()}) == 300
    np.testing.assert_array_equal(e, sw.random_graph(50, 300, seed=7))
    assert len(sw.random_graph(6, 15, seed=0)) == 15  # complete graph
    with pytest.raises(ConfigError):
        sw.random_graph(6, 16, seed=0)


# -- sigma ----------------------------------------------------------------------------------
def test_sigma_watts_strogatz_above_one_er_near_one():
    lattice = sw.small_world(watts_strogatz(300, 10, 0.0, seed=1), 300, n_random=5)
    assert lattice.C == pytest.approx(2 / 3) and lattice.L_ratio > 4  # (3k-6)/(4k-4), k=10
    ws = watts_strogatz(300, 10, 0.05, seed=1)
    res = sw.small_world(ws, 300, n_random=5, seed=0)
    assert res.C > 0.4 and res.C_ratio > 5  # clustering stays high...
    assert res.L_ratio < 2.0  # ...while L drops to near a random graph's
    assert res.sigma > 3 and res.sigma > 2 * lattice.sigma
    er = sw.random_graph(300, 3000, seed=123)
    res = sw.small_world(er, 300, n_random=10, seed=0)
    assert res.sigma == pytest.approx(1.0, abs=0.1)
    assert res.L_ratio == pytest.approx(1.0, abs=0.02)
    # the analytic approximations are reported and sensible for a sparse-ish graph
    assert res.C_rand == pytest.approx(res.C_rand_analytic, rel=0.15)
    assert res.mean_degree == pytest.approx(20.0)
    assert np.isfinite(res.L_rand_analytic)


def test_sigma_of_layered_is_zero():
    res = sw.small_world(topo.layered([8, 6, 6, 4]), n_random=3)
    assert res.C == 0.0 and res.sigma == 0.0 and res.L_ratio > 1.0


# -- sampled sources ------------------------------------------------------------------------
def test_sampled_sources_within_stated_bound():
    edges = watts_strogatz(600, 6, 0.1, seed=2)
    exact = sw.path_length(edges, 600)
    estimates, ses = [], []
    for seed in range(20):
        pl = sw.path_length(edges, 600, sources=60, seed=seed)
        assert not pl.exact and pl.sources == 60 and pl.se > 0
        assert abs(pl.value - exact.value) <= pl.bound
        estimates.append(pl.value)
        ses.append(pl.se)
    # the stated standard error matches the spread of the estimates (within a factor 2)
    assert 0.5 < np.std(estimates, ddof=1) / np.mean(ses) < 2.0
    # the same sampling through every method that supports it
    a = sw.path_length(edges, 600, sources=60, seed=0, method="matrix")
    b = sw.path_length(edges, 600, sources=60, seed=0, method="dijkstra")
    assert a.value == b.value and a.se == b.se
    # asking for every source is exact
    assert sw.path_length(edges, 600, sources=600).se == 0.0
    with pytest.raises(ConfigError):
        sw.path_length(edges, 600, sources=60, method="floyd-warshall")


def test_sampled_sources_disconnected_graph():
    # two components: the ratio estimator still targets the mean over connected pairs
    a = watts_strogatz(200, 4, 0.1, seed=3)
    b = watts_strogatz(100, 4, 0.1, seed=4) + 200
    edges = np.concatenate([a, b])
    exact = sw.path_length(edges, 300)
    assert exact.connected_fraction == pytest.approx((200 * 199 + 100 * 99) / (300 * 299))
    pl = sw.path_length(edges, 300, sources=100, seed=1)
    assert abs(pl.value - exact.value) <= pl.bound


# -- the experiment -------------------------------------------------------------------------
def test_smoke_experiment(tmp_path, monkeypatch):
    from eqprop.experiments import experiment

    module = experiment("smallworld")
    assert module.SCALES == ("smoke", "quick", "full")
    results = module.run("smoke", tmp_path, None)
    assert results == tmp_path / "results.md"
    data = json.loads((tmp_path / "results.json").read_text())
    planned = module.points(module.PLANS["smoke"])
    assert list(data["topologies"]) == [p.key for p in planned]
    assert (tmp_path / "smallworld.png").stat().st_size < 300_000
    text = results.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header = module.TABLE_HEADER
    assert header in text
    rows = table[table.index(header) + 1 : table.index(header) + 1 + len(planned)]
    for row, point in zip(rows, planned, strict=True):
        assert row.startswith(f"| {point.label} |")
        assert row.count("|") == header.count("|")
    layered = data["topologies"]["layered"]
    assert layered["metrics"]["C"] == 0.0 and layered["edges"] == 4416
    for record in data["topologies"].values():
        check = record["csgraph_check"]
        assert check["L"] == pytest.approx(record["metrics"]["L"], abs=1e-12)
    for row, point in zip(rows, planned, strict=True):  # the table shows the measured values
        measured = data["topologies"][point.key]["metrics"]
        assert f" {measured['L']:.4f} |" in row and f" {measured['C']:.4f} |" in row
    assert claim_verdicts(text) == [NOT_YET] * len(module.CLAIMS)  # smoke: not the paper's
    assert "seed 001" not in text and "seed text" not in text
    # resumable: a rerun measures nothing
    monkeypatch.setattr(module, "measure", lambda *a: pytest.fail("re-measured"))
    module.run("smoke", tmp_path, None)
    with pytest.raises(ConfigError):
        module.run("quick", tmp_path, None)


def test_progress_off_a_terminal_is_one_plain_line_per_topology(tmp_path, capsys):
    from eqprop.experiments import experiment

    module = experiment("smallworld")
    module.run("smoke", tmp_path, None)
    out, err = capsys.readouterr()
    planned = module.points(module.PLANS["smoke"])
    lines = err.splitlines()
    assert out == "" and "\r" not in err and len(lines) == len(planned)
    for k, (line, point) in enumerate(zip(lines, planned, strict=True), 1):
        assert line.startswith(f"smallworld smoke topologies: run {k}/{len(planned)} done: ")
        assert point.label in line
    assert lines[-1].endswith("; none left")
    module.run("smoke", tmp_path, None)  # resumed: nothing measured, nothing to report
    assert capsys.readouterr() == ("", "")
