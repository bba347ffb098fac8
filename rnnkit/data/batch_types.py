"""The batches tasks train on, as named tuples: `batch.targets` rather than `batch[1]`; `.to(device)` moves all.

Time-major throughout: T time steps, B sequences.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def _moved(batch: tuple, device: torch.device | str):
    return type(batch)(*(t.to(device, non_blocking=True) for t in batch))


class TokenBatch(NamedTuple):
    """Next-character prediction: the model reads `inputs` and is scored on `targets`."""

    inputs: Tensor  # (T, B) long
    targets: Tensor  # (T, B) long; PAD beyond each length
    lengths: Tensor  # (B,) long, real steps per sequence

    def to(self, device) -> TokenBatch:
        return _moved(self, device)


class LabelledBatch(NamedTuple):
    """Sequence classification: one label per sequence."""

    inputs: Tensor  # (T, B, F) float (metro flows) or (T, B) long (characters)
    labels: Tensor  # (B,) long
    lengths: Tensor  # (B,) long

    def to(self, device) -> LabelledBatch:
        return _moved(self, device)


class ForecastBatch(NamedTuple):
    """Multi-step forecasting windows (see `rnnkit.tasks.forecast.ForecastTask.make_batch`)."""

    x: Tensor  # (H, B, D) normalised inputs (+ time features)
    y: Tensor  # (H, B, K, N) normalised targets: the K steps after each input step
    lengths: Tensor  # (B,)
    truth: Tensor  # (B, K, N) counts after the last input step
    windows: Tensor  # (B, 2) long (day, first slot)
    future: Tensor  # (K, B, extra) time features of the K forecast slots
    base: Tensor  # (H, B, K, N) normalised: what the direct forecaster's output is added to (model.forecast_base)

    def to(self, device) -> ForecastBatch:
        return _moved(self, device)

    def select(self, rows: Tensor) -> ForecastBatch:
        """The windows `rows` (M,) long of the batch, each tensor indexed on its batch dimension."""
        dims = (1, 1, 0, 0, 0, 1, 1)  # where B is in x, y, lengths, truth, windows, future, base
        return ForecastBatch(*(t.index_select(dim, rows) for t, dim in zip(self, dims, strict=True)))
