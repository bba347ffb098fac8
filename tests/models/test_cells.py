"""One-step cells against torch.nn's cells, and the course's BPTT exercise checked against autograd."""

import pytest
import torch
from torch import nn

from rnnkit.models import RNN
from rnnkit.models.cells import gru_cell, lstm_cell, rnn_cell

B, D, H = 4, 3, 8


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_matches_torch(nonlinearity, bias):
    torch.manual_seed(0)
    ref = nn.RNNCell(D, H, bias=bias, nonlinearity=nonlinearity).double()
    x, h = torch.randn(B, D, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    ours = rnn_cell(x, h, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh, nonlinearity)
    torch.testing.assert_close(ours, ref(x, h), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_matches_torch(bias):
    torch.manual_seed(1)
    ref = nn.GRUCell(D, H, bias=bias).double()
    x, h = torch.randn(B, D, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    ours = gru_cell(x, h, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    torch.testing.assert_close(ours, ref(x, h), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_matches_torch(bias):
    torch.manual_seed(2)
    ref = nn.LSTMCell(D, H, bias=bias).double()
    x = torch.randn(B, D, dtype=torch.float64)
    state = (torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64))
    ours = lstm_cell(x, state, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    for a, b in zip(ours, ref(x, state), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_unknown_nonlinearity_is_rejected():
    with pytest.raises(ValueError, match="tanh"):
        RNN(D, H, nonlinearity="sigmoid")


def closed_form_dh2_dU(U, W, xs):
    """TD3 exercise 3: h_t = tanh(U x_t + W h_{t-1}), h_{-1} = 0.

    With D_t = diag(1 - h_t^2) and E(x)[i, j, k] = delta_ij x_k (the derivative of U x wrt U):
        dh_0/dU = D_0 E(x_0)
        dh_1/dU = D_1 (E(x_1) + W dh_0/dU)
        dh_2/dU = D_2 E(x_2) + D_2 W D_1 E(x_1) + D_2 W D_1 W D_0 E(x_0)
    i.e. sum over s of (prod_{r=s+1..2} D_r W) D_s E(x_s). Result (n, n, d): [i, j, k] = dh_2[i]/dU[j, k].
    """
    hs, h = [], torch.zeros(W.shape[0], dtype=U.dtype)
    for x in xs:
        h = torch.tanh(U @ x + W @ h)
        hs.append(h)
    Ds = [torch.diag(1 - h**2) for h in hs]
    M2 = Ds[2]
    M1 = Ds[2] @ W @ Ds[1]
    M0 = Ds[2] @ W @ Ds[1] @ W @ Ds[0]
    # sum_s M_s[i, j] x_s[k]
    return sum(torch.einsum("ij,k->ijk", M, x) for M, x in zip((M0, M1, M2), xs, strict=True))


def test_bptt_closed_form_equals_autograd():
    torch.manual_seed(3)
    n, d = 5, 3
    layer = RNN(d, n, bias=False).double()
    U, W = layer.weight_ih_l0.detach(), layer.weight_hh_l0.detach()
    xs = torch.randn(3, d, dtype=torch.float64)

    def h2_of(U_):
        out, _ = torch.func.functional_call(layer, {"weight_ih_l0": U_, "weight_hh_l0": W}, (xs[:, None, :],))
        return out[2, 0]  # h_2, (n,)

    autograd = torch.autograd.functional.jacobian(h2_of, U)  # (n, n, d)
    closed = closed_form_dh2_dU(U, W, xs)
    assert autograd.abs().max() > 1e-3  # a non-trivial Jacobian
    torch.testing.assert_close(closed, autograd, rtol=0, atol=1e-12)
    # Dropping the paths through time (keeping only D_2 E(x_2)) is wrong: the test can tell.
    truncated = torch.einsum("ij,k->ijk", torch.diag(1 - h2_of(U) ** 2), xs[2])
    assert not torch.allclose(truncated, autograd, atol=1e-6)


def test_unrolled_expression_of_y2():
    """TD3 exercise 1: y_2 = softmax(V h_2) with h_2 written out in x_0, x_1, x_2 (h_{-1} = 0)."""
    torch.manual_seed(4)
    n, d, classes = 5, 3, 4
    layer = RNN(d, n, bias=False).double()
    V = torch.randn(classes, n, dtype=torch.float64)
    U, W = layer.weight_ih_l0.detach(), layer.weight_hh_l0.detach()
    x0, x1, x2 = xs = torch.randn(3, d, dtype=torch.float64)
    by_hand = torch.softmax(V @ torch.tanh(U @ x2 + W @ torch.tanh(U @ x1 + W @ torch.tanh(U @ x0))), dim=0)
    out, _ = layer(xs[:, None, :])  # (3, 1, n): h_0, h_1, h_2
    torch.testing.assert_close(torch.softmax(V @ out[2, 0].detach(), dim=0), by_hand, rtol=0, atol=1e-12)
    # y_2 "in terms of x_2 and h_1" only: the same value from the layer's one_step
    h1 = out[1:2, 0].detach()  # (1, n)
    h2 = layer.one_step(x2[None], h1[None])[0, 0].detach()
    torch.testing.assert_close(h2, out[2, 0].detach(), rtol=0, atol=1e-12)
