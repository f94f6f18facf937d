"""The energy-based network: parameters, energy, and one step's drive.

A continuous Hopfield network (``docs/science.md`` section 1, Scellier & Bengio 2017) over a
:class:`~eqprop.topology.Topology`. Layer 0 is the input, clamped to the example ``x``; the
*state* ``s`` holds every other neuron (shape ``(batch, M)``, ``M`` = non-input neurons, in
layer order).

- ``rho`` is the network's :mod:`~eqprop.activation` (default the hard sigmoid
  ``clip(u, 0, 1)``, whose states stay in ``[0, 1]``); inputs take part with ``rho(x) = x``.
- ``E(s) = 1/2 sum_i s_i^2 - sum_{i<j} W_ij rho(s_i) rho(s_j) - sum_i b_i rho(s_i)``, the sums
  running over the state and, for the pair term, input-state pairs too. (The constant
  ``1/2 |x|^2`` of the clamped input is left out: it changes neither dynamics nor gradients.)
- The drive of a step, ``h = W rho(s) + W_in x + b`` (:meth:`Network.stepper`), times
  ``rho'(s)`` for a smooth activation (its gain, :mod:`eqprop.activation`); how a step
  turns it into the next state (free, or nudged towards a target) is :mod:`eqprop.nudging`'s
  job, and how many steps are run is :mod:`eqprop.relaxation`'s.

Storage: the symmetric weight matrix is held as dense blocks between *groups* of consecutive
layers (only blocks that contain an edge). With ``layout="blocks"`` every layer is its own
group, so a layered network never does ``N x N`` work; with ``layout="dense"`` all non-input
layers form one group (one stored matrix), which suits layer-skipping edges that touch
nearly every block. ``"auto"`` picks by the area the blocks cover.

Masks: a weight on a missing edge is exactly 0 whatever changes the parameters. eqprop's
own updates give missing edges rate 0 (:mod:`eqprop.updates`); after every ``torch.optim``
optimiser step over a network's parameters and after every ``load_state_dict``, hooks of
PyTorch's (:func:`_mask_after_step`, :func:`_mask_after_load`) multiply the weights by their
masks (:meth:`Network.apply_masks`).

Computation (:meth:`Network.product_plan`), independent of storage: a step is a list of
matrix products ``out[:, cols] += s[:, rows] @ w`` on views of the stored blocks. A stored
block runs as one dense product (per direction), or split into its layer pairs, skipping
empty pairs and running sparse pairs (on CPU) as CSR products -- e.g. the 8.8%-dense
500 x 500 skip pair of the ICONS network C. Of the two, the block takes the one that
:func:`plan_cost` says is cheaper. On CPU that model counts, besides the multiply-adds, the
fixed cost of each product call (Python dispatch, the CSR product's set-up, the transposing
copies of :meth:`Network.stepper`), which dominates on small blocks: the 784-100x5-10
rewired network runs one dense product over its 510 x 510 block, not 30 pair products. The
model's constants are calibrated once (:data:`CSR_CALL_COST`), never measured at run time:
the plan decides the rounding of every step, and runs resume bit for bit. Within a split,
each pair runs dense or as CSR by the same model, call included (:func:`product_cost`): a
CSR call's fixed cost exceeds a dense call's by 30,500 multiply-adds, so small sparse pairs
(C's 500 x 10 skip pairs to the output) run dense. Solvers that work layer by layer take the
split of every block whatever the model picks (:meth:`Network.pair_plan`). The input block's
product is done once per batch (:meth:`Network.input_drive`).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from eqprop import activation as activations
from eqprop.activation import Activation
from eqprop.errors import ConfigError
from eqprop.nudging import Kernel, Nudge
from eqprop.topology import ADJACENT, Topology

if TYPE_CHECKING:
    from eqprop.relaxation import Relaxer

LAYOUTS = ("auto", "blocks", "dense")
# The plan's cost model (:func:`plan_cost`), in multiply-adds per example at batch
# COST_BATCH: a dense product of an r x c block costs ``DENSE_CALL_COST + r * c``, a CSR
# product ``CSR_CALL_COST + SPARSE_COST * nnz``. The call costs are calibrated constants, not
# measured per process (the plan decides every step's rounding; runs must resume bit for
# bit). Measured with eqprop.bench.call_costs.measure_call_costs(rounds=40): each product exactly as
# Network.stepper runs it (dense: ``addmm_`` into a view of ``h`` from a view of ``s``, by a
# view or transposed view of a stored block; CSR: ``buffer.copy_(s_rows.T)`` then
# ``out.add_(torch.mm(csr, buffer).T)``, csr from Product.csr()), 13 block shapes from 10 x 10
# to 1510 x 1510 in both orientations and CSR densities 1-30% on 11 of them, batch 20, one
# torch thread, process CPU time (least per call over 40 interleaved rounds); then
# ``time = fixed + slope * work`` fitted in relative error, and the fixed times divided by
# the dense slope (one multiply-add per example: 0.42-0.57 ns). Seven runs on an Intel Xeon
# (family 6 model 207, AVX512, KVM guest, 2 cores; torch 2.13.0+cpu), beside two training
# jobs: dense call 4,100-6,100 (median 4,430; 1.8-3.5 us), CSR call 33,300-40,500 (median
# 34,700; 14-23 us), a CSR non-zero 4.3-4.6 (SPARSE_COST's 5.0 kept). ``eqprop bench``
# measures them again on its machine and prints them beside these constants. ICONS network
# C's split (13 dense products; its 500 x 500 skip pair CSR, both directions) is modelled 6.8%
# cheaper than its one dense product (2.13 M against 2.28 M); a CSR call above 112,900 or a
# dense call above 17,400 would flip it (tests/test_network.py guards its plan).
#: The batch at which the cost constants are expressed (the papers' batch).
COST_BATCH = 20
#: A CSR product costs about this many dense multiply-adds per stored non-zero; within a
#: split, a pair runs as CSR where ``CSR_CALL_COST + SPARSE_COST * nnz`` is below
#: ``DENSE_CALL_COST + area`` (:func:`product_cost`; on CPU only).
SPARSE_COST = 5.0
#: The fixed cost of one dense product call (``addmm_``) in a step, in multiply-adds per
#: example at batch COST_BATCH (see the comment above).
DENSE_CALL_COST = 4_500.0
#: The fixed cost of one CSR product call in a step (the transposing copy, the CSR product's
#: set-up, the transposed add), in the same units.
CSR_CALL_COST = 35_000.0


@dataclass(frozen=True)
class Block:
    """A stored weight block between groups ``rows <= cols`` (group 0 is the input).

    ``rows``/``cols`` are slices in the coordinates of their side: input indices for the
    input group, state indices otherwise.
    """

    row_group: int
    col_group: int
    rows: slice
    cols: slice

    @property
    def is_input(self) -> bool:
        """Whether the block's rows are the input layer (a constant drive, not a state)."""
        return self.row_group == 0

    @property
    def is_diagonal(self) -> bool:
        """Whether the block joins a layer group to itself (intralayer edges)."""
        return self.row_group == self.col_group

    def whole_products(self, weight: torch.Tensor) -> list[Product]:
        """The block as one dense product per direction (one for a diagonal block)."""
        products = [Product(self.rows, self.cols, weight)]
        if not self.is_diagonal:
            products.append(Product(self.cols, self.rows, weight.T))
        return products


@dataclass(frozen=True, eq=False)
class Product:
    """One matrix product of a relaxation step: ``out[:, cols] += s[:, rows] @ weight``.

    ``rows``/``cols`` are state-coordinate slices; ``weight`` is a view of a stored block
    (possibly transposed), so in-place updates of the block are seen. With ``sparse`` set,
    the product runs as a CSR product with ``weight^T``: ``sparse`` holds its fixed pattern
    (CSR row pointers, column indices, and the flat positions of the values in ``source``,
    the stored block).
    """

    rows: slice
    cols: slice
    weight: torch.Tensor
    source: torch.Tensor | None = None
    sparse: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def csr(self) -> torch.Tensor:
        """``weight^T`` as a CSR tensor with the stored block's current values."""
        crow, col, flat = self.sparse
        values = self.source.reshape(-1).index_select(0, flat)
        shape = (self.cols.stop - self.cols.start, self.rows.stop - self.rows.start)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": used as documented
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
            warnings.filterwarnings("ignore", message="Sparse invariant checks")
            return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)

    @staticmethod
    def sparse_of(view: torch.Tensor, mask: torch.Tensor, source: torch.Tensor) -> tuple:
        """The CSR pattern of ``view^T`` where ``mask^T`` is non-zero; ``view`` is a view of
        the contiguous tensor ``source``."""
        r, c = torch.nonzero(mask.T != 0, as_tuple=True)  # row-major order, as CSR needs
        offset = view.storage_offset() - source.storage_offset()
        flat = offset + c * view.stride(0) + r * view.stride(1)  # view^T[r, c] = view[c, r]
        # int32 indices: the CPU CSR product converts int64 ones at every call (measured
        # 32 against 20 us for a 500 x 500 skip pair at batch 20; the same result)
        crow = torch.zeros(mask.shape[1] + 1, dtype=torch.int32, device=mask.device)
        crow[1:] = torch.bincount(r, minlength=mask.shape[1]).cumsum(0)
        return crow, c.to(torch.int32), flat.to(torch.int64)


def _add_csr_product(out: torch.Tensor, csr: torch.Tensor, src: torch.Tensor) -> None:
    """``out += src @ W`` from ``csr = W^T`` (CSR @ dense wants a contiguous right-hand side)."""
    out.add_(torch.mm(csr, src.T.contiguous()).T)


def product_cost(area: int, nnz: int | None = None, calls: bool = True) -> float:
    """The modelled cost of one product of a step, in multiply-adds per example at batch
    :data:`COST_BATCH`: dense over ``area`` weights (``nnz`` None), or CSR with ``nnz``
    stored non-zeros; ``calls`` adds the fixed cost of the call (:data:`DENSE_CALL_COST`,
    :data:`CSR_CALL_COST`)."""
    if nnz is None:
        return (DENSE_CALL_COST if calls else 0.0) + area
    return (CSR_CALL_COST if calls else 0.0) + SPARSE_COST * nnz


def plan_cost(products: list[Product], calls: bool = True) -> float:
    """The modelled cost of running ``products`` once (:func:`product_cost` summed)."""
    total = 0.0
    for p in products:
        area = (p.rows.stop - p.rows.start) * (p.cols.stop - p.cols.start)
        total += product_cost(area, None if p.sparse is None else p.sparse[1].numel(), calls)
    return total


def glorot_bounds(sizes: tuple[int, ...]) -> list[float]:
    """Glorot-uniform bound ``sqrt(6 / (n_j + n_{j+1}))`` of each adjacent layer pair."""
    return [float(np.sqrt(6.0 / (a + b))) for a, b in zip(sizes[:-1], sizes[1:], strict=False)]


def default_skip_bound(topology: Topology) -> float:
    """Initial bound ``a`` of intralayer and skip weights: 0.05 (ICONS), or for the rewired
    topology the mean of the Glorot bounds of the adjacent layer pairs (journal version)."""
    if topology.family == "rewired":
        return float(np.mean(glorot_bounds(topology.sizes)))
    return 0.05


class LayerTerm(NamedTuple):
    """One directed drive term of a step, for the solvers that update layer by layer
    (:mod:`eqprop.relaxation.layer_sweep`): ``run()`` adds the term into the drive of layer
    ``into`` from the rates of layer ``source``; ``reads_into`` says whether it also reads
    layer ``into``'s own rates (a max-pooled conv block's feedback, whose pool maxima are
    taken at its source layer)."""

    into: int
    source: int
    reads_into: bool
    run: Callable[[], None]


class EnergyNetwork(torch.nn.Module):
    """What the relaxers, nudgings, estimators, updates and trainer use of a network, and the
    parts of it that follow from the rest: a state ``s`` of shape ``(batch, n_state)`` (every
    non-input neuron, layer by layer), the energy ``E(s)`` whose gradient is ``s - G(s, h)``
    with the drive ``h`` of :meth:`drive` (``docs/science.md`` section 1), and parameters
    that the EP estimate reaches through :meth:`correlation_difference`.

    A subclass sets ``activation``, ``sizes`` (flat layer sizes, input first), ``n_state``,
    ``output`` (the output layer's state slice), ``dtype``, ``device``, ``weights`` (a list of
    parameters) and ``biases`` (one flat parameter), and implements the methods that raise
    ``NotImplementedError`` here. :class:`Network` is the fully connected Hopfield network;
    :class:`eqprop.conv.ConvNetwork` mixes convolutional and dense layers.
    """

    activation: Activation
    sizes: tuple[int, ...]
    n_state: int
    output: slice
    dtype: torch.dtype
    device: torch.device

    # -- what a network implements -----------------------------------------------------------
    def energy(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``E(s)`` per example, for inputs ``x``."""
        raise NotImplementedError

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """The constant part of the drive (inputs and biases), computed once per batch."""
        raise NotImplementedError

    def drive(self, s: torch.Tensor, base: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The drive ``h(s)`` (``base`` plus the interactions' terms, before the gain) into
        ``out``."""
        raise NotImplementedError

    def stepper(
        self, s: torch.Tensor, base: torch.Tensor, h: torch.Tensor, finish: Kernel
    ) -> Kernel:
        """One in-place step: the drive into ``h``, the activation's gain, then ``finish()``
        (:mod:`eqprop.nudging`)."""
        raise NotImplementedError

    def correlation_difference(
        self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per weight tensor and for the biases, ``sum_batch (dPhi/dtheta (a) - dPhi/dtheta
        (b))`` with ``Phi = 1/2 |s|^2 - E`` (the raw sums of :class:`eqprop.estimators.
        Estimate`)."""
        raise NotImplementedError

    def on_edges(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Tensors shaped like :attr:`weights` (an estimate) kept to the network's existing
        weights: new tensors, zero where there is no weight."""
        raise NotImplementedError

    def pair_views(self) -> list[tuple[int, slice, slice, int]]:
        """For each adjacent layer pair (input side first), the weight tensor holding its
        weights, the row and column slices of its weights in that tensor and their number:
        what the per-layer rates of eq. 2 are taken over (:mod:`eqprop.updates`)."""
        raise NotImplementedError

    def layer_terms(
        self,
        rates: Callable[[int], torch.Tensor],
        drive: Callable[[int], torch.Tensor],
    ) -> list[LayerTerm]:
        """Every state-state term of the drive as one :class:`LayerTerm` per direction, on
        views ``rates(k)`` and ``drive(k)`` (shape ``(batch, sizes[k])``, from any state
        layout) of layer ``k``'s rates and drive; the input's term is in :meth:`input_drive`.
        The layer-sweep solvers build their half-sweeps from it."""
        raise NotImplementedError

    # -- what follows ------------------------------------------------------------------------
    def zero_state(self, batch: int) -> torch.Tensor:
        """An all-zero state, the starting point of a first free phase."""
        return torch.zeros(batch, self.n_state, dtype=self.dtype, device=self.device)

    def equilibrium(
        self, x: torch.Tensor, relaxer: Relaxer | None = None, state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The whole free state at the equilibrium of inputs ``x`` (shape ``(batch, M)``, layer
        order, inputs excluded), reached by ``relaxer`` (default: FISTA to a fixed-point
        residual below 1e-5) from ``state`` (default zeros; updated in place when given). No
        gradient is recorded; ``x`` is moved to the network's device and dtype."""
        from eqprop.relaxation.fista import Fista

        relaxer = relaxer if relaxer is not None else Fista(steps=10_000, tol=1e-5)
        x = torch.as_tensor(x).to(self.device, self.dtype)
        s = self.zero_state(len(x)) if state is None else state
        with torch.no_grad():
            relaxer.relax(self, s, self.input_drive(x))
        return s

    def forward(self, x: torch.Tensor, relaxer: Relaxer | None = None) -> torch.Tensor:
        """The output units' states at the free equilibrium of ``x``, shape ``(batch, n_out)``
        (:meth:`equilibrium`; ``net(x)``): what the cost compares with the target (for the
        hard sigmoid also their activations, ``rho(s) = s`` in ``[0, 1]``)."""
        return self.equilibrium(x, relaxer)[:, self.output]

    def predict(
        self, x: torch.Tensor, relaxer: Relaxer | None = None, state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predicted classes of ``x``: the argmax of the outputs at the free equilibrium
        (:meth:`equilibrium`, from ``state`` when given)."""
        return self.equilibrium(x, relaxer, state)[:, self.output].argmax(1)

    def error(self, x: torch.Tensor, y: torch.Tensor, relaxer: Relaxer | None = None) -> float:
        """The fraction of ``x`` whose predicted class (:meth:`predict`) is not ``y``."""
        y = torch.as_tensor(y).to(self.device)
        return float((self.predict(x, relaxer) != y).float().mean())

    def total_energy(
        self, s: torch.Tensor, x: torch.Tensor, nudge: Nudge | None = None
    ) -> torch.Tensor:
        """``F = E + beta C`` per example, ``C`` the cost of ``nudge``'s scheme (``E`` alone
        without a nudge)."""
        f = self.energy(s, x)
        if nudge is None:
            return f
        return f + nudge.beta * nudge.nudging.cost(s[:, self.output], nudge.target)

    def _step(
        self,
        products: Callable[[], None],
        finish: Callable[[], None],
        s: torch.Tensor,
        h: torch.Tensor,
        rates: torch.Tensor,
    ) -> Callable[[], None]:
        """One step from a network's ``products`` (``h`` from ``rates``) and its ``finish``:
        for the hard sigmoid (``rates`` is ``s`` itself) just the two; for a smooth
        activation ``rates = rho(s)`` first and ``h`` times ``rho'(s)`` after."""
        act = self.activation
        if act.projected:

            def step() -> None:
                products()
                finish()

        else:

            def step() -> None:
                rates.copy_(act.rho(s))
                products()
                act.gain_(s, h)
                finish()

        return step

    def grad_F(self, s: torch.Tensor, x: torch.Tensor, nudge: Nudge | None = None) -> torch.Tensor:
        """``dF/ds`` as the ``gradient`` step uses it, ``s - G(s, h)`` (the hard sigmoid's
        ``rho' = 1`` inside ``[0, 1]``; ``rho'(s) h`` for a smooth activation)."""
        h = self.drive(s, self.input_drive(x), torch.empty_like(s))
        g = s - self.activation.gain_(s, h)
        if nudge is not None:
            out = self.output
            g[:, out] += nudge.beta * nudge.nudging.cost_grad(s[:, out], nudge.target)
        return g


class Network(EnergyNetwork):
    """A continuous Hopfield network with symmetric, topology-masked weights.

    A ``torch.nn.Module``: the weight blocks (:attr:`weights`) and :attr:`biases` are its
    parameters (``requires_grad=False``: EP computes its own estimates), so ``.to(dtype or
    device)``, ``state_dict()`` and ``load_state_dict()`` work as for any module; the 0/1
    masks are non-persistent buffers (they follow from the topology). Move a network before
    building a trainer or update on it: those keep per-edge tensors of their own. Missing
    edges stay exactly 0 under any ``torch.optim`` optimiser over its parameters and under
    ``load_state_dict`` of dense tensors (module docs, :meth:`apply_masks`).

    Args:
        topology: which neurons connect.
        a: initial weights of intralayer and skip edges are ``U[-a, a]``; default
            :func:`default_skip_bound`. Adjacent-layer edges are Glorot uniform; edges are
            classified by position (an adjacent-layer pair is Glorot-initialised however it
            arose). Biases start at 0.
        seed: seed of the weight initialisation.
        layout: weight storage, one of ``"auto"``, ``"blocks"``, ``"dense"`` (module docs).
        dtype, device: of all tensors.
        activation: ``rho``, an :class:`~eqprop.activation.Activation` or the name of one in
            :data:`eqprop.activation.ACTIVATIONS` (default the hard sigmoid).

    Example:
        >>> from eqprop import topology
        >>> from eqprop.relaxation.fixed import FixedSteps
        >>> net = Network(topology.layered([4, 3, 2]), seed=0)
        >>> x = torch.ones(1, 4)
        >>> result = FixedSteps(steps=50).relax(net, net.zero_state(1), net.input_drive(x))
        >>> tuple(result.state.shape), result.steps
        ((1, 5), 50)
    """

    def __init__(
        self,
        topology: Topology,
        *,
        a: float | None = None,
        seed: int = 0,
        layout: str = "auto",
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        activation: Activation | str = activations.DEFAULT,
    ) -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        super().__init__()
        self.topology = topology
        self.activation = activations.get(activation)
        self.sizes = topology.sizes
        self.n_input = self.sizes[0]
        self.n_state = int(sum(self.sizes[1:]))
        self.dtype, self.device = dtype, torch.device(device)
        self.skip_bound = default_skip_bound(topology) if a is None else float(a)
        if self.skip_bound < 0:
            raise ConfigError(f"a (initial skip/intralayer weight bound) must be >= 0, got {a}")

        off = topology.offsets
        #: state-coordinate slice of each layer (index 0, the input, is in input coordinates)
        self.layer_slices = [slice(0, self.n_input)] + [
            slice(int(off[k] - self.n_input), int(off[k + 1] - self.n_input))
            for k in range(1, len(self.sizes))
        ]
        self.output = self.layer_slices[-1]
        self.layout = self._choose_layout(layout)
        self._build_groups()
        self.biases = torch.nn.Parameter(
            torch.zeros(self.n_state, dtype=dtype, device=self.device), requires_grad=False
        )
        self._build_blocks(seed)
        self._hold_masks()

    def _hold_masks(self) -> None:
        """Have the mask hooks (module docs) watch this network."""
        _NETWORKS.add(self)
        self.register_load_state_dict_post_hook(_mask_after_load)

    def __setstate__(self, state: dict) -> None:
        """Unpickling and ``copy.deepcopy``: a copy's masks hold as the original's do."""
        super().__setstate__(state)
        _NETWORKS.add(self)

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Set every weight on a missing edge to 0 (``w *= mask``; existing edges keep their
        exact values). Runs by itself after each ``torch.optim`` step over the network's
        parameters and after ``load_state_dict``; call it after changing weights by hand."""
        for w, mask in zip(self.weights, self.masks, strict=True):
            w.mul_(mask)

    # -- construction ----------------------------------------------------------------------
    def _layer_pairs_present(self) -> set[tuple[int, int]]:
        layer = self.topology.layer_of
        pairs = np.unique(layer[self.topology.edges], axis=0)
        return {(int(a), int(b)) for a, b in pairs}

    def _choose_layout(self, layout: str) -> str:
        if layout != "auto":
            return layout
        sizes = self.sizes
        covered = sum(
            sizes[a] * sizes[b] * (1 if a == b else 2)
            for a, b in self._layer_pairs_present()
            if a > 0
        )
        return "dense" if covered > 0.6 * self.n_state**2 else "blocks"

    def _build_groups(self) -> None:
        n_layers = len(self.sizes)
        if self.layout == "blocks":
            self.group_of_layer = list(range(n_layers))
        else:
            self.group_of_layer = [0] + [1] * (n_layers - 1)
        n_groups = max(self.group_of_layer) + 1
        self.group_slices: list[slice] = []
        for g in range(n_groups):
            layers = [k for k in range(n_layers) if self.group_of_layer[k] == g]
            first, last = self.layer_slices[layers[0]], self.layer_slices[layers[-1]]
            self.group_slices.append(slice(first.start, last.stop))

    def _local(self, neurons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group and index within the group of global neuron indices."""
        layer = self.topology.layer_of[neurons]
        group = np.asarray(self.group_of_layer)[layer]
        start = np.array([s.start for s in self.group_slices])[group]
        state = np.where(group == 0, neurons, neurons - self.n_input)
        return group, state - start

    def _build_blocks(self, seed: int) -> None:
        edges = self.topology.edges
        gi, li = self._local(edges[:, 0])
        gj, lj = self._local(edges[:, 1])
        self._edge_index: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.blocks: list[Block] = []
        for r, c in sorted({(int(a), int(b)) for a, b in zip(gi, gj, strict=True)}):
            sel = np.flatnonzero((gi == r) & (gj == c))
            self.blocks.append(Block(r, c, self.group_slices[r], self.group_slices[c]))
            self._edge_index.append((sel, li[sel], lj[sel]))
        self.blocks_weights = torch.nn.ParameterList(
            torch.nn.Parameter(w, requires_grad=False)
            for w in self.from_edges(self._initial_edge_weights(seed))
        )
        for i, mask in enumerate(self.from_edges(np.ones(len(edges)))):
            self.register_buffer(f"mask_{i}", mask, persistent=False)
        self._build_plan()

    @property
    def weights(self) -> list[torch.Tensor]:
        """The stored weight blocks, one per :class:`Block` (parameters, updated in place)."""
        return list(self.blocks_weights)

    @property
    def masks(self) -> list[torch.Tensor]:
        """The 0/1 edge masks shaped like :attr:`weights`."""
        return [getattr(self, f"mask_{i}") for i in range(len(self.blocks))]

    def _apply(self, fn, recurse: bool = True):
        """After ``.to()`` / ``.double()`` / ...: adopt the new dtype and device and rebuild
        the product plans (they hold views of the old tensors)."""
        super()._apply(fn, recurse)
        self.dtype, self.device = self.biases.dtype, self.biases.device
        self._build_plan()
        return self

    def _build_plan(self) -> None:
        """Build the products of one step (see the module docs) into ``_plan`` and the layer-
        pair split of every stored block into ``_pair_plan`` (:meth:`pair_plan`). Per stored
        block, ``_plan`` takes the cheaper by :func:`plan_cost` of one dense product over the
        whole block (per direction) and its layer pairs; within the split, each pair runs
        dense or as CSR (CPU only), whichever :func:`product_cost` says is cheaper. The fixed
        cost of a call counts on CPU, where it was calibrated; on other devices the plan
        compares multiply-adds only."""
        plan: list[Product] = []
        pairs: list[Product] = []
        csr_ok = self.device.type == "cpu"
        layers_of = [
            [k for k in range(self.n_layers) if self.group_of_layer[k] == g]
            for g in range(len(self.group_slices))
        ]
        for block, w, mask in zip(self.blocks, self.weights, self.masks, strict=True):
            if block.is_input:
                continue
            whole = block.whole_products(w)
            split = []
            for k in layers_of[block.row_group]:
                for m in layers_of[block.col_group]:
                    rk, cm = self.layer_slices[k], self.layer_slices[m]
                    r = slice(rk.start - block.rows.start, rk.stop - block.rows.start)
                    c = slice(cm.start - block.cols.start, cm.stop - block.cols.start)
                    nnz = int(torch.count_nonzero(mask[r, c]))
                    if nnz == 0:
                        continue
                    area = (r.stop - r.start) * (c.stop - c.start)
                    sparse = csr_ok and product_cost(area, nnz) < product_cost(area)
                    view = w[r, c]
                    pattern = Product.sparse_of(view, mask[r, c], w) if sparse else None
                    split.append(Product(rk, cm, view, w, pattern))
                    if not block.is_diagonal:  # off-diagonal blocks act in both directions
                        pattern_t = Product.sparse_of(view.T, mask[r, c].T, w) if sparse else None
                        split.append(Product(cm, rk, view.T, w, pattern_t))
            pairs += split
            cheaper = plan_cost(split, csr_ok) < plan_cost(whole, csr_ok)
            plan += split if cheaper else whole
        self._plan, self._pair_plan = plan, pairs

    def _initial_edge_weights(self, seed: int) -> np.ndarray:
        layer = self.topology.layer_of[self.topology.edges]
        bound = np.full(len(layer), self.skip_bound)
        adjacent = self.topology.kinds == ADJACENT
        bound[adjacent] = np.asarray(glorot_bounds(self.sizes))[layer[adjacent].min(axis=1)]
        rng = np.random.default_rng(seed)
        return rng.uniform(-1.0, 1.0, size=len(bound)) * bound

    def from_edges(self, values: np.ndarray) -> list[torch.Tensor]:
        """Scatter one value per topology edge into tensors shaped like :attr:`weights`
        (zeros where there is no edge; diagonal blocks filled symmetrically)."""
        out = []
        for block, (sel, rows, cols) in zip(self.blocks, self._edge_index, strict=True):
            t = torch.zeros(
                block.rows.stop - block.rows.start,
                block.cols.stop - block.cols.start,
                dtype=torch.float64,
            )
            v = torch.as_tensor(np.asarray(values, dtype=np.float64)[sel])
            t[rows, cols] = v
            if block.is_diagonal:
                t[cols, rows] = v
            out.append(t.to(dtype=self.dtype, device=self.device))
        return out

    @torch.no_grad()
    def keep_adjacent_only(self) -> None:
        """Remove every edge that does not join two adjacent layers (intralayer and skip
        edges): their weights become 0 and their masks 0, so no update reaches them again
        (:meth:`eqprop.updates.Update.edges_removed`), and the products of a step are
        chosen anew for what is left."""
        keep = (self.topology.kinds == ADJACENT).astype(np.float64)
        for i, (w, mask) in enumerate(zip(self.weights, self.from_edges(keep), strict=True)):
            w.mul_(mask)
            self.register_buffer(f"mask_{i}", mask, persistent=False)
        self._build_plan()

    # -- views -----------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.sizes)

    def dense_weights(self, blocks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The full symmetric ``N x N`` weight matrix over all neurons (inputs first), of the
        network's weights or of any tensors shaped like them (e.g. a gradient estimate;
        diagonal blocks must then be symmetric)."""
        n = self.n_input
        w = torch.zeros(n + self.n_state, n + self.n_state, dtype=self.dtype, device=self.device)
        for block, t in zip(self.blocks, blocks or self.weights, strict=True):
            r0 = block.rows.start if block.is_input else block.rows.start + n
            c0 = block.cols.start + n
            w[r0 : r0 + t.shape[0], c0 : c0 + t.shape[1]] = t
            w[c0 : c0 + t.shape[1], r0 : r0 + t.shape[0]] = t.T
        return w

    # -- energy ----------------------------------------------------------------------------
    def energy(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``E(s)`` per example (computed densely from :meth:`dense_weights`)."""
        r = self.activation.rho(s)
        u = torch.cat([x, r], dim=1)
        pair = 0.5 * torch.einsum("bi,ij,bj->b", u, self.dense_weights(), u)
        return 0.5 * (s * s).sum(1) - pair - r @ self.biases

    # -- dynamics --------------------------------------------------------------------------
    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """``W_{state,in} x + b``: the constant part of the drive, computed once per batch."""
        base = self.biases.expand(x.shape[0], -1).clone()
        for block, w in zip(self.blocks, self.weights, strict=True):
            if block.is_input:
                base[:, block.cols].addmm_(x, w)
        return base

    def product_plan(self) -> list[Product]:
        """The matrix products of one step, in order (:class:`Product`). The input block is
        not here: its product is in :meth:`input_drive`, once per batch. ``eqprop bench``
        times exactly these products as the lower bound of a step."""
        return list(self._plan)

    def pair_plan(self) -> list[Product]:
        """The same step split into layer pairs, whatever the cost model picks for
        :meth:`product_plan`: every product is ``s[:, layer k] @ w`` into ``h[:, layer m]``
        (one per non-empty pair and direction; dense or CSR as in a split block of the
        plan). For solvers that update layer by layer (:mod:`eqprop.relaxation.layer_sweep`);
        it computes the same drive as :meth:`product_plan` up to rounding."""
        return list(self._pair_plan)

    def layer_terms(
        self,
        rates: Callable[[int], torch.Tensor],
        drive: Callable[[int], torch.Tensor],
    ) -> list[LayerTerm]:
        """The products of :meth:`pair_plan` as :class:`LayerTerm` s, in its order (dense
        ``addmm_``, or CSR with the values gathered now: the weights do not change within a
        phase)."""
        layer_of = {(c.start, c.stop): k for k, c in enumerate(self.layer_slices) if k}
        terms = []
        for p in self._pair_plan:
            into, source = (
                layer_of[(p.cols.start, p.cols.stop)],
                layer_of[(p.rows.start, p.rows.stop)],
            )
            out, src = drive(into), rates(source)
            if p.sparse is None:
                run = partial(out.addmm_, src, p.weight)
            else:
                run = partial(_add_csr_product, out, p.csr(), src)
            terms.append(LayerTerm(into, source, source == into, run))
        return terms

    def drive(self, s: torch.Tensor, base: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``W rho(s) + W_in x + b`` into ``out`` (the hard sigmoid's states are in ``[0, 1]``,
        where ``rho(s) = s``)."""
        s = self.activation.rates(s)
        out.copy_(base)
        for p in self._plan:
            if p.sparse is None:
                out[:, p.cols].addmm_(s[:, p.rows], p.weight)
        for p in self._plan:  # sparse products after the dense ones, as in a step
            if p.sparse is not None:
                out[:, p.cols].add_(torch.mm(p.csr(), s[:, p.rows].T.contiguous()).T)
        return out

    def stepper(
        self, s: torch.Tensor, base: torch.Tensor, h: torch.Tensor, finish: Kernel
    ) -> Kernel:
        """One in-place step: the drive ``W rho(s) + base`` into ``h``, its gain applied
        (``rho'(s) h`` for a smooth activation, :mod:`eqprop.activation`), then ``finish()``
        (a kernel of :mod:`eqprop.nudging` that updates ``s`` from ``h``). A closure over
        views and CSR values prepared once per phase (the weights do not change within a
        phase), so the loop does no slicing and no gathering; the same products in the same
        order as :meth:`drive`. The hard sigmoid's products read ``s`` itself; a smooth
        activation's read ``rho(s)``, computed into a buffer at each step."""
        act = self.activation
        rates = s if act.projected else torch.empty_like(s)
        dense, sparse = [], []
        for p in self._plan:
            if p.sparse is None:
                dense.append((h[:, p.cols], rates[:, p.rows], p.weight))
            else:
                rows = p.rows.stop - p.rows.start
                buffer = torch.empty(rows, s.shape[0], dtype=s.dtype, device=s.device)
                sparse.append((h[:, p.cols], rates[:, p.rows], p.csr(), buffer))

        def products() -> None:
            h.copy_(base)
            for out, state, w in dense:
                out.addmm_(state, w)
            for out, state, csr, buffer in sparse:
                buffer.copy_(state.T)  # CSR @ dense wants a contiguous right-hand side
                out.add_(torch.mm(csr, buffer).T)

        return self._step(products, finish, s, h, rates)

    # -- what the estimators and updates use ---------------------------------------------------
    def correlation_difference(
        self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per stored block ``sum_batch (u^a u^a^T - u^b u^b^T)`` and ``sum_batch (rho(a) -
        rho(b))`` for the biases, ``u = (x, rho(s))`` (for the hard sigmoid ``rho(s) = s``:
        :meth:`~eqprop.activation.Activation.rates`)."""
        a, b = self.activation.rates(a), self.activation.rates(b)
        blocks = []
        for block in self.blocks:
            if block.is_input:
                corr = x.T @ (a[:, block.cols] - b[:, block.cols])
            else:
                corr = a[:, block.rows].T @ a[:, block.cols]
                corr.addmm_(b[:, block.rows].T, b[:, block.cols], alpha=-1.0)
            blocks.append(corr)
        return blocks, (a - b).sum(0)

    def on_edges(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """``tensors`` (one per stored block) masked to the topology's edges, diagonal blocks
        symmetrised."""
        out = []
        for block, t, mask in zip(self.blocks, tensors, self.masks, strict=True):
            d = t.mul(mask)
            out.append(d.add_(d.T.clone()).mul_(0.5) if block.is_diagonal else d)
        return out

    def pair_views(self) -> list[tuple[int, slice, slice, int]]:
        """For each adjacent layer pair: its block, row and column slices inside the block,
        and its number of existing edges (the denominator of eq. 2)."""
        views = []
        for k in range(self.n_layers - 1):
            gr, gc = self.group_of_layer[k], self.group_of_layer[k + 1]
            index = next(
                i for i, b in enumerate(self.blocks) if (b.row_group, b.col_group) == (gr, gc)
            )
            block = self.blocks[index]
            lo, hi = self.layer_slices[k], self.layer_slices[k + 1]
            rows = slice(lo.start - block.rows.start, lo.stop - block.rows.start)
            cols = slice(hi.start - block.cols.start, hi.stop - block.cols.start)
            count = int(self.masks[index][rows, cols].sum())
            views.append((index, rows, cols, count))
        return views


# How masks hold (issue 29). The hooks below re-mask the stored blocks after whatever wrote
# them, rather than a ``torch.nn.utils.parametrize`` parametrisation ``W = W_raw * mask``:
# - numbers: a masked weight times its mask is the same weight, bit for bit, so trained
#   results and their fingerprints do not change (a parametrisation keeps them too, but by
#   multiplying at every read);
# - speed: a relaxation step reads views of the stored blocks prepared once per phase
#   (:meth:`Network.stepper`, the CSR values of :class:`Product`); a parametrisation would
#   recompute ``W_raw * mask`` at every access unless cached, and the views would no longer
#   be the parameters. The hooks cost one multiply per block per optimiser step, nothing
#   per relaxation step;
# - checkpoints: the parameters and ``state_dict`` keys stay ``biases`` and
#   ``blocks_weights.N`` (a parametrisation renames them ``parametrizations...original``),
#   so old run directories load unchanged.
#: every live network, for the global optimiser hook (weak: a network is not kept alive)
_NETWORKS: weakref.WeakSet[Network] = weakref.WeakSet()


def _mask_after_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Global post-step hook of every ``torch.optim`` optimiser: re-mask each network that
    has a parameter among the optimiser's (after weight decay, momentum or any other rule
    has written into a missing edge)."""
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for net in list(_NETWORKS):
        if any(id(p) in stepped for p in net.parameters()):
            net.apply_masks()


def _mask_after_load(network: Network, incompatible_keys) -> None:
    """``load_state_dict`` post-hook: re-mask weights loaded from dense tensors, and build
    the step's products anew (with ``assign=True`` the loaded tensors replace the ones they
    view; the plan follows from the masks alone, so it is the same plan)."""
    network.apply_masks()
    network._build_plan()


register_optimizer_step_post_hook(_mask_after_step)
