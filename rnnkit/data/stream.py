"""`data.mode: stream`: the corpus as one character stream, prepared in bounded memory and memory-mapped.

Nothing but cleaning changes the text: line breaks, tabs and indentation are characters like any other, and
there is no EOS (ids PAD = 0 and EOS = 1 stay reserved, but never occur). The prepared folder holds, besides
manifest.json and vocab.json, `tokens.npy`: every character's id in the smallest integer type that holds the
vocabulary (uint8 up to 256 ids, then uint16), the three splits one after the other by position, train, then
validation, then test (manifest "splits": {"train": [start, end], ...}), so no test text is seen in training.

Preparing reads the input twice in chunks (cleaning into a temporary UTF-8 file while the character set is
collected, then encoding into the memory-mapped token file), so memory stays at a few chunks whatever the
corpus size.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rnnkit.data.cleaning import CleaningReport, StreamCleaner
from rnnkit.data.inputs import CHUNK_BYTES, CorpusInput
from rnnkit.data.vocab import Vocab
from rnnkit.errors import DataError

MODE = "stream"
TOKENS_FILE = "tokens.npy"
SPLITS = ("train", "val", "test")
_CLEAN_FILE = ".clean.txt"  # inside the folder being written; removed before it is swapped in


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer type that holds ids 0..vocab_size-1."""
    for dtype in (np.uint8, np.uint16):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.int32)


def contiguous_splits(n: int, val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """[start, end) of each split of a stream of n characters: train first, then val, then test, by position."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    n_train = n - n_val - n_test
    return {"train": [0, n_train], "val": [n_train, n_train + n_val], "test": [n_train + n_val, n]}


def write_stream(tmp: Path, corpus: CorpusInput, charset: str, lowercase: bool, val_fraction: float,
                 test_fraction: float) -> tuple[Vocab, dict, CleaningReport]:
    """Clean and encode `corpus` into `tmp/tokens.npy` (tmp: the folder being written atomically).

    Returns (vocabulary, the manifest's "counts" and "splits" entries, the cleaning report). DataError when
    nothing is left after cleaning or the train split would hold fewer than two characters.
    """
    clean_path = tmp / _CLEAN_FILE
    cleaner, chars, n = StreamCleaner(charset, lowercase), set(), 0
    with open(clean_path, "w", encoding="utf-8", newline="") as clean:
        for chunk in _with_last(corpus.chunks(), cleaner):
            clean.write(chunk)
            chars.update(chunk)
            n += len(chunk)
    splits = contiguous_splits(n, val_fraction, test_fraction)
    if splits["train"][1] < 2:
        raise DataError(f"{corpus.location}: {n:,} character(s) after cleaning leave fewer than 2 for training; "
                        f"use a larger corpus or lower data.val_fraction / data.test_fraction")
    vocab = Vocab(sorted(chars))
    dtype = token_dtype(len(vocab))
    # Plain writes after the .npy header, not a writable memory map: mapped pages would count as this process's
    # memory until the kernel writes them back, up to the whole corpus.
    with open(tmp / TOKENS_FILE, "wb") as tokens:
        np.lib.format.write_array_header_1_0(tokens, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                      "fortran_order": False, "shape": (n,)})
        for text in _read_utf8(clean_path):
            tokens.write(vocab.encode_array(text).astype(dtype).tobytes())
    clean_path.unlink()
    counts = {"vocab_size": len(vocab), "dtype": dtype.name, "files": len(corpus.files),
              "characters": {name: end - start for name, (start, end) in splits.items()}}
    return vocab, {"counts": counts, "splits": splits}, cleaner.report


def _with_last(chunks, cleaner: StreamCleaner):
    for chunk in chunks:
        yield cleaner.feed(chunk)
    yield cleaner.finish()


def _read_utf8(path: Path):
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


class StreamSplit:
    """One split of a stream corpus: a contiguous slice of the memory-mapped token file."""

    def __init__(self, tokens: np.ndarray):
        self.tokens = tokens  # (N,) uint8/uint16/int32, memory-mapped (pages are read when touched)

    def __len__(self) -> int:
        """Characters in the split."""
        return len(self.tokens)

    def stream(self) -> torch.Tensor:
        """(N,) the split's token ids in order, in the file's integer type (uint8 up to 256 ids), memory-mapped:
        slice it and call .long() on the slice, rather than converting a corpus larger than memory at once."""
        return torch.from_numpy(self.tokens)


def load_stream_splits(folder: Path, manifest: dict, fail: Callable[[str], DataError]) -> dict[str, StreamSplit]:
    """The splits of a stream folder, memory-mapped; `fail(reason)` makes the error for a damaged folder."""
    try:
        # "c" (copy on write): pages are shared with the file, and torch gets a writable array (no warning).
        tokens = np.load(folder / TOKENS_FILE, mmap_mode="c")
        bounds = {name: manifest["splits"][name] for name in SPLITS}
    except (OSError, KeyError, ValueError) as err:
        raise fail(f"{type(err).__name__}: {err}") from None
    if tokens.ndim != 1 or any(not 0 <= a <= b <= len(tokens) for a, b in bounds.values()):
        raise fail("the token file does not match the manifest's splits")
    return {name: StreamSplit(tokens[a:b]) for name, (a, b) in bounds.items()}
