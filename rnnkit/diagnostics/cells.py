"""What the units of a trained network do, character by character, behind `inspect-cells` (after Karpathy,
Johnson and Fei-Fei 2015, "Visualizing and Understanding Recurrent Networks").

A text is read once by the run's model on the reference loop with `record_hidden` and `record_gates` on, and
every unit of every recorded quantity is kept per character: h, c (LSTM) and each gate of each layer and
direction. Position i holds the state *after* the model read character i, with what it predicts next:

- language models: the top-5 next characters and the surprisal (bits) of the true next one, under the full
  softmax as `rnnkit eval` and `rnnkit score` compute it (PAD is never among the top-5). The text meets the
  model as its data.mode says: stream: one sequence from a zero state, the state carried through the whole
  text; windows: the same with each newline read as EOS (a windows model trained on data.window characters then
  reads a longer text than it trained on); sentences: each line read from EOS with a zero state as in
  training, so a newline's position holds the state after that EOS, which predicts the next line's first
  character (the first line's leading EOS is read but has no position).
- classifiers of text (langid): each line is read as training read a sample (runs of whitespace as one space,
  shown so in the text), from a zero state; newlines have no state (NaN). After each character: the class
  probabilities of the line read so far, which is the model's prediction for that prefix. A bidirectional
  model's prefixes are read again whole (quadratic in the line), so lines longer than BIDIRECTIONAL_LIMIT get
  only their final probabilities.

Then every unit is ranked by its correlation with simple properties of the text and every gate's saturation
is measured (see cells_properties.py). Everything is plain numpy data; cells_html.py and cells_plot.py draw it.
"""

from __future__ import annotations

import codecs
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.data.vocab import EOS, PAD, SPECIALS, Vocab, describe_char
from rnnkit.diagnostics.cells_properties import RankedUnit, Saturation, rank_units, saturation, text_properties
from rnnkit.errors import CheckpointError, DataError, UsageError, VocabularyError

TOP_K = 5  # next characters shown per position
CHUNK = 4096  # characters per forward call of a stream or windows model, the state carried
BIDIRECTIONAL_LIMIT = 1000  # longest line whose prefixes a bidirectional classifier reads again
MAX_CHARS = 20000  # default cap on the characters read
SHOWN_UNKNOWN = 5
READ_BYTES = 65536
JSON_ROWS = 1024  # rows of activations turned into JSON at a time
GATE_KINDS = {"input": "sigmoid", "forget": "sigmoid", "output": "sigmoid", "reset": "sigmoid",
              "update": "sigmoid", "cell": "tanh", "candidate": "tanh", "preactivation": "unbounded"}


@dataclass
class CellReport:
    """Per-character activations of every unit, predictions, the unit ranking and gate saturation of one text."""

    text: str
    run: str
    task: str  # lm or classify
    mode: str  # the run's data.mode
    cell: str  # rnn, gru, lstm
    num_layers: int
    hidden_size: int
    bidirectional: bool
    read: np.ndarray  # (T,) bool: the model has a state at this position (a classifier's newlines do not)
    activations: dict[str, np.ndarray]  # "layer0.h", "layer0.c", "layer0.forget[.reverse]" -> (T, H) float32
    kinds: dict[str, str]  # quantity -> tanh, sigmoid, unbounded or relu: how its values are bounded
    properties: dict[str, np.ndarray]  # (T,) float64, NaN where undefined
    ranking: dict[str, list[RankedUnit]]  # property -> units by |r|, largest first
    saturation: list[Saturation]  # one per gate (Elman: per layer's h)
    symbols: list[str] = field(default_factory=list)  # language models: how each vocabulary id is shown
    top_ids: np.ndarray | None = None  # (T, TOP_K) int64, most probable first
    top_probs: np.ndarray | None = None  # (T, TOP_K) float32
    next_surprisal: np.ndarray | None = None  # (T,) float64 bits of text[i + 1]; NaN at the end
    classes: list[str] = field(default_factory=list)  # classifiers
    class_probs: np.ndarray | None = None  # (T, C) float32; NaN rows where there is none
    notes: list[str] = field(default_factory=list)  # what the reader should know (truncation, omissions)

    def quantities(self, selectors: list[str] | tuple[str, ...] | None = None) -> list[str]:
        """The recorded quantities that `selectors` name (see select_quantities); None or () = all."""
        return select_quantities(list(self.activations), selectors or ("all",), self.cell)

    def to_json(self, selectors: list[str] | tuple[str, ...] | None = None) -> dict:
        """What `--json` writes: per-character activations of the selected quantities (time-major, (T, H) as
        lists; null rows where the model read nothing), predictions, properties, ranking, saturation."""
        data = self._summary()
        unread = data["unread"]
        data["quantities"] = {q: {"kind": self.kinds[q], "activations": _rows(self.activations[q], unread)}
                              for q in self.quantities(selectors)}
        return data

    def write_json(self, stream: TextIO, selectors: list[str] | tuple[str, ...] | None = None) -> None:
        """`to_json` written to a text stream row by row: memory stays that of one block of rows, whatever the
        number of units (the activations come last)."""
        head = json.dumps(self._summary(), ensure_ascii=False, allow_nan=False)
        stream.write(head[:-1] + ', "quantities": {')
        unread = set((~self.read).nonzero()[0].tolist())
        for k, q in enumerate(self.quantities(selectors)):
            stream.write(f'{", " if k else ""}{json.dumps(q)}: {{"kind": {json.dumps(self.kinds[q])}, '
                         f'"activations": [')
            values = self.activations[q]
            for start in range(0, len(values), JSON_ROWS):
                rows = values[start:start + JSON_ROWS].tolist()
                text = ", ".join("null" if start + i in unread else json.dumps(row) for i, row in enumerate(rows))
                stream.write((", " if start else "") + text)
            stream.write("]}")
        stream.write("}}\n")

    def _summary(self) -> dict:
        """Everything `to_json` holds but the activations."""
        unread = (~self.read).nonzero()[0].tolist()
        data = {
            "run": self.run, "task": self.task, "mode": self.mode, "cell": self.cell,
            "num_layers": self.num_layers, "hidden_size": self.hidden_size, "bidirectional": self.bidirectional,
            "text": self.text, "unread": unread,
            "properties": {name: _floats(values) for name, values in self.properties.items()},
            "ranking": {name: [vars(u) for u in units] for name, units in self.ranking.items()},
            "saturation": [{"quantity": s.quantity, "kind": s.kind, "left": s.left.tolist(),
                            "right": s.right.tolist()} for s in self.saturation],
            "notes": self.notes,
        }
        if self.task == "lm":
            data["top"] = [[[self.symbols[i], p] for i, p in zip(ids, probs, strict=True)]
                           for ids, probs in zip(self.top_ids.tolist(), self.top_probs.tolist(), strict=True)]
            data["next_surprisal_bits"] = _floats(self.next_surprisal)
        else:
            data["classes"] = self.classes
            data["class_probabilities"] = [None if math.isnan(row[0]) else row for row in self.class_probs.tolist()]
        return data


def _floats(values: np.ndarray) -> list:
    return [None if math.isnan(v) else v for v in values.tolist()]


def _rows(values: np.ndarray, unread: list[int]) -> list:
    rows = values.tolist()  # float32 -> the shortest repr that reads back as the same float32
    for i in unread:
        rows[i] = None
    return rows


# --- which quantities ----------------------------------------------------------------------------------------

def select_quantities(names: list[str], selectors: list[str] | tuple[str, ...], cell: str) -> list[str]:
    """The names among `names` ("layer0.h", "layer1.forget.reverse", ...) that any selector names, in their order.

    A selector is all, or [layerN.]WHAT with WHAT one of h, c, gates, a gate name, or a layer alone (layerN);
    it names both directions. UsageError for a selector that names nothing.
    """
    chosen = set()
    for raw in selectors:
        item = raw.strip()
        found = {name for name in names if _names(item, name)}
        if not found:
            bases = sorted({name.split(".")[1] for name in names}, key=_base_order)
            raise UsageError(f"--units: {item!r} names nothing this {cell} model records; use all, gates, "
                             f"{', '.join(bases)}, optionally after layer0. (or a layer alone: layer0)")
        chosen |= found
    return [name for name in names if name in chosen]


def _names(item: str, name: str) -> bool:
    layer, base = name.split(".")[:2]
    if item in ("all", layer):
        return True
    prefix, _, what = item.rpartition(".")
    if prefix and prefix != layer:
        return False
    return what == base or (what == "gates" and base not in ("h", "c"))


def _base_order(base: str) -> int:
    order = ["h", "c", "input", "forget", "cell", "output", "reset", "update", "candidate", "preactivation"]
    return order.index(base) if base in order else len(order)


# --- recording ---------------------------------------------------------------------------------------------------

class _Recorder:
    """Switch a recurrent stack's recording on for a `with` block; `take()` collects one forward's quantities."""

    def __init__(self, rnn: nn.Module):
        self.rnn = rnn

    def __enter__(self) -> _Recorder:
        self.saved = (self.rnn.record_hidden, self.rnn.record_gates)
        self.rnn.record_hidden = self.rnn.record_gates = True
        return self

    def __exit__(self, *exc) -> None:
        self.rnn.record_hidden, self.rnn.record_gates = self.saved
        self.rnn.last_hidden, self.rnn.last_cell, self.rnn.last_gates = {}, {}, {}

    def take(self, column: int = 0) -> dict[str, np.ndarray]:
        """{quantity: (T, H) float32} of batch column `column`, in layer, direction, h, c, gates order."""
        rnn = self.rnn
        out = {}
        for layer in range(rnn.num_layers):
            for direction in range(rnn.num_directions):
                name = f"layer{layer}" + (".reverse" if direction else "")
                sfx = ".reverse" if direction else ""
                out[f"layer{layer}.h{sfx}"] = _numpy(torch.stack(rnn.last_hidden[name])[:, column])  # (T, H)
                if name in rnn.last_cell:
                    out[f"layer{layer}.c{sfx}"] = _numpy(torch.stack(rnn.last_cell[name])[:, column])
                for gate in rnn.gate_names:
                    out[f"layer{layer}.{gate}{sfx}"] = _numpy(rnn.last_gates[f"layer{layer}.{gate}{sfx}"][:, column])
        return out


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _kinds(rnn: nn.Module) -> dict[str, str]:
    nonlinearity = getattr(rnn, "nonlinearity", "tanh")
    kinds = {"h": "tanh" if nonlinearity == "tanh" else "relu", "c": "unbounded"}
    return {**kinds, **GATE_KINDS}


# --- language models -------------------------------------------------------------------------------------------

def _encode(text: str, table: dict[str, int], replace_unknown: str | None, where: str, notes: list) -> np.ndarray:
    """Ids of `text` under `table`; every unknown character named at once (VocabularyError) unless replaced."""
    replace_id = None
    if replace_unknown is not None:
        if len(replace_unknown) != 1 or replace_unknown not in table:
            raise UsageError(f"--replace-unknown: {replace_unknown!r} must be one character of the model's "
                             f"vocabulary")
        replace_id = table[replace_unknown]
    ids = np.array([table.get(char, -1) for char in text], dtype=np.int64)
    missing = np.flatnonzero(ids < 0)
    if len(missing) and replace_id is None:
        first: dict[str, int] = {}
        for i in missing.tolist():
            first.setdefault(text[i], i)
        named = [f"{describe_char(c)} at position {i}" for c, i in list(first.items())[:SHOWN_UNKNOWN]]
        more = f" and {len(first) - SHOWN_UNKNOWN} more" if len(first) > SHOWN_UNKNOWN else ""
        raise VocabularyError(f"{where}: {len(first)} character(s) not in the model's vocabulary: "
                              f"{'; '.join(named)}{more}; pass --replace-unknown C to read them as C")
    ids[missing] = replace_id if replace_id is not None else 0
    if len(missing):
        notes.append(f"{where}: {len(missing)} character(s) outside the vocabulary read as {replace_unknown!r}")
    return ids


@torch.no_grad()
def _read_lm(model: nn.Module, ids: np.ndarray, mode: str, device) -> tuple[dict, np.ndarray]:
    """Recorded quantities {name: (T, H)} and log-probabilities (T, V) float32 after each position."""
    parts, logps = [], []
    with _Recorder(model.rnn) as recorder:
        if mode == "sentences":
            breaks = np.flatnonzero(ids == EOS)  # the newlines
            starts = np.concatenate([[0], breaks])
            ends = np.concatenate([breaks, [len(ids)]])
            for k, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
                line = ids[start + (1 if k else 0):end]
                tokens = torch.from_numpy(np.concatenate([[EOS], line])).to(device).unsqueeze(1)  # (n + 1, 1)
                logits, _ = model(tokens)  # a zero state: each sentence is read on its own, as in training
                keep = slice(0 if k else 1, None)  # the first line's leading EOS has no position in the text
                parts.append({q: v[keep] for q, v in recorder.take().items()})
                logps.append(logits[keep, 0].float().log_softmax(-1).cpu().numpy())
        else:
            state = None
            for start in range(0, len(ids), CHUNK):
                tokens = torch.from_numpy(ids[start:start + CHUNK]).to(device).unsqueeze(1)  # (n, 1)
                logits, state = model(tokens, state)
                parts.append(recorder.take())
                logps.append(logits[:, 0].float().log_softmax(-1).cpu().numpy())
    return _concat(parts), np.concatenate(logps)


def _lm_report(run, text: str, replace_unknown: str | None, where: str) -> dict:
    vocab, mode = run.vocab, run.cfg.data.mode
    table = {char: i for i, char in enumerate(vocab.chars, start=len(SPECIALS))}
    if mode != "stream":
        table["\n"] = EOS  # sentences and windows models read a newline as the end of a sentence
    notes: list[str] = []
    ids = _encode(text, table, replace_unknown, where, notes)
    activations, logp = _read_lm(run.model, ids, mode, run.device)
    ranked = logp.copy()
    ranked[:, PAD] = -np.inf  # PAD is never a symbol of the text
    top = np.argsort(-ranked, axis=1, kind="stable")[:, :TOP_K]  # (T, K)
    surprisal = np.full(len(ids), np.nan)
    surprisal[:-1] = -logp[np.arange(len(ids) - 1), ids[1:]] / math.log(2)
    symbols = ["<pad>", "\n" if mode != "stream" else "<eos>", *vocab.chars]
    return {"activations": activations, "read": np.ones(len(ids), dtype=bool), "symbols": symbols,
            "top_ids": top, "top_probs": np.exp(np.take_along_axis(logp, top, axis=1)).astype(np.float32),
            "next_surprisal": surprisal, "notes": notes}


# --- classifiers of text ---------------------------------------------------------------------------------------

def check_text_model(run) -> None:
    """UsageError unless the run reads text: a language model or a text classifier (not metro flows)."""
    if run.cfg.task == "lm" or (run.cfg.task == "classify" and run.task.info.get("kind") == "text"):
        return
    raise UsageError(f"{run.path}: inspect-cells reads text: a language model (task: lm) or a text classifier "
                     f"(task: classify, data.source langid), not task: {run.cfg.task} of data.source "
                     f"{run.cfg.data.source}")


def classifier_vocab(run) -> Vocab:
    """The vocabulary a text classifier run was trained with."""
    check_text_model(run)
    from rnnkit.tasks.classify import VOCAB_FILE

    try:
        return Vocab.load(Path(run.path) / VOCAB_FILE)
    except DataError as err:
        raise CheckpointError(f"{err} (the run folder is incomplete or damaged)") from None


@torch.no_grad()
def _prefix_probabilities(model: nn.Module, line: Tensor) -> np.ndarray:
    """A bidirectional classifier's probabilities of every prefix of line (n,) -> (n, C): each prefix read whole."""
    n = len(line)
    per_call = max(1, (1 << 16) // n)
    out = []
    for first in range(1, n + 1, per_call):
        lengths = torch.arange(first, min(n, first + per_call - 1) + 1)  # (P,)
        batch = line[:int(lengths[-1])].unsqueeze(1).repeat(1, len(lengths))  # (L, P): past a length is padding
        out.append(model(batch, lengths.to(line.device)).float().softmax(-1).cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def _classify_report(run, text: str, replace_unknown: str | None, where: str) -> dict:
    model, device = run.model, run.device
    vocab = classifier_vocab(run)
    table = {char: i for i, char in enumerate(vocab.chars, start=len(SPECIALS))}
    lines = [" ".join(line.split()) for line in text.split("\n")]  # as training read its samples
    text = "\n".join(lines)
    notes: list[str] = []
    ids = _encode(text, {**table, "\n": PAD}, replace_unknown, where, notes)  # positions as in the text shown
    rnn, H = model.rnn, model.rnn.hidden_size
    C = model.decoder.out_features
    parts, probs, offset = [], [], 0
    with _Recorder(rnn) as recorder:
        for k, line in enumerate(lines):
            line_ids = torch.from_numpy(ids[offset:offset + len(line)]).to(device)
            offset += len(line) + 1  # and the newline
            if line:
                rnn(model.embedding(line_ids.unsqueeze(1)))  # (n, 1, E): one sample from a zero state
                parts.append(recorder.take())
                probs.append(_line_probabilities(model, line_ids, recorder, k, notes))
            if k < len(lines) - 1:  # the newline: no state of its own
                parts.append({q: np.full((1, H), np.nan, dtype=np.float32) for q in quantity_names(model)})
                probs.append(np.full((1, C), np.nan, dtype=np.float32))
    read = np.array([char != "\n" for char in text], dtype=bool)
    activations = _concat(parts) if parts else {q: np.zeros((0, H), np.float32) for q in quantity_names(model)}
    class_probs = np.concatenate(probs).astype(np.float32) if probs else np.zeros((0, C), np.float32)
    return {"text": text, "activations": activations, "read": read, "classes": list(run.task.class_names),
            "class_probs": class_probs, "notes": notes}


def _line_probabilities(model: nn.Module, line_ids: Tensor, recorder: _Recorder, k: int, notes: list) -> np.ndarray:
    rnn = model.rnn
    n = len(line_ids)
    if rnn.num_directions == 1:  # the top layer's h after each character is what the decoder reads
        top = torch.stack(rnn.last_hidden[f"layer{rnn.num_layers - 1}"])[:, 0]  # (n, H)
        return model.decoder(top).float().softmax(-1).cpu().numpy()
    if n <= BIDIRECTIONAL_LIMIT:
        saved = rnn.record_hidden, rnn.record_gates
        rnn.record_hidden = rnn.record_gates = False  # the prefixes are read on the fast path
        try:
            return _prefix_probabilities(model, line_ids)
        finally:
            rnn.record_hidden, rnn.record_gates = saved
    notes.append(f"line {k + 1}: {n} characters, longer than {BIDIRECTIONAL_LIMIT}: a bidirectional model's "
                 f"probabilities are given for the whole line only")
    out = np.full((n, model.decoder.out_features), np.nan, dtype=np.float32)
    out[-1] = model(line_ids.unsqueeze(1)).float().softmax(-1).cpu().numpy()[0]
    return out


def quantity_names(model: nn.Module) -> list[str]:
    """Every quantity `inspect_cells` records for a model, in its order ("layer0.h", "layer0.c", gates...)."""
    rnn = model.rnn
    names = []
    for layer in range(rnn.num_layers):
        for direction in range(rnn.num_directions):
            sfx = ".reverse" if direction else ""
            names.append(f"layer{layer}.h{sfx}")
            if rnn.state_size == 2:
                names.append(f"layer{layer}.c{sfx}")
            names += [f"layer{layer}.{gate}{sfx}" for gate in rnn.gate_names]
    return names


# --- the report ----------------------------------------------------------------------------------------------

def inspect_cells(run, text: str, *, top_units: int = 10, replace_unknown: str | None = None,
                  where: str = "text") -> CellReport:
    """Read `text` with a loaded run (rnnkit.runs.loaded.LoadedRun) and measure what its units do.

    top_units: units listed per property. replace_unknown: a vocabulary character read in place of characters
    outside the vocabulary (else VocabularyError naming them). where: how messages name the text.
    """
    if top_units < 1:
        raise UsageError(f"--top-units: {top_units} must be at least 1")
    check_text_model(run)
    if not text:
        raise UsageError(f"{where}: no character to read")
    rnn = run.model.rnn
    if run.cfg.task == "lm":
        found = _lm_report(run, text, replace_unknown, where)
    else:
        found = _classify_report(run, text, replace_unknown, where)
        text = found.pop("text")
    kinds_of = _kinds(rnn)
    activations = found.pop("activations")
    kinds = {q: kinds_of[q.split(".")[1]] for q in activations}
    read = found.pop("read")
    if not read.any():
        raise UsageError(f"{where}: no character to read (only newlines and whitespace)")
    properties = text_properties(text)
    gates = [q for q in activations if kinds[q] in ("sigmoid", "tanh") and q.split(".")[1] not in ("h", "c")]
    if rnn.gate_names == ("preactivation",):  # Elman: its h is the nonlinearity that saturates
        gates = [q for q in activations if q.split(".")[1] == "h"]
    return CellReport(
        text=text, run=str(run.path), task=run.cfg.task, mode=run.cfg.data.mode, cell=run.cfg.model.cell,
        num_layers=rnn.num_layers, hidden_size=rnn.hidden_size, bidirectional=rnn.num_directions == 2,
        read=read, activations=activations, kinds=kinds, properties=properties,
        ranking=rank_units(activations, properties, read, top_units),
        saturation=[saturation(q, activations[q], kinds[q], read) for q in gates], **found)


def text_of_split(run, split: str) -> str:
    """A split of the run's own data as text: a language model's as `rnnkit score` reads it, a classifier's
    samples one per line."""
    if split not in ("train", "val", "test"):
        raise UsageError(f"--split: {split!r} is not one of train, val, test")
    if run.cfg.task == "lm":
        from rnnkit.evaluation.score import split_text

        return split_text(run, split)
    vocab = classifier_vocab(run)
    samples, _ = run.data().data.splits[split]
    return "".join(vocab.decode(s) + "\n" for s in samples)


def cut(text: str, max_chars: int, where: str) -> tuple[str, str | None]:
    """(the first max_chars characters of text, a note when it was longer)."""
    if max_chars < 1:
        raise UsageError(f"--max-chars: {max_chars} must be at least 1")
    if len(text) <= max_chars:
        return text, None
    return text[:max_chars], f"{where}: the first {max_chars} of {len(text)} characters (--max-chars)"


def read_text(source: str | Path | BinaryIO, max_chars: int, where: str) -> tuple[str, str | None]:
    """(the first max_chars characters of a UTF-8 file or binary stream, a note when there is more); the rest of
    a long file is not read. DataError for a missing file or bytes that are not UTF-8."""
    if max_chars < 1:
        raise UsageError(f"--max-chars: {max_chars} must be at least 1")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise DataError(f"{where}: is a folder; --text reads a text file")
        try:
            with path.open("rb") as handle:
                return read_text(handle, max_chars, where)
        except FileNotFoundError:
            raise DataError(f"{where}: no such file") from None
        except OSError as err:
            raise DataError(f"{where}: cannot read it ({err.strerror or err})") from None
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    pieces, count, offset = [], 0, 0
    while count <= max_chars:
        data = source.read(READ_BYTES)
        try:
            piece = decoder.decode(data, final=not data)
        except UnicodeDecodeError as err:
            at = max(offset - len(decoder.getstate()[0]) + err.start, 0)
            raise DataError(f"{where}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {at})") from None
        offset += len(data)
        pieces.append(piece)
        count += len(piece)
        if not data:
            break
    text = "".join(pieces)
    if len(text) <= max_chars:
        return text, None
    return text[:max_chars], f"{where}: its first {max_chars} characters (--max-chars)"
