"""Task metrics against hand computations: PVCGN's masked MAE/RMSE/MAPE per horizon, confusion matrices."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.evaluation.metrics import (
    accuracy,
    add_sums,
    bits_per_char,
    confusion_matrix,
    horizon_errors,
    masked_error_sums,
    per_class_accuracy,
    perplexity,
)


def test_bits_per_char_and_perplexity_from_nats():
    assert math.isclose(bits_per_char(math.log(2)), 1.0) and math.isclose(bits_per_char(3 * math.log(2)), 3.0)
    assert math.isclose(perplexity(math.log(27)), 27.0)  # uniform over 27 symbols
    assert perplexity(0.0) == 1.0
    assert perplexity(1e4) == math.inf  # math.exp would overflow


def test_masked_errors_equal_a_hand_computation():
    # 2 windows, 2 horizons, 3 values; the zero targets are left out of every metric
    target = torch.tensor([[[10.0, 0.0, 4.0], [5.0, 2.0, 0.0]],
                           [[20.0, 8.0, 0.0], [0.0, 1.0, 10.0]]])
    pred = torch.tensor([[[12.0, 7.0, 3.0], [5.0, 4.0, 9.0]],
                         [[15.0, 8.0, 1.0], [3.0, 0.0, 13.0]]])
    rows = horizon_errors(masked_error_sums(pred, target))
    # horizon 1 keeps (10, 12), (4, 3), (20, 15), (8, 8): errors 2, 1, 5, 0
    assert rows[0]["minutes"] == 15 and math.isclose(rows[0]["mae"], (2 + 1 + 5 + 0) / 4)
    assert math.isclose(rows[0]["rmse"], math.sqrt((4 + 1 + 25 + 0) / 4))
    assert math.isclose(rows[0]["mape"], 100 * (2 / 10 + 1 / 4 + 5 / 20 + 0 / 8) / 4)
    # horizon 2 keeps (5, 5), (2, 4), (1, 0), (10, 13): errors 0, 2, 1, 3
    assert rows[1]["minutes"] == 30 and math.isclose(rows[1]["mae"], 6 / 4)
    assert math.isclose(rows[1]["rmse"], math.sqrt((0 + 4 + 1 + 9) / 4))
    assert math.isclose(rows[1]["mape"], 100 * (0 + 2 / 2 + 1 / 1 + 3 / 10) / 4)


def test_a_horizon_whose_targets_are_all_zero_has_undefined_errors():
    target = torch.tensor([[[3.0, 1.0], [0.0, 0.0]]])  # 1 window, 2 horizons, 2 values
    pred = torch.tensor([[[1.0, 2.0], [5.0, 5.0]]])
    first, second = horizon_errors(masked_error_sums(pred, target), minutes_per_step=10)
    assert (first["minutes"], first["mae"], first["rmse"]) == (10, 1.5, math.sqrt(2.5))
    assert first["mape"] == pytest.approx(100 * (2 / 3 + 1 / 1) / 2)
    assert second["minutes"] == 20 and all(math.isnan(second[k]) for k in ("mae", "rmse", "mape"))


def test_sums_over_batches_equal_the_whole_set_at_once():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (7, 3, 4), generator=gen).float()
    pred = torch.rand(7, 3, 4, generator=gen) * 5
    whole = horizon_errors(masked_error_sums(pred, target))
    parts = add_sums(masked_error_sums(pred[:3], target[:3]), masked_error_sums(pred[3:], target[3:]))
    for a, b in zip(whole, horizon_errors(parts), strict=True):
        assert all(math.isclose(a[k], b[k]) for k in ("mae", "rmse", "mape"))


def test_confusion_matrix_and_accuracies():
    true = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    c = confusion_matrix(pred, true, 4)
    assert c.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert math.isclose(accuracy(c), 4 / 6)
    per = per_class_accuracy(c)
    assert per[:3] == [0.5, 2 / 3, 1.0] and math.isnan(per[3])
