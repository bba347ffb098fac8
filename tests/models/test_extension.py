"""The compiled CPU kernels (rnnkit/models/extension) against the reference loop, and the Python fallback.

The kernels are built once per machine into the cache (about 30-40 s on 2 cores) and loaded once per session
by the module fixture; every later test reuses them. Where no C++ compiler or ninja exists the parity tests
skip (the fallback tests still run); where they exist, a failed build fails the fixture.
"""

import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit.models import LAYERS, extension, fused
from rnnkit.models.extension import build
from rnnkit.models.layers import compiled_kernels

D, T, B = 5, 7, 4
KINDS = {"lstm": ("lstm", {}), "gru": ("gru", {}), "rnn_tanh": ("rnn", {"nonlinearity": "tanh"}),
         "rnn_relu": ("rnn", {"nonlinearity": "relu"})}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(scope="module")
def kernels():
    if not build.load():
        reason = build.status()["reason"] or f"{build.ENV_OFF} is set"
        tools = shutil.which(os.environ.get("CXX", "c++")) and shutil.which("ninja")
        if not tools or build.status()["reason"] is None:
            pytest.skip(f"compiled kernels unavailable: {reason}")
        pytest.fail(f"a compiler and ninja are here, yet the kernels did not build: {reason}")
    return build.status()


@pytest.fixture
def no_python_fused(monkeypatch):
    """Any call into the Python fused Functions fails the test: the compiled path must be the one running."""
    def refuse(*args, **kwargs):
        raise AssertionError("the Python fused path ran")

    for name in ("lstm_sequence", "gru_sequence", "rnn_sequence"):
        monkeypatch.setattr(fused, name, refuse)


def pair(kind, H, dtype, **kwargs):
    """A reference layer and a fused one (compiled where it loads) with identical weights."""
    name, extra = KINDS[kind]
    torch.manual_seed(0)
    ref = LAYERS[name](D, H, backend="reference", **extra, **kwargs).to(dtype)
    fast = LAYERS[name](D, H, backend="fused", **extra, **kwargs).to(dtype)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def run(layer, x, state, lengths, packed):
    """Forward (padded with lengths, or packed), a loss on every output and final state, all gradients."""
    x = x.clone().requires_grad_()
    state = tuple(s.clone().requires_grad_() for s in state)
    layer.zero_grad(set_to_none=True)
    public = state if len(state) == 2 else state[0]
    if packed:
        seq = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, final = layer(seq, public)
        out = out.data
    else:
        out, final = layer(x, public, lengths)
    final = final if isinstance(final, tuple) else (final,)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for s in final:
        loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum()
    loss.backward()
    grads = {"x": x.grad, **{f"state{i}": s.grad for i, s in enumerate(state)}}
    grads.update({n: p.grad for n, p in layer.named_parameters()})
    return out, final, grads


def assert_same(got, expect, tol):
    torch.testing.assert_close(got[0], expect[0], rtol=0, atol=tol)
    for a, b in zip(got[1], expect[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=tol)
    assert got[2].keys() == expect[2].keys()
    for name, b in expect[2].items():
        torch.testing.assert_close(got[2][name], b, rtol=0, atol=tol * max(1.0, b.abs().max().item()), msg=name)


@pytest.mark.parametrize("inputs", ["full", "lengths", "packed"])
@pytest.mark.parametrize("layout", ["1 layer", "2 layers bi"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_equals_reference(kernels, no_python_fused, kind, dtype, layout, inputs):
    H = 8 if layout == "1 layer" else 37  # 37: the vector loops' remainders too
    num_layers, bidirectional = (1, False) if layout == "1 layer" else (2, True)
    ref, fast = pair(kind, H, dtype, num_layers=num_layers, bidirectional=bidirectional)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, D, generator=gen, dtype=dtype)
    assert compiled_kernels(x)
    dirs = 2 if bidirectional else 1
    n_state = 2 if kind == "lstm" else 1
    state = tuple(torch.randn(num_layers * dirs, B, H, generator=gen, dtype=dtype) * 0.5 for _ in range(n_state))
    lengths = None if inputs == "full" else torch.tensor([T, 3, 1, 5])
    expect = run(ref, x, state, lengths, inputs == "packed")
    got = run(fast, x, state, lengths, inputs == "packed")
    assert_same(got, expect, TOL[dtype])


@pytest.mark.parametrize("kind", list(KINDS))
def test_without_bias(kernels, no_python_fused, kind):
    ref, fast = pair(kind, 8, torch.float64, bias=False, bidirectional=True)
    x = torch.randn(T, B, D, dtype=torch.float64)
    n_state = 2 if kind == "lstm" else 1
    state = tuple(torch.zeros(2, B, 8, dtype=torch.float64) for _ in range(n_state))
    lengths = torch.tensor([T, 2, 6, 1])
    assert_same(run(fast, x, state, lengths, False), run(ref, x, state, lengths, False), 1e-10)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_forward_without_gradients_keeps_less_and_agrees(kernels, kind):
    """Under no_grad the kernels keep one step's activations instead of all: the results are the same."""
    _, fast = pair(kind, 8, torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, D)
    lengths = torch.tensor([T, 3, 1, 5])
    out, final = fast(x, lengths=lengths)
    with torch.no_grad():
        out_ng, final_ng = fast(x, lengths=lengths)
    torch.testing.assert_close(out_ng, out.detach(), rtol=0, atol=0)
    for a, b in zip(final_ng if isinstance(final_ng, tuple) else (final_ng,),
                    final if isinstance(final, tuple) else (final,), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_gradcheck(kernels, kind, reverse):
    name, extra = KINDS[kind]
    H = 3
    gen = torch.Generator().manual_seed(3)
    G = {"lstm": 4, "gru": 3}.get(name, 1)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).requires_grad_()

    x, w_ih, w_hh = rand(4, 3, 2), rand(G * H, 2, scale=0.5), rand(G * H, H, scale=0.5)
    b_ih, b_hh, h0, c0 = rand(G * H, scale=0.3), rand(G * H, scale=0.3), rand(3, H, scale=0.5), rand(3, H, scale=0.5)
    if kind == "rnn_relu":
        with torch.no_grad():
            b_ih.add_(0.7)  # keep pre-activations away from relu's kink
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    if name == "lstm":
        args = (x, w_ih, w_hh, b_ih, b_hh, h0, c0)

        def fn(*a):
            return extension.lstm_layer(*a, mask=mask, reverse=reverse)
    elif name == "gru":
        args = (x, w_ih, w_hh, b_ih, b_hh, h0)

        def fn(*a):
            return extension.gru_layer(*a, mask=mask, reverse=reverse)
    else:
        args = (x, w_ih, w_hh, b_ih, b_hh, h0)

        def fn(*a):
            return extension.rnn_layer(*a, nonlinearity=extra["nonlinearity"], mask=mask, reverse=reverse)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7)


def test_nan_propagates(kernels):
    """No -ffast-math: a NaN input gives NaN outputs (the training loop's non-finite check sees it)."""
    _, fast = pair("lstm", 16, torch.float32)
    x = torch.randn(T, B, D)
    x[2, 1, 0] = float("nan")
    out, (h, c) = fast(x)
    assert torch.isnan(out[2:, 1]).all() and torch.isfinite(out[:, [0, 2, 3]]).all()
    assert torch.isnan(h[0, 1]).all() and torch.isnan(c[0, 1]).all()


def test_saturated_gates_stay_finite(kernels):
    """Pre-activations of +-1e4 clamp inside exp: sigmoid gives 0 and 1, tanh -1 and 1, as torch does."""
    ref, fast = pair("gru", 8, torch.float32)
    x = torch.randn(T, B, D) * 1e4
    torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=0, atol=1e-5)


def test_large_buffers_are_reused(kernels):
    """Buffers of 1 MB and more come from a pool: a second step of the same shape adds none."""
    torch.ops.rnnkit_cpu.pool_release(-1)
    _, fast = pair("lstm", 256, torch.float32)
    x = torch.randn(40, 32, D)
    for _ in range(2):
        out, _ = fast(x)
        out.sum().backward()
        held = torch.ops.rnnkit_cpu.pool_bytes()
    out, _ = fast(x)
    out.sum().backward()
    assert held > 0 and torch.ops.rnnkit_cpu.pool_bytes() == held
    del out
    assert torch.ops.rnnkit_cpu.pool_release(-1) == 0  # every block is free again


# --- The fallback: the Python fused path -------------------------------------------------------------


@pytest.fixture
def fresh_state(monkeypatch):
    """A process state where the kernels were never tried (load() decides again)."""
    monkeypatch.setattr(build, "_state", {"tried": False, "loaded": False, "reason": None, "build_seconds": None,
                                          "path": None})


def test_env_var_turns_the_kernels_off_silently(monkeypatch, fresh_state, caplog):
    monkeypatch.setenv(build.ENV_OFF, "1")
    ref, fast = pair("lstm", 8, torch.float32, bidirectional=True)
    x = torch.randn(T, B, D)
    assert not compiled_kernels(x)
    assert_same(run(fast, x, (torch.zeros(2, B, 8),) * 2, torch.tensor([T, 3, 1, 5]), False),
                run(ref, x, (torch.zeros(2, B, 8),) * 2, torch.tensor([T, 3, 1, 5]), False), 1e-5)
    assert not caplog.records


def test_disabled_block_uses_the_python_path():
    x = torch.randn(T, B, D)
    with extension.disabled():
        assert not compiled_kernels(x)


def test_failed_build_falls_back_with_one_line(monkeypatch, fresh_state, tmp_path, caplog):
    """No compiler: the first fused layer says so once, on the rnnkit logger, and runs the Python path."""
    monkeypatch.setenv(build.ENV_DIR, str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    ref, fast = pair("gru", 8, torch.float32)
    x = torch.randn(T, B, D)
    with caplog.at_level(logging.WARNING, logger="rnnkit"):
        assert not compiled_kernels(x)
        got = run(fast, x, (torch.zeros(1, B, 8),), None, False)
        fast(x)  # a second use: no second line
    assert [r.getMessage() for r in caplog.records if r.name == "rnnkit"] == [caplog.records[0].getMessage()]
    assert "using the Python fused path" in caplog.records[0].getMessage()
    assert build.status()["reason"]
    assert_same(got, run(ref, x, (torch.zeros(1, B, 8),), None, False), 1e-5)


def test_failed_build_in_a_fresh_process_prints_one_line(tmp_path):
    """What a user without a compiler sees: one line on standard error, and the layer works."""
    env = {**os.environ, build.ENV_DIR: str(tmp_path), "CXX": str(tmp_path / "no-such-compiler"),
           "OMP_NUM_THREADS": "1"}
    env.pop(build.ENV_OFF, None)
    code = ("import torch\nfrom rnnkit.models import LSTM\nlstm = LSTM(3, 4)\n"
            "out, _ = lstm(torch.randn(5, 2, 3)); out.sum().backward(); lstm(torch.randn(5, 2, 3))\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "compiled CPU kernels unavailable" in lines[0], done.stderr


@pytest.mark.parametrize("rows", [1, 5, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_decoding_step_equals_the_python_step(kernels, kind, dtype, rows):
    """Without autograd, step_projected is one compiled call for the whole stack; it computes the same state.
    H = 37 leaves a remainder both of the vector width and of the 4 (up to 5 rows) or 2 (6 to 8 rows) weight
    rows that a product takes at a time."""
    ref, fast = pair(kind, 37, dtype, num_layers=3)
    gen = torch.Generator().manual_seed(2)
    xw0 = torch.randn(rows, ref.num_gates * 37, generator=gen, dtype=dtype)
    state = tuple(torch.randn(3, rows, 37, generator=gen, dtype=dtype) for _ in range(ref.state_size))
    public = state if len(state) == 2 else state[0]
    with torch.no_grad():
        got, expect = fast.step_projected(xw0, public), ref.step_projected(xw0, public)
    for a, b in zip(got if isinstance(got, tuple) else (got,), expect if isinstance(expect, tuple) else (expect,),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_summed_over_blocks_of_steps(kernels, no_python_fused, kind):
    """Backward sums the weight gradients ~1024 rows at a time: at B = 300 a block is 4 steps, so T = 9 spans
    three blocks (4, 4, 1), in both directions, with the initial state's step at either end."""
    ref, fast = pair(kind, 8, torch.float64, bidirectional=True)
    gen = torch.Generator().manual_seed(5)
    batch = 300
    x = torch.randn(9, batch, D, generator=gen, dtype=torch.float64)
    state = tuple(torch.randn(2, batch, 8, generator=gen, dtype=torch.float64) for _ in range(ref.state_size))
    lengths = torch.randint(1, 10, (batch,), generator=gen)
    lengths[0] = 9
    for lens in (None, lengths):
        assert_same(run(fast, x, state, lens, False), run(ref, x, state, lens, False), 1e-10)
