"""Every preset trains as it did before the architecture split (commit 133f270).

The fixture holds fingerprints (``tests/fingerprint.py``) that the old code produced for three
batches of every preset, with the ``gradient`` nudging and per-epoch reshuffling it always
used, on each CPU it was recorded on: the BLAS kernels round differently from one CPU to
another (an AMD EPYC and an Intel Xeon, both AVX512, give different weights after three
batches), so bit-for-bit identity can only be asked of the same kind of CPU.

Signs of beta, free steps and training errors must be equal on any CPU. Where the weights
are bit for bit those of a recorded CPU, the rest must be too: the same rounding, so the
refactor changed nothing. Elsewhere the rates and sums must agree to :data:`OTHER_CPU_RTOL`.
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
#: the rates and sums of a CPU whose rounding matches no recorded one: the two recorded CPUs
#: differ by up to 3e-5 relative (test below), so this leaves a margin of 30x
OTHER_CPU_RTOL = 1e-3
#: the fingerprint values that depend on rounding but not bit for bit
ROUNDED = ("rates", "weight_sums", "bias_sum", "particle_sum")
#: the values that no rounding difference changes in three batches
DISCRETE = ("betas", "free_steps", "train_error")


def _close(got, want, rtol: float) -> None:
    torch.testing.assert_close(
        torch.tensor(got, dtype=torch.float64),
        torch.tensor(want, dtype=torch.float64),
        rtol=rtol,
        atol=0.0,
    )


@pytest.mark.parametrize("case", sorted(FIXTURE["cases"]))
def test_preset_trains_as_before_the_split(case):
    entry = FIXTURE["cases"][case]
    got = fingerprint(entry["preset"], {**entry["overrides"], **OLD_BEHAVIOUR})
    recorded = [m["fingerprints"][case] for m in FIXTURE["machines"]]
    for key in DISCRETE:
        assert all(got[key] == want[key] for want in recorded), key
    same_rounding = [w for w in recorded if w["weights_sha256"] == got["weights_sha256"]]
    if same_rounding:
        assert got == same_rounding[0], "bit for bit the weights, so everything else too"
    else:
        for key in ROUNDED:
            _close(got[key], recorded[0][key], OTHER_CPU_RTOL)


def test_the_recorded_cpus_differ_only_in_rounding():
    first, *others = FIXTURE["machines"]
    assert others, "the fixture records at least two CPUs, so the tolerance above is measured"
    for machine in others:
        for case, want in first["fingerprints"].items():
            got = machine["fingerprints"][case]
            assert all(got[key] == want[key] for key in DISCRETE)
            assert got["weights_sha256"] != want["weights_sha256"]
            for key in ROUNDED:
                _close(got[key], want[key], OTHER_CPU_RTOL / 30)
