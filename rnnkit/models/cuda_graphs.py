"""Capture a whole fixed-shape training step (forward, backward, optimizer step) as CUDA graphs, per shape.

Eager recurrent layers launch several small kernels per time step; replaying a captured CUDA graph
removes the per-launch CPU cost (see docs/ANCHORS.md: a hand-written LSTM went from ~10x slower than
cuDNN to ~0.66x with the step captured). A graph replays fixed addresses and shapes, so:

- inputs are copied into static buffers owned by the graph (`GraphedStep.__call__` does it);
- each distinct input signature (shapes, dtypes) gets its own graph: pad the time axis up to a bucket
  (`bucket_length`, `pad_time`) and pass a mask/lengths tensor so padding changes nothing, which keeps
  the number of graphs small (one per multiple of 16 steps by default);
- the step must be capturable: no CPU synchronisation inside (`.item()`, printing a loss, `if nan:`),
  no shape-dependent Python branching on tensor values, an optimizer whose state lives on the GPU
  (SGD; Adam/AdamW with `capturable=True`); gradient clipping with `clip_grad_norm_(...,
  error_if_nonfinite=False)` is fine. GradScaler (AMP) is not capturable in general.
- the step function should begin with `optimizer.zero_grad(set_to_none=True)`: during capture the
  backward then allocates the gradients inside the graph's memory pool, and every replay rewrites them.

Usage:
    def train_step(tokens, targets, lengths):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(tokens, lengths), targets, lengths)
        loss.backward()
        optimizer.step()
        return loss

    step = GraphedStep(train_step) if torch.cuda.is_available() else train_step
    loss = step(tokens, targets, lengths)  # a static tensor: read it (.item()) before the next call

Learning-rate schedulers that change `param_group["lr"]` (a Python float) have no effect on a captured
graph; keep the lr in a GPU tensor (`torch.optim.SGD(..., lr=torch.tensor(1e-3, device="cuda"))`) and
update it in place if the schedule matters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def bucket_length(length: int, multiple: int = 16) -> int:
    """The smallest multiple of `multiple` that is >= length (at least `multiple`)."""
    if length < 0 or multiple < 1:
        raise ValueError(f"need length >= 0 and multiple >= 1, got {length}, {multiple}")
    return max(multiple, -(-length // multiple) * multiple)


def pad_time(x: Tensor, length: int, value: float = 0) -> Tensor:
    """Pad a time-major tensor (T, ...) with `value` along dim 0 up to `length` steps (>= T)."""
    T = x.shape[0]
    if length < T:
        raise ValueError(f"cannot pad {T} steps down to {length}")
    if length == T:
        return x
    pad = x.new_full((length - T, *x.shape[1:]), value)
    return torch.cat([x, pad])


def _signature(args: tuple) -> tuple:
    """Key of a call: shapes, dtypes and devices of tensor arguments, values of the others."""
    return tuple((tuple(a.shape), a.dtype, a.device) if isinstance(a, Tensor) else ("value", a) for a in args)


class _Captured:
    """One graph: its static inputs and what the step returned during capture."""

    def __init__(self, graph, static_inputs: tuple, static_output):
        self.graph, self.static_inputs, self.static_output = graph, static_inputs, static_output


class GraphedStep:
    """Wrap `step_fn(*tensors) -> loss` (forward + backward + optimizer.step) into CUDA graph replays.

    The first call with a new input signature warms up `warmup` eager steps on a side stream (cuBLAS /
    cuDNN workspaces, optimizer state, compiled kernels), then captures one step and replays it; later
    calls copy their inputs into the static buffers and replay. Non-tensor arguments are part of the key.

    restore: the models and optimizers the step updates. The warm-up steps are then undone before the
    capture (parameters copied back in place; optimizer state tensors created by the warm-up zeroed,
    which is a fresh state for SGD without dampening and Adam/AdamW), so that every call, the first
    included, is exactly one training step. Without it the first call of each signature trains
    `warmup + 1` times on its batch.
    """

    def __init__(self, step_fn: Callable[..., object], warmup: int = 3, share_pool: bool = False,
                 restore: Sequence[object] = ()):
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device; call step_fn directly on CPU")
        self.step_fn, self.warmup, self.share_pool = step_fn, warmup, share_pool
        self.restore = tuple(restore)
        self.graphs: dict[tuple, _Captured] = {}
        self._pool = None

    def __call__(self, *args):
        key = _signature(args)
        captured = self.graphs.get(key)
        if captured is None:
            captured = self.graphs[key] = self._capture(args)
            return captured.static_output  # the capture already ran this step's work
        for static, a in zip(captured.static_inputs, args, strict=True):
            if isinstance(a, Tensor):
                static.copy_(a, non_blocking=True)
        captured.graph.replay()
        return captured.static_output

    def _capture(self, args: tuple) -> _Captured:
        device = next((a.device for a in args if isinstance(a, Tensor) and a.is_cuda), None)
        if device is None:
            raise ValueError("GraphedStep needs at least one CUDA tensor argument")
        static = tuple(a.detach().clone() if isinstance(a, Tensor) else a for a in args)
        # Warm up on a side stream, as the CUDA graphs notes require: lazy initialisations must not
        # happen during capture, and the capture stream must not be the default stream.
        snapshots = [_snapshot(obj) for obj in self.restore]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.step_fn(*static)
        torch.cuda.current_stream(device).wait_stream(side)
        for obj, snap in zip(self.restore, snapshots, strict=True):
            _rewind(obj, snap)
        graph = torch.cuda.CUDAGraph()
        # Sharing one pool between graphs saves memory; it is safe because the graphs never run
        # concurrently and each graph's outputs stay referenced (so they are not reused by another).
        pool = self._pool if self.share_pool else None
        with torch.cuda.graph(graph, pool=pool):
            output = self.step_fn(*static)
        if self.share_pool and self._pool is None:
            self._pool = graph.pool()
        # The capture recorded the kernels without running them: run this step once for real.
        graph.replay()
        return _Captured(graph, static, output)


def _snapshot(obj) -> dict:
    """Copies of the tensors a module (parameters, buffers) or optimizer (state) holds now."""
    if isinstance(obj, torch.optim.Optimizer):
        return {id(p): {k: v.detach().clone() if isinstance(v, Tensor) else copy.copy(v) for k, v in st.items()}
                for p, st in obj.state.items()}
    return {k: v.detach().clone() for k, v in obj.state_dict(keep_vars=True).items()}


def _rewind(obj, snap: dict) -> None:
    """Write a snapshot back in place (same tensors, so addresses stay valid for the capture)."""
    with torch.no_grad():
        if isinstance(obj, torch.optim.Optimizer):
            for p, st in obj.state.items():
                before = snap.get(id(p), {})
                for k, v in st.items():
                    if isinstance(v, Tensor):
                        v.copy_(before[k]) if k in before else v.zero_()
            return
        for k, v in obj.state_dict(keep_vars=True).items():
            v.copy_(snap[k])
