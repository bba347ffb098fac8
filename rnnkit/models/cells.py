"""One time step of each recurrent cell (Elman, GRU, LSTM), with torch.nn's weight layout and gate order."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Gate names in the order torch.nn stacks them in `weight_ih` / `weight_hh` (rows of blocks of H).
# Keeping torch's order means `state_dict`s exchange with torch.nn modules without any permutation.
LSTM_GATES = ("input", "forget", "cell", "output")
GRU_GATES = ("reset", "update", "candidate")

_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


def activation(nonlinearity: str):
    """The Elman cell's activation function for `nonlinearity` ("tanh" or "relu")."""
    try:
        return _NONLINEARITIES[nonlinearity]
    except KeyError:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}") from None


# --- Pointwise updates --------------------------------------------------------------------------
# The layers compute the matrix products themselves (the input projection of all time steps is one
# matmul before the loop), then call these functions on the pre-activations of one step. The cell
# functions further down do both parts for a single step, as in the course.


def rnn_update(preactivation: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """Elman update: `h_t = f(U x_t + b_ih + W h_{t-1} + b_hh)` from its pre-activation (B, H)."""
    return activation(nonlinearity)(preactivation)


def lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """LSTM update from the summed pre-activations `gates` (B, 4H) and the cell state `c` (B, H).

    Returns `(h_t, c_t, (i, f, g, o))`, each (B, H), where (course notation, `[h, x]` products split
    into `W_ih x + W_hh h`):
      i = sigmoid(.)  input gate        f = sigmoid(.)  forget gate
      g = tanh(.)     candidate ("cell gate" in torch)   o = sigmoid(.)  output gate
      c_t = f * c_{t-1} + i * g         h_t = o * tanh(c_t)
    """
    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H), torch's order
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = torch.addcmul(f * c, i, g)
    h = o * torch.tanh(c)
    return h, c, (i, f, g, o)


def gru_update(gx: Tensor, gh: Tensor, h: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    """GRU update from the input part `gx = W_ih x + b_ih` (B, 3H), the recurrent part
    `gh = W_hh h + b_hh` (B, 3H) and the previous state `h` (B, H).

    Returns `(h_t, (r, z, n))`, each (B, H), with torch's conventions:
      r = sigmoid(gx_r + gh_r)          reset gate
      z = sigmoid(gx_z + gh_z)          update gate
      n = tanh(gx_n + r * gh_n)         candidate (the reset gate multiplies W_hn h + b_hn)
      h_t = (1 - z) * n + z * h_{t-1}
    The course writes `h_t = (1 - z) h_{t-1} + z n`: its z is torch's `1 - z`. We follow torch so that
    weights exchange exactly; the two parametrisations describe the same family of models.
    """
    x_r, x_z, x_n = gx.chunk(3, dim=1)  # 3 x (B, H)
    h_r, h_z, h_n = gh.chunk(3, dim=1)  # 3 x (B, H)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(torch.addcmul(x_n, r, h_n))
    # n + z * (h - n) == (1 - z) * n + z * h, one kernel fewer.
    h = torch.addcmul(n, z, h - n)
    return h, (r, z, n)


# --- Whole cells: one time step, products included ----------------------------------------------


def rnn_cell(
    x: Tensor,
    h: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One Elman step: x (B, D), h (B, H), weight_ih (H, D), weight_hh (H, H) -> h_t (B, H)."""
    pre = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (B, H)
    return rnn_update(pre, nonlinearity)


def gru_cell(
    x: Tensor,
    h: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> Tensor:
    """One GRU step: x (B, D), h (B, H), weight_ih (3H, D), weight_hh (3H, H) -> h_t (B, H)."""
    h_new, _ = gru_update(F.linear(x, weight_ih, bias_ih), F.linear(h, weight_hh, bias_hh), h)
    return h_new


def lstm_cell(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step: x (B, D), state (h, c) each (B, H), weight_ih (4H, D), weight_hh (4H, H)
    -> (h_t, c_t) each (B, H)."""
    h, c = state
    gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (B, 4H)
    h, c, _ = lstm_update(gates, c)
    return h, c
