"""Compiled CPU kernels for the recurrent layers (C++, built on first use); the Python fused path otherwise.

`build.load()` builds or loads them (once per process), `sequences` wraps them as autograd Functions with
`fused.py`'s signatures. The layers use them for backend "fused"/"auto" on CPU float32/float64.
"""

from rnnkit.models.extension.build import disabled, load, status
from rnnkit.models.extension.sequences import decode_step, gru_layer, lstm_layer, rnn_layer, step_kind, supports

__all__ = ["decode_step", "disabled", "gru_layer", "load", "lstm_layer", "rnn_layer", "status", "step_kind", "supports"]
