"""The ICONS-paper experiments (fig3, fig4, fig5) at smoke scale: files, tables, resuming."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from md_tables import claim_verdicts, table_rows

from eqprop import config as cfg
from eqprop.errors import ConfigError
from eqprop.experiments import driver, experiment, fig3, fig4, fig5, runner
from eqprop.experiments import paper_runs as pr
from eqprop.experiments.claims import NOT_YET
from eqprop.metrics import HELD_OUT_ERROR, held_out_error, record_metric
from eqprop.plots import LogTicks, epoch_rates_figure, errors_figure, network_label, sizes_label
from eqprop.runs import CHECKPOINT, METRICS, read_layer_rates, read_metrics, start_run, train_run

MAX_PNG = 300_000


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch, one_thread):
    """One torch thread (conftest), and no run selection from the environment."""
    monkeypatch.delenv(pr.ONLY_ENV, raising=False)


def run_state(out: Path) -> dict[str, tuple[int, str]]:
    """(mtime, content) of every run's metrics and checkpoint."""
    state = {}
    for path in sorted(out.glob(f"*/{METRICS}")) + sorted(out.glob(f"*/{CHECKPOINT}")):
        state[str(path.relative_to(out))] = (path.stat().st_mtime_ns, path.read_bytes())
    return state


def check_pngs(out: Path, names: list[str]) -> None:
    for name in names:
        path = out / name
        assert path.exists(), name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 0 < path.stat().st_size < MAX_PNG


@pytest.fixture
def saved_figures(monkeypatch) -> dict:
    """The figures the experiments save, by file name (the last one of each name)."""
    figures = {}
    save = pr.save_png

    def capture(fig, path, *args, **kwargs):
        figures[Path(path).name] = fig
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(pr, "save_png", capture)
    return figures


def legend_labels(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]


def assert_legends_outside_the_data(fig) -> None:
    """Every legend lies to the right of every panel: it covers no data."""
    fig.canvas.draw()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for legend in legends:
        box = legend.get_window_extent()
        assert all(box.x0 >= ax.get_window_extent().x1 for ax in fig.axes)


def run_twice(module, out: Path) -> str:
    """Run the smoke scale, check that a rerun leaves every run untouched, return results."""
    results = runner(module)("smoke", out, None)
    assert results == out / "results.md"
    before = run_state(out)
    assert before
    again = runner(module)("smoke", out, None)
    assert run_state(out) == before
    return again.read_text()


def test_registry_and_full_scale_is_the_paper_protocol():
    for name, module in (("fig3", fig3), ("fig4", fig4), ("fig5", fig5)):
        assert experiment(name) is module
        assert module.SCALES == ("smoke", "quick", "full")
    # full: the presets unchanged, so "eqprop train --preset icons-skip --out OUT/C" matches
    full = dict(fig3.planned("full"))
    assert [name for name, _ in fig3.planned("full")] == ["C", "A", "A-authors", "B"]
    for name, preset in (
        ("A", "icons-layered-perlayer"),
        ("A-authors", "icons-layered-perlayer-authors"),
        ("B", "icons-layered"),
        ("C", "icons-skip"),
    ):
        assert full[name] == cfg.resolve(preset)
        assert full[name].nudged.nudging == "icons"
    c = full["C"]
    assert (c.train.epochs, c.data.limit, c.free.steps) == (250, None, 500)
    quick3 = dict(fig3.planned("quick"))
    assert {(q.data.limit, q.free.steps, q.train.epochs) for q in quick3.values()} == {
        (10_000, 100, 5)
    }
    quick = dict(fig4.planned("quick"))
    assert quick["A"].update.lr == full["A"].update.lr
    assert quick["A"].free.steps == full["A"].free.steps // 5
    assert quick["deep-skip"].free.steps == cfg.resolve("frontiers-skip-deep").free.steps // 5
    assert all(c.data.dataset == "mnist" and c.data.limit > 0 for c in quick.values())
    for scale, count in (("smoke", 7), ("quick", 10), ("full", 13)):
        ps = fig5.p_values(scale)
        assert len(ps) == count and ps[0] == pytest.approx(1e-5) and ps[-1] == pytest.approx(0.9)
        assert np.allclose(np.diff(np.log(ps)), np.log(ps[1] / ps[0]))
    swept = dict(fig5.planned("full"))
    c = swept[fig5.run_name(0.9)]
    top = c.topology
    assert (top.family, top.n, top.p, top.a) == ("icons", None, 0.9, 0.05)
    assert (c.update.lr, c.train.epochs, c.nudged.nudging) == (0.02, 1, "icons")
    assert swept["B"] == cfg.resolve("icons-layered", None, ["epochs=1"])
    smoke = dict(fig3.planned("smoke"))
    assert smoke["C"].data.dataset == "digits"
    assert smoke["C"].topology.p == pytest.approx(0.0756, abs=1e-4)


def test_rate_summary_ignores_zero_batches():
    rates = np.array([[1e-3, 4e-3], [1e-3, 0.0], [np.nan, 4e-3], [1e-3, 0.0]])
    s = pr.summarize_rates(rates, first=2)
    assert s.mean.tolist() == [1e-3, 4e-3] and s.first.tolist() == [1e-3, 4e-3]
    assert s.zero_output == 0.5 and s.batches == 4
    assert pr.ratios(s.mean).tolist() == [4.0]
    assert pr.spread(np.array([1e-3, 1e-1])) == pytest.approx(1.0)
    assert np.isnan(pr.spread(np.array([1e-3, 0.0])))
    assert pr.summarize_rates(np.zeros((0, 0))) is None


def test_fig3_smoke(tmp_path, saved_figures):
    text = run_twice(fig3, tmp_path)
    check_pngs(tmp_path, ["errors.png", "errors_zoom.png"])
    # the legend names each network as it ran (smoke: 64-32x3-10 on the digits)
    labels = legend_labels(saved_figures["errors.png"])
    assert labels[:4] == [
        "A: 64-32x3-10 layered, per-layer rates",
        "A-authors: 64-32x3-10 layered, per-layer rates, bias rate 1",
        "B: 64-32x3-10 layered",
        "C: 64-32x3-10 ICONS skip (p = 7.56%)",
    ]
    assert (
        "8x8 digits (icons split), first 300 examples"
        in saved_figures["errors.png"].axes[0].get_title()
    )
    assert_legends_outside_the_data(saved_figures["errors.png"])
    rows = table_rows(text, "| network | preset | epochs |")
    assert [r[0] for r in rows] == ["A", "A-authors", "B", "C"]
    assert all(r[2] == "3/3" for r in rows)
    assert all(re.fullmatch(r"\d+\.\d\d%", r[3]) for r in rows)
    best = min(r["train_error"] for r in read_metrics(tmp_path / "A"))
    line = next(line for line in text.splitlines() if line.startswith("| The layered network "))
    assert f"A: lowest train_error {100 * best:.2f}% in 3 epochs" in line  # measured
    assert "around 150 epochs" in line and "**not yet measured**" in line  # smoke: no verdict
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {"A", "A-authors", "B", "C"}


def test_fig3_resumes_an_existing_run_and_extends_epochs(tmp_path, monkeypatch):
    # A run directory made by hand (as 'eqprop train --out OUT/C' would), one epoch done,
    # with an operational field changed: fig3 continues it instead of restarting.
    declared = dict(fig3.planned("smoke"))["C"]
    start_run(declared.override({"epochs": 1, "checkpoint_every": 4}), tmp_path / "C")
    first = train_run(tmp_path / "C")
    monkeypatch.setenv(pr.ONLY_ENV, "C")
    text = driver.run(fig3, "smoke", tmp_path, None).read_text()
    records = read_metrics(tmp_path / "C")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[0] == first[0]
    assert not (tmp_path / "A").exists() and not (tmp_path / "B").exists()
    assert "not selected (EQPROP_ONLY)" in text
    monkeypatch.setenv(pr.ONLY_ENV, "C,D")
    with pytest.raises(ConfigError, match="unknown runs"):
        driver.run(fig3, "smoke", tmp_path, None)
    monkeypatch.setenv(pr.ONLY_ENV, "C")
    # a longer protocol resumes from the checkpoint and keeps the finished epochs
    monkeypatch.setitem(
        fig3.REDUCTIONS, "smoke", pr.Reduction(limit=300, max_free=20, epochs=4, small=True)
    )
    driver.run(fig3, "smoke", tmp_path, None)
    longer = read_metrics(tmp_path / "C")
    assert [r["epoch"] for r in longer] == [1, 2, 3, 4] and longer[:3] == records
    # another protocol in the same directory is refused, not continued
    monkeypatch.setitem(
        fig3.REDUCTIONS, "smoke", pr.Reduction(limit=200, max_free=20, epochs=4, small=True)
    )
    with pytest.raises(ConfigError, match="limit"):
        driver.run(fig3, "smoke", tmp_path, None)


def test_fig4_smoke(tmp_path, saved_figures):
    text = run_twice(fig4, tmp_path)
    check_pngs(tmp_path, ["layer_rates.png", "rate_profile.png"])
    # panel titles and legends come from the configs the runs used, not from fixed text
    planned = dict(fig4.planned("smoke"))
    titles = [ax.get_title() for ax in saved_figures["layer_rates.png"].axes]
    assert len(titles) == len(fig4.ORDER)
    for name, title in zip(fig4.ORDER, titles, strict=True):
        assert title.startswith(f"{name}: {sizes_label(planned[name].topology.sizes)}\n")
    assert titles[3:] == [
        "deep-layered: 64-32x5-10\nlayered",
        "deep-skip: 64-32x5-10\nrewired skip (p = 10%)",
    ]
    assert not any("784" in t for t in titles)
    profile = legend_labels(saved_figures["rate_profile.png"])
    assert profile == [f"{n}: {network_label(planned[n])}" for n in fig4.ORDER]
    for name in ("layer_rates.png", "rate_profile.png"):
        assert_legends_outside_the_data(saved_figures[name])
    for header in ("## Rates over all batches", f"## Rates over the first {pr.FIRST_BATCHES}"):
        assert header in text
    rows = table_rows(text, "| network | batches | mean rate per pair")
    assert [r[0] for r in rows] == list(fig4.ORDER)
    assert len(rows[0][2].split(" / ")) == 4 and len(rows[-1][2].split(" / ")) == 6
    claims = table_rows(text, "| claim | source | verdict |")
    assert len(claims) == len(fig4.CLAIMS)
    assert all(row[2] == "**not yet measured**" for row in claims)  # smoke: not the paper's
    assert claims[0][3].startswith("at scale `smoke` only: B: ratios pair k+1 / pair k ")
    for row in rows:  # the batch counts are those of the run directories
        assert int(row[1].replace(",", "")) == len(read_layer_rates(tmp_path / row[0]))


def test_fig5_smoke(tmp_path, saved_figures):
    text = run_twice(fig5, tmp_path)
    check_pngs(tmp_path, ["fig5.png"])
    fig = saved_figures["fig5.png"]
    assert legend_labels(fig)[:2] == ["64-32x3-10 ICONS skip, p swept", "B: 64-32x3-10 layered"]
    assert_legends_outside_the_data(fig)
    for axis in (fig.axes[0].xaxis, fig.axes[1].xaxis, fig.axes[1].yaxis):
        assert isinstance(axis.get_major_locator(), LogTicks)
    rows = table_rows(text, "| network | p |")
    assert [r[0] for r in rows] == ["B"] + [fig5.run_name(p) for p in fig5.p_values("smoke")]
    assert all(re.fullmatch(r"\d+\.\d\d%", r[3]) for r in rows)
    claims = table_rows(text, "| claim | source | verdict |")
    assert [row[2] for row in claims] == ["**not yet measured**"] * len(fig5.CLAIMS)


def test_solvers_smoke(tmp_path):
    from eqprop.experiments import solvers

    assert experiment("solvers") is solvers
    declared = dict(solvers.planned("quick"))
    assert set(declared) == {
        f"{n}-{k}-seed{s}"
        for n, compared in (
            ("B", ["sor"]),
            ("C", ["fista", "damped", "fista-tol1e-4", "fista-tol1e-5"]),
        )
        for k in ("paper", *compared)
        for s in (0, 1)
    }
    damped = declared["C-damped-seed0"].free
    assert (damped.solver, damped.eps, damped.tol) == ("residual", 0.5, 1e-3)
    assert declared["C-paper-seed1"].free.steps == 500 and declared["C-paper-seed1"].train.seed == 1
    fast = declared["C-fista-seed1"]
    assert (fast.free.solver, fast.free.eps, fast.free.tol, fast.train.seed) == (
        "fista",
        0.5,
        1e-3,
        1,
    )
    assert (fast.data.limit, fast.train.epochs) == (10_000, 5)
    sor = declared["B-sor-seed0"]
    assert (sor.free.solver, sor.free.eps, sor.free.tol, sor.nudged.eps) == ("sor", 1.7, 1e-3, 0.5)
    text = run_twice(solvers, tmp_path)
    check_pngs(tmp_path, ["errors_C.png", "errors_B.png"])
    for net, name in (("B", "sor"), ("C", "fista")):
        rows = table_rows(text.split(f"## Network {net}")[1], "| epoch |")
        assert [r[0] for r in rows] == ["1", "2"]
        metrics = [
            read_metrics(tmp_path / f"{net}-{k}-seed{s}")[0]
            for k in ("paper", name)
            for s in (0, 1)
        ]
        assert rows[0][1:5] == [f"{100 * m['train_error']:.2f}%" for m in metrics]
        diff = 100 * (held_out_error(metrics[3]) - held_out_error(metrics[1]))
        assert rows[0][13].startswith(f"{diff:+.2f} (")
        noise = abs(held_out_error(metrics[0]) - held_out_error(metrics[1]))
        assert rows[0][14] == f"{100 * max(noise, solvers.FLOOR):.2f}"
        # each protocol's own largest seed-to-seed difference, beside the verdict
        spreads = []
        for k in (0, 2):
            for key in ("train_error", HELD_OUT_ERROR):
                per_epoch = [
                    abs(record_metric(a, key) - record_metric(b, key))
                    for a, b in zip(
                        read_metrics(tmp_path / f"{net}-{('paper', name)[k // 2]}-seed0"),
                        read_metrics(tmp_path / f"{net}-{('paper', name)[k // 2]}-seed1"),
                        strict=True,
                    )
                ]
                top = max(range(len(per_epoch)), key=per_epoch.__getitem__)
                spreads.append(f"{100 * per_epoch[top]:.2f} (epoch {top + 1})")
        section = text.split(f"## Network {net}: `{name}`")[1].split("## ")[0]
        assert (
            f"- Largest seed-to-seed difference, training / held-out, in points: paper "
            f"{spreads[0]} / {spreads[1]}; {name} {spreads[2]} / {spreads[3]}." in section
        )
    fixed = json.loads((tmp_path / solvers.FIXED_POINT_FILE).read_text())
    assert {k: (v["epoch"], v["eps"]) for k, v in fixed.items()} == {
        name: (2, 0.5) for name in declared
    }
    rows = table_rows(text.split("## What the weights learned")[1], "| network |")
    assert rows[1][:2] == ["C", "fista"]
    assert rows[1][3] == f"{100 * fixed['C-fista-seed1']['error']:.2f}% (epoch 2)"
    estimates = json.loads((tmp_path / solvers.ESTIMATE_FILE).read_text())
    assert {net: (e["run"], e["epoch"], e["reference_steps"]) for net, e in estimates.items()} == {
        "C": ("C-paper-seed0", 2, 2000),
        "B": ("B-paper-seed0", 2, 2000),
    }
    c_rows = estimates["C"]["rows"]
    assert list(c_rows) == ["paper", "fista", "damped", "fista-tol1e-4", "fista-tol1e-5"]
    assert list(estimates["B"]["rows"]) == ["paper", "sor", "sor-tol1e-5"]
    assert c_rows["paper"]["steps_mean"] == 20 and len(c_rows["paper"]["pairs"]) == 4
    # stopped closer to the fixed point, the estimate is closer to the fixed point's
    assert c_rows["fista"]["overall"] > c_rows["fista-tol1e-4"]["overall"]
    assert c_rows["fista-tol1e-4"]["overall"] > c_rows["fista-tol1e-5"]["overall"]
    section = text.split("## How close each free phase")[1].split("## ")[0]
    shown = table_rows(section.split("Network C")[1], "| free phase |")
    assert shown[1][:4] == [
        "fista",
        f"{c_rows['fista']['steps_mean']:.1f} / {c_rows['fista']['steps_max']}",
        f"{c_rows['fista']['residual']:.1e}",
        f"{c_rows['fista']['overall']:.1e} ({c_rows['fista']['overall_median']:.1e})",
    ]
    assert claim_verdicts(text) == [NOT_YET] * len(solvers.CLAIMS)  # smoke: not the paper's
    damped_section = text.split("## Network C: `damped`")[1].split("## ")[0]
    assert "the damped runs are" in damped_section
    steps = read_metrics(tmp_path / "B-sor-seed0")
    cost = table_rows(text, "| run | epochs |")
    row = next(r for r in cost if r[0] == "B-sor-seed0")
    assert row[2] == " / ".join(f"{m['free_steps']:.0f}" for m in steps)


def test_plot_of_one_epoch_shows_a_marker_per_point():
    records = [{"epoch": 1, "train_error": 0.5, "test_error": 0.4}]
    fig = errors_figure([("run", records)])
    lines = fig.axes[0].get_lines()
    assert [ln.get_linestyle() for ln in lines] == ["-", "--"]
    assert all(ln.get_marker() == "o" and len(ln.get_xdata()) == 1 for ln in lines)


JOURNAL_RUNS = Path(__file__).resolve().parents[1] / "docs" / "results" / "journal" / "runs"


def test_journal_rates_figure_of_the_full_runs_is_a_line_per_layer_pair_per_epoch(tmp_path):
    """The journal's Figure 4 bottom row from the committed full-scale runs (metrics only, no
    per-batch files): a line per layer pair (5 hidden layers: 6 pairs) at each finished epoch,
    the epoch's mean rate from metrics.jsonl, log y, x in epochs; a readable PNG."""
    from eqprop.experiments import journal

    configs = dict(journal.planned("full"))
    results = []
    for name, config in configs.items():
        run_dir = JOURNAL_RUNS / name
        records = read_metrics(run_dir) if (run_dir / METRICS).exists() else []
        results.append(pr.RunResult(name, config, run_dir, records, "committed"))
    assert max(len(r.records) for r in results) == 100  # a full run: 300,000 batches
    fig = journal.figures("full", results)["layer_rates.png"]
    axes = fig.axes
    assert len(axes) == len(results)
    for ax, result in zip(axes, results, strict=True):
        assert ax.get_yscale() == "log"
        if not result.records:
            assert "no finished epoch" in ax.get_title() and not ax.get_lines()
            continue
        assert ax.get_xlabel() == "epoch" and ax.get_title() == result.name
        lines = ax.get_lines()
        assert len(lines) == len(result.config.topology.sizes) - 1 == 6
        epochs = [r["epoch"] for r in result.records]
        for k, line in enumerate(lines):
            assert list(line.get_xdata()) == epochs
            assert np.array_equal(line.get_ydata(), [r["layer_rates"][k] for r in result.records])
    legend = axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"layers {k}-{k + 1}" for k in range(6)]
    png = pr.save_png(fig, tmp_path / "layer_rates.png")
    assert png.stat().st_size <= MAX_PNG


def test_epoch_rates_leave_a_gap_where_a_mean_is_not_positive():
    records = [
        {"epoch": 1, "layer_rates": [1e-3, 2e-5]},
        {"epoch": 2},  # an older record without rates
        {"epoch": 3, "layer_rates": [0.0, float("nan")]},
        {"epoch": 4, "layer_rates": [5e-4, 1e-5]},
    ]
    (ax,) = epoch_rates_figure([("run", records)]).axes
    first, second = ax.get_lines()
    assert list(first.get_xdata()) == [1, 3, 4]
    assert np.array_equal(first.get_ydata(), [1e-3, np.nan, 5e-4], equal_nan=True)
    assert np.array_equal(second.get_ydata(), [2e-5, np.nan, 1e-5], equal_nan=True)
    assert first.get_marker() == "o"  # few points: each one marked


@pytest.mark.parametrize(
    "low, high",
    [(1e-4, 1.5e-3), (2.1e-4, 2.9e-4), (3e-4, 4e-3), (80, 91), (1e-12, 1.0), (1e-5, 0.9)],
)
def test_plot_log_ticks_are_neither_missing_nor_crowded(low, high):
    ticks = LogTicks().tick_values(low, high)
    inside = [t for t in ticks if low <= t <= high]
    assert 2 <= len(inside) <= 8, ticks


def test_plots_leave_the_matplotlib_backend_alone(tmp_path):
    """Importing and using eqprop.plots (and saving an experiment PNG) keeps the backend the
    user chose and never starts pyplot."""
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib

        matplotlib.use("svg")
        import eqprop.plots as plots
        from eqprop.experiments import paper_runs

        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        record = {{"epoch": 1, "train_error": 0.5, "test_error": 0.4}}
        fig = plots.errors_figure([("run", [record])])
        paper_runs.save_png(fig, {str(tmp_path / "e.png")!r})
        plots.save_figure(fig, {str(tmp_path / "f.png")!r}, pdf=True)
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        assert "matplotlib.pyplot" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "f.pdf").exists()


def test_solvers_with_some_runs_only_reports_what_finished(tmp_path, monkeypatch):
    """Runs split over processes with EQPROP_ONLY: each process writes what is complete,
    and a network with no finished run gets no figure and no estimate."""
    from eqprop.experiments import solvers

    monkeypatch.setenv(pr.ONLY_ENV, "C-paper-seed0,C-paper-seed1,C-fista-seed0")
    text = solvers.run("smoke", tmp_path, None).read_text()
    assert (tmp_path / "errors_C.png").exists() and not (tmp_path / "errors_B.png").exists()
    assert "errors_C.png" in text and "errors_B.png" not in text
    fista = text.split("## Network C: `fista`")[1].split("## ")[0]
    # one seed of the fast solver is compared beside both paper seeds; the other is "–"
    rows = table_rows(fista, "| epoch |")
    assert [r[0] for r in rows] == ["1", "2"] and rows[0][4] == "–" and rows[0][6] == "–"
    assert "2 epochs compared at seed 0: the fista runs are" in fista
    assert f"({fista.count('(ok)')} of 4 comparisons within)" in fista
    assert "seed-to-seed difference" not in fista  # one fast seed: no spread of its own
    damped = text.split("## Network C: `damped`")[1].split("## ")[0]
    assert "- C: no epoch finished by the paper runs and a damped run yet." in damped
    estimates = json.loads((tmp_path / solvers.ESTIMATE_FILE).read_text())
    assert list(estimates) == ["C"]
    assert "B-sor-seed0" in text and "not selected (EQPROP_ONLY)" in text


def test_solvers_three_seeds_take_the_noise_from_all_paper_seeds():
    """At the full scale each protocol runs at seeds 0, 1 and 2: the allowance of an epoch is
    the largest difference between two paper seeds (or 0.5 points), each seed is compared
    with the paper run of its seed, and paper seed 2 is held to the two-seed criterion of
    seeds 0 and 1."""
    from eqprop.experiments import solvers

    assert solvers.SEEDS["full"] == (0, 1, 2)
    declared = dict(solvers.planned("full"))
    assert {name for name in declared if name.endswith("seed2")} == {
        f"{net}-{k}-seed2"
        for net, keys in (("B", ["paper", "sor"]), ("C", ["paper", "fista", "damped"]))
        for k in keys
    } | {"C-fista-tol1e-4-seed2", "C-fista-tol1e-5-seed2"}
    assert declared["C-fista-seed2"].train.seed == 2
    rng = np.random.default_rng(0)
    errors = {  # run -> (epochs, train / held-out), in fractions
        name: rng.uniform(0.08, 0.14, size=(3, 2)) for name in declared if name.startswith("C-")
    }
    results = [
        pr.RunResult(
            name,
            config,
            Path(name),
            [
                {
                    "epoch": e + 1,
                    "train_error": tr,
                    "test_error": te,
                    "free_steps": 9.0,
                    "wall_time": 1.0,
                }
                for e, (tr, te) in enumerate(errors[name])
            ]
            if name in errors
            else [],
            "already complete",
        )
        for name, config in declared.items()
    ]
    text = solvers.render("full", results)
    section = text.split("## Network C: `fista`")[1].split("## ")[0]
    rows = table_rows(section, "| epoch |")
    paper = np.stack([errors[f"C-paper-seed{s}"] for s in (0, 1, 2)])
    fast = np.stack([errors[f"C-fista-seed{s}"] for s in (0, 1, 2)])
    within = 0
    for e, row in enumerate(rows):
        assert len(row) == 21 and row[0] == str(e + 1)
        for j in (0, 1):  # training, held-out
            cells = row[1 + 10 * j : 11 + 10 * j]
            allowed = max(paper[:, e, j].max() - paper[:, e, j].min(), 0.005)
            assert cells[:6] == [f"{100 * v:.2f}%" for v in (*paper[:, e, j], *fast[:, e, j])]
            for s in range(3):
                diff = fast[s, e, j] - paper[s, e, j]
                ok = abs(diff) <= allowed
                within += ok
                assert cells[6 + s] == f"{100 * diff:+.2f} ({'ok' if ok else 'OUT'})"
            assert cells[9] == f"{100 * allowed:.2f}"
    assert 0 < within < 18  # the case has both outcomes
    assert "3 epochs compared at seeds 0, 1 and 2: the fista runs are" in section
    assert f"({within} of 18 comparisons within)" in section
    means = table_rows(section.split("Mean over the 3 seeds")[1], "| epoch |")
    apart = 0
    for e, row in enumerate(means):
        for j in (0, 1):
            p, f = 100 * paper[:, e, j], 100 * fast[:, e, j]
            diff = f.mean() - p.mean()
            se = np.sqrt((p.var(ddof=1) + f.var(ddof=1)) / 3)
            apart += abs(diff) > 2 * se
            assert row[1 + 3 * j : 4 + 3 * j] == [
                f"{p.mean():.2f} ({p.std(ddof=1):.2f})",
                f"{f.mean():.2f} ({f.std(ddof=1):.2f})",
                f"{diff:+.2f} ({se:.2f})",
            ]
    assert len(means) == 3
    assert f"({6 - apart} of 6)." in section
    own = text.split("## Network C: the paper protocol against its own noise")[1].split("## ")[0]
    shown = table_rows(own, "| epoch |")
    self_within = 0
    for e, row in enumerate(shown):
        for j in (0, 1):
            diff = paper[2, e, j] - paper[0, e, j]
            allowed = max(abs(paper[1, e, j] - paper[0, e, j]), 0.005)
            ok = abs(diff) <= allowed
            self_within += ok
            assert row[1 + 2 * j : 3 + 2 * j] == [
                f"{100 * diff:+.2f} ({'ok' if ok else 'OUT'})",
                f"{100 * allowed:.2f}",
            ]
    assert len(shown) == 3 and 0 < self_within < 6  # the case has both outcomes
    assert f"seed 2 is within the two-seed criterion in {self_within} of 6 comparisons" in own
    # B has no finished paper run: no comparison, no self-check
    assert "## Network B: the paper protocol against its own noise" not in text
    fixed = table_rows(text.split("## What the weights learned")[1], "| network |")
    assert len(fixed[0]) == 5  # network, free phase, seeds 0-2
