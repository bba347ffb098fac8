"""safetensors files written atomically with rnnkit's format tag, and nested state (optimizer, scheduler)
split into JSON-able structure plus tensors, so that nothing is ever pickled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors_bytes

from rnnkit.errors import CheckpointError
from rnnkit.io.atomic import atomic_write_bytes

FORMAT_NAME = "rnnkit"


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically write tensors (made contiguous, on CPU) with string metadata."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save_tensors_bytes(tensors, metadata={"format": FORMAT_NAME, **metadata}))


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of an rnnkit safetensors file; CheckpointError for anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size  # one stat: a concurrent save may remove the file between two
    except OSError:
        size = None
    if size is None or not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    if size < 8:
        raise CheckpointError(f"{path}: truncated ({size} bytes); the checkpoint is corrupt")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        raise CheckpointError(f"{path}: not a readable safetensors file ({short(err)}); the checkpoint is "
                              f"truncated or corrupt") from None
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not written by rnnkit (no 'format: {FORMAT_NAME}' metadata)")
    return tensors, metadata


def short(err: Exception) -> str:
    """An exception's message on one line of at most 120 characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= 120 else text[:117] + "..."


def flatten_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, numbers, tensors) into JSON-able structure + tensors.

    Tensors become {"__tensor__": key}. Dicts become {"__dict__": [[key, value], ...]} so that the
    optimizer's integer parameter ids come back as integers; tuples keep their type.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value
            return {"__tensor__": path}
        if isinstance(value, dict):
            return {"__dict__": [[k, walk(v, f"{path}.{k}")] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} at {path} without pickling")

    return walk(obj, prefix), tensors


def unflatten_state(structure: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(structure, dict):
        if "__tensor__" in structure:
            return tensors[structure["__tensor__"]]
        if "__dict__" in structure:
            return {k: unflatten_state(v, tensors) for k, v in structure["__dict__"]}
        if "__tuple__" in structure:
            return tuple(unflatten_state(v, tensors) for v in structure["__tuple__"])
    if isinstance(structure, list):
        return [unflatten_state(v, tensors) for v in structure]
    return structure
