"""Recurrent models: cells (one step), layers (a cell over time), the character LM and its loss."""

from rnnkit.models.layers import GRU, LAYERS, LSTM, RNN
from rnnkit.models.lm import CharLM
from rnnkit.models.losses import lengths_to_mask, masked_cross_entropy
from rnnkit.models.protocols import RecordsGates

__all__ = ["RNN", "GRU", "LSTM", "LAYERS", "CharLM", "masked_cross_entropy", "lengths_to_mask",
           "RecordsGates"]
