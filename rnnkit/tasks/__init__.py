"""The task registry: what the trainer, `eval` and checkpoints ask of a task (data, model, loss, metrics).

A task class provides (see `LanguageModelTask` for the reference implementation):

    Task(cfg, data_root=None)                      then .setup(): prepare or load its data
    Task.from_run(cfg, run_dir)                    artifacts only (vocabulary...), for inference
    .save_artifacts(run_dir)                       files beside config.yaml (vocab.json)
    .check_artifacts(run_dir)                      CheckpointError when the run's artifacts differ
    .build_model() -> nn.Module
    .batches(split, batch_size, seed, shuffle, num_replicas, rank) -> loader with set_epoch(epoch, skip)
    .num_sequences(split) -> int
    .loss(model, batch, device) -> (summed loss tensor, item count tensor, characters int)
        tasks that feed their outputs back (lm, forecast) also take `teacher_forcing=p`: the trainer passes
        the scheduled-sampling probability of the step when train.teacher_forcing is not pure teacher
        forcing (see rnnkit/training/teacher_forcing.py)
    .free_running_sums(model, batch, device, feed, generator) -> dict   optional: `eval --free-running`
    .eval_sums(model, batch, device) -> dict of sums (summed across batches and processes by the caller)
    .metrics(sums) -> dict of metrics ("loss" first: what early stopping and `best` follow)
    .samples(model, device, n, seed) -> list[str]  (may be empty)
    .report(model, split, batch_size, device) -> dict   optional: `eval`'s task-specific report
    Task.tables(record) -> list of rich Tables             optional: how `eval` prints such a record

Losses are summed, not averaged, so that the loop divides by the item count of the whole global batch:
under DistributedDataParallel that gives exactly the gradient of one process on the combined batch.
"""

from __future__ import annotations

from rnnkit.errors import UsageError
from rnnkit.tasks.classify import ClassifyTask
from rnnkit.tasks.forecast import ForecastTask
from rnnkit.tasks.lm import LanguageModelTask

TASKS: dict[str, type] = {"lm": LanguageModelTask, "classify": ClassifyTask, "forecast": ForecastTask}


def get_task(name: str) -> type:
    """The task class registered under `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(f"task: {name!r} cannot be trained yet; available: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "get_task", "ClassifyTask", "ForecastTask", "LanguageModelTask"]
