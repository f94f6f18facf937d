"""The ``eqprop`` command line: train, presets, plot, topology, reproduce, bench.

Every problem a user can fix ends with exit status 2 and one line on stderr naming it and
the fix; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from eqprop import config as cfg
from eqprop.cli_options import add_data_dir_option, add_ray_options, add_set_option
from eqprop.errors import EqpropError, Interrupted
from eqprop.metrics import SMOOTH


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"eqprop: error: {message} (see '{self.prog} --help')\n")


def _train(args: argparse.Namespace) -> int:
    from eqprop import runs
    from eqprop.metrics import held_out_error, held_out_key, held_out_label

    options = runs.RunOptions(
        data_dir=args.data_dir, quiet=args.quiet, tensorboard=args.tensorboard, announce=True
    )
    if args.tensorboard:
        runs.require_tensorboard()  # fail before a run directory is created
    created = None
    if args.resume:
        if args.preset or args.config:
            raise EqpropError(
                "--resume continues a run with its saved config; drop --preset "
                "and --config (only --set epochs=N may extend it)"
            )
        if args.out:
            raise EqpropError(
                "--resume continues a run in its own directory; drop --out (copy the directory "
                "to move it)"
            )
        if args.data:
            raise EqpropError(
                "--resume trains on the data file the run started with (data.path in its "
                "config.toml, checked against its data.sha256); drop --data"
            )
        run_dir = Path(args.resume)
        overrides = cfg.parse_overrides(args.set)
        if set(overrides) - {"epochs", "train.epochs"}:
            raise EqpropError(
                "with --resume only --set train.epochs=N is allowed (to train longer); "
                "start a new run to change anything else"
            )
        epochs = next(iter(overrides.values()), None)
        device = args.device  # None: where it ran; another device: a note, then on
    else:
        preset = args.preset or "digits"
        sets = list(args.set) + ([f'train.device="{args.device}"'] if args.device else [])
        data = {} if args.data is None else _data_changes(args.data, args.set)
        config = cfg.resolve(preset, args.config, sets).override(data)
        name = args.preset or (Path(args.config).stem if args.config else preset)
        default = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        runs.check_path(default if args.out is None else args.out, "--out")
        out = default if args.out is None else Path(args.out)
        runs.check_new_run_dir(out)  # cheap path checks first,
        runs.check_run(config, options)  # then the device, the data, the sizes, the memory
        existed = out.is_dir()
        run_dir = created = runs.start_run(config, out)
        epochs = device = None
    try:
        records = runs.train_run(run_dir, options, epochs=epochs, device=device)
    except KeyboardInterrupt as exc:
        print(
            f"eqprop: {_stopped(exc)}; continue with: eqprop train --resume {run_dir}",
            file=sys.stderr,
        )
        return _exit_status(exc)
    except EqpropError as exc:
        if created is not None and not (created / runs.CHECKPOINT).exists():
            _remove_unstarted(created, existed)  # nothing learnt: let the same command rerun
            raise type(exc)(f"{exc} ({created} was removed: it held no checkpoint)") from None
        raise
    if records:
        last = records[-1]
        held = held_out_label(held_out_key(last))
        print(
            f"done: {last['epoch']} epochs, train error {last['train_error']:.2%}, "
            f"{held} {held_out_error(last):.2%}; plot with: eqprop plot {run_dir}"
        )
    return 0


def _data_changes(path: str, sets: list[str]) -> dict[str, str | None]:
    """The config changes of ``eqprop train --data FILE.npz``: the dataset ``file`` at
    ``path``, the split unset (a file holds its own); a one-line error where ``--set``
    gives one of them too."""
    given = {cfg.canonical_key(key) for key in cfg.parse_overrides(sets)}
    clash = sorted(given & {"data.dataset", "data.path", "data.split"})
    if clash:
        raise EqpropError(f"--data FILE sets {clash[0]} itself; drop --set {clash[0]}")
    if not path:
        raise EqpropError("--data is empty; give the path of an .npz file")
    return {"data.dataset": cfg.FILE, "data.path": path, "data.split": None}


def _remove_unstarted(run_dir: Path, keep_empty: bool) -> None:
    """Remove a run directory this command created and that holds no checkpoint."""
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    if keep_empty:
        run_dir.mkdir(exist_ok=True)


def _presets(args: argparse.Namespace) -> int:
    if args.name is not None:  # every field, defaults included: a config file to start from
        print(cfg.resolve(args.name).to_toml(), end="")
        return 0
    for name in cfg.preset_names():
        print(f"{name:24s} {cfg.preset(name).get('description', '')}")
    return 0


def _topology(args: argparse.Namespace) -> int:
    from eqprop.runs import build_topology

    config = cfg.resolve(args.preset, args.config, args.set)
    if config.topology.family == cfg.CONV:
        counts = _conv_counts(config.topology)
    else:
        counts = build_topology(config).counts()
    if args.json:
        print(json.dumps(counts, indent=2))
    else:
        for key, value in counts.items():
            shown = f"{value:.6f}" if isinstance(value, float) else value
            print(f"{key:16s} {shown}")
    return 0


def _conv_counts(section: cfg.TopologySection) -> dict[str, int | str]:
    """What ``eqprop topology`` prints of a conv network: its layers' shapes, its neurons
    (inputs included), weights (kernel and matrix entries) and biases (one per channel of a
    conv layer, per neuron of a dense one)."""
    shapes = section.layer_shapes()
    return {
        "family": cfg.CONV,
        "shapes": "-".join("x".join(map(str, shape)) for shape in shapes),
        "neurons": sum(section.layer_sizes()),
        "weights": section.conv_weights(),
        "biases": sum(shape[0] for shape in shapes[1:]),
    }


def _plot(args: argparse.Namespace) -> int:
    from eqprop.plots import epoch_rates_figure, errors_figure, layer_rates_figure, save_figure
    from eqprop.runs import check_output_dir, read_config, read_layer_rates, read_metrics

    if args.smooth < 0:
        raise EqpropError(f"--smooth must be >= 0 (a half-window in batches), got {args.smooth}")
    if args.per_epoch and args.smooth != SMOOTH:
        raise EqpropError(
            "--smooth is a window in batches; --per-epoch draws epoch means: drop one"
        )
    runs = [Path(r) for r in args.runs]
    for run in runs:
        read_config(run)  # a clear error if it is not a run directory
    out = Path(args.out) if args.out else (runs[0] if len(runs) == 1 else Path("plots"))
    check_output_dir(out)
    labels = [run.name for run in runs]
    metrics = [(label, read_metrics(run)) for label, run in zip(labels, runs, strict=True)]
    if not args.per_epoch:
        rates = [(label, read_layer_rates(run)) for label, run in zip(labels, runs, strict=True)]
    # everything is read (and checked) before the first figure is written
    written = save_figure(errors_figure(metrics, log=args.log), out / "errors.png", args.pdf)
    if args.per_epoch:
        rates_fig = epoch_rates_figure(metrics)
    else:
        rates_fig = layer_rates_figure(rates, smooth=args.smooth)
    written += save_figure(rates_fig, out / "layer_rates.png", args.pdf)
    for path in written:
        print(path)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    import inspect

    from eqprop.experiments import EXPERIMENTS, experiment, reproduce_flags, runner
    from eqprop.experiments.departures import Departures

    module = experiment(args.experiment)
    if args.scale not in module.SCALES:
        raise EqpropError(
            f"experiment {args.experiment!r} has scales "
            f"{', '.join(module.SCALES)}, not {args.scale!r}"
        )
    departures = Departures(tuple(args.set), fast=args.fast)  # a bad --set fails here
    if args.device is not None:
        _check_device_option(args.device)
    flags = (
        ("--set", args.set),
        ("--fast", args.fast),
        ("--status", args.status),
        ("--results-only", args.results_only),
        ("--publish", args.publish),
        ("--device", args.device),
    )
    has = reproduce_flags(module)
    lacking = [flag for flag, given in flags if given and flag not in has]
    if lacking:
        able = [
            name
            for name in sorted(EXPERIMENTS)
            if name != args.experiment and set(lacking) <= set(reproduce_flags(experiment(name)))
        ]
        raise EqpropError(
            f"experiment {args.experiment!r} has no {', '.join(lacking)} (its runs are not the "
            f"ICONS-style EP runs); these have: {', '.join(able)}"
        )
    takes = "departures" in inspect.signature(runner(module)).parameters
    from eqprop.runs import check_output_dir, check_path

    check_path(args.out, "--out")
    out = Path(args.out)
    if args.publish is not None:
        check_output_dir(Path(args.publish), "--publish")
    if args.status and not takes:
        print(module.status_text(args.scale, out))
        return 0
    if takes:
        from eqprop.experiments import paper_runs as pr

        planned = departures.apply_all(module.planned(args.scale))  # every run's values checked
        if args.status:
            shown = " ".join(["--fast"] * args.fast + [f"--set {s}" for s in args.set])
            print(f"{args.experiment}, scale {args.scale}{' ' + shown if shown else ''}, in {out}:")
            print(pr.status_text(planned, out))
            return 0
        pr.check_planned(planned, out)  # a run directory of another protocol: before writing
        if args.publish is not None:
            from eqprop.experiments.report import check_publishable

            check_publishable(args.experiment, planned, out)
    check_output_dir(out)
    if args.publish is not None and not takes:  # the study renders, checks and copies its stage
        index = module.publish_stage(args.scale, out, Path(args.publish))
        print(f"published to {args.publish}; index: {index}")
        return 0
    data_dir = Path(args.data_dir) if args.data_dir else None
    placement = _placement(args, module)
    results_only = args.results_only or args.publish is not None
    if takes:
        kwargs = {"departures": departures, "results_only": results_only, "device": args.device}
    else:
        kwargs = {"results_only": True} if results_only else {}
    if placement is not None:
        kwargs["placement"] = placement
    results = runner(module)(args.scale, out, data_dir, **kwargs)
    print(results)
    if args.publish is not None:
        from eqprop.experiments.report import publish

        index = publish(args.experiment, args.scale, departures, out, Path(args.publish))
        print(f"published to {args.publish}; index: {index}")
    return 0


def _check_device_option(device: str) -> None:
    """A one-line error for a ``--device`` that is not ``cpu``, ``cuda`` or ``cuda:N``, or
    names a GPU this machine lacks."""
    from eqprop.runs import check_device

    if device != "cpu" and not re.fullmatch(r"cuda(:[0-9]+)?", device):
        raise EqpropError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    check_device(device)


def _placement(args: argparse.Namespace, module):
    """Where the experiment's runs go (:class:`eqprop.sweeps.placement.Placement`): Ray Tune
    trials (a local instance, or the cluster at ``--address``) when the experiment runs its
    trials as tasks and Ray is installed, unless ``--no-ray``; None for an experiment that
    runs in this process only (the Ray flags are then an error)."""
    import importlib.util
    import inspect

    from eqprop.experiments import runner
    from eqprop.sweeps.placement import Placement

    given = [flag for flag, value in _ray_flags(args) if value is not None]
    if "placement" not in inspect.signature(runner(module)).parameters:
        if given:
            raise EqpropError(
                f"experiment {args.experiment!r} runs in this process only; drop {', '.join(given)}"
            )
        return None
    have_ray = importlib.util.find_spec("ray") is not None
    if args.address is not None and not have_ray:
        raise EqpropError(
            "eqprop reproduce --address needs Ray; install it with: pip install 'eqprop[ray]'"
        )
    return Placement(
        ray=have_ray and not args.no_ray,
        address=args.address,
        trials_at_once=0 if args.trials_at_once is None else args.trials_at_once,
        cpus_per_trial=1 if args.cpus_per_trial is None else args.cpus_per_trial,
        retries=2 if args.retries is None else args.retries,
    )


def _ray_flags(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The Ray options of ``eqprop reproduce`` and their values (None: not given)."""
    return [
        ("--address", args.address),
        ("--trials-at-once", args.trials_at_once),
        ("--cpus-per-trial", args.cpus_per_trial),
        ("--retries", args.retries),
        ("--no-ray", True if args.no_ray else None),
    ]


def _bench(args: argparse.Namespace) -> int:
    from eqprop.bench import engine as bench
    from eqprop.bench.settings import DEFAULT_PRESETS, BenchOptions

    for name in args.preset or []:
        cfg.preset(name)  # an unknown preset fails here, with the list of names
    _check_device_option(args.device)
    if args.out is not None:
        from eqprop.runs import check_writable_file

        check_writable_file(args.out)  # before the benchmark, not after it
    options = BenchOptions(
        batches=args.batches,
        naive_batches=args.naive_batches,
        steps=args.steps,
        naive_steps=args.naive_steps,
        device=args.device,
        threads=args.threads,
        memory=not args.no_memory,
        conv=args.conv,
    )
    presets = args.preset or ([] if args.conv else list(DEFAULT_PRESETS))
    bench.main(presets, options, args.out)
    return 0


def _check_gradient(args: argparse.Namespace) -> int:
    from eqprop import gradcheck

    if args.run is not None:
        given = [f for f, v in (("--preset", args.preset), ("--config", args.config)) if v]
        if given:
            raise EqpropError(
                f"check-gradient --run checks the run's own network and config; drop "
                f"{', '.join(given)} (--set may still change its estimator or nudging)"
            )
        which = "best" if args.best else "latest"
        result, trained = gradcheck.check_run(
            args.run, args.examples, args.beta, args.data_dir, which, cfg.parse_overrides(args.set)
        )
        config = trained.config
        what = f"trained network of {args.run} ({which}: epoch {trained.epoch})"
    else:
        if args.best:
            raise EqpropError("--best picks a run's best epoch: give the run with --run DIR")
        config = cfg.resolve(args.preset or "digits", args.config, args.set)
        beta = 1e-4 if args.beta is None else args.beta
        result = gradcheck.check_config(config, args.examples, beta, args.data_dir)
        what = f"initial network of {args.preset or args.config or 'digits'}"
    print(
        f"EP estimate ({config.estimator.kind}, {config.nudged.nudging} nudging) against "
        f"-dC/dtheta by the adjoint method, {what}:"
    )
    for line in result.lines():
        print("  " + line)
    return 0


def _bench_solvers(args: argparse.Namespace) -> int:
    from eqprop.bench import solvers as solver_bench

    for name in args.preset or []:
        cfg.preset(name)  # an unknown preset fails here, with the list of names
    solvers = tuple(args.solver or solver_bench.DEFAULT_SOLVERS)
    for spec in solvers:
        solver_bench.parse_solver(spec)  # an unknown solver or a bad step fails here
    options = solver_bench.SolverBenchOptions(
        solvers=solvers,
        tol=args.tol,
        cap=args.cap,
        sample=args.sample,
        limit=args.limit,
        threads=args.threads,
        data_dir=args.data_dir,
        quiet=args.quiet,
    )
    solver_bench.main(args.preset or list(solver_bench.DEFAULT_PRESETS), options, args.out)
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``eqprop`` command."""
    from eqprop.experiments import EXPERIMENTS

    parser = _Parser(prog="eqprop", description="Equilibrium propagation on any topology.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    def config_args(p: argparse.ArgumentParser, default_preset: str | None) -> None:
        p.add_argument(
            "--preset", default=default_preset, help="a bundled preset (see 'eqprop presets')"
        )
        p.add_argument("--config", help="a TOML config file (applied over the preset)")
        add_set_option(p)

    p = sub.add_parser(
        "train",
        help="train a network (default preset: digits)",
        epilog="Your own topology: --set topology.family=file --set topology.path=EDGES.txt "
        "(one edge 'i j' of global neuron indices per line; docs/api.md).",
    )
    config_args(p, None)
    p.add_argument("--out", help="new run directory (default runs/PRESET-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument(
        "--data",
        metavar="FILE.npz",
        help="train on your own examples: arrays x, y and optionally x_valid, y_valid and/or "
        "x_test, y_test (shortcut for --set data.dataset=file --set data.path=FILE.npz)",
    )
    add_data_dir_option(p)
    p.add_argument(
        "--device",
        help="cpu, cuda or cuda:N (shortcut for --set train.device=...); with --resume, moves "
        "the run there (no longer bit for bit, with a note)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar; one line per epoch")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log to RUN_DIR/tensorboard (pip install 'eqprop[tensorboard]')",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("presets", help="list the bundled presets, or print one's config")
    p.add_argument(
        "name",
        nargs="?",
        help="print this preset's complete config as TOML (every field, defaults included), "
        "to copy into a --config file",
    )
    p.set_defaults(func=_presets)

    p = sub.add_parser("topology", help="print a topology's counts (a conv network's layers)")
    config_args(p, "icons-skip")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_topology)

    p = sub.add_parser("plot", help="plot error curves and per-layer rates of runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="output directory (default: the run, or ./plots)")
    p.add_argument("--pdf", action="store_true", help="also write PDF")
    p.add_argument("--log", action="store_true", help="log-scale error axis")
    p.add_argument(
        "--smooth", type=int, default=SMOOTH, help=f"eq. 3 half-window n (default {SMOOTH})"
    )
    p.add_argument(
        "--per-epoch",
        action="store_true",
        help="draw each layer pair's rate as its mean over each epoch's batches, against "
        "epoch (readable for runs of many thousands of batches)",
    )
    p.set_defaults(func=_plot)

    p = sub.add_parser("reproduce", help="rebuild a figure of the papers")
    p.add_argument("experiment", help=f"one of: {', '.join(sorted(EXPERIMENTS))}")
    p.add_argument(
        "--scale",
        default="smoke",
        help="smoke, quick or full (deep-logic: smoke or full; skipnets also mlp-budget and "
        "paper-mlp)",
    )
    p.add_argument("--out", required=True, help="output directory (rerun to resume)")
    add_data_dir_option(p)
    p.add_argument(
        "--device",
        help="cpu, cuda or cuda:N: where the EP runs compute; new runs start there and "
        "resumed ones move there (no longer bit for bit, with a note)",
    )
    ray = add_ray_options(
        p, "for the experiments whose runs are trials (on Ray if it is installed)"
    )
    ray.add_argument(
        "--no-ray", action="store_true", help="run the trials one by one in this process"
    )
    add_set_option(p, " of every run", "; named as a departure in results.md")
    p.add_argument(
        "--fast",
        action="store_true",
        help="the validated fast free phase: SOR (1.7) on networks with even/odd layers, FISTA "
        "elsewhere, to a residual of 1e-3 (at most 1,000 steps); a departure named in results.md",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="train nothing; show each run's epochs, errors, seconds per epoch and time left",
    )
    p.add_argument(
        "--results-only",
        action="store_true",
        help="train nothing; write results.md and the plots from what the runs hold now",
    )
    p.add_argument(
        "--publish",
        metavar="DEST",
        help="train nothing; write the results as --results-only, copy them with each run's "
        "config and metrics into DEST and regenerate the claims index beside it",
    )
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("bench", help="time the engine against the naive dense formulation")
    p.add_argument(
        "--preset",
        action="append",
        help="preset to time (repeatable; default icons-layered and icons-skip)",
    )
    p.add_argument("--batches", type=_positive, default=3, help="timed training batches (3)")
    p.add_argument(
        "--naive-batches", type=_positive, default=1, help="timed batches of the naive engine (1)"
    )
    p.add_argument("--steps", type=_positive, help="free steps instead of the paper's 500")
    p.add_argument(
        "--naive-steps",
        type=_positive,
        help="time the naive free phase at this many steps and scale linearly (faster)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: fastest on a probe)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    p.add_argument(
        "--conv",
        action="store_true",
        help="time the conv networks' step (conv-mnist's, and Ernoult et al.'s 32-64 maps) "
        "against their convolutions alone; without --preset, only those",
    )
    p.add_argument("--out", metavar="FILE.json", help="also write the results as JSON")
    p.set_defaults(func=_bench)

    p = sub.add_parser(
        "check-gradient",
        help="the EP estimate of a config against the true gradient (cosine, norm ratio)",
    )
    config_args(p, None)
    p.add_argument("--examples", type=_positive, default=8, help="training examples used (8)")
    p.add_argument(
        "--beta",
        type=_positive_float,
        default=None,
        help="nudging strength for the check (1e-4; with --run, the run's own)",
    )
    p.add_argument(
        "--run",
        metavar="DIR",
        help="check the trained network of this run directory (its latest checkpoint) with "
        "its own estimator and nudging, instead of a config's initial network",
    )
    p.add_argument("--best", action="store_true", help="with --run: its best epoch instead")
    add_data_dir_option(p)
    p.set_defaults(func=_check_gradient)

    p = sub.add_parser(
        "bench-solvers",
        help="a real epoch (training + held-out evaluation) per free-phase solver, beside the "
        "paper protocol",
    )
    p.add_argument(
        "--preset", action="append", help="preset (repeatable; default icons-layered, icons-skip)"
    )
    p.add_argument(
        "--solver",
        action="append",
        metavar="NAME[:EPS]",
        help="free-phase solver, optionally with its step size, or 'fast' (what reproduce --fast "
        "picks for each preset) (repeatable; default sor:1.7 and fista, each on the presets it "
        "applies to)",
    )
    p.add_argument("--tol", type=_positive_float, default=1e-3, help="residual tolerance (1e-3)")
    p.add_argument("--cap", type=_positive, default=1000, help="step cap per phase (1000)")
    p.add_argument(
        "--sample", type=_positive, default=20, help="batches timed at the paper protocol (20)"
    )
    p.add_argument("--limit", type=_positive, help="first N examples of each split (all)")
    p.add_argument("--threads", type=_positive, default=2, help="torch threads (2)")
    add_data_dir_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", metavar="FILE.json", help="also write the results as JSON")
    p.set_defaults(func=_bench_solvers)

    # the sweep command's options live beside its code; Ray is imported only to run
    from eqprop.sweeps import command as sweep

    p = sub.add_parser(
        "sweep", help="run a grid of configs as trials on Ray (pip install eqprop[ray])"
    )
    sweep.configure_parser(p)
    p.set_defaults(func=sweep.run_from_cli)
    return parser


#: the stop signal the command received last: Ray turns an interrupt raised inside its own
#: calls into a plain KeyboardInterrupt, so the exception alone may not say which it was
_received: list[int] = []


def _signum(exc: KeyboardInterrupt) -> int:
    """The signal that stopped the command: the exception's, else the last one received,
    else SIGINT (Python's own Ctrl-C)."""
    return getattr(exc, "signum", None) or (_received[-1] if _received else signal.SIGINT)


def _stopped(exc: KeyboardInterrupt) -> str:
    """How the process was stopped, for the last line it prints."""
    signum = _signum(exc)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def _exit_status(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM (``128 + signum``)."""
    return 128 + _signum(exc)


def _raise_interrupted(signum, frame) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eqprop`` command; returns the exit status. SIGTERM is handled
    like Ctrl-C (training stops after its batch with a checkpoint) and ends with 143."""
    previous = None
    _received.clear()
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
            previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except EqpropError as exc:
        print(f"eqprop: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(
            f"eqprop: {_stopped(exc)}; runs keep their last checkpoint (rerun the command to "
            "continue)",
            file=sys.stderr,
        )
        return _exit_status(exc)
    except BrokenPipeError:  # the reader went away (eqprop presets | head -1): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
