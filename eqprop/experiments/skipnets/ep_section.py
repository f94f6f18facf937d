"""The EP section of the skipnets ``results.md`` (:func:`ep_section`): EP on the layered
against the layer-skipping network, with its protocol, the comparison and one line per run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from eqprop.config import RunConfig
from eqprop.experiments.skipnets.protocol import EP_PRESETS, EP_RULE, Protocol, ep_config
from eqprop.experiments.skipnets.rows import Row

#: how the EP rows are built, stated in every results.md that has them
EP_INTERPRETATIONS = (
    "- EP's architectures are not the paper's NN / DN: NN is the layered network (adjacent "
    "layers only, no intralayer edges), skip the journal's rewired layer-skipping network "
    "(every adjacent-layer edge independently, with probability p, replaced by a random edge "
    "between non-adjacent layers, so it has as many edges as NN; skip weights drawn from "
    "U[-a, a], a the mean Glorot bound of the adjacent pairs). Neither is densely connected.",
    "- EP's activation is the hard sigmoid clip of the state (docs/science.md section 1), "
    "its row label "
    "`hardsigmoid`; it has no ReLU counterpart, so EP appears once per depth.",
    "- EP's grid points are its epochs: the row is the epoch with the best validation "
    "accuracy (ties: the earlier), and its test accuracy is that of the network after the same "
    "epoch.",
)

#: what the nudging schemes and batch orders of the core do, for the protocol text
_NUDGING_TEXT = {
    "gradient": "one gradient step on E + beta C, the theory's",
    "icons": "the authors' step: the free update, then the outputs pulled 2 eps beta towards "
    "the target",
}
_ORDER_TEXT = {
    "reshuffle": "a new order of the training set every epoch",
    "fixed": "fixed batches visited in file order",
    "shuffled-once": "fixed batches visited in one order drawn once from the seed, the "
    "journal authors' code",
}


def _both(layered: Any, skip: Any, fmt: str = "{}") -> str:
    """One value when the two EP configurations agree, else both, labelled."""
    if layered == skip:
        return fmt.format(layered)
    return f"NN {fmt.format(layered)}, skip {fmt.format(skip)}"


def _ep_held_out(config: RunConfig) -> str:
    """How the held-out examples of ``config`` relax, for the protocol text."""
    zeros = f"relaxes from zeros for N_free = {config.free.steps} steps"
    if config.train.test_persistent:
        return (
            "the validation examples keep particles across evaluations (each epoch's "
            "evaluation starts from the previous one's free equilibria: "
            f"`train.test_persistent`, the paper authors' protocol); the official test set "
            f"{zeros}"
        )
    return f"every held-out example {zeros} (no test-time particles)"


def _ep_runs_table(records: Sequence[Mapping]) -> list[str]:
    """One line per EP run: per-epoch accuracies, selected epoch, time."""
    lines = [
        "| architecture | depth | valid acc per epoch (%) | test acc per epoch (%) "
        "| train error last epoch (%) | selected epoch | wall s | CPU s |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in sorted(records, key=lambda r: (r["depth"], r["architecture"])):
        grid = r["grid"]
        valid = ", ".join(f"{100 * g['valid_accuracy']:.2f}" for g in grid)
        test = ", ".join(f"{100 * g['test_accuracy']:.2f}" for g in grid)
        chosen = max(grid, key=lambda g: g["valid_accuracy"], default=None)
        epoch = chosen["hyperparameters"]["epoch"] if chosen else "-"
        history = r.get("history") or [{}]
        train_error = history[-1].get("train_stats", {}).get("train_error")
        train = "-" if train_error is None else f"{100 * train_error:.2f}"
        diverged = " (diverged)" if r.get("diverged") else ""
        lines.append(
            f"| {r['architecture']}{diverged} | {r['depth']} | {valid} | {test} | {train} "
            f"| {epoch} | {float(r.get('seconds', 0.0)):.0f} "
            f"| {float(r.get('cpu_seconds', 0.0)):.0f} |"
        )
    return lines


def ep_comparison(rows: Sequence[Row], n_test: int | None = None) -> list[str]:
    """EP on the layered (NN) against the layer-skipping (skip) network, from the measured
    rows, as Markdown bullets; empty when no depth has both. ``n_test``: test examples, for
    the binomial standard error of one accuracy."""
    ep = {(r.architecture, r.depth): r for r in rows if r.rule == EP_RULE}
    depths = sorted(d for (arch, d) in ep if arch == "NN" and ("skip", d) in ep)
    if not depths:
        return []
    lines = []
    diffs = {}
    for d in depths:
        nn, skip = ep[("NN", d)], ep[("skip", d)]
        diffs[d] = 100 * (skip.test_accuracy - nn.test_accuracy)
        lines.append(
            f"- Depth {d}: test accuracy layered (NN) {100 * nn.test_accuracy:.2f}%, "
            f"layer-skipping (skip) {100 * skip.test_accuracy:.2f}% (skip - NN = "
            f"{diffs[d]:+.2f} points); validation {100 * nn.valid_accuracy:.2f}% vs "
            f"{100 * skip.valid_accuracy:.2f}%."
        )
    if len(depths) > 1:
        low, high = depths[0], depths[-1]
        change = {
            arch: 100 * (ep[(arch, high)].test_accuracy - ep[(arch, low)].test_accuracy)
            for arch in ("NN", "skip")
        }
        lines.append(
            f"- Depth {low} -> {high}: NN {100 * ep[('NN', low)].test_accuracy:.2f} -> "
            f"{100 * ep[('NN', high)].test_accuracy:.2f}% ({change['NN']:+.2f} points), skip "
            f"{100 * ep[('skip', low)].test_accuracy:.2f} -> "
            f"{100 * ep[('skip', high)].test_accuracy:.2f}% ({change['skip']:+.2f} points)."
        )
    ahead = [d for d in depths if diffs[d] > 0]
    behind = [d for d in depths if diffs[d] < 0]
    if len(ahead) == len(depths):
        summary = "ahead of the layered one at every depth measured"
    elif len(behind) == len(depths):
        summary = "behind the layered one at every depth measured"
    else:
        summary = (
            f"ahead of the layered one at depth {', '.join(map(str, ahead)) or 'none'} and "
            f"behind at depth {', '.join(map(str, behind)) or 'none'}"
        )
    noise = ""
    if n_test:
        p = sum(r.test_accuracy for r in ep.values()) / len(ep)
        noise = (
            f"; the binomial standard error of one test accuracy near {100 * p:.1f}% on "
            f"{n_test:,} examples is about {100 * math.sqrt(p * (1 - p) / n_test):.2f} points"
        )
    lines.append(
        f"- In short: with EP the layer-skipping network is {summary} (differences "
        f"{', '.join(f'{diffs[d]:+.2f}' for d in depths)} points, one seed{noise})."
    )
    return lines


def ep_section(protocol: Protocol, records: Sequence[Mapping], rows: Sequence[Row]) -> list[str]:
    """The EP part of ``results.md`` (protocol, comparison, per-run table); empty when the
    scale has no EP rows."""
    ep = protocol.ep
    if ep is None:
        return []
    layered = ep_config(protocol, "NN", ep.depths[0])
    skip = ep_config(protocol, "skip", ep.depths[0])
    record = records[0] if records else {}
    n_train = record.get("examples_per_epoch")
    n_valid, n_test = record.get("valid_examples"), record.get("test_examples")
    per_epoch = f"{n_train:,} examples" if n_train else "the training split"
    total = f" ({layered.train.epochs * n_train:,} examples per run)" if n_train else ""
    valid = f"all {n_valid:,}" if n_valid else "all"
    baseline_valid = (
        "all" if protocol.valid_limit is None else f"the first {protocol.valid_limit:,}"
    )
    test = f" ({n_test:,} examples)" if n_test else ""
    limit = "all examples" if ep.limit is None else f"first {ep.limit:,} examples of each split"

    def both(get: Any, fmt: str = "{}") -> str:
        return _both(get(layered), get(skip), fmt)

    def explained(get: Any, texts: Mapping[str, str]) -> str:
        return "; ".join(texts[n] for n in dict.fromkeys((get(layered), get(skip))) if n in texts)

    def nudging(c: RunConfig) -> str:
        return c.nudged.nudging

    def order(c: RunConfig) -> str:
        return c.train.batch_order

    held_out = both(_ep_held_out)
    cpu = sum(float(r.get("cpu_seconds", 0.0)) for r in records)
    wall = sum(float(r.get("seconds", 0.0)) for r in records)
    return [
        "## EP: layered vs layer-skipping (equilibrium propagation from the core)",
        "",
        "Protocol:",
        "",
        f"- Networks: EP on `{ep.dataset}`, split `icons`, {limit}; sizes "
        f"[{layered.topology.sizes[0]}, {ep.hidden} x depth, {layered.topology.sizes[-1]}], "
        f"depths {', '.join(map(str, ep.depths))}. NN: preset `{EP_PRESETS['NN']}` (topology "
        f"`{layered.topology.family}`); skip: preset `{EP_PRESETS['skip']}` (topology "
        f"`{skip.topology.family}`, p = {skip.topology.p:g}).",
        f"- From the presets: lr {both(lambda c: c.update.lr)}, eps "
        f"{both(lambda c: c.free.eps, '{:g}')} (free) / {both(lambda c: c.nudged.eps, '{:g}')} "
        f"(nudged), estimator {both(lambda c: c.estimator.kind, '`{}`')}, beta "
        f"{both(lambda c: c.estimator.beta, '{:g}')}, N_clamped {both(lambda c: c.nudged.steps)}, "
        f"batch {both(lambda c: c.train.batch_size)}, persistent particles "
        f"{both(lambda c: 'on' if c.train.persistent else 'off')}; replaced for this scale: "
        + ", ".join(f"{k} {v}" for k, v in ep.overrides.items())
        + (" (none)" if not ep.overrides else "")
        + f". Budget: N_free {both(lambda c: c.free.steps)}, "
        f"{both(lambda c: c.train.epochs)} epoch(s) of {per_epoch}{total}.",
        f"- Nudging {both(nudging, '`{}`')} ({explained(nudging, _NUDGING_TEXT)}); batch order "
        f"{both(order, '`{}`')} ({explained(order, _ORDER_TEXT)}).",
        f"- Held-out evaluation: {held_out}.",
        f"- Validation accuracy: EP's held-out evaluation on {valid} validation examples (the "
        f"baselines use {baseline_valid}); test accuracy: the official test set"
        f"{test}, evaluated after every epoch. Model selection: the epoch with the best "
        "validation accuracy; its test accuracy is reported.",
        f"- Departures from the journal: {ep.note}",
        f"- {len(records)} EP runs; training time summed over runs {wall:.0f} s wall, "
        f"{cpu:.0f} s CPU (evaluations included).",
        *EP_INTERPRETATIONS,
        "",
        "Comparison (measured):",
        "",
        *(ep_comparison(rows, n_test) or ["- No depth has both EP rows yet."]),
        "",
        "Runs:",
        "",
        *_ep_runs_table(records),
        "",
    ]
