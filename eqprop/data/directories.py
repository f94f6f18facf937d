"""Which datasets there are and where their files live: the data directory (``--data-dir``,
``$EQPROP_DATA_DIR``), the download cache (``$EQPROP_CACHE_DIR``) and the checks of a
directory before its files are read."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from eqprop.errors import ConfigError, DataError

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10")


SPLITS: tuple[str, ...] = ("icons", "standard")


DATA_DIR_ENV = "EQPROP_DATA_DIR"


CACHE_DIR_ENV = "EQPROP_CACHE_DIR"


DEFAULT_CACHE_DIR = Path("~/.cache/eqprop")


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None) -> Path:
    """Return the directory where the files of dataset ``name`` are looked up.

    The base directory is ``data_dir``, else ``$EQPROP_DATA_DIR``, else the cache directory
    (``$EQPROP_CACHE_DIR``, default ``~/.cache/eqprop``). A subdirectory named after the
    dataset is used when it exists (so one base can hold ``mnist/``, ``fashion-mnist/`` and
    ``cifar10/``), and always for the cache; otherwise the base itself is expected to hold
    the files.
    """
    _check_name(name)
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return _cache_root() / name
    base = Path(data_dir).expanduser()
    try:
        subdirectory = (base / name).is_dir()
    except OSError:  # base cannot be entered: reported by load_dataset
        subdirectory = False
    return base / name if subdirectory else base


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")


def path_problem(path: str | os.PathLike) -> str:
    """What is wrong with a path the system refused as too long or as a loop of links, as
    the end of a sentence (``"x... has a name of 300 characters; ..."``)."""
    text = os.fspath(path)
    short = text if len(text) <= 60 else f"{text[:40]}...{text[-12:]}"
    longest = max(text.split(os.sep), key=len, default="")
    if len(longest) > 255:
        return f"{short} has a name of {len(longest)} characters, more than the 255 allowed"
    if len(text) >= 4096:
        return f"{short} is {len(text)} characters long, more than the 4,095 allowed"
    return f"{short} is (or goes through) a symbolic link that points back to itself"


def _check_directory(name: str, directory: Path) -> None:
    """A one-line DataError when ``directory`` exists but cannot hold readable files: it is a
    file, or it cannot be listed or entered (a missing directory is reported with the files)."""
    fix = f"pass --data-dir / set {DATA_DIR_ENV} to the directory that holds the {name} files"
    unreadable = (
        f"cannot read the data directory {directory} (permission denied); make it readable "
        f"(chmod a+rx) or {fix}"
    )
    try:
        mode = os.stat(directory).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise DataError(f"data directory {path_problem(directory)}; {fix}") from None
        raise DataError(unreadable) from None
    if not stat.S_ISDIR(mode):
        raise DataError(f"data directory {directory} is a file, not a directory; {fix}")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise DataError(unreadable)


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()
