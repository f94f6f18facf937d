"""The skipnets experiment (seed 003): smoke scale end to end, resume, table and claim check."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from eqprop.errors import ConfigError
from eqprop.experiments import experiment, skipnets

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("skipnets")
    begin = time.process_time()  # CPU time: the machine may be shared
    results = skipnets.run("smoke", out, None)
    return results, time.process_time() - begin


def test_smoke_writes_results_table_and_plots(smoke: tuple[Path, float]) -> None:
    results, seconds = smoke
    assert seconds < 60
    out = results.parent
    assert results == out / "results.md"
    for plot in ("accuracy_vs_depth.png", "sensitivity.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / plot).stat().st_size < 300_000

    protocol = skipnets.PROTOCOLS["smoke"]
    n_depths = sum(len(d) for d in protocol.depths.values())
    expected_runs = len(skipnets.RULE_NAMES) * len(protocol.architectures) * n_depths + 1
    assert len(list((out / "runs").glob("*.json"))) == expected_runs  # + linear readout

    text = results.read_text()
    header = (
        "| rule | architecture | activation | depth | best hyperparameters | valid acc (%) "
        "| test acc (%) |"
    )
    lines = text.splitlines()
    start = lines.index(header)
    rows = [line for line in lines[start + 2 :] if line.startswith("| ")]
    # one row per rule x architecture x (activation, depth), plus the linear readout
    assert len(rows) == expected_runs
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 7
        assert cells[0] in skipnets.RULE_NAMES
        assert 0.0 <= float(cells[5]) <= 100.0 and 0.0 <= float(cells[6]) <= 100.0
        assert cells[4].startswith("lr=")
    assert "**Verdict: the claim" in text
    assert sum(line.startswith("- FA,") or line.startswith("- DTP,") for line in lines) == 4


def test_rerun_resumes_without_training(smoke: tuple[Path, float]) -> None:
    results, _ = smoke
    runs = sorted((results.parent / "runs").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in runs]
    removed = runs[0]
    removed.unlink()
    assert skipnets.run("smoke", results.parent, None) == results
    assert [p.stat().st_mtime_ns for p in runs[1:]] == stamps[1:]  # untouched
    assert removed.exists()  # only the missing run was redone


def test_extra_rows_from_other_rules_join_the_table(smoke: tuple[Path, float]) -> None:
    """The table is generic: a run file of the same schema (e.g. EP) becomes one more row."""
    records = skipnets.load_records(smoke[0].parent / "runs")
    extra = {
        "rule": "EP",
        "architecture": "DN",
        "activation": "sigmoid",
        "depth": 3,
        "grid": [
            {"hyperparameters": {"beta": 1.0}, "valid_accuracy": 0.5, "test_accuracy": 0.4},
            {"hyperparameters": {"beta": 0.5}, "valid_accuracy": 0.6, "test_accuracy": 0.55},
        ],
    }
    rows = skipnets.collect_rows([*records, json.loads(json.dumps(extra))])
    (ep,) = [r for r in rows if r.rule == "EP"]
    assert ep.hyperparameters == {"beta": 0.5} and ep.test_accuracy == 0.55
    assert "| EP | DN | sigmoid | 3 | beta=0.5 | 60.00 | 55.00 |" in skipnets.format_table(rows)


def test_claim_check_verdicts() -> None:
    protocol = skipnets.PROTOCOLS["smoke"]

    def rows(dense_fa: float, plain_fa_deep: float) -> list[skipnets.Row]:
        out = []
        for act, (low, high) in protocol.depths.items():
            for rule in skipnets.RULE_NAMES:
                for arch, (a_low, a_high) in {
                    "DN": (0.95, 0.95 if rule != "FA" else dense_fa),
                    "NN": (0.95, plain_fa_deep),
                }.items():
                    for depth, acc in ((low, a_low), (high, a_high)):
                        out.append(skipnets.Row(rule, arch, act, depth, {}, acc, acc))
        return out

    assert skipnets.claim_check(rows(0.94, 0.80), protocol)[1] == "holds"
    assert skipnets.claim_check(rows(0.80, 0.95), protocol)[1] == "does not hold"
    # FA on the dense network falls far behind BP, DTP does not: partly
    assert skipnets.claim_check(rows(0.80, 0.80), protocol)[1] == "partly holds"


def test_unknown_scale_is_a_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="skipnets scale must be one of smoke, quick, full"):
        skipnets.run("huge", tmp_path, None)
    assert experiment("skipnets") is skipnets
    assert skipnets.SCALES == tuple(skipnets.PROTOCOLS)
