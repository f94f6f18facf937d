"""The checks a run passes before anything is written: the device, the data against the
network, and the memory it needs at least."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from eqprop import topology as topo
from eqprop.config import CONV, FILE, RunConfig
from eqprop.data import Dataset
from eqprop.errors import ConfigError
from eqprop.runs.build import load_data, run_topology


@dataclass
class RunOptions:
    """How a run reports and where it finds data. ``announce``: print ``run directory: ...``
    on stderr once every check has passed (the command line does)."""

    data_dir: str | Path | None = None
    quiet: bool = False
    tensorboard: bool = False
    announce: bool = False


def check_device(device: str, fix: str = "--device cpu") -> None:
    """A one-line error if ``device`` (``cpu``, ``cuda``, ``cuda:N``) is not on this machine;
    ``fix``: the option that asks for the CPU instead."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is available; use {fix}")
    index = device.partition(":")[2]
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ConfigError(
            f"device {device!r} requested but this machine has {count} CUDA GPU(s) "
            f"(cuda:0 to cuda:{count - 1}); choose one of those"
        )


def _available_memory(device: str) -> int | None:
    """Bytes of memory a run on ``device`` can use at most (None when unknown)."""
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    with contextlib.suppress(OSError, ValueError):  # a container's limit, when lower
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def memory_lower_bound(config: RunConfig, n_train: int, n_held: int) -> int:
    """Bytes that a run of ``config`` needs at the very least: its edge list, the weights and
    masks of its adjacent-layer (and, for ICONS, intralayer) edges (a conv network: its
    kernels and matrices), and its particles."""
    section = config.topology
    sizes = section.layer_sizes()
    itemsize = 8 if config.train.dtype == "float64" else 4
    if section.family == CONV:
        weights = section.conv_weights() * itemsize
        return weights + _particles(config, sum(sizes[1:]), n_train, n_held, itemsize)
    if section.family.startswith("icons"):
        edges = topo.base_counts(sizes)[0]
    else:
        edges = topo.layered_edge_count(sizes)
    return edges * (16 + 2 * itemsize) + _particles(
        config, sum(sizes[1:]), n_train, n_held, itemsize
    )


def _particles(config: RunConfig, n_state: int, n_train: int, n_held: int, itemsize: int) -> int:
    """Bytes of the persistent particles of ``n_train`` training and ``n_held`` held-out
    examples (those the config keeps)."""
    particles = n_train * n_state if config.train.persistent else 0
    particles += n_held * n_state if config.train.test_persistent else 0
    return particles * itemsize


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_run(
    config: RunConfig, options: RunOptions | None = None, run_dir: str | Path | None = None
) -> Dataset:
    """Everything about ``config`` that can only be checked against this machine and the data:
    the device, the data files, an own topology's file (or its copy in ``run_dir``), the
    layer sizes against the data's input width and classes, and the memory it needs at
    least. One-line :class:`~eqprop.errors.EqpropError` on a problem; returns the dataset.
    Runs before a run directory is created or changed."""
    options = options or RunOptions()
    check_device(config.train.device)
    if config.topology.family == FILE:
        run_topology(config, run_dir)
    available = _available_memory(config.train.device)
    if available is not None:  # before the data: a network that cannot fit at all
        need = memory_lower_bound(config, 0, 0)
        if need > available:
            raise ConfigError(_memory_message(config, need, available))
    data = load_data(config, options.data_dir)
    check_data_fits(config, data)
    if available is not None:
        need = memory_lower_bound(config, len(data.train), len(data.held_out))
        if need > available:
            raise ConfigError(_memory_message(config, need, available))
    return data


def check_data_fits(config: RunConfig, data: Dataset) -> None:
    """A one-line ConfigError unless ``config``'s network takes ``data``: a fully connected
    one its input width and classes, a conv one its image shape and classes."""
    if config.topology.family == CONV:
        _check_conv_data(config, data)
    else:
        _check_sizes(config, data)


def _check_sizes(config: RunConfig, data: Dataset) -> None:
    """A fully connected network's input and output layers against the data."""
    sizes = config.topology.sizes
    shown = ", ".join(str(s) for s in sizes[1:-1]) or "..."
    fix = f"use --set topology.sizes=[{data.n_features}, {shown}, {data.n_classes}]"
    if sizes[0] != data.n_features:
        raise ConfigError(
            f"topology.sizes starts with {sizes[0]} inputs but {data.name} has "
            f"{data.n_features} features per example; {fix}"
        )
    if sizes[-1] != data.n_classes:
        raise ConfigError(
            f"topology.sizes ends with {sizes[-1]} outputs but {data.name} has "
            f"{data.n_classes} classes; {fix}"
        )


def image_shape(data: Dataset) -> tuple[int, ...]:
    """The ``(C, H, W)`` shape of the data's examples as a conv network reads them (flat, in
    that order): its ``image_shape`` with one channel added to a ``(H, W)`` one; a flat
    ``(features,)`` shape as it is (any ``C x H x W`` of that many values fits)."""
    shape = tuple(data.image_shape)
    return (1, *shape) if len(shape) == 2 else shape


def _check_conv_data(config: RunConfig, data: Dataset) -> None:
    """A conv network's ``input_shape`` and output layer against the data."""
    section = config.topology
    wanted = list(section.input_shape)
    shape = image_shape(data)
    fits = len(shape) == 1 and math.prod(wanted) == shape[0]
    if not fits and tuple(wanted) != shape:
        fix = (
            f"use --set topology.input_shape=[{','.join(map(str, shape))}]"
            if len(shape) == 3
            else f"set topology.input_shape to a [C, H, W] of {data.n_features} values"
        )
        raise ConfigError(
            f"topology.input_shape = {wanted} but {data.name} has images of shape "
            f"{'x'.join(map(str, data.image_shape))} ({data.n_features} values); {fix}"
        )
    if section.sizes[-1] != data.n_classes:
        dense = [*section.sizes[:-1], data.n_classes]
        raise ConfigError(
            f"topology.sizes ends with {section.sizes[-1]} outputs but {data.name} has "
            f"{data.n_classes} classes; use --set topology.sizes={str(dense).replace(' ', '')}"
        )


def _memory_message(config: RunConfig, need: int, available: int) -> str:
    device = config.train.device
    what = f"topology.sizes {list(config.topology.sizes)}"
    if config.topology.family == CONV:
        what = "the conv network of topology.input_shape, channels and sizes"
    return (
        f"{what} needs at least {_gib(need)} of memory "
        f"for its weights and particles but {device} has {_gib(available)}; use smaller "
        f"layers (or a smaller data.limit)"
    )
