"""The protocol of the skipnets experiment (Im, Patil & Branson, "Are skip connections
necessary for biologically plausible learning rules?"): its scales (:data:`PROTOCOLS`), the
baseline rules and architectures, the EP rows (:class:`EPProtocol`, :func:`ep_config`), and
the runs each scale plans (:func:`planned_runs`, :func:`planned_ep_runs`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eqprop.config import RunConfig, from_dict, preset
from eqprop.errors import ConfigError

SCALES = ("smoke", "quick", "mlp-budget", "paper-mlp", "full")
RULE_NAMES = ("BP", "FA", "DTP")
#: plain architecture -> its densely connected counterpart
PAIRS = {"NN": "DN", "ConvNet": "DenseConvNet"}
#: (rule, architecture, activation, depth) of the reference run: a linear softmax readout of the
#: pixels (no hidden layer), the path every dense network has from its input to its output
LINEAR = ("BP", "linear", "none", 0)

#: EP's rule name, activation label, and architecture label -> the preset its config derives from
EP_RULE = "EP"
EP_ACTIVATION = "hardsigmoid"
EP_PRESETS = {"NN": "frontiers-layered-deep", "skip": "frontiers-skip-deep"}
#: input features per dataset (EP's configs are built before any data is loaded)
_N_INPUTS = {"digits": 64, "mnist": 784, "fashion-mnist": 784}
_N_CLASSES = 10


@dataclass(frozen=True)
class EPProtocol:
    """The EP rows of one scale.

    Attributes:
        depths: hidden layers of each EP network.
        dataset: dataset name, loaded with ``split="icons"``.
        limit: keep the first examples of *each* split (None: all), as ``data.limit``.
        hidden: units per hidden layer.
        overrides: further :class:`~eqprop.config.RunConfig` fields replaced over the preset,
            as ``section.key`` (the budget of the scale: ``free.steps``, ``train.epochs``, ...).
        note: how this scale departs from the journal's protocol, stated in ``results.md``.
    """

    depths: tuple[int, ...]
    dataset: str = "mnist"
    limit: int | None = None
    hidden: int = 128
    overrides: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Protocol:
    """Everything one scale of the experiment runs.

    Attributes:
        dataset: dataset name, loaded with ``split="icons"`` (train / valid / test).
        train_limit, valid_limit, test_limit: keep the first examples of each split (None: all).
        architectures: architectures to train.
        depths: activation -> depths.
        learning_rates: (rule, activation) -> Adam learning rates.
        early_stop_starts: "mlp" / "conv" -> early-stopping starting points (examples seen).
        max_examples: "mlp" / "conv" -> cap on examples seen per run.
        eval_every: examples between validation evaluations.
        patience: evaluations without validation improvement that stop a run.
        seeds: seeds of the baseline runs at the shallowest and deepest depth of each
            activation; the depths between run with the first seed only, as do the linear
            readout and the EP rows. A seed seeds initialisation, feedback matrices, DTP noise
            and batch order (EP: initialisation, particles and batch order). Run files of the
            first seed 0 keep the names without a seed (:func:`run_name`).
        channels_per_depth: a ConvNet's hidden layers have ``channels_per_depth * depth``
            channels (the paper's "channel size (depth x 16)").
        caveat: what this scale cannot show, stated in ``results.md``.
        ep: the EP rows of this scale (None: none).
        not_run: architecture family ("MLP", "Conv") -> why this scale does not run it; the
            figures draw its panels (the paper's panel b for "Conv") empty, saying so.
    """

    dataset: str
    train_limit: int | None
    valid_limit: int | None
    test_limit: int | None
    architectures: tuple[str, ...]
    depths: Mapping[str, tuple[int, ...]]
    learning_rates: Mapping[tuple[str, str], tuple[float, ...]]
    early_stop_starts: Mapping[str, tuple[int, ...]]
    max_examples: Mapping[str, int]
    eval_every: int
    patience: int
    seeds: tuple[int, ...] = (0,)
    channels_per_depth: int = 16
    caveat: str = ""
    ep: EPProtocol | None = None
    not_run: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"Protocol.seeds must be distinct seeds, got {self.seeds!r}")

    @property
    def seed(self) -> int:
        """The first seed: that of the middle depths, the linear readout and the EP rows."""
        return self.seeds[0]

    def seeds_at(self, activation: str, depth: int) -> tuple[int, ...]:
        """The seeds of the baseline runs at ``depth`` with ``activation``: all of
        :attr:`seeds` at the shallowest and deepest depth, the first elsewhere."""
        depths = self.depths[activation]
        return self.seeds if depth in (min(depths), max(depths)) else self.seeds[:1]


def same_rates(sigmoid: tuple[float, ...], relu: tuple[float, ...]) -> dict:
    """(rule, activation) -> learning rates: the same ``sigmoid`` rates for every rule's
    sigmoid networks and ``relu`` rates for its ReLU networks."""
    return {
        (rule, act): rates
        for rule in RULE_NAMES
        for act, rates in (("sigmoid", sigmoid), ("relu", relu))
    }


#: the paper's Table 1 learning rates
TABLE1_RATES = {
    ("BP", "sigmoid"): (1e-1, 1e-2, 1e-3),
    ("FA", "sigmoid"): (1e-2, 1e-3, 1e-4),
    ("DTP", "sigmoid"): (1e-2, 1e-3, 1e-4),
    **{(rule, "relu"): (1e-3, 1e-4, 1e-5) for rule in RULE_NAMES},
}
#: the EP rows of the quick and mlp-budget scales: the journal's settings but the free phase
#: by FISTA to the fixed point (`reproduce solvers` measures how it learns against the
#: fixed steps) instead of the journal's 1000 fixed steps, and 2 epochs of the 50k training
#: images (100k examples, against the quick baselines' 80k cap)
SHORT_EP = EPProtocol(
    depths=(3, 5),
    overrides={
        "free.solver": "fista",
        "free.tol": 1e-3,
        "free.steps": 1000,
        "train.epochs": 2,
    },
    note=(
        "the free phase run by FISTA to a fixed-point residual below 1e-3 (at most "
        "1,000 steps) instead of the journal's 1000 fixed steps, and 2 epochs instead "
        "of its 100 (budget comparable to the baselines' 80k-example cap); the "
        "journal's networks have 100 units per hidden layer and train on the standard "
        "60k split."
    ),
)

#: why the MLP-only scales leave the paper's ConvNet panels (its Figures 1b and 2b) empty
CONV_NOT_RUN = {"Conv": "the ConvNet grid costs about 4,100 CPU hours (docs/reproducing.md)"}
PROTOCOLS: dict[str, Protocol] = {
    # Seconds on sklearn's digits (1,150 / 287 / 360 examples, 8x8): plumbing only. All four
    # architectures; the ConvNets with 2 x depth channels and 1 epoch.
    "smoke": Protocol(
        dataset="digits",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN", "ConvNet", "DenseConvNet"),
        depths={"sigmoid": (3, 4), "relu": (5, 6)},
        learning_rates=same_rates((1e-2,), (1e-3,)),
        early_stop_starts={"mlp": (2_300, 4_600), "conv": (575, 1_150)},
        max_examples={"mlp": 5_750, "conv": 1_150},
        eval_every=1_150,
        patience=2,
        channels_per_depth=2,
        caveat=(
            "Plumbing check on a tiny dataset with a few epochs (ConvNets: 1 epoch, 2 x depth "
            "channels instead of the paper's 16 x depth); says nothing about the claims."
        ),
        ep=EPProtocol(
            depths=(3, 4),
            dataset="digits",
            overrides={"free.steps": 20, "train.epochs": 2},
            note="Plumbing check: digits, 20 free steps, 2 epochs.",
        ),
    ),
    # MNIST, all 50k training images but a short budget (80k examples, 1.6 epochs; the paper's
    # starting points are 200k-1000k), 3 of the paper's depths per activation, 2 learning rates
    # from inside its Table 1 ranges, MLPs only, validation on the first 5k of the 10k.
    "quick": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=5_000,
        test_limit=None,
        architectures=("NN", "DN"),
        depths={"sigmoid": (3, 5, 7), "relu": (5, 7, 10)},
        learning_rates=same_rates((1e-2, 1e-3), (1e-3, 1e-4)),
        early_stop_starts={"mlp": (40_000, 80_000)},
        max_examples={"mlp": 80_000},
        eval_every=20_000,
        patience=1,
        caveat=(
            "Short budget: at most 80k examples (1.6 epochs) per run against the paper's "
            "200k-1000k, so networks that learn slowly (deep plain ones especially) are "
            "penalised more than under the paper's protocol; 3 depths per activation, 2 "
            "learning rates, validation on 5k examples, one seed."
        ),
        ep=SHORT_EP,
    ),
    # The paper's budget (section 3, Table 1: early-stopping starting points 200k-1000k,
    # patience 3 evaluations of 50k examples, its learning rates) for the MLPs at the
    # shallowest and deepest of its depths per activation; the EP rows as in `quick`.
    "mlp-budget": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN"),
        depths={"sigmoid": (3, 7), "relu": (5, 10)},
        learning_rates=TABLE1_RATES,
        early_stop_starts={"mlp": (200_000, 400_000, 600_000, 800_000, 1_000_000)},
        max_examples={"mlp": 1_500_000},
        eval_every=50_000,
        patience=3,
        caveat=(
            "The paper's budget and learning rates, but MLPs only, at the shallowest and "
            "deepest of its depths per activation, one seed; EP rows at the quick scale's "
            "short budget."
        ),
        ep=SHORT_EP,
        not_run=CONV_NOT_RUN,
    ),
    # `mlp-budget` completed: every depth of the paper's MLP grid, seeds 0-2 at the shallowest
    # and deepest depth per activation. Its seed-0 runs are those of `mlp-budget` (the same
    # settings and file names), so an output directory holding them goes on from there.
    "paper-mlp": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN"),
        depths={"sigmoid": (3, 4, 5, 6, 7), "relu": (5, 6, 7, 8, 9, 10)},
        learning_rates=TABLE1_RATES,
        early_stop_starts={"mlp": (200_000, 400_000, 600_000, 800_000, 1_000_000)},
        max_examples={"mlp": 1_500_000},
        eval_every=50_000,
        patience=3,
        seeds=(0, 1, 2),
        caveat=(
            "The paper's budget, learning rates and MLP depths; seeds 0-2 at the shallowest and "
            "deepest depth per activation, seed 0 between; EP rows at the quick scale's short "
            "budget."
        ),
        ep=SHORT_EP,
        not_run=CONV_NOT_RUN,
    ),
    # The paper's protocol (section 3, Table 1): MNIST 50k / 10k / 10k, depths 3-7 (sigmoid)
    # and 5-10 (ReLU), three learning rates per rule and activation, early-stopping starting
    # points 200k-1000k for MLPs and 50k-150k for ConvNets.
    "full": Protocol(
        dataset="mnist",
        train_limit=None,
        valid_limit=None,
        test_limit=None,
        architectures=("NN", "DN", "ConvNet", "DenseConvNet"),
        depths={"sigmoid": (3, 4, 5, 6, 7), "relu": (5, 6, 7, 8, 9, 10)},
        learning_rates=TABLE1_RATES,
        early_stop_starts={
            "mlp": (200_000, 400_000, 600_000, 800_000, 1_000_000),
            "conv": (50_000, 100_000, 150_000),
        },
        max_examples={"mlp": 1_500_000, "conv": 300_000},
        eval_every=50_000,
        patience=3,
        seeds=(0, 1, 2),
        caveat=(
            "Seeds 0-2 at the shallowest and deepest depth per activation, seed 0 between; the "
            "ConvNet grid costs about 4,100 CPU hours (measured per configuration, "
            "docs/reproducing.md, 'Budget of the skipnets grid')."
        ),
        # EP: the journal's protocol (N_free 1000, N_clamped 12, lr .015, 100 epochs) on the
        # paper's sigmoid depths, 128 units per hidden layer.
        ep=EPProtocol(
            depths=(3, 4, 5, 6, 7),
            note=(
                "The journal's dynamics and budget (N_free 1000, 100 epochs) with 128 units per "
                "hidden layer (the journal's have 100) on the icons split (50k train, the 10k "
                "validation images for model selection) instead of the standard 60k split."
            ),
        ),
    ),
}


#: architecture family -> its plain architecture (:data:`PAIRS` gives the dense one)
FAMILIES = {"MLP": "NN", "Conv": "ConvNet"}


def planned_runs(protocol: Protocol) -> list[tuple[str, str, str, int, float, int]]:
    """Every baseline run of the protocol as ``(rule, architecture, activation, depth, lr,
    seed)``: the linear readout (BP's ReLU learning rates, first seed) first, then the first
    seed activation by activation (so that a budget cut short leaves whole activations), then
    each further seed at the shallowest and deepest depths."""
    linear = [(*LINEAR, lr, protocol.seed) for lr in protocol.learning_rates[("BP", "relu")]]
    return linear + [
        (rule, arch, act, depth, lr, seed)
        for seed in protocol.seeds
        for act, depths in protocol.depths.items()
        for depth in depths
        if seed in protocol.seeds_at(act, depth)
        for arch in protocol.architectures
        for rule in RULE_NAMES
        for lr in protocol.learning_rates[(rule, act)]
    ]


def ep_config(protocol: Protocol, architecture: str, depth: int) -> RunConfig:
    """The EP run configuration of ``architecture`` ("NN" or "skip") at ``depth``: its preset
    with the data, sizes, evaluation and budget of ``protocol`` replaced."""
    ep = protocol.ep
    if ep is None:
        raise ConfigError("this skipnets scale has no EP rows")
    if architecture not in EP_PRESETS:
        raise ConfigError(
            f"EP architecture must be one of {', '.join(EP_PRESETS)}; got {architecture!r}"
        )
    base = from_dict(preset(EP_PRESETS[architecture]))
    sizes = [_N_INPUTS[ep.dataset], *[ep.hidden] * depth, _N_CLASSES]
    return base.override(
        {
            "description": (
                f"skipnets EP row: {architecture} ({base.topology.family}) "
                f"{sizes[0]}-{ep.hidden}x{depth}-{sizes[-1]}, "
                f"from preset {EP_PRESETS[architecture]}"
            ),
            "data.dataset": ep.dataset,
            "data.split": "icons",
            "data.limit": ep.limit,
            "topology.sizes": sizes,
            "train.evaluate_test": True,
            "train.seed": protocol.seed,
            **ep.overrides,
        }
    )


def planned_ep_runs(protocol: Protocol) -> list[tuple[str, int]]:
    """(architecture, depth) of every EP run of the protocol."""
    if protocol.ep is None:
        return []
    return [(arch, depth) for depth in protocol.ep.depths for arch in EP_PRESETS]
