"""The compiled kernels as autograd Functions: one layer in one direction, input projection included.

`lstm_layer` / `gru_layer` / `rnn_layer` compute what `layers.py` computes with `_project` followed by
`fused.lstm_sequence` (and so on): x (T, B, D) -> x W_ih^T + b -> the recurrence, forward and backward in
one C++ call each (`rnn_cpu.cpp`). `reverse` walks t = T-1 .. 0. CPU, float32 and float64 only: the caller
checks `supports(x)` and that `build.load()` succeeded. Double backward is not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.models.fused import _prepare_mask

DTYPES = (torch.float32, torch.float64)


def supports(x: Tensor) -> bool:
    """Whether the kernels handle a tensor like x (they are CPU float32/float64 code)."""
    return x.device.type == "cpu" and x.dtype in DTYPES


def _ops():
    return torch.ops.rnnkit_cpu


def _mask2d(mask: Tensor | None, x: Tensor) -> Tensor | None:
    """(T, B) bool contiguous (validated like fused.py's), or None when absent or all true (windows of equal
    lengths: the kernels then skip the masked outputs' copy)."""
    m = _prepare_mask(mask, x)
    return None if m is None or bool(m.all()) else m[..., 0].contiguous()


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _keep(*inputs: Tensor | None) -> bool:
    """Whether backward may run: then forward keeps what it needs (else it keeps one step's worth)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)


class _LSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, bias, w_hh, h0, c0, mask, reverse, keep):
        x, w_ih, w_hh, h0, c0 = _c(x), _c(w_ih), _c(w_hh), _c(h0), _c(c0)
        out, h_T, c_T, *saved = _ops().lstm_forward(x, w_ih, _c(bias), w_hh, h0, c0, mask, reverse, keep)
        ctx.reverse, ctx.has_bias = reverse, bias is not None
        if keep:
            hs, cs, acts = saved
            ctx.save_for_backward(x, w_ih, w_hh, acts, hs, cs, h0, c0, mask)
        return out, h_T, c_T

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_hT, grad_cT):
        x, w_ih, w_hh, acts, hs, cs, h0, c0, mask = ctx.saved_tensors
        dx, dw_ih, db, dw_hh, dh0, dc0 = _ops().lstm_backward(
            grad_out, grad_hT, grad_cT, x, w_ih, w_hh, acts, hs, cs, h0, c0, mask, ctx.reverse,
            ctx.needs_input_grad[0], ctx.has_bias)
        return dx, dw_ih, db, dw_hh, dh0, dc0, None, None, None


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, h0, mask, reverse, keep):
        x, w_ih, w_hh, h0 = _c(x), _c(w_ih), _c(w_hh), _c(h0)
        out, h_T, *saved = _ops().gru_forward(x, w_ih, _c(b_ih), w_hh, _c(b_hh), h0, mask, reverse, keep)
        ctx.reverse, ctx.biases = reverse, (b_ih is not None, b_hh is not None)
        if keep:
            hs, acts = saved
            ctx.save_for_backward(x, w_ih, w_hh, acts, hs, h0, mask)
        return out, h_T

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_hT):
        x, w_ih, w_hh, acts, hs, h0, mask = ctx.saved_tensors
        dx, dw_ih, db_ih, dw_hh, db_hh, dh0 = _ops().gru_backward(
            grad_out, grad_hT, x, w_ih, w_hh, acts, hs, h0, mask, ctx.reverse, ctx.needs_input_grad[0], *ctx.biases)
        return dx, dw_ih, db_ih, dw_hh, db_hh, dh0, None, None, None


class _RNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, bias, w_hh, h0, relu, mask, reverse):
        x, w_ih, w_hh, h0 = _c(x), _c(w_ih), _c(w_hh), _c(h0)
        out, h_T, hs = _ops().rnn_forward(x, w_ih, _c(bias), w_hh, h0, relu, mask, reverse)
        ctx.reverse, ctx.relu, ctx.has_bias = reverse, relu, bias is not None
        ctx.save_for_backward(x, w_ih, w_hh, hs, h0, mask)
        return out, h_T

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_hT):
        x, w_ih, w_hh, hs, h0, mask = ctx.saved_tensors
        dx, dw_ih, db, dw_hh, dh0 = _ops().rnn_backward(
            grad_out, grad_hT, x, w_ih, w_hh, hs, h0, ctx.relu, mask, ctx.reverse, ctx.needs_input_grad[0],
            ctx.has_bias)
        return dx, dw_ih, db, dw_hh, dh0, None, None, None


def _folded(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    """LSTM and Elman add both biases to the input projection (autograd splits the gradient)."""
    return None if b_ih is None else b_ih + b_hh


def lstm_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None, h0: Tensor,
               c0: Tensor, mask: Tensor | None = None, reverse: bool = False):
    """x (T, B, D), torch.nn's weights (biases both or neither), h0, c0 (B, H), mask (T, B) bool or None
    -> (outputs (T, B, H), h_T, c_T); with reverse, step T-1 comes first and h_T, c_T are after step 0."""
    keep = _keep(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    return _LSTM.apply(x, w_ih, _folded(b_ih, b_hh), w_hh, h0, c0, _mask2d(mask, x), reverse, keep)


def gru_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None, h0: Tensor,
              mask: Tensor | None = None, reverse: bool = False):
    """x (T, B, D), torch.nn's weights, h0 (B, H), mask (T, B) or None -> (outputs (T, B, H), h_T)."""
    keep = _keep(x, w_ih, w_hh, b_ih, b_hh, h0)
    return _GRU.apply(x, w_ih, b_ih, w_hh, b_hh, h0, _mask2d(mask, x), reverse, keep)


def rnn_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None, h0: Tensor,
              nonlinearity: str = "tanh", mask: Tensor | None = None, reverse: bool = False):
    """x (T, B, D), torch.nn's weights, h0 (B, H), nonlinearity "tanh" or "relu", mask (T, B) or None
    -> (outputs (T, B, H), h_T)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
    return _RNN.apply(x, w_ih, _folded(b_ih, b_hh), w_hh, h0, nonlinearity == "relu", _mask2d(mask, x), reverse)


_STEP_KINDS = {("lstm", None): 0, ("gru", None): 1, ("rnn", "tanh"): 2, ("rnn", "relu"): 3}


def step_kind(cell: str, nonlinearity: str | None) -> int:
    """The compiled step's code for a cell ("lstm", "gru", "rnn"; nonlinearity only counts for "rnn")."""
    return _STEP_KINDS[(cell, nonlinearity if cell == "rnn" else None)]


def decode_step(kind: int, xw0: Tensor, tokens: Tensor | None, state: tuple[Tensor, ...],
                columns: tuple[list, list, list, list], decoder: tuple[Tensor, Tensor | None] | None = None):
    """One decoding step of a whole stack, no autograd, in the calling thread. xw0 (B, G*H) = layer 0's projected
    input (biases in, but the GRU's b_hh), or with tokens (B,) long a (V, G*H) table of it whose rows tokens picks;
    state (h,) or (h, c) each (L, B, H); columns = the lists (w_ih, w_hh, b_ih, b_hh) over layers; decoder =
    (weight (V, H), bias (V,) or None) of a linear layer on the top layer's new h, or None
    -> (the new state in the same layout, the decoder's logits (B, V) or None)."""
    c = state[1] if kind == 0 else None
    dec_w, dec_b = decoder if decoder is not None else (None, None)
    out = _ops().decode_step(kind, xw0, tokens, state[0], c, *columns, dec_w, dec_b)
    if decoder is None:
        return tuple(out), None
    return tuple(out[:-1]), out[-1]
