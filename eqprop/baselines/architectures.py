"""Plain and densely connected MLPs and ConvNets (Im, Patil & Branson, section 2 "Methods").

A network has hidden layers ``1..L`` (``L`` = ``depth``) and an output layer ``L + 1`` that
produces logits; ``h_0 = x`` is the input. Layer ``l`` has a set of *sources*: ``{l - 1}`` in a
plain network, ``{0, ..., l - 1}`` (every earlier layer, the input included, as
``docs/science.md`` section 5 says) in a dense one. Each source ``j`` reaches ``l`` through
its own weight matrix (an :class:`Edge`), and the paper's dense layer equation is

    h_l = f(W_{l,0} h_0 + W_{l,1} h_1 + ... + W_{l,l-1} h_{l-1} + b_l),

with ``f`` the sigmoid or ReLU for hidden layers and the identity for the output. Keeping one
edge per source (instead of one matrix on the concatenation ``[h_0; ...; h_{l-1}]``, which is the
same function) lets feedback alignment give every skip matrix its own feedback matrix and lets
target propagation learn one inverse per edge.

MLPs ("NN", "DN") have ``width`` (128) units per hidden layer. ConvNets ("ConvNet",
"DenseConvNet") have ``channels_per_depth * depth`` channels in every hidden layer (the paper's
"channel size (depth x 16)"), 3x3 kernels with zero padding 1 and stride 1, so every hidden
layer keeps the image size; the output layer is a linear map of the flattened feature maps.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eqprop.baselines._validation import check_choice, check_number
from eqprop.errors import ConfigError

#: architecture names as in the paper's Figures 1-2
ARCHITECTURES = ("NN", "DN", "ConvNet", "DenseConvNet")
ACTIVATIONS = ("sigmoid", "relu")
_DENSE = frozenset({"DN", "DenseConvNet"})
_CONV = frozenset({"ConvNet", "DenseConvNet"})
_ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
}


@dataclass(frozen=True)
class ArchitectureConfig:
    """Shape of a network.

    Attributes:
        architecture: "NN" (plain MLP), "DN" (dense MLP), "ConvNet" or "DenseConvNet".
        depth: number of hidden layers ``L`` (Im, Patil & Branson use 3-7 with sigmoid,
            5-10 with ReLU).
        activation: hidden-layer nonlinearity, "sigmoid" or "relu".
        width: units per hidden layer of an MLP (128 in the paper).
        channels_per_depth: a ConvNet's hidden layers have ``channels_per_depth * depth``
            channels (16 in the paper).
    """

    architecture: str = "NN"
    depth: int = 3
    activation: str = "sigmoid"
    width: int = 128
    channels_per_depth: int = 16

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_choice(owner, "architecture", self.architecture, ARCHITECTURES)
        check_number(owner, "depth", self.depth, 0, 100, integer=True)
        check_choice(owner, "activation", self.activation, ACTIVATIONS)
        check_number(owner, "width", self.width, 1, 1_000_000, integer=True)
        check_number(owner, "channels_per_depth", self.channels_per_depth, 1, 4096, integer=True)

    @property
    def dense(self) -> bool:
        """Whether every layer receives every earlier layer."""
        return self.architecture in _DENSE

    @property
    def convolutional(self) -> bool:
        """Whether hidden layers are 3x3 convolutional feature maps."""
        return self.architecture in _CONV


def uniform_init(shape: Sequence[int], bound: float, generator: torch.Generator) -> Tensor:
    """A tensor of i.i.d. ``U[-bound, bound]`` entries drawn from ``generator``."""
    return (torch.rand(tuple(shape), generator=generator) * 2.0 - 1.0) * bound


class Edge(nn.Module, ABC):
    """One weight tensor ``W_{l,j}`` carrying ``h_j`` into the pre-activation of layer ``l``.

    Besides the forward map, an edge exposes the two linear maps of its backward pass so that
    feedback alignment can swap the weight used for the input gradient (Lillicrap et al. 2016).
    """

    def __init__(self, weight: Tensor, bound: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        #: half-width of the uniform distribution the weight was drawn from
        self.bound = bound

    def forward(self, x: Tensor) -> Tensor:
        """``W_{l,j} h_j``."""
        return self.apply_weight(x, self.weight)

    @abstractmethod
    def apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        """The edge's linear map with an arbitrary weight of the right shape."""

    @abstractmethod
    def input_grad(self, grad_out: Tensor, weight: Tensor, x_shape: torch.Size) -> Tensor:
        """Gradient with respect to the input, using ``weight`` in place of ``W_{l,j}``."""

    @abstractmethod
    def weight_grad(self, x: Tensor, grad_out: Tensor) -> Tensor:
        """Gradient with respect to the weight (summed over the batch)."""

    @abstractmethod
    def reverse(self, bound: float, generator: torch.Generator) -> Edge:
        """A new edge of the same kind mapping layer ``l``'s space back onto layer ``j``'s."""


class LinearEdge(Edge):
    """A dense matrix of shape ``(out_features, in_features)``; flattens its input first."""

    def apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x.flatten(1), weight)

    def input_grad(self, grad_out: Tensor, weight: Tensor, x_shape: torch.Size) -> Tensor:
        return (grad_out @ weight).reshape(x_shape)

    def weight_grad(self, x: Tensor, grad_out: Tensor) -> Tensor:
        return grad_out.t() @ x.flatten(1)

    def reverse(self, bound: float, generator: torch.Generator) -> LinearEdge:
        return LinearEdge(uniform_init(self.weight.t().shape, bound, generator), bound)


class ConvEdge(Edge):
    """A 3x3 convolution (stride 1, zero padding 1) of shape ``(C_out, C_in, 3, 3)``."""

    padding = 1

    def apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, padding=self.padding)

    def input_grad(self, grad_out: Tensor, weight: Tensor, x_shape: torch.Size) -> Tensor:
        return torch.nn.grad.conv2d_input(x_shape, weight, grad_out, padding=self.padding)

    def weight_grad(self, x: Tensor, grad_out: Tensor) -> Tensor:
        return torch.nn.grad.conv2d_weight(x, self.weight.shape, grad_out, padding=self.padding)

    def reverse(self, bound: float, generator: torch.Generator) -> ConvEdge:
        shape = self.weight.transpose(0, 1).shape
        return ConvEdge(uniform_init(shape, bound, generator), bound)


#: ``edge_fn(key, edge, h_j) -> W_{l,j} h_j``: how a learning rule applies an edge (default:
#: ``edge(h_j)``; feedback alignment substitutes its custom autograd function).
EdgeFn = Callable[[str, Edge, Tensor], Tensor]


def edge_key(target: int, source: int) -> str:
    """Name of the edge from layer ``source`` into layer ``target``."""
    return f"{source}to{target}"


def init_bound(activation: str, fan_in: int, fan_out: int) -> float:
    """Uniform init bound: Glorot for sigmoid (and the linear output), He for ReLU layers.

    For a dense layer ``fan_in`` is the total over all its sources, so the summed pre-activation
    has the same scale as in a plain layer.
    """
    if activation == "relu":
        return math.sqrt(6.0 / fan_in)
    return math.sqrt(6.0 / (fan_in + fan_out))


class FeedforwardNetwork(nn.Module):
    """A plain or densely connected MLP / ConvNet (see the module docstring).

    Args:
        config: the architecture.
        input_shape: shape of one example: ``(features,)`` for an MLP, ``(channels, height,
            width)`` for a ConvNet; flat inputs of shape ``(n, prod(input_shape))`` are reshaped.
        n_classes: number of output units (logits).
        seed: seed of the weight initialisation (biases start at zero).
    """

    def __init__(
        self, config: ArchitectureConfig, input_shape: Sequence[int], n_classes: int, seed: int = 0
    ) -> None:
        super().__init__()
        self.config = config
        self.input_shape = tuple(int(s) for s in input_shape)
        if config.convolutional and len(self.input_shape) != 3:
            raise ConfigError(f"a ConvNet needs a (C, H, W) input shape, got {self.input_shape}")
        depth = config.depth
        if config.convolutional:
            _, height, width = self.input_shape
            hidden: tuple[int, ...] = (config.channels_per_depth * depth, height, width)
        else:
            hidden = (config.width,)
        #: per-example shapes of h_0 .. h_{L+1}
        self.shapes: tuple[tuple[int, ...], ...] = (
            (self.input_shape,) + (hidden,) * depth + ((n_classes,),)
        )
        #: sources[l] for l = 0 .. L+1 (empty for the input)
        self.sources: tuple[tuple[int, ...], ...] = ((),) + tuple(
            tuple(range(layer)) if config.dense else (layer - 1,) for layer in range(1, depth + 2)
        )
        generator = torch.Generator().manual_seed(seed)
        self.edges = nn.ModuleDict()
        self.biases = nn.ParameterList()
        for layer in range(1, depth + 2):
            output = layer == depth + 1
            fan_out = self.shapes[layer][0] * (1 if output else self._kernel_area)
            fan_in = sum(self._fan(source, output) for source in self.sources[layer])
            bound = init_bound("linear" if output else config.activation, fan_in, fan_out)
            for source in self.sources[layer]:
                edge = self._make_edge(source, layer, bound, generator)
                self.edges[edge_key(layer, source)] = edge
            conv_layer = config.convolutional and not output
            bias_shape = (hidden[0], 1, 1) if conv_layer else (self.shapes[layer][0],)
            self.biases.append(nn.Parameter(torch.zeros(bias_shape)))
        self._activation = _ACTIVATION_FNS[config.activation]

    @property
    def _kernel_area(self) -> int:
        return 9 if self.config.convolutional else 1

    def _fan(self, source: int, into_output: bool) -> int:
        """Fan-in contributed by ``source``: units (MLP) or channels * 3 * 3 (conv)."""
        if into_output:
            return math.prod(self.shapes[source])
        return self.shapes[source][0] * self._kernel_area

    def _make_edge(
        self, source: int, target: int, bound: float, generator: torch.Generator
    ) -> Edge:
        if self.config.convolutional and target <= self.depth:
            shape = (self.shapes[target][0], self.shapes[source][0], 3, 3)
            return ConvEdge(uniform_init(shape, bound, generator), bound)
        shape = (self.shapes[target][0], math.prod(self.shapes[source]))
        return LinearEdge(uniform_init(shape, bound, generator), bound)

    @property
    def depth(self) -> int:
        """Number of hidden layers ``L``; the output layer is ``L + 1``."""
        return self.config.depth

    def edge(self, target: int, source: int) -> Edge:
        """The edge ``W_{target,source}``."""
        return self.edges[edge_key(target, source)]  # type: ignore[return-value]

    def activate(self, layer: int, preactivation: Tensor) -> Tensor:
        """``f`` for hidden layers, the identity (logits) for the output layer."""
        return preactivation if layer == self.depth + 1 else self._activation(preactivation)

    def preactivation(
        self, layer: int, states: Sequence[Tensor], edge_fn: EdgeFn | None = None
    ) -> Tensor:
        """``sum_{j in sources(l)} W_{l,j} h_j + b_l`` from the states ``h_0 .. h_{l-1}``."""
        total = self.biases[layer - 1]
        for source in self.sources[layer]:
            key = edge_key(layer, source)
            edge: Edge = self.edges[key]  # type: ignore[assignment]
            term = edge(states[source]) if edge_fn is None else edge_fn(key, edge, states[source])
            total = total + term
        return total

    def reshape_input(self, x: Tensor) -> Tensor:
        """Flat inputs ``(n, features)`` to ``(n, *input_shape)``."""
        return x.reshape(x.shape[0], *self.input_shape)

    def forward_pass(
        self, x: Tensor, edge_fn: EdgeFn | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Pre-activations ``a_1 .. a_{L+1}`` (index 0 unused: the input's entry is ``x``) and
        states ``h_0 .. h_{L+1}`` (``h_{L+1}`` are the logits)."""
        states = [self.reshape_input(x)]
        preactivations = [states[0]]
        for layer in range(1, self.depth + 2):
            a = self.preactivation(layer, states, edge_fn)
            preactivations.append(a)
            states.append(self.activate(layer, a))
        return preactivations, states

    def forward(self, x: Tensor) -> Tensor:
        """Logits for flat inputs ``x`` of shape ``(n, features)``."""
        return self.forward_pass(x)[1][-1]
