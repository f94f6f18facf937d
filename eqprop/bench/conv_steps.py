"""ms per relaxation step of the conv networks against their convolutions and products alone."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from eqprop import config as cfg
from eqprop.bench.settings import (
    BenchOptions,
)
from eqprop.bench.timing import (
    alternate,
    clock,
    step_over_bound,
    warm_start,
)
from eqprop.conv import ConvBlock, ConvNetwork
from eqprop.conv import preset as conv_preset
from eqprop.relaxation.cuda_graph import CudaGraphs
from eqprop.relaxation.fixed import FixedSteps

_CONV_MNIST = cfg.from_dict(cfg.preset(conv_preset.PRESET)).topology
#: The conv networks ``--conv`` times (input, conv blocks, dense sizes): the ``conv-mnist``
#: preset's, and Ernoult et al.'s MNIST widths ("Updates of Equilibrium Prop Match Gradients
#: of Backprop Through Time in an RNN with Static Input": 32 and 64 maps) on the same layout.
CONV_NETWORKS = {
    "conv-mnist": (_CONV_MNIST.input_shape, _CONV_MNIST.conv_blocks(), _CONV_MNIST.sizes),
    "conv-32-64": ((1, 28, 28), (ConvBlock(32, 5, pool=2), ConvBlock(64, 5, pool=2)), (10,)),
}
#: The conv step's batch (the ``conv-mnist`` preset's).
CONV_BATCH = 32


def _convolutions_alone(net, batch: int, g: torch.Generator) -> Callable[[], None]:
    """A conv network's step without its pooling, unpooling, copies and finish: per
    state-state conv block one ``conv2d`` and one ``conv_transpose2d`` of the step's shapes
    (the latter on maps of the convolution's size before pooling), per dense pair its two
    ``addmm_``, on preallocated random inputs with the network's weights."""
    work = []
    for k, block in enumerate(net.blocks[1:], start=1):
        w = net.weights[k]
        src = torch.rand(batch, *net.shapes[k], generator=g).to(net.device, net.dtype)
        maps = torch.nn.functional.conv2d(src, w, padding=block.padding)
        work.append(partial(torch.nn.functional.conv2d, src, w, padding=block.padding))
        work.append(partial(torch.nn.functional.conv_transpose2d, maps, w, padding=block.padding))
    for k in range(len(net.blocks), net.n_layers - 1):
        w = net.weights[k]
        for rows, cols, weight in ((w.shape[0], w.shape[1], w), (w.shape[1], w.shape[0], w.T)):
            a = torch.rand(batch, rows, generator=g).to(net.device, net.dtype)
            out = torch.zeros(batch, cols, dtype=net.dtype, device=net.device)
            work.append(partial(out.addmm_, a, weight))

    def convolutions_alone() -> None:
        for run in work:
            run()

    return convolutions_alone


def conv_step_timing(
    net: ConvNetwork,
    batch: int = CONV_BATCH,
    options: BenchOptions | None = None,
    eps: float = 0.5,
) -> dict[str, Any]:
    """ms per relaxation step of a :class:`~eqprop.conv.ConvNetwork` (free steps of
    :class:`FixedSteps`, on CUDA its graph) against its bound, the same step's convolutions
    and matrix products alone (:func:`_convolutions_alone`); windows alternate, the ratio is
    the median of the per-window ratios, as in :func:`~eqprop.bench.steps.step_timing`."""
    options = options or BenchOptions()
    now = clock(net.device)
    g, base, s = warm_start(net, batch, eps)
    window = options.step_window
    relaxer = CudaGraphs(eps, window) if net.device.type == "cuda" else FixedSteps(eps, window)
    relaxer.relax(net, s, base)  # warm-up (and the graph's capture) outside the windows
    bound = _convolutions_alone(net, batch, g)
    bound()
    steps, bounds = alternate(
        now, options.repeats, window, lambda: relaxer.relax(net, s, base), [bound]
    )
    return {
        **step_over_bound(steps, bounds, window, 0),
        "cpu": step_over_bound(steps, bounds, window, 1),
    }


def conv_benchmark(options: BenchOptions) -> list[dict[str, Any]]:
    """:func:`conv_step_timing` of every network of :data:`CONV_NETWORKS`, float32, batch
    :data:`CONV_BATCH`, on ``options.device``."""
    out = []
    for name, (shape, blocks, dense) in CONV_NETWORKS.items():
        net = ConvNetwork(shape, blocks, dense, seed=0, device=options.device)
        out.append(
            {
                "network": name,
                "shapes": [list(s) for s in net.shapes],
                "batch": CONV_BATCH,
                "dtype": "float32",
                **conv_step_timing(net, CONV_BATCH, options),
            }
        )
    return out
