"""Bad inputs through the command line: each ends with exit status 2 and one line on stderr
(no traceback), and leaves every file that was there before byte for byte as it was.

Every case runs the command in its own process. By default that process is forked from a
server that has imported eqprop once (``CliServer``), so that the ~70 cases take seconds, not
minutes; ``EQPROP_CLI_SUBPROCESS=python`` runs each one as ``python -m eqprop.cli`` instead.
The few cases that depend on the interpreter itself (a closed stdout) always do. Cases about
permissions run without root's capabilities to ignore permission bits (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH) when the tests run as root.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomli_w
import torch

from eqprop.config import parse_toml

ROOT = Path(__file__).resolve().parent.parent
#: a tiny digits run: 10 batches an epoch, a checkpoint every 3 batches
TINY = [
    "sizes=[64, 16, 10]",
    "limit=100",
    "n_free=10",
    "n_clamped=3",
    "batch_size=10",
    "epochs=2",
    "checkpoint_every=3",
]
TINY_ARGS = [a for s in TINY for a in ("--set", s)]
#: permission cases drop root's power to ignore permission bits
AS_USER = os.geteuid() == 0
REAL = os.environ.get("EQPROP_CLI_SUBPROCESS") == "python"

#: drops the capabilities that let root ignore permission bits (CAP_DAC_OVERRIDE and
#: CAP_DAC_READ_SEARCH) from this process: it then meets permissions as their owner would
_DROP_DAC = textwrap.dedent(
    r"""
    def drop_dac():
        import ctypes

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]

        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # from the bounding set too, so that an exec keeps it off
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
        header, data = Header(0x20080522, 0), (Data * 2)()
        if libc.capget(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capget")
        keep = ~((1 << 1) | (1 << 2))
        for field in ("effective", "permitted", "inheritable"):
            setattr(data[0], field, getattr(data[0], field) & keep)
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset")
    """
)
exec(_DROP_DAC)

_SERVER = _DROP_DAC + textwrap.dedent(
    r"""
    import importlib, json, os, signal, sys, traceback
    import eqprop.cli, eqprop.runs, eqprop.plots, eqprop.bench.engine, eqprop.bench.solvers
    import sklearn.datasets

    channel = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.chdir(req["cwd"])
                os.environ.clear()
                os.environ.update(req["env"])
                fds = [os.open(os.devnull, os.O_RDONLY)] + [
                    os.open(req[k], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    for k in ("stdout", "stderr")
                ]
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                sys.stdout = open(1, "w", buffering=1, closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                for name, value in req.get("patch", {}).items():
                    module, _, attr = name.rpartition(".")
                    setattr(importlib.import_module(module), attr, value)
                if req.get("hook"):
                    exec(req["hook"], {"__name__": "hook"})
                if req.get("unprivileged"):
                    drop_dac()
                try:
                    code = eqprop.cli.main(req["args"])
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            os._exit(code)
        channel.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        channel.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
    """
)


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.replace("\r", "\n").splitlines() if line.strip()]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("EQPROP_DATA_DIR", None)  # a case names its data directory itself
    return {**env, **(extra or {})}


@dataclass
class Handle:
    """A command started by :class:`CliServer`: its pid (to signal it) and its outcome."""

    server: CliServer
    pid: int
    out: Path
    err: Path
    real: subprocess.Popen | None = None

    def wait(self, timeout: float = 300) -> Result:
        if self.real is not None:
            rc = self.real.wait(timeout=timeout)
        else:
            rc = self.server._reply()["rc"]
        return Result(
            rc, self.out.read_text(errors="replace"), self.err.read_text(errors="replace")
        )


@dataclass
class CliServer:
    """Runs ``eqprop`` commands, each in its own process forked from one that has imported
    eqprop already (or, with ``real``, as ``python -m eqprop.cli``)."""

    logs: Path
    real: bool = REAL
    proc: subprocess.Popen | None = None
    count: int = 0

    def _server(self) -> subprocess.Popen:
        if self.proc is None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=_env(),
                cwd=ROOT,
            )
        return self.proc

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the eqprop command server stopped")
        return json.loads(line)

    def start(
        self,
        args: list[str],
        cwd: Path,
        *,
        env: dict[str, str] | None = None,
        unprivileged: bool = False,
        patch: dict | None = None,
        hook: str | None = None,
        real: bool | None = None,
    ) -> Handle:
        self.count += 1
        out, err = self.logs / f"{self.count}.out", self.logs / f"{self.count}.err"
        # patches and hooks act inside the forked process: they always need the server
        real = (self.real if real is None else real) and not patch and not hook
        if real:

            def drop() -> None:
                if unprivileged:
                    drop_dac()  # noqa: F821 (defined by exec above)

            with open(out, "wb") as fo, open(err, "wb") as fe:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "eqprop.cli", *args],
                    cwd=cwd,
                    env=_env(env),
                    stdin=subprocess.DEVNULL,
                    stdout=fo,
                    stderr=fe,
                    preexec_fn=drop,
                )
            return Handle(self, proc.pid, out, err, proc)
        request = {
            "args": args,
            "cwd": str(cwd),
            "env": _env(env),
            "stdout": str(out),
            "stderr": str(err),
            "unprivileged": unprivileged,
            "patch": patch or {},
            "hook": hook,
        }
        self._server().stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return Handle(self, self._reply()["pid"], out, err)

    def run(self, args: list[str], cwd: Path, **kw) -> Result:
        return self.start(args, cwd, **kw).wait()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def serve(tmp_path_factory, logs: str) -> Iterator[CliServer]:
    """The body of a test module's server fixture: a server logging into a fresh folder
    ``logs``, stopped when the module is done."""
    srv = CliServer(tmp_path_factory.mktemp(logs))
    yield srv
    srv.close()


def world_tmp(prefix: str) -> Path:
    """A fresh directory that an unprivileged user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the SHA-256 of its bytes (``dir`` for directories, the
    mode for what is not a regular file: reading a FIFO would block)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path):  # a FIFO, a device, a dangling link: never opened
                out[os.path.relpath(path, root)] = f"special {os.lstat(path).st_mode:o}"
                continue
            try:
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                out[os.path.relpath(path, root)] = "unreadable"
    return out


def make_run(server: CliServer, where: Path, name: str = "run", *extra: str) -> Path:
    """A finished tiny run; ``extra`` ``--set`` items replace those of :data:`TINY`."""
    changed = {item.partition("=")[0] for item in extra[1::2]}
    tiny = [a for s in TINY if s.partition("=")[0] not in changed for a in ("--set", s)]
    result = server.run(["train", "--quiet", "--out", name, *tiny, *extra], where)
    assert result.rc == 0, result.err
    return where / name


# -- the workspace every case starts from ------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "cli-logs")


@pytest.fixture(scope="module")
def finished_run(server, tmp_path_factory) -> Path:
    """A tiny run with its two epochs done."""
    return make_run(server, tmp_path_factory.mktemp("finished"))


@pytest.fixture(scope="module")
def other_run(server, tmp_path_factory) -> Path:
    """A finished run of another size (its checkpoint does not fit the first)."""
    return make_run(server, tmp_path_factory.mktemp("other"), "run", "--set", "sizes=[64, 20, 10]")


@pytest.fixture(scope="module")
def twin_run(server, tmp_path_factory) -> Path:
    """A finished run of the same shapes with another learning rate and seed."""
    return make_run(
        server, tmp_path_factory.mktemp("twin"), "run", "--set", "lr=0.05", "--set", "seed=1"
    )


#: a sweep of two digits trials (its directory: sweeps/sweep, or --out)
SWEEP = """preset = "digits"
[set]
"train.epochs" = 1
[grid]
"update.lr" = [0.05, 0.1]
"""


@pytest.fixture
def workspace(finished_run, other_run, twin_run):
    """A directory with a finished run ``run`` (and ``other``, of other shapes, and ``twin``,
    of the same shapes, other rate and seed), a file ``afile``, a read-only directory ``ro``
    (holding ``ro/empty``), an unreadable directory ``secret``, config and sweep files."""
    root = world_tmp("eqprop-cli-")
    shutil.copytree(finished_run, root / "run")
    shutil.copytree(other_run, root / "other")
    shutil.copytree(twin_run, root / "twin")
    (root / "sweep.toml").write_text(SWEEP)
    (root / "sweep-into-afile.toml").write_text('out = "afile"\n' + SWEEP)
    (root / "afile").write_text("not a directory\n")
    (root / "latin1.toml").write_bytes("description = 'caf\xe9'\n".encode("latin-1"))
    (root / "bad.toml").write_text("[free\nsteps = 3\n")
    (root / "section.toml").write_text("[paint]\ncolour = 3\n")
    (root / "ro" / "empty").mkdir(parents=True)
    (root / "ro" / "note.txt").write_text("keep\n")
    (root / "secret").mkdir()
    (root / "secret" / "x").write_text("hidden\n")
    for path in (root / "ro" / "empty", root / "ro"):
        path.chmod(0o555)
    (root / "secret").chmod(0o000)
    yield root
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    (root / "secret").chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)


def assert_one_line_error(result: Result, expected: str) -> None:
    assert "Traceback" not in result.err, result.err
    assert result.rc == 2, (result.rc, result.err)
    assert len(result.lines) == 1, result.err
    assert result.lines[0].startswith("eqprop: error: "), result.err
    assert expected in result.lines[0], result.lines[0]


# -- setups: damage done to the workspace before a case ----------------------------------
def truncate_checkpoint(root: Path) -> None:
    path = root / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero_checkpoint(root: Path) -> None:
    path = root / "run" / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def garbage_checkpoint(root: Path) -> None:
    (root / "run" / "checkpoint.pt").write_bytes(os.urandom(4096))


def code_payload(root: Path) -> object:
    """An object whose unpickling would run code (it would create ``root/pwned``)."""

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {root / 'pwned'}",))

    return Payload()


def crafted_checkpoint(root: Path) -> None:
    """A checkpoint whose unpickling would run code (:func:`code_payload`)."""
    torch.save({"trainer": code_payload(root), "wall": 0.0}, root / "run" / "checkpoint.pt")


def tampered_checkpoint(root: Path) -> None:
    """A valid archive whose content no longer matches its stored checksum."""
    path = root / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    assert "digest" in state
    state["trainer"]["weights"][0][0, 0] += 1.0
    torch.save(state, path)


def foreign_checkpoint(root: Path) -> None:
    shutil.copy(root / "other" / "checkpoint.pt", root / "run" / "checkpoint.pt")


def latin1_config(root: Path) -> None:
    (root / "run" / "config.toml").write_bytes("description = 'caf\xe9'\n".encode("latin-1"))


def edited_config(root: Path) -> None:
    path = root / "run" / "config.toml"
    path.write_text(
        path.read_text().replace("sizes = [\n    64,\n    16,", "sizes = [\n    64,\n    20,")
    )
    assert "20" in path.read_text()


def edited_config_values(*changes: tuple[str, object]) -> Callable[[Path], None]:
    """A setup that edits ``run/config.toml`` by hand: each ``(key, value)`` (``section.key``
    or ``description``) set to ``value``."""

    def setup(root: Path) -> None:
        path = root / "run" / "config.toml"
        values = parse_toml(path.read_text(), str(path))
        for key, value in changes:
            section, _, name = key.rpartition(".")
            (values[section] if section else values)[name] = value
        path.write_text(tomli_w.dumps(values))

    return setup


def copied(source: str, target: str) -> Callable[[Path], None]:
    """A setup that copies ``source`` over ``target`` (paths in the workspace)."""
    return lambda root: shutil.copyfile(root / source, root / target)


def removed(*names: str) -> Callable[[Path], None]:
    """A setup that deletes the files ``names`` of the run."""

    def setup(root: Path) -> None:
        for name in names:
            (root / "run" / name).unlink()

    return setup


def zero_best(root: Path) -> None:
    path = root / "run" / "best.pt"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def truncate_best(root: Path) -> None:
    path = root / "run" / "best.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def resaved_best(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """A setup that loads ``run/best.pt``, applies ``change`` to its content (the stored
    checksum kept, where it has one), and saves it again: a valid archive."""

    def setup(root: Path) -> None:
        path = root / "run" / "best.pt"
        saved = torch.load(path, weights_only=True)
        saved = change(saved) or saved
        torch.save(saved, path)

    return setup


def tamper_best(saved: dict) -> None:
    assert "digest" in saved
    next(iter(saved["network"].values())).view(-1)[0] += 1.0


def crafted_best(root: Path) -> None:
    """A best.pt whose unpickling would run code (:func:`code_payload`)."""
    torch.save({"network": code_payload(root), "epoch": 1}, root / "run" / "best.pt")


def torn_metrics(root: Path) -> None:
    """The last line of ``run/metrics.jsonl`` cut short (as by a full disk)."""
    path = root / "run" / "metrics.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])


def partial_mnist(root: Path) -> None:
    """``partial``: the MNIST files but the training labels (links to the real ones)."""
    (root / "partial").mkdir()
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        os.symlink(Path(DATA) / "mnist" / f"{name}.gz", root / "partial" / f"{name}.gz")


def interrupted_start(root: Path) -> None:
    (root / "half").mkdir()
    (root / "half" / ".config.toml.tmp").write_bytes(b"format_version = 2\n[da")


def readonly_run(root: Path) -> None:
    for path in (root / "run", root / "run" / "layer_rates", root / "run" / "free_steps"):
        path.chmod(0o555)


def damaged_metrics_line(root: Path) -> None:
    path = root / "run" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["{not json"] + lines[1:]) + "\n")


def damaged_rates(root: Path) -> None:
    (root / "run" / "layer_rates" / "epoch_0001.npy").write_bytes(b"garbage")


HAS_CUDA = torch.cuda.is_available()
DATA = os.environ.get("EQPROP_DATA_DIR")
DATA = str(Path(DATA).resolve()) if DATA else None  # the cases run elsewhere
HAS_MNIST = bool(DATA) and (Path(DATA) / "mnist").is_dir()


@dataclass(frozen=True)
class Case:
    args: list[str]
    expected: str
    setup: Callable[[Path], None] | None = None
    user: bool = False  # without root's power over permissions (permission cases)
    env: dict = field(default_factory=dict)
    skip: str | None = None


MNIST_784 = ["--set", "dataset='mnist'", "--set", "sizes=[784, 16, 10]"]
#: benchmarks that take seconds (where a case would otherwise run one)
QUICK_BENCH = ["--preset", "digits", "--batches", "1", "--steps", "2", "--naive-steps", "1"]
QUICK_BENCH += ["--threads", "1", "--no-memory"]
QUICK_SOLVERS = ["--preset", "digits", "--solver", "fista", "--limit", "20", "--sample", "1"]
QUICK_SOLVERS += ["--cap", "5", "--threads", "1", "--quiet"]
T = TINY_ARGS


def _replace(path: Path, make) -> None:
    """Put what ``make(path)`` creates in place of the file at ``path``."""
    path.unlink()
    make(path)


CASES = {
    # a new run: where it goes
    "out-is-a-file": Case(["train", "--out", "afile", *T], "--out afile is a file"),
    "out-under-a-file": Case(["train", "--out", "afile/run", *T], "lies under afile"),
    "out-under-read-only": Case(
        ["train", "--out", "ro/new", *T], "cannot create ro/new in ro", user=AS_USER
    ),
    "out-read-only-empty": Case(
        ["train", "--out", "ro/empty", *T], "cannot write into ro/empty", user=AS_USER
    ),
    "out-under-unreadable": Case(
        ["train", "--out", "secret/new", *T], "cannot create secret/new", user=AS_USER
    ),
    "out-exists": Case(["train", "--out", "run", *T], "already exists; resume it"),
    # a new run: values that do not fit the data or the machine
    "sizes-input-width": Case(
        ["train", "--out", "new", "--set", "sizes=[784, 16, 10]"],
        "starts with 784 inputs but digits has 64 features",
    ),
    "sizes-classes": Case(
        ["train", "--out", "new", "--set", "sizes=[64, 16, 5]"],
        "ends with 5 outputs but digits has 10 classes",
    ),
    "mnist-over-digits": Case(
        ["train", "--out", "new", "--set", "dataset='mnist'", "--data-dir", str(DATA)],
        "starts with 64 inputs but mnist has 784 features",
        skip=None if HAS_MNIST else "no MNIST files (EQPROP_DATA_DIR)",
    ),
    "layer-of-1e12": Case(
        ["train", "--out", "new", "--set", "sizes=[64, 1000000000000, 10]"],
        "at most 10,000,000 per layer",
    ),
    "network-beyond-memory": Case(
        ["train", "--out", "new", "--set", "sizes=[64, 9000000, 9000000, 10]"],
        "of memory for its weights and particles",
    ),
    "seed-beyond-64-bits": Case(
        ["train", "--out", "new", "--set", "seed=36893488147419103232"], "does not fit in 64 bits"
    ),
    "topology-seed-beyond-64-bits": Case(
        ["train", "--out", "new", "--set", "topology.seed=18446744073709551616"],
        "does not fit in 64 bits",
    ),
    "n-free-1e20": Case(
        ["train", "--out", "new", "--set", "n_free=100000000000000000000"], "does not fit in 64"
    ),
    "n-free-1e12": Case(
        ["train", "--out", "new", "--set", "n_free=1000000000000"], "more than 1,000,000 steps"
    ),
    "n-clamped-1e9": Case(
        ["train", "--out", "new", "--set", "n_clamped=1000000000"], "nudged.steps = 1000000000"
    ),
    "icons-n-1e10": Case(
        ["train", "--out", "new", "--set", "topology='icons'", "--set", "n=10000000000"],
        "replacements",
    ),
    "icons-p-almost-1": Case(
        ["train", "--out", "new", "--set", "topology='icons'", "--set", "p=0.99999999999999"],
        "replacements",
    ),
    "device-cuda-without-gpu": Case(
        ["train", "--out", "new", "--device", "cuda", *T],
        "no CUDA GPU is available",
        skip="this machine has a CUDA GPU" if HAS_CUDA else None,
    ),
    "device-unknown": Case(["train", "--out", "new", "--device", "tpu"], "train.device must be"),
    "device-cuda-garbage": Case(
        ["train", "--out", "new", "--set", "device='cuda:x'"], "train.device must be"
    ),
    # a new run: config files, presets, --set
    "config-not-utf8": Case(["train", "--out", "new", "--config", "latin1.toml"], "not UTF-8"),
    "config-missing": Case(
        ["train", "--out", "new", "--config", "nope.toml"], "cannot read config file nope.toml"
    ),
    "config-invalid-toml": Case(["train", "--out", "new", "--config", "bad.toml"], "invalid TOML"),
    "config-unknown-section": Case(
        ["train", "--out", "new", "--config", "section.toml"], "unknown config section 'paint'"
    ),
    "preset-unknown": Case(["train", "--out", "new", "--preset", "nope"], "unknown preset 'nope'"),
    "set-unknown-key": Case(["train", "--out", "new", "--set", "colour=3"], "unknown config key"),
    "set-epochs-zero": Case(["train", "--out", "new", "--set", "epochs=0"], "epochs must be >= 1"),
    "set-lr-length": Case(
        ["train", "--out", "new", "--set", "lr=[0.1, 0.2, 0.3]"], "lr has 3 values"
    ),
    "set-without-value": Case(["train", "--out", "new", "--set", "epochs"], "expects key=value"),
    "unknown-option": Case(["train", "--colour", "red"], "unrecognized arguments"),
    "no-command": Case([], "required"),
    # a new run: data directories
    "data-dir-missing": Case(
        ["train", "--out", "new", *MNIST_784, "--data-dir", "nowhere"],
        "mnist: missing train-images-idx3-ubyte.gz",
        env={"EQPROP_CACHE_DIR": "/nonexistent/eqprop-cache"},
    ),
    "data-dir-is-a-file": Case(
        ["train", "--out", "new", *MNIST_784, "--data-dir", "afile"], "is a file, not a directory"
    ),
    "data-dir-unreadable": Case(
        ["train", "--out", "new", *MNIST_784, "--data-dir", "secret"],
        "cannot read the data directory secret",
        user=AS_USER,
    ),
    # resuming
    "resume-missing": Case(["train", "--resume", "nowhere"], "nowhere does not exist"),
    "resume-a-file": Case(["train", "--resume", "afile"], "afile is a file"),
    "resume-not-a-run": Case(["train", "--resume", "ro"], "ro is not a run directory"),
    "resume-interrupted-start": Case(
        ["train", "--resume", "half"], "its start was interrupted", setup=interrupted_start
    ),
    "resume-with-preset": Case(["train", "--resume", "run", "--preset", "digits"], "--resume"),
    "resume-with-bad-device": Case(
        ["train", "--resume", "run", "--device", "tpu"], "train.device must be 'cpu' or"
    ),
    "resume-with-missing-gpu": Case(
        ["train", "--resume", "run", "--device", "cuda"],
        "no CUDA GPU is available; use --device cpu",
        skip="this machine has a CUDA GPU" if HAS_CUDA else None,
    ),
    "resume-with-out": Case(["train", "--resume", "run", "--out", "elsewhere"], "drop --out"),
    "resume-set-lr": Case(["train", "--resume", "run", "--set", "lr=0.5"], "only --set train"),
    "resume-epochs-not-int": Case(
        ["train", "--resume", "run", "--set", "epochs='many'"], "train.epochs must be an integer"
    ),
    "resume-epochs-below-done": Case(  # point 3: was accepted
        ["train", "--resume", "run", "--set", "epochs=1"], "has finished 2 epochs"
    ),
    "resume-truncated-checkpoint": Case(  # point 3: exited 2 but rewrote config.toml
        ["train", "--resume", "run", "--set", "epochs=3"], "is damaged", setup=truncate_checkpoint
    ),
    "resume-zeroed-checkpoint": Case(  # point 2: trained on, exit 0
        ["train", "--resume", "run", "--set", "epochs=3"], "CRC mismatch", setup=zero_checkpoint
    ),
    "resume-garbage-checkpoint": Case(
        ["train", "--resume", "run"], "not a complete checkpoint archive", setup=garbage_checkpoint
    ),
    "resume-crafted-checkpoint": Case(  # point 5: ran the payload
        ["train", "--resume", "run", "--set", "epochs=3"],
        "is not an eqprop checkpoint",
        setup=crafted_checkpoint,
    ),
    "resume-tampered-checkpoint": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "does not match its stored checksum",
        setup=tampered_checkpoint,
    ),
    "resume-foreign-checkpoint": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "does not fit run/config.toml",
        setup=foreign_checkpoint,
    ),
    "resume-config-not-utf8": Case(["train", "--resume", "run"], "not UTF-8", setup=latin1_config),
    "resume-config-edited": Case(
        ["train", "--resume", "run", "--set", "epochs=3"], "does not fit", setup=edited_config
    ),
    "resume-read-only-run": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "cannot write into run",
        setup=readonly_run,
        user=AS_USER,
    ),
    # plot
    "plot-not-a-run": Case(["plot", "ro"], "ro is not a run directory"),
    "plot-out-a-file": Case(["plot", "run", "--out", "afile"], "--out afile is a file"),
    "plot-out-read-only": Case(
        ["plot", "run", "--out", "ro"], "cannot write into ro", user=AS_USER
    ),
    "plot-damaged-metrics": Case(["plot", "run"], "line 1 is damaged", setup=damaged_metrics_line),
    "plot-damaged-rates": Case(["plot", "run"], "epoch_0001.npy is damaged", setup=damaged_rates),
    "plot-negative-smooth": Case(["plot", "run", "--smooth", "-1"], "--smooth must be >= 0"),
    # reproduce, bench, topology, presets
    "reproduce-out-a-file": Case(["reproduce", "fig3", "--out", "afile"], "afile is a file"),
    "reproduce-unknown": Case(["reproduce", "fig99", "--out", "o"], "unknown experiment"),
    "reproduce-bad-scale": Case(["reproduce", "fig3", "--scale", "huge", "--out", "o"], "scales"),
    "reproduce-ray-flag-in-process-only": Case(
        ["reproduce", "smallworld", "--address", "auto", "--out", "o"],
        "experiment 'smallworld' runs in this process only; drop --address",
    ),
    "reproduce-address-without-ray": Case(
        ["reproduce", "fig5", "--no-ray", "--address", "auto", "--out", "o"],
        "--address needs Ray; drop --no-ray",
    ),
    "reproduce-negative-trials-at-once": Case(
        ["reproduce", "fig5", "--trials-at-once", "-1", "--out", "o"],
        "--trials-at-once must be an integer >= 0",
    ),
    "bench-out-missing-directory": Case(
        ["bench", "--out", "nodir/bench.json"], "the directory of nodir/bench.json does not exist"
    ),
    "bench-out-a-directory": Case(["bench", "--out", "ro"], "ro is a directory"),
    "bench-unknown-preset": Case(["bench", "--preset", "nope"], "unknown preset"),
    "bench-solvers-out-a-directory": Case(["bench-solvers", "--out", "ro"], "ro is a directory"),
    "bench-solvers-unknown-solver": Case(["bench-solvers", "--solver", "magic"], "unknown solver"),
    "bench-solvers-bad-step": Case(
        ["bench-solvers", "--solver", "sor:fast"], "the part after ':' is the step size eps"
    ),
    "bench-unknown-device": Case(
        ["bench", "--device", "tpu"], "--device must be cpu, cuda or cuda:N, got 'tpu'"
    ),
    "bench-cuda-without-gpu": Case(
        ["bench", "--device", "cuda"],
        "no CUDA GPU is available; use --device cpu",
        skip="this machine has a CUDA GPU" if HAS_CUDA else None,
    ),
    "check-gradient-overflowing-beta": Case(
        ["check-gradient", "--beta", "1e308"], "gives no finite EP estimate to compare"
    ),
    "set-twice-different-values": Case(
        ["train", "--out", "new", "--set", "lr=0.1", "--set", "lr=0.2"],
        "--set gives lr twice with different values",
    ),
    "set-bare-and-sectioned": Case(
        [
            "train",
            "--out",
            "new",
            "--set",
            "epochs=1",
            "--set",
            "train.epochs=2",
            "--set",
            "train.epochs=abc",
        ],
        "--set gives train.epochs twice, as 'epochs' and as 'train.epochs'",
    ),
    "resume-set-twice": Case(
        ["train", "--resume", "run", "--set", "epochs=3", "--set", "train.epochs=4"],
        "--set gives train.epochs twice",
    ),
    "reproduce-set-twice": Case(
        ["reproduce", "fig3", "--out", "o", "--set", "free.eps=0.4", "--set", "free.eps=0.3"],
        "--set gives free.eps twice with different values",
    ),
    "reproduce-fast-without-ep-runs": Case(
        ["reproduce", "skipnets", "--out", "o", "--fast"], "experiment 'skipnets' has no --fast"
    ),
    "reproduce-publish-nothing": Case(
        ["reproduce", "fig3", "--out", "o", "--publish", "pub"], "holds none of the runs of fig3"
    ),
    "reproduce-publish-a-file": Case(
        ["reproduce", "fig3", "--out", "o", "--publish", "afile"], "--publish afile is a file"
    ),
    "resume-rates-not-a-directory": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "layer_rates should be a directory of the run",
        setup=lambda w: (
            shutil.rmtree(w / "run" / "layer_rates"),
            (w / "run" / "layer_rates").write_text("x"),
        ),
    ),
    "config-unknown-format-version": Case(
        ["train", "--out", "new", "--config", "v99.toml"],
        "has format_version = 99; this eqprop reads 2",
        setup=lambda w: (w / "v99.toml").write_text("format_version = 99\n[train]\nepochs = 1\n"),
    ),
    "config-bare-and-sectioned": Case(
        ["train", "--out", "new", "--config", "both.toml"],
        "sets train.epochs twice, as 'epochs' and as 'train.epochs'",
        setup=lambda w: (w / "both.toml").write_text("epochs = 1\n[train]\nepochs = 2\n"),
    ),
    "set-legacy-boolean-word": Case(
        ["train", "--out", "new", "--set", "random_sign=maybe"],
        "random_sign must be true or false, got 'maybe'",
    ),
    "set-optimizer-needing-a-closure": Case(
        ["train", "--out", "new", "--set", "update.optimizer=LBFGS"], "choose among: ASGD"
    ),
    "set-optimizer-abstract-base": Case(
        ["train", "--out", "new", "--set", "update.optimizer=Optimizer"], "choose among: ASGD"
    ),
    "set-optimizer-args-unknown": Case(
        ["train", "--out", "new", "--set", "update.optimizer=adam"]
        + ["--set", "update.optimizer_args={wd=0.1}"],
        "'wd', which torch.optim.Adam does not take; it takes betas, eps, weight_decay",
    ),
    "set-optimizer-args-bad-value": Case(
        ["train", "--out", "new", "--set", "update.optimizer=adam"]
        + ["--set", "update.optimizer_args={betas=[1.5, 0.9]}"],
        "is refused by torch.optim.Adam: Invalid beta parameter at index 0: 1.5",
    ),
    "out-empty": Case(["train", "--out", ""], "--out is empty; give a path"),
    "out-name-too-long": Case(
        ["train", "--out", "a" * 300], "has a name of 300 characters, more than the 255 allowed"
    ),
    "out-path-too-long": Case(
        ["train", "--out", "/".join(["abcd"] * 1200)], "is 5999 characters long"
    ),
    "out-symlink-loop": Case(
        ["train", "--out", "loop"],
        "points back to itself",
        setup=lambda w: os.symlink("loop", w / "loop"),
    ),
    "resume-symlink-loop": Case(
        ["train", "--resume", "loop"],
        "the run directory loop is (or goes through) a symbolic link that points back to itself",
        setup=lambda w: os.symlink("loop", w / "loop"),
    ),
    "plot-symlink-loop": Case(
        ["plot", "loop"], "points back to itself", setup=lambda w: os.symlink("loop", w / "loop")
    ),
    "reproduce-out-empty": Case(["reproduce", "fig3", "--out", ""], "--out is empty"),
    "data-dir-name-too-long": Case(
        ["train", "--out", "new", *MNIST_784, "--data-dir", "d" * 300],
        "data directory " + "d" * 40 + "...",
    ),
    "resume-checkpoint-a-fifo": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/checkpoint.pt is a FIFO (named pipe), not a file eqprop wrote",
        setup=lambda w: _replace(w / "run" / "checkpoint.pt", os.mkfifo),
    ),
    "resume-checkpoint-links-to-dev-zero": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/checkpoint.pt is a character device",
        setup=lambda w: _replace(w / "run" / "checkpoint.pt", lambda p: os.symlink("/dev/zero", p)),
    ),
    "resume-checkpoint-dangling-link": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/checkpoint.pt is a symbolic link to gone.pt, which does not exist",
        setup=lambda w: _replace(w / "run" / "checkpoint.pt", lambda p: os.symlink("gone.pt", p)),
    ),
    # a run directory proves what it is: config.toml edited by hand after the run trained
    **{
        f"resume-config-edited-{key}": Case(
            ["train", "--resume", "run", "--set", "epochs=3"],
            f"run/checkpoint.pt does not fit run/config.toml: {key} is {was} in checkpoint.pt "
            f"but {now} in config.toml; run/config.toml was edited or checkpoint.pt is another "
            "run's: restore the run's own files, or start the run over with: eqprop train "
            "--config run/config.toml --out NEW_DIR",
            setup=edited_config_values((key, value)),
        )
        for key, value, was, now in [
            ("update.lr", 0.2, "0.1", "0.2"),
            ("update.bias_lr", 0.05, "unset", "0.05"),
            ("train.seed", 1, "0", "1"),
            ("free.steps", 12, "10", "12"),
            ("free.eps", 0.4, "0.5", "0.4"),
            ("nudged.steps", 4, "3", "4"),
            ("nudged.eps", 0.3, "0.5", "0.3"),
            ("estimator.beta", 0.5, "1.0", "0.5"),
            ("estimator.kind", "centered", "'random-sign'", "'centered'"),
            ("train.batch_size", 20, "10", "20"),
            ("train.batch_order", "fixed", "'reshuffle'", "'fixed'"),
            ("train.dtype", "float64", "'float32'", "'float64'"),
            ("train.layout", "dense", "'auto'", "'dense'"),
            ("topology.seed", 1, "0", "1"),
        ]
    },
    "resume-config-edited-description": Case(
        ["train", "--resume", "run"],
        "description is \"Small layered network on scikit-learn's bundled 8x8 dig... in "
        "checkpoint.pt but 'mine' in config.toml;",
        setup=edited_config_values(("description", "mine")),
    ),
    "resume-config-edited-two-keys": Case(
        ["train", "--resume", "run"],
        "train.seed is 0 in checkpoint.pt but 7 in config.toml, update.lr is 0.1 in "
        "checkpoint.pt but 0.3 in config.toml;",
        setup=edited_config_values(("update.lr", 0.3), ("train.seed", 7)),
    ),
    "resume-config-edited-five-keys": Case(
        ["train", "--resume", "run"],
        "in config.toml (and 1 more keys); run/config.toml was edited",
        setup=edited_config_values(
            ("update.lr", 0.3),
            ("train.seed", 7),
            ("free.steps", 11),
            ("nudged.steps", 5),
            ("estimator.beta", 0.9),
        ),
    ),
    "resume-config-edited-lr-and-epochs": Case(  # extending the run excuses train.epochs only
        ["train", "--resume", "run"],
        "update.lr is 0.1 in checkpoint.pt but 0.2 in config.toml;",
        setup=edited_config_values(("update.lr", 0.2), ("train.epochs", 3)),
    ),
    "resume-config-of-another-run": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "train.seed is 0 in checkpoint.pt but 1 in config.toml, update.lr is 0.1 in "
        "checkpoint.pt but 0.05 in config.toml;",
        setup=copied("twin/config.toml", "run/config.toml"),
    ),
    "resume-checkpoint-of-a-twin-run": Case(  # same shapes, other rate and seed
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/checkpoint.pt does not fit run/config.toml: train.seed is 1 in checkpoint.pt but "
        "0 in config.toml, update.lr is 0.05 in checkpoint.pt but 0.1 in config.toml;",
        setup=copied("twin/checkpoint.pt", "run/checkpoint.pt"),
    ),
    # finished epochs and no checkpoint: not a fresh start
    "resume-checkpoint-deleted": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run has finished 2 epoch(s) (metrics.jsonl) but has no checkpoint.pt to continue from "
        "(deleted or lost); restore run/checkpoint.pt from a copy, or start the run over with: "
        "eqprop train --config run/config.toml --out NEW_DIR",
        setup=removed("checkpoint.pt"),
    ),
    "resume-checkpoint-deleted-not-extended": Case(
        ["train", "--resume", "run"],
        "run has finished 2 epoch(s) (metrics.jsonl) but has no checkpoint.pt",
        setup=removed("checkpoint.pt"),
    ),
    "resume-checkpoint-and-best-deleted": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run has finished 2 epoch(s) (metrics.jsonl) but has no checkpoint.pt",
        setup=removed("checkpoint.pt", "best.pt"),
    ),
    "resume-checkpoint-deleted-metrics-torn": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run has finished 1 epoch(s) (metrics.jsonl) but has no checkpoint.pt",
        setup=lambda w: (removed("checkpoint.pt")(w), torn_metrics(w)),
    ),
    # best.pt: verified like the checkpoint
    "resume-best-zeroed": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is damaged",
        setup=zero_best,
    ),
    "resume-best-truncated": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is damaged (not a complete best.pt archive",
        setup=truncate_best,
    ),
    "resume-best-empty": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is damaged (not a complete best.pt archive",
        setup=lambda w: (w / "run" / "best.pt").write_bytes(b""),
    ),
    "resume-best-garbage": Case(
        ["train", "--resume", "run"],
        "run/best.pt is damaged (not a complete best.pt archive",
        setup=lambda w: (w / "run" / "best.pt").write_bytes(os.urandom(4096)),
    ),
    "resume-best-tampered": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is damaged (its content does not match its stored checksum); restore it "
        "from a copy, or delete it (the next epoch better than all before writes it again)",
        setup=resaved_best(tamper_best),
    ),
    "resume-best-without-epoch": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is not an eqprop best.pt (no epoch); restore it from a copy",
        setup=resaved_best(lambda saved: {"network": saved["network"]}),
    ),
    "resume-best-without-network": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is not an eqprop best.pt (no network)",
        setup=resaved_best(lambda saved: {"epoch": 1}),
    ),
    "resume-best-not-a-dictionary": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is not an eqprop best.pt (not a dictionary)",
        setup=lambda w: torch.save([1, 2], w / "run" / "best.pt"),
    ),
    "resume-best-crafted": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is not an eqprop best.pt (it holds something else than tensors",
        setup=crafted_best,
    ),
    "resume-best-is-a-checkpoint": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt is not an eqprop best.pt (no network)",
        setup=copied("run/checkpoint.pt", "run/best.pt"),
    ),
    "resume-best-of-a-twin-run": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt does not fit run/config.toml: train.seed is 1 in best.pt but 0 in "
        "config.toml, update.lr is 0.05 in best.pt but 0.1 in config.toml;",
        setup=copied("twin/best.pt", "run/best.pt"),
    ),
    "resume-best-of-other-shapes": Case(
        ["train", "--resume", "run", "--set", "epochs=3"],
        "run/best.pt does not fit run/config.toml: topology.sizes is [64, 20, 10] in best.pt "
        "but [64, 16, 10] in config.toml;",
        setup=copied("other/best.pt", "run/best.pt"),
    ),
    # sweeps: the sweep directory is checked before anything, a dry run too
    "sweep-dry-run-into-a-file": Case(
        ["sweep", "sweep-into-afile.toml", "--dry-run"],
        "the sweep directory afile is a file, not a directory",
    ),
    "sweep-dry-run-out-a-file": Case(
        ["sweep", "sweep.toml", "--dry-run", "--out", "afile"], "--out afile is a file"
    ),
    "sweep-dry-run-out-under-a-file": Case(
        ["sweep", "sweep.toml", "--dry-run", "--out", "afile/s"], "--out afile/s lies under afile"
    ),
    "sweep-results-only-out-a-file": Case(
        ["sweep", "sweep.toml", "--results-only", "--out", "afile"], "--out afile is a file"
    ),
    "sweep-results-only-out-read-only": Case(
        ["sweep", "sweep.toml", "--results-only", "--out", "ro/s"],
        "cannot create ro/s in ro",
        user=AS_USER,
    ),
    # benchmarks: where the results go is checked before the benchmark runs
    "bench-out-a-fifo": Case(
        ["bench", *QUICK_BENCH, "--out", "fifo"],
        "--out fifo is a FIFO (named pipe), not a file; give the path of a file",
        setup=lambda w: os.mkfifo(w / "fifo"),
    ),
    "bench-out-empty": Case(["bench", *QUICK_BENCH, "--out", ""], "--out is empty; give a path"),
    "bench-out-name-too-long": Case(
        ["bench", *QUICK_BENCH, "--out", "b" * 300], "has a name of 300 characters"
    ),
    "bench-solvers-out-a-fifo": Case(
        ["bench-solvers", *QUICK_SOLVERS, "--out", "fifo"],
        "--out fifo is a FIFO (named pipe), not a file",
        setup=lambda w: os.mkfifo(w / "fifo"),
    ),
    "bench-solvers-out-empty": Case(
        ["bench-solvers", *QUICK_SOLVERS, "--out", ""], "--out is empty; give a path"
    ),
    # a failed download names the file that is missing
    "data-dir-missing-only-labels": Case(
        ["train", "--out", "new", *MNIST_784, "--data-dir", "partial"],
        "mnist: missing train-labels-idx1-ubyte.gz in partial and downloading it failed "
        "(https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
        setup=partial_mnist,
        env={"EQPROP_CACHE_DIR": "/nonexistent/eqprop-cache"},
        skip=None if HAS_MNIST else "no MNIST files (EQPROP_DATA_DIR)",
    ),
    "topology-n-1e10": Case(["topology", "--set", "n=10000000000"], "replacements"),
    "topology-unknown-preset": Case(["topology", "--preset", "nope"], "unknown preset"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_is_one_line_and_changes_nothing(name, server, workspace):
    case = CASES[name]
    if case.skip:
        pytest.skip(case.skip)
    if case.setup is not None:
        case.setup(workspace)
    before = snapshot(workspace)
    result = server.run(case.args, workspace, env=case.env, unprivileged=case.user)
    assert_one_line_error(result, case.expected)
    assert snapshot(workspace) == before
    assert not (workspace / "pwned").exists()


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40


def test_the_cases_cover_every_command_that_writes():
    """Each command that writes fails in some case, with nothing written (the snapshot)."""
    kinds = {
        "train --resume" if "--resume" in case.args else case.args[0]
        for case in CASES.values()
        if case.args
    }
    writers = {"train", "train --resume", "sweep", "plot", "bench", "bench-solvers"}
    assert writers | {"check-gradient", "reproduce"} <= kinds


#: the cases of a run directory that is not what it claims, with the file ``load_run`` reads
API_CASES = {
    name: "best" if name.startswith("resume-best-") else "latest"
    for name in CASES
    if name.startswith(
        (
            "resume-config-edited-",
            "resume-config-of-another-run",
            "resume-checkpoint-of-a-twin-run",
            "resume-foreign-checkpoint",
            "resume-checkpoint-deleted",
            "resume-checkpoint-and-best-deleted",
            "resume-best-",
        )
    )
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_load_run_refuses_what_a_resume_refuses_with_the_same_line(
    name, server, workspace, monkeypatch
):
    """``load_run`` raises an EqpropError with the very line ``train --resume`` prints."""
    from eqprop.errors import EqpropError
    from eqprop.saved import load_run

    case = CASES[name]
    case.setup(workspace)
    (line,) = server.run(case.args, workspace).lines
    monkeypatch.chdir(workspace)
    with pytest.raises(EqpropError) as raised:
        load_run("run", API_CASES[name])
    assert f"eqprop: error: {raised.value}" == line
    assert not (workspace / "pwned").exists()


# -- point 1: a torn metrics line ---------------------------------------------------------
def test_a_torn_metrics_line_neither_blocks_resume_nor_plot(server, workspace):
    """Disk full during the end-of-epoch append left a cut line: the checkpoint (which holds
    the metrics too) is the source of truth, so resume rebuilds the file and plot reads it."""
    run = workspace / "run"
    complete = (run / "metrics.jsonl").read_text().splitlines()
    os.truncate(run / "metrics.jsonl", 300)
    assert server.run(["plot", "run", "--out", "plots"], workspace).rc == 0
    result = server.run(["train", "--quiet", "--resume", "run", "--set", "epochs=3"], workspace)
    assert result.rc == 0, result.err
    assert "Traceback" not in result.err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert lines[:2] == complete
    assert server.run(["plot", "run"], workspace).rc == 0


# -- point 3: check first, write last -----------------------------------------------------
def test_extending_a_run_rewrites_its_config_only_when_everything_passed(server, workspace):
    config = workspace / "run" / "config.toml"
    result = server.run(["train", "--quiet", "--resume", "run", "--set", "epochs=3"], workspace)
    assert result.rc == 0, result.err
    assert "epochs = 3" in config.read_text()


# -- point 4: starts that fail or are cut short leave nothing in the way ------------------
def test_a_failed_start_creates_nothing_and_the_corrected_command_runs(server, workspace):
    bad = server.run(["train", "--out", "new", "--set", "sizes=[784, 16, 10]"], workspace)
    assert_one_line_error(bad, "digits has 64 features")
    assert not (workspace / "new").exists()
    assert not [p for p in workspace.iterdir() if p.name.startswith(".")]
    good = server.run(["train", "--quiet", "--out", "new", *TINY_ARGS], workspace)
    assert good.rc == 0, good.err


def test_a_start_interrupted_before_its_config_was_saved_can_be_started_again(server, workspace):
    interrupted_start(workspace)
    result = server.run(["train", "--quiet", "--out", "half", *TINY_ARGS], workspace)
    assert result.rc == 0, result.err
    assert sorted(p.name for p in (workspace / "half").iterdir()) == [
        "best.pt",
        "checkpoint.pt",
        "config.toml",
        "free_steps",
        "layer_rates",
        "metrics.jsonl",
    ]


def test_stale_staging_directories_of_dead_starts_are_removed(server, workspace):
    stale = workspace / ".new.999999999.start"  # no such pid
    stale.mkdir()
    (stale / ".config.toml.tmp").write_bytes(b"half")
    result = server.run(["train", "--quiet", "--out", "new", *TINY_ARGS], workspace)
    assert result.rc == 0, result.err
    assert not stale.exists()


# -- point 8 and the rest ------------------------------------------------------------------
def test_a_second_process_on_the_same_run_is_refused(server, workspace):
    before = snapshot(workspace)
    fd = os.open(workspace / "run", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a training process holds it
        result = server.run(["train", "--resume", "run", "--set", "epochs=3"], workspace)
    finally:
        os.close(fd)
    assert_one_line_error(result, "is in use by another eqprop process")
    assert snapshot(workspace) == before


def test_two_resumes_at_once_one_trains_and_the_other_is_refused(server, workspace):
    first = server.start(
        ["train", "--quiet", "--resume", "run", "--set", "epochs=100000"], workspace
    )
    deadline = time.time() + 60
    metrics = workspace / "run" / "metrics.jsonl"
    while time.time() < deadline and metrics.read_text().count("\n") < 3:
        time.sleep(0.01)
    second = CliServer(server.logs, real=True).start(
        ["train", "--resume", "run", "--set", "epochs=100000"], workspace
    )
    refused = second.wait()
    os.kill(first.pid, signal.SIGINT)
    first.wait()
    assert_one_line_error(refused, "is in use by another eqprop process")


def test_a_closed_stdout_is_no_traceback(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "eqprop.cli", "presets"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=tmp_path,
    )
    proc.stdout.close()  # as `eqprop presets | head -0` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert err == ""
    assert proc.returncode == 141


def test_divergence_tells_to_start_a_new_run(server, workspace):
    result = server.run(
        ["train", "--quiet", "--out", "hot", *TINY_ARGS, "--set", "lr=1e38"], workspace
    )
    assert "Traceback" not in result.err and result.rc == 2
    (line,) = [line for line in result.lines if line.startswith("eqprop: error:")]
    assert "training diverged" in line and "start a new run with a lower update.lr" in line
    assert "resume from" not in line


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6, 1.0])
def test_ctrl_c_at_start_up_is_one_line(server, workspace, delay):
    """From the moment the command's code runs (forked after the imports: a Ctrl-C while
    ``import eqprop`` imports torch is still the interpreter's traceback)."""
    args = ["train", "--out", "new", *(a.replace("epochs=2", "epochs=300") for a in TINY_ARGS)]
    handle = server.start(args, workspace, real=False)
    time.sleep(delay)
    os.kill(handle.pid, signal.SIGINT)
    result = handle.wait()
    assert "Traceback" not in result.err, result.err
    assert result.rc == 130
    assert result.lines[-1].startswith("eqprop: interrupted"), result.err


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(server, workspace):
    result = server.run(
        ["train", "--out", "new", *TINY_ARGS],
        workspace,
        patch={"eqprop.runs.progress.PLAIN_PROGRESS_EVERY_S": 0.0},
        real=False,
    )
    assert result.rc == 0, result.err
    assert "\r" not in result.err and "\x1b" not in result.err
    assert "epoch 1/2: batch 10/10, train error" in result.err
    assert "epoch 2/2 evaluation: batch 1/1" in result.err


def _interpreter_start_s(command: str) -> float:
    """Seconds until the console script's interpreter runs the package's first line (Python's
    own start-up, before which no program can handle SIGINT): the longest of three starts
    of the same interpreter importing the entry module."""
    python = Path(command).read_text().splitlines()[0].removeprefix("#!").strip()
    times = []
    for _ in range(3):
        began = time.monotonic()
        subprocess.run([python, "-c", "import eqprop._entry"], check=True)
        times.append(time.monotonic() - began)
    return max(times)


@pytest.mark.parametrize("after_start", [0.0, 0.25, 0.75])
def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path, after_start):
    """SIGINT during the first second after Python has started (while PyTorch is imported)
    ends with exit 130 and one line. The delay is counted from the interpreter's measured
    start-up, so the test holds on a loaded machine too."""
    command = shutil.which("eqprop")
    if command is None:
        pytest.skip("the eqprop console script is not on PATH (install the package)")
    delay = 1.5 * _interpreter_start_s(command) + after_start
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [command, "train", "--out", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    text = err.decode().replace("\r", "\n")
    lines = [line for line in text.splitlines() if line.strip()]
    assert proc.returncode == 130
    assert "Traceback" not in text
    assert lines[-1].startswith("eqprop: interrupted")
