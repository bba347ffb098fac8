"""Fused sequence Functions against a plain autograd loop: outputs, final states, every gradient, masks."""

import pytest
import torch

from rnnkit.models import fused

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


# --- The reference: a straightforward loop of torch ops, autograd records every step ---------------


def loop_reference(kind, x_proj, h0, c0, w_hh, b_hh, mask):
    """Same conventions and masking as the fused functions, written plainly. Returns (out, finals)."""
    T = x_proj.shape[0]
    h, c, outs = h0, c0, []
    for t in range(T):
        xp = x_proj[t]
        if kind == "lstm":
            i, f, g, o = (xp + h @ w_hh.t()).chunk(4, dim=1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c_new = f * c + i * g
            h_new = o * c_new.tanh()
        elif kind == "gru":
            gh = h @ w_hh.t() + (b_hh if b_hh is not None else 0)
            x_r, x_z, x_n = xp.chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
            n = (x_n + r * h_n).tanh()
            h_new = (1 - z) * n + z * h
        else:
            pre = xp + h @ w_hh.t()
            h_new = pre.relu() if kind == "rnn_relu" else pre.tanh()
        if mask is None:
            h = h_new
            c = c_new if kind == "lstm" else None
            outs.append(h)
        else:
            m = mask[t].unsqueeze(1)
            h = torch.where(m, h_new, h)
            if kind == "lstm":
                c = torch.where(m, c_new, c)
            outs.append(torch.where(m, h_new, torch.zeros_like(h_new)))
    finals = (h, c) if kind == "lstm" else (h,)
    return torch.stack(outs), finals


def fused_run(kind, x_proj, h0, c0, w_hh, b_hh, mask):
    if kind == "lstm":
        out, h, c = fused.lstm_sequence(x_proj, h0, c0, w_hh, mask)
        return out, (h, c)
    if kind == "gru":
        out, h = fused.gru_sequence(x_proj, h0, w_hh, b_hh, mask)
        return out, (h,)
    out, h = fused.rnn_sequence(x_proj, h0, w_hh, "relu" if kind == "rnn_relu" else "tanh", mask)
    return out, (h,)


def make_inputs(kind, T, B, H, dtype, device="cpu", seed=0, bias=True):
    gen = torch.Generator().manual_seed(seed)
    G = GATES[kind]

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=dtype) * scale).to(device).requires_grad_()

    x_proj = rand(T, B, G * H)
    h0, c0 = rand(B, H, scale=0.5), rand(B, H, scale=0.5)
    w_hh = rand(G * H, H, scale=H**-0.5)
    b_hh = rand(G * H, scale=0.3) if kind == "gru" and bias else None
    return x_proj, h0, c0, w_hh, b_hh


def prefix_mask(T, B, seed, device="cpu"):
    """(T, B) bool: ones then zeros, lengths in [1, T], the longest equal to T, one of length 1."""
    gen = torch.Generator().manual_seed(seed + 1)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0], lengths[-1] = T, 1
    return (torch.arange(T)[:, None] < lengths[None, :]).to(device)


def compare(kind, T, B, H, dtype, mask_kind, device="cpu", bias=True):
    tol = TOL[dtype]
    inputs = make_inputs(kind, T, B, H, dtype, device, bias=bias)
    x_proj, h0, c0, w_hh, b_hh = inputs
    leaves = [x_proj, h0, w_hh] + ([c0] if kind == "lstm" else []) + ([b_hh] if b_hh is not None else [])
    mask = {"none": None, "ones": torch.ones(T, B, dtype=torch.bool, device=device),
            "prefix": prefix_mask(T, B, 0, device)}[mask_kind]
    gen = torch.Generator().manual_seed(7)
    results = []
    for run in (loop_reference, fused_run):
        out, finals = run(kind, x_proj, h0, c0, w_hh, b_hh, mask)
        # Distinct weights on every output and final-state entry, so each gradient path is checked.
        gen.manual_seed(7)
        loss = (out * torch.randn(out.shape, generator=gen, dtype=dtype).to(device)).sum()
        for s in finals:
            loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=dtype).to(device)).sum()
        grads = torch.autograd.grad(loss, leaves)
        results.append((out, finals, grads))
    (out_r, fin_r, g_r), (out_f, fin_f, g_f) = results
    torch.testing.assert_close(out_f, out_r, atol=tol, rtol=0)
    for a, b in zip(fin_f, fin_r, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)
    for a, b, name in zip(g_f, g_r, ["x_proj", "h0", "w_hh", "c0/b_hh", "b_hh"], strict=False):
        torch.testing.assert_close(a, b, atol=tol * max(1.0, b.abs().max().item()), rtol=0, msg=name)
    if mask is not None and mask_kind == "prefix":
        assert out_f[~mask].abs().max() == 0  # padded outputs are exactly zero


@pytest.mark.parametrize("mask_kind", ["none", "ones", "prefix"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_autograd_loop(kind, dtype, mask_kind):
    compare(kind, T=9, B=5, H=8, dtype=dtype, mask_kind=mask_kind)


def test_gru_without_bias():
    compare("gru", T=6, B=3, H=8, dtype=torch.float64, mask_kind="prefix", bias=False)


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind, masked):
    T, B, H = 4, 3, 3
    x_proj, h0, c0, w_hh, b_hh = make_inputs(kind, T, B, H, torch.float64, seed=3)
    if kind == "rnn_relu":
        with torch.no_grad():
            x_proj.add_(0.5)  # keep pre-activations away from relu's kink, where the slopes differ
    mask = prefix_mask(T, B, 3) if masked else None
    if kind == "lstm":
        args = (x_proj, h0, c0, w_hh)

        def fn(x, h, c, w):
            return fused.lstm_sequence(x, h, c, w, mask)
    elif kind == "gru":
        args = (x_proj, h0, w_hh, b_hh)

        def fn(x, h, w, b):
            return fused.gru_sequence(x, h, w, b, mask)
    else:
        args = (x_proj, h0, w_hh)
        nonlinearity = "relu" if kind == "rnn_relu" else "tanh"

        def fn(x, h, w):
            return fused.rnn_sequence(x, h, w, nonlinearity, mask)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7)


def test_only_some_outputs_used():
    """Unused outputs get no gradient (None in backward); the rest must still be right."""
    x_proj, h0, c0, w_hh, _ = make_inputs("lstm", 5, 2, 4, torch.float64)
    out, _, c_T = fused.lstm_sequence(x_proj, h0, c0, w_hh)
    (g_fused,) = torch.autograd.grad(c_T.sum(), [w_hh])
    _, (_, c_ref) = loop_reference("lstm", x_proj, h0, c0, w_hh, None, None)
    (g_ref,) = torch.autograd.grad(c_ref.sum(), [w_hh])
    torch.testing.assert_close(g_fused, g_ref, atol=1e-12, rtol=0)


def test_reverse_direction_by_flipping():
    """A reverse pass is flip(0) of x_proj and mask: padding first, so each sequence starts at its end."""
    T, B, H = 6, 3, 4
    x_proj, h0, _, w_hh, _ = make_inputs("rnn_tanh", T, B, H, torch.float64)
    lengths = [6, 4, 1]
    mask = torch.arange(T)[:, None] < torch.tensor(lengths)[None, :]
    out, _ = fused.rnn_sequence(x_proj.flip(0), h0, w_hh, "tanh", mask.flip(0))
    out = out.flip(0)
    for b, n in enumerate(lengths):  # the same as running each sequence reversed on its own
        alone, _ = fused.rnn_sequence(x_proj[:n, b : b + 1].flip(0), h0[b : b + 1], w_hh, "tanh")
        torch.testing.assert_close(out[:n, b], alone.flip(0)[:, 0], atol=1e-12, rtol=0)
        assert out[n:, b].abs().max() == 0 if n < T else True


def test_rejects_bad_shapes():
    x_proj, h0, c0, w_hh, _ = make_inputs("lstm", 3, 2, 4, torch.float32)
    with pytest.raises(ValueError, match="inconsistent"):
        fused.lstm_sequence(x_proj[..., :-1], h0, c0, w_hh)
    with pytest.raises(ValueError, match="mask"):
        fused.lstm_sequence(x_proj, h0, c0, w_hh, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="nonlinearity"):
        fused.rnn_sequence(x_proj[..., :4], h0, w_hh[:4], "sigmoid")


def test_compile_switch_is_off_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU behaviour")
    assert fused.compile_pointwise(True) is False
    assert fused._pointwise == fused._EAGER


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("mask_kind", ["none", "prefix"])
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_autograd_loop(kind, mask_kind, compiled):
    fused.compile_pointwise(compiled)
    try:
        for dtype in (torch.float64, torch.float32):
            compare(kind, T=9, B=5, H=8, dtype=dtype, mask_kind=mask_kind, device="cuda")
    finally:
        fused.compile_pointwise(False)


# --- CUDA graph helper ------------------------------------------------------------------------------


def test_bucket_length_and_pad_time():
    from rnnkit.models.cuda_graphs import bucket_length, pad_time

    assert [bucket_length(n) for n in (0, 1, 16, 17, 100)] == [16, 16, 16, 32, 112]
    x = torch.ones(3, 2)
    padded = pad_time(x, 5)
    assert padded.shape == (5, 2) and padded[3:].abs().sum() == 0 and padded[:3].equal(x)
    with pytest.raises(ValueError):
        pad_time(x, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graphed_step_matches_eager_training():
    """Three SGD steps through GraphedStep (bucketed length, masked) equal three eager steps."""
    from torch import nn

    from rnnkit.models.cuda_graphs import GraphedStep, bucket_length, pad_time

    torch.manual_seed(0)
    H, B, T = 16, 4, 11
    models = []
    for _ in range(2):
        m = nn.Linear(8, 4 * H)
        m.w_hh = nn.Parameter(torch.randn(4 * H, H) * H**-0.5)  # registered, so restore= covers it
        models.append(m.cuda())
    models[1].load_state_dict(models[0].state_dict())
    w_hh = [m.w_hh for m in models]
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]

    def make_step(k):
        def step(x, mask):
            opts[k].zero_grad(set_to_none=True)
            h0 = x.new_zeros(x.shape[1], H)
            out, _, _ = fused.lstm_sequence(models[k](x), h0, h0, w_hh[k], mask)
            loss = out.square().sum()
            loss.backward()
            opts[k].step()
            return loss
        return step

    graphed = GraphedStep(make_step(1), warmup=2, restore=[models[1], opts[1]])
    eager = make_step(0)
    for _ in range(3):
        x = torch.randn(T, B, 8, device="cuda")
        lengths = torch.randint(1, T + 1, (B,), device="cuda")
        mask = torch.arange(T, device="cuda")[:, None] < lengths[None, :]
        loss_e = eager(x, mask)
        L = bucket_length(T)
        loss_g = graphed(pad_time(x, L), pad_time(mask, L, False))
        torch.testing.assert_close(loss_g, loss_e, rtol=1e-5, atol=1e-5)
    torch.cuda.synchronize()
    torch.testing.assert_close(w_hh[1], w_hh[0], rtol=1e-5, atol=1e-6)
    assert len(graphed.graphs) == 1
