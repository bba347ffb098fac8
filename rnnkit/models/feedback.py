"""Feeding a model's own outputs back as inputs (scheduled sampling, free running): the per-step choice."""

from __future__ import annotations

import torch
from torch import Tensor

FEEDS = ("sample", "greedy")  # what is fed instead of the truth: a sample, or the argmax


def mix_inputs(truth: Tensor, prediction: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """One time step's inputs: per sequence, `truth` with probability p, else the model's `prediction`.

    truth, prediction: (B, ...) the same shape (token ids (B,) for a language model, values (B, D) for
    forecasting); the coin is drawn once per row. p >= 1 returns `truth` and p <= 0 `prediction` without
    drawing. The prediction is detached: no gradient flows through the choice of the fed symbol.
    """
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {tuple(truth.shape)} and prediction {tuple(prediction.shape)} differ in shape")
    if p >= 1.0:
        return truth
    prediction = prediction.detach()
    if p <= 0.0:
        return prediction
    coins = torch.rand(truth.shape[0], generator=generator, device=truth.device)  # (B,)
    keep = (coins < p).view(-1, *([1] * (truth.dim() - 1)))  # (B, 1, ...)
    return torch.where(keep, truth, prediction)


def pick_tokens(logits: Tensor, feed: str, generator: torch.Generator | None = None,
                forbidden: int | None = None) -> Tensor:
    """The model's own symbol from logits (B, V): argmax (feed "greedy") or a sample (feed "sample") -> (B,).

    `forbidden` (e.g. PAD, never a target) is excluded, as the decoders do.
    """
    logits = logits.detach().float()
    if forbidden is not None:
        logits = logits.clone()
        logits[:, forbidden] = float("-inf")
    if feed == "greedy":
        return logits.argmax(dim=-1)
    if feed == "sample":
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    raise ValueError(f"feed must be one of {', '.join(FEEDS)}, not {feed!r}")
