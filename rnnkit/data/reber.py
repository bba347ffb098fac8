"""The embedded Reber grammar (Hochreiter & Schmidhuber 1997): a seeded string generator and its metric.

An embedded string is B, then T or P, then a Reber string, then the same T or P again, then E, e.g.
`BTBTXSETE`. Predicting the penultimate symbol needs the second one, remembered across the whole inner
string: an LSTM learns it, an Elman RNN mostly does not. That is the quickstart's default dataset.
"""

from __future__ import annotations

import random

import torch

from rnnkit.errors import DataError

# Reber automaton: state -> [(symbol, next state)], each choice with probability 1/2; None = done.
REBER_EDGES = {
    0: [("T", 1), ("P", 2)],
    1: [("S", 1), ("X", 3)],
    2: [("T", 2), ("V", 4)],
    3: [("X", 2), ("S", None)],
    4: [("P", 3), ("V", None)],
}
ALPHABET = "BEPSTVX"
MAX_TRIES = 1000


def reber_string(rng: random.Random) -> str:
    """One (non-embedded) Reber string, e.g. `BTXSE`."""
    out, state = ["B"], 0
    while state is not None:
        symbol, state = rng.choice(REBER_EDGES[state])
        out.append(symbol)
    out.append("E")
    return "".join(out)


def embedded_reber_string(rng: random.Random) -> str:
    """One embedded Reber string: B, T|P, a Reber string, the same T|P, E."""
    branch = rng.choice("TP")
    return f"B{branch}{reber_string(rng)}{branch}E"


def is_reber(text: str) -> bool:
    if len(text) < 2 or text[0] != "B" or text[-1] != "E":
        return False
    state = 0
    for symbol in text[1:-1]:
        if state is None:
            return False
        nxt = dict(REBER_EDGES[state])
        if symbol not in nxt:
            return False
        state = nxt[symbol]
    return state is None


def is_embedded_reber(text: str) -> bool:
    return (len(text) >= 9 and text[0] == "B" and text[-1] == "E" and text[1] in "TP"
            and text[-2] == text[1] and is_reber(text[2:-2]))


def generate_embedded_reber(n: int, seed: int = 0, min_len: int = 1, max_len: int = 10**9) -> list[str]:
    """`n` embedded Reber strings from a seeded generator, each of min_len..max_len characters.

    Strings outside the bounds are redrawn rather than cut, so every string stays grammatical.
    """
    if max_len < 9:
        raise DataError(f"data.max_len: {max_len} is too short for embedded Reber strings (9 characters at least)")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        for _ in range(MAX_TRIES):
            text = embedded_reber_string(rng)
            if min_len <= len(text) <= max_len:
                break
        else:
            raise DataError(f"data.min_len/max_len: {min_len}..{max_len} leaves almost no embedded Reber strings")
        out.append(text)
    return out


def penultimate_hits(predictions: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> tuple[int, int]:
    """(correct, total) predictions of the penultimate symbol (the T/P that must match the second one).

    predictions: (T, B) predicted ids or (T, B, V) logits; targets: (T, B) as made by `lm_batches` in
    sentence mode (the string, then EOS, then PAD); lengths: (B,) real target positions, EOS included.
    The penultimate symbol of a string of n characters sits at target position n - 2 = lengths - 3.
    """
    if predictions.dim() == 3:
        predictions = predictions.argmax(-1)  # (T, B)
    lengths = lengths.to(targets.device)
    keep = lengths >= 3
    if not bool(keep.any()):
        return 0, 0
    position = (lengths[keep] - 3).long()  # (B',)
    columns = torch.arange(targets.shape[1], device=targets.device)[keep]
    correct = predictions[position, columns] == targets[position, columns]
    return int(correct.sum()), int(correct.numel())


def penultimate_accuracy(predictions: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> float:
    """Fraction of penultimate symbols predicted right (shapes as in `penultimate_hits`); NaN if none."""
    correct, total = penultimate_hits(predictions, targets, lengths)
    return correct / total if total else float("nan")
