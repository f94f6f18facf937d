"""The benchmark record as a table: one row per preset, its details, the conv networks."""

from __future__ import annotations

from eqprop.bench.conv_steps import CONV_BATCH

HEADER = (
    f"{'preset':16s} {'layout':6s} {'ms/step':>8s} {'bound ms':>8s} {'ratio':>6s} "
    f"{'s/batch':>8s} {'s/epoch':>8s} {'naive s/b':>9s} {'speedup':>8s} {'cpu spd':>8s} "
    f"{'peak MiB':>8s}"
)


def format_row(entry: dict) -> str:
    """One table row of a preset."""
    memory = entry.get("memory", {}).get("peak_rss_mib")
    mem = f"{memory:8.0f}" if memory is not None else f"{'-':>8s}"
    return (
        f"{entry['preset']:16s} {entry['layout']:6s} {entry['ms_per_step']:8.3f} "
        f"{entry['lower_bound_ms']:8.3f} {entry['step_over_bound']:6.2f} "
        f"{entry['s_per_batch']:8.3f} {entry['s_per_epoch']:8.0f} "
        f"{entry['naive']['s_per_batch']:9.2f} {entry['speedup']:7.1f}x "
        f"{entry['cpu']['speedup']:7.1f}x {mem}"
    )


def format_table(record: dict) -> str:
    """The human-readable table of a benchmark record."""
    m, s = record["machine"], record["settings"]
    lines = [
        f"eqprop bench: torch {m['torch']}, device {m['device']}, {m['cpu_count']} CPU cores, "
        f"torch threads {m['torch_threads']}, load average {m['load_average_before'][0]:.2f} "
        f"before / {m['load_average_after'][0]:.2f} after",
    ]
    if record["presets"]:
        lines += [
            f"settings: batch {s['batch_size']}, eps {s['eps']}, {s['free_steps']} free + "
            f"{s['nudged_steps']} nudged steps, float32; epoch = {s['epoch_examples']} "
            f"examples; {s['batches']} timed batches (ours), {s['naive_batches']} (naive)",
            "wall-clock columns; 'cpu spd': the speedup in process CPU time (details below)",
            HEADER,
            *(format_row(e) for e in record["presets"]),
            f"'speedup', 'cpu spd': naive / ours, where {record['naive_engine']}",
            "",
            format_call_costs(record.get("cost_model")),
        ]
    for e in record["presets"]:
        c = e["cpu"]
        lines.append(
            f"{e['preset']} ({e['nudging']} nudging, {e['estimator']}): {e['naive']['note']}; "
            f"estimate + update {e['update_ms']:.1f} ms/batch"
        )
        lines.append(
            f"  CPU time: {c['ms_per_step']:.3f} ms/step, bound {c['lower_bound_ms']:.3f} ms, "
            f"ratio {c['step_over_bound']:.2f}, {c['s_per_batch']:.3f} s/batch, "
            f"{c['s_per_epoch']:.0f} s/epoch, naive {c['naive_s_per_batch']:.2f} s/batch, "
            f"speedup {c['speedup']:.1f}x"
        )
        for name, t in e.get("layouts", {}).items():
            lines.append(
                f"  layout {name:6s}: {t['ms_per_step']:.3f} ms/step (CPU "
                f"{t['cpu']['ms_per_step']:.3f}), bound {t['lower_bound_ms']:.3f} ms (CPU "
                f"{t['cpu']['lower_bound_ms']:.3f}), {t['products']} products "
                f"({t['csr_products']} CSR); one dense product per stored block: "
                f"{t['whole_blocks_bound_ms']:.3f} ms (CPU {t['cpu']['whole_blocks_bound_ms']:.3f})"
            )
        if "memory" in e:
            mem = e["memory"]
            lines.append(
                f"  peak RSS {mem['peak_rss_mib']:.0f} MiB (ru_maxrss; VmHWM "
                f"{mem['vm_hwm_mib']:.0f} MiB; {mem['rss_after_imports_mib']:.0f} MiB after "
                f"imports; {mem['examples']} examples, {mem['batches']} batches)"
            )
        for t in e["targets"]:
            verdict = "met" if t["met"] else "MISSED"
            lines.append(
                f"  target {t['what']} {t['target']} ({t['clock']} time): {t['measured']} {verdict}"
            )
    if "conv" in record:
        lines.append(
            f"conv networks (batch {CONV_BATCH}, float32, free steps): a step against its "
            f"convolutions and matrix products alone"
        )
        lines += [format_conv_row(e) for e in record["conv"]]
    return "\n".join(lines)


def format_conv_row(entry: dict) -> str:
    """One line of a conv network's step timing (wall clock, then process CPU time)."""
    c = entry["cpu"]
    maps = " -> ".join("x".join(map(str, shape)) for shape in entry["shapes"])
    return (
        f"  {entry['network']} ({maps}): {entry['ms_per_step']:.3f} ms/step, bound "
        f"{entry['lower_bound_ms']:.3f} ms, ratio {entry['step_over_bound']:.2f}; CPU time "
        f"{c['ms_per_step']:.3f} ms/step, bound {c['lower_bound_ms']:.3f} ms, ratio "
        f"{c['step_over_bound']:.2f}"
    )


def format_call_costs(costs: dict | None) -> str:
    """The details line of the plan's cost model: measured here against calibrated."""
    if costs is None:
        return "cost model: not measured (not on CPU; elsewhere the plan counts multiply-adds only)"
    c = costs["calibrated"]
    return (
        f"cost model (multiply-adds per example at batch {costs['batch']}, {costs['threads']} "
        f"thread{'s' * (costs['threads'] != 1)}, CPU time): a product call costs "
        f"{costs['dense_call']:,.0f} dense ({costs['dense_call_us']:.1f} us) and "
        f"{costs['csr_call']:,.0f} CSR ({costs['csr_call_us']:.1f} us) measured here, "
        f"calibrated {c['dense_call']:,.0f} and {c['csr_call']:,.0f}; a CSR non-zero "
        f"{costs['sparse_cost']:.1f}, calibrated {c['sparse_cost']:.1f}"
    )
