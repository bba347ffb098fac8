"""The recurrent state carried from batch to batch by truncated BPTT (data.mode: stream): detached between
batches, gathered from every process into the `last` checkpoint, and handed back row by row on resume.

A state is what the model returns: None (zeros), a tensor h, or a tuple such as (h, c), each tensor
(layers, rows, hidden) with the rows on dim 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnkit.training.distributed import DistEnv, all_gather_rows

State = Any  # None | Tensor | tuple[Tensor, ...]


def detach(state: State) -> State:
    """The same state cut from the graph of the batch that made it: the next batch backpropagates no further."""
    if state is None or isinstance(state, Tensor):
        return None if state is None else state.detach()
    return tuple(t.detach() for t in state)


def checkpoint_tensors(state: State, env: DistEnv) -> dict[str, Tensor] | None:
    """The state of every process's rows, in rank order, as named CPU tensors for the checkpoint (None when
    there is none). Every process must call it: under torchrun the rows are gathered."""
    if state is None:
        return None
    parts = (state,) if isinstance(state, Tensor) else state
    gathered = [all_gather_rows(t, env).cpu() for t in parts]
    if isinstance(state, Tensor):
        return {"state": gathered[0]}
    return {f"state.{i}": t for i, t in enumerate(gathered)}


def from_checkpoint(tensors: dict[str, Tensor], env: DistEnv, device: torch.device) -> State:
    """This process's rows of a saved state (see `checkpoint_tensors`); None when nothing was saved."""
    if not tensors:
        return None

    def mine(t: Tensor) -> Tensor:
        rows = t.shape[1] // env.world
        return t[:, env.rank * rows:(env.rank + 1) * rows].contiguous().to(device)

    if "state" in tensors:
        return mine(tensors["state"])
    return tuple(mine(tensors[f"state.{i}"]) for i in range(len(tensors)))
