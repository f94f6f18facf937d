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

Computation: a step is a list of matrix products on views of the stored blocks, chosen per
block by a calibrated cost model (:meth:`Network.product_plan`; :mod:`eqprop.product_plan`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from eqprop import activation as activations
from eqprop.activation import Activation
from eqprop.energy_network import EnergyNetwork, LayerTerm
from eqprop.errors import ConfigError
from eqprop.nudging import Kernel
from eqprop.product_plan import Block, Product, add_csr_product, plan_cost, product_cost
from eqprop.topology import ADJACENT, Topology

LAYOUTS = ("auto", "blocks", "dense")


def glorot_bounds(sizes: tuple[int, ...]) -> list[float]:
    """Glorot-uniform bound ``sqrt(6 / (n_j + n_{j+1}))`` of each adjacent layer pair."""
    return [float(np.sqrt(6.0 / (a + b))) for a, b in zip(sizes[:-1], sizes[1:], strict=False)]


def default_skip_bound(topology: Topology) -> float:
    """Initial bound ``a`` of intralayer and skip weights: 0.05 (ICONS), or for the rewired
    topology the mean of the Glorot bounds of the adjacent layer pairs (journal version)."""
    if topology.family == "rewired":
        return float(np.mean(glorot_bounds(topology.sizes)))
    return 0.05


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
                run = partial(add_csr_product, out, p.csr(), src)
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
