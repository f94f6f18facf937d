"""Run configurations: one validated record per training run, in sections that mirror the
parts of the library, and the bundled presets.

A configuration is a TOML document (see ``eqprop/presets/*.toml``)::

    description = "..."
    [data]        dataset, split, limit, path
    [topology]    family, sizes, n, p, p_formula, a, seed, remove_after, path;
                  input_shape, channels, kernels, paddings, pools (conv)
    [network]     activation                        -> eqprop.activation
    [free]        solver, eps, steps, tol           -> a relaxer (eqprop.relaxation)
    [nudged]      nudging, eps, steps,              -> a nudging and the nudged relaxer
                  hidden_layers, hidden_fraction,
                  hidden_beta, hidden_seed          -> target-linked hidden neurons
    [estimator]   kind, beta                        -> eqprop.estimators
    [update]      optimizer, optimizer_args, lr,    -> eqprop.updates
                  lr_skip, bias_lr,
                  bits, rounding, range_scale       -> eqprop.quantization
    [train]       epochs, batch_size, batch_order, persistent, test_persistent,
                  evaluate_test, seed, checkpoint_every, device, dtype, layout

An absent key means its default. Every field can be overridden on the command line with
``--set section.key=value`` (the value in TOML syntax, e.g.
``--set update.lr=[0.128,0.032,0.008,0.002]``); a bare ``key`` is accepted where it names
one field only (``--set epochs=3``), and the names of the previous, flat format
(``n_free``, ``n_clamped``, ``tol``, ...) are understood. Each section is validated once, by
the library object it builds; unknown keys and bad values raise
:class:`~eqprop.errors.ConfigError` with one line naming the field and what is allowed.

Version 1 run directories (a flat ``config.toml``, written before the sections existed) are
read by :func:`migrate`: they used the ``gradient`` nudging and resume exactly as they ran.

The modules: :mod:`~eqprop.config.sections` (one record per section, and the limits they
share), :mod:`~eqprop.config.run_config` (:class:`RunConfig` and reading one: dicts, TOML,
``--set`` overrides, the version-1 migration) and :mod:`~eqprop.config.presets` (the bundled
presets and resolving one with overrides). Their public names are importable from
:mod:`eqprop.config` itself.
"""

from __future__ import annotations

from eqprop.config.presets import (
    preset,
    preset_names,
    resolve,
)
from eqprop.config.run_config import (
    LEGACY,
    RunConfig,
    canonical_key,
    flat_items,
    from_dict,
    load_file,
    migrate,
    parse_override,
    parse_overrides,
    parse_toml,
)
from eqprop.config.sections import (
    CONV,
    CONV_DEFAULTS,
    CONV_KEYS,
    FILE,
    FORMAT_VERSION,
    MASKED_SGD,
    MAX_INT,
    MAX_LAYER,
    MAX_REPLACEMENTS_PER_EDGE,
    MAX_STEPS,
    PATHS,
    SECTIONS,
    TOPOLOGIES,
    DataSection,
    EstimatorSection,
    FreeSection,
    NetworkSection,
    NudgedSection,
    TopologySection,
    TrainSection,
    UpdateSection,
    usable_optimizers,
)

__all__ = [
    "CONV",
    "CONV_DEFAULTS",
    "CONV_KEYS",
    "DataSection",
    "EstimatorSection",
    "FILE",
    "FORMAT_VERSION",
    "FreeSection",
    "LEGACY",
    "MASKED_SGD",
    "MAX_INT",
    "MAX_LAYER",
    "MAX_REPLACEMENTS_PER_EDGE",
    "MAX_STEPS",
    "NetworkSection",
    "NudgedSection",
    "PATHS",
    "RunConfig",
    "SECTIONS",
    "TOPOLOGIES",
    "TopologySection",
    "TrainSection",
    "UpdateSection",
    "canonical_key",
    "flat_items",
    "from_dict",
    "load_file",
    "migrate",
    "parse_override",
    "parse_overrides",
    "parse_toml",
    "preset",
    "preset_names",
    "resolve",
    "usable_optimizers",
]
