"""Reproducible experiments: one small module per figure or study.

An experiment runs (or resumes) every run it declares for a scale, writes plots and a
``results.md`` into ``out`` and returns the path of ``results.md``; :func:`runner` gives the
function that does it. The experiments made of EP runs declare their runs, claims, figures
and ``results.md`` (:class:`eqprop.experiments.driver.PaperExperiment`) and are run by the
shared driver; a study of another kind defines ``run(scale, out, data_dir) -> Path`` itself.
``SCALES`` in each module lists the scales it supports.

The options of ``eqprop reproduce`` beyond the scale and output directory
(:func:`reproduce_flags`): the experiments run by the shared driver have them all; a study
with its own ``run`` has none of ``--set``, ``--fast`` and ``--device``, and has
``--status`` where it defines ``status_text(scale, out) -> str`` (where the runs stand;
trains and writes nothing), ``--results-only`` where its ``run`` takes ``results_only``
(train nothing; write ``results.md`` and the plots from what ``out`` holds) and ``--publish``
where it defines ``publish_stage(scale, out, dest) -> Path`` (render the stage, copy it into
``dest``, regenerate the claims index beside it and return the index's path; every input is
checked before the first write).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from eqprop.errors import ConfigError

#: experiment name -> module (imported lazily so that ``eqprop --help`` stays fast)
EXPERIMENTS: dict[str, str] = {
    "fig3": "eqprop.experiments.fig3",
    "fig4": "eqprop.experiments.fig4",
    "fig5": "eqprop.experiments.fig5",
    "smallworld": "eqprop.experiments.smallworld",
    "skipnets": "eqprop.experiments.skipnets",
    "deep-logic": "eqprop.experiments.deep_logic",
    "solvers": "eqprop.experiments.solvers",
    "bitdepth": "eqprop.experiments.bitdepth",
    "hidden-nudge": "eqprop.experiments.hidden_nudge",
    "skip-removal": "eqprop.experiments.skip_removal",
    "fig5-fashion": "eqprop.experiments.fig5_fashion",
    "journal": "eqprop.experiments.journal",
    "conv-ep": "eqprop.experiments.conv_ep",
}


def experiment(name: str) -> ModuleType:
    """Return the module of experiment ``name``; raise ConfigError for an unknown name or a
    dependency of it that is not installed."""
    if name not in EXPERIMENTS:
        raise ConfigError(
            f"unknown experiment {name!r}; choose one of: {', '.join(sorted(EXPERIMENTS))}"
        )
    try:
        return importlib.import_module(EXPERIMENTS[name])
    except ModuleNotFoundError as exc:  # a dependency missing from this installation
        missing = (exc.name or "").split(".")[0]
        raise ConfigError(
            f"experiment {name!r} needs the package {missing!r}, which is not installed; "
            f"install it with: pip install {missing}"
        ) from exc


def runner(module: ModuleType) -> Callable[..., Path]:
    """The function that runs experiment ``module``: its own ``run``, or else the shared
    driver (:func:`eqprop.experiments.driver.run`) bound to it. Called as ``runner(module)(
    scale, out, data_dir, ...)``."""
    if hasattr(module, "run"):
        return module.run
    from eqprop.experiments import driver

    return functools.partial(driver.run, module)


#: the options of ``eqprop reproduce`` that an experiment may lack
REPRODUCE_FLAGS = ("--set", "--fast", "--status", "--results-only", "--publish", "--device")


def reproduce_flags(module: ModuleType) -> tuple[str, ...]:
    """Which of :data:`REPRODUCE_FLAGS` experiment ``module`` has (see the module docs): all
    when the shared driver runs it (its runner takes ``departures``), else those its own
    ``status_text``, ``run(..., results_only)`` and ``publish_stage`` give it."""
    parameters = inspect.signature(runner(module)).parameters
    if "departures" in parameters:
        return REPRODUCE_FLAGS
    has = {
        "--status": hasattr(module, "status_text"),
        "--results-only": "results_only" in parameters,
        "--publish": hasattr(module, "publish_stage"),
    }
    return tuple(flag for flag in REPRODUCE_FLAGS if has.get(flag, False))
