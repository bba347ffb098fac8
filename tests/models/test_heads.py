"""Task heads: output shapes, lengths respected, bidirectional reading, built on the hand-written layers."""

from __future__ import annotations

import pytest
import torch

from rnnkit.config import ModelConfig
from rnnkit.models.heads import Forecaster, Seq2SeqForecaster, SequenceClassifier
from rnnkit.models.layers import LAYERS


def _cfg(**kw):
    base = {"cell": "gru", "hidden_size": 8, "embedding_dim": 4}
    return ModelConfig(**{**base, **kw})


def test_classifier_on_flows_and_on_tokens():
    torch.manual_seed(0)
    flows = SequenceClassifier(_cfg(), num_classes=5, input_size=2)
    assert isinstance(flows.rnn, LAYERS["gru"]) and flows(torch.randn(7, 3, 2)).shape == (3, 5)
    tokens = SequenceClassifier(_cfg(cell="lstm", num_layers=2), num_classes=3, vocab_size=20)
    assert tokens(torch.randint(2, 20, (6, 4))).shape == (4, 3)


def test_classifier_ignores_padding_both_ways():
    torch.manual_seed(0)
    model = SequenceClassifier(_cfg(bidirectional=True), num_classes=3, vocab_size=12).eval()
    short = torch.randint(2, 12, (4, 1))
    padded = torch.cat([short, torch.zeros(3, 1, dtype=torch.long)])  # PAD = 0 after the real steps
    alone = model(short)
    assert torch.allclose(model(padded, torch.tensor([4])), alone, atol=1e-6)
    assert not torch.allclose(model(padded), alone, atol=1e-4)  # without lengths the padding is read


def test_forecaster_predicts_every_horizon_after_every_step():
    torch.manual_seed(0)
    model = Forecaster(_cfg(cell="rnn"), input_size=12, output_size=10, horizon=3)
    x = torch.randn(4, 2, 12)
    y = model(x)
    assert y.shape == (4, 2, 3, 10)
    # causal: the forecasts after step 1 do not depend on step 3
    x2 = x.clone()
    x2[3] += 1.0
    assert torch.allclose(model(x2)[:3], y[:3]) and not torch.allclose(model(x2)[3], y[3])


def _seq2seq(monkeypatch=None, **kw):
    """A 2-layer LSTM seq2seq over N = 5 values and 2 time features, and a spy on what its decoder reads."""
    torch.manual_seed(0)
    model = Seq2SeqForecaster(_cfg(cell="lstm", num_layers=2, **kw), input_size=7, output_size=5, horizon=4,
                              extra=2).eval()
    read: list = []
    if monkeypatch is not None:
        step = model.decoder.one_step
        monkeypatch.setattr(model.decoder, "one_step", lambda x_t, state: read.append(x_t) or step(x_t, state))
    return model, read


def test_seq2seq_free_running_never_reads_the_targets():
    model, _ = _seq2seq()
    x, future = torch.randn(3, 2, 7), torch.randn(4, 2, 2)
    free = model(x, future=future)
    assert free.shape == (1, 2, 4, 5)
    targets = torch.randn(4, 2, 5) * 10  # far from anything the model forecasts
    assert torch.equal(model(x, future=future, targets=targets, teacher_forcing=0.0), free)
    forced = model(x, future=future, targets=targets, teacher_forcing=1.0)
    assert torch.equal(forced[0, :, 0], free[0, :, 0])  # step 0 reads the last observed values either way
    assert not torch.allclose(forced[0, :, 1:], free[0, :, 1:], atol=1e-3)
    assert not torch.allclose(model(x, future=-future), free, atol=1e-4)  # the slots' time features are read


def test_seq2seq_decoder_reads_the_last_values_then_the_truth_or_its_own_forecast(monkeypatch):
    model, read = _seq2seq(monkeypatch)
    x, future, targets = torch.randn(3, 2, 7), torch.randn(4, 2, 2), torch.randn(4, 2, 5)
    model(x, future=future, targets=targets, teacher_forcing=1.0)
    assert torch.equal(read[0], torch.cat([x[-1, :, :5], future[0]], dim=-1))
    for k in range(1, 4):
        assert torch.equal(read[k], torch.cat([targets[k - 1], future[k]], dim=-1))
    read.clear()
    out = model(x, future=future)
    for k in range(1, 4):
        assert torch.equal(read[k], torch.cat([out[0, :, k - 1], future[k]], dim=-1))


def test_seq2seq_scheduled_sampling_flips_one_coin_per_sequence_and_step(monkeypatch):
    model, read = _seq2seq(monkeypatch)
    x, future, targets = torch.randn(3, 64, 7), torch.randn(4, 64, 2), torch.randn(4, 64, 5) + 5
    torch.manual_seed(1)
    out = model(x, future=future, targets=targets, teacher_forcing=0.5)
    for k in range(1, 4):
        truth = (read[k][:, :5] == targets[k - 1]).all(dim=1)  # (B,)
        own = (read[k][:, :5] == out[0, :, k - 1]).all(dim=1)
        assert (truth ^ own).all() and 10 < truth.sum() < 54  # whole rows, each one or the other


def test_seq2seq_with_lengths_starts_from_each_sequence_s_last_step():
    model, _ = _seq2seq()
    x, future = torch.randn(3, 1, 7), torch.randn(4, 1, 2)
    padded = torch.cat([x, torch.randn(2, 1, 7)])
    assert torch.allclose(model(padded, torch.tensor([3]), future), model(x, future=future), atol=1e-6)


def test_seq2seq_asks_for_what_it_needs():
    model, _ = _seq2seq()
    with pytest.raises(ValueError, match="pass future"):
        model(torch.randn(3, 2, 7))
    with pytest.raises(ValueError, match="pass targets"):
        model(torch.randn(3, 2, 7), future=torch.randn(4, 2, 2), teacher_forcing=0.5)
    plain = Seq2SeqForecaster(_cfg(cell="gru"), input_size=5, output_size=5, horizon=2)  # no time features
    assert plain(torch.randn(3, 2, 5)).shape == (1, 2, 2, 5)


def test_td3_my_rnn_relu_many_to_one_shape_and_equations():
    """TD3 exercise 2: h_t = ReLU(U x_t + W h_{t-1} + b_h), y = softmax(V h_T + b_y); B=5, T=13, d=7, 3 classes."""
    torch.manual_seed(0)
    B, T, d, nb_class = 5, 13, 7, 3
    model = SequenceClassifier(_cfg(cell="rnn", nonlinearity="relu"), num_classes=nb_class, input_size=d).eval()
    x = torch.randn(T, B, d)
    out = model(x)
    assert out.shape == (B, nb_class)  # the question's answer: one score vector per sequence
    rnn = model.rnn
    h = torch.zeros(B, 8)
    for x_t in x:
        h = torch.relu(x_t @ rnn.weight_ih_l0.T + h @ rnn.weight_hh_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0)
    by_hand = model.decoder(h)
    torch.testing.assert_close(out, by_hand, rtol=1e-5, atol=1e-6)
    assert torch.allclose(torch.softmax(out, -1).sum(-1), torch.ones(B))
