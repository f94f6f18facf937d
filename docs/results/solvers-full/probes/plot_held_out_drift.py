"""Plot the output of ``held_out_drift.py``: held-out error against batches of further
training, one line per run, one panel per network (the run name up to its first ``-``).

    python plot_held_out_drift.py drift/*.json --out held_out_drift.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

from eqprop.experiments.paper_runs import save_png
from eqprop.plots import STYLE, new_figure, outside_legend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+", help="held_out_drift.py outputs")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()

    runs = {path.stem: json.loads(path.read_text()) for path in sorted(args.files)}
    networks = sorted({name.split("-")[0] for name in runs})
    with matplotlib.rc_context(STYLE):
        fig = new_figure(figsize=(5.5 * len(networks), 3.6))
        axes = fig.subplots(1, len(networks), squeeze=False)[0]
        for ax, net in zip(axes, networks, strict=True):
            for name, rows in runs.items():
                if name.split("-")[0] == net:
                    x = [r["batch"] for r in rows]
                    y = [100 * r["held_out"] for r in rows]
                    ax.plot(x, y, marker="o", label=name)
            ax.set_title(f"network {net}")
            ax.set_xlabel("batches after the end of the last epoch")
            ax.set_ylabel("held-out error at the fixed point (%)")
            outside_legend(ax, ax.get_legend_handles_labels()[0], fontsize="small")
        save_png(fig, args.out)


if __name__ == "__main__":
    main()
