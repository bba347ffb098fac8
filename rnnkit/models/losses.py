"""Losses over padded time-major batches: cross-entropy that ignores padded steps, without a loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def lengths_to_mask(lengths, max_len: int) -> Tensor:
    """(B,) sequence lengths -> (T=max_len, B) bool mask, True on real steps (t < lengths[b])."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be a 1-D tensor of integers, got {lengths.dtype} {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > max_len):
        raise ValueError(f"lengths must lie in [0, {max_len}], got {lengths.tolist()}")
    steps = torch.arange(max_len, device=lengths.device)
    return steps[:, None] < lengths[None, :]  # (T, B)


def masked_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    lengths: Tensor | None = None,
    mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy of logits (T, B, V) against targets (T, B) on real steps only.

    Give either `lengths` (B,) or `mask` (T, B) (bool or 0/1; True = real token).
    reduction: "mean" -> scalar mean over real tokens (the training loss, nats/token);
               "sum"  -> scalar sum over real tokens;
               "none" -> (B,) per-sequence sums (e.g. for per-sentence log-likelihoods).
    Targets on padded steps may hold anything (a pad id, -100, garbage): they are never looked up.
    """
    if (lengths is None) == (mask is None):
        raise ValueError("give exactly one of lengths or mask")
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (T, B, V) and targets (T, B), got {tuple(logits.shape)}, "
                         f"{tuple(targets.shape)}")
    T, B, V = logits.shape
    mask = lengths_to_mask(lengths, T) if mask is None else mask.bool()
    mask = mask.to(logits.device)
    # Replace padded targets by a valid class so that cross_entropy never sees an out-of-range id,
    # and select with where() (not multiply) so that a non-finite padded logit cannot leak a NaN.
    safe_targets = torch.where(mask, targets, torch.zeros_like(targets))
    nll = F.cross_entropy(logits.reshape(T * B, V), safe_targets.reshape(T * B), reduction="none")
    nll = torch.where(mask, nll.view(T, B), 0.0)  # (T, B)
    if reduction == "mean":
        return nll.sum() / mask.sum().clamp_min(1)
    if reduction == "sum":
        return nll.sum()
    if reduction == "none":
        return nll.sum(dim=0)  # (B,)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
