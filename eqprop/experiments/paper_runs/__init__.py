"""Shared machinery of the ICONS-paper experiments (``fig3``, ``fig4``, ``fig5``).

- **Declaring runs**: every run is a ``(name, RunConfig)`` pair derived from a bundled preset
  (:func:`paper_config`, one source of truth for the paper's numbers) by :func:`derive`; a
  :class:`Reduction` turns the paper protocol into a cheaper scale (``smoke``: the bundled
  8x8 digits and small layers, no download; ``quick``: MNIST with ``limit`` and fewer free
  steps). The ``full`` scale applies no reduction.
- **Running**: :func:`execute` runs the declared runs in order, each in ``out/<name>``, with
  the run-directory machinery of :mod:`eqprop.runs`: a directory whose metrics already hold
  every epoch is skipped, one with a saved config (and checkpoint) is resumed exactly by
  :func:`~eqprop.runs.train_run`, and a missing one is started. A directory whose saved
  config differs from the declared one in anything but operational fields (``description``,
  ``device``, ``checkpoint_every``, ``layout``; ``epochs`` is extended) is refused with a
  one-line error, so a run made at another scale is never continued by mistake. A run that
  diverges leaves a ``DIVERGED`` file (its message) and is not retried; delete the file to
  retry.
- **Collecting**: :class:`RunResult` (config, per-epoch metrics, per-batch rates) and the rate
  statistics of Figures 4 and 5 (:func:`summarize_rates`, :func:`spread`, :func:`ratios`).

Environment variables (read by :func:`execute`):

- ``EQPROP_ONLY``: comma-separated run names (e.g. ``C`` or ``C,A``); only those are trained,
  the others are reported from whatever their directories hold. For long ``full`` runs.

Where runs compute is ``device`` (``eqprop reproduce --device``): new runs start there, and
resumed ones move there (with the note of :func:`eqprop.runs.train_run`); without it a new
run computes on its preset's device and a resumed one where it ran before.

The modules, imported in one direction: :mod:`~eqprop.experiments.paper_runs.declaring` <
:mod:`~eqprop.experiments.paper_runs.rates` < :mod:`~eqprop.experiments.paper_runs.formats` <
:mod:`~eqprop.experiments.paper_runs.run_dirs` < :mod:`~eqprop.experiments.paper_runs.status`
< :mod:`~eqprop.experiments.paper_runs.running` < :mod:`~eqprop.experiments.paper_runs.pages`.
Their public names are importable from :mod:`eqprop.experiments.paper_runs` itself.
"""

from __future__ import annotations

from eqprop.experiments.paper_runs.declaring import (
    FAST_FREE,
    FAST_FREE_NOTE,
    NETWORKS,
    SCALES,
    SMOKE_CHANNELS,
    SMOKE_HIDDEN,
    SMOKE_INPUT,
    Reduction,
    check_scale,
    paper_config,
    scaled,
)
from eqprop.experiments.paper_runs.formats import (
    MAX_PNG_BYTES,
    mean_sd,
    num,
    pct,
    save_png,
    table,
)
from eqprop.experiments.paper_runs.pages import (
    PROTOCOL_FIELDS,
    departure_lines,
    header_lines,
    protocol_table,
    runs_section,
    status_lines,
)
from eqprop.experiments.paper_runs.rates import (
    FIRST_BATCHES,
    RATE_SUMMARY,
    RateSummary,
    plottable,
    ratios,
    spread,
    summarize_rates,
)
from eqprop.experiments.paper_runs.run_dirs import (
    DIVERGED,
    OPERATIONAL,
    RunResult,
    check_planned,
    differing_keys,
)
from eqprop.experiments.paper_runs.running import (
    ONLY_ENV,
    check_inputs,
    ensure_run,
    execute,
    only_names,
    prepare_run,
    train_declared,
)
from eqprop.experiments.paper_runs.status import (
    RECENT_EPOCHS,
    RunStatus,
    run_status,
    status_text,
)

__all__ = [
    "DIVERGED",
    "FAST_FREE",
    "FAST_FREE_NOTE",
    "FIRST_BATCHES",
    "MAX_PNG_BYTES",
    "NETWORKS",
    "ONLY_ENV",
    "OPERATIONAL",
    "PROTOCOL_FIELDS",
    "RATE_SUMMARY",
    "RECENT_EPOCHS",
    "RateSummary",
    "Reduction",
    "RunResult",
    "RunStatus",
    "SCALES",
    "SMOKE_CHANNELS",
    "SMOKE_HIDDEN",
    "SMOKE_INPUT",
    "check_inputs",
    "check_planned",
    "check_scale",
    "departure_lines",
    "differing_keys",
    "ensure_run",
    "execute",
    "header_lines",
    "mean_sd",
    "num",
    "only_names",
    "paper_config",
    "pct",
    "plottable",
    "prepare_run",
    "protocol_table",
    "ratios",
    "run_status",
    "runs_section",
    "save_png",
    "scaled",
    "spread",
    "status_lines",
    "status_text",
    "summarize_rates",
    "table",
    "train_declared",
]
