"""Character vocabulary with reserved ids PAD = 0 and EOS = 1, saved as versioned JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from rnnkit.errors import DataError, VocabularyError
from rnnkit.io.atomic import atomic_write_text

PAD = 0  # padding after a sequence's end; never a target the loss counts
EOS = 1  # end of sentence; also the first input of every sentence (see rnnkit.data.datasets)
SPECIALS = ("<pad>", "<eos>")
FORMAT_VERSION = 1


def describe_char(char: str) -> str:
    """`'é' (U+00E9)`: how messages name a character, visible even when it is a control character."""
    return f"{char!r} (U+{ord(char):04X})"


class Vocab:
    """Characters <-> ids. Ids 0 and 1 are PAD and EOS; characters follow from id 2 in the given order."""

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = list(chars)
        for char in self.chars:
            if len(char) != 1:
                raise DataError(f"vocabulary entries must be single characters, got {char!r}")
        if len(set(self.chars)) != len(self.chars):
            raise DataError("vocabulary has a character twice")
        self._ids = {char: i + len(SPECIALS) for i, char in enumerate(self.chars)}
        # Code point -> id (-1: not in the vocabulary), one entry per code point up to the largest: lets
        # encode_array() map a whole corpus with one take.
        self._lookup = np.full(max(map(ord, self.chars), default=0) + 2, -1, dtype=np.int64)
        for char, i in self._ids.items():
            self._lookup[ord(char)] = i

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """Every distinct character of `text`, in code-point order (so equal texts give equal ids)."""
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocab({len(self)} ids: {''.join(self.chars)[:40]!r})"

    def contains(self, char: str) -> bool:
        return char in self._ids

    def _unknown(self, text: str, position: int) -> VocabularyError:
        return VocabularyError(f"character {describe_char(text[position])} at position {position} "
                               f"is not in the vocabulary ({len(self.chars)} characters)")

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of `text` (no EOS added); an unknown character raises VocabularyError."""
        try:
            return [self._ids[char] for char in text]
        except KeyError:
            position = next(i for i, char in enumerate(text) if char not in self._ids)
            raise self._unknown(text, position) from None

    def encode_array(self, text: str) -> np.ndarray:
        """Same as `encode` as a (len(text),) int64 array, vectorised for whole corpora."""
        if not text:
            return np.zeros(0, dtype=np.int64)
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        # A code point beyond the table reads its last entry, which is always -1 (unknown).
        ids = self._lookup.take(np.minimum(codes, len(self._lookup) - 1))
        if ids.min() < 0:
            raise self._unknown(text, int(np.argmax(ids < 0)))
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor, stop_at_eos: bool = True) -> str:
        """Text of `ids` (list or 1-D tensor): PAD is skipped; EOS ends the text (or is skipped)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if i == EOS and stop_at_eos:
                break
            if i < len(SPECIALS):
                continue
            if not len(SPECIALS) <= i < len(self):
                raise VocabularyError(f"id {i} is outside the vocabulary (0..{len(self) - 1})")
            out.append(self.chars[i - len(SPECIALS)])
        return "".join(out)

    def difference(self, other: Vocab, mine: str = "here", theirs: str = "there") -> str:
        """How two vocabularies differ, for messages: "only here: 'é' (U+00E9); only there: '$' (U+0024)", or
        "the same characters in another order" (ids differ all the same)."""
        only_mine = [c for c in self.chars if not other.contains(c)]
        only_theirs = [c for c in other.chars if not self.contains(c)]
        parts = [f"only {where}: {', '.join(map(describe_char, chars[:8]))}{' ...' if len(chars) > 8 else ''}"
                 for where, chars in ((mine, only_mine), (theirs, only_theirs)) if chars]
        return "; ".join(parts) or "the same characters in another order"

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "pad": PAD, "eos": EOS, "specials": list(SPECIALS),
                "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict, where: str = "vocabulary") -> Vocab:
        if not isinstance(data, dict) or not isinstance(data.get("chars"), list):
            raise DataError(f"{where}: not an rnnkit vocabulary (no 'chars' list)")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DataError(f"{where}: vocabulary format {version!r} is newer than this rnnkit understands "
                            f"({FORMAT_VERSION}); upgrade rnnkit")
        if data.get("pad", PAD) != PAD or data.get("eos", EOS) != EOS:
            raise DataError(f"{where}: reserved ids differ from PAD={PAD}, EOS={EOS}")
        return cls(data["chars"])

    def to_json(self) -> str:
        """The vocabulary as JSON text (characters readable, not escaped)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as a UTF-8 JSON file."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: no such vocabulary file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: cannot read the vocabulary ({err})") from None
        return cls.from_dict(data, str(path))
