"""Small-world metrics of a network's connection graph (``docs/science.md`` section 3;
Watts & Strogatz 1998).

The graph is the undirected, unweighted graph of a :class:`~eqprop.topology.Topology` (every
neuron a node, inputs included; every connection an edge) or any edge array with a node
count. Definitions and conventions:

- **Characteristic path length** ``L``: the mean shortest-path length (number of edges) over
  all *connected ordered pairs* ``(i, j)``, ``i != j``. Pairs in different components are left
  out (they do not count as infinite); :attr:`PathLength.connected_fraction` says how many
  pairs counted. Distances are breadth-first: either :func:`scipy.sparse.csgraph.shortest_path`
  with unit weights (Dijkstra from each source, or Floyd-Warshall for all pairs), or, for
  dense graphs, a level-synchronous breadth-first search from all the sources at once whose
  every level is one dense 0/1 matrix product (``frontier @ A``; exact, and on the 2,294-neuron
  paper network with half of all pairs connected many times faster than either csgraph
  method). All give identical distances (tested).
- **Sampled sources**: with ``sources=k``, ``k`` distinct sources are drawn uniformly at
  random (seeded) and ``L`` is the ratio estimator ``sum_s D_s / sum_s c_s`` (``D_s`` the sum
  of the distances from ``s`` to the nodes it reaches, ``c_s`` their number); on a connected
  graph this is the mean over sampled sources of each source's mean distance. Its standard
  error (:attr:`PathLength.se`) is the usual linearised ratio-estimator error with the
  finite-population correction ``1 - k/N`` (zero when every source is used); the stated
  error bound is :data:`ERROR_BOUND_SE` = 3 standard errors (about 99.7 % coverage under the
  normal approximation).
- **Clustering coefficient** ``C``: the average over *all* nodes of the local clustering
  ``c_i = 2 T_i / (k_i (k_i - 1))``, ``T_i`` the triangles through ``i`` and ``k_i`` its degree.
  Nodes of degree < 2 have ``c_i = 0`` and still count in the average (the convention of
  networkx's ``average_clustering``; Watts and Strogatz assumed every degree >= 2). Triangles
  are exact: ``T = rowsum((A @ A) * A) / 2`` (the diagonal of ``A^3`` over 2), with sparse
  products, or a dense BLAS product of the same formula when the graph is dense (identical
  integers, many times faster there).
- **Small-world coefficient** ``sigma = (C / C_rand) / (L / L_rand)``, ``C_rand`` and
  ``L_rand`` the means of ``C`` and ``L`` over ``n_random`` Erdos-Renyi ``G(n, m)`` graphs
  with the same numbers of nodes and edges (seeded). The classical approximations
  ``C_rand ~ k/n`` and ``L_rand ~ ln n / ln k`` (``k = 2m/n`` the mean degree) are reported
  alongside for comparison; they assume ``1 << k << n`` and fail for dense graphs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from eqprop.errors import ConfigError
from eqprop.topology import Topology

#: the stated error bound of a sampled-source ``L``, in standard errors
ERROR_BOUND_SE = 3.0
#: above this many nodes dense products and Floyd-Warshall are never used (memory)
DENSE_MAX_NODES = 6000
#: density (stored entries of A over N^2) from which the dense methods are used
DENSE_MIN_DENSITY = 0.05
#: rows of the distance matrix computed at once
_CHUNK = 256


# -- the graph ------------------------------------------------------------------------------
def adjacency(graph: Topology | np.ndarray, n_nodes: int | None = None) -> sp.csr_matrix:
    """The symmetric 0/1 adjacency matrix (CSR, float64) of ``graph``.

    ``graph`` is a :class:`Topology` or an ``(E, 2)`` array of node indices (then ``n_nodes``
    is required). Edges are undirected; duplicates (in either orientation) count once.
    Self-loops are refused.
    """
    if isinstance(graph, Topology):
        edges, n = graph.edges, graph.n_neurons
    else:
        if n_nodes is None:
            raise ConfigError("n_nodes is required when the graph is given as an edge array")
        edges, n = np.asarray(graph, dtype=np.int64).reshape(-1, 2), int(n_nodes)
    if n < 1:
        raise ConfigError(f"a graph needs at least one node, got n_nodes = {n}")
    if len(edges) and (edges.min() < 0 or edges.max() >= n):
        raise ConfigError(f"edge endpoints must lie in [0, {n}), got {edges.min()}..{edges.max()}")
    if np.any(edges[:, 0] == edges[:, 1]):
        raise ConfigError("self-loops are not allowed in a small-world graph")
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    a = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    a.sum_duplicates()
    a.data[:] = 1.0
    return a


def _density(a: sp.csr_matrix) -> float:
    n = a.shape[0]
    return a.nnz / float(n * n)


def _dense_ok(a: sp.csr_matrix, min_density: float) -> bool:
    return a.shape[0] <= DENSE_MAX_NODES and _density(a) >= min_density


# -- clustering -----------------------------------------------------------------------------
def triangles(a: sp.csr_matrix, method: str = "auto") -> np.ndarray:
    """Triangles through every node: ``rowsum((A @ A) * A) / 2`` (exact integers).

    ``method``: ``"sparse"`` (scipy.sparse products), ``"dense"`` (float32 BLAS product, exact
    for up to 2^24 nodes; refused above :data:`DENSE_MAX_NODES`) or ``"auto"`` (dense when the
    graph is dense, see :data:`DENSE_MIN_DENSITY`).
    """
    if method == "auto":
        method = "dense" if _dense_ok(a, DENSE_MIN_DENSITY) else "sparse"
    if method == "sparse":
        paths2 = a @ a
        closed = np.asarray(paths2.multiply(a).sum(axis=1), dtype=np.float64).ravel()
    elif method == "dense":
        if a.shape[0] > DENSE_MAX_NODES:
            raise ConfigError(f"dense triangles need <= {DENSE_MAX_NODES} nodes")
        d = a.toarray().astype(np.float32)
        closed = np.einsum("ij,ij->i", d @ d, d, dtype=np.float64)
    else:
        raise ConfigError(f"method must be 'auto', 'sparse' or 'dense', got {method!r}")
    return np.rint(closed / 2.0).astype(np.int64)


def local_clustering(
    graph: Topology | np.ndarray | sp.spmatrix, n_nodes: int | None = None, method: str = "auto"
) -> np.ndarray:
    """Local clustering ``c_i = 2 T_i / (k_i (k_i - 1))`` of every node; 0 where ``k_i < 2``."""
    a = graph if sp.issparse(graph) else adjacency(graph, n_nodes)
    tri = triangles(sp.csr_matrix(a), method)
    deg = np.asarray(a.sum(axis=1)).ravel()
    pairs = deg * (deg - 1.0)
    out = np.zeros(len(deg))
    np.divide(2.0 * tri, pairs, out=out, where=deg >= 2)
    return out


def clustering(
    graph: Topology | np.ndarray | sp.spmatrix, n_nodes: int | None = None, method: str = "auto"
) -> float:
    """Average clustering ``C`` over all nodes (degree < 2 counts as 0)."""
    return float(local_clustering(graph, n_nodes, method).mean())


# -- path length ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PathLength:
    """The characteristic path length and how it was measured.

    Attributes:
        value: ``L``, the mean distance over connected ordered pairs (NaN if there are none).
        se: its standard error (0 when exact, NaN if fewer than 2 sources were sampled).
        exact: every node was a source.
        sources: number of sources used.
        connected_fraction: connected ordered pairs over all ordered pairs ``N (N - 1)``
            (exact when every node is a source, else estimated from the sampled sources).
        diameter: the largest finite distance seen from the sources used.
        method: ``"matrix"``, ``"dijkstra"`` or ``"floyd-warshall"`` (see :func:`path_length`).
        seconds: wall time of the computation.
    """

    value: float
    se: float
    exact: bool
    sources: int
    connected_fraction: float
    diameter: int
    method: str
    seconds: float

    @property
    def bound(self) -> float:
        """The stated error bound: :data:`ERROR_BOUND_SE` standard errors."""
        return ERROR_BOUND_SE * self.se


def _csgraph_sums(
    a: sp.csr_matrix, sources: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per source: sum of finite distances to other nodes, count of reached other nodes, and
    the largest finite distance, from :func:`scipy.sparse.csgraph.shortest_path`."""
    sums, counts, diameter = [], [], 0
    if method == "floyd-warshall":
        blocks = [csgraph.shortest_path(a, method="FW", directed=True, unweighted=True)]
    else:
        blocks = (
            csgraph.shortest_path(
                a, method="D", directed=True, unweighted=True, indices=sources[i : i + _CHUNK]
            )
            for i in range(0, len(sources), _CHUNK)
        )
    for dist in blocks:
        finite = np.isfinite(dist)
        sums.append(np.where(finite, dist, 0.0).sum(axis=1))
        counts.append(finite.sum(axis=1) - 1)  # the source itself, at distance 0
        if finite.any():
            diameter = max(diameter, int(dist[finite].max()))
    return np.concatenate(sums), np.concatenate(counts).astype(np.float64), diameter


def _matrix_sums(a: sp.csr_matrix, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """As :func:`_csgraph_sums`, by a breadth-first search from all ``sources`` at once: the
    nodes first reached at level ``l + 1`` are the neighbours of level-``l`` nodes not reached
    before, found with one dense 0/1 product ``frontier @ A`` per level (float32 counts of at
    most ``N`` paths are exact)."""
    dense = a.toarray().astype(np.float32)
    frontier = dense[sources]  # level 1: the neighbours
    reached = frontier > 0
    reached[np.arange(len(sources)), sources] = True
    found = frontier.sum(axis=1, dtype=np.float64)
    sums, counts = found.copy(), found.copy()
    level = 1 if found.any() else 0
    while True:
        new = (frontier @ dense) > 0
        new &= ~reached
        found = new.sum(axis=1, dtype=np.float64)
        if not found.any():
            break
        level += 1
        reached |= new
        sums += level * found
        counts += found
        frontier = new.astype(np.float32)
    return sums, counts, level


def path_length(
    graph: Topology | np.ndarray | sp.spmatrix,
    n_nodes: int | None = None,
    *,
    sources: int | None = None,
    seed: int = 0,
    method: str = "auto",
) -> PathLength:
    """Characteristic path length ``L`` (unweighted) from all sources or a uniform sample.

    Args:
        graph: a Topology, an ``(E, 2)`` edge array (with ``n_nodes``) or an adjacency matrix.
        sources: ``None`` (or ``>= N``): every node is a source, ``L`` is exact. Otherwise that
            many distinct sources drawn uniformly at random with ``seed``; see the module
            docstring for the estimator and its standard error.
        method: ``"matrix"`` (dense level-synchronous BFS; refused above
            :data:`DENSE_MAX_NODES` nodes), ``"dijkstra"`` (csgraph, unit weights, per
            source), ``"floyd-warshall"`` (csgraph, all sources only) or ``"auto"``: matrix
            for dense graphs (:data:`DENSE_MIN_DENSITY`), else Dijkstra.
    """
    start = time.perf_counter()
    a = sp.csr_matrix(graph) if sp.issparse(graph) else adjacency(graph, n_nodes)
    n = a.shape[0]
    exact = sources is None or sources >= n
    if exact:
        chosen = np.arange(n)
    else:
        if sources < 1:
            raise ConfigError(f"sources must be a positive number of nodes, got {sources}")
        chosen = np.sort(np.random.default_rng(seed).choice(n, size=int(sources), replace=False))
    if method == "auto":
        method = "matrix" if _dense_ok(a, DENSE_MIN_DENSITY) else "dijkstra"
    if method == "matrix":
        if n > DENSE_MAX_NODES:
            raise ConfigError(f"the matrix method needs <= {DENSE_MAX_NODES} nodes, got {n}")
        sums, counts, diameter = _matrix_sums(a, chosen)
    elif method in ("dijkstra", "floyd-warshall"):
        if method == "floyd-warshall" and not exact:
            raise ConfigError("Floyd-Warshall computes all sources; use dijkstra for sampling")
        sums, counts, diameter = _csgraph_sums(a, chosen, method)
    else:
        raise ConfigError(
            f"method must be 'auto', 'matrix', 'dijkstra' or 'floyd-warshall', got {method!r}"
        )
    k = len(chosen)
    total_pairs = n * (n - 1)
    reached = counts.sum()
    value = float(sums.sum() / reached) if reached > 0 else math.nan
    if exact:
        se = 0.0
        fraction = reached / total_pairs if total_pairs else math.nan
    else:
        fraction = float(counts.mean() / (n - 1)) if n > 1 else math.nan
        if k < 2 or reached == 0:
            se = math.nan
        else:
            residual = sums - value * counts
            variance = residual.var(ddof=1) / (k * counts.mean() ** 2) * (1.0 - k / n)
            se = float(math.sqrt(max(variance, 0.0)))
    return PathLength(
        value=value,
        se=se,
        exact=exact,
        sources=k,
        connected_fraction=float(fraction),
        diameter=diameter,
        method=method,
        seconds=time.perf_counter() - start,
    )


# -- random reference graphs ---------------------------------------------------------------
def random_graph(n_nodes: int, n_edges: int, seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """Edges ``(m, 2)`` (``i < j``, sorted) of an Erdos-Renyi ``G(n, m)`` graph: ``m`` distinct
    pairs drawn uniformly from the ``n (n - 1) / 2`` possible ones."""
    n, m = int(n_nodes), int(n_edges)
    total = n * (n - 1) // 2
    if not 0 <= m <= total:
        raise ConfigError(f"G(n, m) with n = {n} has at most {total} edges, asked for {m}")
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(total, size=m, replace=False))
    # row i of the upper triangle starts at i (2n - i - 1) / 2
    rows = np.arange(n, dtype=np.int64)
    starts = rows * (2 * n - rows - 1) // 2
    i = np.searchsorted(starts, index, side="right") - 1
    j = index - starts[i] + i + 1
    return np.stack([i, j], axis=1).astype(np.int64)


# -- sigma ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmallWorld:
    """Small-world metrics of one graph against ``G(n, m)`` random graphs.

    ``*_se`` are standard errors: of ``L`` from source sampling; of ``C_rand`` and ``L_rand``
    from the spread over the random graphs (``std / sqrt(n_random)``; for a sampled
    ``L_rand`` the larger of that spread and the graphs' own sampling error); of ``sigma`` by
    first-order propagation of those (``C`` is exact). ``*_std`` is the spread (ddof 1) over
    the random graphs.
    """

    n_nodes: int
    n_edges: int
    mean_degree: float
    L: float
    L_se: float
    L_exact: bool
    L_sources: int
    L_method: str
    connected_fraction: float
    diameter: int
    C: float
    L_rand: float
    L_rand_std: float
    L_rand_se: float
    L_rand_sources: int
    C_rand: float
    C_rand_std: float
    C_rand_se: float
    L_rand_analytic: float
    C_rand_analytic: float
    sigma: float
    sigma_se: float
    n_random: int
    seed: int
    seconds_graph: float
    seconds_random: float

    @property
    def L_ratio(self) -> float:  # noqa: N802 - the paper's symbols
        """``L / L_rand``."""
        return self.L / self.L_rand

    @property
    def C_ratio(self) -> float:  # noqa: N802
        """``C / C_rand``."""
        return self.C / self.C_rand if self.C_rand > 0 else math.nan

    def to_dict(self) -> dict:
        """JSON-ready fields (NaN stays NaN; :mod:`json` writes it as ``NaN``)."""
        return asdict(self)


def analytic_random(n_nodes: int, n_edges: int) -> tuple[float, float]:
    """``(L_rand, C_rand)`` approximations ``ln n / ln k`` and ``k / n``, ``k = 2m / n``."""
    k = 2.0 * n_edges / n_nodes
    l_rand = math.log(n_nodes) / math.log(k) if k > 1.0 else math.nan
    return l_rand, k / n_nodes


def _mean_std_se(values: list[float]) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    std = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    return float(x.mean()), std, std / math.sqrt(len(x))


def small_world(
    graph: Topology | np.ndarray,
    n_nodes: int | None = None,
    *,
    n_random: int = 5,
    sources: int | None = None,
    random_sources: int | None = None,
    seed: int = 0,
) -> SmallWorld:
    """``L``, ``C`` and ``sigma`` of ``graph`` against ``n_random`` seeded ``G(n, m)`` graphs.

    Args:
        graph: a Topology or an ``(E, 2)`` edge array with ``n_nodes``.
        n_random: random graphs to average ``C_rand`` and ``L_rand`` over (>= 1; >= 2 for
            standard errors).
        sources: sources for the graph's ``L`` (``None``: all, exact).
        random_sources: sources for each random graph's ``L`` (``None``: all, exact).
        seed: seeds the source sampling (``seed``) and random graph ``r``
            (``SeedSequence([seed, r])``, sampled with ``seed + 1 + r``).
    """
    if n_random < 1:
        raise ConfigError(f"n_random must be >= 1, got {n_random}")
    start = time.perf_counter()
    a = adjacency(graph, n_nodes)
    n, m = a.shape[0], a.nnz // 2
    c = clustering(a)
    pl = path_length(a, sources=sources, seed=seed)
    seconds_graph = time.perf_counter() - start

    start = time.perf_counter()
    c_rand, l_rand, l_rand_se = [], [], []
    rand_sources = n
    for r in range(n_random):
        edges = random_graph(n, m, np.random.SeedSequence([seed, r]))
        ar = adjacency(edges, n)
        c_rand.append(clustering(ar))
        plr = path_length(ar, sources=random_sources, seed=seed + 1 + r)
        l_rand.append(plr.value)
        l_rand_se.append(plr.se)
        rand_sources = plr.sources
    seconds_random = time.perf_counter() - start

    c_mean, c_std, c_se = _mean_std_se(c_rand)
    l_mean, l_std, l_se = _mean_std_se(l_rand)
    if random_sources is not None and random_sources < n and n_random > 1:
        # the spread over few graphs can understate the sampling noise each one carries
        l_se = math.sqrt(max(l_std**2, float(np.mean(np.square(l_rand_se)))) / n_random)
    l_analytic, c_analytic = analytic_random(n, m)
    if c_mean > 0 and pl.value > 0:
        sigma = (c / c_mean) / (pl.value / l_mean)
        rel = [pl.se / pl.value, c_se / c_mean, l_se / l_mean]
        sigma_se = abs(sigma) * math.sqrt(sum(x * x for x in rel))
    else:
        sigma, sigma_se = math.nan, math.nan
    return SmallWorld(
        n_nodes=n,
        n_edges=m,
        mean_degree=2.0 * m / n,
        L=pl.value,
        L_se=pl.se,
        L_exact=pl.exact,
        L_sources=pl.sources,
        L_method=pl.method,
        connected_fraction=pl.connected_fraction,
        diameter=pl.diameter,
        C=c,
        L_rand=l_mean,
        L_rand_std=l_std,
        L_rand_se=l_se,
        L_rand_sources=rand_sources,
        C_rand=c_mean,
        C_rand_std=c_std,
        C_rand_se=c_se,
        L_rand_analytic=l_analytic,
        C_rand_analytic=c_analytic,
        sigma=sigma,
        sigma_se=sigma_se,
        n_random=n_random,
        seed=seed,
        seconds_graph=seconds_graph,
        seconds_random=seconds_random,
    )
