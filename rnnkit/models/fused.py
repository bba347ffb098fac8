"""Fast path: one recurrent layer in one direction as an autograd.Function with a hand-written backward.

The reference layers (`layers.py`) let autograd record every op of every time step. Here, in the manner
of cuDNN and haste, each cell kind is one `torch.autograd.Function`:

- forward: per step one `addmm` (recurrent product, added to the precomputed input projection) and a few
  pointwise ops written with `out=` into preallocated (T, B, .) buffers; no graph is recorded;
- backward: the activation-dependent factors of the local derivatives are computed for all steps at
  once (a handful of large vectorised ops), so that each step of the loop t = T-1 .. 0 is one `addmm`
  (`dgates_t @ w_hh`, with the next output gradient as its added input) and 1-4 pointwise ops;
  the recurrent weight gradient is ONE matmul over all steps after the loop.

The input projection `x @ W_ih^T + b` is the caller's (one matmul over all steps), so autograd handles
W_ih, b_ih, b_hh (LSTM, Elman) and the input: the Functions return d(x_proj).

Conventions are torch.nn's: gate order LSTM (i, f, g, o), GRU (r, z, n) with
`n = tanh(x_n + r * (W_hn h + b_hn))`, `h' = (1 - z) * n + z * h`; tensors are time-major (T, B, .).

Masks (variable lengths): where `mask[t, b]` is False the state is carried over (`h_t = h_{t-1}`,
`c_t = c_{t-1}`), the output is zero and no gradient flows through the step's gates. Any pattern is
allowed, so a reverse direction (`reverse=True`) is `flip(0)` of x_proj and mask (padding first, carrying
the initial state), with the outputs flipped back.

Double backward is not supported (`once_differentiable`): gradient-of-gradient needs the reference layers.
The per-step pointwise functions can be wrapped with `torch.compile` for CUDA (`compile_pointwise`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# --- Per-step pointwise math --------------------------------------------------------------------
# Small named functions so that `compile_pointwise` can swap in compiled versions. They write into the
# buffers they are given (in place), which inductor compiles to kernels that store into those buffers.


def _lstm_pointwise_forward(gates: Tensor, c_prev: Tensor, h_prev: Tensor, m: Tensor | None,
                            c_out: Tensor, tc_out: Tensor, h_out: Tensor) -> None:
    """gates (B, 4H) pre-activations -> activations in place; writes c_t, tanh(c_t), h_t (B, H) each.

    m: (B, 1) bool or None; where False, c_out/h_out receive c_prev/h_prev (tc_out is then unused).
    """
    H = c_prev.shape[1]
    # i, f are adjacent: one sigmoid over the contiguous 2H slice, then g (tanh) and o (sigmoid).
    gates[:, : 2 * H].sigmoid_()
    gates[:, 2 * H : 3 * H].tanh_()
    gates[:, 3 * H :].sigmoid_()
    i, f, g, o = gates.chunk(4, dim=1)
    if m is None:
        torch.mul(f, c_prev, out=c_out)
        c_out.addcmul_(i, g)
        torch.tanh(c_out, out=tc_out)
        torch.mul(o, tc_out, out=h_out)
        return
    c_new = torch.addcmul(f * c_prev, i, g)
    torch.tanh(c_new, out=tc_out)
    torch.where(m, c_new, c_prev, out=c_out)
    torch.where(m, o * tc_out, h_prev, out=h_out)


def _lstm_pointwise_backward(dh: Tensor, dc: Tensor, k: Tensor, m3: Tensor, p: Tensor, f: Tensor,
                             dgates_out: Tensor) -> Tensor:
    """One step back: dh, dc (B, H) reaching step t -> dgates_t (B, 4H, written) and dc_{t-1} (B, H).

    Factors (see `_lstm_backward_factors`): k (B, H) = dc_t/dh_t; m3 (B, 3, H) = d(i, f, g preact)/dc_t;
    p (B, H) = d(o preact)/dh_t; f (B, H) = dc_{t-1}/dc_t (1 on masked steps).
    """
    B, H = dh.shape
    dc = torch.addcmul(dc, dh, k)  # the cell gradient from c_{t+1} and from h_t = o * tanh(c_t)
    torch.mul(dc.unsqueeze(1), m3, out=dgates_out[:, : 3 * H].view(B, 3, H))
    torch.mul(dh, p, out=dgates_out[:, 3 * H :])
    return dc.mul_(f)


def _gru_pointwise_forward(xp: Tensor, gh: Tensor, h_prev: Tensor, m: Tensor | None,
                           acts_out: Tensor, h_out: Tensor) -> None:
    """xp = x proj (B, 3H), gh = W_hh h + b_hh (B, 3H) -> writes (r, z, n) into acts_out, h_t into h_out."""
    H = h_prev.shape[1]
    rz = acts_out[:, : 2 * H]
    torch.add(xp[:, : 2 * H], gh[:, : 2 * H], out=rz).sigmoid_()
    r, z, n = acts_out.chunk(3, dim=1)
    torch.addcmul(xp[:, 2 * H :], r, gh[:, 2 * H :], out=n).tanh_()
    if m is None:
        # h' = (1 - z) * n + z * h = n + z * (h - n)
        torch.sub(h_prev, n, out=h_out).mul_(z).add_(n)
        return
    torch.where(m, torch.addcmul(n, z, h_prev - n), h_prev, out=h_out)


def _gru_pointwise_backward(dh: Tensor, e3: Tensor, dgh_out: Tensor) -> None:
    """dgh_t (B, 3H) = d loss / d(W_hh h_{t-1} + b_hh), from dh (B, H) and e3 (B, 3, H)."""
    B, H = dh.shape
    torch.mul(dh.unsqueeze(1), e3, out=dgh_out.view(B, 3, H))


def _rnn_pointwise_forward(pre: Tensor, h_prev: Tensor, m: Tensor | None, relu: bool, h_out: Tensor) -> None:
    """pre (B, H) pre-activation -> h_t into h_out (pre and h_out are the same buffer when unmasked)."""
    act = torch.relu_ if relu else torch.tanh_
    act(pre)
    if m is None:
        if h_out.data_ptr() != pre.data_ptr():
            h_out.copy_(pre)
        return
    torch.where(m, pre, h_prev, out=h_out)


def _rnn_pointwise_backward(dh: Tensor, d: Tensor, dpre_out: Tensor) -> None:
    """dpre_t (B, H) = dh_t * f'(pre_t)."""
    torch.mul(dh, d, out=dpre_out)


_EAGER = {
    "lstm_forward": _lstm_pointwise_forward,
    "lstm_backward": _lstm_pointwise_backward,
    "gru_forward": _gru_pointwise_forward,
    "gru_backward": _gru_pointwise_backward,
    "rnn_forward": _rnn_pointwise_forward,
    "rnn_backward": _rnn_pointwise_backward,
}
_pointwise = dict(_EAGER)  # what the Functions call: eager, or compiled by compile_pointwise


def compile_pointwise(enabled: bool) -> bool:
    """Use `torch.compile(dynamic=False)` versions of the per-step pointwise functions (CUDA only).

    Compiling pays on CUDA, where each eager op is a kernel launch; on CPU it gave no gain and costs
    compile time, so the request is ignored without CUDA. Returns whether compiled versions are in use.
    Shapes are specialised (one compile per (B, H, dtype)); the eager functions stay what tests check.
    """
    on = bool(enabled) and torch.cuda.is_available()
    for name, fn in _EAGER.items():
        _pointwise[name] = torch.compile(fn, dynamic=False) if on else fn
    return on


# --- Backward factors over all steps ------------------------------------------------------------
# Everything in the local derivatives that depends only on forward activations is computed here with
# a few large vectorised ops, leaving the sequential loop with the fewest small ops.


def _lstm_backward_factors(acts: Tensor, c0: Tensor, cs: Tensor, tc: Tensor, mask: Tensor | None):
    """acts (T, B, 4H) = (i, f, g, o); c0 (B, H); cs (T, B, H) = c_t; tc (T, B, H) = tanh(c_t);
    mask (T, B, 1) bool or None -> (k, m3, p, f), see `_lstm_pointwise_backward`.

    Written to allocate as little fresh memory as possible: on CPU, first touches of new pages (page
    faults) cost more than the arithmetic at the larger shapes, so each factor is built in its buffer.
    """
    T, B, H4 = acts.shape
    H = H4 // 4
    i, f, g, o = acts.chunk(4, dim=2)
    m3 = acts.new_empty(T, B, 3, H)
    mi, mf, mg = m3.unbind(2)
    torch.addcmul(i, i, i, value=-1, out=mi).mul_(g)  # d i_pre / dc = g * i (1 - i)
    torch.addcmul(f, f, f, value=-1, out=mf)  # d f_pre / dc = c_{t-1} * f (1 - f)
    mf[0].mul_(c0)
    mf[1:].mul_(cs[:-1])
    torch.addcmul(i, i, torch.mul(g, g, out=mg), value=-1, out=mg)  # d g_pre / dc = i (1 - g^2)
    p = torch.addcmul(o, o, o, value=-1).mul_(tc)  # d o_pre / dh = tanh(c) * o (1 - o)
    k = torch.mul(tc, tc)
    torch.addcmul(o, o, k, value=-1, out=k)  # dc / dh = o (1 - tanh(c)^2)
    if mask is None:
        return k, m3, p, f
    off = ~mask
    k.masked_fill_(off, 0)
    m3.masked_fill_(off.unsqueeze(-1), 0)
    p.masked_fill_(off, 0)
    return k, m3, p, f.masked_fill(off, 1)  # masked steps carry dc unchanged


def _gru_backward_factors(acts: Tensor, ghn: Tensor, h_prev: Tensor, mask: Tensor | None):
    """acts (T, B, 3H) = (r, z, n); ghn (T, B, H) = W_hn h + b_hn; h_prev (T, B, H)
    -> d3 (T, B, 3, H) = d(x_proj)/dh_t, e3 (T, B, 3, H) = d(gh)/dh_t, zc (T, B, H) = direct dh_{t-1}/dh_t."""
    T, B, H3 = acts.shape
    H = H3 // 3
    r, z, n = acts.chunk(3, dim=2)
    d3 = acts.new_empty(T, B, 3, H)
    e3 = acts.new_empty(T, B, 3, H)
    dn, dz, dr = d3[:, :, 2], d3[:, :, 1], d3[:, :, 0]
    torch.mul(1 - z, torch.addcmul(torch.ones_like(n), n, n, value=-1), out=dn)  # (1 - z)(1 - n^2)
    torch.mul(h_prev - n, torch.addcmul(z, z, z, value=-1), out=dz)  # (h - n) z (1 - z)
    torch.mul(dn * ghn, torch.addcmul(r, r, r, value=-1), out=dr)  # dn * gh_n * r (1 - r)
    e3[:, :, :2] = d3[:, :, :2]
    torch.mul(dn, r, out=e3[:, :, 2])  # the reset gate scales the recurrent part of n
    if mask is None:
        return d3, e3, z
    off = ~mask
    d3.masked_fill_(off.unsqueeze(-1), 0)
    e3.masked_fill_(off.unsqueeze(-1), 0)
    return d3, e3, z.masked_fill(off, 1)


def _carry_grad(dout: Tensor, dh: Tensor, off: Tensor | None) -> Tensor:
    """Gradient reaching h_{t-1} besides the recurrent product: its output's plus, on masked steps t,
    the whole dh_t (h_t = h_{t-1} there). dout (B, H), dh (B, H), off (B, 1) float or None."""
    return dout if off is None else torch.addcmul(dout, dh, off)


def _prepare_mask(mask: Tensor | None, x_proj: Tensor) -> Tensor | None:
    """(T, B) bool or None -> (T, B, 1) bool on x_proj's device, or None when every step is real."""
    if mask is None:
        return None
    T, B = x_proj.shape[:2]
    if mask.shape != (T, B):
        raise ValueError(f"mask must be (T, B) = {(T, B)}, got {tuple(mask.shape)}")
    mask = mask.to(device=x_proj.device, dtype=torch.bool)
    return mask.unsqueeze(-1)


def _weight_grad(dgates: Tensor, h0: Tensor, hs: Tensor) -> Tensor:
    """d W_hh (G*H, H) = sum_t dgates_t^T h_{t-1}: one large matmul over steps 1..T-1 (plus step 0's
    small product with h0), which avoids concatenating h0 with the states.
    dgates (T, B, G*H), h0 (B, H), hs (T, B, H) = h_0 .. h_{T-1}."""
    T, B, GH = dgates.shape
    first = dgates[0].t().mm(h0)  # (G*H, H)
    if T == 1:
        return first
    return torch.addmm(first, dgates[1:].reshape((T - 1) * B, GH).t(), hs[:-1].reshape((T - 1) * B, -1))


def _hprev(h0: Tensor, states: Tensor) -> Tensor:
    """(B, H), (T, B, H) -> (T, B, H) states entering each step: h0, h_0 .. h_{T-2}."""
    return torch.cat([h0.unsqueeze(0), states[:-1]])


def _output_grads(grad_out: Tensor, grad_final: Tensor, mask: Tensor | None):
    """Per-step output gradients with masked steps zeroed (their outputs are constant zero), the final
    state's gradient added to the last step; returns (list of T (B, H), off (T, B, 1) float or None)."""
    dout = grad_out if mask is None else grad_out.masked_fill(~mask, 0)
    douts = list(dout.unbind(0))
    douts[-1] = douts[-1] + grad_final
    off = None if mask is None else (~mask).to(grad_out.dtype)
    return douts, off


# --- LSTM ---------------------------------------------------------------------------------------


class _LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_proj, h0, c0, w_hh, mask):
        T, B, H4 = x_proj.shape
        H = H4 // 4
        # (H, 4H), made contiguous once: per-step addmm on it measured ~25% faster than on the view.
        w_hh_t = w_hh.t().contiguous()
        acts = x_proj.new_empty(T, B, H4)  # pre-activations, then activations, in place
        hs, cs, tcs = (x_proj.new_empty(T, B, H) for _ in range(3))
        xs, ms = x_proj.unbind(0), (mask.unbind(0) if mask is not None else [None] * T)
        pw = _pointwise["lstm_forward"]
        h, c = h0, c0
        for t in range(T):
            gates = torch.addmm(xs[t], h, w_hh_t, out=acts[t])  # (B, 4H)
            pw(gates, c, h, ms[t], cs[t], tcs[t], hs[t])
            h, c = hs[t], cs[t]
        out = hs if mask is None else torch.where(mask, hs, 0.0)
        ctx.save_for_backward(acts, hs, cs, tcs, h0, c0, w_hh, mask)
        return out, h.clone(), c.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_hT, grad_cT):
        acts, hs, cs, tcs, h0, c0, w_hh, mask = ctx.saved_tensors
        T, B, H4 = acts.shape
        k, m3, p, f = _lstm_backward_factors(acts, c0, cs, tcs, mask)
        douts, off = _output_grads(grad_out, grad_hT, mask)
        offs = off.unbind(0) if off is not None else [None] * T
        ks, m3s, ps, fs = k.unbind(0), m3.unbind(0), p.unbind(0), f.unbind(0)
        dgates = acts.new_empty(T, B, H4)  # = d x_proj
        pw = _pointwise["lstm_backward"]
        dh, dc = douts[T - 1], grad_cT
        for t in range(T - 1, -1, -1):
            dc = pw(dh, dc, ks[t], m3s[t], ps[t], fs[t], dgates[t])
            carry = _carry_grad(douts[t - 1] if t else torch.zeros_like(dh), dh, offs[t])
            dh = torch.addmm(carry, dgates[t], w_hh)  # (B, H): one product per step
        dw_hh = _weight_grad(dgates, h0, hs)  # (4H, H), all steps at once
        return dgates, dh, dc, dw_hh, None


# --- GRU ----------------------------------------------------------------------------------------


class _GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_proj, h0, w_hh, b_hh, mask):
        T, B, H3 = x_proj.shape
        H = H3 // 3
        w_hh_t = w_hh.t().contiguous()  # (H, 3H), see _LSTMFunction
        acts = x_proj.new_empty(T, B, H3)  # (r, z, n)
        gh = x_proj.new_empty(T, B, H3)  # W_hh h + b_hh: its n part is needed in backward
        hs = x_proj.new_empty(T, B, H)
        xs, ms = x_proj.unbind(0), (mask.unbind(0) if mask is not None else [None] * T)
        pw = _pointwise["gru_forward"]
        h = h0
        for t in range(T):
            if b_hh is None:
                torch.mm(h, w_hh_t, out=gh[t])
            else:
                torch.addmm(b_hh, h, w_hh_t, out=gh[t])
            pw(xs[t], gh[t], h, ms[t], acts[t], hs[t])
            h = hs[t]
        out = hs if mask is None else torch.where(mask, hs, 0.0)
        ctx.has_bias = b_hh is not None
        ctx.save_for_backward(acts, gh, hs, h0, w_hh, mask)
        return out, h.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_hT):
        acts, gh, hs, h0, w_hh, mask = ctx.saved_tensors
        T, B, H3 = acts.shape
        H = H3 // 3
        h_prev = _hprev(h0, hs)
        d3, e3, zc = _gru_backward_factors(acts, gh[..., 2 * H :], h_prev, mask)
        douts, _ = _output_grads(grad_out, grad_hT, mask)  # masked carries are in zc
        e3s, zcs = e3.unbind(0), zc.unbind(0)
        dgh = acts.new_empty(T, B, H3)
        dhs = acts.new_empty(T, B, H)  # gradient reaching each h_t: d x_proj follows from it in bulk
        pw = _pointwise["gru_backward"]
        dh = dhs[T - 1].copy_(douts[T - 1])
        for t in range(T - 1, -1, -1):
            pw(dh, e3s[t], dgh[t])
            # h_t = n + z * (h_{t-1} - n): z carries dh straight to h_{t-1} (1 on masked steps).
            carry = torch.addcmul(douts[t - 1] if t else torch.zeros_like(dh), dh, zcs[t])
            dh = torch.addmm(carry, dgh[t], w_hh, out=dhs[t - 1]) if t else torch.addmm(carry, dgh[t], w_hh)
        d_xproj = (dhs.unsqueeze(2) * d3).view(T, B, H3)
        dw_hh = _weight_grad(dgh, h0, hs)  # (3H, H), all steps at once
        db_hh = dgh.sum(dim=(0, 1)) if ctx.has_bias else None
        return d_xproj, dh, dw_hh, db_hh, None


# --- Elman --------------------------------------------------------------------------------------


class _RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_proj, h0, w_hh, relu, mask):
        T, B, H = x_proj.shape
        w_hh_t = w_hh.t().contiguous()  # (H, H), see _LSTMFunction
        hs = x_proj.new_empty(T, B, H)
        pre = hs if mask is None else x_proj.new_empty(T, B, H)  # unmasked: activate in place
        xs, ms = x_proj.unbind(0), (mask.unbind(0) if mask is not None else [None] * T)
        pw = _pointwise["rnn_forward"]
        h = h0
        for t in range(T):
            torch.addmm(xs[t], h, w_hh_t, out=pre[t])
            pw(pre[t], h, ms[t], relu, hs[t])
            h = hs[t]
        out = hs if mask is None else torch.where(mask, hs, 0.0)
        ctx.relu = relu
        ctx.save_for_backward(hs, h0, w_hh, mask)
        return out, h.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_hT):
        hs, h0, w_hh, mask = ctx.saved_tensors
        T, B, H = hs.shape
        # f'(pre) from the output alone: relu' = [h > 0] (torch's convention at 0), tanh' = 1 - h^2.
        d = (hs > 0).to(hs.dtype) if ctx.relu else torch.addcmul(torch.ones_like(hs), hs, hs, value=-1)
        if mask is not None:
            d.masked_fill_(~mask, 0)
        douts, off = _output_grads(grad_out, grad_hT, mask)
        offs = off.unbind(0) if off is not None else [None] * T
        ds = d.unbind(0)
        dpre = hs.new_empty(T, B, H)  # = d x_proj
        pw = _pointwise["rnn_backward"]
        dh = douts[T - 1]
        for t in range(T - 1, -1, -1):
            pw(dh, ds[t], dpre[t])
            carry = _carry_grad(douts[t - 1] if t else torch.zeros_like(dh), dh, offs[t])
            dh = torch.addmm(carry, dpre[t], w_hh)
        dw_hh = _weight_grad(dpre, h0, hs)  # (H, H), all steps at once
        return dpre, dh, dw_hh, None, None


# --- Public functions ---------------------------------------------------------------------------


def _check(x_proj: Tensor, h0: Tensor, w_hh: Tensor, gates: int) -> None:
    if x_proj.dim() != 3 or h0.dim() != 2:
        raise ValueError(f"expected x_proj (T, B, G*H) and h0 (B, H), got {tuple(x_proj.shape)}, {tuple(h0.shape)}")
    T, B, GH = x_proj.shape
    H = h0.shape[1]
    if T == 0 or GH != gates * H or h0.shape[0] != B or w_hh.shape != (gates * H, H):
        raise ValueError(f"inconsistent shapes: x_proj {tuple(x_proj.shape)}, h0 {tuple(h0.shape)}, "
                         f"w_hh {tuple(w_hh.shape)} for {gates} gate(s)")


def _flipped(x_proj: Tensor, mask: Tensor | None, reverse: bool):
    """The inputs of a reverse pass as a forward one: x_proj and mask flipped in time (padding first)."""
    if not reverse:
        return x_proj, mask
    return x_proj.flip(0), (mask.flip(0) if mask is not None else None)


def lstm_sequence(x_proj: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, mask: Tensor | None = None,
                  reverse: bool = False):
    """LSTM over time with a hand-written backward.

    x_proj (T, B, 4H) = x @ W_ih^T + b_ih + b_hh (gate order i, f, g, o); h0, c0 (B, H); w_hh (4H, H);
    mask (T, B) bool or None (False = padded step: state carried, output zero); reverse: walk t = T-1 .. 0.
    Returns (outputs (T, B, H), h_T (B, H), c_T (B, H)). Differentiable once w.r.t. all tensors.
    """
    _check(x_proj, h0, w_hh, 4)
    x_proj, mask = _flipped(x_proj, mask, reverse)
    out, h, c = _LSTMFunction.apply(x_proj, h0, c0, w_hh, _prepare_mask(mask, x_proj))
    return (out.flip(0) if reverse else out), h, c


def gru_sequence(x_proj: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None = None,
                 mask: Tensor | None = None, reverse: bool = False):
    """GRU over time with a hand-written backward.

    x_proj (T, B, 3H) = x @ W_ih^T + b_ih (gate order r, z, n); h0 (B, H); w_hh (3H, H); b_hh (3H,) or
    None (kept out of x_proj: its n part sits inside r * (W_hn h + b_hn)); mask (T, B) bool or None.
    Returns (outputs (T, B, H), h_T (B, H)).
    """
    _check(x_proj, h0, w_hh, 3)
    x_proj, mask = _flipped(x_proj, mask, reverse)
    out, h = _GRUFunction.apply(x_proj, h0, w_hh, b_hh, _prepare_mask(mask, x_proj))
    return (out.flip(0) if reverse else out), h


def rnn_sequence(x_proj: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str = "tanh",
                 mask: Tensor | None = None, reverse: bool = False):
    """Elman RNN over time with a hand-written backward.

    x_proj (T, B, H) = x @ W_ih^T + b_ih + b_hh; h0 (B, H); w_hh (H, H); nonlinearity "tanh" or "relu";
    mask (T, B) bool or None. Returns (outputs (T, B, H), h_T (B, H)).
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
    _check(x_proj, h0, w_hh, 1)
    x_proj, mask = _flipped(x_proj, mask, reverse)
    out, h = _RNNFunction.apply(x_proj, h0, w_hh, nonlinearity == "relu", _prepare_mask(mask, x_proj))
    return (out.flip(0) if reverse else out), h
