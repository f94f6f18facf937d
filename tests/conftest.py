"""Shared pytest configuration: where the real MNIST / Fashion-MNIST files are."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Give Ctrl-C its default meaning. A background job of a non-interactive shell starts
    with SIGINT ignored, which its children inherit; the tests of Ctrl-C handling need what
    an interactive shell (or CI) gives. Point eqprop's cache (``--fast``'s topology parities)
    at a fresh directory, so no test reads what another process left there, and none writes
    into the user's home."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="eqprop-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the cache directory of :func:`pytest_configure`."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if Path(cache).name.startswith("eqprop-test-cache-"):
        shutil.rmtree(cache, ignore_errors=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--data-dir``, the directory holding ``mnist/`` and ``fashion-mnist/``."""
    parser.addoption(
        "--data-dir",
        default=None,
        help="directory containing mnist/ and fashion-mnist/ (default: $EQPROP_DATA_DIR)",
    )


@pytest.fixture(scope="session")
def real_data_dir(request: pytest.FixtureRequest) -> Path:
    """The directory containing ``mnist/`` and ``fashion-mnist/``; skips the test when unset."""
    data_dir = request.config.getoption("--data-dir") or os.environ.get("EQPROP_DATA_DIR")
    if not data_dir:
        pytest.skip(
            "set EQPROP_DATA_DIR (e.g. ../shared/data) to run tests on the real MNIST files"
        )
    path = Path(data_dir)
    if not path.is_dir():
        pytest.skip(f"data directory {path} (from --data-dir / EQPROP_DATA_DIR) does not exist")
    return path.resolve()  # absolute: tests link to its files from other directories


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the user's data and cache directories out of a test, and never hit the network
    (a download attempt fails as it does offline)."""
    monkeypatch.delenv("EQPROP_DATA_DIR", raising=False)
    monkeypatch.setenv("EQPROP_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(url: str, timeout: float) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny networks on a shared machine run far faster so),
    the previous count restored after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
