"""Which neurons connect: layered, ICONS layer-skipping (replace / add) and rewired topologies.

A :class:`Topology` is an immutable value: the layer sizes (input first, output last) and the
undirected edge list over global neuron indices (input neurons first, then each layer in
order). Every edge is classified by *position*:

- ``ADJACENT``: its two neurons lie in adjacent layers;
- ``INTRALAYER``: both lie in the same (hidden) layer;
- ``SKIP``: they lie in layers two or more apart.

Allowed pairs (docs/science.md section 2): two different neurons, not both input, not both output.

Counts a researcher wants (:meth:`Topology.counts`) follow the ICONS paper's notation: ``N_o``
is the number of connections after the intralayer edges are added (it stays constant under
"replace"), ``N_I`` the number of allowed pairs still unconnected at that point.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eqprop.errors import ConfigError

ADJACENT, INTRALAYER, SKIP = 0, 1, 2
KIND_NAMES = ("adjacent", "intralayer", "skip")
FAMILIES = ("layered", "icons-replace", "icons-add", "rewired")


def _check_sizes(sizes: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2:
        raise ConfigError(f"sizes must list at least an input and an output layer, got {sizes}")
    if any(n < 1 for n in sizes):
        raise ConfigError(f"every layer size must be a positive integer, got {sizes}")
    return sizes


@dataclass(frozen=True)
class Topology:
    """An undirected network topology over layered neurons.

    Attributes:
        sizes: neurons per layer, input first, output last.
        edges: ``(E, 2)`` int64 array of global neuron indices ``i < j``, sorted.
        family: how it was built (one of :data:`FAMILIES`).
        n: replacements (``icons-replace``) or additions (``icons-add``) made, else ``None``.
        p: the rewiring probability (``rewired``), else ``None``.
        seed: the seed of the random generator that built it, else ``None``.
    """

    sizes: tuple[int, ...]
    edges: np.ndarray = field(repr=False)
    family: str = "layered"
    n: int | None = None
    p: float | None = None
    seed: int | None = None

    # -- structure -----------------------------------------------------------------------
    @property
    def n_neurons(self) -> int:
        """Total neurons, inputs included."""
        return int(sum(self.sizes))

    @property
    def offsets(self) -> np.ndarray:
        """Global index of the first neuron of each layer, plus the total at the end."""
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    @property
    def layer_of(self) -> np.ndarray:
        """Layer index of every neuron."""
        return np.repeat(np.arange(len(self.sizes)), self.sizes)

    @property
    def kinds(self) -> np.ndarray:
        """Kind of each edge by position (:data:`ADJACENT`, :data:`INTRALAYER`, :data:`SKIP`)."""
        layer = self.layer_of
        gap = np.abs(layer[self.edges[:, 1]] - layer[self.edges[:, 0]])
        return np.where(gap == 1, ADJACENT, np.where(gap == 0, INTRALAYER, SKIP)).astype(np.int8)

    @property
    def alternates_parity(self) -> bool:
        """Whether no edge joins two non-input layers of the same parity (nor a layer to
        itself): what the even/odd layer sweeps (``free.solver = "layer-sweep"`` or
        ``"sor"``) need. True for layered networks; skip and intralayer edges between
        hidden layers usually break it."""
        layer = self.layer_of[self.edges]
        same = (layer[:, 0] - layer[:, 1]) % 2 == 0
        return not bool(np.any(same & (layer > 0).all(axis=1)))

    def adjacency(self) -> np.ndarray:
        """Dense boolean ``N x N`` adjacency matrix (symmetric, zero diagonal)."""
        a = np.zeros((self.n_neurons, self.n_neurons), dtype=bool)
        a[self.edges[:, 0], self.edges[:, 1]] = True
        a[self.edges[:, 1], self.edges[:, 0]] = True
        return a

    # -- counts --------------------------------------------------------------------------
    def counts(self) -> dict[str, float | int | str | None]:
        """Edge counts by kind and the ICONS quantities ``N_o``, ``N_I``, ``n`` and ``p``.

        ``p_simple`` and ``p_exact`` are the two conversions of ``n`` to the equivalent
        rewiring probability (see :func:`p_from_n`); they are reported for ICONS topologies.
        ``adjacent_absent`` is the fraction of the layered network's adjacent-layer edges that
        are absent from this topology.
        """
        kinds = self.kinds
        by_kind = {name: int(np.sum(kinds == k)) for k, name in enumerate(KIND_NAMES)}
        n_o, n_i = base_counts(self.sizes)
        layered_adjacent = layered_edge_count(self.sizes)
        out: dict[str, float | int | str | None] = {
            "family": self.family,
            "sizes": "-".join(str(n) for n in self.sizes),
            "neurons": self.n_neurons,
            "edges": int(len(self.edges)),
            **by_kind,
            "N_o": n_o,
            "N_I": n_i,
            "n": self.n,
            "p": self.p,
            "p_simple": None,
            "p_exact": None,
            "adjacent_absent": 1.0 - by_kind["adjacent"] / layered_adjacent,
            "seed": self.seed,
        }
        if self.family.startswith("icons") and self.n is not None:
            out["p_simple"] = p_from_n(self.n, self.sizes, formula="simple")
            out["p_exact"] = p_from_n(self.n, self.sizes, formula="exact")
        return out

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Save to ``path`` (``.npz``): edges plus a JSON header with the metadata."""
        meta = {
            "sizes": list(self.sizes),
            "family": self.family,
            "n": self.n,
            "p": self.p,
            "seed": self.seed,
        }
        tmp = Path(f"{path}.tmp.npz")
        np.savez_compressed(tmp, edges=self.edges, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Topology:
        """Load a topology written by :meth:`save`."""
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            edges = f["edges"].astype(np.int64)
        return cls(
            sizes=tuple(meta["sizes"]),
            edges=edges,
            family=meta["family"],
            n=meta["n"],
            p=meta["p"],
            seed=meta["seed"],
        )


# -- counts of the base networks ---------------------------------------------------------
def layered_edge_count(sizes: tuple[int, ...] | list[int]) -> int:
    """Edges of the layered network: sum of products of adjacent layer sizes."""
    return int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False)))


def allowed_pair_count(sizes: tuple[int, ...] | list[int]) -> int:
    """Allowed pairs: different neurons, not both input, not both output."""
    n = sum(sizes)
    return (n * (n - 1) - sizes[0] * (sizes[0] - 1) - sizes[-1] * (sizes[-1] - 1)) // 2


def base_counts(sizes: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """``(N_o, N_I)``: edges of layered + intralayer (hidden layers), and unconnected allowed
    pairs at that point."""
    n_o = layered_edge_count(sizes) + sum(n * (n - 1) // 2 for n in sizes[1:-1])
    return n_o, allowed_pair_count(sizes) - n_o


# -- n <-> p --------------------------------------------------------------------------------
def p_from_n(n: int, sizes: tuple[int, ...] | list[int], formula: str = "simple") -> float:
    """Equivalent rewiring probability of ``n`` ICONS replacements.

    ``simple``: ``p = 1 - ((N_o - 1) / N_o) ** n`` (ICONS section 3.3), the probability that a
    given connection was picked for removal at least once.

    ``exact``: footnote 3 of the ICONS paper. Algorithm 1 is a Markov chain in which a given
    original connection is removed with probability ``1/N_o`` and an absent one is re-added
    with probability ``1/N_I`` per step, so it is absent after ``n`` steps with probability
    ``(N_I/(N_o+N_I)) (1 - r**n)``, ``r = 1 - (N_o+N_I)/(N_o N_I)``. Rewiring every connection
    with probability ``p`` (where replacements may land on earlier removed pairs) leaves it
    absent with probability ``(N_I/N_o)(1 - exp(-p N_o/N_I))``. Equating the two gives
    ``p = -(N_I/N_o) ln(N_I/(N_o+N_I) + N_o/(N_o+N_I) r**n)``. (The seed text's rendering of
    the footnote is garbled; this form uses the same bracketed term and gives the 7.556% that
    docs/science.md section 2 states for the paper network.)
    """
    if n < 0:
        raise ConfigError(f"n (replacements) must be >= 0, got {n}")
    n_o, n_i = base_counts(sizes)
    if formula == "simple":
        return -math.expm1(n * math.log1p(-1.0 / n_o))
    if formula == "exact":
        total = n_o + n_i
        r_n = math.exp(n * math.log1p(-total / (n_o * n_i)))
        return -(n_i / n_o) * math.log(n_i / total + n_o / total * r_n)
    raise ConfigError(f"formula must be 'simple' or 'exact', got {formula!r}")


def n_from_p(p: float, sizes: tuple[int, ...] | list[int], formula: str = "simple") -> int:
    """Number of ICONS replacements whose equivalent probability is ``p`` (rounded); the
    inverse of :func:`p_from_n`."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"p must be in [0, 1), got {p}")
    n_o, n_i = base_counts(sizes)
    if formula == "simple":
        return round(math.log1p(-p) / math.log1p(-1.0 / n_o))
    if formula == "exact":
        total = n_o + n_i
        r_n = (math.exp(-p * n_o / n_i) - n_i / total) / (n_o / total)
        if r_n <= 0.0:
            raise ConfigError(
                f"p = {p} is beyond what ICONS replacement reaches for sizes {sizes} "
                f"(limit {-(n_i / n_o) * math.log(n_i / total):.4f})"
            )
        return round(math.log(r_n) / math.log1p(-total / (n_o * n_i)))
    raise ConfigError(f"formula must be 'simple' or 'exact', got {formula!r}")


# -- builders -----------------------------------------------------------------------------
def _layered_pairs(sizes: tuple[int, ...]) -> np.ndarray:
    off = np.concatenate([[0], np.cumsum(sizes)])
    blocks = []
    for k in range(len(sizes) - 1):
        i = np.arange(off[k], off[k + 1])
        j = np.arange(off[k + 1], off[k + 2])
        blocks.append(np.stack(np.meshgrid(i, j, indexing="ij"), axis=-1).reshape(-1, 2))
    return np.concatenate(blocks).astype(np.int64)


def _intralayer_pairs(sizes: tuple[int, ...]) -> np.ndarray:
    off = np.concatenate([[0], np.cumsum(sizes)])
    blocks = [np.zeros((0, 2), dtype=np.int64)]
    for k in range(1, len(sizes) - 1):
        i, j = np.triu_indices(sizes[k], k=1)
        blocks.append(np.stack([i, j], axis=1) + off[k])
    return np.concatenate(blocks).astype(np.int64)


def _sorted(edges: np.ndarray, n: int) -> np.ndarray:
    keys = np.sort(edges[:, 0] * n + edges[:, 1])
    return np.stack([keys // n, keys % n], axis=1).astype(np.int64)


def layered(sizes: tuple[int, ...] | list[int]) -> Topology:
    """The layered network: every pair of neurons in adjacent layers, nothing else.

    >>> layered([784, 500, 500, 500, 10]).counts()["edges"]
    897000
    """
    sizes = _check_sizes(sizes)
    return Topology(sizes=sizes, edges=_layered_pairs(sizes), family="layered")


def _resolve_n(sizes: tuple[int, ...], n: int | None, p: float | None, formula: str) -> int:
    if (n is None) == (p is None):
        raise ConfigError("give exactly one of n (replacements) and p (probability)")
    if n is not None:
        if int(n) != n or n < 0:
            raise ConfigError(f"n must be a non-negative integer, got {n}")
        return int(n)
    return n_from_p(float(p), sizes, formula)


def icons(
    sizes: tuple[int, ...] | list[int],
    *,
    n: int | None = None,
    p: float | None = None,
    mode: str = "replace",
    p_formula: str = "simple",
    seed: int = 0,
) -> Topology:
    """The ICONS layer-skipping topology (Algorithm 1 of Gammell et al. 2020).

    Start from the layered network, connect every pair inside each hidden layer, then repeat
    ``n`` times: in ``mode="replace"``, pick a uniformly random existing edge ``c`` (any kind),
    pick a uniformly random currently unconnected allowed pair, connect it and remove ``c``
    (a removed pair becomes unconnected again, so the edge count stays ``N_o``); in
    ``mode="add"``, only connect the random pair. Give either ``n`` or ``p``; ``p`` is turned
    into ``n`` with :func:`n_from_p` (``p_formula`` picks the formula).

    >>> t = icons([20, 10, 10, 4], n=50, seed=1)
    >>> t.counts()["edges"] == t.counts()["N_o"]
    True
    """
    sizes = _check_sizes(sizes)
    if mode not in ("replace", "add"):
        raise ConfigError(f"mode must be 'replace' or 'add', got {mode!r}")
    n_steps = _resolve_n(sizes, n, p, p_formula)
    total = sum(sizes)
    n_in, first_out = sizes[0], total - sizes[-1]
    base = np.concatenate([_layered_pairs(sizes), _intralayer_pairs(sizes)])
    keys = (base[:, 0] * total + base[:, 1]).tolist()
    unconnected = allowed_pair_count(sizes) - len(keys)
    if mode == "add" and n_steps > unconnected:
        raise ConfigError(f"n = {n_steps} exceeds the {unconnected} unconnected allowed pairs")
    position = {k: i for i, k in enumerate(keys)}
    rng = np.random.default_rng(seed)

    def random_unconnected() -> int:
        # Rejection sampling: a uniform unordered pair of distinct neurons, kept if allowed
        # and unconnected; uniform over the unconnected allowed pairs.
        while True:
            i, j = rng.integers(0, total, size=2).tolist()
            if i == j or (i < n_in and j < n_in) or (i >= first_out and j >= first_out):
                continue
            key = i * total + j if i < j else j * total + i
            if key not in position:
                return key

    for _ in range(n_steps):
        if mode == "replace":
            c = int(rng.integers(len(keys)))  # chosen before the new pair is connected
        new = random_unconnected()
        position[new] = len(keys)
        keys.append(new)
        if mode == "replace":
            # remove c in O(1): move the last key into its slot
            removed, last = keys[c], keys.pop()
            if c < len(keys):
                keys[c] = last
                position[last] = c
            del position[removed]
    k = np.asarray(keys, dtype=np.int64)
    edges = _sorted(np.stack([k // total, k % total], axis=1), total)
    return Topology(sizes=sizes, edges=edges, family=f"icons-{mode}", n=n_steps, seed=seed)


def rewired(sizes: tuple[int, ...] | list[int], p: float, *, seed: int = 0) -> Topology:
    """The journal version's rewired topology (Gammell et al., Frontiers 2021).

    No intralayer edges; every adjacent-layer edge is independently, with probability ``p``,
    replaced by a uniformly random unconnected pair of neurons in non-adjacent layers (layers
    two or more apart). Replacements never coincide with each other.
    """
    sizes = _check_sizes(sizes)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"p must be in [0, 1], got {p}")
    rng = np.random.default_rng(seed)
    adjacent = _layered_pairs(sizes)
    replaced = rng.random(len(adjacent)) < p
    n_new = int(replaced.sum())
    off = np.concatenate([[0], np.cumsum(sizes)])
    pairs = [(a, b) for a in range(len(sizes)) for b in range(a + 2, len(sizes))]
    capacity = np.array([sizes[a] * sizes[b] for a, b in pairs], dtype=np.int64)
    if n_new > capacity.sum():
        raise ConfigError(f"p = {p} asks for {n_new} skip edges but only {capacity.sum()} exist")
    total = sum(sizes)
    chosen = np.zeros(0, dtype=np.int64)
    while len(chosen) < n_new:
        # uniform over all skip-position pairs: pick a layer pair by its size, then neurons
        m = 2 * (n_new - len(chosen)) + 16
        which = rng.choice(len(pairs), size=m, p=capacity / capacity.sum())
        lo = np.array([off[pairs[w][0]] for w in which])
        hi = np.array([off[pairs[w][1]] for w in which])
        i = lo + (rng.random(m) * np.array([sizes[pairs[w][0]] for w in which])).astype(np.int64)
        j = hi + (rng.random(m) * np.array([sizes[pairs[w][1]] for w in which])).astype(np.int64)
        # keep first occurrences only, in draw order, so the result depends only on the seed
        candidates = np.concatenate([chosen, i * total + j])
        _, first = np.unique(candidates, return_index=True)
        chosen = candidates[np.sort(first)][:n_new]
    new = np.stack([chosen // total, chosen % total], axis=1)
    edges = _sorted(np.concatenate([adjacent[~replaced], new]), total)
    return Topology(sizes=sizes, edges=edges, family="rewired", p=float(p), seed=seed)
