"""Difference target propagation (Lee, Zhang, Fischer & Bengio 2015), on plain and dense nets.

Lee et al.'s Algorithm 1, for a plain network with hidden layers ``1..L`` and output ``L + 1``:

1. the output layer is trained on the loss itself (its own gradient, a local quantity);
2. the last hidden layer gets the target ``h^_L = h_L - eta dloss/dh_L`` (one gradient step
   on the loss through the output layer only);
3. lower targets come from learned inverses ``g_l`` with the *difference correction*
   ``h^_{l-1} = h_{l-1} - g_l(h_l) + g_l(h^_l)``;
4. each hidden layer minimises ``||f_l(h_{l-1}) - h^_l||^2`` with its input held fixed;
5. each inverse minimises the reconstruction loss ``||g_l(f_l(h_{l-1} + e)) - (h_{l-1} + e)||^2``
   with Gaussian corruption ``e ~ N(0, sigma^2)``.

Dense adaptation (seed section 2): every hidden-to-hidden edge ``j -> k`` has its own inverse
``g_{j<-k}(h_k) = f(V_{j,k} h_k + c_{j,k})``, and the target of layer ``l`` sums the difference
corrections of every later hidden layer it feeds, ``h^_l = h_l - sum_{k > l} (g_{l<-k}(h_k) -
g_{l<-k}(h^_k))``, the paper's formula. The output layer's contribution is the step-2 gradient
term: in a dense network the output reads every layer, so each hidden layer ``l`` also gets
``-eta W_{out,l}^T dloss/dlogits`` (the gradient through the output layer's own weights, which
is what step 2 uses; in a plain network only layer ``L`` has it, recovering Algorithm 1). The
reconstruction loss of ``g_{l<-k}`` corrupts ``h_l`` alone and recomputes ``h_k`` with the other
inputs of ``k`` fixed. The paper's sum runs over layers ``l+1..L``; where its notation leaves the
top of the sum open we use the output-gradient step as Lee et al. do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eqprop.baselines._validation import check_number
from eqprop.baselines.architectures import FeedforwardNetwork, edge_key, init_bound
from eqprop.baselines.rule import LearningRule


@dataclass(frozen=True)
class DTPConfig:
    """Hyperparameters of difference target propagation.

    Attributes:
        target_step: ``eta`` of step 2, the step size of the top target (Lee et al.'s
            ``eta-hat``).
        noise_std: ``sigma`` of the corruption in the inverses' reconstruction loss.
    """

    target_step: float = 0.5
    noise_std: float = 0.1

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_number(owner, "target_step", self.target_step, 1e-6, 100.0)
        check_number(owner, "noise_std", self.noise_std, 0.0, 10.0)


def _squared_error(a: Tensor, b: Tensor) -> Tensor:
    """``||a - b||^2`` per example (summed over units), averaged over the batch."""
    return (a - b).pow(2).flatten(1).sum(1).mean()


class DifferenceTargetPropagation(LearningRule):
    """Difference target propagation with one learned inverse per hidden-to-hidden edge.

    Args:
        network: the forward network.
        seed: seeds the inverses' initialisation and the reconstruction noise.
        config: target step and noise level.
    """

    name = "DTP"

    def __init__(
        self, network: FeedforwardNetwork, seed: int = 0, config: DTPConfig | None = None
    ) -> None:
        super().__init__(network, seed)
        self.config = config if config is not None else DTPConfig()
        self._generator = torch.Generator().manual_seed(seed)
        activation = network.config.activation
        #: inverse of the forward edge ``j -> k``, under the forward edge's key; maps h_k to h_j
        self.inverses = nn.ModuleDict()
        self.inverse_biases = nn.ParameterDict()
        for target, source in self._inverse_pairs():
            forward_edge = network.edge(target, source)
            kernel = forward_edge.weight[0, 0].numel()  # 1, or 3 * 3 for a convolution
            fan_in = forward_edge.weight.shape[0] * kernel
            fan_out = forward_edge.weight.shape[1] * kernel
            bound = init_bound(activation, fan_in, fan_out)
            key = edge_key(target, source)
            self.inverses[key] = forward_edge.reverse(bound, self._generator)
            self.inverse_biases[key] = nn.Parameter(torch.zeros_like(network.biases[source - 1]))

    def parameters(self) -> list[nn.Parameter]:
        return [
            *self.network.parameters(),
            *self.inverses.parameters(),
            *self.inverse_biases.parameters(),
        ]

    def state_dict(self) -> dict:
        """The parameters and the state of the reconstruction noise's generator."""
        return {**super().state_dict(), "noise_generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._generator.set_state(state["noise_generator"])

    def inverse(self, target: int, source: int, h_target: Tensor) -> Tensor:
        """``g_{source<-target}(h_target) = f(V h_target + c)``."""
        key = edge_key(target, source)
        a = self.inverses[key](h_target) + self.inverse_biases[key]
        return self.network.activate(source, a)

    def _inverse_pairs(self) -> list[tuple[int, int]]:
        """``(target, source)`` of every hidden-to-hidden forward edge: those get an inverse
        (the input needs no target; edges into the output use the loss gradient)."""
        net = self.network
        return [
            (target, source)
            for target in range(2, net.depth + 1)
            for source in net.sources[target]
            if source >= 1
        ]

    def compute_gradients(self, x: Tensor, y: Tensor) -> dict[str, float]:
        net, cfg = self.network, self.config
        depth, out = net.depth, net.depth + 1
        with torch.no_grad():
            preacts, states = net.forward_pass(x)

        # Step 1: the output layer learns from the loss; the same backward pass gives each
        # hidden source of the output its direct error dloss/dh_l through W_{out,l} (step 2).
        inputs = [s.requires_grad_(True) if 1 <= i <= depth else s for i, s in enumerate(states)]
        logits = net.preactivation(out, inputs[:out])
        loss = F.cross_entropy(logits, y)
        loss.backward()
        batch = x.shape[0]

        with torch.no_grad():
            targets: dict[int, Tensor] = {}
            for layer in range(depth, 0, -1):
                h = inputs[layer]
                target = h.detach().clone()
                if h.grad is not None:  # layer feeds the output: gradient step (Lee step 2)
                    target -= cfg.target_step * batch * h.grad  # per-example gradient
                for later in range(layer + 1, depth + 1):
                    if layer in net.sources[later]:  # difference correction (Lee step 3)
                        target -= self.inverse(later, layer, states[later]) - self.inverse(
                            later, layer, targets[later]
                        )
                targets[layer] = target
            hidden = [s.detach() for s in states]

        # Step 4: each hidden layer regresses onto its target with its inputs held fixed.
        layer_loss = torch.zeros(())
        for layer in range(1, depth + 1):
            h = net.activate(layer, net.preactivation(layer, hidden))
            layer_loss = layer_loss + _squared_error(h, targets[layer])

        # Step 5: each inverse reconstructs its (corrupted) source layer.
        pairs = self._inverse_pairs()
        reconstruction = torch.zeros(())
        for target, source in pairs:
            noise = cfg.noise_std * torch.randn(hidden[source].shape, generator=self._generator)
            with torch.no_grad():
                corrupted = net.activate(target, preacts[target] + net.edge(target, source)(noise))
            reconstructed = self.inverse(target, source, corrupted)
            reconstruction = reconstruction + _squared_error(reconstructed, hidden[source] + noise)

        local_loss = layer_loss + reconstruction
        if local_loss.requires_grad:  # false only without hidden layers
            local_loss.backward()
        return {
            "loss": loss.item(),
            "layer_loss": layer_loss.item(),
            "reconstruction": reconstruction.item() / max(len(pairs), 1),
        }
