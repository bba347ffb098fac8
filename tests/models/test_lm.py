"""CharLM: step() agrees with forward(), one-hot mode, config building, gate recording, beam reorder."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.vocab import PAD
from rnnkit.models import CharLM

V, T, B = 11, 6, 3


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("embedding_dim", [5, 0])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_step_by_step_equals_forward(cell, embedding_dim):
    torch.manual_seed(0)
    lm = CharLM(V, cell=cell, hidden_size=8, num_layers=2, embedding_dim=embedding_dim, dropout=0.3).double().eval()
    tokens = torch.randint(0, V, (T, B))
    logits, final = lm(tokens)
    assert logits.shape == (T, B, V)
    state = None
    for t in range(T):
        log_probs, state = lm.step(tokens[t], state)
        assert torch.isneginf(log_probs[:, PAD]).all(), "step never proposes padding"
        torch.testing.assert_close(log_probs[:, 1:], F.log_softmax(logits[t], -1)[:, 1:], rtol=0, atol=1e-12)
    for a, b in zip(as_tuple(state), as_tuple(final), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("embedding_dim", [5, 0])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_decoding_steps_without_autograd_equal_forward(cell, embedding_dim, backend):
    """Without autograd (decoding) a step looks layer 0's input up in the plan's table and, on the compiled
    kernels, runs the stack in one call; it agrees with forward(), from a zero state and from a given one."""
    torch.manual_seed(0)
    lm = CharLM(V, cell=cell, hidden_size=8, num_layers=2, embedding_dim=embedding_dim, backend=backend).double()
    state, final = _steps_equal_forward(lm, torch.randint(0, V, (T, B)))
    for a, b in zip(as_tuple(state), as_tuple(final), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def _steps_equal_forward(lm, tokens):
    """Step through tokens (T, B) without autograd, each step's logits equal to forward()'s at that step;
    -> (the stepped final state, forward()'s final state)."""
    with torch.no_grad():
        logits, final = lm(tokens)
        state = None
        for t in range(tokens.shape[0]):
            step_logits, state = lm.step_logits(tokens[t], state)
            torch.testing.assert_close(step_logits, logits[t], rtol=0, atol=1e-12)
    return state, final


def test_a_decoder_other_than_a_linear_layer_is_called_as_a_module():
    """The compiled step computes the logits itself only for a plain nn.Linear decoder; any other is called."""
    torch.manual_seed(2)
    lm = CharLM(V, cell="gru", hidden_size=8, num_layers=2).double()
    lm.decoder = torch.nn.Sequential(torch.nn.Linear(8, V), torch.nn.LogSoftmax(-1)).double()
    _steps_equal_forward(lm, torch.randint(0, V, (T, B)))


def greedy_text(lm, steps=8):
    with torch.no_grad():
        tokens, state, out = torch.tensor([1]), None, []
        for _ in range(steps):
            logits, state = lm.step_logits(tokens, state)
            tokens = logits.argmax(-1)
            out.append(int(tokens))
    return out, logits


def test_a_weight_change_after_a_decode_is_seen_by_the_next_decode():
    """The decoding plan (input table, weight lists) is rebuilt whenever a parameter changed since it was made:
    an optimizer step (in place), load_state_dict (in place), a replaced Parameter, a dtype change."""
    torch.manual_seed(6)
    lm = CharLM(V, cell="lstm", hidden_size=16, num_layers=2, embedding_dim=5).double()
    fresh = CharLM(V, cell="lstm", hidden_size=16, num_layers=2, embedding_dim=5).double()

    def assert_decodes_like(model, other):
        text, logits = greedy_text(model)
        expect_text, expect_logits = greedy_text(copy_of(other))  # a model that has never decoded
        assert text == expect_text
        torch.testing.assert_close(logits, expect_logits, rtol=0, atol=1e-12)

    def copy_of(model):
        twin = CharLM(V, cell="lstm", hidden_size=16, num_layers=2, embedding_dim=5).to(next(model.parameters()))
        twin.load_state_dict(model.state_dict())
        return twin

    before, _ = greedy_text(lm)
    optimizer = torch.optim.SGD(lm.parameters(), lr=1.0)
    lm(torch.randint(0, V, (T, B)))[0].logsumexp(-1).sum().backward()
    optimizer.step()  # in place: every parameter's version moves on
    assert_decodes_like(lm, lm)
    assert greedy_text(lm)[0] != before, "the step should change what this model says"
    lm.load_state_dict(fresh.state_dict())
    assert_decodes_like(lm, fresh)
    lm.decoder.bias = torch.nn.Parameter(lm.decoder.bias + 1.0)  # a new tensor, not an in-place change
    lm.rnn.weight_hh_l1 = torch.nn.Parameter(lm.rnn.weight_hh_l1 * 2)
    assert_decodes_like(lm, lm)
    lm.float()
    assert greedy_text(lm)[1].dtype == torch.float32
    assert_decodes_like(lm, lm)


def test_one_hot_mode_is_one_hot_times_a_linear_weight():
    torch.manual_seed(1)
    lm = CharLM(V, cell="gru", hidden_size=8, embedding_dim=0)
    assert not hasattr(lm, "embedding")
    assert lm.input_proj.weight.shape == (8, V)
    tokens = torch.randint(0, V, (T, B))
    explicit = F.one_hot(tokens, V).float() @ lm.input_proj.weight.t()  # the course's version
    torch.testing.assert_close(lm.embed(tokens), explicit)
    logits, _ = lm(tokens)
    logits.sum().backward()
    assert lm.input_proj.weight.grad.shape == (8, V)
    unused = sorted(set(range(V)) - set(tokens.flatten().tolist()))
    assert (lm.input_proj.weight.grad[:, unused] == 0).all()


def test_from_config_reads_every_argument_from_the_config_and_ignores_extras():
    @dataclass
    class ModelConfig:
        cell: str = "rnn"
        hidden_size: int = 16
        num_layers: int = 2
        dropout: float = 0.1
        embedding_dim: int = 4
        nonlinearity: str = "relu"
        bias: bool = False
        forget_bias: float = 1.0
        backend: str = "reference"
        unrelated: str = "ignored"

    lm = CharLM.from_config(ModelConfig(), vocab_size=V)
    assert lm.rnn.nonlinearity == "relu" and lm.rnn.num_layers == 2 and not lm.rnn.bias
    assert lm.rnn.hidden_size == 16 and lm.embedding.embedding_dim == 4 and lm.rnn.dropout == 0.1
    lstm = CharLM.from_config(ModelConfig(cell="lstm", bias=True), vocab_size=V)
    assert (lstm.rnn.bias_ih_l0[16:32] > 0.5).all(), "forget_bias=1.0 shifts the forget slice"
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        CharLM.from_config(ModelConfig(cell="transformer"), vocab_size=V)


def test_lengths_and_state_layout():
    torch.manual_seed(2)
    lm = CharLM(V, cell="lstm", hidden_size=8, num_layers=2).eval()
    tokens = torch.randint(0, V, (T, B))
    lengths = torch.tensor([6, 2, 4])
    _, (h, c) = lm(tokens, lengths=lengths)
    assert h.shape == c.shape == (2, B, 8)
    _, (h_short, _) = lm(tokens[:2, 1:2])
    torch.testing.assert_close(h[:, 1:2], h_short)
    zeros = lm.init_state(B)
    assert all(z.shape == (2, B, 8) and (z == 0).all() for z in zeros)


def test_beam_reorder_is_index_select_on_dim_1():
    torch.manual_seed(3)
    lm = CharLM(V, cell="lstm", hidden_size=8, num_layers=2).eval()
    tokens = torch.randint(0, V, (4, B))
    _, state = lm(tokens)
    idx = torch.tensor([2, 2, 0])
    reordered = tuple(s.index_select(1, idx) for s in state)
    nxt = torch.randint(0, V, (B,))
    log_probs, _ = lm.step(nxt, reordered)
    ref, _ = lm(torch.cat([tokens[:, idx], nxt[None]]))
    torch.testing.assert_close(log_probs[:, 1:], F.log_softmax(ref[-1], -1)[:, 1:])


def test_gate_recording():
    torch.manual_seed(4)
    lm = CharLM(V, cell="lstm", hidden_size=8, num_layers=2)
    tokens = torch.randint(0, V, (T, B))
    lm(tokens)
    assert lm.gate_activations() == {}, "off by default"
    lm.record_gates(True)
    lm(tokens)
    gates = lm.gate_activations()
    assert set(gates) == {f"layer{i}.{g}" for i in range(2) for g in ("input", "forget", "cell", "output")}
    assert all(g.shape == (T, B, 8) for g in gates.values())
    lm.record_gates(False)
    assert lm.gate_activations() == {}
    gru = CharLM(V, cell="gru", hidden_size=8)
    gru.record_gates()
    gru(tokens)
    assert set(gru.gate_activations()) == {"layer0.reset", "layer0.update", "layer0.candidate"}


def test_step_upcasts_half_precision_log_probs():
    lm = CharLM(V, cell="gru", hidden_size=8).to(torch.bfloat16)
    log_probs, _ = lm.step(torch.tensor([1, 2]))
    assert log_probs.dtype == torch.float32
    full = F.log_softmax(lm.decode(lm.rnn.one_step(lm.embed(torch.tensor([1, 2])))[-1]).float(), -1)
    # the probabilities of every symbol but PAD, unchanged: they sum to 1 - p(PAD)
    torch.testing.assert_close(log_probs.exp().sum(-1), 1 - full[:, PAD].exp(), atol=1e-2, rtol=0)
