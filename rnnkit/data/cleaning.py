"""Text cleaning before a character vocabulary is built: every character mapped or removed is counted."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

CHARSETS = ("ascii", "unicode")

# Typographic characters with an obvious ASCII spelling (NFKD alone leaves most of them untouched).
TYPOGRAPHIC = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "\u02bc": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u2022": "*", "\u00b7": "*", "\u2044": "/",
}
# Characters that carry nothing visible: removed in both character sets.
INVISIBLE = {"\ufeff", "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad"}
# Kinds used in the report (the CLI prints them as they are).
MOJIBAKE = "cp1252 mojibake (C1 control)"
TYPO = "typographic punctuation"
ACCENT = "accented or compatibility letter"
SPACE = "unusual whitespace"
LINE_END = "CRLF/CR line end"
BOM = "byte-order mark"
INVALID = "invalid UTF-8 byte"
CONTROL = "control character"
NO_ASCII = "no ASCII equivalent"
NFC = "Unicode NFC normalisation"


@dataclass
class CleaningReport:
    """What `clean_text` did: characters in and out, and counts of mapped/removed characters per kind."""

    chars_in: int = 0
    chars_out: int = 0
    mapped: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    removed_chars: dict[str, int] = field(default_factory=dict)  # "'\u2603' (U+2603)" -> count, most first

    @property
    def total_mapped(self) -> int:
        return sum(self.mapped.values())

    @property
    def total_removed(self) -> int:
        return sum(self.removed.values())

    def to_dict(self) -> dict:
        return {"chars_in": self.chars_in, "chars_out": self.chars_out, "mapped": self.mapped,
                "removed": self.removed, "removed_chars": self.removed_chars}

    @classmethod
    def from_dict(cls, data: dict) -> CleaningReport:
        return cls(**{key: data[key] for key in ("chars_in", "chars_out", "mapped", "removed", "removed_chars")})

    def add(self, other: CleaningReport) -> None:
        """Add the counts of `other` (the report of the next chunk of a stream) to this one."""
        self.chars_in += other.chars_in
        self.chars_out += other.chars_out
        for mine, theirs in ((self.mapped, other.mapped), (self.removed, other.removed),
                             (self.removed_chars, other.removed_chars)):
            merged = Counter(mine) + Counter(theirs)
            mine.clear()
            mine.update(merged.most_common())


def _cp1252(char: str) -> str | None:
    """The character a C1 control (U+0080..U+009F) stands for when cp1252 bytes were read as Latin-1."""
    try:
        return bytes([ord(char)]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: undefined in cp1252
        return None


def _to_ascii(char: str) -> tuple[str | None, str]:
    """(ASCII replacement or None, kind) for one non-ASCII character."""
    if char in TYPOGRAPHIC:
        return TYPOGRAPHIC[char], TYPO
    if unicodedata.combining(char):
        return None, NO_ASCII
    stripped = "".join(TYPOGRAPHIC.get(c, c) for c in unicodedata.normalize("NFKD", char)
                       if not unicodedata.combining(c))  # "½" -> "1⁄2" -> "1/2"
    if stripped and all(" " <= c <= "~" for c in stripped):
        return stripped, ACCENT
    return None, NO_ASCII


def _decide(char: str, charset: str, keep_layout: bool = False) -> tuple[str | None, str | None]:
    """(replacement, kind) for one distinct character: kind None = kept as is, replacement None = removed."""
    if " " <= char <= "~" or char == "\n":
        return char, None
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, smuggled through by surrogateescape
        return None, INVALID
    if char in INVISIBLE:
        return None, BOM if char == "\ufeff" else CONTROL
    if 0x80 <= code <= 0x9F:
        meant = _cp1252(char)
        if meant is None:
            return None, CONTROL
        replacement, _ = _decide(meant, charset, keep_layout)
        return replacement, MOJIBAKE
    if char.isspace():
        if keep_layout and (char in "\t\x0b\x0c" or charset == "unicode"):
            return char, None
        return ("\n" if char in "\u2028\u2029\x0b\x0c" else " "), SPACE
    if unicodedata.category(char)[0] == "C":  # controls, surrogates, unassigned, private use
        return None, CONTROL
    if charset == "unicode":
        return char, None
    return _to_ascii(char)


def clean_text(text: str, charset: str = "ascii", lowercase: bool = False,
               keep_layout: bool = False) -> tuple[str, CleaningReport]:
    """Normalise `text` for a character vocabulary; return the clean text and what was changed.

    Both character sets: a leading BOM and invisible characters are removed, CRLF/CR become LF, cp1252
    mojibake (U+0085, U+0096, U+0097, ...) becomes the character it stood for, unusual whitespace becomes
    a space, control characters and undecodable bytes are removed. `ascii` then maps typographic
    punctuation and accented letters to ASCII and removes what has no ASCII equivalent; `unicode` keeps
    them (NFC-normalised). Nothing disappears without being counted in the report.

    keep_layout (data.mode: stream): whitespace is kept as it is, tabs, form feeds and vertical tabs
    included (with `unicode`, every whitespace character); only line ends are still unified to LF.
    """
    if charset not in CHARSETS:
        raise ValueError(f"charset must be one of {CHARSETS}, got {charset!r}")
    report = CleaningReport(chars_in=len(text))
    mapped, removed = Counter(), Counter()
    if "\r" in text:
        crlf = text.count("\r\n")
        text = text.replace("\r\n", "\n")
        mapped[LINE_END] += crlf + text.count("\r")  # a CRLF counts once: one line end, one change
        text = text.replace("\r", "\n")
    if charset == "unicode" and not unicodedata.is_normalized("NFC", text):
        before = len(text)
        text = unicodedata.normalize("NFC", text)
        mapped[NFC] += before - len(text)
    # Decide once per distinct character, then apply with one str.translate: fast on megabytes.
    table, removed_chars = {}, Counter()
    for char, count in _char_counts(text).items():
        replacement, kind = _decide(char, charset, keep_layout)
        if kind is None:
            continue
        table[ord(char)] = replacement
        if replacement is None:
            removed[kind] += count
            removed_chars[char] += count
        else:
            mapped[kind] += count
    if table:
        text = text.translate(table)
    if lowercase:
        text = text.lower()
    report.chars_out = len(text)
    report.mapped = dict(mapped.most_common())
    report.removed = dict(removed.most_common())
    report.removed_chars = {_name(c): n for c, n in removed_chars.most_common()}
    return text, report


def _char_counts(text: str) -> dict[str, int]:
    """{character: count} of `text`; numpy counts the code points (twice as fast as Counter on megabytes)."""
    if len(text) < 1 << 16:
        return Counter(text)
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    values, counts = np.unique(codes, return_counts=True) if codes.max() > 1 << 16 else _bincount(codes)
    return {chr(v): int(n) for v, n in zip(values.tolist(), counts.tolist(), strict=True)}


def _bincount(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(codes)
    values = np.flatnonzero(counts)
    return values, counts[values]


def _name(char: str) -> str:
    return f"{char!r} (U+{ord(char):04X})"


class StreamCleaner:
    """`clean_text` over a text that arrives in chunks (a corpus larger than memory), with the same result
    (keep_layout by default: the stream mode's cleaning).

    A chunk is cleaned up to its last line break and the rest held back for the next one, so that a CRLF or
    a letter and its combining accent (NFC) are never cut apart; a chunk without a line break is cut before
    its last character that starts a new grapheme. `report` adds up what every chunk changed.
    """

    def __init__(self, charset: str = "ascii", lowercase: bool = False, keep_layout: bool = True):
        self.charset, self.lowercase, self.keep_layout = charset, lowercase, keep_layout
        self.report = CleaningReport()
        self.held = ""

    def feed(self, text: str) -> str:
        """The clean text of everything fed so far, up to a safe cut; the rest waits for the next feed."""
        text = self.held + text
        cut = text.rfind("\n") + 1
        if cut == 0:
            cut = len(text) - 1
            while cut > 0 and (unicodedata.combining(text[cut]) or text[cut - 1] == "\r"):
                cut -= 1
        self.held = text[cut:]
        return self._clean(text[:cut])

    def finish(self) -> str:
        """The clean text of what was held back: call once after the last feed."""
        held, self.held = self.held, ""
        return self._clean(held)

    def _clean(self, text: str) -> str:
        if not text:
            return ""
        clean, report = clean_text(text, self.charset, self.lowercase, self.keep_layout)
        self.report.add(report)
        return clean
