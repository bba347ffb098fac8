"""model.backend: the fused layers (compiled kernels and the Python Functions) against the reference loop
(outputs, states, gradients), selection rules, CharLM training with each backend, the decoding step's folded
input table."""

import contextlib

import pytest
import torch

from rnnkit.models import LAYERS, CharLM, extension
from rnnkit.models.layers import compiled_kernels

D, H, T, B = 5, 8, 7, 4
KINDS = {"rnn_tanh": ("rnn", {"nonlinearity": "tanh"}), "rnn_relu": ("rnn", {"nonlinearity": "relu"}),
         "gru": ("gru", {}), "lstm": ("lstm", {})}


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def pair(kind, **kwargs):
    """The same layer twice, reference and fused, with identical weights."""
    name, extra = KINDS[kind]
    torch.manual_seed(0)
    ref = LAYERS[name](D, H, backend="reference", **extra, **kwargs)
    fast = LAYERS[name](D, H, backend="fused", **extra, **kwargs)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def run_and_grads(layer, x, state, lengths):
    """Forward, a loss touching every output and final-state entry, and all gradients."""
    x = x.clone().requires_grad_()
    state = tuple(s.clone().requires_grad_() for s in state)
    layer.zero_grad(set_to_none=True)
    out, final = layer(x, state if len(state) == 2 else state[0], lengths)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen).to(out.device)).sum()
    for s in as_tuple(final):
        loss = loss + (s * torch.randn(s.shape, generator=gen).to(s.device)).sum()
    loss.backward()
    grads = {"x": x.grad, **{f"state{i}": s.grad for i, s in enumerate(state)}}
    grads.update({n: p.grad for n, p in layer.named_parameters()})
    return out, as_tuple(final), grads


def implementation(name):
    """The fused backend's kernels: "compiled" where they load (see test_extension.py), or "python"."""
    return extension.disabled() if name == "python" else contextlib.nullcontext()


@pytest.mark.parametrize("impl", ["compiled", "python"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_reference_float32(kind, bidirectional, bias, impl):
    ref, fast = pair(kind, num_layers=2, bidirectional=bidirectional, bias=bias)
    dirs = 2 if bidirectional else 1
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, D, generator=gen)
    n_state = 2 if kind == "lstm" else 1
    state = tuple(torch.randn(2 * dirs, B, H, generator=gen) * 0.5 for _ in range(n_state))
    lengths = torch.tensor([T, 3, 1, 5])
    expect = run_and_grads(ref, x, state, lengths)
    with implementation(impl):
        assert compiled_kernels(x) == (impl == "compiled" and extension.load())
        got = run_and_grads(fast, x, state, lengths)
    torch.testing.assert_close(got[0], expect[0], rtol=0, atol=1e-5)
    for a, b in zip(got[1], expect[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert got[2].keys() == expect[2].keys()
    for name in expect[2]:
        torch.testing.assert_close(got[2][name], expect[2][name], rtol=0, atol=1e-5, msg=name)


def test_dropout_between_layers_draws_the_same_masks():
    ref, fast = pair("lstm", num_layers=3, dropout=0.5)
    x = torch.randn(T, B, D)
    torch.manual_seed(3)
    a, _ = ref(x)
    torch.manual_seed(3)
    b, _ = fast(x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_which_path_runs():
    layer = LAYERS["gru"](D, H)
    x = torch.randn(T, B, D)
    assert layer.backend == "auto" and layer.uses_fused(x)
    layer.record_gates = True  # gate histograms need every step's tensors: the reference loop
    assert not layer.uses_fused(x)
    layer.record_gates, layer.record_hidden = False, True  # inspect-grads
    assert not layer.uses_fused(x)
    layer.record_hidden, layer.backend = False, "reference"
    assert not layer.uses_fused(x)
    layer.backend = "fused"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(ValueError, match="autocast"):
            layer(x)
        layer.backend = "auto"
        assert not layer.uses_fused(x)
        layer(x)  # runs on the reference loop
    with pytest.raises(ValueError, match="backend"):
        LAYERS["lstm"](D, H, backend="cudnn")


def test_gates_are_recorded_with_the_fused_backend_selected():
    layer = LAYERS["lstm"](D, H, backend="fused")
    layer.record_gates = True
    layer(torch.randn(T, B, D))
    assert set(layer.last_gates) == {f"layer0.{g}" for g in ("input", "forget", "cell", "output")}


def train_losses(backend, cell, steps=4):
    torch.manual_seed(0)
    lm = CharLM(13, cell=cell, hidden_size=H, num_layers=2, embedding_dim=4, dropout=0.2, backend=backend)
    opt = torch.optim.Adam(lm.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, 13, (T + 1, B), generator=gen)
    lengths = torch.tensor([T, T - 2, 3, 1])
    losses = []
    torch.manual_seed(2)  # dropout masks
    for _ in range(steps):
        opt.zero_grad()
        logits, _ = lm(tokens[:-1], lengths=lengths)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, lm


@pytest.mark.parametrize("impl", ["compiled", "python"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_charlm_trains_alike_with_each_backend(cell, impl):
    ref_losses, ref = train_losses("reference", cell)
    with implementation(impl):
        fast_losses, fast = train_losses("fused", cell)
    assert fast_losses == pytest.approx(ref_losses, abs=1e-5)
    assert ref_losses[-1] < ref_losses[0]
    for (name, a), b in zip(ref.state_dict().items(), fast.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4, msg=name)


def test_from_config_passes_the_backend():
    from rnnkit.config import ModelConfig

    lm = CharLM.from_config(ModelConfig(backend="reference"), vocab_size=7)
    assert lm.rnn.backend == "reference"
    assert CharLM.from_config(ModelConfig(), vocab_size=7).rnn.backend == "auto"


@pytest.mark.parametrize("embedding_dim", [4, 0])
def test_decoding_step_table_follows_weight_updates(embedding_dim):
    torch.manual_seed(4)
    lm = CharLM(11, cell="lstm", hidden_size=H, num_layers=2, embedding_dim=embedding_dim).double()
    tokens = torch.tensor([3, 1, 7])
    with torch.no_grad():
        fast, _ = lm.step(tokens)  # from the (V, 4H) table
    slow, _ = lm.step(tokens)  # autograd on: embedding, then projection
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-12)
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(1.5)  # in place, as an optimizer does
        fast, _ = lm.step(tokens)
    slow, _ = lm.step(tokens)
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_equals_reference_on_cuda(kind, compiled):
    from rnnkit.models import fused

    ref, fast = (m.cuda() for m in pair(kind, num_layers=2, bidirectional=True))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, D, generator=gen).cuda()
    n_state = 2 if kind == "lstm" else 1
    state = tuple(torch.randn(4, B, H, generator=gen).cuda() for _ in range(n_state))
    lengths = torch.tensor([T, 3, 1, 5])
    torch.backends.cuda.matmul.allow_tf32 = False
    expect = run_and_grads(ref, x, state, lengths)
    fused.compile_pointwise(compiled)
    try:
        got = run_and_grads(fast, x, state, lengths)
    finally:
        fused.compile_pointwise(False)
    torch.testing.assert_close(got[0], expect[0], rtol=0, atol=1e-5)
    for name in expect[2]:
        torch.testing.assert_close(got[2][name], expect[2][name], rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_auto_follows_the_measured_rule(cell):
    """auto: the compiled kernels wherever they run; without them, by B*T*H (see layers.auto_takes_fused)."""
    layer = LAYERS[cell](D, 512)
    small, large, huge = torch.empty(10, 4, D), torch.empty(100, 64, D), torch.empty(256, 128, D)  # B*T*H 20 k..17 M
    if extension.load():
        assert layer.path(small) == layer.path(large) == layer.path(huge) == "compiled"
    with extension.disabled():
        paths = (layer.path(small), layer.path(large), layer.path(huge))
    expect = {"lstm": ("reference", "python fused", "python fused"), "gru": ("python fused", "reference", "reference"),
              "rnn": ("python fused", "python fused", "reference")}[cell]
    assert paths == expect
    layer.backend = "fused"
    with extension.disabled():
        assert layer.path(small) == "python fused"
    layer.backend = "reference"
    assert layer.path(large) == "reference"
