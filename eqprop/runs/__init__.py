"""Run directories: a training run that is saved as it goes and resumes exactly.

A run directory holds:

- ``config.toml``: the resolved configuration (every field);
- ``metrics.jsonl``: one JSON line per epoch (training and evaluation error, mean per-layer
  rates, mean free steps per batch, relaxation steps, wall time, and the update's own
  measurements: with ``update.bits``, the fractions of updates lost to rounding,
  :meth:`eqprop.quantization.QuantizedSGD.epoch_metrics`);
- ``layer_rates/epoch_NNNN.npy``: the per-batch per-layer rates (eq. 2) of each epoch,
  float32, shape ``(batches, pairs)``;
- ``free_steps/epoch_NNNN.npy``: the free-phase steps of every batch of each epoch, int32
  (``n_free`` everywhere unless adaptive relaxation, ``tol``, is on);
- ``tensorboard/``: TensorBoard event files, when asked for (``--tensorboard``);
- ``data_dir``: the data directory the run was last trained from (MNIST and Fashion-MNIST);
  a resume given neither ``--data-dir`` nor ``$EQPROP_DATA_DIR`` reads its data there;
- ``data.sha256``: with your own data (``data.dataset = "file"``), the SHA-256 of the data file
  when the run started (``sha256sum`` format); a resume on a file with other content is refused;
- ``topology.npz``: with your own topology (``topology.family = "file"``), the topology read
  from the edge-list file when the run started (:meth:`~eqprop.topology.Topology.save`); the run
  resumes from it, so the original file is no longer needed;
- ``best.pt``: the network of the epoch with the lowest held-out error so far, with its
  epoch, the config it was trained with and a SHA-256 of all of them;
- ``checkpoint.pt``: the trainer's complete state, the metrics of the finished epochs, the
  resolved config it was trained with (its TOML text and the SHA-256 of that) and a SHA-256
  of all of them, written atomically (temporary file, fsync, rename) every
  ``checkpoint_every`` batches, at the end of every epoch, and when the run is stopped by
  Ctrl-C (SIGINT) or SIGTERM (a batch scheduler's time limit, a shutdown): the batch under
  way finishes, the checkpoint is written, and :class:`~eqprop.errors.Interrupted` (a
  :class:`KeyboardInterrupt`) is raised; a second signal stops at once, keeping the last
  checkpoint. A file ``stop-request`` in the run directory asks the same (it is how a sweep or
  an experiment on Ray stops its workers; it is removed once honoured, and one left from
  before the process started is dropped).

Every file is written atomically, so a crash (SIGKILL, power loss, a full disk) leaves either
its old or its new version. A new run directory appears complete (with its ``config.toml``) or
not at all. The checkpoint is the source of truth: resuming verifies it (its zip CRCs, its
stored checksum, that the config it records is the run's ``config.toml`` but for a longer
``train.epochs``, that its shapes fit), loads it with ``weights_only=True`` (a checkpoint
cannot run code), verifies ``best.pt`` alike, rewrites ``metrics.jsonl`` from the metrics it
holds and drops any per-epoch file written after it, so a run killed at any moment and
resumed ends with the same weights and metrics as one never interrupted. An epoch's record
reaches ``metrics.jsonl`` only after the checkpoint that holds it: a directory whose metrics
hold finished epochs but whose checkpoint is gone is refused, and only one that never
reached its first checkpoint (or lost it before finishing an epoch) starts again from the
beginning, with a note saying so. A process training a run
holds a lock on its directory (``flock``); a second one is refused.

Every check that can fail (config, device, data, layer sizes against the data, memory, the
checkpoint) runs before anything is written; every write that fails (a full disk, a read-only
directory) is one line naming the path and the fix (:class:`~eqprop.errors.EqpropError`).

The modules, one job each: :mod:`~eqprop.runs.files` (the files' names, atomic writes, path
checks, reading a run), :mod:`~eqprop.runs.build` (the network, trainer and data a config
describes), :mod:`~eqprop.runs.checks` (the checks before anything is written),
:mod:`~eqprop.runs.checkpoints` (checkpoints and ``best.pt``, verified),
:mod:`~eqprop.runs.directory` (creating, locking and stopping a run directory),
:mod:`~eqprop.runs.progress` (progress lines) and :mod:`~eqprop.runs.train` (training a run
directory). Their public names are importable from :mod:`eqprop.runs` itself; a name with a
leading underscore is the package's own, shared between its modules but not part of the API.
"""

from eqprop.runs.build import (
    build_network,
    build_topology,
    build_trainer,
    build_update,
    load_data,
    run_topology,
)
from eqprop.runs.checkpoints import (
    RESUME_MAY_CHANGE,
    check_trained_with,
    config_digest,
    config_record,
    load_best,
    load_checkpoint,
    not_fitting,
    read_checkpoint,
    save_best,
    save_checkpoint,
    start_over,
    state_digest,
)
from eqprop.runs.checks import (
    RunOptions,
    check_data_fits,
    check_device,
    check_run,
    image_shape,
    memory_lower_bound,
)
from eqprop.runs.directory import (
    STOP_SIGNALS,
    check_new_run_dir,
    in_use,
    require_tensorboard,
    start_run,
)
from eqprop.runs.files import (
    BEST,
    CHECKPOINT,
    CONFIG,
    DATA_DIR,
    DATA_SHA256,
    METRICS,
    RATES,
    STEPS,
    STOP_REQUEST,
    TOPOLOGY,
    atomic_write,
    atomic_write_bytes,
    check_output_dir,
    check_path,
    check_regular_file,
    check_writable_file,
    read_config,
    read_free_steps,
    read_layer_rates,
    read_metrics,
)
from eqprop.runs.progress import Progress
from eqprop.runs.train import train_run

__all__ = [
    "BEST",
    "CHECKPOINT",
    "CONFIG",
    "DATA_DIR",
    "DATA_SHA256",
    "METRICS",
    "Progress",
    "RATES",
    "RESUME_MAY_CHANGE",
    "RunOptions",
    "STEPS",
    "STOP_REQUEST",
    "STOP_SIGNALS",
    "TOPOLOGY",
    "atomic_write",
    "atomic_write_bytes",
    "build_network",
    "build_topology",
    "build_trainer",
    "build_update",
    "check_data_fits",
    "check_device",
    "check_new_run_dir",
    "check_output_dir",
    "check_path",
    "check_regular_file",
    "check_run",
    "check_trained_with",
    "check_writable_file",
    "config_digest",
    "config_record",
    "image_shape",
    "in_use",
    "load_best",
    "load_checkpoint",
    "load_data",
    "memory_lower_bound",
    "not_fitting",
    "read_checkpoint",
    "read_config",
    "read_free_steps",
    "read_layer_rates",
    "read_metrics",
    "require_tensorboard",
    "run_topology",
    "save_best",
    "save_checkpoint",
    "start_over",
    "start_run",
    "state_digest",
    "train_run",
]
