"""Classification data: windows of one metro station's flows (label = station), labelled character samples.

Both give batches `(inputs, labels (B,) long, lengths (B,) long)`: metro inputs are `(L, B, F)` floats with one
length L per batch, drawn in data.min_window..data.window when training (the course varies it between
batches); langid inputs are `(T, B)` character ids padded with PAD.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.batch_types import LabelledBatch
from rnnkit.data.batches import IndexBatches
from rnnkit.data.metro import SLOTS, Normaliser, metro_splits, select
from rnnkit.data.vocab import PAD
from rnnkit.errors import DataError

REPORT_LENGTHS = (2, 4, 8, 12, 16, 24, 32, 48, 64, 73, 96, 128, 256)


class StationWindows:
    """Windows of `data.window` (or fewer) quarter-hours of one station inside one day; label = station."""

    kind = "metro"
    vocab_size = 0

    def __init__(self, data_cfg, train: Tensor, test: Tensor):
        if data_cfg.window > SLOTS:
            raise DataError(f"data.window: {data_cfg.window} quarter-hours do not fit in a day of {SLOTS}; "
                            f"use at most {SLOTS}")
        self.cfg = data_cfg
        raw = {k: select(v, data_cfg.stations, data_cfg.flows) for k, v in
               metro_splits(train, test, data_cfg.val_days, data_cfg.holdout_days).items()}
        self.normaliser = Normaliser.fit(raw["train"], per=data_cfg.normalise)
        self.splits = {k: self.normaliser.apply(v) for k, v in raw.items()}  # (D, 73, S, F)
        self.num_stations, self.input_size = raw["train"].shape[2], raw["train"].shape[3]
        self.class_names = [f"station {i}" for i in range(self.num_stations)]
        self.shortest = data_cfg.min_window or data_cfg.window

    def items(self, split: str, length: int) -> Tensor:
        """(N, 3) long (day, station, start) of every window of `length` slots of the split."""
        days = self.splits[split].shape[0]
        grid = torch.cartesian_prod(torch.arange(days), torch.arange(self.num_stations),
                                    torch.arange(SLOTS - length + 1))
        return grid.view(-1, 3)

    def windows(self, split: str, items: Tensor, length: int) -> LabelledBatch:
        """LabelledBatch: x (L, B, F), labels (B,), lengths (B,) for items (B, 3) whose windows start at items[:, 2]."""
        z = self.splits[split]
        slots = items[:, 2:3] + torch.arange(length)  # (B, L)
        x = z[items[:, :1], slots, items[:, 1:2]]  # (B, L, F)
        return LabelledBatch(x.transpose(0, 1).contiguous(), items[:, 1].clone(), torch.full((len(items),), length))

    def num_items(self, split: str) -> int:
        return len(self.items(split, self.shortest if split == "train" else self.cfg.window))

    def batches(self, split: str, batch_size: int, seed: int, shuffle: bool, num_replicas: int = 1,
                rank: int = 0, length: int | None = None) -> IndexBatches:
        """Training (shuffle): a length per batch in min_window..window; otherwise every window of `length`."""
        lo, hi = self.shortest, self.cfg.window
        if not shuffle:
            length = length or hi
            items = self.items(split, length)

            def every(idx: np.ndarray, epoch: int, number: int):
                return self.windows(split, items[torch.from_numpy(idx)], length)

            return IndexBatches(len(items), every, batch_size, seed, False, num_replicas=num_replicas, rank=rank)
        items = self.items(split, lo)

        def build(idx: np.ndarray, epoch: int, number: int):
            length = int(np.random.default_rng([seed, epoch, number]).integers(lo, hi + 1))
            chosen = items[torch.from_numpy(idx)].clone()
            # spread the starts over the slots a longer window leaves, so that it still ends inside the day
            chosen[:, 2] = chosen[:, 2] * (SLOTS - length) // max(SLOTS - lo, 1)
            return self.windows(split, chosen, length)

        return IndexBatches(len(items), build, batch_size, seed, True, num_replicas=num_replicas, rank=rank)

    def report_lengths(self) -> list[int]:
        return sorted({n for n in REPORT_LENGTHS if n <= SLOTS} | {self.shortest, self.cfg.window})


class TextSamples:
    """Labelled character samples of the langid source (padded; lengths per sample)."""

    kind = "text"
    input_size = 0

    def __init__(self, data_cfg, manifest: dict, vocab, splits: dict):
        self.cfg, self.vocab, self.splits = data_cfg, vocab, splits
        self.class_names = list(manifest["classes"])
        self.vocab_size = len(vocab)

    def num_items(self, split: str) -> int:
        return len(self.splits[split][0])

    def samples(self, split: str, length: int | None) -> tuple[list[Tensor], Tensor]:
        """The split's samples, truncated to their first `length` characters (shorter ones left out)."""
        samples, labels = self.splits[split]
        if length is None:
            return samples, labels
        keep = [i for i, s in enumerate(samples) if len(s) >= length]
        return [samples[i][:length] for i in keep], labels[keep]

    def batches(self, split: str, batch_size: int, seed: int, shuffle: bool, num_replicas: int = 1,
                rank: int = 0, length: int | None = None) -> IndexBatches:
        samples, labels = self.samples(split, length)
        lengths = [len(s) for s in samples]

        def build(idx: np.ndarray, epoch: int, number: int):
            chosen = [samples[i] for i in idx]
            size = torch.tensor([len(s) for s in chosen], dtype=torch.long)  # (B,)
            padded = torch.full((int(size.max()), len(chosen)), PAD, dtype=torch.long)  # (T, B)
            for b, s in enumerate(chosen):
                padded[:len(s), b] = s
            return LabelledBatch(padded, labels[torch.as_tensor(idx)], size)

        return IndexBatches(len(samples), build, batch_size, seed, shuffle, lengths=lengths,
                            num_replicas=num_replicas, rank=rank)

    def report_lengths(self) -> list[int]:
        longest = max((len(s) for s in self.splits["test"][0]), default=0)
        return sorted({n for n in REPORT_LENGTHS if n < longest} | {longest})  # the full samples last
