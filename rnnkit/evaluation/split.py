"""Evaluation on a split: the task's summed counts over its batches, and the record `rnnkit eval` prints."""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.errors import UsageError
from rnnkit.tasks.base import CarriesState, Reports

SPLITS = ("train", "val", "test")


@torch.no_grad()
def split_sums(task, model: nn.Module, split: str, batch_size: int, device: torch.device, max_batches: int = 0,
               num_replicas: int = 1, rank: int = 0) -> dict[str, float]:
    """The task's summed evaluation counts over (the first `max_batches` batches of) one split.

    Under several processes each rank sums its shard; the caller all-reduces the result. A task that carries
    the recurrent state (CarriesState) reads its batches in order with the state carried from one to the next.
    """
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {"loss_sum": 0.0, "count": 0.0}
    carry = isinstance(task, CarriesState) and task.carries_state
    state = None
    try:
        batches = task.batches(split, batch_size, seed=0, shuffle=False, num_replicas=num_replicas, rank=rank)
        for index, batch in enumerate(batches):
            if max_batches and index >= max_batches:
                break
            if carry:
                sums, state = task.eval_sums_carried(model, batch, device, state)
            else:
                sums = task.eval_sums(model, batch, device)
            for key, value in sums.items():
                totals[key] = totals.get(key, 0.0) + value
    finally:
        model.train(was_training)
    return totals


def evaluate_loaded(run, split: str = "val", batch_size: int | None = None) -> dict:
    """Metrics of a loaded run (rnnkit.runs.loaded.LoadedRun) on `split`: {"run", "task", "split", "which",
    "step", "loss", ... task metrics, "characters" or "items", ... the task's report}.

    The split is rebuilt from the run's config (prepared data is cached); its artifacts must match the run's.
    """
    if split not in SPLITS:
        raise UsageError(f"--split: {split!r} is not one of {', '.join(SPLITS)}")
    task = run.data()
    batch_size = batch_size or run.cfg.train.batch_size
    sums = split_sums(task, run.model, split, batch_size, run.device)
    if not sums["count"]:
        raise UsageError(f"{run.path}: the {split} split is empty; set data.{split}_fraction above 0 "
                         f"or evaluate another --split")
    record = {"run": str(run.path), "task": run.cfg.task, "split": split, "which": run.which, "step": run.step,
              **task.metrics(sums), ("characters" if run.cfg.task == "lm" else "items"): int(sums["count"])}
    if isinstance(task, Reports):  # classify, forecast: confusion matrix, errors per horizon, baselines...
        record.update(task.report(run.model, split, batch_size, run.device))
    return record
