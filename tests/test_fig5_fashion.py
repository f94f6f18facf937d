"""The p sweep on harder data (``fig5-fashion``), smoke scale."""

from __future__ import annotations

import numpy as np

from eqprop.experiments import driver, experiment, fig5_fashion
from eqprop.metrics import held_out_error
from eqprop.runs import read_config, read_metrics


def test_smoke_study_tables_the_runs_mean_and_spread_over_seeds(tmp_path):
    assert experiment("fig5-fashion") is fig5_fashion
    results = driver.run(fig5_fashion, "smoke", tmp_path, None)
    assert (tmp_path / "errors_vs_p.png").stat().st_size < 300_000
    text = results.read_text()
    measured = text.split("## Measurements")[1].split("## The paper's claims")[0]
    rows = [ln for ln in measured.splitlines() if ln.startswith(("| B |", "| p_"))]
    ps = fig5_fashion.p_values("smoke")
    assert len(rows) == 1 + len(ps) == 5
    assert all(row.split(" | ")[2] == "3" for row in rows)  # three seeds each

    # the row of the largest p: mean ± sd of the three runs' one-epoch errors and gap
    name = f"p_{ps[-1]:.3g}"
    first = [read_metrics(tmp_path / f"{name}-s{s}")[0] for s in fig5_fashion.SEEDS]
    train = np.array([r["train_error"] for r in first])
    test = np.array([held_out_error(r) for r in first])
    cells = rows[-1].split(" | ")
    assert cells[3] == f"{100 * train.mean():.2f} ± {100 * train.std(ddof=1):.2f}%"
    assert cells[4] == f"{100 * test.mean():.2f} ± {100 * test.std(ddof=1):.2f}%"
    gap = test - train
    assert cells[5].rstrip(" |") == f"{100 * gap.mean():.2f} ± {100 * gap.std(ddof=1):.2f} points"

    config = read_config(tmp_path / f"{name}-s2")
    assert config.topology.p == ps[-1] and config.topology.seed == 2 and config.train.seed == 2
    claims = text.split("## The paper's claims")[1]
    assert "**not yet measured** | at scale `smoke` only: gap against p: rank correlation" in claims
