"""Character language model: embedding (or one-hot + linear), a recurrent stack, a linear decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data.vocab import PAD
from rnnkit.errors import ConfigError
from rnnkit.models.layers import LAYERS

_DEFAULTS = {
    "cell": "lstm", "hidden_size": 128, "num_layers": 1, "dropout": 0.0, "embedding_dim": 32,
    "nonlinearity": "tanh", "bias": True, "forget_bias": 1.0,
}


class CharLM(nn.Module):
    """p(x_{t+1} | x_<=t) over a character vocabulary, time-major throughout.

    embedding_dim > 0: nn.Embedding(vocab_size, embedding_dim) feeds the recurrent layer.
    embedding_dim == 0: the course's first version, one-hot vectors through a bias-free linear layer
        of `hidden_size` outputs (parameter `input_proj.weight`, shape (hidden_size, vocab_size)).
    dropout: on the embedding output, between recurrent layers, and before the decoder.
    """

    def __init__(self, vocab_size: int, cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.0, embedding_dim: int = 32, nonlinearity: str = "tanh",
                 bias: bool = True, forget_bias: float = 1.0):
        super().__init__()
        if cell not in LAYERS:
            raise ConfigError(f"model.cell: unknown cell {cell!r}; choose one of {', '.join(LAYERS)}")
        if vocab_size < 1 or embedding_dim < 0:
            raise ConfigError("vocab_size must be positive and model.embedding_dim must be >= 0")
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
        options = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        if cell == "lstm":
            options["forget_bias"] = forget_bias
        self.rnn = LAYERS[cell](input_size, hidden_size, num_layers, bias=bias, dropout=dropout, **options)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    @classmethod
    def from_config(cls, model_cfg, vocab_size: int) -> CharLM:
        """Build from any object with the constructor's names as attributes (extra ones are ignored)."""
        return cls(vocab_size, **{k: getattr(model_cfg, k, v) for k, v in _DEFAULTS.items()})

    def embed(self, tokens: Tensor) -> Tensor:
        """tokens (...) long -> input vectors (..., input_size)."""
        if hasattr(self, "embedding"):
            return self.embedding(tokens)
        return F.embedding(tokens, self.input_proj.weight.t())  # (V, H) view: row x = one_hot(x) @ W.T

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

    def step(self, tokens: Tensor, state=None):
        """One decoding step: tokens (B,) long, state (None = zeros) -> (log_probs (B, V), new state).

        The state's tensors hold the batch on dim 1, so a beam reorder is `s.index_select(1, idx)`
        on each. log_probs are at least float32 (half-precision models are upcast for sampling).
        """
        state = self.rnn.one_step(self.embed(tokens), state)
        h_top = (state[0] if isinstance(state, tuple) else state)[-1]  # (B, H), top layer
        logits = self.decode(h_top)
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))
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
