"""Every preset trains as it did before the architecture split (commit 133f270).

The fixture holds fingerprints (``tests/fingerprint.py``) the old code produced for three
batches of every preset, with the ``gradient`` nudging and per-epoch reshuffling it always
used. Signs of beta and free steps must be equal; rates, error and sums equal to float
rounding; and on a CPU with the same vector capability as the recording machine (the same
BLAS kernels), weights, biases and particles bit for bit.
"""

import json
from pathlib import Path

import pytest
import torch
from fingerprint import fingerprint

FIXTURE_FILE = Path(__file__).parent / "fixtures" / "presets_before_refactor.json"
FIXTURE = json.loads(FIXTURE_FILE.read_text())
#: what version 1 always did, now explicit choices
OLD_BEHAVIOUR = {"nudging": "gradient", "batch_order": "reshuffle"}


@pytest.mark.parametrize("case", sorted(FIXTURE["cases"]))
def test_preset_trains_as_before_the_split(case):
    entry = FIXTURE["cases"][case]
    got = fingerprint(entry["preset"], {**entry["overrides"], **OLD_BEHAVIOUR})
    want = entry["fingerprint"]
    assert got["betas"] == want["betas"]
    assert got["free_steps"] == want["free_steps"]
    assert got["train_error"] == want["train_error"]
    torch.testing.assert_close(
        torch.tensor(got["rates"]), torch.tensor(want["rates"]), rtol=1e-5, atol=1e-12
    )
    for key in ("weight_sums",):
        torch.testing.assert_close(
            torch.tensor(got[key]), torch.tensor(want[key]), rtol=1e-5, atol=1e-6
        )
    for key in ("bias_sum", "particle_sum"):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6)
    if torch.backends.cpu.get_cpu_capability() == FIXTURE["cpu_capability"]:
        for key in ("weights_sha256", "biases_sha256", "particles_sha256"):
            assert got[key] == want[key], f"{key} differs from the code before the split"
