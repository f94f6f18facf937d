"""Which neurons connect: layered, ICONS layer-skipping (replace / add) and rewired topologies.

A :class:`Topology` is an immutable value: the layer sizes (input first, output last) and the
undirected edge list over global neuron indices (input neurons first, then each layer in
order). Every edge is classified by *position*:

- ``ADJACENT``: its two neurons lie in adjacent layers;
- ``INTRALAYER``: both lie in the same (hidden) layer;
- ``SKIP``: they lie in layers two or more apart.

Allowed pairs (docs/science.md section 2): two different neurons, not both input, not both output.

Your own topology: :meth:`Topology.from_mask` (an ``N x N`` 0/1 matrix), :meth:`Topology.from_edges`
(pairs in any order) and :meth:`Topology.from_edge_file` (a text file of ``i j`` lines, which
is also what a config's ``[topology] family = "file"`` reads). Every topology is validated
when it is made: indices in range, no self-loops, no edge between two input neurons (they are
clamped), no pair listed twice; those built from a mask or a list also need at least one edge
between each two adjacent layers. Edges between output neurons are allowed.

Counts a researcher wants (:meth:`Topology.counts`) follow the ICONS paper's notation: ``N_o``
is the number of connections after the intralayer edges are added (it stays constant under
"replace"), ``N_I`` the number of allowed pairs still unconnected at that point.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import ArrayLike

from eqprop.errors import ConfigError

ADJACENT, INTRALAYER, SKIP = 0, 1, 2
KIND_NAMES = ("adjacent", "intralayer", "skip")
#: the family of a topology made from a mask, a list of pairs or an edge-list file
CUSTOM = "custom"
FAMILIES = ("layered", "icons-replace", "icons-add", "rewired", CUSTOM)
#: one edge of an edge-list file: two integers (at most 18 digits: int64) separated by
#: whitespace or a comma
_EDGE_LINE = re.compile(r"\s*([+-]?\d{1,18})\s*[,\s]\s*([+-]?\d{1,18})\s*")


def _check_sizes(sizes: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2:
        raise ConfigError(f"sizes must list at least an input and an output layer, got {sizes}")
    if any(n < 1 for n in sizes):
        raise ConfigError(f"every layer size must be a positive integer, got {sizes}")
    return sizes


def _integer_pairs(pairs, what: str) -> np.ndarray:
    """``pairs`` as an ``(E, 2)`` int64 array; a one-line error for another shape or dtype."""
    array = np.asarray(pairs)
    if array.size == 0:
        array = array.reshape(0, 2).astype(np.int64)
    if array.ndim != 2 or array.shape[1] != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(
            f"{what} must be an (E, 2) array of integer neuron indices, got {array.dtype} "
            f"of shape {array.shape}"
        )
    return array.astype(np.int64, copy=False)


def _check_pairs(sizes: tuple[int, ...], pairs: np.ndarray, name: Callable[[int], str]) -> None:
    """A one-line error naming (``name(k)``) the first pair with an index out of range, a
    self-loop or two input neurons."""
    n, n_in = sum(sizes), sizes[0]
    low, high = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    for bad, why in (
        ((low < 0) | (high >= n), f"has a neuron index outside 0..{n - 1} (sizes {list(sizes)})"),
        (low == high, "joins a neuron to itself"),
        (
            high < n_in,
            f"joins two input neurons (0..{n_in - 1}); inputs are clamped, so an edge between "
            f"them would do nothing",
        ),
    ):
        if bad.any():
            raise ConfigError(f"{name(int(np.argmax(bad)))} {why}")


def _first_repeat(keys: np.ndarray) -> int | None:
    """The position of the first key equal to an earlier one (None: all distinct)."""
    order = np.argsort(keys, kind="stable")
    repeats = order[1:][keys[order][1:] == keys[order][:-1]]
    return int(repeats.min()) if repeats.size else None


@dataclass(frozen=True)
class Topology:
    """An undirected network topology over layered neurons.

    The constructor takes the edges as stored; it refuses (one-line
    :class:`~eqprop.errors.ConfigError`) an index out of range, a self-loop, an edge between
    two input neurons, a pair listed twice, and pairs that are not ``i < j`` in increasing
    order. To build one from pairs in any order, a mask or a file, use :meth:`from_edges`,
    :meth:`from_mask` or :meth:`from_edge_file`.

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

    def __post_init__(self) -> None:
        sizes = _check_sizes(self.sizes)
        edges = _integer_pairs(self.edges, "Topology edges")
        _check_pairs(sizes, edges, lambda k: f"Topology edge {k} {tuple(edges[k].tolist())}")
        n = sum(sizes)
        keys = edges[:, 0] * n + edges[:, 1]
        if np.any(edges[:, 0] > edges[:, 1]) or np.any(np.diff(keys) <= 0):
            repeat = _first_repeat(np.sort(edges, axis=1) @ np.array([n, 1]))
            if repeat is not None:
                raise ConfigError(
                    f"Topology edge {repeat} {tuple(edges[repeat].tolist())} is listed twice; "
                    f"list each undirected edge once"
                )
            raise ConfigError(
                "Topology edges must be pairs i < j in increasing order; for pairs in any "
                "order use Topology.from_edges(sizes, pairs)"
            )
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "edges", edges)

    # -- your own topology -----------------------------------------------------------------
    @classmethod
    def from_edges(
        cls, sizes: tuple[int, ...] | list[int], pairs: Iterable[tuple[int, int]] | np.ndarray
    ) -> Topology:
        """A :data:`CUSTOM` topology from undirected pairs ``(i, j)`` of global neuron indices
        (inputs first, then each layer in order), each pair once, in any order and either
        orientation. One-line :class:`~eqprop.errors.ConfigError` for an index out of range,
        a self-loop, two input neurons, a repeated pair, or two adjacent layers with no edge
        between them.

        >>> Topology.from_edges([2, 2, 1], [(3, 0), (1, 2), (2, 4), (3, 4)]).edges.tolist()
        [[0, 3], [1, 2], [2, 4], [3, 4]]
        """
        pairs = _integer_pairs(pairs, "edges")
        return cls._from_pairs(
            sizes, pairs, lambda k: f"edge {k} {tuple(pairs[k].tolist())}", "the edge list"
        )

    @classmethod
    def from_mask(cls, sizes: tuple[int, ...] | list[int], mask: ArrayLike) -> Topology:
        """A :data:`CUSTOM` topology from an ``N x N`` 0/1 (or boolean) matrix over global neuron
        indices, ``N = sum(sizes)``: ``mask[i, j] = 1`` joins ``i`` and ``j``. Give it
        symmetric (as :meth:`adjacency` returns) or as its upper triangle only; the diagonal
        is 0. Validated as :meth:`from_edges`.

        >>> Topology.from_mask([1, 1], [[0, 1], [1, 0]]).edges.tolist()
        [[0, 1]]
        """
        sizes = _check_sizes(sizes)
        n = sum(sizes)
        m = np.asarray(mask)
        if m.shape != (n, n):
            raise ConfigError(
                f"the mask must be N x N with N = {n} neurons (sizes {list(sizes)}), got shape "
                f"{m.shape}"
            )
        if m.dtype.kind not in "biuf" or not np.isin(m, (0, 1)).all():
            raise ConfigError("the mask must hold only 0 and 1 (or False and True)")
        m = m.astype(bool)
        upper, lower = np.triu(m, 1), np.tril(m, -1)
        if lower.any() and not np.array_equal(lower.T, upper):
            i, j = np.argwhere(lower.T != upper)[0].tolist()
            raise ConfigError(
                f"the mask is neither symmetric nor upper-triangular (mask[{i}, {j}] = "
                f"{int(m[i, j])} but mask[{j}, {i}] = {int(m[j, i])}); give a symmetric mask or "
                f"its upper triangle only"
            )
        pairs = np.argwhere(upper | np.diag(np.diag(m)))
        return cls._from_pairs(sizes, pairs, lambda k: f"mask{pairs[k].tolist()}", "the mask")

    @classmethod
    def from_edge_file(
        cls, sizes: tuple[int, ...] | list[int], path: str | os.PathLike
    ) -> Topology:
        """A :data:`CUSTOM` topology from a text file of edges: one ``i j`` per line (two
        global neuron indices separated by spaces, a tab or a comma), ``#`` starting a
        comment, blank lines ignored; ``numpy.savetxt(path, topology.edges, fmt="%d")`` writes
        one. Validated as :meth:`from_edges`, errors naming the line."""
        from eqprop.userfiles import read_user_file

        raw = read_user_file(path, "topology file", ConfigError)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(
                f"topology file {path} is not a text file of 'i j' lines; write one with "
                f"numpy.savetxt(path, edges, fmt='%d')"
            ) from None
        pairs, lines = [], []
        for number, line in enumerate(text.splitlines(), 1):
            content = line.partition("#")[0].strip()
            if not content:
                continue
            match = _EDGE_LINE.fullmatch(content)
            if match is None:
                raise ConfigError(
                    f"{path}, line {number}: expected an edge 'i j' (two neuron indices), got "
                    f"{content[:40]!r}"
                )
            pairs.append((int(match[1]), int(match[2])))
            lines.append(number)
        array = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return cls._from_pairs(
            sizes,
            array,
            lambda k: f"{path}, line {lines[k]} ({pairs[k][0]} {pairs[k][1]})",
            f"topology file {path}",
        )

    @classmethod
    def _from_pairs(
        cls, sizes, pairs: np.ndarray, name: Callable[[int], str], source: str
    ) -> Topology:
        """The topology of ``pairs`` (any order and orientation), validated; ``name(k)``
        names pair ``k`` and ``source`` the whole in the messages."""
        sizes = _check_sizes(sizes)
        if not len(pairs):
            raise ConfigError(f"{source} has no edges")
        _check_pairs(sizes, pairs, name)
        n = sum(sizes)
        ordered = np.sort(pairs, axis=1)
        repeat = _first_repeat(ordered @ np.array([n, 1]))
        if repeat is not None:
            raise ConfigError(f"{name(repeat)} repeats an edge listed before; list each edge once")
        edges = _sorted(ordered, n)
        layer = np.repeat(np.arange(len(sizes)), sizes)[edges]
        joined = set(layer.min(axis=1)[np.abs(layer[:, 1] - layer[:, 0]) == 1].tolist())
        for k in range(len(sizes) - 1):
            if k not in joined:
                raise ConfigError(
                    f"{source} has no edge between layer {k} and layer {k + 1}; every two "
                    f"adjacent layers need one (the per-layer learning rates and rates of eq. 2 "
                    f"are defined on them)"
                )
        return cls(sizes=sizes, edges=edges, family=CUSTOM)

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
    def save(self, path: str | os.PathLike | BinaryIO) -> None:
        """Save as ``.npz`` (edges plus a JSON header with the metadata) to ``path``, or into
        an open binary file."""
        meta = {
            "sizes": list(self.sizes),
            "family": self.family,
            "n": self.n,
            "p": self.p,
            "seed": self.seed,
        }
        arrays = {"edges": self.edges, "meta": np.array(json.dumps(meta))}
        if not isinstance(path, (str, os.PathLike)):
            np.savez_compressed(path, **arrays)
            return
        tmp = Path(f"{path}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
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
    ``p = -(N_I/N_o) ln(N_I/(N_o+N_I) + N_o/(N_o+N_I) r**n)``. (The paper's text rendering of
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
