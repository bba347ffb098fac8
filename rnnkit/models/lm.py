"""Character language model: embedding (or one-hot + linear), a recurrent stack, a linear decoder."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data.vocab import PAD
from rnnkit.models.layers import make_layer


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
        self._table: Tensor | None = None  # see input_rows: not a buffer, never saved
        self._table_key: tuple | None = None

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
        embedding = self.embedding.weight if hasattr(self, "embedding") else self.input_proj.weight
        w_ih, _, b_ih, b_hh = self.rnn._weights(0, 0)
        sources = [p for p in (embedding, w_ih, b_ih, b_hh) if p is not None]  # no biases with bias=False
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in sources)
        if key != self._table_key:
            every = torch.arange(self.vocab_size, device=tokens.device)
            self._table, self._table_key = self.rnn.project_input(self.embed(every)), key  # (V, G*H)
        return self._table.index_select(0, tokens)

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
        as it is (the decoders forbid it, `step` gives it probability 0). Per step: one row lookup for layer
        0's input (`input_rows`), then per layer one `addmm` on plain (B, H) views of the state and the cell's
        pointwise update; one stack per state tensor at the end.
        """
        state = self.rnn.step_projected(self.input_rows(tokens), state)
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
