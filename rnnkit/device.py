"""Which torch device a command runs on: `auto`, `cpu`, `cuda` or `cuda:N`, with clear errors."""

from __future__ import annotations

import torch

from rnnkit.errors import UsageError


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` -> CUDA when present, else CPU; `cuda` without a GPU is a UsageError."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r}: no CUDA device is available here; use cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UsageError(f"device {device!r}: expected auto, cpu or cuda") from None
