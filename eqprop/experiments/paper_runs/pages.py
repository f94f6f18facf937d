"""The parts of a ``results.md`` that the ICONS-paper experiments share: the protocol table,
the runs' status lines, the command line's departures and the header lines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from eqprop import config as cfg
from eqprop.experiments.departures import Departures
from eqprop.experiments.paper_runs.declaring import Reduction
from eqprop.experiments.paper_runs.formats import num, table
from eqprop.experiments.paper_runs.run_dirs import DIVERGED, RunResult

#: the fields shown in the protocol table of every results.md (section.key, column title)
PROTOCOL_FIELDS = (
    ("data.dataset", "dataset"),
    ("data.split", "split"),
    ("data.limit", "limit"),
    ("topology.sizes", "sizes"),
    ("topology.family", "topology"),
    ("topology.n", "n"),
    ("topology.p", "p"),
    ("topology.a", "a"),
    ("update.lr", "lr"),
    ("update.bias_lr", "bias lr"),
    ("free.eps", "eps"),
    ("free.steps", "free steps"),
    ("nudged.steps", "nudged steps"),
    ("nudged.nudging", "nudging"),
    ("train.batch_order", "batch order"),
    ("train.test_persistent", "test particles"),
    ("train.batch_size", "batch"),
    ("train.epochs", "epochs"),
    ("train.seed", "seed"),
)


def _show(key: str, value: Any) -> str:
    if value is None:
        return {"data.limit": "all", "update.bias_lr": "incoming pair"}.get(key, "–")
    if isinstance(value, (tuple, list)):
        if key == "topology.sizes":
            return "-".join(map(str, value))
        return "/".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def protocol_table(results: Sequence[RunResult]) -> str:
    """The settings of every run (the fields of :data:`PROTOCOL_FIELDS`), a row per run."""
    rows = []
    for r in results:
        values = cfg.flat_items(r.config)
        rows.append([r.name, *(_show(k, values.get(k)) for k, _ in PROTOCOL_FIELDS)])
    return table(["run", *(title for _, title in PROTOCOL_FIELDS)], rows)


def runs_section(results: Sequence[RunResult]) -> list[str]:
    """The lines every ``results.md`` shows about its runs: the protocol table, a blank line,
    and one status line per run."""
    return [protocol_table(results), "", *status_lines(results)]


def status_lines(results: Sequence[RunResult]) -> list[str]:
    """Markdown bullets: each run's epochs done, status and training wall time."""
    lines = []
    for r in results:
        wall = r.records[-1].get("wall_time", math.nan) if r.records else math.nan
        status = _STATUS.get(r.status, r.status)
        lines.append(
            f"- `{r.name}` ({r.run_dir.name}/): {r.epochs_done}/{r.config.train.epochs} epochs, "
            f"{status}; training wall time {num(wall, '.0f')} s."
        )
    collapsed = [r.name for r in results if _output_collapsed(r)]
    if collapsed:
        lines.append(
            f"- Output layer collapsed in {', '.join(f'`{n}`' for n in collapsed)}: the output "
            "pair's rate is exactly 0 in most batches (every output clipped at 0 in both "
            "phases, chance-level error): what the `gradient` step does at large rates on these "
            "networks; see the repository's docs/results/output-collapse/README.md."
        )
    return lines


def _output_collapsed(result: RunResult) -> bool:
    """Whether the output pair's rate is exactly 0 in more than half of the run's batches."""
    rates = result.rates
    return rates.size > 0 and float((rates[:, -1] == 0).mean()) > 0.5


def departure_lines(departures: Departures | None, results: Sequence[RunResult]) -> list[str]:
    """The results.md lines naming the command line's departures (``--set``, ``--fast``)
    from the paper's protocol, for the runs as they ran; none without departures."""
    return departures.lines([(r.name, r.config) for r in results]) if departures else []


_STATUS = {
    "started": "started in this call",
    "resumed": "resumed in this call",
    "complete": "already complete (skipped)",
    "diverged": f"diverged (see its {DIVERGED} file)",
}


def header_lines(
    title: str,
    scale: str,
    reduction: Reduction | None,
    departures: Sequence[str] = (),
) -> list[str]:
    """Title and protocol sentence shared by the results files; ``departures``: the lines of
    :func:`departure_lines`, shown first under the protocol heading."""
    text = reduction.describe() if reduction else Reduction().describe()
    if departures:
        text = f"Otherwise: {text[0].lower()}{text[1:]}"
    lines = [f"# {title}, scale `{scale}`", "", "## Protocol", "", *departures, text]
    if scale != "full":
        lines += [
            "",
            "At this scale the numbers are not comparable with the paper's; they check the "
            "pipeline and show trends at a small budget only.",
        ]
    return lines + [""]
