"""Datasets and batching for language models: padded sentences, fixed windows, length bucketing, and the
rows of a character stream for truncated backpropagation through time (`StreamBatches`).

Time-major throughout: a batch is `(T, B)`. In sentence mode every sentence ends with EOS and EOS is also
its start symbol: inputs = EOS followed by the sentence, targets = the sentence followed by EOS.
Generation must use the same convention: the first input for an empty prompt is EOS
(see `rnnkit.generation.generate`). A stream has no EOS: its batches continue one another.
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


class StreamBatches:
    """Truncated-BPTT batches of one split of a stream (data.mode: stream), as in char-rnn and PyTorch's
    word_language_model: `rows` parallel rows, batch k holding window k (`window` characters) of every row.

    Consecutive batches continue one another: the caller passes the final recurrent state of batch k, detached,
    as the initial state of batch k + 1 (rnnkit.tasks.base.CarriesState), and starts each epoch from zeros.

    Training (shuffle=True): the split, from an offset in [0, window) drawn from (seed, epoch), is cut into
    `rows` rows of equal length (the remainder is left out); window k of a row reads its characters
    kW..kW+W-1 and is scored on kW+1..kW+W (the last window may be shorter). The offset moves the window
    boundaries, and so the points where backpropagation is cut, from one epoch to the next.

    Evaluation (shuffle=False): every character but the split's first is a target exactly once. The targets
    are cut into `rows` contiguous rows; a row first reads the `window` characters before its first target,
    unscored (targets PAD), so that only the split's start is predicted from a cold state, as in one pass over
    the whole split. Rows that end early are padded with PAD (never scored).

    Distributed: rank r of n gets the rows r*rows/n .. (r+1)*rows/n - 1 (each process its own rows; `rows`,
    the global batch, is a multiple of n), and every rank takes the same number of batches.
    Items are TokenBatch: inputs (T, B) long, targets (T, B) long (PAD where not scored), lengths (B,) long
    (characters read per row).
    """

    def __init__(self, stream: torch.Tensor, window: int, rows: int, seed: int = 0, shuffle: bool = True,
                 num_replicas: int = 1, rank: int = 0):
        if rows < 1 or rows % num_replicas:
            raise UsageError(f"train.batch_size: {rows} rows is not a positive multiple of the {num_replicas} "
                             f"processes")
        self.tokens = stream.numpy()  # (N,) compact integers, memory-mapped: windows are copied out one by one
        self.window, self.rows, self.seed, self.shuffle = window, rows, seed, shuffle
        per_rank = rows // num_replicas
        self.mine = range(rank * per_rank, (rank + 1) * per_rank)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Choose the epoch (its offset), and how many of its first batches to skip (resume)."""
        self.epoch, self.skip = epoch, skip_batches

    def offset(self) -> int:
        """Where the rows start this epoch (training), a pure function of (seed, epoch)."""
        return int(np.random.default_rng([self.seed, self.epoch]).integers(self.window)) if self.shuffle else 0

    def _train_layout(self) -> tuple[int, int]:
        """(offset, row length) of this epoch's training rows."""
        offset = self.offset()
        return offset, (len(self.tokens) - offset) // self.rows

    def _eval_rows(self) -> list[tuple[int, int, int]]:
        """(first character read, first target, end) of each of this rank's evaluation rows."""
        bounds = np.linspace(1, max(len(self.tokens), 1), self.rows + 1).astype(np.int64)
        return [(max(0, int(bounds[r]) - 1 - self.window) if r else 0, int(bounds[r]), int(bounds[r + 1]))
                for r in self.mine]

    def _num_batches(self) -> int:
        if self.shuffle:
            _, row_len = self._train_layout()
            return max(0, -(-(row_len - 1) // self.window))
        longest = max((end - 1 - read for read, _, end in self._eval_rows()), default=0)
        return max(0, -(-longest // self.window))

    def __len__(self) -> int:
        return max(0, self._num_batches() - self.skip)

    def __iter__(self) -> Iterator[TokenBatch]:
        for k in range(self.skip, self._num_batches()):
            yield self._train_batch(k) if self.shuffle else self._eval_batch(k)

    def _train_batch(self, k: int) -> TokenBatch:
        offset, row_len = self._train_layout()
        block = self.tokens[offset:offset + self.rows * row_len].reshape(self.rows, row_len)  # (rows, L) view
        lo = k * self.window
        hi = min(lo + self.window, row_len - 1)
        chunk = torch.from_numpy(np.ascontiguousarray(block[self.mine.start:self.mine.stop, lo:hi + 1].T))
        chunk = chunk.long()  # (T + 1, B)
        return TokenBatch(chunk[:-1], chunk[1:], torch.full((chunk.shape[1],), hi - lo, dtype=torch.long))

    def _eval_batch(self, k: int) -> TokenBatch:
        rows = self._eval_rows()
        spans = []
        for read, first, end in rows:
            lo = read + k * self.window
            spans.append((lo, max(lo, min(lo + self.window, end - 1)), first))
        width = max(hi - lo for lo, hi, _ in spans)
        inputs = torch.full((width, len(rows)), PAD, dtype=torch.long)  # (T, B)
        targets = torch.full((width, len(rows)), PAD, dtype=torch.long)
        for b, (lo, hi, first) in enumerate(spans):
            if hi > lo:
                piece = torch.from_numpy(self.tokens[lo:hi + 1].astype(np.int64))
                inputs[:hi - lo, b] = piece[:-1]
                scored = max(first - 1, lo) - lo  # targets before the row's first are its unscored warm-up
                targets[scored:hi - lo, b] = piece[1 + scored:]
        lengths = torch.tensor([hi - lo for lo, hi, _ in spans], dtype=torch.long)
        return TokenBatch(inputs, targets, lengths)


def stream_rows(num_characters: int, window: int) -> int:
    """How many training rows a stream of this many characters holds (each at least one window + 1 long)."""
    return num_characters // (window + 1)


def lm_batches(corpus, split: str, data_cfg, batch_size: int, seed: int, shuffle: bool,
               num_replicas: int = 1, rank: int = 0) -> LMBatches | StreamBatches:
    """Batches of split `split` of a PreparedCorpus for next-character prediction (see LMBatches).

    data_cfg.mode "sentences": padded sentences, bucketed by length. "windows": data_cfg.window characters
    per sequence over the split's stream (sentences joined by EOS). "stream": StreamBatches of batch_size
    rows. An empty train split is an error; an empty val/test split gives zero batches.
    """
    view = corpus.split(split)
    if data_cfg.mode == "stream":
        if split == "train" and stream_rows(len(view), data_cfg.window) < 1:
            raise DataError(f"{corpus.folder}: the train split has {len(view):,} characters, fewer than one window "
                            f"of data.window + 1 = {data_cfg.window + 1}; use a larger corpus or a smaller data.window")
        return StreamBatches(view.stream(), data_cfg.window, batch_size, seed, shuffle, num_replicas, rank)
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
