"""Run files: one JSON per gate and method with every seed's outcome, trained once and read
back on every later call."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from eqprop.baselines.training import RunProgress
from eqprop.data import logic_gate
from eqprop.directed import DirectedConfig, TrainingResult, train
from eqprop.errors import ConfigError
from eqprop.experiments.deep_logic.protocol import Method
from eqprop.runs import atomic_write

#: at most this many epochs of the MSE bands are stored per run file
_CURVE_POINTS = 500


def _write_atomic(path: Path, write) -> None:
    """:func:`eqprop.runs.atomic_write` (``write`` fills a binary file), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def _finite(value: float, digits: int = 6) -> float | None:
    """JSON-safe rounded float (None for NaN or infinity)."""
    return round(value, digits) if math.isfinite(value) else None


def _summarise(result: TrainingResult, seeds: tuple[int, ...], seconds: float) -> dict:
    """The per-run numbers, the pruned networks and the MSE bands of one gate and method."""
    epochs = result.mse.shape[1]
    stride = max(1, math.ceil(epochs / _CURVE_POINTS))
    index = list(range(0, epochs, stride))
    if index[-1] != epochs - 1:
        index.append(epochs - 1)
    curves = result.mse[:, index]
    levels = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    bands = torch.nanquantile(curves, levels, dim=0)
    net = result.network
    runs = []
    for r, seed in enumerate(seeds):
        runs.append(
            {
                "seed": seed,
                "success": bool(result.success[r]),
                "correct": bool(result.max_error[r] < 0.5),
                "converged_epoch": int(result.converged_epoch[r]),
                "diverged_at": int(result.diverged_at[r]),
                "final_mse": _finite(float(result.mse[r, -1])),
                "sparsity": float(result.sparsity[r]),
                "input_edges_left": int(net.mask[r][:, : net.n_inputs].sum()),
                "weights": [[_finite(float(w), 4) for w in row] for row in net.weights[r]],
                "mask": net.mask[r].int().tolist(),
            }
        )
    names = ("min", "q25", "median", "q75", "max")
    return {
        "seconds": round(seconds, 2),
        "epochs": index,
        "bands": {k: [_finite(float(v)) for v in bands[i]] for i, k in enumerate(names)},
        "runs": runs,
    }


def _run_path(out: Path, gate: str, method: Method, suffix: str = "") -> Path:
    """The run file of one gate and method."""
    return out / "runs" / f"{gate.lower()}-{method.name}{suffix}.json"


def _run_file(
    out: Path,
    gate: str,
    method: Method,
    seeds: tuple[int, ...],
    suffix: str = "",
    progress: RunProgress | None = None,
) -> dict:
    """Train one gate with one method from every seed, or load the stored result.

    A stored config lacking fields added to :class:`DirectedConfig` since it was written is
    read with their defaults, which reproduce the behaviour of the time. ``progress`` counts
    a run trained here.
    """
    path = _run_path(out, gate, method, suffix)
    settings = {"gate": gate, "method": method.name, "config": asdict(method.config)}
    settings["seeds"] = list(seeds)
    if path.exists():
        stored = json.loads(path.read_text())
        if isinstance(stored.get("config"), dict):
            stored["config"] = asdict(DirectedConfig()) | stored["config"]
        if {k: stored.get(k) for k in settings} != settings:
            raise ConfigError(f"{path} holds results of other settings; use another output folder")
        return stored
    x, y = logic_gate(gate)
    start = time.perf_counter()
    result = train(method.config, x, y, seeds)
    record = settings | _summarise(result, seeds, time.perf_counter() - start)
    _write_atomic(path, lambda f: f.write(json.dumps(record).encode()))
    if progress is not None:
        correct = sum(run["correct"] for run in record["runs"])
        seconds = record["seconds"]
        progress.update(f"{gate} {method.name}: {correct}/{len(seeds)} correct ({seconds:.0f} s)")
    return record
