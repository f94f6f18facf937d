"""The claims of Im, Patil & Branson's Figures 1 and 2 (:data:`CLAIMS`), judged on the run
files: dense networks keep up with BP as depth grows (:class:`DenseKeepsUp`) and are less
sensitive to their hyperparameters (:class:`DenseLessSensitive`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eqprop.baselines.architectures import ACTIVATIONS
from eqprop.experiments.claims import FAILS, HOLDS, NOT_YET, PARTLY, Claim, Verdict
from eqprop.experiments.skipnets.protocol import FAMILIES, PAIRS, RULE_NAMES
from eqprop.experiments.skipnets.rows import (
    collect_rows,
    depth_range,
    percent_spread,
    seed_accuracies,
)
from eqprop.experiments.skipnets.runfiles import record_seed

#: the criteria of the Figure 1 claims (:class:`DenseKeepsUp`), in accuracy fractions
NEAR_BP = 0.02
DEGRADE_MARGIN = 0.01


def _in_scope(value: str, wanted: str | None) -> bool:
    return wanted is None or value == wanted


@dataclass(frozen=True)
class DenseKeepsUp:
    """Figure 1 for one ``rule``, on the run files: per plain/dense pair (of ``family``,
    "MLP" or "Conv"; None: both) and activation (``activation``; None: every one) measured at
    two depths or more (a *case*), the dense network trained by ``rule`` is within
    :data:`NEAR_BP` of the dense network trained by BP at the deepest depth (*near*), and from
    the shallowest to the deepest depth the plain network loses at least
    :data:`DEGRADE_MARGIN` more test accuracy than the dense one (*degrades*). Each accuracy
    is the mean over the seeds measured of the per-seed best test accuracy; the measured
    text gives ``[min-max]`` over seeds where there are several. ``holds``: every case is
    near and degrades; ``does not hold``: none is both; ``partly`` otherwise."""

    rule: str
    family: str | None = None
    activation: str | None = None

    def __call__(self, records: Sequence[Mapping]) -> Verdict:
        rows = collect_rows(records)
        seeds = seed_accuracies(rows)
        cases, passed, several = [], 0, False
        for family, plain in FAMILIES.items():
            dense = PAIRS[plain]
            if not _in_scope(family, self.family):
                continue
            for act in sorted({r.activation for r in rows if r.architecture == dense}):
                depths = depth_range(rows, act, (plain, dense))
                if not _in_scope(act, self.activation) or depths is None:
                    continue
                low, high = depths
                keys = [(self.rule, arch, act, d) for arch in (plain, dense) for d in depths]
                keys.append(("BP", dense, act, high))
                if not all(k in seeds for k in keys):
                    continue
                several = several or any(len(seeds[k]) > 1 for k in keys)
                plain_low, plain_high, dense_low, dense_high, bp = (
                    100 * float(np.mean(seeds[k])) for k in keys
                )
                text = [percent_spread(seeds[k]) for k in keys]
                near = bp - dense_high <= 100 * NEAR_BP
                degrades = plain_low - plain_high >= dense_low - dense_high + 100 * DEGRADE_MARGIN
                passed += near and degrades
                cases.append(
                    f"{act}, depth {low} -> {high}: {dense} {text[2]} -> {text[3]}% "
                    f"(BP {text[4]}%: {'near' if near else 'not near'}), {plain} "
                    f"{text[0]} -> {text[1]}% "
                    f"({'degrades more' if degrades else 'does not degrade more'})"
                )
        scope = " ".join(x for x in (self.family, self.activation) if x)
        if not cases:
            return Verdict(
                NOT_YET,
                f"{self.rule}: no {scope + ' ' if scope else ''}plain/dense pair measured at "
                "two depths",
            )
        verdict = HOLDS if passed == len(cases) else FAILS if passed == 0 else PARTLY
        spread = (
            " (means over seeds of the per-seed best test accuracy, [min-max] over seeds)"
            if several
            else ""
        )
        return Verdict(verdict, f"{self.rule}: " + "; ".join(cases) + spread)


def _quartile_range(values: Sequence[float]) -> float:
    """The interquartile range of ``values`` (linear interpolation)."""
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


@dataclass(frozen=True)
class DenseLessSensitive:
    """Figure 2, on the run files: per baseline rule (``rule``; None: every one), activation
    (``activation``; None: every one) and plain/dense pair (of ``family``; None: both) with
    grid points of both (a *case*), the interquartile range of the test accuracies over all
    grid points (learning rate x early-stopping start x depth, every seed pooled) is smaller
    for the dense network than for the plain one. Where there are several seeds, the measured
    text adds each seed's own interquartile ranges at the depths every seed has (both
    networks), their range over seeds and for how many seeds the dense one is smaller there.
    ``holds``: in every case; ``does not hold``: in none; ``partly`` otherwise."""

    rule: str | None = None
    family: str | None = None
    activation: str | None = None

    def __call__(self, records: Sequence[Mapping]) -> Verdict:
        points: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        #: (rule, activation, architecture) -> seed -> depth -> test accuracies
        by_seed: dict[tuple[str, str, str], dict[int, dict[int, list[float]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        for record in records:
            key = (record["rule"], record["activation"], record["architecture"])
            accuracies = [100 * float(p["test_accuracy"]) for p in record["grid"]]
            points[key] += accuracies
            by_seed[key][record_seed(record)][record["depth"]] += accuracies
        cases, passed = [], 0
        for rule in RULE_NAMES:
            if not _in_scope(rule, self.rule):
                continue
            for act in sorted({act for r, act, _ in points if r == rule}):
                if not _in_scope(act, self.activation):
                    continue
                for family, plain in FAMILIES.items():
                    dense = PAIRS[plain]
                    if not _in_scope(family, self.family):
                        continue
                    if not (points[(rule, act, plain)] and points[(rule, act, dense)]):
                        continue
                    spread = {a: _quartile_range(points[(rule, act, a)]) for a in (plain, dense)}
                    passed += spread[dense] < spread[plain]
                    cases.append(
                        f"{rule} {act}: {dense} {spread[dense]:.2f}, {plain} {spread[plain]:.2f}"
                        + _over_seeds(
                            by_seed[(rule, act, dense)], by_seed[(rule, act, plain)], dense, plain
                        )
                    )
        if not cases:
            return Verdict(NOT_YET, "no plain/dense pair with grid points of both")
        verdict = HOLDS if passed == len(cases) else FAILS if passed == 0 else PARTLY
        return Verdict(
            verdict,
            "interquartile range of the test accuracy over the grid, in points: "
            + "; ".join(cases)
            + f" (dense smaller in {passed} of {len(cases)} cases)",
        )


def _over_seeds(
    dense: Mapping[int, Mapping[int, list[float]]],
    plain: Mapping[int, Mapping[int, list[float]]],
    dense_name: str,
    plain_name: str,
) -> str:
    """The per-seed part of a Figure 2 case (``dense``, ``plain``: seed -> depth -> test
    accuracies): each seed's interquartile range at the depths every seed of both networks
    has, as ranges over seeds, and for how many seeds the dense one is the smaller; empty
    where fewer than two seeds have both networks."""
    seeds = sorted(set(dense) & set(plain))
    if len(seeds) < 2:
        return ""
    depths = sorted(set.intersection(*(set(n[s]) for n in (dense, plain) for s in seeds)))
    if not depths:
        return ""
    ranges = {
        name: [_quartile_range([a for d in depths for a in net[s][d]]) for s in seeds]
        for name, net in ((dense_name, dense), (plain_name, plain))
    }
    smaller = sum(d < p for d, p in zip(ranges[dense_name], ranges[plain_name], strict=True))
    return (
        f" (per seed at depth {', '.join(map(str, depths))}: "
        + ", ".join(f"{n} {min(r):.2f}-{max(r):.2f}" for n, r in ranges.items())
        + f"; {dense_name} smaller for {smaller} of {len(seeds)} seeds)"
    )


_SOURCE = (
    'Im, Patil & Branson, "Are skip connections necessary for biologically plausible '
    'learning rules?", section 3'
)
#: family -> the scales with the paper's budget and learning-rate grid (Table 1) for it
_BUDGET = {"MLP": ("mlp-budget", "paper-mlp", "full"), "Conv": ("full",)}
_MEANINGFUL = {
    "MLP": "mlp-budget, paper-mlp or full: the paper's budget and learning rates (Table 1), "
    "MNIST 50k / 10k / 10k; paper-mlp and full with seeds 0-2 at the shallowest and deepest "
    "depth",
    "Conv": "full: the paper's budget and learning rates (Table 1), MNIST 50k / 10k / 10k, "
    "16 x depth channels, seeds 0-2 at the shallowest and deepest depth",
}


def _family_claims(family: str) -> list[Claim]:
    """The claims of Figures 1 and 2 for one architecture family, per activation and rule."""
    plain = FAMILIES[family]
    dense = PAIRS[plain]
    claims = []
    for act in ACTIVATIONS:
        claims += [
            Claim(
                f"{family} ({plain} vs {dense}), {act}: with dense connections {rule} keeps "
                "up with BP as depth grows, while the test accuracy of plain networks drops "
                f"with depth (here: {dense} at the deepest depth within "
                f"{100 * NEAR_BP:.0f} points of BP, and from the shallowest to the deepest "
                f"depth {plain} loses at least {100 * DEGRADE_MARGIN:.0f} point more than "
                f"{dense})",
                f"{_SOURCE}, Figure 1{'a' if family == 'MLP' else 'b'}",
                _MEANINGFUL[family],
                DenseKeepsUp(rule, family, act),
                at_scale=_BUDGET[family],
            )
            for rule in ("FA", "DTP")
        ]
    for act in ACTIVATIONS:
        claims += [
            Claim(
                f"{family} ({plain} vs {dense}), {act}, {rule}: having dense connections makes "
                "the model more robust to different hyper-parameters (here: the interquartile "
                f"range of the test accuracies over all grid points smaller for {dense} than "
                f"for {plain})",
                f"{_SOURCE}, Figure 2{'a' if family == 'MLP' else 'b'}",
                _MEANINGFUL[family],
                DenseLessSensitive(rule, family, act),
                at_scale=_BUDGET[family],
            )
            for rule in RULE_NAMES
        ]
    return claims


CLAIMS = tuple(claim for family in FAMILIES for claim in _family_claims(family))
#: what moves the verdicts: one training run per grid point and seed
CLAIMS_NOTE = (
    "Each accuracy is the best grid point of one seed's runs; where a scale has several seeds "
    "(the shallowest and deepest depths of paper-mlp and full) the Figure 1 verdicts use the "
    "mean over seeds and give [min-max] over seeds, elsewhere one seed. The Figure 2 verdicts "
    "pool every grid point of every depth and seed, as the paper's figure pools its grid; "
    "their per-seed part covers only the depths every seed has, and says for how many seeds "
    "the dense network's spread is the smaller there. The binomial standard error of one test "
    "accuracy near 97% on 10,000 examples is about 0.17 points, so a case near a criterion's "
    "threshold can change from seed to seed."
)
