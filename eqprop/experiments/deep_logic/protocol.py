"""The protocol: the gates, the methods compared (:func:`methods`), the ablations of the authors'
notebook's protocol (:func:`ablations`) and the 100-seed XOR searches (:func:`searches`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from eqprop.directed import DirectedConfig
from eqprop.errors import ConfigError

SCALES = ("smoke", "full")


GATES = ("AND", "OR", "XOR")


#: sparsity of the networks in Figure 2 of Farinha et al.
PAPER_SPARSITY = {"AND": 0.9375, "OR": 0.9583, "XOR": 0.6250}


_DEEP = DirectedConfig(
    rule="deep",
    n_hidden=5,
    input_edges=True,
    eps=0.1,
    beta=2.0,
    free_steps=200,
    nudged_steps=20,
    lr=10.0,
    init_scale=0.5,
    epochs=4000,
)


#: L1 strengths of the two pruned variants: weak enough for XOR, strong enough for AND and OR
_L1 = (3e-6, 3e-5)


#: The protocol of the authors' notebook, ``logical_operations_DEEP.ipynb`` of
#: MatildeTristany/DEEP-model-ESANN-2020, with its L1 and pruning switched on (the committed
#: notebook has both flags off) at the values of its hyperparameter dictionary. The notebook
#: steps the weights by ``dt_W = 100`` times the path integral of eq. 2 averaged over
#: ``M_beta`` and the batch, not divided by ``beta``; eq. 2 here divides by ``beta``, so the
#: same step is ``lr = dt_W * beta``. Its L1 step ``reg_W sign(W)``, ``reg_W = 1.5e-4``, is not
#: scaled by ``dt_W``; here it is ``lr * l1``, so ``l1 = reg_W / lr``.
AUTHORS = DirectedConfig(
    rule="deep",
    n_hidden=5,
    input_edges=False,
    eps=0.05,
    beta=10.0,
    free_steps=1000,
    nudged_steps=1000,
    lr=100.0 * 10.0,
    l1=1.5e-4 / (100.0 * 10.0),
    prune_threshold=0.01,
    temperature=5.0,
    init_scale=0.05,
    epochs=200,
    batch_size=None,
    init_distribution="normal",
    state_init_scale=0.1,
    prune_normalisation="column",
    prune_permanent=False,
)


#: seeds of the XOR search at full scale
_SEARCH_SEEDS = tuple(range(100))


@dataclass(frozen=True)
class Method:
    """One trained variant: a file-safe name, a label for tables and plots, its config."""

    name: str
    label: str
    config: DirectedConfig


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r} for deep-logic; choose one of: smoke, full")


def _authors(scale: str) -> DirectedConfig:
    """:data:`AUTHORS`, shortened at smoke scale."""
    return (
        AUTHORS if scale == "full" else replace(AUTHORS, epochs=5, free_steps=100, nudged_steps=100)
    )


def methods(scale: str) -> tuple[tuple[Method, ...], tuple[int, ...]]:
    """The methods and seeds of a scale; ConfigError for an unknown scale."""
    _check_scale(scale)
    deep = _DEEP if scale == "full" else replace(_DEEP, epochs=40, free_steps=100)
    sparse = tuple(
        Method(
            f"deep-l1-{l1:g}",
            f"DEEP + L1 {l1:g} + pruning",
            replace(deep, l1=l1, prune_threshold=0.01, temperature=1.0),
        )
        for l1 in _L1
    )
    regrow = Method(
        f"deep-l1-{_L1[1]:g}-regrow",
        f"DEEP + L1 {_L1[1]:g} + pruning, regrowth",
        replace(sparse[1].config, prune_permanent=False),
    )
    asymmetric = replace(deep, rule="asymmetric")
    matched = replace(asymmetric, lr=deep.lr / deep.nudged_steps)
    seeds = tuple(range(10)) if scale == "full" else (0, 1, 2)
    return (
        Method("deep", "DEEP", deep),
        Method("asym", "asymmetric EP", asymmetric),
        Method("asym-lr", f"asymmetric EP, lr / {deep.nudged_steps}", matched),
        *sparse,
        regrow,
        Method("deep-authors", "DEEP, authors' protocol", _authors(scale)),
    ), seeds


def ablations(scale: str) -> tuple[Method, ...]:
    """The authors' protocol as the notebook is committed (no L1, no pruning), then with one
    point at a time set to the value of our deep-logic protocol; trained on every gate from
    the seeds of :func:`methods`."""
    _check_scale(scale)
    authors = _authors(scale)
    ours = _DEEP
    return (
        Method(
            "authors-committed",
            "as committed: no L1, no pruning",
            replace(authors, l1=0.0, prune_threshold=0.0),
        ),
        Method(
            "authors-permanent",
            "pruned connections removed for good",
            replace(authors, prune_permanent=True),
        ),
        Method(
            "authors-present",
            "eq. 3 normalised over present connections",
            replace(authors, prune_normalisation="present"),
        ),
        Method(
            "authors-input-edges",
            "with the edges into the inputs",
            replace(authors, input_edges=ours.input_edges),
        ),
        Method(
            "authors-zero-states",
            "first phase from zero states",
            replace(authors, state_init_scale=ours.state_init_scale),
        ),
        Method(
            "authors-uniform-init",
            f"initial weights U[-{ours.init_scale:g}, {ours.init_scale:g}]",
            replace(authors, init_distribution=ours.init_distribution, init_scale=ours.init_scale),
        ),
    )


def searches(scale: str) -> tuple[tuple[Method, ...], tuple[int, ...]]:
    """The pruned methods trained on XOR from many seeds (100 at full scale): how often a
    correct XOR network as sparse as the paper's comes out."""
    all_methods, _ = methods(scale)
    names = (f"deep-l1-{_L1[1]:g}", f"deep-l1-{_L1[1]:g}-regrow", "deep-authors")
    chosen = tuple(m for m in all_methods if m.name in names)
    return chosen, _SEARCH_SEEDS if scale == "full" else tuple(range(5))
