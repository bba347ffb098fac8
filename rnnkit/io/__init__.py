"""Low-level file formats: the one atomic writer, and safetensors files with nested state."""

from rnnkit.io.atomic import (
           atomic_file,
           atomic_folder,
           atomic_write_bytes,
           atomic_write_json,
           atomic_write_text,
           fsync_dir,
)
from rnnkit.io.tensors import flatten_state, load_safetensors, save_safetensors, unflatten_state

__all__ = ["atomic_file", "atomic_folder", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "fsync_dir",
           "flatten_state", "load_safetensors", "save_safetensors", "unflatten_state"]
