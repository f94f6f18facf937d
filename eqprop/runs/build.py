"""What a run's config describes, built: its topology, network, update, trainer and data."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from eqprop import topology as topo
from eqprop.config import CONV, FILE, MASKED_SGD, RunConfig
from eqprop.conv import ConvNetwork, ConvSGD
from eqprop.data import Dataset, load_dataset, load_npz
from eqprop.energy_network import EnergyNetwork
from eqprop.errors import ConfigError, EqpropError
from eqprop.network import Network
from eqprop.quantization import QuantizedSGD, rounding_seed
from eqprop.relaxation.cuda_graph import CudaGraphs
from eqprop.relaxation.fixed import FixedSteps
from eqprop.runs.files import CONFIG, TOPOLOGY, _first_line, check_regular_file
from eqprop.training import Trainer
from eqprop.updates import MaskedSGD, OptimizerUpdate, Update


def build_topology(config: RunConfig) -> topo.Topology:
    """The topology a config describes (a fully connected family; a conv network has none)."""
    section = config.topology
    if section.family == CONV:
        raise ConfigError(
            f"topology.family = {CONV!r} is a convolutional network, not a topology of edges; "
            f"its layers are in topology.input_shape, channels, kernels, paddings, pools, sizes"
        )
    if section.family == "layered":
        return topo.layered(section.sizes)
    if section.family == FILE:
        return topo.Topology.from_edge_file(section.sizes, section.path)
    if section.family == "rewired":
        return topo.rewired(section.sizes, section.p, seed=section.seed)
    return topo.icons(
        section.sizes,
        n=section.n,
        p=section.p,
        mode="add" if section.family == "icons-add" else "replace",
        p_formula=section.p_formula,
        seed=section.seed,
    )


def run_topology(config: RunConfig, run_dir: str | Path | None = None) -> topo.Topology | None:
    """The topology of a run: for ``topology.family = "file"``, the copy saved in ``run_dir``
    (:data:`TOPOLOGY`) when there is one, so that the original file is no longer needed;
    None for a conv network; otherwise the one the config describes
    (:func:`build_topology`)."""
    if config.topology.family == CONV:
        return None
    saved = None if run_dir is None else Path(run_dir) / TOPOLOGY
    if config.topology.family != FILE or saved is None or not os.path.lexists(saved):
        return build_topology(config)
    fix = "restore it from a copy of the run directory"
    check_regular_file(saved, fix)
    try:
        topology = topo.Topology.load(saved)
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise EqpropError(f"{saved} is damaged ({_first_line(exc)}); {fix}") from None
    if topology.sizes != config.topology.sizes:
        raise EqpropError(
            f"{saved} has layer sizes {list(topology.sizes)} but {saved.parent / CONFIG} has "
            f"{list(config.topology.sizes)}; the file belongs to another run: {fix}"
        )
    return topology


def build_network(
    config: RunConfig, topology: topo.Topology | None = None
) -> Network | ConvNetwork:
    """The initial network a config describes: a :class:`~eqprop.network.Network` on
    ``topology`` (absent: the config's, :func:`build_topology`), or with ``topology.family =
    "conv"`` a :class:`~eqprop.conv.ConvNetwork` (``topology`` unused)."""
    train = config.train
    if train.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {train.device!r} requested but no CUDA GPU is available; use --device cpu"
        )
    section = config.topology
    if section.family == CONV:
        return ConvNetwork(
            section.input_shape,
            section.conv_blocks(),
            section.sizes,
            seed=train.seed,
            dtype=getattr(torch, train.dtype),
            device=train.device,
            activation=config.network.build(),
        )
    return Network(
        topology if topology is not None else build_topology(config),
        a=config.topology.a,
        seed=train.seed,
        layout=train.layout,
        dtype=getattr(torch, train.dtype),
        device=train.device,
        activation=config.network.build(),
    )


def build_update(config: RunConfig, network: EnergyNetwork) -> Update:
    """The update a config describes: the built-in masked SGD (on a conv network
    :class:`~eqprop.conv.ConvSGD`, the same rule without masks), or a ``torch.optim``
    optimiser (with ``update.lr`` and ``update.optimizer_args``) through ``.grad``; with
    ``update.bits``, masked SGD on a ``k``-bit grid
    (:class:`~eqprop.quantization.QuantizedSGD`, which rounds the initial weights)."""
    section = config.update
    quantization = section.quantization()
    if quantization is not None:
        seed = rounding_seed(config.train.seed)
        return QuantizedSGD(network, section.rates(), quantization, seed)
    if section.optimizer == MASKED_SGD:
        if isinstance(network, ConvNetwork):
            return ConvSGD(network, section.rates())
        return MaskedSGD(network, section.rates())
    optimizer = getattr(torch.optim, section.optimizer)
    kwargs = section.optimizer_kwargs()
    return OptimizerUpdate(network, lambda params: optimizer(params, **kwargs))


def build_trainer(config: RunConfig, network: EnergyNetwork, n_train: int) -> Trainer:
    """The trainer (relaxers, nudging, estimator, update, particles, generator) a config
    describes. Fixed-step phases run as CUDA graphs on a GPU (:class:`CudaGraphs`)."""
    free, nudged = config.free.build(), config.nudged.build()
    if isinstance(free, FixedSteps):
        free = CudaGraphs(free.eps, free.steps)
    return Trainer(
        network,
        config.estimator.build(),
        build_update(config, network),
        free=free,
        nudged=CudaGraphs(nudged.eps, nudged.steps),
        nudging=config.nudged.scheme(network),
        n_train=n_train,
        batch_size=config.train.batch_size,
        persistent=config.train.persistent,
        batch_order=config.train.batch_order,
        seed=config.train.seed,
        remove_after=config.topology.remove_after,
    )


def load_data(config: RunConfig, data_dir: str | Path | None) -> Dataset:
    """The dataset a config trains on (``data_dir`` is where MNIST-like files are; own data
    is read from ``data.path``)."""
    data = config.data
    if data.dataset == FILE:
        return load_npz(data.path, limit=data.limit)
    return load_dataset(data.dataset, data.split, data_dir, limit=data.limit)
