"""Evaluation of trained runs on a split: loss in nats per character, bits per character, perplexity.

`bits_per_char` and `perplexity` live here (not in rnnkit/metrics.py, which holds the metro metrics).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from rnnkit.errors import UsageError

SPLITS = ("train", "val", "test")


def bits_per_char(nats_per_char: float) -> float:
    """Cross-entropy in nats per character -> bits per character."""
    return nats_per_char / math.log(2)


def perplexity(nats_per_char: float) -> float:
    """Per-character perplexity exp(loss); inf rather than an OverflowError for a hopeless model."""
    try:
        return math.exp(nats_per_char)
    except OverflowError:
        return float("inf")


@torch.no_grad()
def split_sums(task, model: nn.Module, split: str, batch_size: int, device: torch.device, max_batches: int = 0,
               num_replicas: int = 1, rank: int = 0) -> dict[str, float]:
    """The task's summed evaluation counts over (the first `max_batches` batches of) one split.

    Under several processes each rank sums its shard; the caller all-reduces the result.
    """
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {"loss_sum": 0.0, "count": 0.0}
    try:
        batches = task.batches(split, batch_size, seed=0, shuffle=False, num_replicas=num_replicas, rank=rank)
        for index, batch in enumerate(batches):
            if max_batches and index >= max_batches:
                break
            for key, value in task.eval_sums(model, batch, device).items():
                totals[key] = totals.get(key, 0.0) + value
    finally:
        model.train(was_training)
    return totals


def evaluate_run(run_dir: str | Path, split: str = "val", which: str = "best", device: str = "auto",
                 batch_size: int | None = None, data_root: str | Path | None = None) -> dict:
    """Metrics of one run on `split`: {"run", "split", "which", "step", "loss", "bpc", "perplexity", ...}.

    The split is rebuilt from the run's config (prepared data is cached); the vocabulary must match the run's.
    """
    from rnnkit.checkpoint import load_with_checkpoint, pick_device
    from rnnkit.tasks import get_task

    if split not in SPLITS:
        raise UsageError(f"--split: {split!r} is not one of {', '.join(SPLITS)}")
    run_dir = Path(run_dir)
    torch_device = pick_device(device)
    cfg, _, model, ckpt = load_with_checkpoint(run_dir, which=which, device=torch_device)
    task = get_task(cfg.task)(cfg, data_root).setup()
    task.check_artifacts(run_dir)
    sums = split_sums(task, model, split, batch_size or cfg.train.batch_size, torch_device)
    if not sums["count"]:
        raise UsageError(f"{run_dir}: the {split} split is empty; set data.{split}_fraction above 0 "
                         f"or evaluate another --split")
    record = {"run": str(run_dir), "task": cfg.task, "split": split, "which": ckpt.which, "step": ckpt.step,
              **task.metrics(sums), ("characters" if cfg.task == "lm" else "items"): int(sums["count"])}
    if hasattr(task, "report"):  # classify, forecast: confusion matrix, errors per horizon, baselines...
        record.update(task.report(model, split, batch_size or cfg.train.batch_size, torch_device))
    return record
