"""Character language model: embedding (or one-hot + linear), a recurrent stack, a linear decoder."""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data.vocab import PAD
from rnnkit.models import extension
from rnnkit.models.layers import make_layer


class _DecodingPlan(NamedTuple):
    """What a decoding step reads, prepared once for as long as the weights stay the same (`CharLM._plan`)."""

    key: list  # (data_ptr, version) of every parameter when it was made
    sources: list  # those parameters' tensors, detached: kept so that no later tensor can reuse their memory
    table: Tensor  # (V, G*H): layer 0's projected input of every token, biases included
    kind: int  # the cell's code for extension.decode_step
    weights: tuple  # the lists (w_ih, w_hh, b_ih, b_hh) over layers that extension.decode_step takes
    decoder: tuple | None  # (weight, bias) of the decoder when it is a plain nn.Linear, for the same call


class CharLM(nn.Module):
    """p(x_{t+1} | x_<=t) over a character vocabulary, time-major throughout.

    embedding_dim > 0: nn.Embedding(vocab_size, embedding_dim) feeds the recurrent layer.
    embedding_dim == 0: the course's first version, one-hot vectors through a bias-free linear layer
        of `hidden_size` outputs (parameter `input_proj.weight`, shape (hidden_size, vocab_size)).
    dropout: on the embedding output, between recurrent layers, and before the decoder.
    backend: the recurrent layer's ("auto", "reference" or "fused", see `layers.py`).
    """

    def __init__(self, vocab_size: int, cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.0, embedding_dim: int = 32, nonlinearity: str = "tanh",
                 bias: bool = True, forget_bias: float = 1.0, backend: str = "auto"):
        super().__init__()
        self.vocab_size, self.cell = vocab_size, cell
        if embedding_dim > 0:
            self.embedding = nn.Embedding(vocab_size, embedding_dim)
            input_size = embedding_dim
        else:
            # one_hot(x) @ W.T is column x of W: we look the column up instead of building (T, B, V)
            # one-hot tensors, but keep the Linear parameter (and its init) of the course's version.
            # No bias: it would duplicate the recurrent layer's bias_ih.
            self.input_proj = nn.Linear(vocab_size, hidden_size, bias=False)
            input_size = hidden_size
        self.rnn = make_layer(cell, input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                              nonlinearity=nonlinearity, forget_bias=forget_bias, backend=backend)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        self._decoding: _DecodingPlan | None = None  # see _plan: not a buffer, never saved

    @classmethod
    def from_config(cls, model_cfg, vocab_size: int) -> CharLM:
        """Build from a ModelConfig: every constructor argument but vocab_size is read from it (the defaults
        live in rnnkit/config.py alone; extra config fields are ignored)."""
        names = list(inspect.signature(cls.__init__).parameters)[2:]  # after self, vocab_size
        return cls(vocab_size, **{name: getattr(model_cfg, name) for name in names})

    def embed(self, tokens: Tensor) -> Tensor:
        """tokens (...) long -> input vectors (..., input_size)."""
        if hasattr(self, "embedding"):
            return self.embedding(tokens)
        return F.embedding(tokens, self.input_proj.weight.t())  # (V, H) view: row x = one_hot(x) @ W.T

    def input_rows(self, tokens: Tensor) -> Tensor:
        """Layer 0's projected input for tokens (B,) long -> (B, G*H), biases included.

        Without autograd recording (decoding) the embedding is folded into the input projection: a
        (V, G*H) table, rebuilt when a weight it depends on has changed (in-place updates bump a
        tensor's version), of which each step looks up B rows. With recording, it is computed directly
        so that gradients reach the embedding.
        """
        if torch.is_grad_enabled():
            return self.rnn.project_input(self.embed(tokens))
        return self._plan().table.index_select(0, tokens)

    def _plan(self) -> _DecodingPlan:
        """The decoding plan (table and weight lists), rebuilt when a parameter has changed since it was made:
        an in-place update (an optimizer step, load_state_dict, torch.no_grad() + copy_) bumps a tensor's version;
        a new tensor (a replaced Parameter, `.to(dtype)`) has a new address, as the plan keeps the old alive.
        Checking costs ~3 us a step; the table is a (V, E) x (E, G*H) product."""
        modules = self._modules
        sources = [p for name in ("embedding", "input_proj", "rnn", "decoder") if (m := modules.get(name)) is not None
                   for p in m._parameters.values() if p is not None]
        key = [(p.data_ptr(), p._version) for p in sources]
        plan = self._decoding
        if plan is None or plan.key != key:
            every = torch.arange(self.vocab_size, device=sources[0].device)
            decoder = (self.decoder.weight, self.decoder.bias) if type(self.decoder) is nn.Linear else None
            plan = self._decoding = _DecodingPlan(key, [p.detach() for p in sources],
                                                  self.rnn.project_input(self.embed(every)),  # (V, G*H)
                                                  self.rnn.step_kind(), self.rnn.step_weights(), decoder)
        return plan

    def decode(self, h: Tensor) -> Tensor:
        """Hidden states (..., H) -> logits (..., V)."""
        return self.decoder(h)

    def forward(self, tokens: Tensor, state=None, lengths: Tensor | None = None):
        """tokens (T, B) long -> (logits (T, B, V), final state in the recurrent layer's layout).

        lengths (B,): padded steps leave the state alone and get the logits of a zero hidden state.
        """
        x = self.drop(self.embed(tokens))  # (T, B, E)
        out, state = self.rnn(x, state, lengths)  # (T, B, H)
        return self.decode(self.drop(out)), state

    def step_logits(self, tokens: Tensor, state=None):
        """One decoding step: tokens (B,) long, state (None = zeros) -> (logits (B, V), new state).

        The state's tensors hold the batch on dim 1, so a beam reorder is `s.index_select(1, idx)`
        on each. Logits are at least float32 (half-precision models are upcast for sampling); PAD's is left
        as it is (the decoders forbid it, `step` gives it probability 0). Without autograd on the compiled
        kernels, the whole step, decoder included, is one C++ call in this thread that looks layer 0's input up
        in the plan's table (`_plan`); otherwise one row lookup for layer 0's input (`input_rows`), then per layer
        one `addmm` on plain (B, H) views of the state and the cell's pointwise update, one stack per state
        tensor at the end, and the decoder.
        """
        rnn = self.rnn
        if not torch.is_grad_enabled() and rnn.backend != "reference":
            plan = self._plan()
            if rnn.compiled_step(plan.table):
                states = rnn._initial_states(state, tokens.shape[0], plan.table)
                states, logits = extension.decode_step(plan.kind, plan.table, tokens, states, plan.weights,
                                                       plan.decoder)
                state = rnn._public_state(states)
                if logits is not None:
                    return logits, state  # float32 or float64 already
            else:
                state = rnn.step_projected(plan.table.index_select(0, tokens), state)
        else:
            state = rnn.step_projected(self.input_rows(tokens), state)
        h_top = (state[0] if isinstance(state, tuple) else state)[-1]  # (B, H), top layer
        logits = self.decode(h_top)
        return logits.to(torch.promote_types(logits.dtype, torch.float32)), state

    def step(self, tokens: Tensor, state=None):
        """One decoding step: tokens (B,) long, state (None = zeros) -> (log_probs (B, V), new state);
        see `step_logits`."""
        logits, state = self.step_logits(tokens, state)
        log_probs = F.log_softmax(logits, dim=-1)
        # PAD is never a target, so its logit is never trained down: a young model would emit it. It is not a
        # symbol of the language; forbid it without renormalising, so that decoders report the same
        # log-probabilities as the teacher-forced forward pass (and bits per character).
        log_probs[:, PAD] = float("-inf")
        return log_probs, state

    def init_state(self, batch_size: int, device=None):
        """Zero state for `batch_size` sequences: h (L, B, H), or (h, c) for an LSTM."""
        return self.rnn.init_state(batch_size, device)

    def record_gates(self, on: bool = True) -> None:
        """Switch gate recording on or off for the following forward passes (off by default)."""
        self.rnn.record_gates = on
        if not on:
            self.rnn.last_gates = {}

    def gate_activations(self) -> dict[str, Tensor]:
        """Gates of the last forward with recording on: {"layer0.forget": (T, B, H), ...}, detached."""
        return self.rnn.last_gates
