"""Simple properties of a text, per character, and the units that follow them (inspect-cells' ranking).

Every property is read at a character *after* the model has read it, as the recorded state is: the opening
quote of a quotation already counts as inside it, its closing quote as outside. NaN marks a character where a
property is undefined (vowel/consonant of a character that is not a letter); it is left out of that
property's correlations.

- in_quotes: inside a quotation (1) or not (0), from the start of the text: " or ' opens one, the same
  character closes it (the other one is text inside it). A ' right after a letter or digit is an apostrophe
  (don't, dogs'), unless the word before it is a Python string prefix (r, b, f, u, rb, br, fr, rf).
- in_brackets: inside at least one of ( [ { not yet closed (1 / 0); a closing bracket without an opener is
  ignored
- line_position: characters of the current line read so far (a newline starts again at 0)
- after_newline: the character is a newline (1 / 0): the state just after a line break
- vowel: 1 for a vowel (aeiouy, any case, with accents stripped), 0 for another letter, NaN otherwise
- indent: leading spaces and tabs of the current line read so far (it stops growing at the first other
  character, so a line's indentation is known once it has been read)
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

PROPERTIES = ("in_quotes", "in_brackets", "line_position", "after_newline", "vowel", "indent")
SATURATION = (0.1, 0.9)  # Karpathy et al. 2015: left-saturated below 0.1, right-saturated above 0.9
OPENERS, CLOSERS = "([{", ")]}"
STRING_PREFIXES = {"r", "b", "f", "u", "rb", "br", "fr", "rf"}
VOWELS = set("aeiouy")


@dataclass
class RankedUnit:
    """A unit of one recorded quantity and its Pearson correlation with a property over the text."""

    quantity: str  # "layer0.c", "layer1.forget.reverse"
    unit: int
    r: float


@dataclass
class Saturation:
    """Per unit of a gate (or of an Elman cell's h): fraction of the characters where it is saturated."""

    quantity: str
    kind: str  # sigmoid, tanh (judged on (a + 1) / 2) or relu (left = exactly 0; never right)
    left: np.ndarray  # (H,) below SATURATION[0]
    right: np.ndarray  # (H,) above SATURATION[1]


def _is_vowel(char: str) -> float:
    if not char.isalpha():
        return float("nan")
    base = unicodedata.normalize("NFD", char.lower())[0]  # é -> e
    return 1.0 if base in VOWELS else 0.0


def _opens_single(text: str, i: int) -> bool:
    """Whether the ' at text[i] opens a quotation rather than being an apostrophe."""
    start = i
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    word = text[start:i]
    before = text[start - 1] if start > 0 else ""
    return not word or (word.lower() in STRING_PREFIXES and before != "_")


def text_properties(text: str) -> dict[str, np.ndarray]:
    """{property: (T,) float64} for every name of PROPERTIES (see the module docstring)."""
    T = len(text)
    out = {name: np.zeros(T, dtype=np.float64) for name in PROPERTIES}
    depth = column = indent = 0
    quote = None  # the character that opened the current quotation
    leading = True  # still in the current line's leading whitespace
    for i, char in enumerate(text):
        if quote is not None:
            quote = None if char == quote else quote
        elif char == '"' or (char == "'" and _opens_single(text, i)):
            quote = char
        if char in OPENERS:
            depth += 1
        elif char in CLOSERS and depth:
            depth -= 1
        if char == "\n":
            column, indent, leading = 0, 0, True
        else:
            column += 1
            if leading and char in " \t":
                indent += 1
            else:
                leading = False
        out["in_quotes"][i] = quote is not None
        out["in_brackets"][i] = depth > 0
        out["line_position"][i] = column
        out["after_newline"][i] = char == "\n"
        out["vowel"][i] = _is_vowel(char)
        out["indent"][i] = indent
    return out


def correlations(activations: np.ndarray, prop: np.ndarray, read: np.ndarray) -> np.ndarray:
    """Pearson r of every unit with a property: activations (T, H), prop (T,), read (T,) bool -> (H,).

    Characters where the property is NaN or the model read nothing are left out. A unit (or a property) that
    is constant over the remaining characters correlates 0.
    """
    keep = read & ~np.isnan(prop)
    x = prop[keep] - prop[keep].mean()  # (n,)
    a = activations[keep].astype(np.float64)  # (n, H)
    a -= a.mean(axis=0)
    denominator = np.sqrt((x @ x) * (a * a).sum(axis=0))  # (H,)
    r = np.zeros(a.shape[1])
    ok = denominator > 1e-12
    r[ok] = (x @ a)[ok] / denominator[ok]
    return r


def rank_units(activations: dict[str, np.ndarray], properties: dict[str, np.ndarray], read: np.ndarray,
               top: int = 10) -> dict[str, list[RankedUnit]]:
    """{property: the `top` units of every quantity with the largest |r|, largest first}; a property that is
    constant over the text (no quote in it, say) gets an empty list."""
    ranking = {}
    for name, prop in properties.items():
        keep = read & ~np.isnan(prop)
        if keep.sum() < 2 or np.ptp(prop[keep]) == 0:
            ranking[name] = []
            continue
        names, rs = [], []
        for quantity, values in activations.items():
            names.append(quantity)
            rs.append(correlations(values, prop, read))
        flat = np.concatenate(rs)  # every unit of every quantity, in order
        k = min(top, flat.size)
        best = np.argpartition(-np.abs(flat), k - 1)[:k]
        best = best[np.argsort(-np.abs(flat[best]), kind="stable")]
        offsets = np.cumsum([0] + [len(r) for r in rs])
        ranked = []
        for index in best.tolist():
            which = int(np.searchsorted(offsets, index, side="right") - 1)
            ranked.append(RankedUnit(names[which], index - int(offsets[which]), float(flat[index])))
        ranking[name] = ranked
    return ranking


def saturation(quantity: str, values: np.ndarray, kind: str, read: np.ndarray) -> Saturation:
    """Saturation of one gate's units: values (T, H) over the characters the model read."""
    v = values[read].astype(np.float64)  # (n, H)
    low, high = SATURATION
    if kind == "relu":
        return Saturation(quantity, kind, (v <= 0).mean(axis=0), np.zeros(v.shape[1]))
    u = (v + 1) / 2 if kind == "tanh" else v  # tanh on sigmoid's (0, 1) scale: the same distance from the ends
    return Saturation(quantity, kind, (u < low).mean(axis=0), (u > high).mean(axis=0))
