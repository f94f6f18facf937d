"""Directed networks and their neuronal dynamics (Farinha et al., DEEP, section 3).

A directed network has ``N`` neurons: ``P`` inputs (indices ``0..P-1``, clamped to the
example), hidden neurons, and ``n_outputs`` outputs (the last neuron indices). Biases are the
weights of a bias neuron fixed at 1, stored as node ``N`` (the last row and column of the
weight matrix). ``weights[..., i, j]`` is the weight of the edge ``i -> j``; there are no
self-loops and no edges into clamped neurons (inputs or the bias neuron), since nothing can
change their activity. Leading dimensions of ``weights`` index independent networks (runs)
trained side by side.

State tensors have shape ``(..., B, N + 1)`` for a batch of ``B`` examples: the input columns
hold the example, the last column holds the bias neuron's constant 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from eqprop.errors import ConfigError


@dataclass(frozen=True)
class DirectedNetwork:
    """A directed graph of neurons with asymmetric weights.

    Attributes:
        weights: float tensor ``(..., N + 1, N + 1)``; entry ``[i, j]`` is ``W_ij`` of edge
            ``i -> j``; row ``N`` holds the biases ``b_j``. Zero wherever ``mask`` is False.
        mask: bool tensor broadcastable to ``weights``: which edges exist (not pruned).
        n_inputs: ``P``, the number of clamped input neurons.
        n_outputs: the number of output neurons (the last ones before the bias node).
    """

    weights: torch.Tensor
    mask: torch.Tensor
    n_inputs: int
    n_outputs: int

    @property
    def n_neurons(self) -> int:
        """``N``, the number of neurons, not counting the bias neuron."""
        return self.weights.shape[-1] - 1

    @property
    def free(self) -> slice:
        """Indices of the free (hidden and output) neurons."""
        return slice(self.n_inputs, self.n_neurons)

    @property
    def outputs(self) -> slice:
        """Indices of the output neurons."""
        return slice(self.n_neurons - self.n_outputs, self.n_neurons)

    def with_weights(
        self, weights: torch.Tensor, mask: torch.Tensor | None = None
    ) -> DirectedNetwork:
        """Return a copy with new weights (zeroed where absent) and optionally a new mask."""
        new_mask = self.mask if mask is None else mask
        return replace(self, weights=torch.where(new_mask, weights, 0.0), mask=new_mask)

    def sparsity(self) -> torch.Tensor:
        """Fraction of the learnable connections that are absent, per network.

        The learnable connections are the edges and biases into free neurons, ``(N - P) * N``
        of them in the complete graph; edges into inputs (see :func:`allowed_edges`) are not
        counted.
        """
        present = self.mask[..., :, self.free].expand_as(self.weights[..., :, self.free])
        total = self.n_neurons * (self.n_neurons - self.n_inputs)
        return 1.0 - present.sum(dim=(-2, -1)).to(self.weights.dtype) / total


def allowed_edges(n_neurons: int, n_inputs: int, input_edges: bool = True) -> torch.Tensor:
    """Edges of the complete directed graph, a bool ``(N + 1, N + 1)`` matrix.

    Every neuron and the bias neuron (node ``N``) project to every other free neuron: the
    ``(N - P) * N`` learnable connections (48 for 8 neurons with 2 inputs, the count that
    makes the paper's sparsities of 93.75%, 95.83% and 62.50% whole numbers). With
    ``input_edges`` the free neurons also project to the inputs. Those edges cannot change a
    clamped input and the DEEP rule never changes them (``ds_i = 0``), but they belong to the
    leak ``s_j sum_i W_ji`` of eq. 1; Proposition 2 can only hold with them, since without
    them the outgoing sums of the free neurons add up to at most their incoming ``|W|``.
    Edges between clamped neurons would have no effect and are left out.
    """
    allowed = torch.zeros(n_neurons + 1, n_neurons + 1, dtype=torch.bool)
    allowed[:, n_inputs:n_neurons] = True
    if input_edges:
        allowed[n_inputs:n_neurons, :n_inputs] = True
    allowed.fill_diagonal_(False)
    return allowed


#: distributions of the initial weights accepted by :func:`complete_network`
INIT_DISTRIBUTIONS = ("uniform", "normal")


def complete_network(
    n_inputs: int,
    n_hidden: int,
    n_outputs: int,
    init_scale: float,
    generator: torch.Generator,
    n_networks: int | None = None,
    input_edges: bool = True,
    distribution: str = "uniform",
) -> DirectedNetwork:
    """Complete directed network with random initial weights and biases.

    Args:
        n_inputs, n_hidden, n_outputs: neuron counts (``n_outputs >= 1``).
        init_scale: ``>= 0``; the half-width of ``U[-init_scale, init_scale]`` for
            ``distribution="uniform"``, the standard deviation of ``N(0, init_scale^2)`` for
            ``"normal"`` (the authors' notebook draws ``N(0, 0.05^2)``).
        generator: source of randomness.
        n_networks: if given, a leading dimension of that many independent networks.
        input_edges: include the edges from free neurons into inputs (see
            :func:`allowed_edges`).
        distribution: ``"uniform"`` or ``"normal"``; absent edges are zero either way.
    """
    if n_inputs < 0 or n_hidden < 0 or n_outputs < 1:
        raise ConfigError("neuron counts must be >= 0 (inputs, hidden) and >= 1 (outputs)")
    if init_scale < 0:
        raise ConfigError(f"init_scale must be >= 0, got {init_scale}")
    if distribution not in INIT_DISTRIBUTIONS:
        raise ConfigError(
            f"distribution must be one of {', '.join(INIT_DISTRIBUTIONS)}, got {distribution!r}"
        )
    n = n_inputs + n_hidden + n_outputs
    shape = (n + 1, n + 1) if n_networks is None else (n_networks, n + 1, n + 1)
    mask = allowed_edges(n, n_inputs, input_edges).expand(shape).clone()
    if distribution == "uniform":
        uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
        weights = (2.0 * uniform - 1.0) * init_scale * mask
    else:
        weights = torch.randn(shape, generator=generator, dtype=torch.float64) * init_scale * mask
    return DirectedNetwork(weights, mask, n_inputs, n_outputs)


def initial_state(
    net: DirectedNetwork, x: torch.Tensor, free: torch.Tensor | None = None
) -> torch.Tensor:
    """State ``(..., B, N + 1)``: inputs clamped to ``x`` ``(..., B, P)``, bias 1.

    The free (hidden and output) neurons start at ``free`` ``(..., B, N - P)`` when it is
    given (the authors' notebook draws them from ``U[0, 0.1)`` at every epoch), else at 0.
    """
    leading = torch.broadcast_shapes(net.weights.shape[:-2], x.shape[:-2])
    if free is not None:
        leading = torch.broadcast_shapes(leading, free.shape[:-2])
    batch_shape = leading + (x.shape[-2], net.n_neurons + 1)
    s = torch.zeros(batch_shape, dtype=net.weights.dtype)
    s[..., : net.n_inputs] = x.to(s.dtype)
    if free is not None:
        s[..., net.free] = free.to(s.dtype)
    s[..., -1] = 1.0
    return s


def field(
    net: DirectedNetwork,
    leak: str = "deep",
    beta: float = 0.0,
    y: torch.Tensor | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The vector field of the dynamics as a function of the state; zero on clamped neurons.

    ``leak="deep"`` is eq. 1 of Farinha et al.:
    ``ds_j/dt = sum_i W_ij s_i + b_j - s_j sum_i W_ji - beta dC/ds_j [j output]``, the leak
    of neuron ``j`` weighted by the sum of its outgoing weights. ``leak="unit"`` is the
    vector field of asymmetric EP (Scellier et al. 2018) on states in [0, 1], where the hard
    sigmoid is the identity: ``ds_j/dt = sum_i W_ij s_i + b_j - s_j - beta dC/ds_j``.
    The cost is ``C = 1/2 ||s_out - y||^2``, so ``dC/ds_out = s_out - y``; ``y`` has shape
    ``(..., B, n_outputs)``.
    """
    if leak == "deep":
        leak_rate = net.weights.sum(dim=-1).unsqueeze(-2)  # sum_i W_ji, outgoing weights of j
    elif leak == "unit":
        leak_rate = torch.ones((), dtype=net.weights.dtype)
    else:
        raise ConfigError(f"leak must be 'deep' or 'unit', got {leak!r}")
    free = torch.zeros(net.n_neurons + 1, dtype=net.weights.dtype)
    free[net.free] = 1.0
    weights = net.weights
    if beta == 0.0:
        return lambda s: (s @ weights - s * leak_rate) * free
    if y is None:
        raise ConfigError("a target y is needed when beta is non-zero")
    nudge = torch.zeros(net.n_neurons + 1, dtype=net.weights.dtype)
    nudge[net.outputs] = beta
    target = torch.zeros(y.shape[:-1] + (net.n_neurons + 1,), dtype=net.weights.dtype)
    target[..., net.outputs] = y.to(net.weights.dtype)
    return lambda s: (s @ weights - s * leak_rate - nudge * (s - target)) * free


def relax(
    net: DirectedNetwork,
    s: torch.Tensor,
    n_steps: int,
    eps: float,
    leak: str = "deep",
    beta: float = 0.0,
    y: torch.Tensor | None = None,
    keep_trajectory: bool = False,
) -> torch.Tensor:
    """Euler steps ``s <- clip_[0,1](s + eps * V(s))`` of the vector field :func:`field`.

    The clip is the hard sigmoid applied after each step (footnote 2 of Farinha et al.);
    inputs must lie in [0, 1] so that it leaves them alone. Returns the final state, or with
    ``keep_trajectory`` the states ``s(0), ..., s(n_steps)`` stacked on a new first dimension.
    """
    velocity = field(net, leak, beta, y)
    states = [s]
    for _ in range(n_steps):
        s = (s + eps * velocity(s)).clamp_(0.0, 1.0)
        if keep_trajectory:
            states.append(s)
    return torch.stack(states) if keep_trajectory else s
