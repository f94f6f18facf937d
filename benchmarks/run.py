"""Run the engine benchmark: the same as ``eqprop bench`` (same options), as a script.

The naive reference engine it compares against is part of the package
(:mod:`eqprop.reference`), so this script and ``eqprop bench`` also work from an installed
copy of eqprop.

python benchmarks/run.py --out docs/performance.json
python benchmarks/run.py --preset icons-skip --steps 50 --naive-batches 1
"""

from __future__ import annotations

import sys

from eqprop.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
