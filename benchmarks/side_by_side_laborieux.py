"""eqprop's equivalent of the small MNIST conv net of Laborieux et al.'s public code, timed.

Laborieux, Ernoult, Scellier, Bengio, Grollier & Querlioz, "Scaling Equilibrium Propagation
to Deep ConvNets by Drastically Reducing Its Gradient Estimator Bias" (Frontiers in
Neuroscience, 2021), publish a PyTorch implementation whose MNIST conv check
(``check/train_mnist_cnn.sh``) trains 1x28x28 -> 32 maps of 5x5 kernels, 2x2 max pooling
-> 64 maps of 5x5 kernels, 2x2 max pooling -> 10 outputs, the hard sigmoid ``clip(u, 0, 1)``,
a squared-error cost, one-sided EP with ``beta = 0.4``, 200 free and 10 nudged steps of
``s <- clip(dPhi/ds)`` from zeros, batches of 100, Adam with per-layer rates (5e-5, 1e-5,
8e-6). This script builds the same model from eqprop's parts (``docs/performance.md``,
"Side by side with Laborieux et al.'s code", names what still differs):
:class:`~eqprop.conv.ConvNetwork`, steps of ``eps = 1`` (our
step ``clip((1 - eps) s + eps h)`` is then their update), the ``gradient`` nudging (one step
on ``E + beta/2 |s_out - d|^2``: their ``Phi - beta L``), :class:`~eqprop.estimators.Positive`,
no persistent particles, and Adam through :class:`~eqprop.updates.OptimizerUpdate`.

It trains on the first ``--n-train`` MNIST training images for ``--epochs`` epochs with one
torch thread, evaluates the first ``--n-test`` test images after each epoch (200 free steps
from zeros, batches of 200, as their ``evaluate``), and prints each epoch's training and
evaluation time (wall and process CPU) and errors::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/side_by_side_laborieux.py \\
        --data-dir /work/shared/data --n-train 1000 --n-test 1000 --epochs 2
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from eqprop.conv import ConvBlock, ConvNetwork
from eqprop.data import load_dataset
from eqprop.errors import ConfigError, EqpropError
from eqprop.estimators import Positive
from eqprop.nudging import GradientNudging
from eqprop.relaxation.fixed import FixedSteps
from eqprop.training import Trainer
from eqprop.updates import OptimizerUpdate

#: their ``--channels 32 64 --kernels 5 5 --pools mm --fc 10`` (paddings 0)
BLOCKS = (ConvBlock(32, kernel=5, pool=2), ConvBlock(64, kernel=5, pool=2))
DENSE = (10,)
#: their ``--lrs 5e-5 1e-5 8e-6``: Adam's rate of each layer pair's weights
WEIGHT_LRS = (5e-5, 1e-5, 8e-6)


def torch_bias_init(net: ConvNetwork, seed: int) -> None:
    """Set ``net``'s biases as ``torch.nn.Conv2d`` and ``torch.nn.Linear`` start theirs
    (uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, ``fan_in`` of the layer pair into the
    bias), drawn in float64 from ``seed``; eqprop's own start is 0."""
    fan_in = torch.tensor(
        [w.shape[1] * w.shape[2] * w.shape[3] if w.ndim == 4 else w.shape[0] for w in net.weights],
        dtype=torch.float64,
    )
    bound = fan_in[net.bias_layer].rsqrt()
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(bound.shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        net.biases.copy_((u * 2 - 1) * bound)


def build_trainer(
    n_train: int, *, seed: int = 0, bias_lr: float = 1e-5, bias_init: str = "torch"
) -> Trainer:
    """The :class:`~eqprop.training.Trainer` of the module docs for ``n_train`` images; its
    biases start as ``bias_init`` says (``torch``: :func:`torch_bias_init`; ``zero``:
    eqprop's) and all take Adam's rate ``bias_lr`` (eqprop keeps them in one tensor)."""
    if bias_init not in ("torch", "zero"):
        raise ConfigError(f"bias_init must be 'torch' or 'zero', got {bias_init!r}")
    net = ConvNetwork((1, 28, 28), BLOCKS, DENSE, seed=seed)
    if bias_init == "torch":
        torch_bias_init(net, seed)

    def adam(params: list[torch.Tensor]) -> torch.optim.Adam:
        groups = [{"params": [w], "lr": lr} for w, lr in zip(params[:-1], WEIGHT_LRS, strict=True)]
        return torch.optim.Adam([*groups, {"params": [params[-1]], "lr": bias_lr}])

    return Trainer(
        net,
        Positive(beta=0.4),
        OptimizerUpdate(net, adam),
        free=FixedSteps(eps=1.0, steps=200),
        nudged=FixedSteps(eps=1.0, steps=10),
        nudging=GradientNudging(),
        n_train=n_train,
        batch_size=100,
        persistent=False,
        seed=seed,
    )


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, train and print (module docs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="holds mnist/ (default $EQPROP_DATA_DIR)")
    parser.add_argument("--n-train", type=int, default=1000, help="first N training images")
    parser.add_argument("--n-test", type=int, default=1000, help="first N test images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="weights, biases, batch order")
    parser.add_argument("--bias-lr", type=float, default=1e-5, help="Adam's rate of every bias")
    parser.add_argument("--bias-init", choices=("torch", "zero"), default="torch")
    args = parser.parse_args(argv)
    try:
        for name in ("n_train", "n_test", "epochs"):
            if getattr(args, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        torch.set_num_threads(1)
        data = load_dataset("mnist", data_dir=args.data_dir, download=False)
        x, y = data.train.x[: args.n_train], data.train.y[: args.n_train]
        x_test, y_test = data.test.x[: args.n_test], data.test.y[: args.n_test]
        trainer = build_trainer(
            len(x), seed=args.seed, bias_lr=args.bias_lr, bias_init=args.bias_init
        )
        print(f"eqprop, {len(x)} training and {len(x_test)} test images, one torch thread")
        for _ in range(args.epochs):
            wall, cpu = _clock()
            epoch = trainer.train_epoch(x, y)
            wall_t, cpu_t = _clock()
            test_error = trainer.evaluate(x_test, y_test, batch_size=200)
            wall_e, cpu_e = _clock()
            per_k = 1000 / len(x)
            print(
                f"epoch {epoch.epoch}: train {wall_t - wall:.1f} s wall, {cpu_t - cpu:.1f} s "
                f"CPU ({(cpu_t - cpu) * per_k:.1f} s CPU per 1,000 images); test eval "
                f"{wall_e - wall_t:.1f} s wall, {cpu_e - cpu_t:.1f} s CPU; train error "
                f"{epoch.train_error:.4f}, test error {test_error:.4f}"
            )
    except EqpropError as exc:
        sys.exit(f"side_by_side_laborieux: {exc}")


if __name__ == "__main__":
    main()
