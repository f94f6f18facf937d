"""Your own topology: from a mask, a list of pairs or an edge-list file, validated in one
line; through a config (``[topology] family = "file"``) into a run directory that keeps its
own copy, so the run resumes (bit for bit), loads and plots after the file is gone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from small_run import small_config
from test_cli_errors import assert_one_line_error, serve, snapshot

from eqprop import Network
from eqprop import topology as topo
from eqprop.cli import main
from eqprop.errors import ConfigError, EqpropError
from eqprop.runs import CHECKPOINT, TOPOLOGY, RunOptions, read_metrics, start_run, train_run
from eqprop.saved import load_run
from eqprop.topology import Topology

SIZES = (4, 3, 3, 2)  # 12 neurons: inputs 0-3, hidden 4-6 and 7-9, outputs 10-11
RUN_SIZES = [64, 24, 10]  # the small digits run's


def skip_topology() -> Topology:
    return topo.icons(SIZES, n=8, seed=3)


def write_edges(path: Path, edges: np.ndarray) -> Path:
    np.savetxt(path, edges, fmt="%d")
    return path


def test_a_mask_an_edge_list_and_an_edge_file_give_the_same_topology(tmp_path):
    t = skip_topology()
    rng = np.random.default_rng(0)
    pairs = t.edges[rng.permutation(len(t.edges))]
    pairs[::2] = pairs[::2, ::-1]  # either orientation
    lines = [
        "# my topology",
        *(f"{i}, {j}" if k % 3 else f"{i}\t{j}  # edge" for k, (i, j) in enumerate(pairs.tolist())),
        "",
    ]
    (tmp_path / "edges.txt").write_text("\n".join(lines))
    made = [
        Topology.from_mask(SIZES, t.adjacency()),
        Topology.from_mask(SIZES, np.triu(t.adjacency()).astype(np.int8)),
        Topology.from_mask(list(SIZES), torch.from_numpy(t.adjacency())),
        Topology.from_edges(SIZES, pairs),
        Topology.from_edge_file(SIZES, tmp_path / "edges.txt"),
    ]
    for other in made:
        assert other.sizes == t.sizes and other.family == topo.CUSTOM
        assert np.array_equal(other.edges, t.edges)
        assert other.counts()["skip"] == t.counts()["skip"] > 0
    nets = [Network(other, seed=5) for other in (t, *made)]
    for net in nets[1:]:
        for a, b in zip(nets[0].weights, net.weights, strict=True):
            assert torch.equal(a, b)


def _mask(change: Callable[[np.ndarray], object]) -> np.ndarray:
    mask = skip_topology().adjacency().astype(np.int64)
    change(mask)
    return mask


def _set(mask: np.ndarray, i: int, j: int, value: float = 1) -> None:
    mask[i, j] = mask[j, i] = value


def _cut_hidden_to_output(mask: np.ndarray) -> None:
    mask[7:10, 10:] = mask[10:, 7:10] = 0


#: a bad mask -> the expected part of its error
BAD_MASKS = {
    "shape": (np.zeros((11, 11)), "N x N with N = 12"),
    "values": (_mask(lambda m: _set(m, 0, 4, 2)), "only 0 and 1"),
    "nan": (np.full((12, 12), np.nan), "only 0 and 1"),
    "self-loop": (_mask(lambda m: m.__setitem__((5, 5), 1)), "mask[5, 5] joins a neuron to itself"),
    "input-input": (_mask(lambda m: _set(m, 1, 2)), "mask[1, 2] joins two input neurons"),
    "asymmetric": (_mask(lambda m: m.__setitem__((6, 0), 1 - m[6, 0])), "neither symmetric"),
    "empty": (np.zeros((12, 12), dtype=bool), "the mask has no edges"),
    "no-hidden-to-output": (_mask(_cut_hidden_to_output), "no edge between layer 2 and layer 3"),
}


@pytest.mark.parametrize("case", list(BAD_MASKS))
def test_a_bad_mask_is_a_one_line_error(case):
    mask, expected = BAD_MASKS[case]
    with pytest.raises(ConfigError) as info:
        Topology.from_mask(SIZES, mask)
    assert expected in str(info.value) and "\n" not in str(info.value)


#: a bad edge-list file's text (or bytes) -> the expected part of its error
BAD_FILES = {
    "not-two-indices": ("0 4\n1 5 6\n", "line 2: expected an edge 'i j'"),
    "not-integers": ("0 4\n1.0 5\n", "line 2: expected an edge 'i j'"),
    "out-of-range": ("0 4\n# note\n4 12\n", "line 3 (4 12) has a neuron index outside 0..11"),
    "negative": ("-1 4\n", "line 1 (-1 4) has a neuron index outside"),
    "self-loop": ("0 4\n5 5\n", "line 2 (5 5) joins a neuron to itself"),
    "input-input": ("0 3\n", "line 1 (0 3) joins two input neurons"),
    "repeated": ("0 4\n4 7\n7 4\n", "line 3 (7 4) repeats an edge listed before"),
    "empty": ("# nothing\n\n", "has no edges"),
    "binary": (b"\x93NUMPY\x01\x00\xff\xfe", "is not a text file"),
    "no-adjacent-pair": ("0 4\n4 7\n0 10\n", "no edge between layer 2 and layer 3"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_edge_file_is_a_one_line_error(case, tmp_path):
    content, expected = BAD_FILES[case]
    path = tmp_path / "edges.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        Topology.from_edge_file(SIZES, path)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ([(0, 1), (0, 4)], "edge 0 (0, 1) joins two input neurons"),
        ([(0, 4), (0, 4)], "edge 1 (0, 4) is listed twice"),
        ([(0, 5), (0, 4)], "pairs i < j in increasing order"),
        ([(4, 0)], "pairs i < j in increasing order"),
        ([(0, 12)], "outside 0..11"),
        (np.array([[0.0, 4.0]]), "integer neuron indices"),
    ],
)
def test_the_constructor_refuses_what_it_used_to_accept_silently(edges, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        Topology(SIZES, np.asarray(edges), family="mine")


# -- runs ---------------------------------------------------------------------------------
def file_config(path: Path, *extra: str):
    return small_config("topology.family='file'", f"topology.path='{path}'", *extra)


def test_a_file_topology_run_resumes_bit_for_bit_after_the_file_is_deleted(tmp_path):
    edges = topo.icons(RUN_SIZES, n=150, seed=1).edges
    whole = start_run(file_config(write_edges(tmp_path / "a.txt", edges)), tmp_path / "whole")
    train_run(whole, RunOptions(quiet=True))
    path = write_edges(tmp_path / "b.txt", edges)
    split = start_run(file_config(path, "epochs=1"), tmp_path / "split")
    assert Topology.load(split / TOPOLOGY).counts()["skip"] > 0
    train_run(split, RunOptions(quiet=True))
    path.unlink()
    assert main(["train", "--quiet", "--resume", str(split), "--set", "epochs=2"]) == 0
    states = [torch.load(r / CHECKPOINT, weights_only=False)["trainer"] for r in (whole, split)]
    for a, b in zip(states[0]["weights"], states[1]["weights"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(states[0]["particles"], states[1]["particles"])

    trained = load_run(split, "best")
    assert np.array_equal(trained.network.topology.edges, edges)
    assert main(["plot", str(split)]) == 0 and (split / "layer_rates.png").is_file()
    assert [r["epoch"] for r in read_metrics(split)] == [1, 2]


def test_a_damaged_saved_topology_is_one_line(tmp_path):
    path = write_edges(tmp_path / "a.txt", topo.layered(RUN_SIZES).edges)
    run = start_run(file_config(path, "epochs=1"), tmp_path / "run")
    (run / TOPOLOGY).write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(EqpropError, match="topology.npz is damaged"):
        load_run(run)
    before = snapshot(tmp_path)
    with pytest.raises(EqpropError, match="topology.npz is damaged"):
        train_run(run, RunOptions(quiet=True))
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "own-topology-logs")


SMALL_ARGS = [
    "--set",
    "sizes=[64, 24, 10]",
    "--set",
    "limit=100",
    "--set",
    "n_free=10",
    "--set",
    "epochs=1",
]
#: command-line cases: (arguments after ``train``, the edge file's text or None, expected)
CLI_CASES = {
    "missing-file": (["--set", "topology.path=gone.txt"], None, "gone.txt does not exist"),
    "bad-line": (["--set", "topology.path=e.txt"], "0 64\n0 x\n", "e.txt, line 2"),
    "input-input": (["--set", "topology.path=e.txt"], "0 1\n", "joins two input neurons"),
    "out-of-range": (["--set", "topology.path=e.txt"], "0 98\n", "outside 0..97"),
    "without-path": ([], None, "topology.family = 'file' needs topology.path"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_a_bad_topology_file_on_the_command_line_writes_nothing(case, server, tmp_path):
    args, text, expected = CLI_CASES[case]
    if text is not None:
        (tmp_path / "e.txt").write_text(text)
    before = snapshot(tmp_path)
    result = server.run(
        ["train", "--out", "new", *SMALL_ARGS, "--set", "topology.family=file", *args], tmp_path
    )
    assert_one_line_error(result, expected)
    assert snapshot(tmp_path) == before


def test_topology_path_needs_the_file_family(server, tmp_path):
    result = server.run(["topology", "--set", "topology.path=e.txt"], tmp_path)
    assert_one_line_error(result, "topology.path applies only with topology.family = 'file'")


def test_the_topology_command_counts_a_file_topology(server, tmp_path):
    write_edges(tmp_path / "e.txt", topo.icons(RUN_SIZES, n=40, seed=0).edges)
    args = [
        "topology",
        "--preset",
        "digits",
        "--set",
        "sizes=[64, 24, 10]",
        "--set",
        "topology.family=file",
        "--set",
        "topology.path=e.txt",
        "--json",
    ]
    result = server.run(args, tmp_path)
    assert result.rc == 0, result.err
    assert '"family": "custom"' in result.out
