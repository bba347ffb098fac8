"""Shuffled batches of item indices built on demand (metro windows, langid samples), resumable like LM batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from rnnkit.data.datasets import BucketBatchSampler


class IndexBatches:
    """`set_epoch`, `len` and iteration over `build(indices, epoch, batch_number)` for every batch.

    The order is a pure function of (seed, epoch) and sharded across processes like `BucketBatchSampler`
    (items of similar `lengths` are batched together). `batch_number` counts global batches from the epoch's
    start, so a per-batch random choice (a window length) is the same on every process and after a resume.
    """

    def __init__(self, n: int, build: Callable, batch_size: int, seed: int, shuffle: bool,
                 lengths: Sequence[int] | None = None, num_replicas: int = 1, rank: int = 0):
        lengths = np.zeros(n, dtype=np.int64) if lengths is None else lengths
        self.sampler = BucketBatchSampler(lengths, batch_size, seed, shuffle, num_replicas=num_replicas, rank=rank)
        self.build = build

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.sampler.set_epoch(epoch, skip_batches)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator:
        for number, indices in enumerate(self.sampler, start=self.sampler.skip):
            yield self.build(np.asarray(indices, dtype=np.int64), self.sampler.epoch, number)
