"""Datasets and batching for language models: padded sentences, fixed windows, length bucketing.

Time-major throughout: a batch is `(T, B)`. In sentence mode every sentence ends with EOS and EOS is also
its start symbol: inputs = EOS followed by the sentence, targets = the sentence followed by EOS.
Generation must use the same convention: the first input for an empty prompt is EOS
(see `rnnkit.generation.generate`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from rnnkit.data.batch_types import TokenBatch
from rnnkit.data.vocab import EOS, PAD
from rnnkit.errors import DataError, UsageError

# Bucketing pools this many batches' worth of shuffled sentences, sorts the pool by length and cuts it
# into batches: little padding, yet batches still differ from epoch to epoch.
POOL_BATCHES = 50


class SentenceDataset(Dataset):
    """Variable-length sentences; item i is a (len_i,) LongTensor without EOS (pad_collate_fn adds it)."""

    def __init__(self, sentences: Sequence[torch.Tensor]):
        self.sentences = sentences  # a SplitView or any sequence of 1-D LongTensors

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.sentences[i]

    def lengths(self) -> torch.Tensor:
        """(n,) lengths with the EOS that pad_collate_fn appends."""
        if hasattr(self.sentences, "lengths"):
            return self.sentences.lengths() + 1
        return torch.tensor([len(s) + 1 for s in self.sentences], dtype=torch.long)


def pad_collate_fn(batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Append EOS to each 1-D sentence and pad with PAD: returns padded (L, B) long and lengths (B,) long.

    L = the longest sentence + 1; lengths count the real positions, EOS included.
    """
    lengths = torch.tensor([len(s) + 1 for s in batch], dtype=torch.long)  # (B,)
    padded = torch.full((int(lengths.max()) if len(batch) else 0, len(batch)), PAD, dtype=torch.long)  # (L, B)
    for b, sentence in enumerate(batch):
        padded[:len(sentence), b] = sentence
        padded[len(sentence), b] = EOS
    return padded, lengths


class WindowDataset(Dataset):
    """Fixed windows of `window + 1` characters over a stream (the course's fixed-length generation mode).

    Window i is stream[i*window : i*window + window + 1]: consecutive windows share one character so that
    every character but the first is a target exactly once. Item: (window + 1,) LongTensor.
    """

    def __init__(self, stream: torch.Tensor, window: int):
        if window < 1:
            raise UsageError(f"data.window: must be >= 1, got {window}")
        self.stream, self.window = stream, window  # stream: (N,) long

    def __len__(self) -> int:
        return max(0, (self.stream.numel() - 1) // self.window)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.window
        return self.stream[start:start + self.window + 1]


class BucketBatchSampler:
    """Batches of indices of similar lengths; the order is a pure function of (seed, epoch).

    shuffle=True: indices are shuffled, pooled POOL_BATCHES batches at a time, sorted by length inside a
    pool and cut into batches; then the batch order is shuffled. shuffle=False: sorted by length, in order
    (evaluation: least padding). drop_last drops the one incomplete batch.

    Distributed: each global batch of `batch_size` indices is cut into `num_replicas` contiguous shards
    (numpy.array_split) and rank r yields shard r, so every rank takes the same number of steps and the
    union of the shards of one step is the global batch. batch_size must be a multiple of num_replicas; a
    final batch with fewer indices than replicas is dropped (a rank would get nothing).
    """

    def __init__(self, lengths: Sequence[int] | torch.Tensor, batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, num_replicas: int = 1, rank: int = 0):
        if batch_size < 1:
            raise UsageError(f"train.batch_size: must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise UsageError(f"rank {rank} is outside 0..{num_replicas - 1}")
        if batch_size % num_replicas:
            raise UsageError(f"train.batch_size: {batch_size} is not a multiple of the {num_replicas} processes")
        self.lengths = np.asarray(torch.as_tensor(lengths).tolist() if isinstance(lengths, torch.Tensor)
                                  else lengths, dtype=np.int64)
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Choose the epoch whose order to iterate, and how many of its first batches to skip (resume)."""
        self.epoch, self.skip = epoch, skip_batches

    def global_batches(self) -> list[np.ndarray]:
        """All global batches of the current epoch, before sharding."""
        n, size = len(self.lengths), self.batch_size
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(n)
            pool = size * POOL_BATCHES
            chunks = [order[i:i + pool] for i in range(0, n, pool)]
            # stable sort by length inside each pool; ties keep the shuffled order
            order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")] for c in chunks]) if n else order
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = [order[i:i + size] for i in range(0, n, size)]
        if self.shuffle and batches:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        # Drop the one incomplete batch after shuffling, so that the other batches keep the order they have
        # without dropping: a 4-process run sees the 1-process run's batches, minus that one.
        return [b for b in batches if not (len(b) < size and (self.drop_last or len(b) < self.num_replicas))]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.skip:]:
            shard = np.array_split(batch, self.num_replicas)[self.rank] if self.num_replicas > 1 else batch
            yield shard.tolist()

    def __len__(self) -> int:
        n, size = len(self.lengths), self.batch_size
        full, rest = divmod(n, size)
        keep_rest = rest > 0 and not self.drop_last and rest >= self.num_replicas
        return max(0, full + int(keep_rest) - self.skip)


class LMBatches:
    """The batches of one split for a language model: `set_epoch`, `len`, and iteration.

    Each item is a TokenBatch: inputs (T, B) long, targets (T, B) long, lengths (B,) long.
    """

    def __init__(self, dataset: Dataset, sampler: BucketBatchSampler, mode: str):
        self.dataset, self.sampler, self.mode = dataset, sampler, mode

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.sampler.set_epoch(epoch, skip_batches)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[TokenBatch]:
        for indices in self.sampler:
            items = [self.dataset[i] for i in indices]
            yield sentence_batch(items) if self.mode == "sentences" else window_batch(items)


def sentence_batch(sentences: Sequence[torch.Tensor]) -> TokenBatch:
    """(inputs, targets, lengths): targets = padded sentences + EOS (L, B); inputs = EOS, targets[:-1]."""
    targets, lengths = pad_collate_fn(sentences)  # (L, B), (B,)
    inputs = torch.empty_like(targets)
    inputs[0] = EOS  # EOS doubles as the start symbol
    inputs[1:] = targets[:-1]
    beyond = torch.arange(targets.shape[0]).unsqueeze(1) >= lengths.unsqueeze(0)  # (L, B)
    inputs.masked_fill_(beyond, PAD)  # the final EOS must not reappear as an input after the end
    return TokenBatch(inputs, targets, lengths)


def window_batch(windows: Sequence[torch.Tensor]) -> TokenBatch:
    """(inputs, targets, lengths) from windows of W + 1 ids: inputs (W, B) = w[:-1], targets = w[1:]."""
    stacked = torch.stack(list(windows), dim=1)  # (W + 1, B)
    width = stacked.shape[0] - 1
    return TokenBatch(stacked[:-1], stacked[1:], torch.full((stacked.shape[1],), width, dtype=torch.long))


def lm_batches(corpus, split: str, data_cfg, batch_size: int, seed: int, shuffle: bool,
               num_replicas: int = 1, rank: int = 0) -> LMBatches:
    """Batches of split `split` of a PreparedCorpus for next-character prediction (see LMBatches).

    data_cfg.mode "sentences": padded sentences, bucketed by length. "windows": data_cfg.window characters
    per sequence over the split's stream (sentences joined by EOS). An empty train split is an error; an
    empty val/test split gives zero batches.
    """
    view = corpus.split(split)
    if data_cfg.mode == "sentences":
        dataset = SentenceDataset(view)
        lengths = dataset.lengths()
    elif data_cfg.mode == "windows":
        dataset = WindowDataset(view.stream(), data_cfg.window)
        lengths = torch.full((len(dataset),), data_cfg.window, dtype=torch.long)
    else:
        raise UsageError(f"data.mode: {data_cfg.mode!r} is not one of sentences, windows")
    if len(dataset) == 0 and split == "train":
        what = "sentences" if data_cfg.mode == "sentences" else f"characters for one window of {data_cfg.window + 1}"
        raise DataError(f"{corpus.folder}: the train split has too few {what}; use a larger corpus or a smaller "
                        f"data.window")
    sampler = BucketBatchSampler(lengths, batch_size, seed=seed, shuffle=shuffle,
                                 num_replicas=num_replicas, rank=rank)
    return LMBatches(dataset, sampler, data_cfg.mode)
