"""The exported torch.nn modules as one ONNX graph through torch.onnx (optional: needs the onnx package).

torch.onnx's TorchScript exporter (`dynamo=False`) writes nn.RNN/GRU/LSTM as ONNX's own RNN/GRU/LSTM operators,
so the time and batch dimensions stay dynamic; the newer torch.export-based exporter unrolls the recurrence over
the example's length and would fix T.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.errors import UsageError
from rnnkit.export.torch_nn import PlainModel, plain_forward, probe_batch
from rnnkit.io.atomic import atomic_write_bytes

OPSET = 17


class _Graph(nn.Module):
    """plain_forward as a module: the graph's input "x" is model.json's input, its output "y" the model's."""

    def __init__(self, plain: PlainModel):
        super().__init__()
        self.parts, self.spec = plain.modules, plain.spec

    def forward(self, x: Tensor) -> Tensor:
        return plain_forward(self.parts, self.spec, x)


def write_onnx(plain: PlainModel, path: Path) -> None:
    """Write the graph (input "x" and output "y", time and batch dimensions dynamic) to `path` atomically."""
    if importlib.util.find_spec("onnx") is None:
        raise UsageError("--to onnx needs the onnx package, which rnnkit does not install; pip install onnx, or "
                         "use --to torch")
    dynamic = {0: "T", 1: "B"}  # a classifier's y is (B, C): its batch is dimension 0
    axes = {"x": dynamic, "y": {0: "B"} if plain.spec["task"] == "classify" else dynamic}
    options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # deprecation notes on the exporter itself are not the user's to act on
        warnings.simplefilter("ignore")
        torch.onnx.export(_Graph(plain).eval(), (probe_batch(plain.modules, plain.spec),), buffer,
                          input_names=["x"], output_names=["y"], dynamic_axes=axes, opset_version=OPSET, **options)
    atomic_write_bytes(path, buffer.getvalue())
