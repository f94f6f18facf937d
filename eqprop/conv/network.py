"""The convolutional Hopfield network: conv blocks, then dense layers to the output.

``docs/science.md`` section 7 states the model; in short, layer 0 is the input image
``x`` (``C x H x W``, clamped), layers ``1 .. K`` are feature maps, each reached from the one
before through a :class:`ConvBlock` (a kernel ``w_k``, then max pooling ``P``), and the
layers after them are dense, the last one the output. The energy is Laborieux et al.'s
(2021) primitive function ``Phi`` in the Hopfield form,

    E(s) = 1/2 |s|^2 - Phi(x, rho(s)) - sum_i b_i rho(s_i)
    Phi  = sum_k rho(s_k) . P(w_k * rho(s_{k-1}))  +  sum_l rho(s_{l+1})^T W_l rho(s_l)

(``*`` the convolution, ``rho(s_0) = x``; a conv layer's bias is one per channel). The drive
of a step is ``h = dPhi/drho + b``: a conv block adds ``P(w * rho(s_{k-1}))`` to layer
``k`` and feeds back ``w^T * P^-1(rho(s_k))`` to layer ``k - 1`` (the transposed convolution
with the same kernel, after max-unpooling to the positions of the pool's maxima). The state
is flat, shape ``(batch, n_state)``, each feature map one contiguous ``C x H x W`` slice, so
the relaxers, nudgings, estimators and trainer use it as they use
:class:`~eqprop.network.Network`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

from eqprop import activation as activations
from eqprop.activation import Activation
from eqprop.energy_network import EnergyNetwork, LayerTerm
from eqprop.errors import ConfigError
from eqprop.nudging import Kernel


def _positive_int(value: object, name: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


@dataclass(frozen=True)
class ConvBlock:
    """One convolutional layer: ``channels`` feature maps reached from the layer before by a
    ``kernel x kernel`` convolution (stride 1, zero ``padding``), then ``pool x pool`` max
    pooling with stride ``pool`` (1: none)."""

    channels: int
    kernel: int = 5
    padding: int = 0
    pool: int = 2

    def __post_init__(self) -> None:
        _positive_int(self.channels, "channels")
        _positive_int(self.kernel, "kernel")
        _positive_int(self.padding, "padding", least=0)
        _positive_int(self.pool, "pool")

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The feature maps' shape reached from ``shape`` (``C x H x W``), or a one-line
        :class:`ConfigError` if the kernel or the pool does not fit."""
        height, width = (n + 2 * self.padding - self.kernel + 1 for n in shape[1:])
        if min(height, width) < self.pool:
            raise ConfigError(
                f"a {self.kernel}x{self.kernel} kernel with padding {self.padding} and "
                f"{self.pool}x{self.pool} pooling does not fit a {shape[1]}x{shape[2]} map"
            )
        return (self.channels, height // self.pool, width // self.pool)


@dataclass(frozen=True, eq=False)
class _Interaction:
    """The term of ``Phi`` between layer ``src`` and layer ``src + 1``: a conv block
    (``block`` set) or a dense matrix (``block`` None); ``weight`` indexes the network's
    :attr:`ConvNetwork.weights`."""

    src: int
    weight: int
    block: ConvBlock | None

    def forward(self, src: torch.Tensor, w: torch.Tensor):
        """``P(w * src)`` (or ``src @ W``), the pool's indices (None without a pool) and the
        size of the convolution's maps before pooling (None for a matrix)."""
        if self.block is None:
            return src.flatten(1) @ w, None, None
        y = F.conv2d(src, w, padding=self.block.padding)
        if self.block.pool == 1:
            return y, None, y.shape[-2:]
        if y.device.type == "cpu":
            # CPU max pooling with indices measured 10-20x faster on channels-last maps (4-5x
            # with this copy), the same maxima at the same positions (docs/performance.md)
            y = y.contiguous(memory_format=torch.channels_last)
        pooled, indices = F.max_pool2d(y, self.block.pool, return_indices=True)
        return pooled, indices, y.shape[-2:]

    def gradient_map(self, dst: torch.Tensor, indices, size) -> torch.Tensor:
        """``P^-1(dst)``: ``dst`` put back at the pool's maxima in a map of ``size``."""
        if indices is None:
            return dst
        # max_unpool2d as one scatter into zeros (the windows do not overlap, so the indices
        # are distinct): the same map, measured 1.4-1.8x faster on CPU
        out = dst.new_zeros(*dst.shape[:2], size[0] * size[1])
        return out.scatter_(2, indices.flatten(2), dst.flatten(2)).view(*dst.shape[:2], *size)

    def backward(self, dst: torch.Tensor, w: torch.Tensor, indices, size) -> torch.Tensor:
        """``dPhi/dsrc`` of a conv block's term: ``w^T * P^-1(dst)``."""
        return F.conv_transpose2d(
            self.gradient_map(dst, indices, size), w, padding=self.block.padding
        )

    def weight_gradient(self, src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor):
        """``dPhi/dw`` of this term summed over the batch: the correlation of ``src`` with
        ``P^-1(dst)`` through the kernel (``src^T dst`` for a matrix)."""
        if self.block is None:
            return src.flatten(1).T @ dst
        _, indices, size = self.forward(src, w)
        grad = self.gradient_map(dst, indices, size)
        return conv2d_weight(src, w.shape, grad, padding=self.block.padding)


class ConvNetwork(EnergyNetwork):
    """A convolutional Hopfield network (module docs): ``blocks`` of conv layers on an input
    of ``input_shape`` (``C, H, W``; the examples arrive flat, ``C * H * W`` values in that
    order), then dense layers of ``dense`` sizes, the last the output.

    A ``torch.nn.Module`` like :class:`~eqprop.network.Network`: the kernels and dense
    matrices (:attr:`weights`, in layer order) and :attr:`biases` are parameters without
    autograd. Kernels and matrices start uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``
    (``fan_in``: a kernel's input channels times its area, a matrix's rows; the bound of
    ``torch.nn.Conv2d`` and ``torch.nn.Linear``, whose layers the anchors' code uses), drawn
    in float64 from ``seed``; biases start at 0. (Glorot's larger bound saturates the
    outputs of an MNIST net at the start.)

    Example:
        >>> from eqprop.relaxation.fixed import FixedSteps
        >>> net = ConvNetwork((1, 8, 8), [ConvBlock(4, kernel=3, padding=1, pool=2)], [3])
        >>> net.sizes
        (64, 64, 3)
        >>> x = torch.rand(2, 64)
        >>> FixedSteps(steps=30).relax(net, s := net.zero_state(2), net.input_drive(x)).steps
        30
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        blocks: Sequence[ConvBlock],
        dense: Sequence[int],
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        activation: Activation | str = activations.DEFAULT,
    ) -> None:
        if len(input_shape) != 3:
            raise ConfigError(f"input_shape must be (channels, height, width), got {input_shape}")
        for n in input_shape:
            _positive_int(n, "each input_shape entry")
        if not blocks:
            raise ConfigError("a ConvNetwork needs at least one conv block")
        if not dense:
            raise ConfigError("a ConvNetwork needs at least one dense layer (the output)")
        for n in dense:
            _positive_int(n, "each dense layer size")
        super().__init__()
        self.activation = activations.get(activation)
        self.blocks = tuple(blocks)
        shapes: list[tuple[int, ...]] = [tuple(input_shape)]
        for block in self.blocks:
            shapes.append(block.output_shape(shapes[-1]))
        shapes += [(int(n),) for n in dense]
        #: each layer's shape: ``(C, H, W)`` for the input and the conv layers, ``(n,)`` after
        self.shapes = tuple(shapes)
        self.sizes = tuple(math.prod(shape) for shape in shapes)
        self.n_input = self.sizes[0]
        self.n_state = sum(self.sizes[1:])
        starts = [0, 0]
        for n in self.sizes[1:]:
            starts.append(starts[-1] + n)
        #: state-coordinate slice of each layer (index 0, the input, in input coordinates)
        self.layer_slices = [slice(0, self.n_input)] + [
            slice(starts[k], starts[k + 1]) for k in range(1, len(self.sizes))
        ]
        self.output = self.layer_slices[-1]
        n_conv = len(self.blocks)
        self._interactions = [
            _Interaction(k, k, self.blocks[k] if k < n_conv else None)
            for k in range(len(self.sizes) - 1)
        ]
        self.kernels = torch.nn.ParameterList()
        self.matrices = torch.nn.ParameterList()
        generator = torch.Generator().manual_seed(seed)
        for k, inter in enumerate(self._interactions):
            if inter.block is None:
                shape = (self.sizes[k], self.sizes[k + 1])
                fan_in = shape[0]
            else:
                shape = (inter.block.channels, shapes[k][0], inter.block.kernel, inter.block.kernel)
                fan_in = shape[1] * shape[2] * shape[3]
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            param = torch.nn.Parameter(w.to(dtype=dtype, device=device), requires_grad=False)
            (self.kernels if inter.block is not None else self.matrices).append(param)
        # one bias per channel of a conv layer, one per neuron of a dense layer
        index, pair, at = [], [], 0
        for k, shape in enumerate(shapes[1:]):
            per_unit = math.prod(shape[1:])
            index.append(torch.arange(at, at + shape[0]).repeat_interleave(per_unit))
            pair += [k] * shape[0]
            at += shape[0]
        #: the layer pair into each bias's layer (its index in :attr:`weights`), on the CPU
        self.bias_layer = torch.tensor(pair)
        self.biases = torch.nn.Parameter(
            torch.zeros(at, dtype=dtype, device=device), requires_grad=False
        )
        self.register_buffer("bias_index", torch.cat(index).to(device), persistent=False)

    # -- views -----------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.biases.dtype

    @property
    def device(self) -> torch.device:
        return self.biases.device

    @property
    def n_layers(self) -> int:
        return len(self.sizes)

    @property
    def weights(self) -> list[torch.Tensor]:
        """The kernels of the conv blocks, then the dense matrices (``(n_in, n_out)``), in
        layer order (parameters, updated in place)."""
        return [*self.kernels, *self.matrices]

    def unit_biases(self) -> torch.Tensor:
        """The bias of every state unit, shape ``(n_state,)`` (a channel's bias repeated over
        its positions)."""
        return self.biases[self.bias_index]

    def _layer(self, t: torch.Tensor, k: int) -> torch.Tensor:
        """Layer ``k`` of a flat state-shaped tensor as a view of its shape (``k = 0``: ``t``
        is an input batch)."""
        part = t if k == 0 else t[:, self.layer_slices[k]]
        return part.view(t.shape[0], *self.shapes[k])

    # -- energy ----------------------------------------------------------------------------
    def energy(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``E(s)`` per example (module docs)."""
        r = self.activation.rho(s)
        phi = r @ self.unit_biases()
        weights = self.weights
        for inter in self._interactions:
            src = self._layer(x if inter.src == 0 else r, inter.src)
            pushed = inter.forward(src, weights[inter.weight])[0]
            phi = phi + (pushed.flatten(1) * r[:, self.layer_slices[inter.src + 1]]).sum(1)
        return 0.5 * (s * s).sum(1) - phi

    # -- dynamics --------------------------------------------------------------------------
    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """``P(w_1 * x) + b``: the constant part of the drive, computed once per batch."""
        base = self.unit_biases().expand(x.shape[0], -1).clone()
        first = self._interactions[0]
        pushed = first.forward(self._layer(x, 0), self.weights[first.weight])[0]
        base[:, self.layer_slices[1]] += pushed.flatten(1)
        return base

    def _terms(self, rates: torch.Tensor, h: torch.Tensor) -> list[Callable[[], None]]:
        """One closure per state-state interaction adding its two drive terms into ``h`` from
        ``rates`` (views prepared once)."""
        terms = []
        weights = self.weights
        for inter in self._interactions[1:]:
            k, w = inter.src, weights[inter.weight]
            src, dst = self._layer(rates, k), self._layer(rates, k + 1)
            h_src, h_dst = self._layer(h, k), self._layer(h, k + 1)
            terms.append(self._term(inter, w, src, dst, h_src, h_dst))
        return terms

    @staticmethod
    def _term(inter: _Interaction, w, src, dst, h_src, h_dst) -> Callable[[], None]:
        if inter.block is None:
            src, dst = src.view(len(src), -1), dst.view(len(dst), -1)

            def dense() -> None:
                h_dst.addmm_(src, w)
                h_src.view(len(src), -1).addmm_(dst, w.T)

            return dense

        def conv() -> None:
            pushed, indices, size = inter.forward(src, w)
            h_dst.add_(pushed)
            h_src.add_(inter.backward(dst, w, indices, size))

        return conv

    def drive(self, s: torch.Tensor, base: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``dPhi/drho(s) + P(w_1 * x) + b`` into ``out`` (module docs)."""
        rates = self.activation.rates(s)
        out.copy_(base)
        for term in self._terms(rates, out):
            term()
        return out

    def stepper(
        self, s: torch.Tensor, base: torch.Tensor, h: torch.Tensor, finish: Kernel
    ) -> Kernel:
        """One in-place step, as :meth:`eqprop.network.Network.stepper`: the drive into ``h``
        (one ``conv2d`` and one ``conv_transpose2d`` per conv block between state layers, two
        matrix products per dense one), the activation's gain, then ``finish()``."""
        act = self.activation
        rates = s if act.projected else torch.empty_like(s)
        terms = self._terms(rates, h)

        def products() -> None:
            h.copy_(base)
            for term in terms:
                term()

        return self._step(products, finish, s, h, rates)

    def layer_terms(
        self,
        rates: Callable[[int], torch.Tensor],
        drive: Callable[[int], torch.Tensor],
    ) -> list[LayerTerm]:
        """Each state-state interaction's two drive terms, one :class:`LayerTerm` each: a
        conv block's ``P(w * rho(s_k))`` into layer ``k + 1`` and ``w^T * P^-1(rho(s_{k+1}))``
        into layer ``k`` (with pooling, that one takes the pool's maxima at layer ``k``'s own
        rates, so it reads its own layer: ``reads_into``); a matrix's two products."""
        terms = []
        weights = self.weights
        for inter in self._interactions[1:]:
            k, w = inter.src, weights[inter.weight]
            src, dst = rates(k), rates(k + 1)
            h_src, h_dst = drive(k), drive(k + 1)
            if inter.block is None:
                terms.append(LayerTerm(k + 1, k, False, partial(h_dst.addmm_, src, w)))
                terms.append(LayerTerm(k, k + 1, False, partial(h_src.addmm_, dst, w.T)))
                continue
            src, dst = src.view(len(src), *self.shapes[k]), dst.view(len(dst), *self.shapes[k + 1])
            h_src, h_dst = h_src.view(src.shape), h_dst.view(dst.shape)
            pooled = inter.block.pool > 1

            def forward(inter=inter, w=w, src=src, h_dst=h_dst) -> None:
                h_dst.add_(inter.forward(src, w)[0])

            def backward(inter=inter, w=w, src=src, dst=dst, h_src=h_src, pooled=pooled) -> None:
                indices, size = inter.forward(src, w)[1:] if pooled else (None, None)
                h_src.add_(inter.backward(dst, w, indices, size))

            terms.append(LayerTerm(k + 1, k, False, forward))
            terms.append(LayerTerm(k, k + 1, pooled, backward))
        return terms

    # -- what the estimators and updates use ---------------------------------------------------
    def phi_gradients(
        self, x: torch.Tensor, rates: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``dPhi/dtheta`` summed over the batch at the activations ``rates = rho(s)``: per
        weight (a kernel's through ``conv2d_weight``, the pool's maxima taken at ``s``) and
        for the biases (each channel's bias summed over its positions)."""
        weights = self.weights
        grads = []
        for inter in self._interactions:
            src = self._layer(x if inter.src == 0 else rates, inter.src)
            dst = self._layer(rates, inter.src + 1)
            grads.append(inter.weight_gradient(src, dst, weights[inter.weight]))
        biases = torch.zeros_like(self.biases).index_add_(0, self.bias_index, rates.sum(0))
        return grads, biases

    def correlation_difference(
        self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``sum_batch (dPhi/dtheta (a) - dPhi/dtheta (b))`` per weight and for the biases
        (:meth:`phi_gradients`; the EP estimate's raw sums, ``docs/science.md`` section 7)."""
        act = self.activation
        wa, ba = self.phi_gradients(x, act.rates(a))
        wb, bb = self.phi_gradients(x, act.rates(b))
        return [p - q for p, q in zip(wa, wb, strict=True)], ba - bb

    def on_edges(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Copies of ``tensors``: every entry of a kernel or a dense matrix is a weight."""
        return [t.clone() for t in tensors]

    def pair_views(self) -> list[tuple[int, slice, slice, int]]:
        """Each layer pair's weights are one whole kernel or matrix."""
        return [(k, slice(None), slice(None), w.numel()) for k, w in enumerate(self.weights)]
