"""The one driver of the experiments made of EP runs (``fig3``, ``fig4``, ``fig5``,
``fig5-fashion``, ``journal``, ``bitdepth``, ``hidden-nudge``, ``skip-removal``).

Such an experiment module is its runs and its claims, plus the plots it alone draws
(:class:`PaperExperiment`); :func:`run` does the rest for every one of them: it checks the
scale, runs (skips, resumes or starts) the declared runs with
:func:`~eqprop.experiments.paper_runs.execute` (which checks every input before the first
write), saves the module's figures and writes its ``results.md``. ``eqprop reproduce`` calls
it for every module that has no ``run`` of its own (:func:`eqprop.experiments.runner`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from matplotlib.figure import Figure

from eqprop.config import RunConfig
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import Claim
from eqprop.experiments.departures import Departures
from eqprop.runs import atomic_write_bytes
from eqprop.sweeps.placement import Placement

#: the file every experiment writes its results into
RESULTS = "results.md"


class PaperExperiment(Protocol):
    """What an experiment module of EP runs declares.

    ``SCALES``: the scales it has; ``CLAIMS``: the papers' claims it tests
    (:mod:`eqprop.experiments.claims`); ``planned(scale)``: its runs, ``(name, config)`` in
    training order; ``figures(scale, results)``: its plots by file name; ``render(scale,
    results, departures)``: the text of its ``results.md``."""

    SCALES: tuple[str, ...]
    CLAIMS: tuple[Claim, ...]

    def planned(self, scale: str) -> list[tuple[str, RunConfig]]: ...

    def figures(self, scale: str, results: Sequence[pr.RunResult]) -> dict[str, Figure]: ...

    def render(
        self, scale: str, results: Sequence[pr.RunResult], departures: Departures | None
    ) -> str: ...


def run(
    experiment: PaperExperiment,
    scale: str,
    out: Path,
    data_dir: Path | None,
    placement: Placement | None = None,
    departures: Departures | None = None,
    results_only: bool = False,
    device: str | None = None,
) -> Path:
    """Run (or resume) every declared run of ``experiment`` at ``scale`` into ``out`` (with
    the ``--set``/``--fast`` ``departures``; on Ray where ``placement`` asks for it; on
    ``device`` where given; none with ``results_only``), save its figures and write
    ``results.md``; return its path."""
    pr.check_scale(scale)
    out = Path(out)
    planned = experiment.planned(scale)
    results = pr.execute(planned, out, data_dir, placement, departures, results_only, device)
    for name, figure in experiment.figures(scale, results).items():
        pr.save_png(figure, out / name)
    path = out / RESULTS
    atomic_write_bytes(path, experiment.render(scale, results, departures).encode())
    return path
