"""The text of the skipnets ``results.md`` (:func:`render_results`): the protocol, the
paper's claims judged, BP's context, the EP section, the tables, and the interpretations of
what the paper leaves open."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from eqprop.experiments.claims import claims_section
from eqprop.experiments.skipnets.claims import CLAIMS, CLAIMS_NOTE
from eqprop.experiments.skipnets.ep_section import ep_section
from eqprop.experiments.skipnets.protocol import (
    EP_RULE,
    FAMILIES,
    LINEAR,
    PAIRS,
    PROTOCOLS,
    RULE_NAMES,
    Protocol,
    planned_runs,
)
from eqprop.experiments.skipnets.rows import Row, format_seed_table, format_table, mean_accuracies
from eqprop.experiments.skipnets.runfiles import record_key, record_seed, run_name


def context_lines(rows: Sequence[Row], protocol: Protocol) -> list[str]:
    """BP's own depth trend per plain/dense pair and the linear readout, as Markdown bullets:
    what the FA and DTP numbers should be read against."""
    acc = mean_accuracies(rows)
    lines = []
    for plain, dense in PAIRS.items():
        for act, depths in protocol.depths.items():
            low, high = min(depths), max(depths)
            keys = [("BP", arch, act, d) for arch in (plain, dense) for d in (low, high)]
            if all(k in acc for k in keys):
                p_low, p_high, d_low, d_high = (100 * acc[k] for k in keys)
                lines.append(
                    f"- BP, {act}, depth {low} -> {high}: {plain} {p_low:.2f} -> {p_high:.2f}%, "
                    f"{dense} {d_low:.2f} -> {d_high:.2f}%."
                )
    if LINEAR in acc:
        lines.append(
            f"- Linear softmax readout of the pixels (no hidden layer, BP): "
            f"{100 * acc[LINEAR]:.2f}%. Every dense network contains this input-to-output "
            "matrix, trained with its true gradient by all three rules, so dense accuracies "
            "near this level say little about how well a rule trains the hidden layers."
        )
    return lines


#: implementation choices where the paper is silent or ambiguous, stated in every results.md
INTERPRETATIONS = (
    "- Depth counts hidden layers (the output layer is extra).",
    "- Dense layers receive every earlier layer *including the input*, as docs/science.md "
    "section 5 "
    "says; the paper's formula sums from h_1 while defining h_0 = x, which leaves it open. "
    "The output layer is a layer like the others, so it also reads every hidden layer and the "
    "pixels.",
    "- The paper names no optimiser; we use Adam for every rule. Its learning-rate ranges "
    "(Table 1) are used as given; they look tuned for plain SGD with sigmoid and for an "
    "adaptive method with ReLU.",
    "- The paper's 'early stop starting point' is read as examples seen before patience-based "
    "early stopping may stop a run; the reported checkpoint is the best-validation one. Table "
    "1 and its footnote disagree on the DTP/ReLU range; we use the text's ranges per "
    "architecture family (200k-1000k for MLPs, 50k-150k for ConvNets).",
    "- FA: every forward matrix, skip ones included, has its own fixed random feedback matrix "
    "drawn like the forward weight's initialisation; output-layer weights get their true "
    "gradient.",
    "- DTP (Lee et al. 2015, Algorithm 1): one learned inverse per hidden-to-hidden edge; the "
    "target of layer l sums the difference corrections of every later hidden layer it feeds "
    "(the paper's formula) plus a gradient step through the output layer's own weight from l "
    "(in a plain network only the last hidden layer has one, as in Lee et al.).",
    "- DTP's target step (eta = 0.5 times the per-example gradient of the cross-entropy) and "
    "the standard deviation of the Gaussian corruption in the inverses' reconstruction loss "
    "(0.1) are not given by the paper; we chose them and did not tune them. On ConvNets the "
    "inverse of a 3x3 convolution is a 3x3 convolution back onto the source's channels, "
    "followed by the activation.",
    "- 'Channel size (depth x 16)' is read as 16 x depth channels in every hidden layer of a "
    "network of that depth (48 at depth 3, 160 at depth 10): the paper gives one number per "
    "network, and a channel count growing with the layer index would make the dense and "
    "plain networks' widths differ by layer. Smaller scales may use another multiple; the "
    "protocol above states it.",
    "- The paper names no pooling or stride: every convolution is 3x3 with stride 1 and zero "
    "padding 1, so every hidden layer keeps the image size (28x28 on MNIST); the output layer "
    "is a linear map of the flattened feature maps (of every earlier layer, in a dense "
    "network).",
    "- FA on ConvNets: every convolution kernel has its own fixed random feedback kernel of "
    "the same shape, used in place of the forward kernel in the transposed convolution that "
    "carries the error down.",
)


def _threads(records: Sequence[Mapping]) -> str:
    """The torch thread counts the runs recorded ("not recorded" for older run files)."""
    counts = sorted({r["threads"] for r in records if "threads" in r})
    return ", ".join(map(str, counts)) if counts else "not recorded"


def coverage_lines(protocol: Protocol, records: Sequence[Mapping]) -> list[str]:
    """A bullet naming the planned baseline runs without a run file (a budget cut short), and
    the configurations whose learning-rate grid is therefore incomplete."""
    done = {
        run_name(
            r["rule"],
            r["architecture"],
            r["activation"],
            r["depth"],
            r["grid"][0]["hyperparameters"]["learning_rate"],
            record_seed(r),
        )
        for r in records
        if r["grid"]
    }
    missing = [run for run in planned_runs(protocol) if run_name(*run) not in done]
    if not missing:
        return []
    partial = sorted(
        {
            f"{rule} {arch} {act} depth {depth}" + (f" seed {seed}" if seed else "")
            for rule, arch, act, depth, _, seed in missing
            if any(
                record_key(r) == (rule, arch, act, depth) and record_seed(r) == seed
                for r in records
            )
        }
    )
    text = (
        f"- Without a result (not run, interrupted or failed): {len(missing)} of "
        f"{len(planned_runs(protocol))} planned baseline runs "
        f"({', '.join(Path(run_name(*run)).stem for run in missing)})."
    )
    if partial:
        text += (
            " Configurations selected over an incomplete learning-rate grid: "
            + "; ".join(partial)
            + "."
        )
    return [text]


def not_run_lines(protocol: Protocol) -> list[str]:
    """A bullet per architecture family this scale leaves out (:attr:`Protocol.not_run`): the
    runs of the paper's grid (the ``full`` scale) it would take, and why they were not run."""
    full = PROTOCOLS["full"]
    planned = planned_runs(full)
    depths = "; ".join(f"{act} depths {min(d)}-{max(d)}" for act, d in full.depths.items())
    rates = sorted({len(r) for r in full.learning_rates.values()})
    seeds = ", ".join(map(str, full.seeds))
    lines = []
    for family, why in protocol.not_run.items():
        plain = FAMILIES[family]
        architectures = (plain, PAIRS[plain])
        runs = [run for run in planned if run[1] in architectures]
        lines.append(
            f"- Not run at this scale: the paper's {family} grid ({' vs '.join(architectures)}), "
            f"the {len(runs)} runs of the `full` scale ({', '.join(RULE_NAMES)}; "
            f"{depths}; {'/'.join(map(str, rates))} learning rates each; seeds {seeds} at the "
            f"shallowest and deepest depth, seed {full.seed} between). Why: {why}."
        )
    return lines


def _seeds_text(protocol: Protocol) -> str:
    """How the protocol's seeds are spread over its depths, for the protocol text."""
    if len(protocol.seeds) == 1:
        return f"Seed {protocol.seed}, one run per grid point"
    ends = "; ".join(
        f"{act} {min(depths)} and {max(depths)}" for act, depths in protocol.depths.items()
    )
    return (
        f"Seeds {', '.join(map(str, protocol.seeds))} at the shallowest and deepest depths "
        f"({ends}), seed {protocol.seed} at the depths between, for the linear readout and "
        "for the EP rows; one run per grid point and seed, and each seed selects its own grid "
        "point"
    )


def _seed_section(rows: Sequence[Row]) -> list[str]:
    """The spread over seeds, where some configuration has several."""
    table = format_seed_table(rows)
    if not table:
        return []
    return [
        "Spread over seeds (per seed: the test accuracy at that seed's validation-selected "
        "grid point; Figure 1 plots the mean with min-max bars):",
        "",
        *table,
        "",
    ]


def render_results(
    scale: str,
    protocol: Protocol,
    records: Sequence[Mapping],
    rows: Sequence[Row],
) -> str:
    """The text of ``results.md``."""
    ep_records = [r for r in records if r["rule"] == EP_RULE]
    records = [r for r in records if r["rule"] != EP_RULE]
    train_seconds = sum(float(r.get("seconds", 0.0)) for r in records)
    cpu_seconds = sum(float(r.get("cpu_seconds", 0.0)) for r in records)
    diverged = sum(bool(r.get("diverged")) for r in records)
    grid_points = sum(len(r["grid"]) for r in records)
    limits = ", ".join(
        f"{name} {'all' if limit is None else f'first {limit:,}'}"
        for name, limit in (
            ("train", protocol.train_limit),
            ("valid", protocol.valid_limit),
            ("test", protocol.test_limit),
        )
    )
    rates = "; ".join(
        f"{rule} {act}: {', '.join(f'{lr:g}' for lr in lrs)}"
        for (rule, act), lrs in protocol.learning_rates.items()
    )
    parts = [
        "# Skip connections and biologically plausible rules (Im, Patil & Branson), scale "
        f"`{scale}`",
        "",
        "## Protocol",
        "",
        f"- Data: `{protocol.dataset}`, split `icons` (train / valid / test), {limits}.",
        f"- Architectures: {', '.join(protocol.architectures)}; 128 units per MLP hidden layer, "
        f"{protocol.channels_per_depth} x depth channels in every ConvNet hidden layer "
        "(3x3 kernels, stride 1, zero padding 1, no pooling); dense layers receive every "
        "earlier layer, the input included.",
        "- Depths (hidden layers): "
        + "; ".join(f"{act} {', '.join(map(str, d))}" for act, d in protocol.depths.items())
        + ".",
        f"- Adam, batch 128, L2 1e-5 on all parameters; learning rates: {rates}.",
        "- Early stopping: evaluation every "
        f"{protocol.eval_every:,} examples, patience {protocol.patience}, starting points "
        + "; ".join(
            f"{family} {', '.join(f'{s:,}' for s in starts)}"
            for family, starts in protocol.early_stop_starts.items()
        )
        + " examples, cap "
        + "; ".join(f"{family} {cap:,}" for family, cap in protocol.max_examples.items())
        + " examples.",
        "- Model selection: per (rule, architecture, activation, depth) the grid point "
        "(learning rate x starting point) with the best validation accuracy; its checkpoint is "
        "the best-validation one up to the stop. Test accuracy is only reported.",
        "- DTP: target step 0.5, reconstruction noise 0.1 (not tuned; the paper gives none).",
        f"- {_seeds_text(protocol)}.",
        f"- {len(records)} baseline runs ({grid_points} grid points, {diverged} diverged); "
        f"training time summed over runs {train_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU "
        f"(torch threads per run: {_threads(records)}).",
        *coverage_lines(protocol, records),
        *not_run_lines(protocol),
        f"- Caveat: {protocol.caveat}",
        "",
        *claims_section(CLAIMS, records, scale, CLAIMS_NOTE),
        "Context:",
        "",
        *context_lines(rows, protocol),
        "",
        *ep_section(protocol, ep_records, rows),
        "## Results (test accuracy at the validation-selected grid point)",
        "",
        format_table(rows),
        "",
        *_seed_section(rows),
        "![accuracy against depth](accuracy_vs_depth.png)",
        "",
        "![hyperparameter sensitivity](sensitivity.png)",
        "",
        "The sensitivity figure shows the baselines only: EP's grid points are the epochs of "
        "one run, not hyperparameters.",
        "",
        "## Interpretations of the paper",
        "",
        *INTERPRETATIONS,
        "",
    ]
    return "\n".join(parts)
