"""How often the solvers experiment's "within noise" criterion passes for a protocol that
learns exactly as the paper protocol does.

A one-off calculation behind a claim in ``docs/performance.md``. The criterion compares, at
one epoch, the compared run of each seed with the paper run of the same seed: the difference
must be at most the allowance, ``max(largest - smallest of the paper seeds, floor)``. Here
both protocols' errors at that epoch are independent draws of one normal distribution of
standard deviation ``sigma`` (in points): the compared protocol is, in distribution, the paper
protocol itself, and runs of one seed share nothing. Under that model the probability of
passing depends only on ``sigma / floor``; without a floor, and with two paper seeds, one
comparison passes with probability exactly 1/2 (the compared run and the second paper run are
exchangeable). Prints, per ``sigma``, the probability that one comparison passes, that all
comparisons of one epoch pass, that those of ``--epochs`` independent epochs all pass, and
that at most ``--observed`` of those ``seeds x epochs`` comparisons pass; Monte Carlo with a
fixed seed.

    python criterion_pass_rate.py --seeds 3 --sigma 0.5 1 2 4 --observed 2
"""

from __future__ import annotations

import argparse

import numpy as np


def within(
    seeds: int, epochs: int, sigma: float, floor: float, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Which comparisons pass in ``draws`` simulated experiments: booleans of shape
    ``(draws, epochs, seeds)``, the epochs independent."""
    paper = rng.normal(0.0, sigma, (draws, epochs, seeds))
    compared = rng.normal(0.0, sigma, (draws, epochs, seeds))
    allowance = np.maximum(paper.max(2) - paper.min(2), floor)[..., None]
    return np.abs(compared - paper) <= allowance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="paper seeds (and compared runs)")
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--floor", type=float, default=0.5, help="the allowance's floor, points")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--observed", type=int, default=0, help="comparisons seen within")
    parser.add_argument("--draws", type=int, default=300_000)
    args = parser.parse_args()
    if args.seeds < 2:
        raise SystemExit("criterion_pass_rate: --seeds must be at least 2 (one pair of paper runs)")
    rng = np.random.default_rng(0)
    total = args.seeds * args.epochs
    print(
        f"{args.seeds} seeds, {args.epochs} epochs, floor {args.floor} points, {args.draws:,} draws"
    )
    print(
        "sigma (points) | one comparison | one epoch | all epochs | "
        f"at most {args.observed} of {total}"
    )
    for sigma in args.sigma:
        passed = within(args.seeds, args.epochs, sigma, args.floor, args.draws, rng)
        count = passed.sum((1, 2))
        print(
            f"{sigma:g} | {passed.mean():.3f} | {passed.all(2).mean():.3f} | "
            f"{(count == total).mean():.3f} | {(count <= args.observed).mean():.4f}"
        )


if __name__ == "__main__":
    main()
