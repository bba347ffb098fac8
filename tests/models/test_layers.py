"""Layers against torch.nn: outputs, final states and every gradient, with lengths, packing, directions."""

import itertools
import zlib

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.models import GRU, LAYERS, LSTM, RNN

KINDS = {  # name -> (our class, torch class, extra constructor kwargs)
    "rnn_tanh": (RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, nn.RNN, {"nonlinearity": "relu"}),
    "gru": (GRU, nn.GRU, {}),
    "lstm": (LSTM, nn.LSTM, {}),
}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
D, H, T, B = 3, 8, 7, 4


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def random_state(kind, num_layers, dirs, dtype, gen):
    n = 2 if kind == "lstm" else 1
    states = tuple(torch.randn(num_layers * dirs, B, H, dtype=dtype, generator=gen) for _ in range(n))
    return states if kind == "lstm" else states[0]


def torch_run(module, x, state, lengths):
    """The reference: torch.nn on a packed batch, unpacked to (T, B, H*dirs) with zero padding."""
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, final = module(packed, state)
    out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    return out, final


def backward_on(out, final, weights):
    """A loss touching every output and state entry with distinct weights, so gradients differ."""
    loss = (out * weights[0]).sum()
    for s, w in zip(as_tuple(final), weights[1:], strict=True):
        loss = loss + (s * w).sum()
    loss.backward()


def assert_close(a, b, tol, what):
    assert a.shape == b.shape, what
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.0e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_with_torch_nn(kind, num_layers, bidirectional, bias, dtype):
    ours_cls, torch_cls, extra = KINDS[kind]
    seed = zlib.crc32(repr((kind, num_layers, bidirectional, bias)).encode())  # stable across runs
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    ref = torch_cls(D, H, num_layers, bias=bias, bidirectional=bidirectional, **extra).to(dtype)
    ours = ours_cls.from_torch(ref)
    dirs = 2 if bidirectional else 1
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T  # the padded output keeps T steps on both sides
    x = torch.randn(T, B, D, dtype=dtype, generator=gen)
    state = random_state(kind, num_layers, dirs, dtype, gen)
    n_state = len(as_tuple(state))
    weights = [torch.randn(T, B, H * dirs, dtype=dtype, generator=gen)]
    weights += [torch.randn(num_layers * dirs, B, H, dtype=dtype, generator=gen) for _ in range(n_state)]

    results = []
    for module, run in ((ref, torch_run), (ours, lambda m, x, s, lens: m(x, s, lens))):
        xi = x.clone().requires_grad_()
        si = tuple(s.clone().requires_grad_() for s in as_tuple(state))
        out, final = run(module, xi, si if kind == "lstm" else si[0], lengths)
        backward_on(out, final, weights)
        grads = {name: p.grad for name, p in module.named_parameters()}
        results.append((out, as_tuple(final), xi.grad, [s.grad for s in si], grads))

    tol = TOL[dtype]
    (o_ref, f_ref, gx_ref, gs_ref, gp_ref), (o, f, gx, gs, gp) = results
    assert_close(o, o_ref, tol, "outputs")
    padding = torch.arange(T)[:, None] >= lengths[None, :]  # (T, B)
    assert (o[padding] == 0).all(), "padded outputs must be exactly zero"
    for a, b in zip(f, f_ref, strict=True):
        assert_close(a, b, tol, "final state")
    assert_close(gx, gx_ref, tol, "input gradient")
    for a, b in zip(gs, gs_ref, strict=True):
        assert_close(a, b, tol, "initial-state gradient")
    assert gp.keys() == gp_ref.keys()
    for name in gp_ref:
        assert_close(gp[name], gp_ref[name], tol, f"grad {name}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_full_length_without_lengths_matches_torch(kind):
    ours_cls, torch_cls, extra = KINDS[kind]
    torch.manual_seed(1)
    ref = torch_cls(D, H, 2, bidirectional=True, **extra).double()
    ours = ours_cls.from_torch(ref)
    x = torch.randn(T, B, D, dtype=torch.float64)
    (o, f), (o_ref, f_ref) = ours(x), ref(x)
    assert_close(o, o_ref, 1e-10, "outputs")
    for a, b in zip(as_tuple(f), as_tuple(f_ref), strict=True):
        assert_close(a, b, 1e-10, "final state")


@pytest.mark.parametrize("enforce_sorted", [False, True])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_packed_sequence_input(kind, enforce_sorted):
    ours_cls, torch_cls, extra = KINDS[kind]
    torch.manual_seed(2)
    ref = torch_cls(D, H, 2, bidirectional=True).double()
    ours = ours_cls.from_torch(ref)
    lengths = torch.tensor([7, 5, 5, 2]) if enforce_sorted else torch.tensor([3, 7, 1, 5])
    packed = pack_padded_sequence(torch.randn(T, B, D, dtype=torch.float64), lengths, enforce_sorted=enforce_sorted)
    state = random_state(kind, 2, 2, torch.float64, torch.Generator().manual_seed(0))
    (o, f), (o_ref, f_ref) = ours(packed, state), ref(packed, state)
    assert isinstance(o, nn.utils.rnn.PackedSequence)
    assert torch.equal(o.batch_sizes, o_ref.batch_sizes)
    assert_close(o.data, o_ref.data, 1e-10, "packed outputs")
    for a, b in zip(as_tuple(f), as_tuple(f_ref), strict=True):
        assert_close(a, b, 1e-10, "final state")


@pytest.mark.parametrize("kind", list(KINDS))
def test_to_torch_round_trip_and_same_seed_init(kind):
    ours_cls, torch_cls, extra = KINDS[kind]
    torch.manual_seed(3)
    ours = ours_cls(D, H, 2, bias=True, bidirectional=True, **extra)
    torch.manual_seed(3)
    ref = torch_cls(D, H, 2, bias=True, bidirectional=True, **extra)
    back = ours.to_torch()
    assert type(back) is torch_cls and back.bidirectional and back.num_layers == 2
    for (name, p), (name_ref, p_ref), (name_back, p_back) in zip(
        ours.named_parameters(), ref.named_parameters(), back.named_parameters(), strict=True
    ):
        assert name == name_ref == name_back
        assert torch.equal(p, p_ref), f"{name}: same seed should give torch.nn's initial weights"
        assert torch.equal(p, p_back)
    again = ours_cls.from_torch(back)
    x = torch.randn(T, B, D)
    assert torch.equal(again(x)[0], ours(x)[0])


def test_from_torch_rejects_what_it_cannot_represent():
    with pytest.raises(TypeError):
        LSTM.from_torch(nn.GRU(D, H))
    with pytest.raises(ValueError, match="time-major"):
        GRU.from_torch(nn.GRU(D, H, batch_first=True))
    with pytest.raises(ValueError, match="proj_size"):
        LSTM.from_torch(nn.LSTM(D, H, proj_size=2))


@pytest.mark.parametrize("kind", list(KINDS))
def test_padding_is_inert(kind):
    """Changing padded inputs changes nothing, and no gradient reaches them."""
    ours_cls, _, extra = KINDS[kind]
    torch.manual_seed(4)
    layer = ours_cls(D, H, 2, bidirectional=True, **extra).double()
    lengths = torch.tensor([7, 3, 5, 1])
    padding = (torch.arange(T)[:, None] >= lengths[None, :]).unsqueeze(-1)  # (T, B, 1)
    x = torch.randn(T, B, D, dtype=torch.float64, requires_grad=True)
    out, final = layer(x, lengths=lengths)
    (out.sum() + sum(s.sum() for s in as_tuple(final))).backward()
    assert (x.grad.masked_select(padding) == 0).all()
    x2 = torch.where(padding, torch.randn_like(x) * 100, x.detach())
    out2, final2 = layer(x2, lengths=lengths)
    assert torch.equal(out, out2)
    for a, b in zip(as_tuple(final), as_tuple(final2), strict=True):
        assert torch.equal(a, b)


def test_lengths_are_validated():
    layer = GRU(D, H)
    x = torch.randn(T, B, D)
    with pytest.raises(ValueError):
        layer(x, lengths=torch.tensor([8, 1, 1, 1]))
    with pytest.raises(ValueError):
        layer(x, lengths=torch.tensor([2, 1, 1]))
    with pytest.raises(ValueError, match="state"):
        layer(x, torch.zeros(2, B, H))


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_one_step_advances_the_whole_stack(kind, num_layers):
    ours_cls, _, extra = KINDS[kind]
    torch.manual_seed(5)
    layer = ours_cls(D, H, num_layers, **extra).double()
    x = torch.randn(T, B, D, dtype=torch.float64)
    out, final = layer(x)
    state = None
    for x_t in x.unbind(0):
        state = layer.one_step(x_t, state)
    for a, b in zip(as_tuple(state), as_tuple(final), strict=True):
        assert_close(a, b, 1e-12, "one_step state")
    assert_close(as_tuple(state)[0][-1], out[-1], 1e-12, "top layer output")
    with pytest.raises(ValueError):
        ours_cls(D, H, bidirectional=True, **extra).one_step(x[0])


def test_dropout_only_between_layers():
    torch.manual_seed(6)
    x = torch.randn(T, B, D)
    single = LSTM(D, H, 1, dropout=0.9).train()
    assert torch.equal(single(x)[0], single.eval()(x)[0]), "no dropout after the last layer"
    stacked = LSTM(D, H, 2, dropout=0.5).train()
    out_train = stacked(x)[0]
    assert (out_train != 0).all()
    assert not torch.allclose(out_train, stacked.eval()(x)[0])


def test_forget_bias_is_added_to_the_forget_slice():
    torch.manual_seed(7)
    plain = LSTM(D, H, 2, bidirectional=True)
    torch.manual_seed(7)
    shifted = LSTM(D, H, 2, bidirectional=True, forget_bias=1.0)
    for (name, p), q in zip(plain.named_parameters(), shifted.parameters(), strict=True):
        delta = torch.zeros_like(p)
        if name.startswith("bias_ih"):
            delta[H:2 * H] = 1.0
        assert torch.allclose(q - p, delta), name
    assert len(list(LSTM(D, H, bias=False, forget_bias=1.0).parameters())) == 2


def test_gate_recording_keys_shapes_and_default_off():
    torch.manual_seed(8)
    lengths = torch.tensor([7, 2, 4, 5])
    x = torch.randn(T, B, D)
    expected = {"lstm": ("input", "forget", "cell", "output"), "gru": ("reset", "update", "candidate"),
                "rnn": ("preactivation",)}
    for kind, names in expected.items():
        layer = LAYERS[kind](D, H, 2, bidirectional=True)
        layer(x)
        assert layer.record_gates is False and layer.last_gates == {}
        layer.record_gates = True
        out, _ = layer(x, lengths=lengths)
        keys = {f"layer{i}.{n}{s}" for i, n, s in itertools.product(range(2), names, ("", ".reverse"))}
        assert set(layer.last_gates) == keys
        for g in layer.last_gates.values():
            assert g.shape == (T, B, H) and not g.requires_grad
            assert (g[4:, 2] == 0).all(), "padded steps are zero"
    # The recorded values are the real ones: LSTM output = o * tanh(c) needs o (output gate).
    layer = LSTM(D, H)
    layer.record_gates = True
    out, (h, c) = layer(x)
    gates = layer.last_gates
    assert torch.allclose(out[-1], gates["layer0.output"][-1] * torch.tanh(c[0]))
    assert ((gates["layer0.forget"] > 0) & (gates["layer0.forget"] < 1)).all()


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_gradcheck_inputs_state_and_parameters(kind, bidirectional):
    """Finite differences agree with autograd for x, the initial state and every parameter, with lengths."""
    ours_cls, _, extra = KINDS[kind]
    torch.manual_seed(9)
    layer = ours_cls(2, 3, 2, bidirectional=bidirectional, **extra).double()
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    dirs = 2 if bidirectional else 1
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    n_state = 2 if kind == "lstm" else 1
    state = [torch.randn(2 * dirs, 3, 3, dtype=torch.float64, requires_grad=True) for _ in range(n_state)]
    lengths = torch.tensor([4, 1, 3])

    def run(x, *rest):
        s, p = rest[:n_state], rest[n_state:]
        params = dict(zip(names, p, strict=True))
        out, final = functional_call(layer, params, (x, s if kind == "lstm" else s[0], lengths))
        return (out, *as_tuple(final))

    assert torch.autograd.gradcheck(run, (x, *state, *params), eps=1e-6, atol=1e-6)
