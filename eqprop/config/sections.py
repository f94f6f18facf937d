"""The sections of a run configuration (:mod:`eqprop.config`), one record each, validated by the
library object it builds, and the limits they share."""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from eqprop import activation, estimators, nudging
from eqprop.conv.network import ConvBlock
from eqprop.data import DATASETS, SPLITS
from eqprop.errors import ConfigError
from eqprop.network import LAYOUTS
from eqprop.quantization import DEFAULT_RANGE_SCALE, Quantization
from eqprop.relaxation import SOLVERS
from eqprop.training import BATCH_ORDERS
from eqprop.updates import LearningRates

if TYPE_CHECKING:
    from eqprop.energy_network import EnergyNetwork
    from eqprop.relaxation import Relaxer
    from eqprop.relaxation.fixed import FixedSteps

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass


#: written into every config.toml; a file without it is version 1 (flat)
FORMAT_VERSION = 2
#: ``data.dataset`` and ``topology.family`` of your own data and topology, read from the file
#: at ``path`` (``.npz`` arrays; a text edge list)
FILE = "file"
#: ``topology.family`` of a convolutional network (:class:`eqprop.conv.ConvNetwork`): conv
#: blocks, then the dense layers of ``topology.sizes``
CONV = "conv"
TOPOLOGIES = ("layered", "icons", "icons-add", "rewired", FILE, CONV)
#: the ``[topology]`` keys of the conv family, and what each conv layer takes when a
#: per-layer key is absent (:class:`eqprop.conv.ConvBlock`'s defaults)
CONV_KEYS = ("input_shape", "channels", "kernels", "paddings", "pools")
CONV_DEFAULTS = {"kernels": 5, "paddings": 0, "pools": 2}
#: the fields that name a file: a relative path in a config file starts at that file's
#: directory, elsewhere at the current directory; a config holds it absolute
PATHS = ("data.path", "topology.path")
#: the built-in update; any other ``update.optimizer`` names a ``torch.optim`` class
MASKED_SGD = "masked-sgd"
#: the largest integer a config holds (TOML's, and a seed's, 64-bit signed range)
MAX_INT = 2**63 - 1
#: the largest layer: beyond it the weights of one adjacent pair no longer fit in memory
MAX_LAYER = 10_000_000
#: the most relaxation steps per phase: beyond it one batch takes hours
MAX_STEPS = 1_000_000
#: ICONS replacements beyond this multiple of N_o change nothing (every original connection
#: has been replaced with probability 1 - e**-20) and only take time
MAX_REPLACEMENTS_PER_EDGE = 20


def _choice(section: str, name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{section}.{name} = {value!r} is not allowed; choose one of {', '.join(allowed)}"
        )


def _at_least(section: str, name: str, value, low, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not value >= low:
        raise ConfigError(f"{section}.{name} must be >= {low}, got {value}")


def _path(section: str, owner: str, value: str | None, wanted: bool) -> str | None:
    """``section.path``, checked and made absolute: needed when ``wanted`` (``owner`` is the
    field set to :data:`FILE`), refused otherwise."""
    if not wanted:
        if value is not None:
            raise ConfigError(f"{section}.path applies only with {section}.{owner} = {FILE!r}")
        return None
    if not value:
        raise ConfigError(f"{section}.{owner} = {FILE!r} needs {section}.path, the file to read")
    return os.path.abspath(os.path.expanduser(value))


def _listed(value: tuple | None) -> str:
    """A tuple field as TOML shows it (``[1, 28, 28]``), or ``nothing`` when absent."""
    return "nothing" if value is None else str(list(value))


def _seed(section: str, value: int) -> None:
    _at_least(section, "seed", value, 0)
    if value > MAX_INT:
        raise ConfigError(
            f"{section}.seed = {value} does not fit in 64 bits; use a seed in [0, 2**63 - 1]"
        )


def _steps(section: str, value: int) -> None:
    if value > MAX_STEPS:
        adaptive = (
            "; to run until convergence use free.solver = 'fista' (or 'tolerance') with free.tol"
            if section == "free"
            else ""
        )
        raise ConfigError(
            f"{section}.steps = {value} is more than {MAX_STEPS:,} steps per phase (one batch "
            f"would take hours){adaptive}"
        )


@dataclass(frozen=True)
class DataSection:
    """``[data]``: ``dataset`` (a bundled one, or ``file``: your own examples in the ``.npz``
    file at ``path``, :func:`eqprop.data.load_npz`), ``split`` (bundled datasets only;
    ``icons``: first 50k train / last 10k evaluation; ``standard``), ``limit`` (keep only the
    first examples of each split; absent: all)."""

    dataset: str = "digits"
    split: str = "standard"
    limit: int | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        _choice("data", "dataset", self.dataset, (*DATASETS, FILE))
        _choice("data", "split", self.split, SPLITS)
        _at_least("data", "limit", self.limit, 1, optional=True)
        own = self.dataset == FILE
        object.__setattr__(self, "path", _path("data", "dataset", self.path, own))
        if own and self.split != "standard":
            raise ConfigError(
                f"data.split = {self.split!r} applies to the bundled datasets; a data file "
                f"holds its own held-out examples (x_valid, y_valid or x_test, y_test), so "
                f"leave data.split out"
            )


@dataclass(frozen=True)
class TopologySection:
    """``[topology]``: ``family``, ``sizes``; ``n`` or ``p`` (ICONS replacements or their
    probability; ``p`` also the rewiring probability), ``p_formula``, ``a`` (initial bound of
    intralayer and skip weights; absent: the family's default), ``seed``; ``remove_after``
    (after this many epochs the intralayer and skip edges are removed and training goes on
    with the adjacent-layer edges alone; absent: never); ``path`` (with ``family = "file"``:
    a text file of edges, one ``i j`` per line, :meth:`eqprop.topology.Topology.from_edge_file`).

    ``family = "conv"`` (:class:`eqprop.conv.ConvNetwork`): ``input_shape`` (``[C, H, W]``
    of the images), ``channels`` (the feature maps of each conv layer), ``kernels``,
    ``paddings`` and ``pools`` (one per conv layer; absent: 5, 0 and 2 each), and ``sizes``
    the dense layers after the conv layers, the last the output; ``n``, ``p``, ``a``,
    ``remove_after`` and ``path`` do not apply."""

    family: str = "layered"
    sizes: tuple[int, ...] = (64, 128, 10)
    n: int | None = None
    p: float | None = None
    p_formula: str = "simple"
    a: float | None = None
    seed: int = 0
    remove_after: int | None = None
    path: str | None = None
    input_shape: tuple[int, ...] | None = None
    channels: tuple[int, ...] | None = None
    kernels: tuple[int, ...] | None = None
    paddings: tuple[int, ...] | None = None
    pools: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _choice("topology", "family", self.family, TOPOLOGIES)
        path = _path("topology", "family", self.path, self.family == FILE)
        object.__setattr__(self, "path", path)
        _choice("topology", "p_formula", self.p_formula, ("simple", "exact"))
        if self.family == CONV:
            _seed("topology", self.seed)
            self._check_conv()
            return
        given = [k for k in CONV_KEYS if getattr(self, k) is not None]
        if given:
            raise ConfigError(
                f"topology.{given[0]} applies only with topology.family = {CONV!r} (a "
                f"convolutional network)"
            )
        if len(self.sizes) < 2 or any(s < 1 for s in self.sizes):
            raise ConfigError(
                f"topology.sizes must be >= 2 positive layer sizes, got {list(self.sizes)}"
            )
        if max(self.sizes) > MAX_LAYER:
            raise ConfigError(
                f"topology.sizes has a layer of {max(self.sizes):,} neurons; at most "
                f"{MAX_LAYER:,} per layer are supported (its weights would not fit in memory)"
            )
        _at_least("topology", "n", self.n, 0, optional=True)
        _at_least("topology", "a", self.a, 0.0, optional=True)
        _seed("topology", self.seed)
        _at_least("topology", "remove_after", self.remove_after, 0, optional=True)
        if self.remove_after is not None and self.family == "layered":
            raise ConfigError(
                f"topology.remove_after removes intralayer and skip edges, and the "
                f"{self.family!r} family has none; use an icons or rewired topology"
            )
        if self.family.startswith("icons"):
            if (self.n is None) == (self.p is None):
                raise ConfigError(f"topology {self.family!r} needs exactly one of n and p")
            if self.p is not None and not 0 <= self.p < 1:
                raise ConfigError(f"topology.p must be in [0, 1), got {self.p}")
            self._check_replacements()
        elif self.family == "rewired":
            if self.p is None or not 0 <= self.p <= 1:
                raise ConfigError(f"topology 'rewired' needs p in [0, 1], got {self.p}")
        elif self.n is not None or self.p is not None:
            raise ConfigError("topology.n and topology.p apply to the icons and rewired families")

    def _check_conv(self) -> None:
        """The conv family's keys (class docs): present, one per conv layer, fitting the
        maps; the keys of the edge families refused."""
        for key in ("n", "p", "a", "remove_after"):
            if getattr(self, key) is not None:
                raise ConfigError(
                    f"topology.{key} does not apply to topology.family = {CONV!r} (a conv "
                    f"network has no intralayer or skip edges); leave it out"
                )
        if self.p_formula != "simple":
            raise ConfigError(
                f"topology.p_formula does not apply to topology.family = {CONV!r}; leave it out"
            )
        shape = self.input_shape
        if shape is None or len(shape) != 3 or min(shape) < 1:
            raise ConfigError(
                f"topology.family = {CONV!r} needs topology.input_shape = [channels, height, "
                f"width] of the images, such as [1, 28, 28], got {_listed(shape)}"
            )
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(
                f"topology.family = {CONV!r} needs topology.channels, the feature maps of each "
                f"conv layer (>= 1 each), such as [16, 32], got {_listed(self.channels)}"
            )
        least = {"kernels": 1, "paddings": 0, "pools": 1}
        for key, low in least.items():
            values = getattr(self, key)
            if values is None:
                continue
            if len(values) != len(self.channels):
                raise ConfigError(
                    f"topology.{key} has {len(values)} values but topology.channels has "
                    f"{len(self.channels)} conv layer(s); give one per conv layer"
                )
            if min(values) < low:
                raise ConfigError(f"topology.{key} must be >= {low} each, got {list(values)}")
        if not self.sizes or min(self.sizes) < 1:
            raise ConfigError(
                f"topology.sizes must be >= 1 positive layer sizes (with family {CONV!r}: the "
                f"dense layers after the conv layers, the last the output), got "
                f"{list(self.sizes)}"
            )
        sizes = self.layer_sizes()
        if max(sizes) > MAX_LAYER:
            raise ConfigError(
                f"the conv network has a layer of {max(sizes):,} neurons; at most "
                f"{MAX_LAYER:,} per layer are supported (use fewer channels or more pooling)"
            )

    def conv_blocks(self) -> tuple[ConvBlock, ...]:
        """The conv layers of ``family = "conv"`` (absent per-layer keys: their defaults)."""
        per_layer = {
            key: getattr(self, key) or (CONV_DEFAULTS[key],) * len(self.channels)
            for key in CONV_DEFAULTS
        }
        return tuple(
            ConvBlock(c, kernel=k, padding=pad, pool=pool)
            for c, k, pad, pool in zip(self.channels, *per_layer.values(), strict=True)
        )

    def layer_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each layer's shape, input first: ``(C, H, W)`` for the input and the conv layers
        of a conv network, ``(n,)`` for a dense layer; a one-line error for a kernel or a
        pool that does not fit its map."""
        if self.family != CONV:
            return tuple((n,) for n in self.sizes)
        shapes: list[tuple[int, ...]] = [tuple(self.input_shape)]
        for k, block in enumerate(self.conv_blocks(), start=1):
            try:
                shapes.append(block.output_shape(shapes[-1]))
            except ConfigError as exc:
                raise ConfigError(
                    f"topology: conv layer {k} of input_shape {list(self.input_shape)}: {exc}; "
                    f"use a smaller kernel or pool, or more padding"
                ) from None
        return (*shapes, *((n,) for n in self.sizes))

    def layer_sizes(self) -> tuple[int, ...]:
        """The number of neurons of each layer, input first (``sizes`` itself but for a conv
        network, whose input and conv layers hold ``C * H * W``)."""
        if self.family != CONV:
            return tuple(self.sizes)
        return tuple(math.prod(shape) for shape in self.layer_shapes())

    def conv_weights(self) -> int:
        """The number of weights of ``family = "conv"``: its kernels' and its dense
        matrices' entries."""
        shapes, sizes = self.layer_shapes(), self.layer_sizes()
        blocks = self.conv_blocks()
        kernels = sum(b.channels * shapes[k][0] * b.kernel**2 for k, b in enumerate(blocks))
        dense = sizes[len(blocks) :]
        return kernels + sum(a * b for a, b in itertools.pairwise(dense))

    def _check_replacements(self) -> None:
        """ICONS replacements (``n``, or the ``n`` that ``p`` stands for) within
        :data:`MAX_REPLACEMENTS_PER_EDGE` times ``N_o``."""
        from eqprop import topology

        n_o = topology.base_counts(self.sizes)[0]
        n = self.n if self.n is not None else topology.n_from_p(self.p, self.sizes, self.p_formula)
        cap = MAX_REPLACEMENTS_PER_EDGE * n_o
        if n > cap:
            given = f"topology.n = {n:,}" if self.n is not None else f"topology.p = {self.p}"
            raise ConfigError(
                f"{given} asks for more than {cap:,} replacements ({MAX_REPLACEMENTS_PER_EDGE} "
                f"x N_o for these sizes), past which every original connection has been "
                f"replaced and more only takes time; use a smaller n or p"
            )


@dataclass(frozen=True)
class NetworkSection:
    """``[network]``: ``activation`` (:data:`eqprop.activation.ACTIVATIONS`; absent: the hard
    sigmoid, and the section is not written)."""

    activation: str | None = None

    def __post_init__(self) -> None:
        self.build()

    def build(self) -> activation.Activation:
        """The activation this section names."""
        return _with_section(
            "network", lambda: activation.get(self.activation or activation.DEFAULT)
        )


@dataclass(frozen=True)
class FreeSection:
    """``[free]``: the free-phase solver (:data:`eqprop.relaxation.SOLVERS`), its step size
    ``eps``, ``steps`` (the number, or the cap for adaptive solvers) and ``tol`` (adaptive
    solvers only)."""

    solver: str = "fixed"
    eps: float = 0.5
    steps: int = 500
    tol: float | None = None

    def __post_init__(self) -> None:
        self.build()
        _steps("free", self.steps)

    def build(self) -> Relaxer:
        """The relaxer this section describes."""
        _choice("free", "solver", self.solver, SOLVERS)
        cls = SOLVERS[self.solver]
        takes_tol = any(f.name == "tol" for f in fields(cls))
        if self.tol is not None and not takes_tol:
            raise ConfigError(
                f"free.tol applies to adaptive solvers; free.solver = {self.solver!r} runs "
                f"exactly free.steps steps (use free.solver = 'tolerance')"
            )
        extra = {"tol": self.tol} if takes_tol and self.tol is not None else {}
        return _with_section("free", lambda: cls(eps=self.eps, steps=self.steps, **extra))


@dataclass(frozen=True)
class NudgedSection:
    """``[nudged]``: the ``nudging`` scheme (:data:`eqprop.nudging.NUDGINGS`), its step size
    ``eps`` and ``steps`` of the weakly-clamped phase (always fixed: they define the learning
    signal). Target-linked hidden neurons (:class:`eqprop.nudging.TargetLinked`; absent:
    off): ``hidden_layers`` (hidden layer numbers, 1 next to the input), ``hidden_fraction``
    (of each such layer's neurons, its first ones; absent: 1), ``hidden_beta`` (their beta
    as a multiple of the signed beta; absent: 1) and ``hidden_seed`` (of the random codes;
    absent: 0)."""

    nudging: str = "gradient"
    eps: float = 0.5
    steps: int = 8
    hidden_layers: tuple[int, ...] | None = None
    hidden_fraction: float | None = None
    hidden_beta: float | None = None
    hidden_seed: int | None = None

    def __post_init__(self) -> None:
        self.build()
        _steps("nudged", self.steps)
        self._check_hidden()

    def build(self) -> FixedSteps:
        """The fixed-step relaxer of the weakly-clamped phase."""
        _choice("nudged", "nudging", self.nudging, nudging.NUDGINGS)
        from eqprop.relaxation.fixed import FixedSteps

        return _with_section("nudged", lambda: FixedSteps(eps=self.eps, steps=self.steps))

    def _check_hidden(self) -> None:
        if self.hidden_layers is None:
            extra = [
                k
                for k in ("hidden_fraction", "hidden_beta", "hidden_seed")
                if getattr(self, k) is not None
            ]
            if extra:
                raise ConfigError(f"nudged.{extra[0]} applies only with nudged.hidden_layers")
            return
        layers = self.hidden_layers
        if not layers or len(set(layers)) != len(layers) or min(layers) < 1:
            raise ConfigError(
                f"nudged.hidden_layers must be distinct hidden layer numbers >= 1 (1: next to "
                f"the input), got {list(layers)}; leave it out to turn the hidden nudge off"
            )
        if self.hidden_fraction is not None and not 0 < self.hidden_fraction <= 1:
            raise ConfigError(
                f"nudged.hidden_fraction must be in (0, 1], got {self.hidden_fraction}"
            )
        if self.hidden_beta is not None and not self.hidden_beta > 0:
            raise ConfigError(f"nudged.hidden_beta must be > 0, got {self.hidden_beta}")
        _at_least("nudged", "hidden_seed", self.hidden_seed, 0, optional=True)

    def hidden_counts(self, sizes: tuple[int, ...]) -> dict[int, int]:
        """Hidden layer -> number of target-linked neurons, ``max(1, round(fraction * n_l))``
        (empty when off); a one-line error for a layer that is not hidden in ``sizes``."""
        if self.hidden_layers is None:
            return {}
        bad = [layer for layer in self.hidden_layers if layer > len(sizes) - 2]
        if bad:
            raise ConfigError(
                f"nudged.hidden_layers names layer {bad[0]}, but topology.sizes has hidden "
                f"layers 1 to {len(sizes) - 2}"
            )
        fraction = 1.0 if self.hidden_fraction is None else self.hidden_fraction
        return {layer: max(1, round(fraction * sizes[layer])) for layer in self.hidden_layers}

    def scheme(self, network: EnergyNetwork) -> nudging.Nudging:
        """The nudging of the weakly-clamped phase of ``network``
        (:class:`~eqprop.network.Network`): the named scheme, with target-linked hidden
        neurons when ``hidden_layers`` is set."""
        base = nudging.get(self.nudging)
        counts = self.hidden_counts(network.sizes)
        if not counts:
            return base
        codes = nudging.hidden_codes(
            network.layer_slices,
            counts,
            network.sizes[-1],
            self.hidden_seed or 0,
            dtype=network.dtype,
            device=network.device,
        )
        return nudging.TargetLinked(
            base, codes, 1.0 if self.hidden_beta is None else self.hidden_beta
        )


@dataclass(frozen=True)
class EstimatorSection:
    """``[estimator]``: ``kind`` (:data:`eqprop.estimators.ESTIMATORS`) and ``beta``."""

    kind: str = "random-sign"
    beta: float = 1.0

    def __post_init__(self) -> None:
        self.build()

    def build(self) -> estimators.Estimator:
        """The estimator this section describes."""
        _choice("estimator", "kind", self.kind, estimators.ESTIMATORS)
        return _with_section("estimator", lambda: estimators.get(self.kind, self.beta))


#: torch.optim classes that cannot serve as an update: the abstract base, and those whose
#: step needs a closure (LBFGS), sparse gradients (SparseAdam) or 2-D parameters only (Muon:
#: the biases are 1-D)
_UNUSABLE_OPTIMIZERS = ("Optimizer", "LBFGS", "SparseAdam", "Muon")


def usable_optimizers() -> dict[str, str]:
    """The ``torch.optim`` optimisers an update can use, by lower-case name (the names are
    case-insensitive in a config) -> the class's name."""
    import torch

    return {
        name.lower(): name
        for name, cls in vars(torch.optim).items()
        if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer)
        and name not in _UNUSABLE_OPTIMIZERS
    }


def _optimizer_kwargs(name: str, lr: float, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` as keyword arguments of ``torch.optim.<name>`` (TOML lists as tuples, e.g.
    ``betas``), checked by building the optimiser once on a stand-in parameter; a one-line
    ConfigError for an argument it does not take (naming those it takes) or a value it
    refuses."""
    import inspect

    import torch

    cls = getattr(torch.optim, name)
    valid = [k for k in inspect.signature(cls).parameters if k not in ("params", "lr")]
    for key in args:
        if key == "lr":
            raise ConfigError("update.optimizer_args sets lr; set it as update.lr instead")
        if key not in valid:
            raise ConfigError(
                f"update.optimizer_args has {key!r}, which torch.optim.{name} does not take; "
                f"it takes {', '.join(valid)}"
            )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    try:
        cls([torch.zeros(1, requires_grad=True)], lr=lr, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"update.optimizer_args = {args!r} is refused by torch.optim.{name}: {reason}"
        ) from None
    return kwargs


@dataclass(frozen=True)
class UpdateSection:
    """``[update]``: ``optimizer`` (``masked-sgd``, the built-in rule, or the name of a
    ``torch.optim`` class such as ``Adam``, in any case), ``optimizer_args`` (a table of the
    optimiser's other keyword arguments, e.g. ``{weight_decay = 1e-4, betas = [0.8, 0.99]}``;
    ``torch.optim`` optimisers only), ``lr`` (one rate or one per adjacent layer
    pair; a single rate for a ``torch.optim`` optimiser), ``lr_skip`` and ``bias_lr``
    (:class:`eqprop.updates.LearningRates`; absent: the defaults described there). Weights
    stored with ``bits`` bits (:mod:`eqprop.quantization`; absent: float, unquantised), with
    ``rounding`` (``nearest`` or ``stochastic``; absent: ``nearest``) and ``range_scale``
    (each edge kind's range as a multiple of its initial bound; absent:
    :data:`eqprop.quantization.DEFAULT_RANGE_SCALE`); masked SGD only."""

    optimizer: str = MASKED_SGD
    optimizer_args: dict[str, Any] | None = None
    lr: float | tuple[float, ...] = 0.02
    lr_skip: float | None = None
    bias_lr: float | None = None
    bits: int | None = None
    rounding: str | None = None
    range_scale: float | None = None

    def __post_init__(self) -> None:
        self.rates()
        self.quantization()
        if self.optimizer == MASKED_SGD and self.optimizer_args is not None:
            raise ConfigError(
                f"update.optimizer_args applies to a torch.optim optimiser, not to "
                f"update.optimizer = {MASKED_SGD!r}"
            )
        if self.optimizer != MASKED_SGD:
            if self.bits is not None:
                raise ConfigError(
                    f"update.bits applies to {MASKED_SGD!r}, not to update.optimizer = "
                    f"{self.optimizer!r}"
                )
            usable = usable_optimizers()
            name = usable.get(str(self.optimizer).lower())
            if name is None:
                raise ConfigError(
                    f"update.optimizer = {self.optimizer!r} is neither {MASKED_SGD!r} nor a "
                    f"torch.optim optimiser that steps without a closure on dense gradients; "
                    f"choose among: {', '.join(sorted(usable.values()))}"
                )
            object.__setattr__(self, "optimizer", name)  # the class's own spelling
            if isinstance(self.lr, tuple) or self.lr_skip is not None or self.bias_lr is not None:
                raise ConfigError(
                    f"update.optimizer = {self.optimizer!r} takes one rate (update.lr); "
                    f"per-pair, skip and bias rates belong to {MASKED_SGD!r}"
                )
            self.optimizer_kwargs()

    def optimizer_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the ``torch.optim`` optimiser besides its parameters:
        ``lr`` and ``optimizer_args`` (validated against the optimiser)."""
        args = _optimizer_kwargs(self.optimizer, self.lr, self.optimizer_args or {})
        return {"lr": self.lr, **args}

    def rates(self) -> LearningRates:
        """The rates of the built-in update."""
        return _with_section("update", lambda: LearningRates(self.lr, self.lr_skip, self.bias_lr))

    def quantization(self) -> Quantization | None:
        """How weights are stored: ``None`` for float (``bits`` absent)."""
        if self.bits is None:
            unused = [k for k in ("rounding", "range_scale") if getattr(self, k) is not None]
            if unused:
                raise ConfigError(f"update.{unused[0]} applies only with update.bits")
            return None
        rounding = "nearest" if self.rounding is None else self.rounding
        scale = DEFAULT_RANGE_SCALE if self.range_scale is None else self.range_scale
        return _with_section("update", lambda: Quantization(self.bits, rounding, scale))


@dataclass(frozen=True)
class TrainSection:
    """``[train]``: ``epochs``, ``batch_size``, ``batch_order`` (``reshuffle``, ``fixed``,
    ``shuffled-once``), ``persistent`` particles, ``test_persistent`` (particles for the
    evaluation examples too, as the paper authors' code kept), ``evaluate_test`` (also report
    the official test set of the ``icons`` split), ``seed``, ``checkpoint_every`` (batches; 0:
    only at epoch ends), ``device``, ``dtype``, ``layout`` (weight storage)."""

    epochs: int = 1
    batch_size: int = 20
    batch_order: str = "reshuffle"
    persistent: bool = True
    test_persistent: bool = False
    evaluate_test: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    device: str = "cpu"
    dtype: str = "float32"
    layout: str = "auto"

    def __post_init__(self) -> None:
        _at_least("train", "epochs", self.epochs, 1)
        _at_least("train", "batch_size", self.batch_size, 1)
        _seed("train", self.seed)
        _at_least("train", "checkpoint_every", self.checkpoint_every, 0)
        _choice("train", "batch_order", self.batch_order, BATCH_ORDERS)
        _choice("train", "dtype", self.dtype, ("float32", "float64"))
        _choice("train", "layout", self.layout, LAYOUTS)
        if self.device != "cpu" and not re.fullmatch(r"cuda(:[0-9]+)?", self.device):
            raise ConfigError(f"train.device must be 'cpu' or 'cuda[:N]', got {self.device!r}")


def _with_section(section: str, build):
    """Run ``build``; a ConfigError from the library object is prefixed with the section."""
    try:
        return build()
    except ConfigError as exc:
        raise ConfigError(f"[{section}] {exc}") from None


SECTIONS = {
    "data": DataSection,
    "topology": TopologySection,
    "network": NetworkSection,
    "free": FreeSection,
    "nudged": NudgedSection,
    "estimator": EstimatorSection,
    "update": UpdateSection,
    "train": TrainSection,
}
