"""Peak resident memory of a short training run, measured in a fresh interpreter."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any

import torch

from eqprop import config as cfg
from eqprop.bench.settings import (
    random_data,
)
from eqprop.errors import EqpropError


def memory_probe(config: cfg.RunConfig, examples: int, batches: int = 2) -> dict[str, Any]:
    """Peak resident memory of a short training run in a fresh interpreter: random data of
    ``examples`` x input size (MNIST shape at the default), the preset's network, persistent
    particles for every example, ``batches`` batches (free steps capped at 50: memory does
    not depend on them)."""
    probe_config = config.override({"free.steps": min(config.free.steps, 50)})
    code = (
        "import json, sys; from eqprop.bench.memory import _memory_child; "
        "print(json.dumps(_memory_child(sys.stdin.read(), int(sys.argv[1]), int(sys.argv[2]), "
        "int(sys.argv[3]))))"
    )
    parent_rss = _status_mib("VmRSS")
    done = subprocess.run(
        [sys.executable, "-c", code, str(examples), str(batches), str(torch.get_num_threads())],
        input=probe_config.to_toml(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise EqpropError(f"the memory probe failed: {tail[0]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(
        batches=batches,
        free_steps=probe_config.free.steps,
        examples=examples,
        parent_rss_at_start_mib=parent_rss,
    )
    return result


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB; NaN off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return float("nan")  # pragma: no cover


def _memory_child(config_toml: str, examples: int, batches: int, threads: int) -> dict:
    from eqprop.runs import build_network, build_topology, build_trainer

    torch.set_num_threads(threads)
    config = cfg.from_dict(cfg.parse_toml(config_toml, "memory probe config"))
    device = torch.device(config.train.device)
    baseline = _status_mib("VmRSS")
    topology = build_topology(config)
    net = build_network(config, topology)
    trainer = build_trainer(config, net, examples)
    sizes, b = config.topology.sizes, config.train.batch_size
    x, y = random_data(examples, sizes[0], sizes[-1], device)
    order = torch.randperm(examples, generator=torch.Generator().manual_seed(0)).to(device)
    for i in range(batches):
        idx = order[i * b : (i + 1) * b]
        trainer.train_batch(x[idx], y[idx], idx)
    # Linux reports ru_maxrss in KiB
    out = {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mib": baseline,
        "vm_hwm_mib": _status_mib("VmHWM"),
    }
    if device.type == "cuda":
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out
