"""Compiled CPU kernels for the recurrent layers (C++, built on first use); the Python fused path otherwise.

`build.load()` builds or loads them (once per process), `sequences` wraps them as autograd Functions with
`fused.py`'s signatures. The layers use them for backend "fused"/"auto" on CPU float32/float64.
"""

from rnnkit.models.extension.build import disabled, load, status
from rnnkit.models.extension.sequences import gru_layer, lstm_layer, rnn_layer, stack_step, supports

__all__ = ["disabled", "gru_layer", "load", "lstm_layer", "rnn_layer", "stack_step", "status", "supports"]
