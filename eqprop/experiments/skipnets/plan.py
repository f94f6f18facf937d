"""What running a skipnets scale into an output directory would do (``eqprop reproduce
skipnets --status``): the planned, finished and remaining runs, and the CPU time of the
remaining ones estimated from the finished runs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from eqprop.errors import ConfigError
from eqprop.experiments.skipnets.protocol import (
    EP_RULE,
    PROTOCOLS,
    SCALES,
    ep_config,
    planned_ep_runs,
    planned_runs,
)
from eqprop.experiments.skipnets.runfiles import (
    check_run_files,
    ep_name,
    load_records,
    record_key,
    run_name,
)


def estimate_cpu(
    run: tuple[str, str, str, int, float, int], done: Mapping[tuple[str, str, str, int], list]
) -> float | None:
    """Estimated CPU seconds of ``run`` from the finished runs ``done`` (CPU seconds by
    rule, architecture, activation and depth): their mean at its depth, else linear in depth
    between the nearest depths measured below and above, else that of the nearest depth;
    None when no run of its rule, architecture and activation has finished."""
    rule, arch, act, depth = run[:4]
    measured = {
        d: float(np.mean(v)) for (r, a, c, d), v in done.items() if (r, a, c) == (rule, arch, act)
    }
    if not measured:
        return None
    if depth in measured:
        return measured[depth]
    below = [d for d in measured if d < depth]
    above = [d for d in measured if d > depth]
    if below and above:
        lo, hi = max(below), min(above)
        return measured[lo] + (measured[hi] - measured[lo]) * (depth - lo) / (hi - lo)
    return measured[max(below) if below else min(above)]


def plan_lines(scale: str, out: Path) -> list[str]:
    """What running ``scale`` into ``out`` would do: planned, finished and remaining
    baseline and EP runs, and the CPU time of the remaining baseline runs estimated from the
    finished ones (:func:`estimate_cpu`; one torch thread per run)."""
    if scale not in PROTOCOLS:
        raise ConfigError(f"skipnets scale must be one of {', '.join(SCALES)}; got {scale!r}")
    protocol = PROTOCOLS[scale]
    runs_dir = Path(out) / "runs"
    records = load_records(runs_dir) if runs_dir.is_dir() else []
    done: dict[tuple[str, str, str, int], list] = defaultdict(list)
    for record in records:
        if record["rule"] != EP_RULE and "cpu_seconds" in record:
            done[record_key(record)].append(float(record["cpu_seconds"]))
    planned = planned_runs(protocol)
    missing = [run for run in planned if not (runs_dir / run_name(*run)).exists()]
    check_run_files(protocol, scale, out)
    estimates = [estimate_cpu(run, done) for run in missing]
    known = [e for e in estimates if e is not None]
    unknown = len(estimates) - len(known)
    ep_planned = planned_ep_runs(protocol)
    ep_missing = [
        (a, d)
        for a, d in ep_planned
        if not (runs_dir / ep_name(ep_config(protocol, a, d), a, d)).exists()
    ]
    seeds = sorted({run[5] for run in planned})
    lines = [
        f"skipnets {scale} in {out}: {len(planned)} baseline runs planned (seeds "
        f"{', '.join(map(str, seeds))}), {len(planned) - len(missing)} finished, "
        f"{len(missing)} to run; {len(ep_planned)} EP runs planned, {len(ep_missing)} to run.",
    ]
    if missing:
        hours = sum(known) / 3600
        lines.append(
            f"Estimated CPU time of the {len(known)} remaining baseline runs with an estimate: "
            f"{sum(known):,.0f} s ({hours:.1f} CPU hours, one thread per run; from the CPU "
            "seconds of the finished runs of the same rule, architecture and activation, "
            "interpolated in depth)"
            + (
                f"; {unknown} runs without an estimate (no finished run of their rule, "
                "architecture and activation)."
                if unknown
                else "."
            )
        )
    return lines


def status_text(scale: str, out: Path) -> str:
    """What ``eqprop reproduce skipnets --status`` prints: :func:`plan_lines`."""
    return "\n".join(plan_lines(scale, out))
