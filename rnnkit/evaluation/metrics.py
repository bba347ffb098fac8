"""Metrics from counts: bits per character and perplexity, classification accuracy and confusion, forecast
errors per horizon masked like PVCGN."""

from __future__ import annotations

import math

import torch
from torch import Tensor

ERROR_KEYS = ("abs", "sq", "pct", "n")


def bits_per_char(nats_per_char: float) -> float:
    """Cross-entropy in nats per character -> bits per character."""
    return nats_per_char / math.log(2)


def perplexity(nats_per_char: float) -> float:
    """Per-character perplexity exp(loss); inf rather than an OverflowError for a hopeless model."""
    try:
        return math.exp(nats_per_char)
    except OverflowError:
        return float("inf")


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) long counts: row = true class, column = predicted class. pred, target: (N,) long."""
    flat = target.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def accuracy(confusion: Tensor) -> float:
    """Fraction of correct predictions (the trace) of a confusion matrix; nan when it is empty."""
    total = int(confusion.sum())
    return float(confusion.trace()) / total if total else math.nan


def per_class_accuracy(confusion: Tensor) -> list[float]:
    """Recall of each true class (row); nan for a class with no example."""
    rows = confusion.sum(dim=1)
    return [float(confusion[c, c]) / int(n) if int(n) else math.nan for c, n in enumerate(rows)]


def masked_error_sums(pred: Tensor, target: Tensor, null_val: float = 0.0) -> dict[str, Tensor]:
    """Per-horizon sums of |e|, e^2, |e|/|y| and the count over entries where target != null_val.

    pred, target: (B, K, ...) on the original scale; returns {"abs", "sq", "pct", "n"}, each (K,) float64.
    Summing these over batches and dividing at the end gives exactly PVCGN's masked metrics computed on
    the whole test set at once (lib/metrics.py: the mask is renormalised to mean 1, i.e. a masked mean).
    """
    pred, target = pred.double(), target.double()
    mask = target != null_val  # (B, K, ...)
    err = torch.where(mask, pred - target, 0.0)
    safe = torch.where(mask, target.abs(), 1.0)
    dims = [0] + list(range(2, pred.dim()))
    return {"abs": err.abs().sum(dims), "sq": (err * err).sum(dims), "pct": (err.abs() / safe).sum(dims),
            "n": mask.double().sum(dims)}


def add_sums(total: dict[str, Tensor] | None, more: dict[str, Tensor]) -> dict[str, Tensor]:
    """Accumulate `masked_error_sums` results."""
    if total is None:
        return {k: v.clone() for k, v in more.items()}
    return {k: total[k] + more[k] for k in ERROR_KEYS}


def horizon_errors(sums: dict[str, Tensor], minutes_per_step: int = 15) -> list[dict[str, float]]:
    """[{"horizon": 1, "minutes": 15, "mae", "rmse", "mape" (percent)}, ...] from accumulated sums."""
    rows = []
    for k in range(len(sums["n"])):
        n = float(sums["n"][k])
        mae = float(sums["abs"][k]) / n if n else math.nan
        rmse = math.sqrt(float(sums["sq"][k]) / n) if n else math.nan
        mape = 100.0 * float(sums["pct"][k]) / n if n else math.nan
        rows.append({"horizon": k + 1, "minutes": (k + 1) * minutes_per_step, "mae": mae, "rmse": rmse,
                     "mape": mape})
    return rows
