"""Masked cross-entropy equals the loss computed sequence by sequence on the unpadded sequences."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.models import masked_cross_entropy
from rnnkit.models.losses import lengths_to_mask

V = 6


def per_sequence_nll(logits, targets, lengths):
    """The slow reference: each sequence on its own, without its padding. Returns (B,) sums."""
    return torch.stack([
        F.cross_entropy(logits[:n, b], targets[:n, b], reduction="sum") for b, n in enumerate(lengths.tolist())
    ])


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_equals_sequence_by_sequence(lengths, seed):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    T, B = int(lengths.max()), len(lengths)
    logits = torch.randn(T, B, V, dtype=torch.float64, generator=gen)
    targets = torch.randint(0, V, (T, B), generator=gen)
    mask = lengths_to_mask(lengths, T)
    targets[~mask] = -7  # pad ids that would crash a lookup: they must never be looked up
    logits[~mask] = float("inf")  # and padded logits must not leak into the result
    ref = per_sequence_nll(logits, targets.clamp_min(0), lengths)
    torch.testing.assert_close(masked_cross_entropy(logits, targets, lengths), ref.sum() / lengths.sum())
    torch.testing.assert_close(masked_cross_entropy(logits, targets, lengths, reduction="sum"), ref.sum())
    torch.testing.assert_close(masked_cross_entropy(logits, targets, lengths, reduction="none"), ref)
    torch.testing.assert_close(masked_cross_entropy(logits, targets, mask=mask), ref.sum() / lengths.sum())
    torch.testing.assert_close(masked_cross_entropy(logits, targets, mask=mask.long()), ref.sum() / lengths.sum())


def test_gradient_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, V, requires_grad=True)
    lengths = torch.tensor([5, 2, 3])
    masked_cross_entropy(logits, torch.randint(0, V, (5, 3)), lengths).backward()
    pad = ~lengths_to_mask(lengths, 5)
    assert (logits.grad[pad] == 0).all() and (logits.grad[~pad] != 0).any()


def test_mean_differs_from_a_padded_mean():
    """Averaging over T*B instead of the real tokens would be wrong; check the divisor."""
    logits = torch.zeros(4, 2, V)
    loss = masked_cross_entropy(logits, torch.zeros(4, 2, dtype=torch.long), torch.tensor([4, 1]))
    torch.testing.assert_close(loss, torch.log(torch.tensor(float(V))))


def test_bad_arguments():
    logits, targets = torch.zeros(3, 2, V), torch.zeros(3, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="exactly one"):
        masked_cross_entropy(logits, targets)
    with pytest.raises(ValueError, match="reduction"):
        masked_cross_entropy(logits, targets, torch.tensor([3, 3]), reduction="avg")
    with pytest.raises(ValueError, match="lengths"):
        lengths_to_mask(torch.tensor([4, 1]), 3)
