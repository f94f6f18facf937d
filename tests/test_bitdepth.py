"""The bit-depth experiment at smoke scale: its files, its tables, and that the numbers in the
tables are the runs' own metrics."""

from pathlib import Path

import pytest
from md_tables import claim_verdicts

from eqprop.experiments import EXPERIMENTS, bitdepth, driver, experiment
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import NOT_YET
from eqprop.metrics import HELD_OUT_ERROR, record_metric
from eqprop.runs import read_config, read_metrics


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bitdepth")
    path = driver.run(bitdepth, "smoke", out, None)
    assert path == out / "results.md"
    return out


def section_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after the heading that starts with ``heading``."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    first = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, row, strict=True)) for row in body]


def last(out: Path, name: str) -> dict:
    return read_metrics(out / name)[-1]


def test_registered():
    assert EXPERIMENTS["bitdepth"] == "eqprop.experiments.bitdepth"
    assert experiment("bitdepth") is bitdepth


def test_files_and_run_directories(smoke):
    names = [name for name, _ in bitdepth.planned("smoke")]
    assert len(names) == 5 * (1 + 2 + 2)  # five networks, float32 + two k per rounding
    for name in names:
        assert len(read_metrics(smoke / name)) == 1
    for png in ("error_vs_bits.png", "lost_updates.png"):
        size = (smoke / png).stat().st_size
        assert 0 < size <= pr.MAX_PNG_BYTES
    config = read_config(smoke / "C-k4-stochastic-s0")
    assert (config.update.bits, config.update.rounding) == (4, "stochastic")
    assert read_config(smoke / "C-float32-s0").update.bits is None
    text = (smoke / "results.md").read_text()
    assert claim_verdicts(text) == [NOT_YET] * len(bitdepth.CLAIMS)  # smoke: not the paper's


def test_error_tables_hold_the_runs_metrics(smoke):
    text = (smoke / "results.md").read_text()
    for heading, key in (
        ("## Held-out error", HELD_OUT_ERROR),
        ("## Training error", "train_error"),
    ):
        rows = section_table(text, heading)
        assert list(rows[0]) == ["network", "rounding", "float32", "k = 4", "k = 12"]
        assert [(r["network"], r["rounding"]) for r in rows] == [
            (n, r) for n in bitdepth.PLANS["smoke"].networks for r in ("nearest", "stochastic")
        ]
        for row in rows:
            net, rounding = row["network"], row["rounding"]
            want = record_metric(last(smoke, f"{net}-float32-s0"), key)
            assert row["float32"] == f"{100 * want:.2f} (1)"
            for k in (4, 12):
                value = record_metric(last(smoke, f"{net}-k{k}-{rounding}-s0"), key)
                assert row[f"k = {k}"] == f"{100 * value:.2f} (1)"


def test_lost_update_table_holds_the_runs_metrics(smoke):
    rows = section_table((smoke / "results.md").read_text(), "## Updates lost")
    assert len(rows) == 5 * 4
    for row in rows:
        record = last(smoke, f"{row['network']}-k{row['k']}-{row['rounding']}-s0")
        pairs = " / ".join(pr.pct(v, 1) for v in record["lost_updates"])
        assert row["lost per pair (input -> output)"] == pairs
        assert row["lost, biases"] == pr.pct(record["lost_updates_biases"], 1)
        if row["network"] in ("C", "deep-skip"):
            assert row["lost, intralayer + skip"] == pr.pct(record["lost_updates_other"], 1)
        else:
            assert row["lost, intralayer + skip"] == "no such edges"
        assert row["saturated (most, a pair)"] == pr.pct(max(record["saturated"]), 2)
        assert all(0 <= v <= 1 for v in record["lost_updates"])


def test_bits_needed_table_follows_the_rule(smoke):
    rows = section_table((smoke / "results.md").read_text(), "## Bits needed")
    assert [r["network"] for r in rows] == list(bitdepth.PLANS["smoke"].networks)
    for row in rows:
        net = row["network"]
        for key, words in bitdepth.CRITERIA.items():
            assert (
                row[f"float32 {words} (%)"]
                == f"{100 * record_metric(last(smoke, f'{net}-float32-s0'), key):.2f} (1)"
            )
            target = record_metric(last(smoke, f"{net}-float32-s0"), key) + bitdepth.TOLERANCE
            for rounding in ("nearest", "stochastic"):
                errors = {
                    k: record_metric(last(smoke, f"{net}-k{k}-{rounding}-s0"), key) for k in (4, 12)
                }
                if errors[4] <= target and errors[12] <= target:
                    want = "4"
                elif errors[12] <= target:
                    want = "12"
                else:
                    want = "> 12"
                assert row[f"{words}: bits needed, {rounding}"] == want


def test_rerun_skips_complete_runs_and_rewrites_the_same_results(smoke):
    before = (smoke / "results.md").read_text()
    driver.run(bitdepth, "smoke", smoke, None)
    after = (smoke / "results.md").read_text()
    assert after.split("## Runs")[0] == before.split("## Runs")[0]
    assert "already complete (skipped)" in after.split("## Runs")[1]
