"""Capture and restore every random generator the training loop draws from (for an exact resume)."""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Every RNG the training loop may draw from: (tensors for safetensors, JSON-able rest)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss = random.getstate()
    tensors["python_state"] = torch.tensor(internal, dtype=torch.int64)  # 625 ints: kept out of state.json
    meta = {"python": [version, gauss], "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore what `rng_state` captured (CUDA states only for devices that exist here)."""
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            if f"torch_cuda_{index}" in tensors:
                torch.cuda.set_rng_state(tensors[f"torch_cuda_{index}"], index)
    if "numpy" in meta and "numpy_keys" in tensors:
        kind, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    if "python" in meta and "python_state" in tensors:
        version, gauss = meta["python"]
        random.setstate((version, tuple(tensors["python_state"].tolist()), gauss))
