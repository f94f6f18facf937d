"""Publishing a stage of an experiment, and the index of every claim (``docs/results``).

A *stage* is what an experiment's runs have reached at some moment, kept small enough to
commit: its ``results.md`` and plots, each run's ``config.toml`` and ``metrics.jsonl`` under
``runs/<name>/`` (never checkpoints), and ``experiment.toml`` naming the experiment, its
scale and the departures it ran with (``eqprop reproduce ... --publish DEST``).

A study whose results are not EP runs (``skipnets``, ``smallworld``, ``deep-logic``) is a stage
too when its committed output directory has an ``experiment.toml``; the study module then
says what its claims read from the directory and what the stage reached
(``stage_measured(directory, scale) -> (measured, reached)``).

The index, ``README.md`` beside the stages, is generated from them alone: for every stage of
an experiment that declares claims (:mod:`eqprop.experiments.claims`), one row per claim
with its source, the verdict on the committed metrics or results, the scale and epochs (or
results) reached, and a link to the stage. Regenerating it from the same files gives the same
text.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from eqprop.errors import ConfigError
from eqprop.experiments import experiment
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import Claim, claims_section
from eqprop.experiments.departures import Departures
from eqprop.runs import CONFIG, METRICS, atomic_write_bytes, read_layer_rates, read_metrics

STAGE = "experiment.toml"
INDEX = "README.md"
RUNS = "runs"


@dataclass(frozen=True)
class ResultsPage:
    """What an EP-run experiment states once for its ``results.md``: its ``title``, the
    ``reductions`` of its smaller scales, its ``claims`` and the scales whose free phase is
    :data:`~eqprop.experiments.paper_runs.FAST_FREE` (``fast_free``, named first under the
    protocol); :meth:`text` lays the page out the same way for every experiment."""

    title: str
    reductions: Mapping[str, pr.Reduction]
    claims: Sequence[Claim]
    fast_free: tuple[str, ...] = ()

    def text(
        self,
        scale: str,
        results: Sequence[pr.RunResult],
        departures: Departures | None,
        protocol: Sequence[str],
        measurements: Sequence[str] = (),
        after: Sequence[str] = (),
    ) -> str:
        """The text of ``results.md``: the title and protocol sentence of ``scale`` with the
        command line's ``departures`` (:func:`~eqprop.experiments.paper_runs.header_lines`),
        the experiment's own ``protocol`` lines, the runs' settings and status, its
        ``measurements`` (sections, each ending with a blank line), the claims judged on
        ``results`` (:func:`~eqprop.experiments.claims.claims_section`) and what comes
        ``after`` them (notes, figures)."""
        departed = pr.departure_lines(departures, results)
        fast = [pr.FAST_FREE_NOTE] if scale in self.fast_free else []
        return "\n".join(
            [
                *pr.header_lines(self.title, scale, self.reductions.get(scale), departed),
                *fast,
                *protocol,
                "",
                *pr.runs_section(results),
                "",
                *measurements,
                *claims_section(self.claims, {r.name: r for r in results}, scale),
                *after,
            ]
        )


def question_and_protocol(question: str, protocol: str) -> list[str]:
    """The protocol lines of a study of a question: the question, then how it is measured."""
    return ["", f"**Question.** {question}", "", f"**Protocol.** {protocol}"]


def check_publishable(name: str, planned: list[tuple[str, object]], out: Path) -> None:
    """A one-line error unless ``out`` holds at least one of the ``planned`` runs."""
    if not any((Path(out) / run / CONFIG).exists() for run, _ in planned):
        raise ConfigError(f"{out} holds none of the runs of {name}; nothing to publish")


def publish(name: str, scale: str, departures: Departures, out: Path, dest: Path) -> Path:
    """Copy the stage of experiment ``name`` held in ``out`` (rendered there, see the module
    docs) into ``dest``, replacing what ``dest`` held of it; regenerate the index of
    ``dest``'s parent. Returns the index's path."""
    out, dest = Path(out), Path(dest)
    planned = departures.apply_all(experiment(name).planned(scale))
    check_publishable(name, planned, out)
    missing = [n for n, _ in planned if not (out / n / CONFIG).exists()]
    summarize = getattr(experiment(name), "PUBLISH_RATE_SUMMARY", False)
    dest.mkdir(parents=True, exist_ok=True)
    for f in (out / "results.md", *sorted(out.glob("*.png"))):
        shutil.copyfile(f, dest / f.name)
    shutil.rmtree(dest / RUNS, ignore_errors=True)
    for run, config in planned:
        if run in missing:
            continue
        (dest / RUNS / run).mkdir(parents=True)
        for f in (CONFIG, METRICS):
            if (out / run / f).exists():
                shutil.copyfile(out / run / f, dest / RUNS / run / f)
        if summarize:
            summary = pr.summarize_rates(read_layer_rates(out / run, config.train.epochs))
            if summary is not None:
                atomic_write_bytes(dest / RUNS / run / pr.RATE_SUMMARY, summary.to_json().encode())
    stage = {"experiment": name, "scale": scale, "fast": departures.fast}
    stage["sets"] = list(departures.sets)
    atomic_write_bytes(dest / STAGE, tomli_w.dumps(stage).encode())
    return write_index(dest.parent)


def _stage(directory: Path) -> tuple[str, str, Departures] | None:
    path = directory / STAGE
    if not path.is_file():
        return None
    values = tomllib.loads(path.read_text())
    departures = Departures(tuple(values.get("sets", ())), fast=bool(values.get("fast")))
    return values["experiment"], values["scale"], departures


def stage_results(directory: Path) -> list[pr.RunResult]:
    """The runs of a published stage as :class:`~eqprop.experiments.paper_runs.RunResult`
    (per-epoch records, and the declared config without ``--fast``'s free phase; the status
    says what was published)."""
    name, scale, departures = _stage(directory)
    # the declared runs with the stage's --set (its epochs); --fast changes only the free
    # phase, and resolving it would build every ICONS topology (a minute for Figure 5's)
    planned = Departures(departures.sets).apply_all(experiment(name).planned(scale))
    results = []
    for run, config in planned:
        run_dir = directory / RUNS / run
        records = read_metrics(run_dir) if (run_dir / METRICS).exists() else []
        results.append(pr.RunResult(run, config, run_dir, records, "published"))
    return results


def stage_claims(directory: Path) -> tuple[Sequence[Claim], str, Any, str]:
    """A stage's claims, its scale, what the claims read (the runs by name, or what the
    study module's ``stage_measured`` gives) and what it reached, in words for the index."""
    name, scale, departures = _stage(directory)
    module = experiment(name)
    claims = getattr(module, "CLAIMS", ())
    if hasattr(module, "stage_measured"):
        measured, reached = module.stage_measured(directory, scale)
        return claims, scale, measured, f"`{scale}`; {reached}"
    results = stage_results(directory)
    flags = " ".join(["--fast"] * departures.fast + [f"--set {s}" for s in departures.sets])
    epochs = ", ".join(f"{r.name} {r.epochs_done}/{r.config.train.epochs}" for r in results)
    reached = f"`{scale}`{' ' + flags if flags else ''}; epochs {epochs}"
    return claims, scale, {r.name: r for r in results}, reached


def index_text(root: Path) -> str:
    """The text of ``root/README.md``: one row per claim of every stage under ``root``."""
    rows = []
    for directory in sorted(p for p in Path(root).iterdir() if (p / STAGE).is_file()):
        claims, scale, measured, reached = stage_claims(directory)
        link = f"[{directory.name}]({directory.name}/results.md)"
        for claim in claims:
            verdict = claim.judge(measured, scale)
            rows.append(
                f"| {claim.statement} | {claim.source} | **{verdict.verdict}** "
                f"({verdict.measured}) | {reached} | {link} |"
            )
    return "\n".join(
        [
            "# What is reproduced",
            "",
            "Generated by `eqprop reproduce EXPERIMENT ... --publish docs/results/NAME` from the "
            "committed stages (each directory's `experiment.toml` and `runs/*/metrics.jsonl`, "
            "or a study's own result files); do not edit by hand. A verdict is *not yet "
            "measured* until the runs reach the epochs and scale the claim is about.",
            "",
            "| claim | paper | verdict (measured) | scale and what was reached | results |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def write_index(root: Path) -> Path:
    """Regenerate ``root/README.md`` (:func:`index_text`); returns its path."""
    path = Path(root) / INDEX
    atomic_write_bytes(path, index_text(root).encode())
    return path
