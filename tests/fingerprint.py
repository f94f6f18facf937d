"""A fingerprint of a few training batches of every bundled preset, for regression tests.

:func:`fingerprint` trains preset ``name`` (with ``overrides``) for one epoch of three batches
on seeded synthetic data of the preset's input width, one torch thread, and returns what a
user relies on being reproducible: the signs of beta drawn, the per-batch rates (eq. 2), the
free steps, and float64 sums plus SHA-256 digests of the weights, biases and particles.
``tests/fixtures/presets_before_refactor.json`` holds the fingerprints the code of commit
133f270 (before the nudging / relaxation / estimator / update split) produced on the
development machine; ``test_refactor_identity.py`` compares against it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from eqprop import config as cfg
from eqprop import runs

N_EXAMPLES, BATCH, FREE_STEPS = 60, 20, 30


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


def fingerprint(name: str, overrides: dict) -> dict:
    """Train preset ``name`` for three batches (see the module docs) and fingerprint it."""
    config = cfg.from_dict(cfg.preset(name)).override(overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        network = runs.build_network(config)
        trainer = runs.build_trainer(config, network, N_EXAMPLES)
        g = torch.Generator().manual_seed(1234)
        x = torch.rand(N_EXAMPLES, config.topology.sizes[0], generator=g).to(network.dtype)
        y = torch.randint(0, config.topology.sizes[-1], (N_EXAMPLES,), generator=g)
        betas = []
        epoch = trainer.train_epoch(x, y, lambda result: betas.extend(result.betas))
    finally:
        torch.set_num_threads(threads)
    weights = list(network.weights)
    return {
        "betas": betas,
        "rates": epoch.layer_rates.double().tolist(),
        "free_steps": epoch.free_steps.tolist(),
        "train_error": epoch.train_error,
        "weight_sums": [float(w.double().sum()) for w in weights],
        "bias_sum": float(network.biases.double().sum()),
        "particle_sum": float(trainer.particles.double().sum()),
        "weights_sha256": _digest(weights),
        "biases_sha256": _digest([network.biases]),
        "particles_sha256": _digest([trainer.particles]),
    }
