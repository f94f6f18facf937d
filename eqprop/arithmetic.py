"""What decides the floating-point rounding of a run, in one line.

A run resumes bit for bit only where its products round as before: the same processor kind
(its BLAS kernels), the same torch build and, on a CPU, the same number of torch threads
(the work split of a matrix product changes its sums). Measured on these machines: an AMD
EPYC and an Intel Xeon, both AVX512, give different weights after three training batches
(``tests/test_refactor_identity.py``), and one product of 20 x 1510 by 1510 x 1510 differs
between 1 and 2 threads. Checkpoints record :func:`describe`, and a resume under another
description says so once.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")


def cpu_model() -> str:
    """The processor's model name (Linux's ``/proc/cpuinfo``; elsewhere what ``platform``
    knows)."""
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(device: torch.device) -> str:
    """The processor, torch build and (on a CPU) thread count that ``device`` computes with."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    threads = torch.get_num_threads()
    return (
        f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), torch "
        f"{torch.__version__}, {threads} thread{'s' * (threads != 1)}"
    )
