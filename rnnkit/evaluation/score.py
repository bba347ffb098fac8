"""Any text under a language model: bits per character, perplexity and each character's surprisal, the text read
in chunks (constant memory) with the model's state carried through it, the way the model was trained.

How a text becomes the model's inputs and targets depends on how the run cut its corpus (`data.mode`):

- stream: one character stream, as in training. The first character is read as context from a zero state
  (the start of a training row); every following character is scored, the state carried through the whole text.
- sentences: each line is a sentence, read from EOS with a zero state as in training; the newline that ends a
  line is scored as that sentence's EOS. A last line without a newline is scored without its EOS; an empty line
  is an empty sentence (only its EOS is scored). Every character of the text is scored.
- windows: the text is the stream of sentences joined by EOS (a newline is EOS) that windows models train on,
  cut as training and `rnnkit eval` cut it: windows of data.window + 1 characters overlapping by one, each read
  from a zero state. The first character is context; a last window shorter than data.window is scored too
  (`eval` drops it), so the two agree exactly when len(text) - 1 is a multiple of data.window.

The text is scored as given, unless `clean` asks to clean it first as `prepare` cleaned the run's corpus.

`split_text(run, split)` is a split of the run's own corpus written that way: scoring it gives `rnnkit eval`'s
figure for the split (sentences and windows: to float rounding; stream: see the function).
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.data.vocab import EOS, SPECIALS, describe_char
from rnnkit.errors import DataError, UsageError, VocabularyError
from rnnkit.evaluation.metrics import bits_per_char, perplexity
from rnnkit.io.reading import open_binary

CHUNK_CHARS = 8192  # characters per model call at most (windows, sentence batches: about): bounds the memory
READ_BYTES = 65536  # bytes read from a file at a time
MODES = ("stream", "sentences", "windows")
SHOWN_UNKNOWN = 5  # distinct unknown characters named in the error, the rest counted


@dataclass
class TextScore:
    """A text's score under a language model (what `rnnkit score --json` prints, without the run fields)."""

    characters: int  # characters scored (predicted); a stream or windows model's first character is only read
    bits: float  # their total surprisal, in bits
    loss: float  # nats per scored character (cross-entropy, as `rnnkit eval` reports `loss`)
    bpc: float  # bits per scored character
    perplexity: float  # exp(loss), per character
    replaced: int = 0  # characters outside the vocabulary scored as replace_unknown
    cleaning: dict | None = None  # what `clean` changed (rnnkit.data.cleaning.CleaningReport.to_dict()), if asked
    per_char: list[tuple[str, float | None]] | None = None  # every character and its surprisal in bits (None: read
    # as context, not scored); only when asked for


# --- text -> ids -----------------------------------------------------------------------------------------------

class _Encoder:
    """Characters -> ids with one searchsorted per piece; newline is EOS for sentence and windows models."""

    def __init__(self, vocab, newline_is_eos: bool):
        ids = {char: i for i, char in enumerate(vocab.chars, start=len(SPECIALS))}
        if newline_is_eos:
            ids["\n"] = EOS
        self.known_chars = ids
        order = sorted(ids, key=ord)
        self.codes = np.array([ord(c) for c in order], dtype=np.uint32)
        self.ids = np.array([ids[c] for c in order], dtype=np.int64)

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n,) int64, known (n,) bool); the id of an unknown character is meaningless."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        if not len(self.codes):
            return np.zeros(len(codes), dtype=np.int64), np.zeros(len(codes), dtype=bool)
        where = np.searchsorted(self.codes, codes).clip(max=len(self.codes) - 1)
        return self.ids[where], self.codes[where] == codes


class _Place:
    """Where the next character of the text is: offset (0-based), line and column (1-based), for messages."""

    def __init__(self):
        self.offset, self.line, self.column = 0, 1, 1

    def describe(self, piece: str, i: int) -> str:
        """The place of piece[i], the piece starting at the current place."""
        before = piece.rfind("\n", 0, i)
        line = self.line + piece.count("\n", 0, i)
        column = i - before if before >= 0 else self.column + i
        return f"position {self.offset + i} (line {line}, column {column})"

    def advance(self, piece: str) -> None:
        last = piece.rfind("\n")
        self.line += piece.count("\n")
        self.column = len(piece) - last if last >= 0 else self.column + len(piece)
        self.offset += len(piece)


# --- the model over ids --------------------------------------------------------------------------------------

Emit = Callable[[np.ndarray], None]  # surprisals in nats (n,) float64, in text order; NaN = read, not scored


@torch.no_grad()
def _surprisal(model: nn.Module, inputs: Tensor, targets: Tensor, state=None,
               lengths: Tensor | None = None) -> tuple[np.ndarray, object]:
    """-log p(target) in nats of every step: inputs, targets (T, B) long -> ((T, B) float64 array, final state).

    The full softmax over the vocabulary, PAD and EOS included, as `rnnkit eval`'s cross-entropy."""
    logits, state = model(inputs, state, lengths)  # (T, B, V)
    nats = -logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (T, B)
    return nats.double().cpu().numpy(), state


def _column(ids: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(ids)).to(device).unsqueeze(1)  # (T, 1)


class _Stream:
    """A stream model: the text is one sequence, the state carried from chunk to chunk; the first character is
    read as context from a zero state."""

    def __init__(self, model: nn.Module, device: torch.device, chunk: int, emit: Emit):
        self.model, self.device, self.chunk, self.emit = model, device, chunk, emit
        self.pending: list[np.ndarray] = []
        self.count = 0
        self.last: int | None = None  # the last character read (None: nothing read yet)
        self.state = None

    def feed(self, ids: np.ndarray) -> None:
        self.pending.append(ids)
        self.count += len(ids)
        if self.count >= self.chunk:
            self._run()

    def _run(self) -> None:
        ids = np.concatenate(self.pending) if self.pending else np.zeros(0, dtype=np.int64)
        self.pending, self.count = [], 0
        if self.last is None and len(ids):
            self.last, ids = int(ids[0]), ids[1:]
            self.emit(np.array([math.nan]))
        for start in range(0, len(ids), self.chunk):  # at most `chunk` characters per model call
            piece = ids[start:start + self.chunk]
            inputs = np.concatenate([[self.last], piece[:-1]])
            nats, self.state = _surprisal(self.model, _column(inputs, self.device), _column(piece, self.device),
                                          self.state)
            self.last = int(piece[-1])
            self.emit(nats[:, 0])

    def finish(self) -> None:
        self._run()


class _Windows:
    """A windows model: windows of W + 1 characters overlapping by one, each from a zero state, B at a time."""

    def __init__(self, model: nn.Module, device: torch.device, chunk: int, emit: Emit, window: int):
        self.model, self.device, self.emit, self.window = model, device, emit, window
        self.per_call = max(1, chunk // window)  # windows per model call
        self.buffer = np.zeros(0, dtype=np.int64)  # ids not scored yet, after the context character
        self.started = False

    def feed(self, ids: np.ndarray) -> None:
        if not self.started and len(ids):
            self.emit(np.array([math.nan]))  # the first character is only read
            self.started = True
        self.buffer = np.concatenate([self.buffer, ids])
        if (len(self.buffer) - 1) // self.window >= self.per_call:
            self._run_windows()

    def _run_windows(self) -> None:
        w = self.window
        while (n := min((len(self.buffer) - 1) // w, self.per_call)) > 0:
            index = np.arange(n)[:, None] * w + np.arange(w + 1)  # (n, W + 1)
            windows = torch.from_numpy(self.buffer[index].T.copy()).to(self.device)  # (W + 1, n)
            nats, _ = _surprisal(self.model, windows[:-1], windows[1:])  # (W, n)
            self.emit(nats.T.reshape(-1))  # window after window: text order
            self.buffer = self.buffer[n * w:]  # the last character read is the next window's first

    def finish(self) -> None:
        self._run_windows()
        if len(self.buffer) > 1:  # the last, shorter window
            nats, _ = _surprisal(self.model, _column(self.buffer[:-1], self.device),
                                 _column(self.buffer[1:], self.device))
            self.emit(nats[:, 0])


class _Sentences:
    """A sentence model: every line read from EOS with a zero state, its newline scored as EOS.

    Complete lines are scored in padded batches (the length-masked forward `rnnkit eval` uses), sorted by length
    and cut so that a batch holds at most `chunk` positions; a line longer than `chunk` is scored piece by piece
    with its state carried. Surprisals are emitted in text order.
    """

    def __init__(self, model: nn.Module, device: torch.device, chunk: int, emit: Emit):
        self.model, self.device, self.chunk, self.emit = model, device, chunk, emit
        self.queue: list[np.ndarray] = []  # complete lines, each ending with its EOS
        self.queued = 0
        self.open: list[np.ndarray] = []  # the start of the current line not scored yet
        self.open_count = 0
        self.open_state = None  # state after the scored part of the current line (None: nothing scored)
        self.open_last = EOS  # the last character of the current line read so far

    def feed(self, ids: np.ndarray) -> None:
        ends = np.flatnonzero(ids == EOS) + 1
        segments = np.split(ids, ends)
        for segment in segments[:-1]:  # each ends with EOS
            line = np.concatenate([*self.open, segment]) if self.open else segment
            self.open, self.open_count = [], 0
            if self.open_state is not None or len(line) > self.chunk:  # partly scored, or longer than a chunk:
                self._flush()  # scored on its own, a chunk at a time, with its state carried
                self._carry(line)
            else:
                self.queue.append(line)
                self.queued += len(line)
        if len(segments[-1]):
            self.open.append(segments[-1])
            self.open_count += len(segments[-1])
        if self.queued >= self.chunk:
            self._flush()
        if self.open_count >= self.chunk:
            self._flush()
            self._carry(np.concatenate(self.open))
            self.open, self.open_count = [], 0

    def _carry(self, ids: np.ndarray) -> None:
        """Score ids of the current line after what was scored of it, `chunk` at a time; EOS last ends the line."""
        for start in range(0, len(ids), self.chunk):
            piece = ids[start:start + self.chunk]
            inputs = np.concatenate([[self.open_last], piece[:-1]])
            nats, state = _surprisal(self.model, _column(inputs, self.device), _column(piece, self.device),
                                     self.open_state)
            self.emit(nats[:, 0])
            ended = int(piece[-1]) == EOS
            self.open_state = None if ended else state
            self.open_last = EOS if ended else int(piece[-1])

    def _flush(self) -> None:
        """Score the queued complete lines; padded batches of similar lengths, emitted in text order."""
        from rnnkit.data.datasets import sentence_batch

        lines, self.queue, self.queued = self.queue, [], 0
        order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
        scored: list[np.ndarray | None] = [None] * len(lines)
        start = 0
        while start < len(order):
            stop = start + 1  # sorted by length: the batch's longest is its last line
            while stop < len(order) and len(lines[order[stop]]) * (stop + 1 - start) <= self.chunk:
                stop += 1
            chosen = order[start:stop]
            batch = sentence_batch([torch.from_numpy(lines[i][:-1]) for i in chosen]).to(self.device)
            nats, _ = _surprisal(self.model, batch.inputs, batch.targets, lengths=batch.lengths)  # (L, B)
            for b, i in enumerate(chosen):
                scored[i] = nats[:len(lines[i]), b]
            start = stop
        for line_nats in scored:
            self.emit(line_nats)

    def finish(self) -> None:
        self._flush()
        if self.open_count:  # a last line without a newline: scored without EOS
            self._carry(np.concatenate(self.open))


# --- the scorer ---------------------------------------------------------------------------------------------

class TextScorer:
    """Score a text given in pieces: `feed(piece)` as often as needed, then `finish()` -> TextScore.

    Memory is bounded by `chunk_chars` (plus the per-character list when `per_char`). Characters outside the
    vocabulary are collected over the whole text and raised together by `finish` (VocabularyError naming each,
    its first position and count) unless `replace_unknown` gives the character to score instead.
    `cleaner` (a rnnkit.data.cleaning.StreamCleaner): clean the text first, as `prepare` cleans a corpus; the
    positions and per-character list are then those of the clean text.
    """

    def __init__(self, model: nn.Module, vocab, mode: str, device: torch.device, *, window: int = 100,
                 per_char: bool = False, replace_unknown: str | None = None, chunk_chars: int = CHUNK_CHARS,
                 where: str = "text", lowercase: bool = False, cleaner=None):
        if mode not in MODES:
            raise UsageError(f"data.mode: {mode!r} cannot be scored; one of {', '.join(MODES)}")
        if chunk_chars < 1:
            raise UsageError(f"--chunk-chars must be at least 1, got {chunk_chars}")
        self.encoder = _Encoder(vocab, newline_is_eos=mode != "stream")
        self.replace_id = None
        if replace_unknown is not None:
            if len(replace_unknown) != 1 or replace_unknown not in self.encoder.known_chars:
                raise UsageError(f"--replace-unknown: {replace_unknown!r} must be one character of the model's "
                                 f"vocabulary")
            self.replace_id = self.encoder.known_chars[replace_unknown]
        self.replace_unknown, self.where, self.lowercase = replace_unknown, where, lowercase
        self.vocab_size = len(self.encoder.known_chars)
        self.place = _Place()
        self.unknown: dict[str, list] = {}  # char -> [its first place, count]
        self.replaced = 0
        self.total_nats, self.count = 0.0, 0
        self.per_char, self.cleaner = per_char, cleaner
        self.texts: list[str] = []
        self.nats: list[np.ndarray] = []
        if mode == "stream":
            self.runner = _Stream(model, device, chunk_chars, self._emit)
        elif mode == "windows":
            self.runner = _Windows(model, device, chunk_chars, self._emit, window)
        else:
            self.runner = _Sentences(model, device, chunk_chars, self._emit)

    def _emit(self, nats: np.ndarray) -> None:
        scored = nats[~np.isnan(nats)]
        self.total_nats += float(scored.sum())
        self.count += scored.size
        if self.per_char:
            self.nats.append(nats)

    def feed(self, piece: str) -> None:
        """Score the next piece of the text (any length; pieces may split a line anywhere)."""
        if self.cleaner is not None:
            piece = self.cleaner.feed(piece)
        self._feed_clean(piece)

    def _feed_clean(self, piece: str) -> None:
        if not piece:
            return
        ids, known = self.encoder(piece)
        if not known.all():
            missing = np.flatnonzero(~known)
            if self.replace_id is not None:
                ids[missing] = self.replace_id
                self.replaced += len(missing)
                if self.per_char:
                    chars = list(piece)
                    for i in missing.tolist():
                        chars[i] = self.replace_unknown
                    piece = "".join(chars)
            else:
                for i in missing.tolist():
                    seen = self.unknown.get(piece[i])
                    if seen is None:
                        self.unknown[piece[i]] = [self.place.describe(piece, i), 1]
                    else:
                        seen[1] += 1
        self.place.advance(piece)
        if self.unknown:  # the text cannot be scored: only look for the other unknown characters
            return
        if self.per_char:
            self.texts.append(piece)
        self.runner.feed(ids)

    def finish(self) -> TextScore:
        """The score of everything fed; VocabularyError for unknown characters, UsageError when nothing was scored."""
        if self.cleaner is not None:
            self._feed_clean(self.cleaner.finish())
        if self.unknown:
            raise self._unknown_error()
        self.runner.finish()
        if not self.count:
            raise UsageError(f"{self.where}: no character to score ({self.place.offset} characters read; a stream or "
                             f"windows model reads the first character as context only)")
        loss = self.total_nats / self.count
        per_char = None
        if self.per_char:
            bits = np.concatenate(self.nats) / math.log(2) if self.nats else np.zeros(0)
            per_char = [(char, None if math.isnan(b) else b) for char, b in zip("".join(self.texts), bits.tolist(),
                                                                                   strict=True)]
        return TextScore(characters=self.count, bits=bits_per_char(self.total_nats), loss=loss,
                         bpc=bits_per_char(loss), perplexity=perplexity(loss), replaced=self.replaced,
                         cleaning=None if self.cleaner is None else self.cleaner.report.to_dict(), per_char=per_char)

    def _unknown_error(self) -> VocabularyError:
        items = list(self.unknown.items())
        named = [f"{describe_char(char)} at {place}" + (f" and {count - 1} more time(s)" if count > 1 else "")
                 for char, (place, count) in items[:SHOWN_UNKNOWN]]
        more = f"; and {len(items) - SHOWN_UNKNOWN} other characters" if len(items) > SHOWN_UNKNOWN else ""
        hint = ""
        if self.lowercase and any(c.lower() in self.encoder.known_chars for c, _ in items if c != c.lower()):
            hint = " (the model was trained on lower-cased text)"
        clean = "" if self.cleaner is not None else "--clean to clean the text as the run's data was, or "
        return VocabularyError(f"{self.where}: {len(items)} character(s) not in the model's vocabulary "
                               f"({self.vocab_size} characters){hint}: {'; '.join(named)}{more}; pass "
                               f"{clean}--replace-unknown C to score them as C")


# --- runs, texts and files ---------------------------------------------------------------------------------

def scorer_for(run, *, per_char: bool = False, replace_unknown: str | None = None, clean: bool = False,
               chunk_chars: int = CHUNK_CHARS, where: str = "text") -> TextScorer:
    """A TextScorer for a loaded language-model run (rnnkit.runs.loaded.LoadedRun), cut as its data.mode says.

    clean: first clean the text as `prepare` cleaned the run's corpus, with its data.charset and data.lowercase
    (mojibake repaired, line ends as LF, with ascii typographic characters spelled in ASCII), the layout kept
    (a stream's cleaning: for a sentence model too, since its lines are its sentences).
    """
    from rnnkit.data.cleaning import StreamCleaner

    if run.cfg.task != "lm":
        raise UsageError(f"{run.path}: score needs a language model (task: lm), this run is task: {run.cfg.task}")
    data = run.cfg.data
    cleaner = StreamCleaner(data.charset, data.lowercase, keep_layout=True) if clean else None
    return TextScorer(run.model, run.vocab, data.mode, run.device, window=data.window, per_char=per_char,
                      replace_unknown=replace_unknown, chunk_chars=chunk_chars, where=where,
                      lowercase=data.lowercase, cleaner=cleaner)


def score_text(run, text: str, **options) -> TextScore:
    """The score of `text` under a loaded run; options as `scorer_for`."""
    scorer = scorer_for(run, **options)
    scorer.feed(text)
    return scorer.finish()


def read_pieces(stream: BinaryIO, where: str, size: int = READ_BYTES) -> Iterator[str]:
    """The UTF-8 text of a binary stream, `size` bytes at a time (a character split between reads is kept whole);
    DataError naming the offset of the first byte that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    while True:
        data = stream.read(size)
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as err:
            at = offset - len(decoder.getstate()[0]) + err.start
            raise DataError(f"{where}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {max(at, 0)}); "
                            f"score reads text files") from None
        offset += len(data)
        if text:
            yield text
        if not data:
            return


def score_source(run, source: str | Path | BinaryIO, where: str | None = None, **options) -> TextScore:
    """The score of a file (a path) or a binary stream such as standard input, read READ_BYTES at a time."""
    if isinstance(source, (str, Path)):
        with open_binary(source, "file", DataError, "a text file") as handle:
            return _score_stream(run, handle, where or str(source), options)
    return _score_stream(run, source, where or "-", options)


def _score_stream(run, stream: BinaryIO, where: str, options: dict) -> TextScore:
    scorer = scorer_for(run, where=where, **options)
    for piece in read_pieces(stream, where):
        scorer.feed(piece)
    return scorer.finish()


def split_text(run, split: str = "val") -> str:
    """A split of the run's own prepared corpus as text that `score` reads the way `rnnkit eval` does.

    sentences and windows: the sentences, each followed by a newline (the EOS of each). stream: the split's
    characters as they are. Scoring it gives eval's bits per character for the split (windows: when eval's
    windows cover it, see the module docstring).
    """
    view = run.data().corpus.split(split)
    if run.cfg.data.mode == "stream":
        return run.vocab.decode(view.stream(), stop_at_eos=False)
    return "".join(run.vocab.decode(view[i]) + "\n" for i in range(len(view)))
