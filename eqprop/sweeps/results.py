"""The results of a sweep, read from its trial directories: one row per trial
(``results.csv``), an aggregate over seeds (``aggregate.csv``) and a plot of a metric against
a swept key with error bars over seeds.

Floats are written with ``repr``, so a value read back from the CSV is the exact float the
run recorded.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eqprop.metrics import held_out_error
from eqprop.sweeps.trial import DONE, last_error, read_events, trial_state

#: metrics of each trial row, from its per-epoch records (``final_*``: the last epoch;
#: ``best_*``: the lowest over epochs, ``best_held_out_epoch`` the epoch of
#: ``best_held_out_error``; ``*_held_out_error`` read by :func:`~eqprop.metrics.held_out_error`)
ROW_METRICS = (
    "final_train_error",
    "final_held_out_error",
    "final_official_test_error",
    "best_train_error",
    "best_held_out_error",
    "best_held_out_epoch",
    "final_free_steps",
    "wall_time",
)
#: metrics aggregated over seeds (and the ones a plot can show)
AGGREGATED = (
    "final_held_out_error",
    "best_held_out_error",
    "final_train_error",
    "best_train_error",
    "final_official_test_error",
    "wall_time",
)
STATS = ("mean", "std", "min", "max")
#: the names these metrics had before ``*_held_out_error``, still accepted as a plot metric
RENAMED = {
    "final_test_error": "final_held_out_error",
    "best_test_error": "best_held_out_error",
}


def format_value(value: Any) -> str:
    """A config value as one CSV cell or name fragment: lists as JSON, bools as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def trial_row(name: str, overrides: dict[str, Any], run_dir: Path, root: Path) -> dict[str, Any]:
    """The row of one trial: name, status, its overrides, final and best metrics."""
    from eqprop.runs import read_config, read_metrics

    state = trial_state(run_dir)
    records = read_metrics(run_dir) if state != "not started" else []
    epochs = read_config(run_dir).train.epochs if state != "not started" else None
    row: dict[str, Any] = {"trial": name, "status": state, **overrides}
    row["epochs_done"] = records[-1]["epoch"] if records else 0
    row["epochs"] = epochs
    if records:
        last = records[-1]
        best = min(records, key=lambda r: (held_out_error(r), r["epoch"]))
        row.update(
            final_train_error=last["train_error"],
            final_held_out_error=held_out_error(last),
            final_official_test_error=last.get("official_test_error"),
            best_train_error=min(r["train_error"] for r in records),
            best_held_out_error=held_out_error(best),
            best_held_out_epoch=best["epoch"],
            final_free_steps=last.get("free_steps"),
            wall_time=last.get("wall_time"),
        )
    row["attempts"] = sum(e["event"] == "start" for e in read_events(run_dir))
    row["error"] = last_error(run_dir) if state != DONE else ""
    row["run_dir"] = str(run_dir.relative_to(root)) if run_dir.is_relative_to(root) else run_dir
    return row


def _columns(rows: Sequence[dict], keys: Sequence[str], metrics: Sequence[str]) -> list[str]:
    """Header of a table: the keys, then the metrics some row has, then the rest."""
    present = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    seen = set(keys) | set(metrics)
    rest = list(dict.fromkeys(c for r in rows for c in r if c not in seen))
    head = [c for c in ("trial", "status") if c in rest]
    tail = [c for c in rest if c not in head]
    return head + list(keys) + present + tail


def to_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """CSV text of ``rows`` with ``columns``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row.get(c)) for c in columns])
    return out.getvalue()


def table_csv(rows: Sequence[dict], keys: Sequence[str]) -> str:
    """``results.csv``: one row per trial."""
    trailing = ("epochs_done", "epochs")
    columns = _columns(rows, keys, trailing + ROW_METRICS)
    return to_csv(rows, columns)


def _group_key(row: dict, keys: Sequence[str]) -> str:
    return json.dumps([row.get(k) for k in keys])


def aggregate(
    rows: Sequence[dict], group_keys: Sequence[str], seed_keys: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per combination of ``group_keys`` (the swept keys that are not seeds): how
    many seeds finished and failed, and the mean, sample standard deviation (ddof 1; 0 with
    one seed), minimum and maximum of each :data:`AGGREGATED` metric over the finished
    seeds."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(_group_key(row, group_keys), []).append(row)
    out = []
    for members in groups.values():
        done = [r for r in members if r["status"] == DONE]
        agg: dict[str, Any] = {k: members[0].get(k) for k in group_keys}
        agg["seeds"] = len(done)
        agg["failed"] = sum(r["status"] == "failed" for r in members)
        agg["unfinished"] = len(members) - len(done) - agg["failed"]
        if seed_keys:
            agg["seed_values"] = "; ".join(
                ",".join(format_value(r.get(k)) for k in seed_keys) for r in done
            )
        for metric in AGGREGATED:
            values = [r[metric] for r in done if r.get(metric) is not None]
            if not values:
                continue
            agg[f"{metric}_mean"] = statistics.fmean(values)
            agg[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            agg[f"{metric}_min"] = min(values)
            agg[f"{metric}_max"] = max(values)
        out.append(agg)
    return out


def aggregate_csv(aggregated: Sequence[dict], group_keys: Sequence[str]) -> str:
    """``aggregate.csv``: one row per combination of the non-seed keys."""
    counts = ("seeds", "failed", "unfinished", "seed_values")
    stats = tuple(f"{m}_{s}" for m in AGGREGATED for s in STATS)
    return to_csv(aggregated, _columns(aggregated, group_keys, counts + stats))


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot(
    aggregated: Sequence[dict],
    metric: str,
    key: str,
    other_keys: Sequence[str],
    path: Path,
    *,
    log_x: bool = False,
) -> Path | None:
    """Plot the mean of ``metric`` against the swept ``key``, one line per combination of
    ``other_keys``, error bars one standard deviation over seeds; ``None`` if no trial has
    finished yet."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [a for a in aggregated if a.get(f"{metric}_mean") is not None]
    if not points:
        return None
    xs_all = list(dict.fromkeys(format_value(a[key]) for a in aggregated))
    raw = {format_value(a[key]): a[key] for a in aggregated}
    numeric = _numeric(list(raw.values()))
    lines: dict[str, list[dict]] = {}
    for a in points:
        label = ", ".join(f"{k}={format_value(a[k])}" for k in other_keys)
        lines.setdefault(label, []).append(a)
    percent = metric.endswith("_error") and "wall" not in metric
    scale = 100.0 if percent else 1.0
    fig = Figure(figsize=(6.4, 4.2))  # object-oriented API: the user's backend is left alone
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, members in lines.items():
        if numeric:
            members = sorted(members, key=lambda a: a[key])
            xs = [a[key] for a in members]
        else:
            xs = [xs_all.index(format_value(a[key])) for a in members]
        ys = [a[f"{metric}_mean"] * scale for a in members]
        err = [a[f"{metric}_std"] * scale for a in members]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label or None)
    if not numeric:
        ax.set_xticks(range(len(xs_all)), xs_all)
    elif log_x:
        from eqprop.plots import log_axis

        log_axis(ax.xaxis)
    seeds = max(a["seeds"] for a in points)
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} (%)" if percent else metric)
    ax.set_title(f"{metric} against {key}: mean and std over {seeds} seed(s)")
    if any(lines):
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
