"""Recurrent layers (RNN, GRU, LSTM): a cell run over time-major (T, B, D) sequences, lengths aware.

Parameters carry torch.nn's names (`weight_ih_l0`, `bias_hh_l1_reverse`, ...) and gate order, so a
`state_dict` moves between these layers and `torch.nn.RNN/GRU/LSTM` unchanged (`from_torch`, `to_torch`).

Two backends compute the same function (`backend=`, the config's `model.backend`):
- "reference": the readable loop below, autograd recording every op of every step: the definition the
  others are tested against;
- "fused": per (layer, direction) one autograd.Function with a hand-written backward through time: on
  CPU in float32/float64 the compiled kernels (`extension/`, built on first use, input projection
  included), elsewhere or without a C++ compiler the Python Functions of `fused.py`;
- "auto" (default): fused or reference by the measured rule of `auto_takes_fused` where fused runs (CPU
  or CUDA; float32, float64, bfloat16; no autocast), reference otherwise. Recording gates or hidden
  states (TensorBoard histograms, inspect-grads) always takes the reference loop, which is the one that
  can keep every step's tensors.

The reference time loop follows the techniques that pay in eager PyTorch:
- the input projection of all time steps is one matmul before the loop (it does not depend on h);
- each step does one `addmm` for all gates, then a few pointwise ops (see `cells.py`);
- the projected input is split with `unbind(0)` and the outputs joined with one `torch.stack`:
  indexing `xw[t]` inside the loop would make each step's backward write a gradient the size of the
  whole tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.models import extension, fused
from rnnkit.models.cells import GRU_GATES, LSTM_GATES, activation, gru_update, lstm_update
from rnnkit.models.losses import lengths_to_mask

State = tuple[Tensor, ...]  # internal form: (h,) or (h, c), each (B, H) per layer/direction
BACKENDS = ("auto", "reference", "fused")
_FUSED_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def fused_unsupported(x: Tensor) -> str | None:
    """Why the fused backend cannot run on input x, or None when it can."""
    if x.device.type not in ("cpu", "cuda"):
        return f"device {x.device.type} (CPU and CUDA only)"
    if x.dtype not in _FUSED_DTYPES and not (x.dtype == torch.float16 and x.is_cuda):
        return f"dtype {x.dtype}"
    if torch.is_autocast_enabled(x.device.type):
        return "autocast (mixed precision) is on"
    return None


def compiled_kernels(x: Tensor) -> bool:
    """Whether the fused path runs on the compiled kernels for input x (`extension`: CPU float32 and float64,
    when they build and load), rather than on the Python Functions of `fused.py` (any device and dtype)."""
    return extension.supports(x) and extension.load()


def auto_takes_fused(layer: _RecurrentLayer, x: Tensor) -> bool:
    """backend "auto": the fused path or the reference loop for input x (T, B, D), by the measured rule below.

    Figures: two runs of `python bench/run.py --threads 1 --clock cpu`, a training step (embedding 64, one
    layer, forward + backward + SGD), torch.nn time / variant time on this project's 2-core CPU (torch 2.13)
    at (B, T, H) = (32,100,256) (64,100,512) (128,256,512) (64,100,1024); README ## Speed has the tables.
    - Compiled kernels (CPU float32/float64, when they build): LSTM 1.32/1.24 1.36/1.31 1.22/1.20 1.05/1.06,
      GRU 2.12/2.21 2.32/2.37 2.25/2.49 2.27/2.38, Elman 1.78/1.89 2.16/2.25 2.22/2.17 2.45/2.35, against at
      most 1.07 for the reference loop and 1.10 for the Python Functions: always fused.
    - CUDA: the fused Functions (unmeasured: no GPU figure yet; the reference loop launches more per step).
    - CPU without the compiled kernels, reference | Python fused, run 1, run 2:
      LSTM  0.57 0.56 | 0.51 0.51   0.51 0.49 | 0.50 0.50   0.46 0.44 | 0.47 0.46   0.41 0.40 | 0.44 0.44
      GRU   0.99 1.00 | 0.97 1.04   0.96 0.98 | 0.84 0.87   0.94 0.96 | 0.53 0.84   0.97 1.01 | 0.95 0.98
      Elman 1.06 1.07 | 1.10 1.06   0.97 0.98 | 1.01 0.99   1.04 1.01 | 1.01 0.94   1.01 1.01 | 1.10 0.99
      So by B*T*H: the LSTM takes fused above 2**20 (its per-step launches cost most on small sequences),
      the GRU up to 2**20 (its all-steps backward factors cost memory beyond: 1.4 GB against 0.7 GB at
      (128,256,512)), the Elman RNN up to 2**23. Differences under ~0.05 are within the runs' noise.
    """
    if compiled_kernels(x) or x.device.type != "cpu":
        return True
    size = x.shape[0] * x.shape[1] * layer.hidden_size
    return {"lstm": size > 2**20, "gru": size <= 2**20, "rnn": size <= 2**23}[layer._cell]


class _RecurrentLayer(nn.Module):
    """Shared machinery: parameters, the time loop, lengths, stacking, directions, torch exchange."""

    num_gates: int  # blocks of H rows stacked in weight_ih / weight_hh
    state_size: int  # 1 for h, 2 for (h, c)
    gate_names: tuple[str, ...]  # what `_step` returns, recorded when `record_gates` is on
    torch_class: type[nn.RNNBase]
    fold_hh_bias = True  # add bias_hh into the hoisted input projection (not possible for GRU)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
                 backend="auto"):
        super().__init__()
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError("input_size, hidden_size and num_layers must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.backend = backend  # may be changed between forward passes
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.dropout, self.bidirectional = bias, float(dropout), bidirectional
        self.num_directions = 2 if bidirectional else 1
        # Off by default: recording stacks and detaches every gate of every step.
        self.record_gates = False
        self.last_gates: dict[str, Tensor] = {}
        # Opt-in for inspect-grads: keep every step's h_t, the tensor fed both to the output and to step
        # t+1, so that torch.autograd.grad(loss, h_t) is the TOTAL dL/dh_t. Needs this reference loop (a
        # fused backend must fall back to it when this is on). {"layer0": [h_0 .. h_T-1], ...}
        self.record_hidden = False
        self.last_hidden: dict[str, list[Tensor]] = {}
        self.last_cell: dict[str, list[Tensor]] = {}  # LSTM, with record_hidden: every step's c_t, same keys
        rows = self.num_gates * hidden_size
        # Registration order (layer, direction, w_ih, w_hh, b_ih, b_hh) is torch's, so that the same
        # seed gives the same initial weights as torch.nn.
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                sfx = self._suffix(layer, direction)
                self.register_parameter("weight_ih" + sfx, nn.Parameter(torch.empty(rows, layer_input)))
                self.register_parameter("weight_hh" + sfx, nn.Parameter(torch.empty(rows, hidden_size)))
                if bias:
                    self.register_parameter("bias_ih" + sfx, nn.Parameter(torch.empty(rows)))
                    self.register_parameter("bias_hh" + sfx, nn.Parameter(torch.empty(rows)))
        # Subclasses set their options, then call reset_parameters().

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter uniform in ±1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    def _weights(self, layer: int, direction: int):
        sfx = self._suffix(layer, direction)
        w_ih, w_hh = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, "bias_ih" + sfx), getattr(self, "bias_hh" + sfx)

    # --- Per-kind hooks ---------------------------------------------------------------------------

    def _step(self, xw_t: Tensor, state: State, w_hh_t: Tensor, b_hh: Tensor | None):
        """One step from the projected input (B, G*H) -> (new state, gate tensors)."""
        raise NotImplementedError

    def _fused(self, xw: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None, mask: Tensor | None,
               reverse: bool):
        """The whole sequence on the Python fast path (`fused.py`): xw (T, B, G*H), mask (T, B) bool or None
        -> (outputs (T, B, H), final state)."""
        raise NotImplementedError

    def _compiled(self, x: Tensor, state: State, weights: tuple, mask: Tensor | None, reverse: bool):
        """The same from the layer input x (T, B, D), projection included, on the compiled kernels."""
        raise NotImplementedError

    def _project(self, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
        """Input projection of all steps at once: x (..., D) -> (..., G*H), biases included."""
        bias = b_ih
        if self.fold_hh_bias and b_hh is not None:
            bias = b_ih + b_hh
        x2d = x.reshape(-1, x.shape[-1])  # (T*B, D)
        out = torch.mm(x2d, w_ih.t()) if bias is None else torch.addmm(bias, x2d, w_ih.t())
        return out.view(*x.shape[:-1], -1)

    # --- Forward ----------------------------------------------------------------------------------

    def forward(self, x, state=None, lengths=None):
        """Run the stack over a sequence.

        x: (T, B, D) tensor, or a PackedSequence (then the output is a PackedSequence too).
        state: None (zeros), or the final_state layout below, in the batch's order.
        lengths: optional (B,) ints; steps t >= lengths[b] are padding: they leave the state alone,
            their outputs are zero and no gradient flows through them.
        Returns (outputs (T, B, H*dirs), final_state): final_state is h_n, or (h_n, c_n) for LSTM,
        each (num_layers*dirs, B, H), index layer*dirs + direction, as torch.nn.
        """
        if isinstance(x, PackedSequence):
            if lengths is not None:
                raise ValueError("pass lengths or a PackedSequence, not both")
            return self._forward_packed(x, state)
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"expected input (T, B, {self.input_size}) time-major, got {tuple(x.shape)}")
        T, B, _ = x.shape
        if T == 0:
            raise ValueError("empty sequence: T must be at least 1")
        mask = None
        if lengths is not None:
            mask = lengths_to_mask(lengths, T).to(x.device).unsqueeze(-1)  # (T, B, 1) bool
            if mask.shape[1] != B:
                raise ValueError(f"lengths has {mask.shape[1]} entries for a batch of {B}")
        states = self._initial_states(state, B, x)
        if self.record_hidden:
            self.last_hidden, self.last_cell = {}, {}  # filled by _scan
        scan = self._scan_fused if self.uses_fused(x) else self._scan
        finals, gates = [], {}
        out = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                out = F.dropout(out, self.dropout, training=True)  # between layers, not after the last
            per_direction = []
            for direction in range(self.num_directions):
                idx = layer * self.num_directions + direction
                y, final, step_gates = scan(out, tuple(s[idx] for s in states), layer, direction, mask)
                per_direction.append(y)
                finals.append(final)
                if step_gates is not None:
                    gates.update(self._stack_gates(step_gates, layer, direction, mask))
            out = per_direction[0] if len(per_direction) == 1 else torch.cat(per_direction, dim=2)  # (T, B, 2H)
        if self.record_gates:
            self.last_gates = gates
        final_state = tuple(torch.stack([f[k] for f in finals]) for k in range(self.state_size))
        return out, self._public_state(final_state)

    def uses_fused(self, x: Tensor) -> bool:
        """Whether a forward pass on x takes the fused path (see the module docstring).

        backend "fused" where the fast path cannot run raises, rather than silently running the slow
        loop; recording gates or hidden states is the exception: it needs the reference loop.
        """
        if self.backend == "reference" or self.record_gates or self.record_hidden:
            return False
        reason = fused_unsupported(x)
        if reason is not None and self.backend == "fused":
            raise ValueError(f"backend 'fused' cannot run here: {reason}; use backend 'auto' or 'reference'")
        return reason is None and (self.backend == "fused" or auto_takes_fused(self, x))

    def path(self, x: Tensor) -> str:
        """Which implementation a forward pass on x runs: "reference", "python fused" or "compiled"."""
        if not self.uses_fused(x):
            return "reference"
        return "compiled" if compiled_kernels(x) else "python fused"

    def _scan_fused(self, x: Tensor, state: State, layer: int, direction: int, mask: Tensor | None):
        """`_scan` on the fast path, same arguments and results (never gates).

        The reverse direction walks t = T-1 .. 0 (padding first: masked steps carry the initial state to
        each sequence's own last step).
        """
        weights = self._weights(layer, direction)  # w_ih, w_hh, b_ih, b_hh
        m = mask[..., 0] if mask is not None else None  # (T, B)
        if compiled_kernels(x):
            out, final = self._compiled(x, state, weights, m, bool(direction))
            return out, final, None
        w_ih, w_hh, b_ih, b_hh = weights
        xw = self._project(x, w_ih, b_ih, b_hh)  # (T, B, G*H)
        out, final = self._fused(xw, state, w_hh, b_hh, m, bool(direction))
        return out, final, None

    def _scan(self, x: Tensor, state: State, layer: int, direction: int, mask: Tensor | None):
        """One direction of one layer: x (T, B, D) -> (outputs (T, B, H), final state, gates or None).

        The reverse direction walks t = T-1 .. 0; with lengths, the padded steps it meets first leave
        its initial state alone, so it effectively starts at each sequence's own last real step.
        """
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
        xw = self._project(x, w_ih, b_ih, b_hh)  # (T, B, G*H)
        w_hh_t = w_hh.t()  # (H, G*H), transposed once, not per step
        steps = xw.unbind(0)
        masks = mask.unbind(0) if mask is not None else None
        T = len(steps)
        outputs: list = [None] * T
        recorded: list | None = [None] * T if self.record_gates else None
        hidden: list | None = [None] * T if self.record_hidden else None
        cells: list | None = [None] * T if self.record_hidden and self.state_size == 2 else None
        for t in range(T - 1, -1, -1) if direction else range(T):
            new_state, step_gates = self._step(steps[t], state, w_hh_t, b_hh)
            if masks is None:
                outputs[t] = new_state[0]
            else:
                m = masks[t]  # (B, 1); where() sends no gradient to the branch not taken
                new_state = tuple(torch.where(m, n, s) for n, s in zip(new_state, state, strict=True))
                outputs[t] = torch.where(m, new_state[0], 0.0)
            state = new_state
            if recorded is not None:
                recorded[t] = [g.detach() for g in step_gates]
            if hidden is not None:
                hidden[t] = state[0]
            if cells is not None:
                cells[t] = state[1]
        name = f"layer{layer}" + (".reverse" if direction else "")
        if hidden is not None:
            self.last_hidden[name] = hidden
        if cells is not None:
            self.last_cell[name] = cells
        return torch.stack(outputs), state, recorded

    def _stack_gates(self, recorded: list, layer: int, direction: int, mask: Tensor | None) -> dict:
        sfx = ".reverse" if direction else ""
        gates = {}
        for k, name in enumerate(self.gate_names):
            g = torch.stack([step[k] for step in recorded])  # (T, B, H)
            gates[f"layer{layer}.{name}{sfx}"] = g if mask is None else g * mask  # zero on padding
        return gates

    def _forward_packed(self, packed: PackedSequence, state):
        # pad_packed_sequence restores the caller's batch order; torch.nn takes and returns the state in
        # that order too, so the padded path applies unchanged.
        padded, lengths = pad_packed_sequence(packed)
        out, final = self.forward(padded, state, lengths)
        if packed.sorted_indices is not None:
            out = out.index_select(1, packed.sorted_indices)
            lengths = lengths[packed.sorted_indices.cpu()]
        data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
        return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), final

    # --- State handling ---------------------------------------------------------------------------

    def _public_state(self, state: State):
        return state[0] if self.state_size == 1 else state

    def _initial_states(self, state, batch: int, like: Tensor) -> State:
        """The state in internal tuple form, each (num_layers*dirs, B, H); None means zeros."""
        shape = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if state is None:
            zeros = like.new_zeros(shape)
            return (zeros,) * self.state_size
        states = (state,) if isinstance(state, Tensor) else tuple(state)
        if len(states) != self.state_size or any(s.shape != shape for s in states):
            got = [tuple(s.shape) for s in states]
            want = "h_0" if self.state_size == 1 else "(h_0, c_0)"
            raise ValueError(f"expected state {want} with shape {shape}, got {got}")
        return states

    def init_state(self, batch_size: int, device=None, dtype=None):
        """Zero state in final_state layout: (num_layers*dirs, B, H), or a pair of them for LSTM."""
        ref = self.weight_hh_l0
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        device, dtype = device or ref.device, dtype or ref.dtype
        return self._public_state(tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.state_size)))

    def one_step(self, x_t: Tensor, state=None):
        """The course's step: x_t (B, D) and a state (final_state layout, None = zeros) -> new state.

        With several layers, layer l's new h is layer l+1's input at the same step, so one call
        advances the whole stack by one time step (what `forward` does on a length-1 sequence, without
        dropout). The top layer's output is `h_n[-1]`. Bidirectional layers have no step form.
        """
        self._check_steppable()
        return self.step_projected(self.project_input(x_t), state)

    def _check_steppable(self) -> None:
        if self.bidirectional:
            raise ValueError("one_step needs the whole sequence for a bidirectional layer; use forward")

    def project_input(self, x: Tensor) -> Tensor:
        """Layer 0's input projection, biases included: x (..., D) -> (..., G*H).

        A decoder can apply it once to the whole embedding table and look rows up (`CharLM.step`).
        """
        w_ih, _, b_ih, b_hh = self._weights(0, 0)
        return self._project(x, w_ih, b_ih, b_hh)

    def step_projected(self, xw0: Tensor, state=None):
        """`one_step` from layer 0's projected input xw0 (B, G*H) (see `project_input`) -> new state.

        The loop works on plain (B, H) views of the state, one per layer, and stacks once at the end.
        Without autograd, on the compiled kernels (CPU float32/float64, backend other than "reference") the
        whole step is one C++ call that reads each weight once for all rows (`extension.decode_step`).
        """
        self._check_steppable()
        states = self._initial_states(state, xw0.shape[0], xw0)
        if self.compiled_step(xw0):
            new_states, _ = extension.decode_step(self.step_kind(), xw0, None, states, self.step_weights())
            return self._public_state(new_states)
        xw, new = xw0, []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer, 0)
            if layer:
                xw = self._project(new[-1][0], w_ih, b_ih, b_hh)  # (B, G*H)
            s, _ = self._step(xw, tuple(st[layer] for st in states), w_hh.t(), b_hh)
            new.append(s)
        return self._public_state(tuple(torch.stack([s[k] for s in new]) for k in range(self.state_size)))

    def compiled_step(self, x: Tensor) -> bool:
        """Whether a step without autograd runs as one compiled call (`extension.decode_step`) for inputs like x."""
        return self.backend != "reference" and not torch.is_grad_enabled() and compiled_kernels(x)

    def step_kind(self) -> int:
        """This cell's code for `extension.decode_step`."""
        return extension.step_kind(self._cell, getattr(self, "nonlinearity", None))

    def step_weights(self) -> tuple[list, list, list, list]:
        """The lists (w_ih, w_hh, b_ih, b_hh) over layers (direction 0) that `extension.decode_step` takes."""
        weights = [self._weights(layer, 0) for layer in range(self.num_layers)]
        return tuple(list(column) for column in zip(*weights, strict=True))

    # --- Exchange with torch.nn -------------------------------------------------------------------

    def _torch_kwargs(self) -> dict:
        return {}

    @classmethod
    def _kwargs_from_torch(cls, module) -> dict:
        return {}

    @classmethod
    def from_torch(cls, module: nn.RNNBase, backend: str = "auto"):
        """A layer with `module`'s configuration, dtype, device, mode and exactly its weights."""
        if not isinstance(module, cls.torch_class):
            raise TypeError(f"{cls.__name__}.from_torch expects torch.nn.{cls.torch_class.__name__}")
        if module.batch_first:
            raise ValueError("batch_first modules are not supported: rnnkit layers are time-major (T, B, D)")
        if getattr(module, "proj_size", 0):
            raise ValueError("LSTM with proj_size > 0 is not supported")
        layer = cls(
            module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
            dropout=module.dropout, bidirectional=module.bidirectional, backend=backend,
            **cls._kwargs_from_torch(module),
        )
        ref = module.weight_ih_l0
        layer.to(device=ref.device, dtype=ref.dtype)
        layer.load_state_dict(module.state_dict())  # same names: an exact copy
        return layer.train(module.training)

    def to_torch(self) -> nn.RNNBase:
        """The equivalent torch.nn module, with exactly these weights."""
        module = self.torch_class(
            self.input_size, self.hidden_size, self.num_layers, bias=self.bias,
            dropout=self.dropout, bidirectional=self.bidirectional, **self._torch_kwargs(),
        )
        ref = self.weight_ih_l0
        module.to(device=ref.device, dtype=ref.dtype)
        module.load_state_dict(self.state_dict())
        return module.train(self.training)


class RNN(_RecurrentLayer):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu.

    Recorded gates: "layer{l}.preactivation" (before f), useful to see tanh saturation or dead relus.
    """

    num_gates, state_size, gate_names, torch_class = 1, 1, ("preactivation",), nn.RNN
    _cell = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0,
                 bidirectional=False, nonlinearity="tanh", backend="auto"):
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, backend)
        self._activation = activation(nonlinearity)  # validates the name
        self.nonlinearity = nonlinearity
        self.reset_parameters()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"

    def _step(self, xw_t, state, w_hh_t, b_hh):
        pre = torch.addmm(xw_t, state[0], w_hh_t)  # (B, H)
        return (self._activation(pre),), (pre,)

    def _fused(self, xw, state, w_hh, b_hh, mask, reverse):
        out, h = fused.rnn_sequence(xw, state[0], w_hh, self.nonlinearity, mask, reverse)
        return out, (h,)

    def _compiled(self, x, state, weights, mask, reverse):
        out, h = extension.rnn_layer(x, *weights, state[0], self.nonlinearity, mask, reverse)
        return out, (h,)

    def _torch_kwargs(self):
        return {"nonlinearity": self.nonlinearity}

    @classmethod
    def _kwargs_from_torch(cls, module):
        return {"nonlinearity": module.nonlinearity}


class GRU(_RecurrentLayer):
    """Gated recurrent unit (torch's equations, see `cells.gru_update`).

    Recorded gates: "layer{l}.reset", ".update", ".candidate".
    """

    num_gates, state_size, gate_names, torch_class = 3, 1, GRU_GATES, nn.GRU
    _cell = "gru"
    # The reset gate multiplies (W_hn h + b_hn): b_hh must stay inside the recurrent product.
    fold_hh_bias = False

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0, bidirectional=False,
                 backend="auto"):
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, backend)
        self.reset_parameters()

    def _step(self, xw_t, state, w_hh_t, b_hh):
        h = state[0]
        gh = torch.mm(h, w_hh_t) if b_hh is None else torch.addmm(b_hh, h, w_hh_t)  # (B, 3H)
        h, gates = gru_update(xw_t, gh, h)
        return (h,), gates

    def _fused(self, xw, state, w_hh, b_hh, mask, reverse):
        out, h = fused.gru_sequence(xw, state[0], w_hh, b_hh, mask, reverse)
        return out, (h,)

    def _compiled(self, x, state, weights, mask, reverse):
        out, h = extension.gru_layer(x, *weights, state[0], mask, reverse)
        return out, (h,)


class LSTM(_RecurrentLayer):
    """Long short-term memory; the state is (h, c) (see `cells.lstm_update`).

    forget_bias: added to the forget slice of every `bias_ih` at initialisation (0.0 = torch.nn's
    init; 1.0 is the usual choice for language models). Ignored when bias=False.
    Recorded gates: "layer{l}.input", ".forget", ".cell" (torch's cell gate: the tanh candidate g_t),
    ".output".
    """

    num_gates, state_size, gate_names, torch_class = 4, 2, LSTM_GATES, nn.LSTM
    _cell = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, dropout=0.0,
                 bidirectional=False, forget_bias=0.0, backend="auto"):
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, backend)
        self.forget_bias = float(forget_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias and self.forget_bias:
            H = self.hidden_size
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if name.startswith("bias_ih"):
                        p[H:2 * H] += self.forget_bias  # gate order i, f, g, o

    def _step(self, xw_t, state, w_hh_t, b_hh):
        h, c = state
        gates = torch.addmm(xw_t, h, w_hh_t)  # (B, 4H): one product for the four gates
        h, c, acts = lstm_update(gates, c)
        return (h, c), acts

    def _fused(self, xw, state, w_hh, b_hh, mask, reverse):
        out, h, c = fused.lstm_sequence(xw, state[0], state[1], w_hh, mask, reverse)
        return out, (h, c)

    def _compiled(self, x, state, weights, mask, reverse):
        out, h, c = extension.lstm_layer(x, *weights, state[0], state[1], mask, reverse)
        return out, (h, c)


LAYERS: dict[str, type[_RecurrentLayer]] = {"rnn": RNN, "gru": GRU, "lstm": LSTM}


def make_layer(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, *, bias: bool = True,
               dropout: float = 0.0, bidirectional: bool = False, nonlinearity: str = "tanh",
               forget_bias: float = 0.0, backend: str = "auto") -> _RecurrentLayer:
    """The registered layer of kind `cell`, given only the options that kind has (the task heads' builder).

    The config validates the user's model.cell; an unknown kind here is a programming error (ValueError).
    """
    if cell not in LAYERS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(LAYERS)}")
    options = {"rnn": {"nonlinearity": nonlinearity}, "lstm": {"forget_bias": forget_bias}}.get(cell, {})
    return LAYERS[cell](input_size, hidden_size, num_layers, bias=bias, dropout=dropout,
                        bidirectional=bidirectional, backend=backend, **options)
