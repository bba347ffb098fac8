"""Which class is each line in: a language-identification run (task: classify, data.source langid) on new text.

A line is read the way training read its samples: runs of whitespace become one space, and a character the
vocabulary lacks is spelt as the run's cleaning spelt its corpus (lower case under data.lowercase, ASCII
quotes and letters under data.charset ascii). The whole line is read, however long, whatever data.max_len or
data.window the model was trained on. A line that is empty or still holds an unknown character gets an error
record (or reads the character as `replace_unknown`); the lines around it are classified all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rnnkit.data.vocab import PAD, Vocab, describe_char
from rnnkit.errors import CheckpointError, DataError, UsageError, VocabularyError

CHUNK_POSITIONS = 1 << 16  # padded characters per model call at most (a longer line is read alone)
SHOWN_UNKNOWN = 3  # distinct unknown characters a line's error names


@dataclass
class LabelProbability:
    label: str
    probability: float


@dataclass
class Prediction:
    """The classes of one input line, most probable first; or why the line could not be classified."""

    line: int  # 1-based position in the input
    top: list[LabelProbability] = field(default_factory=list)  # the --top K most probable classes
    replaced: int = 0  # characters outside the vocabulary read as replace_unknown
    error: str | None = None  # set when the line could not be classified (top is then empty)

    @property
    def label(self) -> str | None:
        return self.top[0].label if self.top else None

    @property
    def probability(self) -> float | None:
        return self.top[0].probability if self.top else None

    def to_dict(self, with_top: bool = False) -> dict:
        """The `--json` record: line, label, probability (and top, replaced), or line and error."""
        if self.error is not None:
            return {"line": self.line, "error": self.error}
        record = {"line": self.line, "label": self.label, "probability": self.probability}
        if with_top:
            record["top"] = [{"label": t.label, "probability": t.probability} for t in self.top]
        if self.replaced:
            record["replaced"] = self.replaced
        return record


def check_text_classifier(run) -> None:
    """UsageError unless `run` (a LoadedRun) classifies text."""
    if run.cfg.task == "classify" and run.task.info.get("kind") == "text":
        return
    what = {"classify": f"a station classifier of metro flows (data.source {run.cfg.data.source}), which reads "
                       f"numeric windows, not text", "lm": "a language model (see rnnkit generate and rnnkit score)"}
    raise UsageError(f"{run.path} is {what.get(run.cfg.task, f'task: {run.cfg.task}')}; predict takes language "
                     f"identification runs (task: classify, data.source langid: text lines) and forecasting runs "
                     f"(task: forecast: --input FILE or --from-split)")


class TextClassifier:
    """A loaded langid run ready to classify lines: `classify(lines)` -> one Prediction per line."""

    def __init__(self, run, top: int = 1, replace_unknown: str | None = None):
        check_text_classifier(run)
        from rnnkit.tasks.classify import VOCAB_FILE

        try:
            self.vocab = Vocab.load(run.path / VOCAB_FILE)
        except DataError as err:
            raise CheckpointError(f"{err} (the run folder is incomplete or damaged)") from None
        self.classes: list[str] = list(run.task.class_names)
        if top < 1:
            raise UsageError(f"--top: {top} is not a number of classes; give 1..{len(self.classes)}")
        if replace_unknown is not None and (len(replace_unknown) != 1 or not self.vocab.contains(replace_unknown)):
            raise UsageError(f"--replace-unknown: {replace_unknown!r} must be one character of the model's "
                             f"vocabulary")
        self.model, self.device = run.model, run.device
        self.top, self.replace = min(top, len(self.classes)), replace_unknown
        self.charset, self.lowercase = run.cfg.data.charset, run.cfg.data.lowercase
        self._spelt: dict[str, str | None] = {}  # unknown character -> its cleaned spelling (None: none known)

    # --- text -> ids -------------------------------------------------------------------------------------------

    def encode(self, line: str) -> tuple[list[int], int]:
        """(ids of the line as the model reads it, characters read as replace_unknown); DataError (the line's
        error message) for an empty line or an unknown character."""
        text = " ".join(line.split())
        if not text:
            raise DataError("empty line" if not line else "blank line (only whitespace)")
        try:
            return self.vocab.encode(text), 0
        except VocabularyError:  # spell the unknown characters as cleaning does, then look again
            pass
        chars, unknown = [], {}
        for char in text:
            spelt = char if self.vocab.contains(char) or char == " " else self._spelling(char)
            if spelt is None:
                unknown.setdefault(char, 0)
                unknown[char] += 1
                spelt = self.replace or ""
            chars.append(spelt)
        if unknown and self.replace is None:
            raise DataError(self._unknown_message(line, unknown))
        text = " ".join("".join(chars).split())
        if not text:
            raise DataError("no character of the line is in the model's vocabulary")
        try:
            return self.vocab.encode(text), sum(unknown.values())
        except VocabularyError:  # a space, in a run trained without one
            raise DataError(self._unknown_message(line, {" ": text.count(" ")})) from None

    def _spelling(self, char: str) -> str | None:
        if char not in self._spelt:
            from rnnkit.data.cleaning import clean_text

            spelt, _ = clean_text(char, self.charset, self.lowercase)
            known = bool(spelt) and all(c == " " or self.vocab.contains(c) for c in spelt)
            self._spelt[char] = spelt if known else None
        return self._spelt[char]

    def _unknown_message(self, line: str, unknown: dict[str, int]) -> str:
        named = []
        for char, count in list(unknown.items())[:SHOWN_UNKNOWN]:
            what = describe_char(char)
            if 0xDC80 <= ord(char) <= 0xDCFF:  # decode_line keeps a byte that is not UTF-8 as a lone surrogate
                what = f"byte 0x{ord(char) - 0xDC00:02X}, which is not UTF-8,"
            column = line.find(char) + 1  # 0: a space that stands for other whitespace
            named.append(what + (f" at column {column}" if column else "") + (f" ({count} times)" if count > 1 else ""))
        more = f" and {len(unknown) - SHOWN_UNKNOWN} other characters" if len(unknown) > SHOWN_UNKNOWN else ""
        return (f"not in the model's vocabulary of {len(self.vocab.chars)} characters: {'; '.join(named)}{more}; "
                f"--replace-unknown C reads such characters as C")

    # --- ids -> classes ----------------------------------------------------------------------------------------

    def classify(self, lines: list[str], first_line: int = 1) -> list[Prediction]:
        """One Prediction per line, in order; `first_line` is the 1-based position of lines[0] in the input."""
        out = [Prediction(first_line + i) for i in range(len(lines))]
        encoded = {}
        for i, line in enumerate(lines):
            try:
                encoded[i], out[i].replaced = self.encode(line)
            except DataError as err:
                out[i].error = str(err)
        for i, (probs, labels) in self._top(encoded).items():
            out[i].top = [LabelProbability(self.classes[c], p) for c, p in zip(labels, probs, strict=True)]
        return out

    @torch.no_grad()
    def _top(self, encoded: dict[int, list[int]]) -> dict[int, tuple[list[float], list[int]]]:
        """{line index: (top probabilities, their class ids)}: lines sorted by length, read in padded batches of
        at most CHUNK_POSITIONS characters (the length-masked forward `rnnkit eval` uses)."""
        order = sorted(encoded, key=lambda i: len(encoded[i]))
        result = {}
        start = 0
        while start < len(order):
            stop = start + 1  # sorted by length: the batch's longest line is its last
            while stop < len(order) and len(encoded[order[stop]]) * (stop + 1 - start) <= CHUNK_POSITIONS:
                stop += 1
            chosen = order[start:stop]
            lengths = torch.tensor([len(encoded[i]) for i in chosen])  # (B,)
            inputs = torch.full((int(lengths.max()), len(chosen)), PAD, dtype=torch.long)  # (T, B)
            for b, i in enumerate(chosen):
                inputs[:len(encoded[i]), b] = torch.tensor(encoded[i])
            ragged = bool((lengths != inputs.shape[0]).any())  # as ClassifyTask: equal lengths need no mask
            logits = self.model(inputs.to(self.device), lengths.to(self.device) if ragged else None)  # (B, C)
            probs, labels = logits.float().softmax(-1).topk(self.top, dim=-1)  # (B, K)
            for b, i in enumerate(chosen):
                result[i] = (probs[b].tolist(), labels[b].tolist())
            start = stop
        return result

