"""A stage of the skipnets experiment: its figures and ``results.md`` drawn from the run
files as they are (:func:`render_stage`, ``eqprop reproduce skipnets --results-only``), copied
with the run files into a published directory (:func:`publish_stage`, ``--publish``), and
what the claims index reads of a published one (:func:`stage_measured`)."""

from __future__ import annotations

from pathlib import Path

from eqprop.errors import ConfigError
from eqprop.experiments.skipnets.figures import plot_accuracy_vs_depth, plot_sensitivity
from eqprop.experiments.skipnets.protocol import EP_RULE, PROTOCOLS, planned_runs
from eqprop.experiments.skipnets.results import render_results
from eqprop.experiments.skipnets.rows import collect_rows
from eqprop.experiments.skipnets.runfiles import check_run_files, load_records
from eqprop.runs import atomic_write_bytes


def render_stage(scale: str, out: Path) -> Path:
    """Draw the figures and write ``results.md`` of ``scale`` from the run files in
    ``out/runs`` as they are (trains nothing: runs without a file are listed as not run);
    return the path of ``results.md``."""
    protocol = PROTOCOLS[scale]
    out = Path(out)
    records = load_records(out / "runs")
    out.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(records)
    plot_accuracy_vs_depth(rows, protocol, out / "accuracy_vs_depth.png")
    plot_sensitivity(records, protocol, out / "sensitivity.png")
    results = out / "results.md"
    atomic_write_bytes(results, render_results(scale, protocol, records, rows).encode())
    return results


def publish_stage(scale: str, out: Path, dest: Path) -> Path:
    """Render the stage of ``scale`` held in ``out`` (:func:`render_stage`) and copy it into
    ``dest``: ``results.md``, the figures and every run file (replacing ``dest``'s), with an
    ``experiment.toml`` naming the scale; regenerate the claims index of ``dest``'s parent
    and return its path."""
    import shutil

    import tomli_w

    from eqprop.experiments.report import STAGE, write_index

    out, dest = Path(out), Path(dest)
    files = sorted((out / "runs").glob("*.json"))
    if not files:
        raise ConfigError(f"{out / 'runs'} holds no run files; nothing to publish")
    check_run_files(PROTOCOLS[scale], scale, out)
    render_stage(scale, out)
    (dest / "runs").mkdir(parents=True, exist_ok=True)
    for old in (dest / "runs").glob("*.json"):
        old.unlink()
    for f in files:
        shutil.copyfile(f, dest / "runs" / f.name)
    for name in ("results.md", "accuracy_vs_depth.png", "sensitivity.png"):
        shutil.copyfile(out / name, dest / name)
    stage = {"experiment": "skipnets", "scale": scale}
    atomic_write_bytes(dest / STAGE, tomli_w.dumps(stage).encode())
    return write_index(dest.parent)


def stage_measured(directory: Path, scale: str) -> tuple[list[dict], str]:
    """What :data:`CLAIMS` read of a committed output directory (its baseline run files) and
    what it reached, for the index of :mod:`eqprop.experiments.report`."""
    records = load_records(Path(directory) / "runs")
    baselines = [r for r in records if r["rule"] != EP_RULE]
    planned = len(planned_runs(PROTOCOLS[scale]))
    return baselines, f"{len(baselines)} of {planned} baseline run files"
