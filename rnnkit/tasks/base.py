"""What the trainer, `eval` and the run loader ask of a task, said in code (`typing.Protocol`).

Every task implements `Task`. What only some tasks do has its own small protocol, checked with
`isinstance(task, Reports)` etc. instead of `hasattr` probes. Tasks return plain data (dicts of numbers and
lists); turning it into tables is the CLI's job (`rnnkit/cli/tables.py`).

Losses are summed, not averaged, so that the loop divides by the item count of the whole global batch:
under DistributedDataParallel that gives exactly the gradient of one process on the combined batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


class Batches(Protocol):
    """The batches of one split: iterable, sized, and positioned by (epoch, batches already consumed)."""

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self): ...


@runtime_checkable
class Task(Protocol):
    """A learning problem: its data, its model, its loss and its metrics."""

    name: str  # the registry key (`task:` in a config)
    unit: str  # what one input time step is called in throughput figures ("char", "step")

    def __init__(self, cfg: Any, data_root: str | Path | None = None) -> None: ...

    def setup(self) -> Task:
        """Prepare or load the data (cached by its settings); returns self."""

    @classmethod
    def from_run(cls, cfg: Any, run_dir: str | Path) -> Task:
        """The task with a run's saved artifacts (vocabulary, class names, normaliser) and no data."""

    def save_artifacts(self, run_dir: Path) -> None:
        """Write what inference needs besides the weights next to config.yaml (atomically)."""

    def check_artifacts(self, run_dir: Path) -> None:
        """CheckpointError when the prepared data differs from what the run was trained on."""

    def build_model(self) -> nn.Module: ...

    def num_sequences(self, split: str) -> int: ...

    def batches(self, split: str, batch_size: int, seed: int, shuffle: bool, num_replicas: int = 1,
                rank: int = 0) -> Batches:
        """Batches of a split (named tuples of `rnnkit.data.batch_types`); the order is a function of
        (seed, epoch); with several processes each rank gets its shard."""

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor, int]:
        """(summed loss, item count, input time steps read) of one batch. Tasks that feed their outputs back (lm,
        forecast) also take `teacher_forcing=p`, the scheduled-sampling probability of the step."""

    def eval_sums(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, float]:
        """Summed evaluation counts of one batch (summed across batches and processes by the caller)."""

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Metrics from summed counts; "loss" first: what early stopping and `best` follow."""

    def samples(self, model: nn.Module, device: torch.device, n: int = 3, seed: int = 0) -> list[str]:
        """A few generated examples for TensorBoard and the end of training (may be empty)."""


@runtime_checkable
class Reports(Protocol):
    """A task whose `eval` adds a report beyond the summed metrics (confusion matrix, errors per horizon)."""

    def report(self, model: nn.Module, split: str, batch_size: int, device: torch.device) -> dict: ...


@runtime_checkable
class FreeRunning(Protocol):
    """A language model whose loss can be measured while it reads only its own predictions."""

    def free_running_sums(self, model: nn.Module, batch: Any, device: torch.device, feed: str,
                          generator: torch.Generator | None = None) -> dict[str, float]: ...


@runtime_checkable
class CarriesState(Protocol):
    """A task whose consecutive batches of a split continue one another (truncated backpropagation through time
    over a character stream, data.mode: stream), so the recurrent state is carried from batch to batch.

    Where `carries_state` is true the trainer calls `loss_carried` instead of `loss`, passing each batch's
    initial state (None = zeros, at the start of every epoch) and keeping the final state it returns, detached,
    for the next batch; it saves that state with the `last` checkpoint so that a resumed run continues exactly.
    Evaluation (`rnnkit.evaluation.split.split_sums`) carries the state over its batches the same way.
    """

    @property
    def carries_state(self) -> bool: ...

    def loss_carried(self, model: nn.Module, batch: Any, device: torch.device,
                     state: Any) -> tuple[Tensor, Tensor, int, Any]:
        """(summed loss, item count, input time steps read, final state) of one batch read from `state`."""

    def eval_sums_carried(self, model: nn.Module, batch: Any, device: torch.device,
                          state: Any) -> tuple[dict[str, float], Any]:
        """(summed evaluation counts, final state) of one batch read from `state`."""
