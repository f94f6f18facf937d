"""Training protocol of the seed (section 3): mini-batches of 128, L2 1e-5, early stopping and
model selection on a validation split; the test split is only ever reported.

Early stopping. The paper's Table 1 grids an "early stop starting point" (200k-1000k for MLPs);
we read it as a number of training examples seen, after which patience-based early stopping is
switched on: the run stops at the first validation evaluation at or after ``early_stop_start``
examples that has seen no improvement of the validation accuracy for ``patience`` evaluations
(or at ``max_examples``). The reported model is the checkpoint with the best validation accuracy
up to the stop.

Because training is deterministic and the stopping rule never changes the trajectory before the
stop, one run with the largest starting point contains every run with a smaller one as a prefix:
:meth:`TrainResult.select` recovers their results exactly from the evaluation history. For that,
the test accuracy is measured at every checkpoint that improves on the best validation accuracy
so far (the only candidates selection can return); selection itself reads only validation
accuracies.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from tqdm import tqdm

from eqprop.baselines._validation import check_number
from eqprop.baselines.rule import LearningRule
from eqprop.errors import ConfigError, EqpropError
from eqprop.runs import Progress, load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and early-stopping settings of one training run.

    Attributes:
        learning_rate: Adam step size (the paper's grids: Table 1).
        early_stop_start: examples seen before early stopping may end the run.
        patience: validation evaluations without improvement that end the run.
        max_examples: hard cap on the examples seen.
        eval_every: examples between validation evaluations.
        batch_size: examples per update (128 in the paper).
        weight_decay: L2 coefficient on every parameter (1e-5 in the paper).
        seed: seed of the mini-batch order.
    """

    learning_rate: float = 1e-3
    early_stop_start: int = 200_000
    patience: int = 3
    max_examples: int = 1_000_000
    eval_every: int = 50_000
    batch_size: int = 128
    weight_decay: float = 1e-5
    seed: int = 0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_number(owner, "learning_rate", self.learning_rate, 1e-12, 10.0)
        check_number(owner, "max_examples", self.max_examples, 1, 10**12, integer=True)
        check_number(
            owner, "early_stop_start", self.early_stop_start, 0, self.max_examples, integer=True
        )
        check_number(owner, "patience", self.patience, 1, 10**6, integer=True)
        check_number(owner, "eval_every", self.eval_every, 1, 10**12, integer=True)
        check_number(owner, "batch_size", self.batch_size, 1, 10**6, integer=True)
        check_number(owner, "weight_decay", self.weight_decay, 0.0, 1.0)
        check_number(owner, "seed", self.seed, 0, 2**63 - 1, integer=True)


class _Split(Protocol):
    x: Tensor
    y: Tensor


class _Dataset(Protocol):
    train: _Split
    valid: _Split | None
    test: _Split
    n_classes: int
    image_shape: tuple[int, ...]


@dataclass(frozen=True)
class TrainingData:
    """Train / validation / test tensors (flat float inputs in [0, 1], int64 labels)."""

    train_x: Tensor
    train_y: Tensor
    valid_x: Tensor
    valid_y: Tensor
    test_x: Tensor
    test_y: Tensor
    n_classes: int
    image_shape: tuple[int, ...]

    @classmethod
    def from_dataset(
        cls,
        dataset: _Dataset,
        *,
        train_limit: int | None = None,
        valid_limit: int | None = None,
        test_limit: int | None = None,
    ) -> TrainingData:
        """Tensors from an :func:`eqprop.data.load_dataset` result with a validation split
        (``split="icons"``: MNIST 50k / 10k / 10k, the paper's split). Limits keep the first
        examples of each split.
        """
        if dataset.valid is None:
            raise ConfigError(
                "the baselines select models on a validation split; load the dataset with "
                'split="icons"'
            )
        train_x, train_y = _tensors(dataset.train)
        valid_x, valid_y = _tensors(dataset.valid)
        test_x, test_y = _tensors(dataset.test)
        return cls(
            train_x[:train_limit],
            train_y[:train_limit],
            valid_x[:valid_limit],
            valid_y[:valid_limit],
            test_x[:test_limit],
            test_y[:test_limit],
            int(dataset.n_classes),
            tuple(int(s) for s in dataset.image_shape),
        )

    def input_shape(self, convolutional: bool) -> tuple[int, ...]:
        """Per-example input shape: ``(C, H, W)`` for a ConvNet (``C = 1`` for a grey
        ``(H, W)`` image), ``(C * H * W,)`` for an MLP."""
        if not convolutional:
            return (math.prod(self.image_shape),)
        return tuple(self.image_shape) if len(self.image_shape) == 3 else (1, *self.image_shape)


def _tensors(split: _Split) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(split.x, dtype=torch.float32)
    y = torch.as_tensor(split.y, dtype=torch.int64)
    return x.reshape(x.shape[0], -1), y


@dataclass(frozen=True)
class Evaluation:
    """One checkpoint: accuracies after ``examples`` training examples.

    ``test_accuracy`` is measured only where the validation accuracy beats every earlier
    checkpoint (the only checkpoints :meth:`TrainResult.select` can return) and is NaN
    elsewhere. ``train_stats`` averages the rule's batch statistics since the previous
    evaluation (empty at ``examples == 0``).
    """

    examples: int
    valid_accuracy: float
    test_accuracy: float
    train_stats: dict[str, float] = field(default_factory=dict)


def stopping_index(
    evaluations: tuple[Evaluation, ...] | list[Evaluation], early_stop_start: int, patience: int
) -> int | None:
    """Index of the evaluation at which early stopping ends a run, or None if it never does."""
    best = 0
    for index, evaluation in enumerate(evaluations):
        if evaluation.valid_accuracy > evaluations[best].valid_accuracy:
            best = index
        if evaluation.examples >= early_stop_start and index - best >= patience:
            return index
    return None


@dataclass(frozen=True)
class TrainResult:
    """History of one run.

    Attributes:
        config: the run's settings.
        evaluations: checkpoints, the first at 0 examples.
        diverged: whether training stopped on a non-finite loss.
        seconds: wall time of the run.
        cpu_seconds: CPU time of the process during the run (robust to a shared machine).
    """

    config: TrainConfig
    evaluations: tuple[Evaluation, ...]
    diverged: bool
    seconds: float
    cpu_seconds: float

    def select(self, early_stop_start: int | None = None) -> Evaluation:
        """The checkpoint reported for a run with this early-stopping start (default: the
        run's own): best validation accuracy up to the stop, earliest on ties.

        Exact for any ``early_stop_start`` up to the run's own (see the module docstring).
        """
        start = self.config.early_stop_start if early_stop_start is None else early_stop_start
        if start > self.config.early_stop_start:
            raise ConfigError(
                f"early_stop_start {start} exceeds the run's own "
                f"{self.config.early_stop_start}; train with the largest starting point"
            )
        stop = stopping_index(self.evaluations, start, self.config.patience)
        candidates = self.evaluations[: len(self.evaluations) if stop is None else stop + 1]
        return max(candidates, key=lambda e: (e.valid_accuracy, -e.examples))


@torch.no_grad()
def accuracy(rule: LearningRule, x: Tensor, y: Tensor, chunk: int = 2000) -> float:
    """Fraction of ``x`` the rule's network classifies correctly (argmax of the logits)."""
    correct = 0
    for start in range(0, len(y), chunk):
        logits = rule.network(x[start : start + chunk])
        correct += int((logits.argmax(1) == y[start : start + chunk]).sum())
    return correct / max(len(y), 1)


def _batches_to_cap(n_train: int, config: TrainConfig) -> int:
    """Batches :func:`train` runs when it goes on to ``max_examples`` (every epoch a new
    order of all ``n_train`` examples, its last batch possibly short)."""
    if n_train <= 0:
        return 0
    epochs, rest = divmod(config.max_examples, n_train)
    per_epoch = -(-n_train // config.batch_size)
    return epochs * per_epoch + -(-rest // config.batch_size)


class RunProgress(Progress):
    """Progress over the runs of an experiment, in the style of :mod:`eqprop.runs`: a bar on
    a terminal; elsewhere (a log file, a pipe) one plain line on stderr per finished run,
    with its outcome and how many runs remain. Never writes to stdout."""

    def __init__(self, total: int, desc: str, *, initial: int = 0, enabled: bool = True) -> None:
        super().__init__(total, desc, initial=initial, enabled=False)  # the bar is ours
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit="run", leave=False, file=sys.stderr
            )
        self.started, self.finished_here = time.monotonic(), 0

    def update(self, postfix: str = "") -> None:
        """One run finished; ``postfix`` says how it went."""
        if self.bar is not None:
            super().update(postfix)
            return
        self.n += 1
        self.finished_here += 1
        if not self.enabled:
            return
        left = self.total - self.n
        if left > 0:
            per_run = (time.monotonic() - self.started) / self.finished_here
            remaining = f"{left} left, about {per_run * left:.0f} s"
        else:
            remaining = "none left"
        outcome = f" {postfix};" if postfix else ""
        print(
            f"{self.desc}: run {self.n}/{self.total} done:{outcome} {remaining}",
            file=sys.stderr,
            flush=True,
        )


#: version of the baseline checkpoint layout written by :func:`train`
CHECKPOINT_FORMAT = 1


def _fresh_progress(config: TrainConfig) -> dict:
    """The counters of :func:`train` before its first batch."""
    return {
        "evaluations": [],
        "seen": 0,  # training examples seen
        "batches": 0,  # updates made
        "next_eval": config.eval_every,
        "order": None,  # the current epoch's permutation of the training examples
        "position": 0,  # its batches done
        "finished": False,
        "diverged": False,
        "seconds": 0.0,  # wall and CPU time of the earlier parts of an interrupted run
        "cpu_seconds": 0.0,
    }


def _restore(
    path: Path,
    rule: LearningRule,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict:
    """Load the checkpoint at ``path`` into ``rule``, ``optimizer`` and ``generator``; return
    its counters. A checkpoint of another rule or of other settings is refused in one line
    (going on from it would silently mix two runs)."""
    state = load_checkpoint(path)["trainer"]
    if state.get("format") != CHECKPOINT_FORMAT or state.get("rule") != rule.name:
        raise EqpropError(
            f"{path} is not a checkpoint of this {rule.name} run; delete it to train the run "
            "again from the start"
        )
    saved, wanted = state["config"], asdict(config)
    if saved != wanted:
        changed = ", ".join(sorted(k for k in wanted if saved.get(k) != wanted[k]))
        raise EqpropError(
            f"{path} was written with other training settings ({changed}); delete it to train "
            "the run again with these"
        )
    rule.load_state_dict(state["rule_state"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    progress = {key: state[key] for key in _fresh_progress(config)}
    progress["evaluations"] = [Evaluation(**e) for e in progress["evaluations"]]
    return progress


def train(
    rule: LearningRule,
    data: TrainingData,
    config: TrainConfig,
    *,
    desc: str = "train",
    progress: bool = True,
    checkpoint: Path | None = None,
) -> TrainResult:
    """Train ``rule.network`` with Adam until early stopping, ``max_examples`` or divergence.

    Returns the evaluation history; use :meth:`TrainResult.select` for the reported checkpoint.
    With ``progress``, a bar over the batches (up to ``max_examples``; early stopping ends it
    sooner) with the latest validation accuracy shows on stderr, named ``desc``; when stderr
    is not a terminal, a plain line at most every
    :data:`~eqprop.runs.progress.PLAIN_PROGRESS_EVERY_S` seconds instead. It never changes the
    result.

    With ``checkpoint`` (a file path), the whole training state is written there atomically
    at every evaluation and at the end, and a run whose file exists goes on from it: the
    result is the uninterrupted run's, bit for bit (``seconds`` and ``cpu_seconds`` add up
    the parts). The file must come from the same rule, built the same way, and ``config``.
    """
    begin, begin_cpu = time.perf_counter(), time.process_time()
    optimizer = torch.optim.Adam(
        rule.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)

    def evaluate(examples: int, stats: list[dict[str, float]]) -> Evaluation:
        keys = stats[0].keys() if stats else ()
        means = {k: sum(s[k] for s in stats) / len(stats) for k in keys}
        valid = accuracy(rule, data.valid_x, data.valid_y)
        record = all(valid > e.valid_accuracy for e in run["evaluations"])
        test = accuracy(rule, data.test_x, data.test_y) if record else math.nan
        return Evaluation(examples, valid, test, means)

    def spent() -> tuple[float, float]:
        return (
            run["seconds"] + time.perf_counter() - begin,
            run["cpu_seconds"] + time.process_time() - begin_cpu,
        )

    def save() -> None:
        if checkpoint is None:
            return
        seconds, cpu_seconds = spent()
        trainer = {
            **run,
            "format": CHECKPOINT_FORMAT,
            "rule": rule.name,
            "config": asdict(config),
            "rule_state": rule.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "evaluations": [asdict(e) for e in run["evaluations"]],
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
        }
        save_checkpoint(Path(checkpoint), {"trainer": trainer})

    if checkpoint is not None and Path(checkpoint).exists():
        run = _restore(Path(checkpoint), rule, config, optimizer, generator)
    else:
        run = _fresh_progress(config)
        run["evaluations"].append(evaluate(0, []))
    done_before = run["finished"]  # a finished run's file is read, not written again
    stats: list[dict[str, float]] = []
    total = _batches_to_cap(len(data.train_y), config)
    bar = Progress(total, desc, initial=run["batches"], enabled=progress)
    postfix = f"valid {run['evaluations'][-1].valid_accuracy:.2%}"
    try:
        while not run["finished"]:
            if run["order"] is None:
                run["order"] = torch.randperm(len(data.train_y), generator=generator)
                run["position"] = 0
            batches = run["order"].split(config.batch_size)
            while run["position"] < len(batches) and not run["finished"]:
                batch = batches[run["position"]]
                optimizer.zero_grad(set_to_none=True)
                batch_stats = rule.compute_gradients(data.train_x[batch], data.train_y[batch])
                if not all(math.isfinite(v) for v in batch_stats.values()):
                    run["diverged"] = run["finished"] = True
                    break
                optimizer.step()
                stats.append(batch_stats)
                run["seen"] += len(batch)
                run["batches"] += 1
                run["position"] += 1
                if run["seen"] >= run["next_eval"] or run["seen"] >= config.max_examples:
                    run["evaluations"].append(evaluate(run["seen"], stats))
                    postfix = f"valid {run['evaluations'][-1].valid_accuracy:.2%}"
                    stats = []
                    run["next_eval"] += config.eval_every
                    stop = stopping_index(
                        run["evaluations"], config.early_stop_start, config.patience
                    )
                    run["finished"] = stop is not None or run["seen"] >= config.max_examples
                    if not run["finished"]:
                        save()
                bar.update(postfix)
            if run["position"] >= len(batches):
                run["order"] = None
        if not done_before:
            save()  # the end: a rerun returns the result without training
    finally:  # also on an error, so that what follows starts on a clean line
        bar.close()
    seconds, cpu_seconds = spent()
    return TrainResult(config, tuple(run["evaluations"]), run["diverged"], seconds, cpu_seconds)
